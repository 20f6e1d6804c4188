"""Read-side queries for the Lethe console (plugins/console): requests with their deadlines, a request's
timeline, plans with their decisions and per-store tables, pending approvals.

Everything here reads the ledger's own tables through the facade's public `engine` (and `get_plan`, which
checks a plan's keyed digest and unseals its decision reason screened). What comes back holds no personal
value: the ledger keeps identifiers and requesters only as keyed hashes and free text screened, and keyed
hashes are shortened to a marker here (``hmac:1a2b3c…``) so no page shows more of them than a reference.
"""
from __future__ import annotations

import json
from datetime import date, datetime, timezone
from typing import Any

from sqlalchemy import select

from pii.core.errors import LedgerError, LedgerTampered
from pii.core.plans import ACTION_ORDER, store_tables  # noqa: F401 - store_tables: the plan page's table
from pii.ledger.common import PLANNED
from pii.ledger.schema import ledger_events, ledger_plans, ledger_request_terms, ledger_requests

OPEN_STATUSES = ("open", "in_progress")
NOT_RECORDED = "not recorded"
NONE_MARK = "—"


def short_hash(value: Any) -> Any:
    """A keyed hash shortened to a reference (``hmac:1a2b3c4d…``); anything else unchanged."""
    if isinstance(value, str) and value.startswith("hmac:") and len(value) > 17:
        return value[:13] + "…"
    return value


def _today(today: date | None) -> date:
    return today or datetime.now(timezone.utc).date()


def _terms(engine, request_ids: list[str]) -> dict[str, dict]:
    if not request_ids:
        return {}
    t = ledger_request_terms
    with engine.connect() as conn:
        return {r["request_id"]: dict(r) for r in conn.execute(
            select(t).where(t.c.request_id.in_(request_ids))).mappings()}


def _request_view(row, terms: dict | None, today: date) -> dict:
    extended = (terms or {}).get("extended_to")
    due = extended or row["due_at"]
    try:
        days_left = (date.fromisoformat(due) - today).days
    except (TypeError, ValueError):
        days_left = None
    is_open = row["status"] in OPEN_STATUSES
    identity = (terms or {}).get("identity") or NOT_RECORDED
    return {
        "request_id": row["request_id"], "kind": row["kind"], "status": row["status"], "open": is_open,
        "received": row["received_at"], "due": due, "first_due": row["due_at"],
        "extension": extended or NONE_MARK,
        "days_left": days_left if is_open else None,
        "overdue": bool(is_open and days_left is not None and days_left < 0),
        "identity": identity,
        "identity_method": (terms or {}).get("identity_method"),
        "identity_by": short_hash((terms or {}).get("identity_by")),
        "identity_at": (terms or {}).get("identity_at"),
        "created_at": row["created_at"], "updated_at": row["updated_at"],
    }


def list_requests(ledger, *, today: date | None = None) -> list[dict]:
    """Every request, open ones first (soonest due first), then closed ones (newest first): id, kind,
    status, received, due (the extended date once extended), extension (``—`` when none), days left and
    overdue (open requests only), identity state (``not recorded`` when nobody recorded one)."""
    today = _today(today)
    with ledger.engine.connect() as conn:
        rows = list(conn.execute(select(ledger_requests)).mappings())
    terms = _terms(ledger.engine, [r["request_id"] for r in rows])
    out = [_request_view(r, terms.get(r["request_id"]), today) for r in rows]
    open_ = sorted((r for r in out if r["open"]), key=lambda r: (r["due"], r["request_id"]))
    closed = sorted((r for r in out if not r["open"]), key=lambda r: r["updated_at"], reverse=True)
    return open_ + closed


def get_request(ledger, request_id: str, *, today: date | None = None) -> dict:
    """One request as `list_requests` shows it (LedgerError when it is not in the ledger)."""
    with ledger.engine.connect() as conn:
        row = conn.execute(select(ledger_requests).where(
            ledger_requests.c.request_id == request_id)).mappings().first()
    if row is None:
        raise LedgerError(f"request {request_id} is not in the ledger")
    return _request_view(row, _terms(ledger.engine, [request_id]).get(request_id), _today(today))


