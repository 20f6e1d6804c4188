"""Plans and their states: a plan stored for a request (``planned``), approved or rejected by a person,
executed by one worker at a time under the plan's lock (resumed after a crash), then verified; every move a
compare-and-set on the state, refused once the plan has expired where the move is time-limited."""
from __future__ import annotations

import hmac
import json
import uuid
from datetime import datetime
from typing import Callable, Mapping, Sequence

from sqlalchemy import insert, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from pii.core.errors import LedgerError, LedgerTampered
from pii.ledger.actions import ActionStore
from pii.ledger.audit import EventWriter
from pii.ledger.common import (
    APPROVED,
    EXECUTED,
    EXECUTING,
    EXPIRED,
    FAILED,
    PLAN_STATES,
    PLAN_TRANSITIONS,
    PLANNED,
    REJECTED,
    VERIFIED,
    aware,
    check_id,
    iso,
)
from pii.ledger.locks import LockStore
from pii.ledger.notes import SHREDDED, NoteStore
from pii.ledger.requests import RequestStore
from pii.ledger.schema import ledger_events, ledger_plan_actions, ledger_plans, plan_row
from pii.ledger.screening import Mac, check_actor_name, is_actor, safe_actor, scrub

_TIME_LIMITED = (APPROVED, EXECUTING)  # moves that are refused once the plan has expired
DIGEST_DOMAIN = "plan-digest"


def approval_signature(mac: Callable[[str, str], str], plan_id: str, digest: str, decision: str, who: str,
                       decided_at: str) -> str:
    """The HMAC (ledger key) that makes a decision on a plan: plan, digest, decision, approver, time."""
    return mac("approval", json.dumps([plan_id, digest, decision, who, decided_at], separators=(",", ":")))


