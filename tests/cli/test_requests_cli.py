"""`lethe requests`, `lethe extend`, `lethe verify-identity` (issue 14.4, 14.5) on the demo stores, and the
identity gate stores.yaml can turn on: no erasure is approved before the requester's identity is verified."""
from __future__ import annotations

import json
import os
import stat
from datetime import date, timedelta
from pathlib import Path

import pytest
import yaml

from pii.ledger.common import due_date
from tests.cli.test_cli import subject_args
from tests.cli_support import assert_no_personal_data, run
from pii.demo.world import build_demo


@pytest.fixture
def demo(tmp_path, monkeypatch):
    monkeypatch.setenv("LETHE_OUTPUT_DIR", str(tmp_path / "out"))
    return build_demo(tmp_path / "demo")


def _strict_config(demo) -> Path:
    """The demo's stores.yaml with `requests: {require_identity_verification: true}`, beside it."""
    data = yaml.safe_load(Path(demo.config_path).read_text())
    data["requests"] = {"require_identity_verification": True}
    path = Path(demo.config_path).with_name("strict.yaml")
    path.write_text(yaml.safe_dump(data))
    return path


def _register(config, kind: str, received: date, request_id: str) -> None:
    code, out, err = run("--config", config, "register", *subject_args(), "--kind", kind,
                         "--received", received.isoformat(), "--request-id", request_id)
    assert code == 0, err


def test_requests_lists_open_requests_with_due_dates_identity_and_overdue(demo):
    today = date.today()
    fresh, late = today - timedelta(days=3), today - timedelta(days=45)
    _register(demo.config_path, "access", fresh, "req-fresh")
    _register(demo.config_path, "erasure", late, "req-late")
    code, out, err = run("--config", demo.config_path, "requests", "--json")
    assert code == 0, err
    rows = {r["request_id"]: r for r in json.loads(out)}
    assert set(rows) == {"req-fresh", "req-late"}
    assert rows["req-fresh"]["kind"] == "access" and rows["req-fresh"]["received"] == fresh.isoformat()
    assert rows["req-fresh"]["due"] == due_date(fresh).isoformat() and rows["req-fresh"]["extended_to"] is None
    assert rows["req-fresh"]["identity"] == "unverified" and rows["req-fresh"]["status"] == "open"
    assert (rows["req-fresh"]["overdue"], rows["req-late"]["overdue"]) == (False, True)
    code, out, err = run("--config", demo.config_path, "requests", "--overdue", "--json")
    assert [r["request_id"] for r in json.loads(out)] == ["req-late"]
    code, out, err = run("--config", demo.config_path, "requests")
    assert code == 0 and "req-late" in out and "OVERDUE" in out and "2 request(s), 1 overdue" in out
    assert_no_personal_data(out + err)


def test_extend_moves_the_due_date_and_writes_the_notice_beside_the_request_output(demo, tmp_path):
    received = date.today() - timedelta(days=3)
    _register(demo.config_path, "access", received, "req-ext")
    reason = "records held by a processor overseas must be retrieved"
    code, out, err = run("--config", demo.config_path, "extend", "req-ext", "--by", "1m", "--reason", reason)
    assert code == 0, err
    new_due = due_date(received, 2)
    assert f"extended to {new_due.isoformat()}" in out
    notice = tmp_path / "out" / "access" / "req-ext" / "extension-notice-1.txt"
    assert f"notice to the person: {notice}" in out
    text = notice.read_text()
    assert reason in text and new_due.isoformat() in text and due_date(received).isoformat() in text
    assert stat.S_IMODE(os.stat(notice).st_mode) == 0o600
    code, out, _ = run("--config", demo.config_path, "requests", "--json")
    row = json.loads(out)[0]
    assert (row["due"], row["extended_to"], row["first_due"]) == \
        (new_due.isoformat(), new_due.isoformat(), due_date(received).isoformat())
    # a second month is allowed, a third is not (exit 2), and nothing changes then
    assert run("--config", demo.config_path, "extend", "req-ext", "--by", "1m", "--reason", "still")[0] == 0
    code, out, err = run("--config", demo.config_path, "extend", "req-ext", "--by", "1m", "--reason", "more")
    assert code == 2 and "at most 2 months" in err and len(err.strip().splitlines()) == 1
    assert not (notice.parent / "extension-notice-3.txt").exists()
    code, out, _ = run("--config", demo.config_path, "requests", "--json")
    assert json.loads(out)[0]["due"] == due_date(received, 3).isoformat()
    # the reason is sealed: not in the audit export
    export = tmp_path / "audit.json"
    assert run("--config", demo.config_path, "audit", "--out", export)[0] == 0
    assert reason not in export.read_text()


