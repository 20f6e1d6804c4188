"""consent_withdrawal: someone unsubscribed or withdrew consent, after approval.

**What it does.** Removes the person (by email address, and phone if given) from the stores marked as
marketing lists only; their membership, orders and other records stay. Their address is kept only as a
suppression entry so they are never mailed again.

**The approval.** **Approve** removes them, verifies and writes a certificate; **Reject** changes nothing.
"""
# An Airflow DAG (the words "airflow" and "dag" let the DAG processor's safe mode pick the file up); wiring only:
# the approval chain is plugins/flow_dag.py, the task bodies plugins/flow_tasks.py, the rules pii/engine/flows.py.
from __future__ import annotations

from plugins import flow_tasks
from plugins.flow_dag import planned_flow
from plugins.flow_params import unsubscribe_params

consent_withdrawal = planned_flow(
    dag_id="consent_withdrawal",
    doc=__doc__,
    params=unsubscribe_params(),
    plan_body=flow_tasks.plan_unsubscribe,
    description="Remove a person from the marketing lists and keep a do-not-mail entry, after approval",
    approval_subject="Lethe: approve removing a person from the marketing lists",
)
