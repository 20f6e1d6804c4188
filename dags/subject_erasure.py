"""subject_erasure: erase a subject's data after a person approves the plan.

register, units -> locate (one mapped task per store, and per group of tables in a big SQL store: store
option table_group, default 25) -> plan (decides what was found; stored in the ledger) -> approval
(Human-in-the-loop: Approve / Reject; no answer in time = Reject) -> execute and verify (skipped unless
approved) -> certificate.
Wiring only: task bodies in plugins/tasks.py, the approval and the rest of the chain in plugins/flow_dag.py,
rules in pii/.
"""
from __future__ import annotations

from airflow.sdk import TriggerRule, task

from plugins import tasks
from plugins.flow_dag import approval_dag
from plugins.params import subject_params


def planning():
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

    request = register()
    found = locate.partial(request_id=request["request_id"]).expand(unit=units())
    return plan(request["request_id"], found)["plan_id"]


subject_erasure = approval_dag(
    dag_id="subject_erasure",
    doc=__doc__,
    params=subject_params(erasure=True),
    planning=planning,
    execute_body=tasks.execute_erasure,
    certificate_body=tasks.write_certificate,
)
