"""The shape every single-plan special flow shares, as one DAG factory (the DAG files only name their
flow): plan (stored in the ledger, report in the output folder) -> needs_approval (nothing due: the rest
is skipped, nobody is asked) -> approval (Human-in-the-loop: Approve / Reject) -> execute (and verify)
-> certificate. Task bodies are in plugins/flow_tasks.py; every rule is in pii/flows.py."""
from __future__ import annotations

from datetime import datetime
from typing import Any, Callable, Mapping

from airflow.sdk import dag, task

from plugins import flow_tasks
from plugins.approval import ErasureApprovalOperator
from plugins.runtime import task_defaults


def planned_flow(*, dag_id: str, doc: str, params: dict, plan_body: Callable[[Mapping[str, Any]], dict],
                 approval_subject: str, schedule: str | None = None, retry_delay_minutes: float = 2):
    """Build the DAG `dag_id`; `plan_body(context)` stores the flow's plan and returns its XCom summary
    (plan_id, closed, counts)."""

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
    )
    def flow():
        @task(multiple_outputs=True)
        def plan(**context):
            return plan_body(context)

        @task.short_circuit
        def needs_approval(closed):
            return not closed

        @task
        def execute(decision: dict, **context):
            return flow_tasks.execute_plan(decision, context)

        @task
        def certificate(report: dict, **context):
            return flow_tasks.certificate(report, context)

        planned = plan()
        approval = ErasureApprovalOperator(task_id="approval", plan_id=planned["plan_id"], retries=0,
                                           subject=approval_subject)
        needs_approval(planned["closed"]) >> approval
        certificate(execute(approval.output))

    return flow()
