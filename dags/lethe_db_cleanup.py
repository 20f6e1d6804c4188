"""lethe_db_cleanup: keep Airflow's own records free of old personal data (daily).

**What it does.** Runs that carry a person's identifiers in their form (access, erasure, received in error,
consent withdrawal) are deleted from Airflow's database after LETHE_AIRFLOW_RUN_RETENTION_DAYS (default
30): the runs, their task records, results, approvals and audit-log rows, with no archive copy. Lethe's
own ledger keeps what must be kept. Old work folders are removed too.

**Set-up.** Name Airflow's database in a connection `lethe_airflow_db` (tasks cannot reach it otherwise);
without it the clean-up task is skipped and says so.
"""
from __future__ import annotations

import os
from datetime import datetime

from airflow.sdk import dag, task

from plugins import tasks
from plugins.runtime import task_defaults

IDENTIFIER_DAGS = ("subject_access", "subject_erasure", "received_in_error", "consent_withdrawal")
TABLES = ("dag_run", "log")  # dag_run brings its dependants: task instances, XComs, rendered fields, HITL
RETENTION_DAYS = float(os.environ.get("LETHE_AIRFLOW_RUN_RETENTION_DAYS") or 30)


@dag(
    dag_id="lethe_db_cleanup",
    schedule="@daily",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args=task_defaults(1, 10),
    tags=["lethe", "maintenance"],
    doc_md=__doc__,
    description="Daily: delete old runs that carried identifiers from Airflow's database",
)
def lethe_db_cleanup():
    @task
    def clean_runs():
        return tasks.clean_airflow_runs(IDENTIFIER_DAGS, TABLES, RETENTION_DAYS)

    @task
    def work_folders(**context):
        return tasks.remove_stale_work(context, max_age_days=RETENTION_DAYS)

    clean_runs() >> work_folders()


lethe_db_cleanup()
