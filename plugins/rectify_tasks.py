"""Task bodies of the subject_rectification DAG: register (identifiers and new values sealed in Lethe's
request store) -> plan (stored in the ledger; closed at once when there is nothing to change) -> the
Human-in-the-loop approval -> execute and verify -> certificate. The same library calls as `lethe rectify`
(pii/engine/rectify.py); only ids and counts pass through XCom, nothing personal is logged.
"""
from __future__ import annotations

import logging
from typing import Any, Mapping

from plugins.outcomes import lethe_outcomes
from plugins.runtime import load_run_config, requester_of, selected_stores, task_progress

log = logging.getLogger("lethe.airflow")
NEW_FIELDS = {"new_email": "email", "new_phone": "phone", "new_name": "name"}


def rectification_params() -> dict:
    """subject_rectification's trigger form: the subject's identifiers (as subject_erasure's form) and the new
    values."""
    from airflow.sdk import Param

    from plugins.params import email_pattern, optional, subject_params

    params = subject_params(erasure=True)
    params["include_weak"] = Param(False, type=optional("boolean"), title="Include weak findings",
                                   description="Also rectify name-only findings: only after a person reviewed them.")
    params["new_email"] = Param(None, type=["null", "string"], format="idn-email", pattern=email_pattern(),
                                title="New email", description="The corrected email address (empty: unchanged).")
    params["new_phone"] = Param(None, type=["null", "string"], maxLength=40, title="New phone",
                                description="The corrected phone number, any format (empty: unchanged).")
    params["new_name"] = Param(None, type=["null", "string"], maxLength=200, title="New name",
                               description='The corrected name, "First Last" or "Last, First" (empty: unchanged).')
    params["include_mentions"] = Param(False, type=optional("boolean"), title="Replace mentions",
                                       description="Also replace mentions of the old value in other people's "
                                                   "records (after someone reviewed them).")
    return params


def _params(context: Mapping[str, Any]) -> dict:
    return dict(context.get("params") or {})


def _engine(params: Mapping[str, Any], *, resolve: bool = False):
    from pii.engine.erasure import ErasureEngine

    return ErasureEngine(load_run_config(params, resolve=resolve), progress=task_progress)


def changes_from_conf(params: Mapping[str, Any], region: str):
    """The run's new values (``new_email``, ``new_phone``, ``new_name``); empty fields are not changes."""
    from pii.core.errors import InvalidIdentifier
    from pii.core.rectify import changes_of

    given = {kind: params.get(key) for key, kind in NEW_FIELDS.items() if params.get(key) not in (None, "")}
    if not given:
        raise InvalidIdentifier("give at least one new value: new_email, new_phone or new_name")
    return changes_of(given, region)


def register_rectification(context: Mapping[str, Any]) -> dict:
    """Register the request (or pick up one registered beforehand by `request_id`, its new values sealed
    with it). Returns ids only."""
    from pii.core.errors import InvalidIdentifier, LedgerError
    from pii.engine import rectify
    from pii.engine.requests import has_identifiers, parse_received, subject_from_conf
    from plugins.tasks import run_request_id

    with lethe_outcomes():
        params = _params(context)
        engine = _engine(params)
        config = engine.config
        request_id = params.get("request_id") or None
        if has_identifiers(params):
            subject = subject_from_conf(params, config.default_region)
            changes = changes_from_conf(params, subject.region)
            request_id = rectify.register(
                engine, subject, changes, requester_of(params, context),
                received_at=parse_received(params.get("received_at")),
                include_mentions=bool(params.get("include_mentions")),
                request_id=request_id or run_request_id(context))  # a retried task registers nothing twice
            source = "run conf"
        elif request_id:
            row = engine.ledger.get_request(request_id)
            if row["kind"] != rectify.KIND:
                raise LedgerError(f"request {request_id} is a {row['kind']} request, not {rectify.KIND}")
            if row["status"] != "open":
                raise LedgerError(f"request {request_id} is {row['status']}: register a new request")
            rectify.RectifyTarget.from_request(engine, request_id)  # sealed identifiers and new values present
            source = "request store"
        else:
            raise InvalidIdentifier("give the subject's identifiers (emails, names, phones, ids) and the new "
                                    "values, or the request_id of a rectification registered beforehand")
        row = engine.ledger.get_request(request_id)
        log.info("rectification request %s (from the %s), received %s, due %s", request_id, source,
                 row["received_at"], row["due_at"])
        return {"request_id": request_id, "received_at": row["received_at"], "due_at": row["due_at"]}


def plan_rectification(request_id: str, context: Mapping[str, Any]) -> dict:
    """Plan the request and store the plan awaiting approval (a retry reuses the plan still waiting); a
    plan with nothing to change is approved and closed here (nobody need be asked)."""
    from pii.core.host import current_user
    from pii.core.plans import Plan
    from pii.engine import rectify
    from pii.engine.requests import check_identity
    from pii.engine.runs import RunService
    from pii.ledger import PLANNED

    with lethe_outcomes():
        params = _params(context)
        engine = _engine(params, resolve=True)
        check_identity(engine.ledger, engine.config, request_id)  # the identity task confirmed it, if required
        waiting = [p for p in engine.ledger.plans_for(request_id) if p["state"] == PLANNED]
        if waiting:
            row = engine.ledger.get_plan(waiting[-1]["plan_id"])
            plan = Plan(row["plan"], plan_id=row["plan_id"], request_id=request_id)
        else:
            plan = rectify.plan_request(engine, request_id, requester_of(params, context),
                                        include_weak=bool(params.get("include_weak")),
                                        stores=selected_stores(engine.config, params))
        for line in plan.lines() + rectify.plan_lines(plan.data):
            log.info("%s", line)
        closed = RunService(engine).close_if_empty(plan, current_user())
        if closed:
            log.info("plan %s: nothing to rectify (%s)", plan.plan_id, closed.state)
        return {"plan_id": plan.plan_id, "request_id": request_id, "actions": len(plan.actions),
                "review": len(plan.data["review"]), "closed": closed.state if closed else None}
