"""subject_erasure: erase a subject's data after a person approves the plan.

register, units -> locate (one mapped task per store, and per group of tables in a big SQL store: store
option table_group, default 25) -> plan (decides what was found; stored in the ledger) -> approval
(Human-in-the-loop: Approve / Reject; no answer in time = Reject) -> execute and verify (skipped unless
approved) -> certificate.
Wiring only: task bodies in plugins/tasks.py, the approval in plugins/approval.py, rules in pii/.
"""
from __future__ import annotations

from datetime import datetime

from airflow.sdk import TriggerRule, dag, task

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

    @task
    def units(**context):
        return tasks.search_units(context)

    @task(max_active_tis_per_dagrun=4)
    def locate(request_id: str, unit: dict, **context):
        return tasks.locate_unit(request_id, unit, context, kind="erasure")

    @task(multiple_outputs=True, trigger_rule=TriggerRule.NONE_FAILED)
    def plan(request_id: str, results, **context):
        return tasks.plan_erasure(request_id, context, results)

    @task
    def execute(decision: dict, **context):
        return tasks.execute_erasure(decision, context)

    @task
    def certificate(report: dict, **context):
        return tasks.write_certificate(report, context)

    request = register()
    found = locate.partial(request_id=request["request_id"]).expand(unit=units())
    planned = plan(request["request_id"], found)
    approval = ErasureApprovalOperator(task_id="approval", plan_id=planned["plan_id"], retries=0)
    certificate(execute(approval.output))


subject_erasure()
