"""retention_purge: daily, purge what the retention schedule says has expired.

report (the dry run: per rule what has expired and what a legal hold keeps, written to the output
folder) -> plan one rule at a time (mapped) -> approval per plan (Human-in-the-loop) -> execute and verify
-> certificate. With `dry_run` only the report is written. Rules with nothing expired ask no one.
"""
from __future__ import annotations

from datetime import datetime

from airflow.sdk import dag, task

from plugins import flow_tasks
from plugins.approval import ErasureApprovalOperator
from plugins.flow_params import retention_params
from plugins.runtime import task_defaults


@dag(
    dag_id="retention_purge",
    schedule="@daily",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    params=retention_params(),
    default_args=task_defaults(2, 5),
    tags=["lethe", "privacy"],
    doc_md=__doc__,
)
def retention_purge():
    @task
    def report(**context):
        return flow_tasks.retention_report(context)

    @task(max_active_tis_per_dagrun=1)
    def plan(rule: str, **context):
        return flow_tasks.plan_retention_rule(rule, context)

    @task
    def execute(decision: dict, **context):
        return flow_tasks.execute_plan(decision, context)

    @task
    def certificate(result: dict, **context):
        return flow_tasks.certificate(result, context)

    plan_ids = plan.expand(rule=report())
    approvals = ErasureApprovalOperator.partial(task_id="approval", retries=0,
                                                subject="Lethe: approve a retention purge").expand(plan_id=plan_ids)
    certificate.expand(result=execute.expand(decision=approvals.output))


retention_purge()
