"""`dag.test()` runs of subject_rectification on the demo stores of all four kinds (SQLite CRM, CSV exports, the
FTP drop and the mailbox served in-process), the approval answered in the test as in tests/airflow/test_dags.py."""
from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import pytest

os.environ["LETHE_TASK_RETRIES"] = "0"  # read when the DAG files are parsed: no retry delays in tests

from pii.demo import remote as demo_remote  # noqa: E402
from pii.demo.world import build_demo  # noqa: E402
from tests.dag_support import answer, flow, ledger_for, states, xcoms  # noqa: E402,F401 - `answer` is a fixture

pytestmark = pytest.mark.usefixtures("airflow_db")
CONF = {"emails": ["alice.smith@example.org"], "names": ["Alice Smith"], "phones": ["020 7946 0123"],
        "new_email": "alice.newman@example.net", "new_phone": "07700 900777", "new_name": "Alice Newman"}
PERSONAL = ("alice.smith", "79460123", "7946 0123", "alice.newman", "900777", "900 777", "newman")


@pytest.fixture
def world(tmp_path, monkeypatch):
    ftp_port, gmail_port = demo_remote.free_port(0), demo_remote.free_port(0)
    w = build_demo(tmp_path / "demo", remote=True, ftp_port=ftp_port, gmail_port=gmail_port)
    monkeypatch.setenv(demo_remote.FTP_PASSWORD_ENV, "pw-for-this-test")
    monkeypatch.setenv("LETHE_CONFIG", str(w.config_path))
    monkeypatch.setenv("LETHE_OUTPUT_DIR", str(tmp_path / "out"))
    monkeypatch.setenv("LETHE_WORK_DIR", str(tmp_path / "work"))
    # files Lethe cannot read (a PDF, recordings) would leave the run "not verified": not this test's subject
    drop = w.root / "data" / "ftp" / "incoming"
    for p in [*drop.rglob("*.pdf"), *drop.rglob("*.wav")]:
        p.unlink()
    with demo_remote.serve(w.root, ftp_port, gmail_port):
        yield w


def member(world) -> tuple:
    con = sqlite3.connect(world.crm_path)
    try:
        return con.execute("SELECT first_name, last_name, email, phone FROM members WHERE customer_no = 'C-10042'"
                           ).fetchone()
    finally:
        con.close()


def files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
            and p.suffix != ".db" and "-journal" not in p.name and "lethe" not in p.name}


def assert_no_personal(text: str) -> None:
    low = text.lower()
    for value in PERSONAL:
        assert value not in low, "personal value in Airflow's output"


def test_when_rectification_is_approved_then_every_store_holds_the_new_values_and_mail_is_untouched(world, answer):
    seen = answer("Approve", user="dpo", reason="checked with the member")
    mailbox = world.root / "data" / "mailbox"
    mail_before = files(mailbox)
    assert mail_before  # the served mailbox's messages, as files
    dr = flow("subject_rectification").test(run_conf={**CONF, "requester": "support desk"})
    assert dr.state == "success", states(dr)
    out = xcoms("subject_rectification", dr.run_id)
    plan_id = out[("plan", "plan_id", -1)]
    assert out[("approval", "return_value", -1)]["decision"] == "approved"
    cert_out = out[("certificate", "return_value", -1)]
    assert cert_out["verified"] is True and cert_out["state"] == "verified"
    cert = json.loads(Path(cert_out["certificate"]).read_text())
    assert cert["flow"] == "rectification" and cert["rectification"]["fields_rectified"]["email"] >= 2
    assert member(world) == ("Alice", "Newman", "alice.newman@example.net", "+44 7700 900777")
    # the mailbox: listed as not changeable, never changed
    assert files(mailbox) == mail_before
    assert [n["store"] for n in cert["rectification"]["not_changeable"]] == ["support_mailbox"]
    # the approver read the plan without personal values
    assert seen["subject"] == f"Lethe: approve rectification plan {plan_id}"
    assert seen["body"].startswith(f"## Rectification plan `{plan_id}`") and "rectify" in seen["body"]
    assert_no_personal(seen["body"])
    assert_no_personal(json.dumps([[*k, v] for k, v in out.items()], default=str))  # every XCom
    assert_no_personal(Path(cert_out["certificate"]).read_text())
    row = ledger_for(world).get_plan(plan_id)
    assert row["state"] == "verified" and row["decided_by"] == "dpo"
    assert_no_personal(json.dumps(row["plan"]))


def test_when_rectification_is_rejected_then_nothing_changes(world, answer):
    answer("Reject", user="dpo", reason="not the member")
    before = member(world)
    exports = files(world.exports_dir)
    dr = flow("subject_rectification").test(run_conf=CONF)
    assert dr.state == "success", states(dr)
    assert states(dr)["execute"] == "skipped"
    assert member(world) == before and files(world.exports_dir) == exports


def test_when_the_new_phone_is_invalid_then_register_fails_and_nothing_is_registered(world):
    dr = flow("subject_rectification").test(run_conf={**CONF, "new_phone": "12"})
    assert dr.state == "failed" and states(dr)["register"] == "failed"
    assert [e for e in ledger_for(world).audit_events() if e["event"] == "request_created"] == []