def _details(text: str | None) -> dict:
    try:
        value = json.loads(text or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {"value": value}


def _shorten(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _shorten(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_shorten(v) for v in value]
    return short_hash(value)


def timeline(ledger, request_id: str) -> list[dict]:
    """The request's audit events in order: time, event, plan, actor (keyed hashes shortened) and details
    (counts, states, ids; already screened by the ledger)."""
    e = ledger_events
    with ledger.engine.connect() as conn:
        rows = conn.execute(select(e).where(e.c.request_id == request_id).order_by(e.c.event_id)).mappings().all()
    return [{"event_id": r["event_id"], "ts": r["ts"], "event": r["event"], "plan_id": r["plan_id"],
             "actor": short_hash(r["actor"]), "details": _shorten(_details(r["details"]))} for r in rows]


def _decision(ledger, row) -> dict:
    """Who decided, when, and the reason (unsealed and screened by `Ledger.get_plan`; None once shredded)."""
    reason, tampered = None, False
    if row["decision_reason"]:
        try:
            reason = ledger.get_plan(row["plan_id"])["decision_reason"]
        except LedgerTampered:
            tampered = True
    return {"by": short_hash(row["decided_by"]), "at": row["decided_at"], "reason": reason, "tampered": tampered}


def _plan_view(ledger, row, *, with_decision: bool = True) -> dict:
    out = {k: row[k] for k in ("plan_id", "request_id", "state", "action_count", "created_at", "expires_at",
                                "updated_at")}
    try:
        data = json.loads(row["plan_json"])
    except ValueError:
        data = {}
    out["flow"] = data.get("flow")
    out["policy"] = data.get("policy")
    out["stores"] = list(data.get("stores") or [])
    if with_decision:
        out["decision"] = _decision(ledger, row)
    return out


def plans_for(ledger, request_id: str) -> list[dict]:
    """The request's plans, oldest first: state, counts, dates and the decision (who, when, reason)."""
    p = ledger_plans
    with ledger.engine.connect() as conn:
        rows = conn.execute(select(p).where(p.c.request_id == request_id).order_by(p.c.created_at)).mappings().all()
    return [_plan_view(ledger, r) for r in rows]


def get_plan(ledger, plan_id: str) -> dict:
    """One plan: state, dates, decision, its request's id, and `tables` (`store_tables`); the plan's
    content is checked against its keyed digest first (LedgerTampered when it was altered)."""
    row = ledger.get_plan(plan_id)  # checks the digest; LedgerError when unknown
    p = ledger_plans
    with ledger.engine.connect() as conn:
        raw = conn.execute(select(p).where(p.c.plan_id == plan_id)).mappings().first()
    out = _plan_view(ledger, raw, with_decision=False)
    out["decision"] = {"by": short_hash(row["decided_by"]), "at": row["decided_at"],
                       "reason": row["decision_reason"], "tampered": False}
    out["tables"] = store_tables(row["plan"])
    counts: dict[str, int] = {}
    for rows in out["tables"].values():
        for r in rows:
            counts[r["action"]] = counts.get(r["action"], 0) + r["count"]
    out["counts"] = {k: counts[k] for k in ACTION_ORDER if k in counts}
    out["not_searched"] = [
        {"store": c.get("store"), "skipped": len(c.get("skipped") or []), "partial": len(c.get("partial") or [])}
        for c in (row["plan"].get("coverage") or []) if not c.get("complete", True)]
    return out


def pending_approvals(ledger) -> list[dict]:
    """Plans waiting for a decision (state planned), oldest first, with their request's kind and due date."""
    p, r = ledger_plans, ledger_requests
    with ledger.engine.connect() as conn:
        rows = conn.execute(select(p, r.c.kind, r.c.due_at).join(r, r.c.request_id == p.c.request_id, isouter=True)
                            .where(p.c.state == PLANNED).order_by(p.c.created_at)).mappings().all()
    out = []
    for row in rows:
        view = _plan_view(ledger, row, with_decision=False)
        view["kind"] = row["kind"]
        view["due"] = row["due_at"]
        out.append(view)
    return out
