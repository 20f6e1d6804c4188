"""subject_access: answer a subject-access request (GDPR Art. 15) with an access package.

register, units -> locate (one mapped task per store, and per group of tables in a big SQL store: store option
table_group, default 25) -> assemble the package -> record in the ledger.
Wiring only: the task bodies are in plugins/tasks.py, the rules in pii/ (the same as `lethe access`).
"""
from __future__ import annotations

from datetime import datetime

from airflow.sdk import TriggerRule, dag, task

from plugins import tasks
from plugins.params import subject_params
from plugins.runtime import task_defaults


@dag(
    dag_id="subject_access",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    params=subject_params(erasure=False),
    default_args=task_defaults(2, 2),
    tags=["lethe", "privacy"],
    doc_md=__doc__,
)
def subject_access():
    @task(multiple_outputs=True)
    def register(**context):
        return tasks.register_request("access", context)

    @task
    def units(**context):
        return tasks.search_units(context)

    @task(max_active_tis_per_dagrun=4)
    def locate(request_id: str, unit: dict, **context):
        return tasks.locate_unit(request_id, unit, context)

    @task(trigger_rule=TriggerRule.NONE_FAILED)
    def assemble(request_id: str, results, **context):
        return tasks.assemble_package(request_id, results, context)

    @task
    def record(request_id: str, package: dict, **context):
        return tasks.record_access(request_id, package, context)

    request = register()
    found = locate.partial(request_id=request["request_id"]).expand(unit=units())
    package = assemble(request["request_id"], found)
    record(request["request_id"], package)


subject_access()
