"""subject_erasure: erase a subject's data after a person approves the plan.

register -> plan (stored in the ledger) -> approval (Human-in-the-loop: Approve / Reject; no answer in
time = Reject) -> execute and verify (skipped unless approved) -> certificate.
Wiring only: task bodies in plugins/tasks.py, the approval in plugins/approval.py, rules in pii/.
"""
from __future__ import annotations

from datetime import datetime

from airflow.sdk import dag, task

from plugins import tasks
from plugins.approval import ErasureApprovalOperator
from plugins.params import subject_params
from plugins.runtime import task_defaults


@dag(
    dag_id="subject_erasure",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    params=subject_params(erasure=True),
    default_args=task_defaults(2, 2),
    tags=["lethe", "privacy"],
    doc_md=__doc__,
)
def subject_erasure():
    @task(multiple_outputs=True)
    def register(**context):
        return tasks.register_request("erasure", context)

    @task(multiple_outputs=True)
    def plan(request_id: str, **context):
        return tasks.plan_erasure(request_id, context)

    @task
    def execute(decision: dict, **context):
        return tasks.execute_erasure(decision, context)

    @task
    def certificate(report: dict, **context):
        return tasks.write_certificate(report, context)

    request = register()
    planned = plan(request["request_id"])
    approval = ErasureApprovalOperator(task_id="approval", plan_id=planned["plan_id"], retries=0)
    certificate(execute(approval.output))


subject_erasure()
