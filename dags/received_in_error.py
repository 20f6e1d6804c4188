"""received_in_error (an Airflow DAG): delete data received in error (a file, a mail sender or message,
a SQL import batch), the whole source or only what it holds about one person, after a person approves.

plan (stored in the ledger; report in the output folder) -> needs_approval -> approval (Human-in-the-loop)
-> execute and verify (senders' and subjects' addresses go onto the suppression list: "received in error")
-> certificate. Wiring only: plugins/flow_dag.py, plugins/flow_tasks.py, rules in pii/engine/flows.py.
"""
from __future__ import annotations

from plugins import flow_tasks
from plugins.flow_dag import planned_flow
from plugins.flow_params import received_in_error_params

received_in_error = planned_flow(
    dag_id="received_in_error",
    doc=__doc__,
    params=received_in_error_params(),
    plan_body=flow_tasks.plan_received_in_error,
    approval_subject="Lethe: approve deleting data received in error",
)
