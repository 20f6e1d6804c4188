"""`lethe restrict | restriction check | restriction export | object` (issue 14, items 2 and 3): every command
and exit status, the bad inputs (one line, exit 2, nothing changed), the mailing export leaving restricted
and objecting people out, a retention run holding a restricted person's rows; and never the person's
identifiers or the reason in the output or the audit export."""
from __future__ import annotations

import csv
import json

import pytest
import sqlalchemy as sa

from pii.core.config import load_config
from pii.ledger import Ledger
from pii.ledger.schema import ledger_events, ledger_notes, ledger_restrictions
from tests.cli_support import assert_no_personal_data, run

EMAIL, PHONE = "alice.smith@example.org", "020 7946 0123"
REASON = "She contests the accuracy of her address (ticket by Bob Jonesworth)"
CONTACTS = ("email,name,received_at\n"
            f"{EMAIL},Alice Smith,2020-01-01\n"
            "amy.vale@example.test,Amy Vale,2020-01-01\n"
            "bo.rand@example.test,Bo Rand,2026-10-01\n")


@pytest.fixture
def config(tmp_path):
    folder = tmp_path / "lists"
    folder.mkdir()
    (folder / "contacts.csv").write_text(CONTACTS, encoding="utf-8")
    path = tmp_path / "stores.yaml"
    path.write_text("stores:\n  lists:\n    kind: csv\n    path: lists\n"
                    "marketing_lists:\n  lists: [contacts.csv]\n"
                    "retention:\n  - name: contacts\n    store: lists\n    match: contacts.csv\n"
                    "    date: received_at\n    period: 2y\n    category: Contacts\n", encoding="utf-8")
    return path


def lethe(config, *argv):
    code, out, err = run("--config", config, *argv)
    assert_no_personal_data(out + err)
    for word in ("Jonesworth", "contests the accuracy"):
        assert word not in out + err
    return code, out, err


def ledger_of(config) -> Ledger:
    return Ledger(load_config(config).state_url)


def rows_of(config, table) -> int:
    with ledger_of(config).engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()


def contacts(config) -> list[str]:
    return (config.parent / "lists" / "contacts.csv").read_text(encoding="utf-8").splitlines()


def test_restrict_check_release_and_check_again(config, tmp_path):
    assert lethe(config, "restriction", "check", "--email", EMAIL)[0] == 0
    code, out, err = lethe(config, "restrict", "--email", EMAIL, "--phone", PHONE, "--reason", REASON,
                           "--until", "2099-12-31")
    assert code == 0, err
    assert "processing restricted (2 identifiers added) until 2099-12-31" in out
    code, out, _ = lethe(config, "restriction", "check", "--email", " Alice.Smith@Example.org ")
    assert code == 1 and out.startswith("restricted")
    assert lethe(config, "restriction", "check", "--phone", "+44 20 7946 0123")[0] == 1
    assert lethe(config, "restriction", "check", "--email", "someone@example.test")[0] == 0
    assert lethe(config, "restriction", "check", "--email", EMAIL, "--purpose", "analytics")[0] == 1  # covers all

    code, out, err = lethe(config, "restrict", "--release", "--email", EMAIL, "--phone", PHONE)
    assert code == 0 and "restriction released (2 identifiers)" in out
    assert lethe(config, "restriction", "check", "--email", EMAIL)[0] == 0
    assert rows_of(config, ledger_notes) == 0  # the reason shredded
    code, out, _ = lethe(config, "restrict", "--release", "--email", EMAIL)
    assert code == 0 and "nothing released" in out

    # the audit export names neither the person nor the reason
    assert lethe(config, "audit", "--out", tmp_path / "audit.json")[0] == 0
    text = (tmp_path / "audit.json").read_text(encoding="utf-8")
    assert_no_personal_data(text)
    assert "Jonesworth" not in text and '"restricted"' in text and "restriction_released" in text


