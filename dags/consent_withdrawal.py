"""consent_withdrawal (an Airflow DAG): someone unsubscribed or withdrew consent: remove them from the stores marked as
marketing lists and keep only a suppression entry so they are never mailed again.

plan -> needs_approval -> approval (Human-in-the-loop) -> execute and verify (suppression entry
"unsubscribed") -> certificate. Wiring only: plugins/flow_dag.py, plugins/flow_tasks.py, pii/engine/flows.py.
"""
from __future__ import annotations

from plugins import flow_tasks
from plugins.flow_dag import planned_flow
from plugins.flow_params import unsubscribe_params

consent_withdrawal = planned_flow(
    dag_id="consent_withdrawal",
    doc=__doc__,
    params=unsubscribe_params(),
    plan_body=flow_tasks.plan_unsubscribe,
    approval_subject="Lethe: approve removing a person from the marketing lists",
)
