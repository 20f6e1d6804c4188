"""subject_rectification: correct a person's email, phone or name (GDPR Art. 16), after a privacy officer
approves the plan.

**What it does.** Finds the person in every store as an access request would, then writes a plan: every
identifier field (email, phone, name, given and family name columns) that holds the old value gets the new
one, written in that field's own form (E.164 or national phone, lower-case email, "Last, First" or split
names). Mentions of the old value in other people's records are listed for review and left alone unless
*Replace mentions* is set. Mail cannot be changed in place: messages are listed as "not changeable: review"
and never called rectified. Nothing changes until someone approves.

**The approval.** The `approval` task waits under *Required actions*: **Approve** (the fields are rewritten,
the person is searched for again to verify that no identifier field holds an old value and the new values
stand where the old ones stood, and a certificate is written) or **Reject** (nothing changes), with a
**Reason** for the ledger. No answer within the approval timeout counts as Reject.

**How to start it.** The person's current identifiers and at least one new value (*New email*, *New phone*,
*New name*); or the *Request id* of a rectification registered beforehand (identifiers and new values then
stay in Lethe's encrypted request store). If an old email or phone is on the suppression list, the new one
is added with the same reason.

**What you get.** The certificate (fields rectified by kind, what was left for review, anything not
verified). Logs hold counts and places, never the old or the new values.
"""
# An Airflow DAG (the words "airflow" and "dag" let the DAG processor's safe mode pick the file up); wiring only:
# the approval chain is plugins/flow_dag.py, the task bodies plugins/rectify_tasks.py, the rules pii/engine/rectify.py.
from __future__ import annotations

from airflow.sdk import task

from plugins import rectify_tasks, tasks
from plugins.flow_dag import approval_dag
from plugins.identity import IdentityCheckOperator


def planning():
    @task(multiple_outputs=True)
    def register(**context):
        return rectify_tasks.register_rectification(context)

    @task(multiple_outputs=True)
    def plan(request_id: str, **context):
        return rectify_tasks.plan_rectification(request_id, context)

    @task.short_circuit
    def needs_approval(closed):
        return not closed

    request = register()
    identity = IdentityCheckOperator(task_id="identity", request_id=request["request_id"])
    planned = plan(request["request_id"])
    identity >> planned
    return planned["plan_id"], needs_approval(planned["closed"])


subject_rectification = approval_dag(
    dag_id="subject_rectification",
    doc=__doc__,
    params=rectify_tasks.rectification_params(),
    planning=planning,
    description="Correct a person's email, phone or name everywhere after approval; ends with a certificate",
    approval_subject="Lethe: approve rectification plan {{ ti.xcom_pull(task_ids='plan', key='plan_id') }}",
    execute_body=tasks.execute_erasure,
    certificate_body=tasks.write_certificate,
)