def test_restriction_export_writes_keyed_hashes_as_csv_or_json(config, tmp_path):
    assert lethe(config, "restrict", "--email", EMAIL, "--reason", REASON)[0] == 0
    assert lethe(config, "object", "--phone", PHONE, "--purpose", "profiling", "--reason", REASON)[0] == 0
    code, out, _ = lethe(config, "restriction", "export", "--out", tmp_path / "r.json")
    assert code == 0 and "2 restriction and objection entries" in out and "HMAC-SHA256" in out
    data = json.loads((tmp_path / "r.json").read_text())
    ledger = ledger_of(config)
    assert {(e["kind"], e["hash"], e["purpose"], e["until"]) for e in data["entries"]} == {
        ("email", ledger.hash_identifier("email", EMAIL), "restriction", None),
        ("phone", ledger.hash_identifier("phone", PHONE), "profiling", None)}
    assert data["recipe"].startswith("HMAC-SHA256 with the ledger key over 'lethe-ledger:v1:<kind>")
    assert lethe(config, "restriction", "export", "--out", tmp_path / "r.csv")[0] == 0
    with (tmp_path / "r.csv").open(newline="") as fh:
        got = list(csv.DictReader(fh))
    assert list(got[0]) == ["kind", "hash", "purpose", "since", "until"] and len(got) == 2
    for f in ("r.json", "r.csv"):
        text = (tmp_path / f).read_text()
        assert_no_personal_data(text)
        assert "Jonesworth" not in text and "reason" not in text.replace('"recipe"', "")


def test_objection_to_profiling_is_answered_per_purpose(config):
    code, out, err = lethe(config, "object", "--email", EMAIL, "--purpose", "Profiling", "--reason", REASON)
    assert code == 0, err
    assert "objection to profiling recorded (1 identifiers added)" in out
    assert lethe(config, "restriction", "check", "--email", EMAIL, "--purpose", "profiling")[0] == 1
    assert lethe(config, "restriction", "check", "--email", EMAIL, "--purpose", "analytics")[0] == 0
    assert lethe(config, "restriction", "check", "--email", EMAIL)[0] == 0  # not a restriction of everything
    assert contacts(config)[1].startswith(EMAIL)  # no data changes for profiling
    code, out, _ = lethe(config, "object", "--email", EMAIL, "--purpose", "analytics", "--reason", REASON,
                         "--dry-run")
    assert code == 0 and "nothing recorded" in out
    assert lethe(config, "restriction", "check", "--email", EMAIL, "--purpose", "analytics")[0] == 0


def test_objection_to_marketing_runs_the_unsubscribe_flow_and_records_the_objection(config, tmp_path):
    before = contacts(config)
    code, out, err = lethe(config, "object", "--email", EMAIL, "--purpose", "marketing", "--reason", REASON,
                           "--dry-run")
    assert code == 0, err
    assert "dry run: the objection to marketing would be recorded" in out and "nothing stored" in out
    assert contacts(config) == before and rows_of(config, ledger_restrictions) == 0
    code, out, err = lethe(config, "object", "--email", EMAIL, "--purpose", "marketing", "--reason", REASON)
    assert code == 3 and "awaiting approval" in out  # without --yes: the plan waits for a second person
    assert contacts(config) == before
    assert lethe(config, "restriction", "check", "--email", EMAIL, "--purpose", "marketing")[0] == 1
    code, out, err = lethe(config, "object", "--email", EMAIL, "--purpose", "marketing", "--reason", REASON, "--yes")
    assert code == 0, err
    assert "state: verified" in out
    assert contacts(config) == [before[0]] + before[2:]
    assert ledger_of(config).is_suppressed("email", EMAIL)


def test_the_mailing_export_leaves_out_restricted_and_objecting_people(config, tmp_path):
    ledger = ledger_of(config)
    assert lethe(config, "restrict", "--email", EMAIL, "--reason", REASON)[0] == 0
    assert lethe(config, "object", "--email", "amy.vale@example.test", "--purpose", "marketing",
                 "--reason", REASON)[0] == 3
    assert lethe(config, "object", "--email", "bo.rand@example.test", "--purpose", "analytics",
                 "--reason", REASON)[0] == 0
    code, out, err = lethe(config, "suppression", "export", "--out", tmp_path / "m.json", "--for-mailing")
    assert code == 0, err
    entries = json.loads((tmp_path / "m.json").read_text())["entries"]
    assert {(e["hash"], e["reason"]) for e in entries} == {
        (ledger.hash_identifier("email", EMAIL), "restricted"),
        (ledger.hash_identifier("email", "amy.vale@example.test"), "objection: marketing")}
    assert lethe(config, "suppression", "export", "--out", tmp_path / "m.csv", "--for-mailing")[0] == 0
    with (tmp_path / "m.csv").open(newline="") as fh:
        assert sorted(r["reason"] for r in csv.DictReader(fh)) == ["objection: marketing", "restricted"]


