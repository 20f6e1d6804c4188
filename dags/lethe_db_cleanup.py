"""lethe_db_cleanup: delete old runs of the flows that take a subject's identifiers in their run conf
from Airflow's metadata database (runs, task instances, XComs, rendered fields, approvals, audit-log
rows), without archiving them; then delete stale Lethe work folders.

Retention: LETHE_AIRFLOW_RUN_RETENTION_DAYS (default 30), read when the file is parsed. The clean-up
runs `airflow db clean`; Airflow 3 keeps task processes away from the metadata database, so name it in
an Airflow connection `lethe_airflow_db` (or the id in LETHE_AIRFLOW_DB_CONN_ID); without one the task
is skipped and says so.
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
