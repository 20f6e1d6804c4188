"""subject_restriction: restrict processing of a person's data, lift the restriction, or record an objection.

**What it does.** *restrict* (a reason is required; *Restricted until* optional): from now on the person's
records are held by every scheduled flow that would change or use them: retention purges, the child-data
purge, data received in error, and the mailing suppression export leaves them out. Their data can still be
accessed, and an explicit erasure request still erases it. *release* lifts the restriction (its reason is
shredded). *object* records an objection to one purpose (marketing, profiling or analytics), which
`lethe restriction check --purpose` answers for pipelines.

**How to start it.** Give the person's email addresses, phone numbers or other identifiers, or only the
request id of a request registered beforehand with `lethe register`, so that the identifiers never enter
Airflow. A name alone cannot be matched. The reason is kept in the run's settings too: do not name
people in it (the command line seals it in the ledger only).

**Objection to marketing.** This records the objection; to take the person off the marketing lists, also
trigger **consent_withdrawal** (it shows the plan for approval first).

**What comes out.** Nothing personal: the action, how many identifiers were recorded, and the end date.
No data changes here, so there is no approval step; every change is in the ledger's audit trail.
"""
# An Airflow DAG (the words "airflow" and "dag" let the DAG processor's safe mode pick the file up).
from __future__ import annotations

from datetime import datetime

from airflow.sdk import dag, task

from plugins import restriction_tasks
from plugins.runtime import task_defaults


@dag(
    dag_id="subject_restriction",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    params=restriction_tasks.restriction_params(),
    default_args=task_defaults(0, 1),
    tags=["lethe", "privacy"],
    doc_md=__doc__,
    description="Restrict processing of a person's data, release it, or record an objection to a purpose",
)
def subject_restriction():
    @task
    def record(**context):
        return restriction_tasks.record(context)

    record()


subject_restriction()
