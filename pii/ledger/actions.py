"""Per-action progress of a plan that is executing: started, then done / skipped (final: never run again) or
failed / drifted; one action at a time (`mark_action`) or many in one transaction (`mark_actions`)."""
from __future__ import annotations

import random
import time
from datetime import datetime
from typing import Callable, Iterable, Mapping, Sequence

from sqlalchemy import insert, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from pii.core.errors import LedgerError
from pii.ledger.audit import EventWriter
from pii.ledger.common import ACTION_FINAL, ACTION_STATES, EXECUTING, STARTED, iso
from pii.ledger.schema import ledger_actions, ledger_plan_actions, plan_row
from pii.ledger.screening import OPAQUE_RE, Mac, Screen, safe_actor, scrub


class ActionStore:
    """The actions of every plan. `screen_for_request(request_id)` gives the screen for a request's subject."""

    def __init__(self, engine: Engine, now: Callable[[], datetime], mac: Mac, write_event: EventWriter,
                 screen_for_request: Callable[[str | None], Screen]):
        self._engine = engine
        self._now = now
        self._mac = mac
        self._event = write_event
        self._screen_for_request = screen_for_request

    def _plan_has_action(self, plan_id: str, action_id: str) -> bool:
        t = ledger_plan_actions
        with self._engine.connect() as conn:
            found = conn.execute(select(t.c.seq).where(t.c.plan_id == plan_id, t.c.action_id == action_id)).first()
        return found is not None

    def action_state(self, plan_id: str, action_id: str) -> str | None:
        a = ledger_actions
        with self._engine.connect() as conn:
            return conn.execute(select(a.c.state).where(a.c.plan_id == plan_id, a.c.action_id == action_id)).scalar()

    def mark_action(self, plan_id: str, action_id: str, state: str, rows: int | None = None,
                    detail: str | None = None, *, actor: str | None = None) -> None:
        """Record an action's progress (committed on return). `started` before touching the store, then
        `done` / `skipped` / `failed` / `drifted`. Done and skipped actions are final: marking them again
        with another state raises, so nothing is carried out twice."""
        if state not in ACTION_STATES:
            raise LedgerError(f"plan {plan_id}, action {action_id}: state must be one of {', '.join(ACTION_STATES)}")
        if rows is not None and (not isinstance(rows, int) or isinstance(rows, bool) or rows < 0):
            raise LedgerError(f"plan {plan_id}, action {action_id}: rows must be a count")
        plan = plan_row(self._engine, plan_id)
        if not self._plan_has_action(plan_id, action_id):
            raise LedgerError(f"plan {plan_id} has no action with that id")
        if plan["state"] != EXECUTING:
            raise LedgerError(f"plan {plan_id} is {plan['state']}: actions move only while it is executing")
        screen = self._screen_for_request(plan["request_id"])
        detail = scrub(detail, screen)
        actor = safe_actor(self._mac, actor, screen)
        a = ledger_actions
        for attempt in range(100):
            if attempt:  # lost a race with another worker: back off a little, then look again
                time.sleep(random.uniform(0, 0.002 * min(attempt, 20)))
            now = self._now()
            with self._engine.connect() as conn:
                cur = conn.execute(select(a.c.state, a.c.attempts).where(
                    a.c.plan_id == plan_id, a.c.action_id == action_id)).first()
            prev = cur.state if cur else None
            if prev in ACTION_FINAL:
                if prev == state:
                    return
                raise LedgerError(f"plan {plan_id}, action {action_id} is already {prev}: it cannot become {state}")
            values = {"state": state, "rows": rows, "detail": detail, "updated_at": iso(now)}
            if state == STARTED:
                values["started_at"] = iso(now)
            else:
                values["finished_at"] = iso(now)
            try:
                with self._engine.begin() as conn:
                    if cur is None:
                        conn.execute(insert(a).values(plan_id=plan_id, action_id=action_id,
                                                      attempts=1 if state == STARTED else 0, **values))
                    else:
                        values["attempts"] = cur.attempts + (1 if state == STARTED else 0)
                        res = conn.execute(update(a).where(a.c.plan_id == plan_id, a.c.action_id == action_id,
                                                           a.c.state == prev, a.c.attempts == cur.attempts)
                                           .values(**values))
                        if res.rowcount != 1:
                            continue  # another worker moved it: look again
                    self._event(conn, "action_" + state, request_id=plan["request_id"], plan_id=plan_id, actor=actor,
                                now=now, details={"action_id": action_id, "from": prev, "to": state, "rows": rows})
                return
            except IntegrityError:
                continue
        raise LedgerError(f"plan {plan_id}, action {action_id} keeps being changed by another worker")

    def mark_actions(self, plan_id: str, action_ids: Sequence[str], state: str, *,
                     rows: Mapping[str, int] | None = None, details: Mapping[str, str | None] | None = None,
                     actor: str | None = None) -> None:
        """`mark_action` for many actions in one transaction with one audit event (large erasures).
        The same rules: done and skipped are final; the plan must be executing."""
        ids = list(dict.fromkeys(action_ids))
        if not ids:
            return
        if state not in ACTION_STATES:
            raise LedgerError(f"plan {plan_id}: state must be one of {', '.join(ACTION_STATES)}")
        rows = dict(rows or {})
        if any(not isinstance(v, int) or isinstance(v, bool) or v < 0 for v in rows.values()):
            raise LedgerError(f"plan {plan_id}: rows must be counts")
        plan = plan_row(self._engine, plan_id)
        if plan["state"] != EXECUTING:
            raise LedgerError(f"plan {plan_id} is {plan['state']}: actions move only while it is executing")
        screen = self._screen_for_request(plan["request_id"])
        actor = safe_actor(self._mac, actor, screen)
        scrubbed: dict[str | None, str | None] = {None: None}
        clean = {}
        for aid in ids:
            d = (details or {}).get(aid)
            if d not in scrubbed:
                scrubbed[d] = d if OPAQUE_RE.match(d.split(";", 1)[0]) and ";" not in d else scrub(d, screen)
            clean[aid] = scrubbed[d]
        a, pa = ledger_actions, ledger_plan_actions
        now = self._now()
        stamp = "started_at" if state == STARTED else "finished_at"
        with self._engine.begin() as conn:
            known: set[str] = set()
            current: dict[str, tuple[str, int]] = {}
            for i in range(0, len(ids), 500):
                chunk = ids[i:i + 500]
                known.update(conn.execute(select(pa.c.action_id).where(
                    pa.c.plan_id == plan_id, pa.c.action_id.in_(chunk))).scalars())
                for r in conn.execute(select(a.c.action_id, a.c.state, a.c.attempts).where(
                        a.c.plan_id == plan_id, a.c.action_id.in_(chunk))):
                    current[r.action_id] = (r.state, r.attempts)
            if len(known) != len(ids):
                raise LedgerError(f"plan {plan_id} has no action with {len(ids) - len(known)} of those ids")
            new_rows, changed = [], []
            for aid in ids:
                prev = current.get(aid)
                if prev is not None and prev[0] in ACTION_FINAL:
                    if prev[0] == state:
                        continue
                    raise LedgerError(f"plan {plan_id}, action {aid} is already {prev[0]}: it cannot become {state}")
                values = {"state": state, "rows": rows.get(aid), "detail": clean[aid], "updated_at": iso(now),
                          stamp: iso(now)}
                if prev is None:
                    new_rows.append({"plan_id": plan_id, "action_id": aid,
                                     "attempts": 1 if state == STARTED else 0, **values})
                else:
                    changed.append({"b_action_id": aid, "b_prev": prev[0],
                                    "attempts": prev[1] + (1 if state == STARTED else 0), **values})
            if new_rows:
                conn.execute(insert(a), new_rows)
            if changed:
                from sqlalchemy import bindparam

                conn.execute(update(a).where(a.c.plan_id == plan_id, a.c.action_id == bindparam("b_action_id"),
                                             a.c.state == bindparam("b_prev")), changed)
            self._event(conn, "actions_" + state, request_id=plan["request_id"], plan_id=plan_id, actor=actor,
                        now=now, details={"to": state, "count": len(new_rows) + len(changed),
                                          "rows": sum(v for v in rows.values()),
                                          "action_ids": [r["action_id"] for r in new_rows]
                                          + [r["b_action_id"] for r in changed]})

    def pending_actions(self, plan_id: str, action_ids: Iterable[str] | None = None) -> list[str]:
        """The actions (of `action_ids`, default every action of the plan in plan order) not done or skipped."""
        a, pa = ledger_actions, ledger_plan_actions
        with self._engine.connect() as conn:
            if action_ids is None:
                action_ids = list(conn.execute(select(pa.c.action_id).where(pa.c.plan_id == plan_id)
                                               .order_by(pa.c.seq)).scalars())
            finished = set(conn.execute(select(a.c.action_id).where(
                a.c.plan_id == plan_id, a.c.state.in_(ACTION_FINAL))).scalars())
        return [aid for aid in action_ids if aid not in finished]

    def actions(self, plan_id: str) -> list[dict]:
        """Progress of every action of the plan, in plan order (state None: never started)."""
        a, pa = ledger_actions, ledger_plan_actions
        with self._engine.connect() as conn:
            rows = conn.execute(
                select(pa.c.action_id, a.c.state, a.c.rows, a.c.detail, a.c.attempts, a.c.started_at,
                       a.c.finished_at, a.c.updated_at)
                .select_from(pa.outerjoin(a, (a.c.plan_id == pa.c.plan_id) & (a.c.action_id == pa.c.action_id)))
                .where(pa.c.plan_id == plan_id).order_by(pa.c.seq)).mappings().all()
        return [dict(r) for r in rows]

    def action_counts(self, plan_id: str) -> dict[str, int]:
        counts: dict[str, int] = {}
        for r in self.actions(plan_id):
            key = r["state"] or "not_started"
            counts[key] = counts.get(key, 0) + 1
        return counts
