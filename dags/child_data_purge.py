"""child_data_purge: delete personal data of children under the configured age (daily), after approval.

**What it does.** Records whose date of birth makes the person younger than the threshold (13 unless
configured otherwise) on the run date, and the records linked to them, are planned for deletion. Records
where only free text suggests a child ("I am 12", "my son (9)") are listed for a person's review and never
deleted without one. When nothing is due, nobody is asked.

**The approval.** **Approve** deletes the planned records, verifies, puts their addresses on the
suppression list and writes a certificate; **Reject** changes nothing. The review list is in the plan
report in the output folder.
"""
# An Airflow DAG (the words "airflow" and "dag" let the DAG processor's safe mode pick the file up); wiring only:
# the approval chain is plugins/flow_dag.py, the task bodies plugins/flow_tasks.py, the rules pii/engine/flows.py.
from __future__ import annotations

from plugins import flow_tasks
from plugins.flow_dag import planned_flow
from plugins.flow_params import child_purge_params

child_data_purge = planned_flow(
    dag_id="child_data_purge",
    doc=__doc__,
    params=child_purge_params(),
    plan_body=flow_tasks.plan_child_purge,
    description="Daily: find and delete personal data of young children, after approval",
    approval_subject="Lethe: approve the child-data purge",
    schedule="@daily",
    retry_delay_minutes=5,
)
