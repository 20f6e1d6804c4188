"""child_data_purge: daily, find personal data of children under the configured age and purge it.

Records whose date of birth makes the person younger than the threshold on the run date are planned for
deletion; records where only free text suggests a child ("I am 12", "my son (9)") go to the review list
in the plan report, never deleted without a person. plan -> approval (Human-in-the-loop) -> execute and
verify (their addresses go onto the suppression list) -> certificate. No approval is asked for when
nothing is due.
"""
from __future__ import annotations

from datetime import datetime

from airflow.sdk import dag, task

from plugins import flow_tasks
from plugins.approval import ErasureApprovalOperator
from plugins.flow_params import child_purge_params
from plugins.runtime import task_defaults


@dag(
    dag_id="child_data_purge",
    schedule="@daily",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    params=child_purge_params(),
    default_args=task_defaults(2, 5),
    tags=["lethe", "privacy"],
    doc_md=__doc__,
)
def child_data_purge():
    @task(multiple_outputs=True)
    def plan(**context):
        return flow_tasks.plan_child_purge(context)

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
                                       subject="Lethe: approve the child-data purge")
    needs_approval(planned["closed"]) >> approval
    certificate(execute(approval.output))


child_data_purge()
