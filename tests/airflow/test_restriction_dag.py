"""`dag.test()` runs of subject_restriction (issue 14, items 2 and 3): restrict, release and object from the
run conf or from a request registered beforehand (then no identifier reaches Airflow's metadata); bad input
fails the run and records nothing."""
from __future__ import annotations

import pytest

from pii.core.subject import Subject
from tests.dag_support import flow, states, xcoms

pytestmark = pytest.mark.usefixtures("airflow_db")
EMAIL, PHONE = "alice.smith@example.org", "020 7946 0123"
REASON = "accuracy contested (ticket 4471)"


@pytest.fixture
def config(tmp_path, monkeypatch):
    (tmp_path / "lists").mkdir()
    path = tmp_path / "stores.yaml"
    path.write_text("stores:\n  lists:\n    kind: csv\n    path: lists\n", encoding="utf-8")
    monkeypatch.setenv("LETHE_CONFIG", str(path))
    return path


def ledger_of(config):
    from pii.core.config import load_config
    from pii.ledger import Ledger

    return Ledger(load_config(config).state_url)


def run_meta(dag_id: str, run_id: str) -> str:
    from airflow.models.dagrun import DagRun
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as s:
        conf = s.scalars(select(DagRun.conf).where(DagRun.dag_id == dag_id, DagRun.run_id == run_id)).all()
        values = s.scalars(select(XComModel.value).where(XComModel.dag_id == dag_id,
                                                         XComModel.run_id == run_id)).all()
    return repr(conf) + repr(values)


def result(dr) -> dict:
    return xcoms("subject_restriction", dr.run_id)[("record", "return_value", -1)]


def test_when_a_restriction_is_triggered_with_identifiers_then_it_is_recorded_and_released(config):
    alice = Subject.build(emails=[EMAIL], phones=[PHONE])
    dr = flow("subject_restriction").test(run_conf={"action": "restrict", "emails": [EMAIL], "phones": [PHONE],
                                                    "reason": REASON, "until": "2099-12-31"})
    assert dr.state == "success", states(dr)
    out = result(dr)
    assert out["action"] == "restrict" and out["identifiers"] == 2 and out["until"] == "2099-12-31"
    ledger = ledger_of(config)
    assert ledger.is_restricted(alice)
    assert [r["until"] for r in ledger.restrictions_on(alice)] == ["2099-12-31"] * 2
    dr = flow("subject_restriction").test(run_conf={"action": "release", "emails": [EMAIL], "phones": [PHONE]})
    assert dr.state == "success", states(dr)
    assert result(dr)["identifiers"] == 2 and not ledger.is_restricted(alice)


def test_when_a_registered_request_is_named_then_no_identifier_reaches_airflow(config):
    from pii.engine.requests import register

    ledger = ledger_of(config)
    alice = Subject.build(emails=[EMAIL], phones=[PHONE])
    rid = register(ledger, "access", alice, "front desk", request_id="req-restrict-1")
    dr = flow("subject_restriction").test(run_conf={"action": "restrict", "request_id": rid, "reason": REASON})
    assert dr.state == "success", states(dr)
    assert ledger.is_restricted(Subject.build(phones=[PHONE]))
    dr2 = flow("subject_restriction").test(run_conf={"action": "object", "purpose": "profiling",
                                                     "request_id": rid, "reason": REASON})
    assert dr2.state == "success", states(dr2)
    assert ledger.is_restricted(Subject.build(emails=[EMAIL]), purpose="profiling")
    for run in (dr, dr2):
        meta = run_meta("subject_restriction", run.run_id).lower()
        for value in ("alice", "7946 0123", "79460123"):  # the reason is a form field: it is in the run conf
            assert value not in meta


def test_when_an_objection_to_marketing_is_triggered_then_it_is_recorded_and_points_to_consent_withdrawal(config):
    dr = flow("subject_restriction").test(run_conf={"action": "object", "purpose": "marketing", "emails": [EMAIL],
                                                    "reason": REASON})
    assert dr.state == "success", states(dr)
    out = result(dr)
    assert out["purpose"] == "marketing" and out["next"] == "consent_withdrawal"
    assert ledger_of(config).is_restricted(Subject.build(emails=[EMAIL]), purpose="marketing")
    assert "consent_withdrawal" in flow("subject_restriction").doc_md


@pytest.mark.parametrize("conf", [
    {"action": "release", "emails": [EMAIL], "reason": REASON},          # release takes no reason
    {"action": "restrict", "emails": [EMAIL]},                           # no reason
    {"action": "restrict", "reason": REASON},                            # nobody named
    {"action": "object", "emails": [EMAIL], "reason": REASON},           # no purpose
    {"action": "restrict", "emails": [EMAIL], "reason": REASON, "until": "2001-01-01"},  # passed
    {"action": "restrict", "request_id": "req-unknown", "reason": REASON},
])
def test_when_the_run_conf_is_bad_then_the_run_fails_and_nothing_is_recorded(config, conf):
    dr = flow("subject_restriction").test(run_conf=conf)
    assert dr.state == "failed", states(dr)
    assert ledger_of(config).export_restrictions() == []
