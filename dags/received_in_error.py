"""received_in_error: delete data received in error (a file, a mail sender or message, a SQL import
batch), the whole source or only what it holds about one person, after a person approves.

plan (stored in the ledger; report in the output folder) -> approval (Human-in-the-loop) -> execute and
verify (senders' and subjects' addresses go onto the suppression list: "received in error") -> certificate.
"""
from __future__ import annotations

from datetime import datetime

from airflow.sdk import dag, task

from plugins import flow_tasks
from plugins.approval import ErasureApprovalOperator
from plugins.flow_params import received_in_error_params
from plugins.runtime import task_defaults


@dag(
    dag_id="received_in_error",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    params=received_in_error_params(),
    default_args=task_defaults(2, 2),
    tags=["lethe", "privacy"],
    doc_md=__doc__,
)
def received_in_error():
    @task(multiple_outputs=True)
    def plan(**context):
        return flow_tasks.plan_received_in_error(context)

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
                                       subject="Lethe: approve deleting data received in error")
    needs_approval(planned["closed"]) >> approval
    certificate(execute(approval.output))


received_in_error()
