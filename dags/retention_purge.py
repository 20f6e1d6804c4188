"""retention_purge: apply the retention schedule (daily), after approval.

**What it does.** First writes a dry-run report: per retention rule, what has passed its retention period
and what a legal hold keeps. Then each rule with something to purge gets its own plan and its own
approval (tasks named by rule and plan): **Approve** deletes or anonymises what expired, then verifies and
writes a certificate; **Reject** changes nothing. Rules with nothing expired ask no one.

**How to start it.** Scheduled daily; by hand you may name only some *Rules*, a *Run date*, or tick *Dry run
only* to write the report and change nothing.
"""
from __future__ import annotations

from airflow.sdk import task

from plugins import flow_tasks
from plugins.flow_dag import approval_dag
from plugins.flow_params import retention_params
from plugins.runtime import RULE_LABEL


def planning():
    @task
    def report(**context):
        return flow_tasks.retention_report(context)

    @task(max_active_tis_per_dagrun=1, map_index_template=RULE_LABEL)
    def plan(rule: str, **context):
        return flow_tasks.plan_retention_rule(rule, context)

    return plan.expand(rule=report())


retention_purge = approval_dag(
    dag_id="retention_purge",
    doc=__doc__,
    params=retention_params(),
    planning=planning,
    description="Daily: purge what the retention schedule says has expired, one approval per rule",
    approval_subject="Lethe: approve a retention purge",
    mapped=True,
    schedule="@daily",
    retry_delay_minutes=5,
)
