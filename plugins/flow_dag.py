"""Every approval DAG, built by one factory: planning tasks (the flow's own) -> approval (Human-in-the-loop:
Approve / Reject; no answer in time = Reject) -> execute (and verify; skipped unless approved) ->
certificate. The DAG files name their flow and, where planning is more than one task, wire its tasks.

- `approval_dag`: the general form. `planning()` runs inside the DAG and returns the plan id (an XCom
  reference; or (plan id, a task the approval must also wait for)) or, with ``mapped=True``, a list of
  plan ids (one approval, execution and certificate each);
  used by subject_erasure (register, units, locate, plan) and retention_purge (report, plan per rule).
- `planned_flow`: the single-plan special flows (received in error, child purge, consent withdrawal):
  plan (stored in the ledger, report in the output folder) -> needs_approval (nothing due: the rest is
  skipped, nobody is asked) -> approval -> execute -> certificate.

Task bodies are in plugins/tasks.py and plugins/flow_tasks.py; every rule is in pii/. Each DAG carries a
`description` (one line, in the DAG list) and `doc` (the DAG's Docs, written for privacy staff); mapped tasks
are named by plan (`map_index_template`); the certificate task links to the request's console page.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any, Callable, Mapping

from airflow.sdk import dag, task

from plugins import flow_tasks
from plugins.approval import ErasureApprovalOperator
from plugins.runtime import DECISION_LABEL, PLAN_LABEL, REPORT_LABEL, link_to_request_page, task_defaults

Body = Callable[[Mapping[str, Any], Mapping[str, Any]], dict]  # (upstream result, context) -> XCom summary


def approval_dag(*, dag_id: str, doc: str, description: str, params: dict, planning: Callable[[], Any],
                 execute_body: Body = flow_tasks.execute_plan, certificate_body: Body = flow_tasks.certificate,
                 approval_subject: str | None = None, mapped: bool = False, schedule: str | None = None,
                 retry_delay_minutes: float = 2):
    """Build the DAG `dag_id`: the tasks `planning()` defines, then approval, execute and certificate."""

    @dag(
        dag_id=dag_id,
        schedule=schedule,
        start_date=datetime(2026, 1, 1),
        catchup=False,
        max_active_runs=1 if schedule else 16,
        params=params,
        default_args=task_defaults(2, retry_delay_minutes),
        tags=["lethe", "privacy"],
        doc_md=doc,
        description=description,
    )
    def flow():
        @task(map_index_template=DECISION_LABEL)
        def execute(decision: dict, **context):
            return execute_body(decision, context)

        @task(map_index_template=REPORT_LABEL)
        def certificate(report: dict, **context):
            return certificate_body(report, context)

        planned = planning()
        gate = None
        if isinstance(planned, tuple):  # (plan id, a task the approval must also wait for)
            planned, gate = planned
        subject = {"subject": approval_subject} if approval_subject else {}
        if mapped:
            approvals = ErasureApprovalOperator.partial(task_id="approval", retries=0, map_index_template=PLAN_LABEL,
                                                        **subject).expand(plan_id=planned)
            certificate.expand(report=execute.expand(decision=approvals.output))
        else:
            approval = ErasureApprovalOperator(task_id="approval", plan_id=planned, retries=0, **subject)
            if gate is not None:
                gate >> approval
            link_to_request_page(certificate(execute(approval.output)))

    return flow()


def planned_flow(*, dag_id: str, doc: str, description: str, params: dict,
                 plan_body: Callable[[Mapping[str, Any]], dict],
                 approval_subject: str, schedule: str | None = None, retry_delay_minutes: float = 2):
    """A single-plan special flow; `plan_body(context)` stores the flow's plan and returns its XCom summary
    (plan_id, closed, counts)."""

    def planning():
        @task(multiple_outputs=True)
        def plan(**context):
            return plan_body(context)

        @task.short_circuit
        def needs_approval(closed):
            return not closed

        planned = plan()
        return planned["plan_id"], needs_approval(planned["closed"])

    return approval_dag(dag_id=dag_id, doc=doc, description=description, params=params, planning=planning,
                        approval_subject=approval_subject, schedule=schedule,
                        retry_delay_minutes=retry_delay_minutes)
