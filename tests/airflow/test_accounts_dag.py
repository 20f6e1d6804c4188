"""The inactive_accounts DAG (issue 15.2) with `dag.test()` against a real FTP server: the review writes the
confirmation list; after the grace period, the due accounts' files are deleted once a person approves."""
from __future__ import annotations

import os

os.environ["LETHE_TASK_RETRIES"] = "0"

import pytest  # noqa: E402

from tests.dag_support import answer, flow, states, xcoms  # noqa: E402,F401 - `answer` is a fixture
from tests.engine.test_accounts import drop  # noqa: E402,F401 - the FTP drop fixture

pytestmark = pytest.mark.usefixtures("airflow_db")


def test_when_the_grace_period_passed_then_the_unconfirmed_accounts_are_deleted_after_approval(drop, answer,
                                                                                                 monkeypatch):
    srv, config, _put, tmp = drop
    monkeypatch.setenv("LETHE_CONFIG", str(config))
    monkeypatch.setenv("LETHE_WORK_DIR", str(tmp / "work"))
    dr = flow("inactive_accounts").test(run_conf={"run_date": "2026-12-03"})
    assert dr.state == "success", states(dr)
    assert xcoms("inactive_accounts", dr.run_id)[("review", "return_value", -1)] == []  # notices only
    listing = tmp / "out" / "accounts" / "partner-drops" / "confirm-2026-12-03.csv"
    assert listing.read_text().splitlines()[1:] == ["acme,2023-05-01,2027-01-02", "quiet,2023-05-01,2027-01-02"]
    seen = answer("Approve", user="dpo")
    dr = flow("inactive_accounts").test(run_conf={"run_date": "2027-01-03"})
    assert dr.state == "success", states(dr)
    assert "inactive" in seen["body"] or "account" in seen["body"]
    home = srv.home / "drops"
    assert not any((home / "acme").rglob("*.*")) and not any((home / "quiet").rglob("*.*"))
    assert (home / "busy" / "today.csv").exists() and (home / "README.txt").exists()
    certificates = [v for (t, k, _m), v in xcoms("inactive_accounts", dr.run_id).items()
                    if t == "certificate" and k == "return_value"]
    assert certificates and all(c["verified"] for c in certificates)
