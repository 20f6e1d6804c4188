"""The identity gate in Airflow (issue 14.4): with `requests: {require_identity_verification: true}` the
subject-access and erasure DAGs wait after registering for a person to confirm the requester's identity
(a Human-in-the-loop task); nothing is searched before, and "Not verified" stops the run."""
from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import pytest
import yaml

os.environ["LETHE_TASK_RETRIES"] = "0"

from pii.demo.world import build_demo  # noqa: E402
from tests.dag_support import flow, ledger_for, states, xcoms  # noqa: E402

pytestmark = pytest.mark.usefixtures("airflow_db")


@pytest.fixture
def strict(tmp_path, monkeypatch):
    """The demo stores with identity verification required; LETHE_CONFIG points at that stores.yaml."""
    world = build_demo(tmp_path / "demo")
    data = yaml.safe_load(Path(world.config_path).read_text())
    data["requests"] = {"require_identity_verification": True}
    path = Path(world.config_path).with_name("strict.yaml")
    path.write_text(yaml.safe_dump(data))
    world.config_path = path
    monkeypatch.setenv("LETHE_CONFIG", str(path))
    monkeypatch.setenv("LETHE_OUTPUT_DIR", str(tmp_path / "out"))
    monkeypatch.setenv("LETHE_WORK_DIR", str(tmp_path / "work"))
    return world


@pytest.fixture
def respond(monkeypatch):
    """respond(identity=OPTION, method=..., note=...): how the identity task is answered (the erasure
    approval, if reached, is approved by "dpo"). Returns the list of operators that asked a person."""
    from airflow.providers.standard.operators.hitl import HITLOperator

    from plugins.identity import IdentityCheckOperator

    asked: list = []

    def arrange(identity: str, method: str | None = "Document", note: str | None = None):
        def fake_execute(self, context):
            asked.append((type(self).__name__, self.body))
            if isinstance(self, IdentityCheckOperator):
                chosen, given = identity, {"method": method, "note": note}
            else:
                chosen, given = "Approve", {"reason": None}
            return self.execute_complete(context, {
                "chosen_options": [chosen], "params_input": given,
                "responded_at": dt.datetime.now(dt.timezone.utc),
                "responded_by_user": {"id": "clerk", "name": "clerk"}, "timedout": False})

        monkeypatch.setattr(HITLOperator, "execute", fake_execute)
        return asked

    return arrange


def _register(world, kind: str, request_id: str) -> str:
    from pii.engine.requests import register

    return register(ledger_for(world), kind, world.build_subject(), "privacy team", request_id=request_id)


def test_when_identity_is_required_then_access_waits_for_a_person_and_records_the_method(strict, respond):
    request_id = _register(strict, "access", "acc-2026-0100")
    asked = respond("Identity verified", method="Video call", note="seen with a passport ending 4411")
    dr = flow("subject_access").test(run_conf={"request_id": request_id})
    assert dr.state == "success", states(dr)
    assert [name for name, _ in asked] == ["IdentityCheckOperator"]
    body = asked[0][1]
    assert request_id in body and "| kind | access |" in body and "unverified" in body
    terms = ledger_for(strict).request_terms(request_id)
    assert (terms["identity"], terms["identity_method"], terms["identity_by"]) == ("verified", "video-call", "clerk")
    assert xcoms("subject_access", dr.run_id)[("identity", "return_value", -1)]["identity"] == "verified"
    events = str(ledger_for(strict).audit_events(request_id))
    assert "identity_verified" in events and "4411" not in events  # the note is sealed


def test_when_the_identity_is_not_verified_then_nothing_is_searched_and_the_request_stays_open(strict, respond):
    request_id = _register(strict, "erasure", "era-2026-0101")
    asked = respond("Not verified")
    dr = flow("subject_erasure").test(run_conf={"request_id": request_id})
    got = states(dr)
    assert dr.state == "failed" and got["identity"] == "failed", got
    assert got["units"] == "upstream_failed" and got["plan"] == "upstream_failed", got
    assert [name for name, _ in asked] == ["IdentityCheckOperator"]  # no approval was asked for
    ledger = ledger_for(strict)
    assert ledger.get_request(request_id)["status"] == "open" and ledger.plans_for(request_id) == []
    assert ledger.request_terms(request_id)["identity"] == "unverified"


def test_when_verified_beforehand_then_the_run_asks_nobody_about_identity(strict, respond):
    request_id = _register(strict, "erasure", "era-2026-0102")
    ledger_for(strict).verify_identity(request_id, "document", "clerk")
    asked = respond("Not verified")  # would stop the run if the identity task asked
    dr = flow("subject_erasure").test(run_conf={"request_id": request_id})
    assert dr.state == "success", states(dr)
    assert [name for name, _ in asked] == ["ErasureApprovalOperator"]
    assert ledger_for(strict).get_request(request_id)["status"] == "completed"


def test_every_dag_acting_on_a_persons_own_request_waits_for_the_identity_task_before_it_searches():
    from airflow.dag_processing.dagbag import DagBag

    from plugins.identity import IdentityCheckOperator

    bag = DagBag(dag_folder=str(Path(__file__).resolve().parents[2] / "dags"))
    first = {"subject_access": "units", "subject_erasure": "units", "subject_rectification": "plan"}
    for dag_id, task_id in first.items():
        dag = bag.dags[dag_id]
        assert isinstance(dag.task_dict["identity"], IdentityCheckOperator), dag_id
        assert "identity" in dag.task_dict[task_id].upstream_task_ids, dag_id
        assert dag.task_dict["identity"].upstream_task_ids == {"register"}, dag_id
