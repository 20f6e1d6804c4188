"""subject_access: answer a subject-access request (GDPR Art. 15).

**What it does.** Finds everything Lethe can see about one person in every connected store and writes
their access package: a readable summary and their data per store, with what each store is for, its legal
basis and how long it keeps data. Nothing is changed in any store.

**How to start it.** Trigger it with the person's email addresses, names, phone numbers or other ids, or
only with the *Request id* of a request registered beforehand (then the identifiers never enter Airflow).
Only the fields you need are required; a malformed email address is refused before the run starts. Set
*Received on* to the day the request arrived: the answer is due one month later.

**What you get.** One search task per store (named by store), then the package (its folder is in the
`assemble` task's result) and the request's status in the ledger: *completed* when every store was
searched in full, *in progress* when a store could not be searched (run it again by id). The `record`
task's **Lethe request** link opens the request in the Lethe console. Logs hold counts and places, never
the person's data.

**Portable copy.** Tick *Portable copy* (`"portable": true` in the run conf) to add `portable.zip` to the
package: the data the person provided (their own records and those linked to them, not mentions of them in
other people's records) as JSON and CSV, with a data dictionary (a JSON Schema per table or file). It is
encrypted like the rest of the package when a package key is set.

**Their rights.** Every answer tells the person how to exercise each of their rights and whom to contact:
the controller, its data protection officer and the supervisory authority as `controller:` in stores.yaml
names them (where one is missing, the answer says it is not configured).
"""
from __future__ import annotations

from datetime import datetime

from airflow.sdk import TriggerRule, dag, task

from plugins import tasks
from plugins.identity import IdentityCheckOperator
from plugins.params import subject_params
from plugins.runtime import UNIT_LABEL, link_to_request_page, task_defaults


@dag(
    dag_id="subject_access",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    params=subject_params(erasure=False),
    default_args=task_defaults(2, 2),
    tags=["lethe", "privacy"],
    doc_md=__doc__,
    description="Answer a subject-access request: find a person's data in every store and write their access package",
)
def subject_access():
    @task(multiple_outputs=True)
    def register(**context):
        return tasks.register_request("access", context)

    @task
    def units(**context):
        return tasks.search_units(context)

    @task(max_active_tis_per_dagrun=4, map_index_template=UNIT_LABEL)
    def locate(request_id: str, unit: dict, **context):
        return tasks.locate_unit(request_id, unit, context)

    @task(trigger_rule=TriggerRule.NONE_FAILED)
    def assemble(request_id: str, results, **context):
        return tasks.assemble_package(request_id, results, context)

    @task
    def record(request_id: str, package: dict, **context):
        return tasks.record_access(request_id, package, context)

    request = register()
    identity = IdentityCheckOperator(task_id="identity", request_id=request["request_id"])
    search = units()
    identity >> search
    found = locate.partial(request_id=request["request_id"]).expand(unit=search)
    package = assemble(request["request_id"], found)
    link_to_request_page(record(request["request_id"], package))


subject_access()
