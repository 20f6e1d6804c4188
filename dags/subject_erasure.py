"""subject_erasure: erase a person's data (GDPR Art. 17), after a privacy officer approves the plan.

**What it does.** Finds the person in every store (one search task per store), then writes an erasure
plan: for each table or file, what would be deleted, anonymised or redacted, what is kept and why (an
exemption with its legal basis, a legal hold), and what is left for a person's review. Nothing changes
until someone approves.

**Identity first, where required.** When Lethe's configuration requires the requester's identity to be
verified, the `identity` task waits under *Required actions* before anything is searched: choose **Identity
verified** and say how (Method), or **Not verified** (the run stops; the request stays open).

**The approval.** The `approval` task waits under *Required actions*. The page shows the plan as a table per
store, the requester, the due date, the plan's expiry and who may approve. Choose **Approve** (the plan is
carried out, the person is searched for again to verify, and a certificate is written) or **Reject**
(nothing changes); give a **Reason**: it is recorded in the ledger with your name. No answer within the
approval timeout (48 hours by default) counts as Reject.

**How to start it.** As for `subject_access`: the person's identifiers, or the *Request id* of a request
registered beforehand. *Second person approves* stops the requester from approving their own request.
*Include weak findings* also erases name-only findings, only after someone reviewed them.

**What you get.** The certificate (what was done, what was kept and why, anything not verified), linked from
the `certificate` task's **Lethe request** button. Logs hold counts and places, never the person's data.
"""
from __future__ import annotations

from airflow.sdk import TriggerRule, task

from plugins import tasks
from plugins.identity import IdentityCheckOperator
from plugins.flow_dag import approval_dag
from plugins.params import subject_params
from plugins.runtime import UNIT_LABEL


def planning():
    @task(multiple_outputs=True)
    def register(**context):
        return tasks.register_request("erasure", context)

    @task
    def units(**context):
        return tasks.search_units(context)

    @task(max_active_tis_per_dagrun=4, map_index_template=UNIT_LABEL)
    def locate(request_id: str, unit: dict, **context):
        return tasks.locate_unit(request_id, unit, context, kind="erasure")

    @task(multiple_outputs=True, trigger_rule=TriggerRule.NONE_FAILED)
    def plan(request_id: str, results, **context):
        return tasks.plan_erasure(request_id, context, results)

    request = register()
    identity = IdentityCheckOperator(task_id="identity", request_id=request["request_id"])
    search = units()
    identity >> search
    found = locate.partial(request_id=request["request_id"]).expand(unit=search)
    return plan(request["request_id"], found)["plan_id"]


subject_erasure = approval_dag(
    dag_id="subject_erasure",
    doc=__doc__,
    params=subject_params(erasure=True),
    planning=planning,
    description="Erase a person's data after a privacy officer approves the plan; ends with a certificate",
    execute_body=tasks.execute_erasure,
    certificate_body=tasks.write_certificate,
)
