"""The human approval of an erasure plan, as an Airflow Human-in-the-loop task.

`ErasureApprovalOperator` shows the stored plan as Markdown (a table per store: container, action, count,
fields touched, reason and legal basis; exemptions and holds; what is left for review; what was not
searched; requester, due date, plan expiry, who may approve; a link to the plan's console page; no
personal values: `pii.reports.plan_report.approval_markdown`), a **Reason** field, and **Approve** or
**Reject**:

- Approve: ``ErasureEngine.approve(plan_id, <the responding user>, reason=<the Reason>)``; with the run's
  ``require_distinct_approver`` the requester may not approve (the task then fails and the plan stays
  awaiting approval: another person can still approve it, e.g. ``lethe approve PLAN_ID --execute``).
- Reject, or no answer before the response timeout (the default option is Reject):
  ``ErasureEngine.reject(plan_id, ..., <the Reason>)``; nothing is erased. Both land in the ledger's audit
  trail; the plan's ``decision_reason`` keeps the reason.

Who may answer: the user ids in ``LETHE_APPROVERS`` (comma-separated; Airflow's ``assigned_users``, which
the API server enforces: anyone else gets 403). Unset: any user allowed to answer Human-in-the-loop tasks
of the DAG. How long it waits: ``LETHE_APPROVAL_TIMEOUT_HOURS`` (default 48, inside the plan's 72-hour
validity). Both are read when the DAG file is parsed.
"""
from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

from airflow.providers.standard.operators.hitl import HITLOperator
from airflow.sdk import Param
from airflow.sdk.definitions.param import ParamsDict

from plugins.outcomes import lethe_outcomes

APPROVERS_ENV = "LETHE_APPROVERS"
TIMEOUT_ENV = "LETHE_APPROVAL_TIMEOUT_HOURS"
DEFAULT_TIMEOUT_HOURS = 48.0
APPROVE, REJECT = "Approve", "Reject"
TIMEOUT_ACTOR = "airflow: approval timed out"


def approvers_from_env() -> list[dict[str, str]] | None:
    """``LETHE_APPROVERS=dpo,privacy-lead`` -> Airflow HITL users (id = name = the auth manager's user id)."""
    raw = os.environ.get(APPROVERS_ENV, "")
    ids = [p.strip() for p in raw.split(",") if p.strip()]
    return [{"id": i, "name": i} for i in ids] or None


def approval_timeout() -> timedelta:
    raw = os.environ.get(TIMEOUT_ENV)
    try:
        hours = float(raw) if raw else DEFAULT_TIMEOUT_HOURS
    except ValueError:
        hours = DEFAULT_TIMEOUT_HOURS
    return timedelta(hours=hours if hours > 0 else DEFAULT_TIMEOUT_HOURS)


def console_plan_url(plan_id: str) -> str:
    """The plan's page in the Lethe console (``/lethe/plans/<id>``, under ``[api] base_url`` when set)."""
    from plugins.runtime import console_url

    return console_url("plans", plan_id)


def reason_param() -> Param:
    """The form's one field: the decision's reason, for the ledger (Approve and Reject alike)."""
    return Param(None, type=["null", "string"], maxLength=500, source="task", title="Reason",
                 description="Why you approve or reject this plan: recorded in the ledger with your decision "
                             "(no personal details, please).")


def with_reason(params: Any) -> ParamsDict:
    """`params` (what Airflow passes: the DAG's params merged in, all marked source "dag") with the Reason
    field added as the task's own. Airflow merges the DAG's params into an operator's ``params`` before
    ``__init__`` runs, so a default set there would never apply and the form would stay empty."""
    merged = params if isinstance(params, ParamsDict) else ParamsDict(dict(params or {}))
    if "reason" not in merged or getattr(merged.get_param("reason"), "source", None) != "task":
        merged["reason"] = reason_param()
    return merged