class PlanStore:
    """Plans, their approval and execution. Uses the request store (the subject's screen, the requester),
    the action store (what is still pending) and the lock store (the plan's lock)."""

    def __init__(self, engine: Engine, now: Callable[[], datetime], mac: Mac, write_event: EventWriter, *,
                 requests: RequestStore, actions: ActionStore, locks: LockStore, notes: NoteStore):
        self._notes = notes
        self._engine = engine
        self._now = now
        self._mac = mac
        self._event = write_event
        self._requests = requests
        self._actions = actions
        self._locks = locks

    def store_plan(self, request_id: str, plan: dict, expires_at: datetime, *, plan_id: str | None = None,
                   actor: str | None = None) -> str:
        """Store a plan in state `planned`; returns its id. The plan must be JSON and must not hold any of the
        request's identifiers (protect personal locators with `protect_location`). Idempotent on `plan_id`."""
        self._requests.request_row(request_id)
        aware("expires_at", expires_at)
        if not isinstance(plan, Mapping) or not isinstance(plan.get("actions"), list):
            raise LedgerError(f"a plan for request {request_id} must be a dict with an 'actions' list")
        action_ids: list[str] = []
        seen: set[str] = set()
        for i, action in enumerate(plan["actions"]):
            aid = action.get("action_id") if isinstance(action, Mapping) else None
            if not isinstance(aid, str) or not aid or len(aid) > 200:
                raise LedgerError(
                    f"plan for request {request_id}: actions[{i}] needs an 'action_id' (1-200 characters)")
            if aid in seen:
                raise LedgerError(f"plan for request {request_id}: actions[{i}] repeats an action id")
            seen.add(aid)
            action_ids.append(aid)
        screen = self._requests.screen_for_request(request_id)

        def refuse(kind: str, path: str) -> None:
            raise LedgerError(f"plan for request {request_id} holds the subject's {kind} at {path}; "
                              f"pass personal locators through Ledger.protect_location before storing the plan")

        screen.check_json(plan, "plan", refuse)
        try:
            text = json.dumps(plan, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise LedgerError(f"plan for request {request_id} is not JSON: {exc.__class__.__name__}") from None
        digest = self._mac(DIGEST_DOMAIN, text)
        if plan_id is None:
            plan_id = "plan-" + uuid.uuid4().hex
        else:
            check_id("plan id", plan_id)
        by_store: dict[str, int] = {}
        for action in plan["actions"]:
            store = action.get("store")
            if isinstance(store, str):
                by_store[store] = by_store.get(store, 0) + 1
        now = self._now()
        try:
            with self._engine.begin() as conn:
                conn.execute(insert(ledger_plans).values(
                    plan_id=plan_id, request_id=request_id, state=PLANNED, plan_json=text, digest=digest,
                    action_count=len(action_ids), created_at=iso(now), expires_at=iso(expires_at),
                    updated_at=iso(now)))
                if action_ids:
                    conn.execute(insert(ledger_plan_actions), [
                        {"plan_id": plan_id, "action_id": a, "seq": i} for i, a in enumerate(action_ids)])
                self._event(conn, "plan_stored", request_id=request_id, plan_id=plan_id, now=now,
                            actor=self._requests.actor_of(request_id, actor, screen),
                            details={"actions": len(action_ids), "by_store": by_store, "state": PLANNED,
                                     "expires_at": iso(expires_at)})
        except IntegrityError:
            row = plan_row(self._engine, plan_id)
            if row["request_id"] != request_id or row["digest"] != digest:
                raise LedgerError(f"plan {plan_id} already exists with other content") from None
        return plan_id

    def get_plan(self, plan_id: str) -> dict:
        row = dict(plan_row(self._engine, plan_id))
        text = row.pop("plan_json")
        if not hmac.compare_digest(self._mac(DIGEST_DOMAIN, text), row["digest"]):
            raise LedgerTampered(f"plan {plan_id} does not match its digest (keyed with the ledger key): the stored "
                                 f"plan was altered, or written by a Lethe before keyed digests; plan it again")
        row["plan"] = json.loads(text)
        # sealed as typed; shown screened (contacts masked, withheld when it names the subject)
        reason = self._notes.read(row["decision_reason"])
        if reason is not None and reason != SHREDDED:
            reason = scrub(reason, self._requests.screen_for_request(row["request_id"]))
        row["decision_reason"] = reason
        return row

    def plan_state(self, plan_id: str) -> str:
        return plan_row(self._engine, plan_id)["state"]

    def _move(self, plan_id: str, expected: Sequence[str], new: str, *, actor, values: dict | None = None,
              details: dict | None = None, digest: str | None = None, reason: str | None = None) -> str:
        """Compare-and-set the plan's state from one of `expected` to `new`; returns the state it left.
        Refuses moves that are not transitions, and time-limited moves on an expired plan (which it marks
        expired). A `reason` (a decision's, as typed) is sealed as a note of the plan's request: the plan's
        `decision_reason` and the event keep its id, the event its keyed hash too."""
        for e in expected:
            if new not in PLAN_TRANSITIONS.get(e, ()):
                raise LedgerError(f"plan {plan_id}: {e} -> {new} is not a valid transition")
        screen = self._requests.screen_for_request(plan_row(self._engine, plan_id)["request_id"])
        actor = safe_actor(self._mac, actor, screen)
        now = self._now()
        p = ledger_plans
        with self._engine.begin() as conn:
            for e in expected:
                stmt = update(p).where(p.c.plan_id == plan_id, p.c.state == e)
                if new in _TIME_LIMITED:
                    stmt = stmt.where(p.c.expires_at >= iso(now))
                if digest is not None:
                    stmt = stmt.where(p.c.digest == digest)
                if conn.execute(stmt.values(state=new, updated_at=iso(now), **(values or {}))).rowcount == 1:
                    request_id = conn.execute(select(p.c.request_id).where(p.c.plan_id == plan_id)).scalar_one()
                    sealed = {}
                    if reason is not None and str(reason).strip():
                        note_id, note_hash = self._notes.seal(conn, reason, purpose="decision_reason",
                                                              request_id=request_id)
                        conn.execute(update(p).where(p.c.plan_id == plan_id).values(decision_reason=note_id))
                        sealed = {"reason": note_id, "reason_hash": note_hash}
                    self._event(conn, "plan_" + new, request_id=request_id, plan_id=plan_id, actor=actor, now=now,
                                details={"from": e, "to": new, **(details or {}), **sealed})
                    return e
        row = plan_row(self._engine, plan_id)
        if row["state"] in expected and new in _TIME_LIMITED and row["expires_at"] < iso(now):
            self._expire(row, actor)
            raise LedgerError(f"plan {plan_id} expired at {row['expires_at']}: it can no longer move to {new}")
        if row["state"] in expected and digest is not None and row["digest"] != digest:
            raise LedgerError(f"plan {plan_id} is not the plan that was reviewed (digest differs)")
        raise LedgerError(f"plan {plan_id} is {row['state']}, not {' or '.join(expected)}: cannot move it to {new}")

    def _expire(self, row, actor) -> bool:
        if EXPIRED not in PLAN_TRANSITIONS.get(row["state"], ()):
            return False
        now = self._now()
        p = ledger_plans
        with self._engine.begin() as conn:
            moved = conn.execute(update(p).where(p.c.plan_id == row["plan_id"], p.c.state == row["state"])
                                 .values(state=EXPIRED, updated_at=iso(now))).rowcount == 1
            if moved:
                self._event(conn, "plan_expired", request_id=row["request_id"], plan_id=row["plan_id"], actor=actor,
                            now=now, details={"from": row["state"], "to": EXPIRED})
        return moved

    def expire_overdue(self, *, actor: str | None = None) -> list[str]:
        """Mark every plan past its expiry that is still planned, approved or failed as expired."""
        p = ledger_plans
        with self._engine.connect() as conn:
            rows = conn.execute(select(p).where(p.c.state.in_([PLANNED, APPROVED, FAILED]),
                                                p.c.expires_at < iso(self._now()))).mappings().all()
        return [r["plan_id"] for r in rows if self._expire(r, actor)]

    def approve(self, plan_id: str, approver: str, *, require_distinct_from_requester: bool = False,
                expected_digest: str | None = None, reason: str | None = None) -> None:
        """planned -> approved. With `expected_digest` (from get_plan) the approval only holds for the plan
        the approver saw. A repeat by the same approver is a no-op."""
        if not approver or not str(approver).strip():
            raise LedgerError(f"plan {plan_id}: an approval needs an approver")
        row = plan_row(self._engine, plan_id)
        screen = self._requests.screen_for_request(row["request_id"])
        who = safe_actor(self._mac, approver, screen)
        if require_distinct_from_requester:
            # Names compare normalised (NFKC, case-folded: "DPO" is "ｄｐｏ"); one mixing scripts could pass for
            # another's and is refused. Requests stored before normalisation hold the raw-text hash: is_actor
            # accepts either, so a legacy requester cannot approve their own request either.
            try:
                check_actor_name(approver, "approver")
            except LedgerError as exc:
                raise LedgerError(f"plan {plan_id}: {exc}") from None
            requester_hash = self._requests.request_row(row["request_id"])["requester_hash"]
            if is_actor(self._mac, requester_hash, approver):
                raise LedgerError(f"plan {plan_id}: the approver is the requester; a second person must approve")
        if row["state"] == APPROVED and row["decided_by"] == who:
            return
        if expected_digest is not None and row["digest"] != expected_digest:
            raise LedgerError(f"plan {plan_id} is not the plan that was reviewed (digest differs)")
        decided_at = iso(self._now())
        signature = approval_signature(self._mac, plan_id, row["digest"], APPROVED, who, decided_at)
        self._move(plan_id, (PLANNED,), APPROVED, actor=who, digest=row["digest"], reason=reason,
                   values={"decided_by": who, "decided_at": decided_at}, details={"signature": signature})

    def check_approval(self, plan_id: str) -> None:
        """A plan past approval must carry a signed approval: an approval event whose HMAC (ledger key) covers
        this plan, its digest, the decision, the approver and the time recorded on the plan. A state set
        in the database without the key has none (LedgerTampered)."""
        row = plan_row(self._engine, plan_id)
        if row["state"] in (PLANNED, REJECTED, EXPIRED):
            return
        want = approval_signature(self._mac, plan_id, row["digest"], APPROVED, row["decided_by"] or "",
                                  row["decided_at"] or "")
        e = ledger_events
        with self._engine.connect() as conn:
            details = conn.execute(select(e.c.details).where(e.c.plan_id == plan_id,
                                                             e.c.event == "plan_" + APPROVED)).scalars().all()
        for text in details:
            try:
                got = json.loads(text).get("signature")
            except (ValueError, AttributeError):
                continue
            if isinstance(got, str) and hmac.compare_digest(got, want):
                return
        raise LedgerTampered(f"plan {plan_id} is {row['state']} without an approval signed with the ledger key "
                             f"(its state or approver was set without the key): nothing is carried out")

    def reject(self, plan_id: str, approver: str, reason: str) -> None:
        """planned -> rejected; nothing in the plan will be carried out."""
        if not approver or not str(approver).strip():
            raise LedgerError(f"plan {plan_id}: a rejection needs an approver")
        row = plan_row(self._engine, plan_id)
        screen = self._requests.screen_for_request(row["request_id"])
        who = safe_actor(self._mac, approver, screen)
        if row["state"] == REJECTED and row["decided_by"] == who:
            return
        self._move(plan_id, (PLANNED,), REJECTED, actor=who, reason=reason,
                   values={"decided_by": who, "decided_at": iso(self._now())})

    def start_execution(self, plan_id: str, actor: str) -> None:
        """approved (or failed, to retry its pending actions) -> executing. Only one worker wins."""
        self._move(plan_id, (APPROVED, FAILED), EXECUTING, actor=actor)

    def claim_execution(self, plan_id: str, owner: str, ttl_seconds: int) -> bool:
        """Take the plan's lock and start it, or resume it when it is `executing` and the worker that
        started it has lost its lock (crashed). False when another live worker holds it."""
        lock = f"plan:{plan_id}"
        if not self._locks.acquire_lock(lock, owner, ttl_seconds):
            return False
        try:
            row = plan_row(self._engine, plan_id)
            if row["state"] in (APPROVED, FAILED):
                self.start_execution(plan_id, owner)
            elif row["state"] == EXECUTING:
                pending = len(self._actions.pending_actions(plan_id))
                with self._engine.begin() as conn:
                    self._event(conn, "plan_resumed", request_id=row["request_id"], plan_id=plan_id, actor=owner,
                                details={"state": EXECUTING, "pending": pending})
            else:
                raise LedgerError(f"plan {plan_id} is {row['state']}: there is nothing to execute")
        except BaseException:
            self._locks.release_lock(lock, owner)
            raise
        return True

    def finish_execution(self, plan_id: str, actor: str, *, success: bool = True) -> None:
        """executing -> executed (every action done or skipped) or failed; releases `actor`'s plan lock."""
        if success:
            pending = self._actions.pending_actions(plan_id)
            if pending:
                raise LedgerError(f"plan {plan_id}: {len(pending)} action(s) are not done or skipped; "
                                  f"it cannot be marked executed")
        counts = self._actions.action_counts(plan_id)
        self._move(plan_id, (EXECUTING,), EXECUTED if success else FAILED, actor=actor, details={"actions": counts})
        try:
            self._locks.release_lock(f"plan:{plan_id}", actor)
        except LedgerError:  # an actor that cannot own a lock holds none
            pass

    def record_verification(self, plan_id: str, actor: str, remaining: int, gaps: list[dict] | None = None) -> str:
        """After execution the subject is located again: `remaining` locations still found. Zero makes the
        plan verified; otherwise it stays executed and the shortfall is recorded. `gaps`: places the second
        search could not (fully) read (pii/core/coverage.py, names already withheld where personal); recorded with
        the event, so the certificate says what could not be verified. Returns the state."""
        if not isinstance(remaining, int) or remaining < 0:
            raise LedgerError(f"plan {plan_id}: remaining must be a count")
        extra = {"not_verified": list(gaps)} if gaps else {}
        if remaining == 0:
            self._move(plan_id, (EXECUTED,), VERIFIED, actor=actor, details={"remaining": 0, **extra})
            return VERIFIED
        row = plan_row(self._engine, plan_id)
        if row["state"] != EXECUTED:
            raise LedgerError(f"plan {plan_id} is {row['state']}, not executed: it cannot be verified")
        with self._engine.begin() as conn:
            self._event(conn, "verification_failed", request_id=row["request_id"], plan_id=plan_id, actor=actor,
                        details={"remaining": remaining, "state": EXECUTED, **extra})
        return EXECUTED

    def transition(self, plan_id: str, expected: str, new: str, *, actor: str | None = None) -> None:
        """The bare compare-and-set for moves that need no approver: expected -> new. Approval and rejection
        go through `approve` / `reject`; `executed` through `finish_execution`."""
        if expected not in PLAN_STATES or new not in PLAN_STATES:
            raise LedgerError(f"plan {plan_id}: unknown state in {expected} -> {new}")
        if new in (APPROVED, REJECTED, EXECUTED):
            if new not in PLAN_TRANSITIONS.get(expected, ()):
                raise LedgerError(f"plan {plan_id}: {expected} -> {new} is not a valid transition")
            raise LedgerError(f"plan {plan_id}: use approve(), reject() or finish_execution() to move it to {new}")
        self._move(plan_id, (expected,), new, actor=actor)

    # ---- a request's plans
    def plans_for(self, request_id: str) -> list[dict]:
        """The request's plans (id, state, created_at, expires_at), oldest first."""
        p = ledger_plans
        with self._engine.connect() as conn:
            rows = conn.execute(select(p.c.plan_id, p.c.state, p.c.created_at, p.c.expires_at, p.c.decided_by)
                                .where(p.c.request_id == request_id).order_by(p.c.created_at, p.c.plan_id))
            return [dict(r._mapping) for r in rows]