def test_a_retention_run_holds_a_restricted_persons_row_and_says_so(config):
    assert lethe(config, "restrict", "--email", EMAIL, "--reason", REASON)[0] == 0
    code, out, err = lethe(config, "retention", "--date", "2026-11-22", "--yes")
    assert code == 0, err
    assert "restricted (processing restricted at the person's request, until released)" in out
    assert contacts(config) == [contacts(config)[0], f"{EMAIL},Alice Smith,2020-01-01", "bo.rand@example.test,Bo Rand,2026-10-01"]
    assert lethe(config, "restrict", "--release", "--email", EMAIL)[0] == 0
    assert lethe(config, "retention", "--date", "2026-11-22", "--yes")[0] == 0
    assert contacts(config)[1:] == ["bo.rand@example.test,Bo Rand,2026-10-01"]


@pytest.mark.parametrize("argv, message", [
    (("restrict", "--reason", REASON), "at least one identifier"),
    (("restrict", "--name", "Alice Smith", "--reason", REASON), "a name alone cannot be matched"),
    (("restrict", "--email", EMAIL), "needs --reason"),
    (("restrict", "--email", EMAIL, "--reason", REASON, "--until", "31/12/2099"), "--until must be a date"),
    (("restrict", "--release", "--email", EMAIL, "--until", "2099-12-31"), "--release takes no --until"),
    (("restrict", "--email", EMAIL, "--reason", REASON, "--until", "2001-01-01"), "--until has already passed"),
    (("restrict", "--release", "--email", EMAIL, "--reason", REASON), "--release takes no --reason"),
    (("restrict", "--email", "not-an-address", "--reason", REASON), "email #1 is"),
    (("object", "--email", EMAIL, "--purpose", "dating", "--reason", REASON),
     "unknown purpose 'dating': use one of marketing, profiling, analytics"),
    (("object", "--email", EMAIL, "--reason", REASON), "--purpose is required: use one of marketing, profiling"),
    (("object", "--email", EMAIL, "--purpose", "profiling"), "needs --reason"),
    (("object", "--purpose", "profiling", "--reason", REASON), "at least one identifier"),
    (("restriction", "check"), "at least one identifier"),
    (("restriction", "check", "--email", EMAIL, "--purpose", "dating"), "use one of marketing, profiling, analytics"),
    (("restriction", "export"), "needs --out"),
])
def test_bad_input_is_one_line_exit_2_and_changes_nothing(config, argv, message):
    code, out, err = lethe(config, *argv)
    assert code == 2, (out, err)
    assert message in err and err.strip().count("\n") == 0
    assert rows_of(config, ledger_restrictions) == 0 and rows_of(config, ledger_notes) == 0
    with ledger_of(config).engine.connect() as conn:
        names = {r[0] for r in conn.execute(sa.select(ledger_events.c.event))}
    assert not names & {"restricted", "objected", "restriction_released"}


def test_marketing_objection_without_marketing_lists_records_nothing(tmp_path):
    (tmp_path / "lists").mkdir()
    (tmp_path / "stores.yaml").write_text("stores:\n  lists:\n    kind: csv\n    path: lists\n", encoding="utf-8")
    code, out, err = lethe(tmp_path / "stores.yaml", "object", "--email", EMAIL, "--purpose", "marketing",
                           "--reason", REASON, "--yes")
    assert code == 2 and "no store is marked as a marketing list" in err
    assert rows_of(tmp_path / "stores.yaml", ledger_restrictions) == 0


def test_when_a_restriction_is_registered_by_id_then_the_hint_names_its_dag_and_the_ledger_its_kind(config):
    code, out, err = lethe(config, "register", "--email", EMAIL, "--kind", "restriction", "--request-id", "rst-1")
    assert code == 0, err
    assert 'trigger subject_restriction with {"request_id": "rst-1"}' in out
    ledger = ledger_of(config)
    assert ledger.get_request("rst-1")["kind"] == "restriction" and ledger.is_sealed("rst-1")
