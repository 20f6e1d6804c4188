"""consent_withdrawal: someone unsubscribed or withdrew consent: remove them from the stores marked as
marketing lists and keep only a suppression entry so they are never mailed again.

plan -> approval (Human-in-the-loop) -> execute and verify (suppression entry "unsubscribed") -> certificate.
"""
from __future__ import annotations

from datetime import datetime

from airflow.sdk import dag, task

from plugins import flow_tasks
from plugins.approval import ErasureApprovalOperator
from plugins.flow_params import unsubscribe_params
from plugins.runtime import task_defaults


@dag(
    dag_id="consent_withdrawal",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    params=unsubscribe_params(),
    default_args=task_defaults(2, 2),
    tags=["lethe", "privacy"],
    doc_md=__doc__,
)
def consent_withdrawal():
    @task(multiple_outputs=True)
    def plan(**context):
        return flow_tasks.plan_unsubscribe(context)

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
                                       subject="Lethe: approve removing a person from the marketing lists")
    needs_approval(planned["closed"]) >> approval
    certificate(execute(approval.output))


consent_withdrawal()
