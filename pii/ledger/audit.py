"""The append-only audit trail: the one writer of events (inside the caller's transaction, so an event is
committed with the change it records), reading them back, and exporting them as CSV or JSON.

Events are chained with the ledger key: each event's HMAC covers the previous chained event's HMAC and
the event's own fields (`ledger_event_chain`), and a head row names the last one. Someone who can write to
the ledger database but does not hold the key can neither edit, insert, drop nor reorder events without
`verify_chain` (`lethe audit --verify`) naming the first event that no longer fits. Writers take the head
row's lock first, so chained events are written one at a time and in event-id order."""
from __future__ import annotations

import csv
import json
import os
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Callable

from sqlalchemy import func, insert, select, update
from sqlalchemy.engine import Engine

from pii.core.errors import LedgerError
from pii.core.printable import spreadsheet_safe_row
from pii.ledger.common import iso
from pii.ledger.schema import ledger_chain_head, ledger_event_chain, ledger_events

# write_event(conn, name, *, request_id=None, plan_id=None, actor=None, details=None, now=None): what stores get
EventWriter = Callable[..., None]
Mac = Callable[[str, str], str]
CHAIN_DOMAIN = "event-chain"

def event_mac(mac: Mac, prev: str, event: dict) -> str:
    """The HMAC of one event in the chain: over the previous chained event's HMAC and the event's fields
    as stored (details as their stored JSON text)."""
    fields = [prev, event["event_id"], event["ts"], event["request_id"], event["plan_id"], event["event"],
              event["actor"], event["details"]]
    return mac(CHAIN_DOMAIN, json.dumps(fields, separators=(",", ":"), ensure_ascii=False))


def start_chain(engine: Engine) -> None:
    """The chain's head row, made once per ledger (events already there predate the chain)."""
    from sqlalchemy.exc import IntegrityError

    with engine.connect() as conn:
        if conn.execute(select(ledger_chain_head.c.id).where(ledger_chain_head.c.id == 1)).first() is not None:
            return
    try:
        with engine.begin() as conn:
            last = conn.execute(select(func.max(ledger_events.c.event_id))).scalar() or 0
            conn.execute(insert(ledger_chain_head).values(id=1, first_event_id=last + 1, event_id=0, mac="",
                                                          count=0))
    except IntegrityError:
        pass  # another process made it meanwhile


class AuditLog:
    """Events of one ledger database. The stores write them through `write_event`."""

    def __init__(self, engine: Engine, now: Callable[[], datetime], mac: Mac):
        self._engine = engine
        self._now = now
        self._mac = mac
        start_chain(engine)

    def write_event(self, conn, name: str, *, request_id=None, plan_id=None, actor=None, details=None,
                    now: datetime | None = None) -> None:
        """Add event `name` on the open connection `conn` (its transaction commits it), chained."""
        h = ledger_chain_head
        # the head's lock first (the update), so chained events are written one at a time, in id order
        conn.execute(update(h).where(h.c.id == 1).values(count=h.c.count + 1))
        head = conn.execute(select(h.c.mac).where(h.c.id == 1)).first()
        row = {"ts": iso(now or self._now()), "request_id": request_id, "plan_id": plan_id, "event": name,
               "actor": None if actor is None else str(actor)[:200],
               "details": json.dumps(details or {}, sort_keys=True, default=str)}
        event_id = conn.execute(insert(ledger_events).values(**row)).inserted_primary_key[0]
        mac = event_mac(self._mac, head.mac if head else "", {**row, "event_id": event_id})
        conn.execute(insert(ledger_event_chain).values(event_id=event_id, mac=mac))
        conn.execute(update(h).where(h.c.id == 1).values(event_id=event_id, mac=mac))

    def verify_chain(self) -> dict:
        """Walk the chain: {"intact": bool, "events": chained events checked, "before_chain": events older
        than the chain, "broken_at": the first event id that does not fit (or None), "reason": why}."""
        e, c, h = ledger_events, ledger_event_chain, ledger_chain_head
        out = {"intact": False, "events": 0, "before_chain": 0, "broken_at": None, "reason": None}
        prev, last_id = "", 0
        with self._engine.connect() as conn:
            head = conn.execute(select(h).where(h.c.id == 1)).mappings().first()
            if head is None:
                out["reason"] = "the chain's head is missing"
                return out
            orphans = conn.execute(select(func.count()).select_from(c.outerjoin(e, e.c.event_id == c.c.event_id))
                                   .where(e.c.event_id.is_(None))).scalar()
            rows = conn.execution_options(yield_per=1000).execute(  # streamed: a long trail is not held at once
                select(e, c.c.mac).select_from(e.outerjoin(c, c.c.event_id == e.c.event_id)).order_by(e.c.event_id))
            for r in rows.mappings():
                if r["event_id"] < head["first_event_id"]:
                    out["before_chain"] += 1
                    continue
                if r["mac"] is None or r["mac"] != event_mac(self._mac, prev, dict(r)):
                    out["broken_at"] = r["event_id"]
                    out["reason"] = ("the event has no link in the chain (inserted without the key)"
                                     if r["mac"] is None else
                                     "the event does not match its link (edited, inserted or reordered)")
                    return out
                prev, last_id = r["mac"], r["event_id"]
                out["events"] += 1
        if orphans:
            out["reason"] = f"{orphans} link(s) of the chain have no event (events deleted)"
        elif head["event_id"] != last_id or head["mac"] != prev or head["count"] != out["events"]:
            out["reason"] = "the chain's head does not name the last event (events deleted at the end)"
        else:
            out["intact"] = True
            return out
        out["broken_at"] = last_id + 1 if last_id else head["first_event_id"]
        return out

    def verify_events(self, event_ids: list[int]) -> int | None:
        """Check these events against their links (each with its predecessor's HMAC), without walking the
        whole chain; returns the first that does not fit, or None."""
        e, c, h = ledger_events, ledger_event_chain, ledger_chain_head
        with self._engine.connect() as conn:
            first = conn.execute(select(h.c.first_event_id).where(h.c.id == 1)).scalar()
            for event_id in sorted(event_ids):
                if first is None:
                    return event_id
                if event_id < first:
                    continue  # older than the chain: nothing to check it against
                r = conn.execute(select(e, c.c.mac).select_from(e.outerjoin(c, c.c.event_id == e.c.event_id))
                                 .where(e.c.event_id == event_id)).mappings().first()
                prev = conn.execute(select(c.c.mac).where(c.c.event_id < event_id, c.c.event_id >= first)
                                    .order_by(c.c.event_id.desc()).limit(1)).scalar() or ""
                if r is None or r["mac"] is None or r["mac"] != event_mac(self._mac, prev, dict(r)):
                    return event_id
        return None

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
        """Write the audit events (CSV: details as a JSON column, cells made `spreadsheet_safe`; or JSON: a list,
        exact values); returns how many."""
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
                        writer.writerow(spreadsheet_safe_row(
                            {**ev, "details": json.dumps(ev["details"], sort_keys=True)}))
            os.replace(tmp, target)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        return len(events)