@pytest.mark.parametrize("argv, message", [
    (["--by", "3m", "--reason", "r"], "--by must be 1m or 2m"),
    (["--by", "two", "--reason", "r"], "--by must be 1m or 2m"),
    (["--by", "1m", "--reason", " "], "needs a reason"),
])
def test_when_an_extension_is_malformed_then_exit_2_and_nothing_changes(demo, argv, message):
    _register(demo.config_path, "access", date.today(), "req-bad")
    code, out, err = run("--config", demo.config_path, "extend", "req-bad", *argv)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    code, out, _ = run("--config", demo.config_path, "requests", "--json")
    assert json.loads(out)[0]["extended_to"] is None


def test_when_the_first_due_date_passed_or_the_id_is_unknown_then_extend_refuses(demo, tmp_path):
    _register(demo.config_path, "erasure", date.today() - timedelta(days=40), "req-old")
    code, out, err = run("--config", demo.config_path, "extend", "req-old", "--by", "1m", "--reason", "late")
    assert code == 2 and "has passed" in err
    assert not (tmp_path / "out" / "erasure" / "req-old").exists()
    code, out, err = run("--config", demo.config_path, "extend", "req-nope", "--by", "1m", "--reason", "r")
    assert code != 0 and "req-nope" in err and len(err.strip().splitlines()) == 1


def test_verify_identity_records_the_method_and_seals_the_note(demo, tmp_path):
    _register(demo.config_path, "access", date.today(), "req-id")
    note = "passport number 123456789 seen"
    code, out, err = run("--config", demo.config_path, "verify-identity", "req-id", "--method", "Document",
                         "--by", "clerk", "--note", note)
    assert code == 0, err
    assert "identity verified (document)" in out
    code, out, _ = run("--config", demo.config_path, "requests", "--json")
    assert json.loads(out)[0]["identity"] == "verified"
    export = tmp_path / "audit.json"
    assert run("--config", demo.config_path, "audit", "--out", export)[0] == 0
    assert note not in export.read_text() and "identity_verified" in export.read_text()
    code, out, err = run("--config", demo.config_path, "verify-identity", "req-id", "--method", "a passport!",
                         "--by", "clerk")
    assert code == 2 and "short lower-case word" in err


def test_when_identity_verification_is_required_then_no_erasure_is_approved_before_it(demo):
    strict = _strict_config(demo)
    code, out, err = run("--config", strict, "erase", *subject_args(), "--yes")
    assert code == 3 and "identity to be verified" in err
    code, out, err = run("--config", strict, "erase", *subject_args())
    assert code == 3, err
    plan_id = out.strip().splitlines()[-1].split()[1]
    request_id = next(line.split()[1].rstrip(":") for line in out.splitlines() if "must be verified" in line)
    code, out, err = run("--config", strict, "approve", plan_id, "--execute")
    assert code == 3 and "not verified" in err and f"lethe verify-identity {request_id}" in err
    code, out, _ = run("--config", strict, "show-plan", plan_id)
    assert "awaiting approval" in out or "planned" in out
    assert run("--config", strict, "verify-identity", request_id, "--method", "email-link", "--by", "clerk")[0] == 0
    code, out, err = run("--config", strict, "approve", plan_id, "--as", "dpo", "--execute")
    assert code == 0, err
    assert_no_personal_data(out + err)
