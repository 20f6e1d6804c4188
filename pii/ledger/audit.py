"""The append-only audit trail: the one writer of events (inside the caller's transaction, so an event is
committed with the change it records), reading them back, and exporting them as CSV or JSON."""
from __future__ import annotations

import csv
import json
import os
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Callable

from sqlalchemy import insert, select
from sqlalchemy.engine import Engine

from pii.core.errors import LedgerError
from pii.ledger.common import iso
from pii.ledger.schema import ledger_events

# write_event(conn, name, *, request_id=None, plan_id=None, actor=None, details=None, now=None): what stores get
EventWriter = Callable[..., None]


class AuditLog:
    """Events of one ledger database. The stores write them through `write_event`."""

    def __init__(self, engine: Engine, now: Callable[[], datetime]):
        self._engine = engine
        self._now = now

    def write_event(self, conn, name: str, *, request_id=None, plan_id=None, actor=None, details=None,
                    now: datetime | None = None) -> None:
        """Add event `name` on the open connection `conn` (its transaction commits it)."""
        conn.execute(insert(ledger_events).values(
            ts=iso(now or self._now()), request_id=request_id, plan_id=plan_id, event=name,
            actor=None if actor is None else str(actor)[:200],
            details=json.dumps(details or {}, sort_keys=True, default=str)))

    def audit_events(self, request_id: str | None = None, plan_id: str | None = None) -> list[dict]:
        e = ledger_events
        q = select(e).order_by(e.c.event_id)
        if request_id is not None:
            q = q.where(e.c.request_id == request_id)
        if plan_id is not None:
            q = q.where(e.c.plan_id == plan_id)
        with self._engine.connect() as conn:
            rows = conn.execute(q).mappings().all()
        return [{**r, "details": json.loads(r["details"])} for r in rows]

    def export_audit(self, path: str | os.PathLike, fmt: str = "csv", *, request_id: str | None = None,
                     plan_id: str | None = None) -> int:
        """Write the audit events (CSV: details as a JSON column; or JSON: a list); returns how many."""
        if fmt not in ("csv", "json"):
            raise LedgerError("audit export format must be csv or json")
        events = self.audit_events(request_id=request_id, plan_id=plan_id)
        target = Path(path)
        fd, tmp = tempfile.mkstemp(prefix=".audit.", dir=target.parent or ".")
        try:
            with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
                if fmt == "json":
                    json.dump(events, fh, indent=1, sort_keys=True)
                else:
                    fields = ["event_id", "ts", "request_id", "plan_id", "event", "actor", "details"]
                    writer = csv.DictWriter(fh, fieldnames=fields)
                    writer.writeheader()
                    for ev in events:
                        writer.writerow({**ev, "details": json.dumps(ev["details"], sort_keys=True)})
            os.replace(tmp, target)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        return len(events)
