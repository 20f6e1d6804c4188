"""Inactive accounts and closure requests on an FTP drop with one folder per account (issue 15.2), against
a real pyftpdlib server: notices and the confirmation list, confirmation by new activity, deletion after the
grace period (approval, certificate), and `lethe close-account` due within the promised period."""
from __future__ import annotations

import calendar
import csv
import datetime as dt
import os
import stat

import pytest
import yaml

from connectors.fakes.ftp_server import PASSWORD, PASSWORD_ENV, FtpServer
from tests.cli_support import run

OLD = dt.datetime(2023, 5, 1, 12, 0)  # more than two years before the run dates below
NEW = dt.datetime(2026, 10, 1, 12, 0)


@pytest.fixture
def drop(tmp_path, monkeypatch):
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    monkeypatch.setenv("LETHE_OUTPUT_DIR", str(tmp_path / "out"))
    with FtpServer(tmp_path / "home") as srv:
        def put(remote: str, when: dt.datetime, content: bytes = b"id,email\n1,holder@example.test\n"):
            path = srv.put(remote, content)
            stamp = calendar.timegm(when.utctimetuple())
            os.utime(path, (stamp, stamp))
            return path

        put("/drops/acme/2023-orders.csv", OLD)
        put("/drops/acme/reports/q1.txt", OLD)
        put("/drops/busy/today.csv", NEW)
        put("/drops/busy/old.csv", OLD)
        put("/drops/quiet/export.csv", OLD)
        put("/drops/README.txt", OLD)  # outside any account
        config = {"ledger": f"sqlite:///{tmp_path / 'state.db'}",
                  "stores": {"drops": {"kind": "ftp", **srv.store_options(path="/drops")}},
                  "accounts": [{"name": "partner-drops", "store": "drops", "inactive_after": "2y", "grace": "30d",
                                "close_within": "30d", "legal_basis": "contract ended"}]}
        path = tmp_path / "stores.yaml"
        path.write_text(yaml.safe_dump(config))
        yield srv, path, put, tmp_path


def _list(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_inactive_accounts_are_notified_then_deleted_after_the_grace_period_unless_they_come_back(drop):
    srv, config, put, tmp = drop
    code, out, err = run("--config", config, "-q", "accounts", "--date", "2026-12-03")
    assert code == 0, out + err
    assert "3 accounts" in out and "2 newly notified" in out and "0 due for deletion" in out
    listing = tmp / "out" / "accounts" / "partner-drops" / "confirm-2026-12-03.csv"
    rows = _list(listing)
    assert [(r["account"], r["last_activity"], r["confirm_by"]) for r in rows] == [
        ("acme", "2023-05-01", "2027-01-02"), ("quiet", "2023-05-01", "2027-01-02")]
    assert stat.S_IMODE(os.stat(listing).st_mode) == 0o600
    # a second review the next day notifies nobody again
    code, out, _ = run("--config", config, "-q", "accounts", "--date", "2026-12-04")
    assert "0 newly notified, 2 awaiting confirmation" in out
    # "quiet" confirms by uploading a file; "acme" does not
    put("/drops/quiet/new.csv", dt.datetime(2026, 12, 10, 9, 0))
    code, out, err = run("--config", config, "-q", "accounts", "--date", "2027-01-03", "--yes")
    assert code == 0, out + err
    assert "1 confirmed by new activity, 1 due for deletion" in out
    assert "inactive_account: account rule partner-drops: no activity on the account for 2y" in out
    assert "verified" in out
    home = srv.home / "drops"
    assert not (home / "acme" / "2023-orders.csv").exists() and not (home / "acme" / "reports" / "q1.txt").exists()
    assert (home / "quiet" / "export.csv").exists() and (home / "busy" / "old.csv").exists()
    assert (home / "README.txt").exists()
    # the emptied account's notice is closed at the next review
    code, out, _ = run("--config", config, "-q", "accounts", "--date", "2027-01-04")
    assert "1 closed" in out and "0 due for deletion" in out
    assert "holder@example.test" not in out + err


def test_a_due_account_is_planned_awaiting_approval_without_yes(drop):
    srv, config, _put, _tmp = drop
    assert run("--config", config, "-q", "accounts", "--date", "2026-12-03")[0] == 0
    code, out, err = run("--config", config, "-q", "accounts", "--date", "2027-01-03")
    assert code == 3 and "awaiting approval" in out
    assert (srv.home / "drops" / "acme" / "2023-orders.csv").exists()  # nothing changes before approval


def test_close_account_records_a_request_due_within_the_promise_and_plans_the_deletion(drop):
    srv, config, _put, _tmp = drop
    code, out, err = run("--config", config, "-q", "close-account", "--store", "drops", "--account", "busy",
                         "--received", "2026-12-01")
    assert code == 3, out + err
    assert "received 2026-12-01, due 2026-12-31 (close_within 30d)" in out
    plan_id = next(line.split()[1] for line in out.splitlines() if line.startswith("plan ") and "stored" in line)
    code, out, err = run("--config", config, "-q", "approve", plan_id, "--as", "dpo", "--execute")
    assert code == 0, out + err
    assert not any((srv.home / "drops" / "busy").rglob("*.csv"))
    assert (srv.home / "drops" / "acme" / "2023-orders.csv").exists()
    code, out, _ = run("--config", config, "requests", "--all", "--json")
    assert '"kind": "account_closure"' in out and '"status": "completed"' in out


@pytest.mark.parametrize("argv, message", [
    (["--store", "drops", "--account", "a/b"], "--account must be one folder name"),
    (["--store", "nope", "--account", "acme"], "no account rule for store 'nope'"),
    (["--store", "drops", "--account", "ghost"], "has no files in that account folder"),
])
def test_when_close_account_is_given_bad_input_then_one_line_and_nothing_changes(drop, argv, message):
    srv, config, _put, _tmp = drop
    code, out, err = run("--config", config, "-q", "close-account", *argv)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert len(list((srv.home / "drops").rglob("*.*"))) == 6
