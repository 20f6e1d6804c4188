"""Task bodies of the special-flow DAGs (received_in_error, child_data_purge, retention_purge,
consent_withdrawal). They call the same library functions as `lethe received-in-error | child-purge |
retention | unsubscribe` (pii/engine/flows.py) and pass only ids and counts through XCom.

Every flow: plan (stored in the ledger, with a report of what was selected, held and left for review)
-> Human-in-the-loop approval (the erasure approval operator) -> execute and verify -> certificate.
A plan with nothing to change is approved and closed by the plan task itself (nothing to ask a person).
"""
from __future__ import annotations

import json
import logging
from datetime import date
from typing import Any, Mapping

from plugins.outcomes import lethe_outcomes
from plugins.runtime import load_run_config, output_dir, requester_of, task_progress

log = logging.getLogger("lethe.airflow")


def _params(context: Mapping[str, Any]) -> dict:
    return dict(context.get("params") or {})


def _engine(context, *, resolve: bool = True, today: date | None = None):
    """The erasure engine for a task; `today`: the run date the flow decides by (default: the real date)."""
    from pii.engine.erasure import ErasureEngine

    config = load_run_config(_params(context), resolve=resolve)
    return ErasureEngine(config, progress=task_progress, today=today)


def run_date(params: Mapping[str, Any]) -> date:
    from pii.engine.flows import run_date_of

    return run_date_of(params.get("run_date") or None)


def _plan(engine, selection, context, *, include_weak: bool = False) -> dict:
    """Store the plan; write its report (no values) to the output folder; close it at once when empty."""
    from pii.core.host import current_user
    from pii.reports.plan_report import plan_report, write_plan_report
    from pii.engine.runs import RunService, SelectionRun

    params = _params(context)
    runs = RunService(engine)
    plan = runs.store(SelectionRun(selection, include_weak=include_weak), requester_of(params, context))
    for line in plan.lines():
        log.info("%s", line)
    folder = output_dir(engine.config) / selection.flow
    folder.mkdir(parents=True, exist_ok=True)
    path = write_plan_report(plan_report(engine, plan, selection), folder / f"{plan.plan_id}.report.json")
    out = {"plan_id": plan.plan_id, "request_id": plan.request_id, "actions": len(plan.actions),
           "review": len(plan.data["review"]), "held": len(plan.data["held"]), "report": str(path)}
    closed = runs.close_if_empty(plan, current_user())
    out["closed"] = closed.state if closed else None
    if out["closed"]:
        log.info("plan %s: nothing to change (%s)", plan.plan_id, out["closed"])
    return out


def plan_received_in_error(context: Mapping[str, Any]) -> dict:
    from pii.engine.flows import Source, received_in_error
    from pii.core.subject import Subject

    with lethe_outcomes():
        params = _params(context)
        engine = _engine(context)
        subject = None
        if params.get("emails") or params.get("phones") or params.get("names") or params.get("ids"):
            subject = Subject.build(emails=params.get("emails") or [], phones=params.get("phones") or [],
                                    names=params.get("names") or [], ids=params.get("ids") or {},
                                    region=engine.config.default_region)
        source = Source(store=params.get("store") or "", file=params.get("file") or None,
                        sender=params.get("sender") or None, message_id=params.get("message_id") or None,
                        column=params.get("batch_column") or None, value=params.get("batch_value") or None,
                        table=params.get("table") or None)
        return _plan(engine, received_in_error(engine, source, subject), context)


def plan_child_purge(context: Mapping[str, Any]) -> dict:
    from pii.engine.flows import child_purge

    with lethe_outcomes():
        params = _params(context)
        day = run_date(params)
        engine = _engine(context, today=day)
        selection = child_purge(engine, day, threshold=params.get("threshold") or None)
        return _plan(engine, selection, context)


