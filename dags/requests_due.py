"""requests_due: the daily check of request deadlines.

**What it does.** Lists every open request with its due date (one month after it was received, or the
extended date). Requests that are overdue, or due within *Warn this many days ahead* (default 7), are
logged as warnings (ids and dates only) and sent to the alert hook, when one is configured. It also
withdraws special-flow runs whose plans expired without an approval.
"""
from __future__ import annotations

from datetime import datetime

from airflow.sdk import dag, task

from plugins import tasks
from plugins.params import due_params
from plugins.runtime import task_defaults


@dag(
    dag_id="requests_due",
    schedule="@daily",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    params=due_params(),
    default_args=task_defaults(1, 5),
    tags=["lethe", "privacy"],
    doc_md=__doc__,
    description="Daily: warn about requests that are overdue or due soon",
)
def requests_due():
    @task
    def check(**context):
        return tasks.check_due(context)

    check()


requests_due()
