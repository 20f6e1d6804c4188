"""retention_purge: daily, purge what the retention schedule says has expired.

report (the dry run: per rule what has expired and what a legal hold keeps, written to the output
folder) -> plan one rule at a time (mapped) -> approval per plan (Human-in-the-loop) -> execute and verify
-> certificate. With `dry_run` only the report is written. Rules with nothing expired ask no one.
Wiring only: task bodies in plugins/flow_tasks.py, the approval chain in plugins/flow_dag.py.
"""
from __future__ import annotations

from airflow.sdk import task

from plugins import flow_tasks
from plugins.flow_dag import approval_dag
from plugins.flow_params import retention_params


def planning():
    @task
    def report(**context):
        return flow_tasks.retention_report(context)

    @task(max_active_tis_per_dagrun=1)
    def plan(rule: str, **context):
        return flow_tasks.plan_retention_rule(rule, context)

    return plan.expand(rule=report())


retention_purge = approval_dag(
    dag_id="retention_purge",
    doc=__doc__,
    params=retention_params(),
    planning=planning,
    approval_subject="Lethe: approve a retention purge",
    mapped=True,
    schedule="@daily",
    retry_delay_minutes=5,
)
