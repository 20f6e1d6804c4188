"""discovery_sweep: keep the map of personal data up to date (daily).

**What it does.** Samples every store (databases, CSV exports, FTP drops, mailboxes) and records which
columns and fields hold which kind of personal data: the inventory behind the data map and the records of
processing. Only tables and files that changed since the last sweep are sampled again, unless you ask for a
*Full sweep*. Nothing in any store is changed.

**What you get.** One task per store (named by store), then the reports: the HTML data map, the records of
processing and the inventory export, in the reports folder. Logs and results hold counts, never values.
"""
from __future__ import annotations

from datetime import datetime

from airflow.sdk import TriggerRule, dag, task

from plugins import tasks
from plugins.params import sweep_params
from plugins.runtime import STORE_LABEL, task_defaults


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
    description="Daily: refresh the inventory of where personal data is kept and write the data map",
)
def discovery_sweep():
    @task
    def stores(**context):
        return tasks.store_names(context)

    @task(max_active_tis_per_dagrun=4, map_index_template=STORE_LABEL)
    def sweep(store: str, **context):
        return tasks.sweep_one(store, context)

    @task(trigger_rule=TriggerRule.NONE_FAILED)
    def summary(results, **context):
        return tasks.sweep_summary(results, context)

    summary(sweep.expand(store=stores()))


discovery_sweep()
