"""What the DAG tests share (tests/airflow/test_dags.py, tests/airflow/test_flow_dags.py): a freshly parsed DAG, a run's
XComs and task states, the ledger of a demo world, and the `answer` fixture that decides how the
Human-in-the-loop approval is answered."""
from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

DAGS = Path(__file__).resolve().parent.parent / "dags"


def flow(dag_id: str):
    """A freshly parsed DAG for one run: `dag.test()` keeps a run's params on the DAG object, so a DAG
    reused across runs would see the previous run's identifiers (a test artefact: each real run gets
    fresh params from the serialized DAG)."""
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(DAGS / f"{dag_id}.py")).dags[dag_id]


def xcoms(dag_id: str, run_id: str) -> dict[tuple[str, str, int], object]:
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as s:
        rows = s.execute(select(XComModel.task_id, XComModel.key, XComModel.map_index, XComModel.value)
                         .where(XComModel.dag_id == dag_id, XComModel.run_id == run_id)).all()
    def value(v):
        try:
            return json.loads(v) if isinstance(v, str) else v
        except ValueError:
            return v

    return {(t, k, m): value(v) for t, k, m, v in rows}


def states(dr) -> dict[str, str]:
    return {(ti.task_id if ti.map_index < 0 else f"{ti.task_id}[{ti.map_index}]"): str(ti.state)
            for ti in dr.get_task_instances()}


@pytest.fixture
def answer(monkeypatch):
    """answer(option, user=..., reason=..., timed_out=...): how the approval task will be answered.
    Records the body the operator rendered (the text an approver reads)."""
    from airflow.providers.standard.operators.hitl import HITLOperator

    seen: dict = {}

    def arrange(option: str, user: str | None = "dpo", reason: str | None = None, timed_out: bool = False):
        def fake_execute(self, context):
            seen["subject"], seen["body"], seen["assigned_users"] = self.subject, self.body, self.assigned_users
            return self.execute_complete(context, {
                "chosen_options": [option], "params_input": {"reason": reason},
                "responded_at": dt.datetime.now(dt.timezone.utc),
                "responded_by_user": None if user is None else {"id": user, "name": user},
                "timedout": timed_out})

        monkeypatch.setattr(HITLOperator, "execute", fake_execute)
        return seen

    return arrange


def ledger_for(world):
    from pii.core.config import load_config
    from pii.ledger import Ledger

    return Ledger(load_config(world.config_path).state_url)
