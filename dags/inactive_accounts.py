"""inactive_accounts: accounts in a file drop with no activity for the promised period (daily), after approval.

**What it does.** For each account rule (one folder per account in a partner drop), looks at when each
account last received a file. An account inactive for longer than the rule says gets a notice: it is added
to the confirmation list (account, last activity, confirm-by date) in the output folder, for the mailing
tool that asks the holder whether the account is still needed. New files in the account confirm it.
When the confirm-by date passes without new activity, the rule's accounts are planned for deletion, with
their own approval: **Approve** deletes their files, verifies and writes a certificate; **Reject** changes
nothing. Rules with nothing due ask no one.

**How to start it.** Scheduled daily; by hand you may name only some *Account rules*, a *Run date*, or tick
*Review only* to send notices and write the lists without planning any deletion. A holder's own request to
close an account is registered with `lethe close-account`.
"""
from __future__ import annotations

from airflow.sdk import task

from plugins import flow_tasks
from plugins.flow_dag import approval_dag
from plugins.flow_params import accounts_params
from plugins.runtime import RULE_LABEL


def planning():
    @task
    def review(**context):
        return flow_tasks.accounts_review(context)

    @task(max_active_tis_per_dagrun=1, map_index_template=RULE_LABEL)
    def plan(rule: str, **context):
        return flow_tasks.plan_account_rule(rule, context)

    return plan.expand(rule=review())


inactive_accounts = approval_dag(
    dag_id="inactive_accounts",
    doc=__doc__,
    params=accounts_params(),
    planning=planning,
    description="Daily: notify inactive accounts, delete those not confirmed in time, after approval",
    approval_subject="Lethe: approve deleting inactive accounts",
    mapped=True,
    schedule="@daily",
    retry_delay_minutes=5,
)
