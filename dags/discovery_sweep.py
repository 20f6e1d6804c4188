"""discovery_sweep: refresh the PII inventory of every store (SQL, CSV, FTP, Gmail), daily, and write the
data map.

stores -> sweep (one mapped task per store: pii.engine.sweep.sweep_store; incremental: only tables and files
changed since the last sweep are sampled again, unless `full`) -> summary (totals, and the reports:
HTML data map, records of processing and inventory export, pii.reports.datamap.write_reports, into `reports_dir`,
else LETHE_REPORTS_DIR, else reports/ beside stores.yaml). Counts only, never values.
"""
from __future__ import annotations

from datetime import datetime

from airflow.sdk import TriggerRule, dag, task

from plugins import tasks
from plugins.params import sweep_params
from plugins.runtime import task_defaults


@dag(
    dag_id="discovery_sweep",
    schedule="@daily",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    params=sweep_params(),
    default_args=task_defaults(2, 5),
    tags=["lethe", "privacy"],
    doc_md=__doc__,
)
def discovery_sweep():
    @task
    def stores(**context):
        return tasks.store_names(context)

    @task(max_active_tis_per_dagrun=4)
    def sweep(store: str, **context):
        return tasks.sweep_one(store, context)

    @task(trigger_rule=TriggerRule.NONE_FAILED)
    def summary(results, **context):
        return tasks.sweep_summary(results, context)

    summary(sweep.expand(store=stores()))


discovery_sweep()
