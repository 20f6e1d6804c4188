"""`lethe rectify` on the demo stores: dry run, stored plan awaiting approval, --yes, bad input, and neither the
old nor the new values in the output or the audit export."""
from __future__ import annotations

import json
import re
import sqlite3

import pytest

from pii.demo.world import build_demo
from tests.cli_support import assert_no_personal_data, demo_rows, run

OLD = ["--email", "alice.smith@example.org", "--phone", "020 7946 0123", "--name", "Alice Smith"]
SET = ["--set", "email=Alice.Newman@Example.net", "--set", "phone=07700 900777", "--set", "name=Alice Newman"]
NEW_VALUES = ["alice.newman@example.net", "900777", "900 777", "Alice Newman", "Newman, Alice"]


@pytest.fixture
def demo(tmp_path):
    return build_demo(tmp_path / "demo")


def member(world, customer_no: str = "C-10042") -> tuple:
    con = sqlite3.connect(world.crm_path)
    row = con.execute("SELECT first_name, last_name, email, phone FROM members WHERE customer_no = ?",
                      (customer_no,)).fetchone()
    con.close()
    return row


def assert_nothing_personal(text: str) -> None:
    assert_no_personal_data(text)
    for value in NEW_VALUES:
        assert value.lower() not in text.lower(), "a new value in the output"


def audit(world, tmp_path) -> str:
    code, _, stderr = run("--config", world.config_path, "audit", "--out", tmp_path / "audit.json")
    assert code == 0, stderr
    return (tmp_path / "audit.json").read_text()


def test_when_dry_run_then_the_plan_is_printed_and_nothing_changes(demo, tmp_path):
    before = demo_rows(demo)
    code, stdout, stderr = run("--config", demo.config_path, "rectify", *OLD, *SET, "--dry-run")
    assert code == 0, stderr
    assert "dry run" in stdout and "rectify" in stdout and "identifier fields to rectify" in stdout
    assert "mention(s) in other people's records: listed for review" in stdout
    assert demo_rows(demo) == before
    assert_nothing_personal(stdout + stderr)


def test_when_yes_then_the_fields_change_others_stay_and_nothing_personal_is_printed(demo, tmp_path):
    before = demo_rows(demo)
    bob_before = member(demo, "C-10007")
    code, stdout, stderr = run("--config", demo.config_path, "rectify", *OLD, *SET, "--yes",
                               "--certificate", tmp_path / "cert.json")
    assert code == 0, stderr
    assert "Lethe rectification certificate" in stdout and "state: verified" in stdout
    # the member row keeps its forms: split given/family, lower-case email, international phone
    assert member(demo) == ("Alice", "Newman", "alice.newman@example.net", "+44 7700 900777")
    assert member(demo, "C-10007") == bob_before  # the decoy Mallory Smith is untouched
    after = demo_rows(demo)
    changed = [k for k in after if after[k] != before[k]]
    assert "members" in changed and "companies" not in changed
    cert = json.loads((tmp_path / "cert.json").read_text())
    assert cert["verified"] and cert["rectification"]["fields_rectified"]["email"] >= 2
    text = stdout + stderr + audit(demo, tmp_path) + (tmp_path / "cert.json").read_text() \
        + (tmp_path / "cert.txt").read_text()
    assert_nothing_personal(text)
    state_files = list(demo.root.glob("lethe_state.db*"))
    assert state_files  # the ledger (with the request store): the new values only encrypted, then shredded
    for path in state_files:
        data = path.read_bytes().lower()
        assert b"alice.newman" not in data and b"900777" not in data and b"newman" not in data, path.name
    # a second run finds nothing left: the first certificate again, no change
    code, stdout, stderr = run("--config", demo.config_path, "rectify", *OLD, *SET, "--yes")
    assert code == 0, stderr
    assert "nothing left to rectify" in stdout and demo_rows(demo) == after


def test_when_neither_flag_then_the_plan_waits_and_approve_execute_runs_it(demo, tmp_path):
    before = demo_rows(demo)
    code, stdout, stderr = run("--config", demo.config_path, "rectify", "--email", "alice.smith@example.org",
                               "--set", "email=alice.newman@example.net")
    assert code == 3, stderr
    plan_id = re.search(r"plan (plan-[0-9a-f]+) stored; awaiting approval", stdout).group(1)
    assert demo_rows(demo) == before
    code, stdout2, stderr2 = run("--config", demo.config_path, "approve", plan_id, "--as", "dpo", "--execute")
    assert code == 0, stderr2
    assert "state: verified" in stdout2
    assert member(demo)[2] == "alice.newman@example.net"
    assert_nothing_personal(stdout + stderr + stdout2 + stderr2 + audit(demo, tmp_path))


@pytest.mark.parametrize("args, message", [
    (OLD + ["--set", "address=1 High St"], "unknown field"),
    (OLD + ["--set", "email=alice.newman"], "the new email is not a valid email address"),
    (OLD + ["--set", "phone=12345"], "the new phone is not a valid phone number"),
    (OLD + ["--set", "email=ALICE.SMITH@example.org"], "the same as the current one"),
    (OLD + ["--set", "phone=+44 20 7946 0123"], "the same as the current one"),
    (["--set", "email=alice.newman@example.net"], "at least one identifier"),
    (["--email", "alice.smith@example.org", "--set", "phone=07700 900777"], "needs the current phone"),
    (OLD, "at least one --set"),
])
def test_when_input_is_bad_then_one_line_exit_2_and_nothing_changes(demo, args, message):
    before = demo_rows(demo)
    code, stdout, stderr = run("--config", demo.config_path, "rectify", *args, "--yes")
    assert code == 2, (stdout, stderr)
    assert message in stderr and stderr.count("\n") == 1 and stdout == ""
    assert demo_rows(demo) == before
    from pii.core.config import load_config
    from pii.ledger import Ledger

    events = Ledger(load_config(demo.config_path).state_url).audit_events()
    assert not [e for e in events if e["event"] == "request_created"]  # nothing registered
    assert_nothing_personal(stderr)


def test_when_identity_must_be_verified_then_yes_is_refused_and_nothing_changes(demo):
    with open(demo.config_path, "a", encoding="utf-8") as fh:
        fh.write("requests:\n  require_identity_verification: true\n")
    before = demo_rows(demo)
    code, stdout, stderr = run("--config", demo.config_path, "rectify", *OLD, *SET, "--yes")
    assert code == 3 and "identity" in stderr and stderr.count("\n") == 1, (stdout, stderr)
    assert demo_rows(demo) == before
    code, stdout, stderr = run("--config", demo.config_path, "rectify", *OLD, *SET)
    assert code == 3 and "lethe verify-identity req-" in stdout, stderr
    assert demo_rows(demo) == before
    assert_nothing_personal(stdout + stderr)