def plan_body(plan_id: str, plan_row: dict, request_row: dict, *, distinct: bool,
              approvers: list[dict] | None = None, identity_note: str | None = None) -> str:
    """The approval form's text: the plan as Markdown (`pii.reports.plan_report.approval_markdown`), no
    personal values."""
    from pii.reports.plan_report import approval_markdown

    data = {**plan_row["plan"], "expires_at": plan_row.get("expires_at") or plan_row["plan"].get("expires_at"),
            "request_id": plan_row.get("request_id")}
    names = [str(u.get("id") or u.get("name")) for u in approvers or [] if u.get("id") or u.get("name")]
    return approval_markdown(data, request_row, plan_id=plan_id, approvers=names or None, distinct=distinct,
                             console_url=console_plan_url(plan_id), identity_note=identity_note)


class ErasureApprovalOperator(HITLOperator):
    """Approve or reject a stored erasure plan (see the module docstring)."""

    template_fields = (*HITLOperator.template_fields, "plan_id")

    def __init__(self, *, plan_id: Any, **kwargs) -> None:
        kwargs.setdefault("subject", "Lethe: approve erasure plan {{ ti.xcom_pull(task_ids='plan', key='plan_id') }}")
        kwargs.setdefault("assigned_users", approvers_from_env())
        kwargs.setdefault("response_timeout", approval_timeout())
        kwargs["params"] = with_reason(kwargs.get("params"))
        super().__init__(options=[APPROVE, REJECT], defaults=[REJECT], multiple=False, **kwargs)
        self.plan_id = plan_id

    def _engine(self, context):
        from pii.engine.erasure import ErasureEngine
        from plugins.runtime import load_run_config, task_progress

        return ErasureEngine(load_run_config(context["params"]), progress=task_progress)

    def execute(self, context):
        with lethe_outcomes():
            from pii.core.errors import LedgerError
            from pii.ledger import PLANNED

            engine = self._engine(context)
            row = engine.ledger.get_plan(self.plan_id)
            if row["state"] != PLANNED:
                raise LedgerError(f"plan {self.plan_id} is {row['state']}, not awaiting approval")
            request = engine.ledger.get_request(row["request_id"])
            distinct = bool(context["params"].get("require_distinct_approver"))
            note = context["params"].get("identity_verification")
            self.body = plan_body(self.plan_id, row, request, distinct=distinct, approvers=self.assigned_users,
                                  identity_note=note if isinstance(note, str) and note.strip() else None)
        return super().execute(context)

    def execute_complete(self, context, event: dict[str, Any]) -> dict[str, Any]:
        from airflow.providers.standard.exceptions import HITLTimeoutError

        timed_out = bool(event.get("timedout"))
        try:
            response = super().execute_complete(context=context, event=event)
        except HITLTimeoutError:  # no defaults applied: treat as the default, Reject
            response = {"chosen_options": [REJECT], "params_input": {}, "responded_by_user": None}
            timed_out = True
        chosen = (response["chosen_options"] or [REJECT])[0]
        user = response.get("responded_by_user") or {}
        who = str(user.get("name") or user.get("id") or "").strip() or TIMEOUT_ACTOR
        reason = str((response.get("params_input") or {}).get("reason") or "").strip()
        with lethe_outcomes():
            engine = self._engine(context)
            if chosen == APPROVE and not timed_out:
                engine.approve(self.plan_id, who,
                               require_distinct=bool(context["params"].get("require_distinct_approver")),
                               reason=reason or None)
                decision = "approved"
                self.log.info("plan %s approved by %s", self.plan_id, who)
            else:
                if not reason:
                    reason = "no answer before the approval timeout" if timed_out else "rejected in Airflow"
                engine.reject(self.plan_id, who, reason)
                decision = "rejected"
                self.log.info("plan %s rejected%s: nothing will be erased", self.plan_id,
                              " (timed out)" if timed_out else f" by {who}")
        return {"plan_id": self.plan_id, "decision": decision, "decided_by": who, "timed_out": timed_out}
