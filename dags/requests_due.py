"""requests_due: daily list of open requests and their due dates (received + one month).

Overdue requests and those due within `within_days` are logged as warnings (ids and dates only) and
handed to the alert hook named by LETHE_ALERT_HOOK, if any.
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
)
def requests_due():
    @task
    def check(**context):
        return tasks.check_due(context)

    check()


requests_due()
