"""child_data_purge (an Airflow DAG): daily, find personal data of children under the configured age and purge it.

Records whose date of birth makes the person younger than the threshold on the run date (and the rows
linked to them) are planned for deletion; records where only free text suggests a child ("I am 12",
"my son (9)") go to the review list in the plan report, never deleted without a person. plan ->
needs_approval (nothing due: nobody is asked) -> approval (Human-in-the-loop) -> execute and verify
(their addresses go onto the suppression list) -> certificate. Wiring only: plugins/flow_dag.py.
"""
from __future__ import annotations

from plugins import flow_tasks
from plugins.flow_dag import planned_flow
from plugins.flow_params import child_purge_params

child_data_purge = planned_flow(
    dag_id="child_data_purge",
    doc=__doc__,
    params=child_purge_params(),
    plan_body=flow_tasks.plan_child_purge,
    approval_subject="Lethe: approve the child-data purge",
    schedule="@daily",
    retry_delay_minutes=5,
)