def retention_report(context: Mapping[str, Any]) -> list[str]:
    """The dry run first: per rule, what has expired, what is held; written to the output folder.
    Returns the names of the rules with something to purge."""
    from pii.engine.flows import preview_selection, retention_selection
    from pii.core.retention import load_schedule

    with lethe_outcomes():
        params = _params(context)
        day = run_date(params)
        engine = _engine(context, today=day)
        schedule = load_schedule(engine.config)
        names = list(params.get("rules") or []) or [r.name for r in schedule.rules]
        rows, due = [], []
        for name in names:
            rule = schedule.rule(name)
            plan = preview_selection(engine, retention_selection(engine, rule, day))
            rows.append({"rule": rule.name, "category": rule.category, "cutoff": rule.cutoff(day).isoformat(),
                         "action": rule.action, "to_change": len(plan.actions), "held": len(plan.data["held"]),
                         "legal_hold": rule.legal_hold, "selected": plan.data["selection_report"]})
            log.info("rule %s: %d to %s, %d held", rule.name, len(plan.actions), rule.action, len(plan.data["held"]))
            if plan.actions:
                due.append(rule.name)
        folder = output_dir(engine.config) / "retention"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"dry-run-{day.isoformat()}.json").write_text(
            json.dumps({"run_date": day.isoformat(), "rules": rows}, indent=2, default=str) + "\n", encoding="utf-8")
        return [] if params.get("dry_run") else due


def plan_retention_rule(rule_name: str, context: Mapping[str, Any]) -> str:
    from pii.engine.flows import retention_selection
    from pii.core.retention import load_schedule

    with lethe_outcomes():
        params = _params(context)
        day = run_date(params)
        engine = _engine(context, today=day)
        rule = load_schedule(engine.config).rule(rule_name)
        return _plan(engine, retention_selection(engine, rule, day), context)["plan_id"]


def accounts_review(context: Mapping[str, Any]) -> list[str]:
    """The inactivity review of every account rule (pii.engine.accounts.review): notices, the
    confirmation lists in the output folder. Returns the names of the rules with accounts due for deletion."""
    from pii.engine import accounts

    with lethe_outcomes():
        params = _params(context)
        day = run_date(params)
        engine = _engine(context, today=day)
        rules = accounts.account_rules(engine.config)
        wanted = list(params.get("rules") or []) or [r.name for r in rules]
        due = []
        for name in wanted:
            rule = accounts.account_rule(engine.config, name=name)
            report = accounts.review(engine, rule, day, actor="airflow: inactivity review")
            path = accounts.write_confirmation_list(
                report, output_dir(engine.config) / "accounts" / rule.name / f"confirm-{day.isoformat()}.csv")
            log.info("account rule %s: %d accounts, %d newly notified, %d awaiting confirmation (list: %s), "
                     "%d confirmed, %d due, %d closed", rule.name, report["accounts"], len(report["notified"]),
                     len(report["awaiting"]), path.name, report["confirmed"], len(report["due"]), report["closed"])
            if report["due"]:
                due.append(rule.name)
        return [] if params.get("dry_run") else due


def plan_account_rule(rule_name: str, context: Mapping[str, Any]) -> str:
    """The deletion plan of one rule's accounts whose confirm-by date passed without new activity."""
    from pii.engine import accounts

    with lethe_outcomes():
        params = _params(context)
        day = run_date(params)
        engine = _engine(context, today=day)
        rule = accounts.account_rule(engine.config, name=rule_name)
        report = accounts.review(engine, rule, day, actor="airflow: inactivity review")
        selection = accounts.closure_selection(rule, [e["account"] for e in report["due"]], day)
        return _plan(engine, selection, context)["plan_id"]


def plan_unsubscribe(context: Mapping[str, Any]) -> dict:
    from pii.engine.flows import unsubscribe
    from pii.core.subject import Subject

    with lethe_outcomes():
        params = _params(context)
        engine = _engine(context)
        subject = Subject.build(emails=params.get("emails") or [], phones=params.get("phones") or [],
                                region=engine.config.default_region)
        return _plan(engine, unsubscribe(engine, subject), context)


def execute_plan(decision: Mapping[str, Any], context: Mapping[str, Any]) -> dict:
    """Carry out an approved flow plan and verify it (the same engine call as erasure)."""
    from plugins import tasks

    return tasks.execute_erasure(decision, context)


def certificate(report: Mapping[str, Any], context: Mapping[str, Any]) -> dict:
    from plugins import tasks

    return tasks.write_certificate(report, context)
