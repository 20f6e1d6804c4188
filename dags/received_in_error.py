"""received_in_error: delete data your organisation received by mistake, after approval.

**What it does.** Name the store and the source: a file, a mail sender or one message, or a database import
batch. Without a person's email or phone the whole source is deleted; with them, only what the source holds
about that person (their mentions in other records are redacted). Addresses from the deleted records go
on the suppression list ("received in error").

**The approval.** The plan waits for **Approve** (delete, verify, certificate) or **Reject** (nothing
changes), with a **Reason** for the ledger.
"""
# An Airflow DAG (the words "airflow" and "dag" let the DAG processor's safe mode pick the file up); wiring only:
# the approval chain is plugins/flow_dag.py, the task bodies plugins/flow_tasks.py, the rules pii/engine/flows.py.
from __future__ import annotations

from plugins import flow_tasks
from plugins.flow_dag import planned_flow
from plugins.flow_params import received_in_error_params

received_in_error = planned_flow(
    dag_id="received_in_error",
    doc=__doc__,
    params=received_in_error_params(),
    plan_body=flow_tasks.plan_received_in_error,
    description="Delete a file, mail sender, message or import batch received in error, after approval",
    approval_subject="Lethe: approve deleting data received in error",
)
