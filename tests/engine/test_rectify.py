"""Rectification through the erasure engine's path (plan -> approval -> execute -> verify) on SQLite,
PostgreSQL, MariaDB, CSV, FTP and Gmail: formats kept, other people untouched, verification, resume after an
interruption, suppression following the person, nothing personal in the plan or the ledger."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import sqlalchemy as sa

from connectors.csvfiles import CsvConnector
from connectors.sql import SqlConnector
from pii.core.config import parse_config
from pii.core.errors import InvalidIdentifier
from pii.core.rectify import parse_changes
from pii.core.subject import Subject
from pii.engine.erasure import ErasureEngine
from pii.engine.rectify import RectifyRun
from pii.engine.runs import RunService

ALICE = Subject.build(emails=["alice.smith@example.org"], phones=["020 7946 0123"], names=["Alice Smith"])
CHANGES = parse_changes(["email=Alice.Jones@Example.org", "phone=020 7946 0777", "name=Alice Jones"], "GB")
OLD_VALUES = ["alice.smith@example.org", "7946 0123", "79460123", "Alice Smith", "Smith, Alice"]
NEW_VALUES = ["alice.jones@example.org", "7946 0777", "79460777", "Alice Jones", "Jones, Alice"]


# ---------------------------------------------------------------------------- a small CRM
def build_crm(url: str) -> None:
    engine = sa.create_engine(url)
    md = sa.MetaData()
    S = sa.String
    people = sa.Table("people", md, sa.Column("person_id", sa.Integer, primary_key=True),
                      sa.Column("first_name", S(50)), sa.Column("last_name", S(50)),
                      sa.Column("email", S(120)), sa.Column("phone", S(40)))
    contacts = sa.Table("contacts", md, sa.Column("contact_id", sa.Integer, primary_key=True),
                        sa.Column("full_name", S(100)), sa.Column("email", S(120)), sa.Column("mobile", S(40)))
    notes = sa.Table("notes", md, sa.Column("note_id", sa.Integer, primary_key=True),
                     sa.Column("person_id", sa.Integer), sa.Column("note", sa.Text))
    md.create_all(engine)
    with engine.begin() as conn:
        conn.execute(people.insert(), [
            dict(person_id=1, first_name="Alice", last_name="Smith", email="alice.smith@example.org",
                 phone="+442079460123"),
            dict(person_id=2, first_name="Bob", last_name="Smith", email="bob.smith@example.org",
                 phone="+442079460999"),
            dict(person_id=3, first_name="Alicia", last_name="Smith", email="malice.smith@example.org",
                 phone="+442079460124"),
        ])
        conn.execute(contacts.insert(), [
            dict(contact_id=10, full_name="Smith, Alice", email="Alice.Smith@Example.ORG", mobile="020 7946 0123"),
            dict(contact_id=11, full_name="Jones, Bob", email="bob.jones@example.org", mobile="020 7946 0999"),
        ])
        conn.execute(notes.insert(), [
            dict(note_id=100, person_id=2, note="Bob says Alice rang from 020 7946 0123 about a refund."),
            dict(note_id=101, person_id=2, note="Nothing about anyone."),
        ])
    engine.dispose()


def rows(url: str) -> dict[str, dict]:
    engine = sa.create_engine(url)
    md = sa.MetaData()
    md.reflect(engine)
    with engine.connect() as conn:
        out = {t.name: {r[0]: tuple(r) for r in conn.execute(sa.select(t))} for t in md.sorted_tables}
    engine.dispose()
    return out


def engine_for(tmp_path: Path, stores: dict) -> ErasureEngine:
    cfg = parse_config({"stores": stores}, tmp_path / "stores.yaml")
    return ErasureEngine(cfg)


def audit_text(engine: ErasureEngine) -> str:
    events = engine.ledger.audit_events()
    plans = [engine.ledger.get_plan(p["plan_id"])["plan"] for r in {e["request_id"] for e in events if e["request_id"]}
             for p in engine.ledger.plans_for(r)]
    return json.dumps(events, default=str) + json.dumps(plans, default=str)


def assert_nothing_personal(text: str) -> None:
    low = text.lower()
    for value in OLD_VALUES + NEW_VALUES + ["+442079460777", "+442079460123"]:
        assert value.lower() not in low, "personal value in the ledger or plan"


# ---------------------------------------------------------------------------- SQL
def test_when_rectified_on_sql_then_every_field_takes_the_new_value_in_its_own_form(any_sql_url, tmp_path):
    build_crm(any_sql_url)
    engine = engine_for(tmp_path, {"crm": {"kind": "sql", "url": any_sql_url}})
    before = rows(any_sql_url)
    runs = RunService(engine)
    preview = runs.dry_run(RectifyRun(ALICE, CHANGES))
    assert rows(any_sql_url) == before and engine.ledger.find_requests(ALICE) == []  # a dry run stores nothing
    assert {a.container.split(".")[-1] for a in preview.actions} == {"people", "contacts"}
    assert preview.data["rectify"]["mentions_for_review"] == 1  # Bob's note: listed, not changed

    outcome = runs.run_through(RectifyRun(ALICE, CHANGES), "requester@example.test", "dpo@example.test")
    report = outcome.last
    assert report.state == "verified" and report.remaining == 0 and report.done == 2
    after = rows(any_sql_url)
    assert after["people"][1] == (1, "Alice", "Jones", "alice.jones@example.org", "+442079460777")  # E.164, lower
    assert after["contacts"][10] == (10, "Jones, Alice", "Alice.Jones@Example.org", "020 7946 0777")  # national
    # nobody else's row changed, and the mention in Bob's note is still as it was
    for table in after:
        for key, row in after[table].items():
            if (table, key) not in (("people", 1), ("contacts", 10)):
                assert row == before[table][key], (table, key)
    # verification: the old values are in no identifier field; the new ones are where the old stood
    again = runs.dry_run(RectifyRun(ALICE, CHANGES))
    assert again.actions == []
    cert = engine.certificate(report.plan_id)
    assert cert["verified"] and cert["flow"] == "rectification"
    assert cert["rectification"]["fields_rectified"] == {"email": 2, "phone": 2, "name": 1, "family_name": 1,
                                                         "given_name": 1}
    assert engine.ledger.get_request(cert["request_id"])["status"] == "completed"
    assert not engine.ledger.is_sealed(cert["request_id"])  # the new values were shredded with the request
    assert_nothing_personal(audit_text(engine) + json.dumps(cert))


def test_when_mentions_are_included_then_the_note_is_rewritten_too(sqlite_url, tmp_path):
    build_crm(sqlite_url)
    engine = engine_for(tmp_path, {"crm": {"kind": "sql", "url": sqlite_url}})
    report = RunService(engine).run_through(RectifyRun(ALICE, CHANGES, include_mentions=True), "r", "dpo").last
    assert report.state == "verified"
    assert rows(sqlite_url)["notes"][100][2] == "Bob says Alice rang from 020 7946 0777 about a refund."


def test_when_the_new_value_is_not_where_the_old_stood_then_verification_fails(sqlite_url, tmp_path, monkeypatch):
    """A connector that reports success but writes something else must not get a verified certificate."""
    build_crm(sqlite_url)
    engine = engine_for(tmp_path, {"crm": {"kind": "sql", "url": sqlite_url}})
    real = SqlConnector.apply

    def wrong(self, actions, done, matcher):
        for a in actions:
            a.updates = {k: ("wrong@example.net" if "@" in str(v) else v) for k, v in a.updates.items()}
        return real(self, actions, done, matcher)

    monkeypatch.setattr(SqlConnector, "apply", wrong)
    report = RunService(engine).run_through(RectifyRun(ALICE, CHANGES), "r", "dpo").last
    assert report.state != "verified" and report.remaining > 0
    assert not engine.certificate(report.plan_id)["verified"]


def test_when_a_store_fails_then_the_certificate_does_not_call_its_records_rectified(sqlite_url, tmp_path, monkeypatch):
    build_crm(sqlite_url)
    engine = engine_for(tmp_path, {"crm": {"kind": "sql", "url": sqlite_url}})

    def broken(self, actions, done, matcher):
        raise RuntimeError("the database went away")

    monkeypatch.setattr(SqlConnector, "apply", broken)
    runs = RunService(engine)
    plan = runs.store(RectifyRun(ALICE, CHANGES), "r")
    runs.approve(plan.plan_id, "dpo")
    with pytest.raises(RuntimeError):
        runs.run(plan.plan_id)
    cert = engine.certificate(plan.plan_id)
    assert not cert["verified"] and cert["rectification"]["fields_rectified"] == {}
    assert all("rectify" not in per for per in cert["by_location"].values())
    assert sum(per.get("rectify not done", 0) for per in cert["by_location"].values()) == 2


def test_when_a_plan_is_stored_then_it_waits_for_approval_and_holds_no_value(sqlite_url, tmp_path):
    build_crm(sqlite_url)
    engine = engine_for(tmp_path, {"crm": {"kind": "sql", "url": sqlite_url}})
    before = rows(sqlite_url)
    runs = RunService(engine)
    plan = runs.store(RectifyRun(ALICE, CHANGES), "requester@example.test")
    assert engine.ledger.plan_state(plan.plan_id) == "planned" and rows(sqlite_url) == before
    stored = engine.ledger.get_plan(plan.plan_id)["plan"]
    kinds = {spec["kind"] for a in stored["actions"] for spec in a["fields"].values()}
    assert kinds == {"email", "phone", "name", "given_name", "family_name"}
    assert all(spec["operator"] == "rectify" and set(spec) == {"operator", "kind"}
               for a in stored["actions"] for spec in a["fields"].values())
    assert_nothing_personal(json.dumps(stored))
    runs.approve(plan.plan_id, "dpo@example.test")
    report = runs.run(plan.plan_id)  # as `lethe approve PLAN --execute`: the new values come from the seal
    assert report.state == "verified" and rows(sqlite_url)["people"][1][3] == "alice.jones@example.org"
    assert_nothing_personal(audit_text(engine))


def test_when_the_old_identifier_is_suppressed_then_the_new_one_is_suppressed_with_the_same_reason(sqlite_url, tmp_path):
    build_crm(sqlite_url)
    engine = engine_for(tmp_path, {"crm": {"kind": "sql", "url": sqlite_url}})
    engine.ledger.suppress(Subject.build(emails=["alice.smith@example.org"]), "unsubscribed: never mail again")
    assert not engine.ledger.is_suppressed("email", "alice.jones@example.org")
    RunService(engine).run_through(RectifyRun(ALICE, CHANGES), "r", "dpo")
    assert engine.ledger.is_suppressed("email", "alice.jones@example.org")
    entries = engine.ledger.suppression_entries(Subject.build(emails=["alice.jones@example.org"]))
    assert [e["reason"] for e in entries] == ["unsubscribed: never mail again"]
    assert not engine.ledger.is_suppressed("phone", "+442079460777")  # the old phone was never listed


def test_a_rectification_takes_the_same_lock_on_the_person_as_an_erasure(sqlite_url, tmp_path):
    from pii.engine.erasure import SubjectTarget
    from pii.engine.rectify import RectifyTarget

    engine = engine_for(tmp_path, {"crm": {"kind": "sql", "url": sqlite_url}})
    names = RectifyTarget(engine, ALICE, CHANGES).lock_names()
    assert names == SubjectTarget(engine, ALICE).lock_names() and names[0].startswith("subject:")
    other = Subject.build(emails=["bob.smith@example.org"])
    assert RectifyTarget(engine, other, CHANGES).lock_names() != names


def test_when_bad_input_is_given_then_nothing_is_registered(sqlite_url, tmp_path):
    build_crm(sqlite_url)
    engine = engine_for(tmp_path, {"crm": {"kind": "sql", "url": sqlite_url}})
    same = parse_changes(["email=ALICE.SMITH@EXAMPLE.ORG"], "GB")
    with pytest.raises(InvalidIdentifier, match="same as the current"):
        RunService(engine).run_through(RectifyRun(ALICE, same), "r", "dpo")
    assert engine.ledger.find_requests(ALICE) == []


# ---------------------------------------------------------------------------- resume after an interruption
def test_when_a_run_is_interrupted_after_one_store_then_a_rerun_finishes_without_repeating(tmp_path, monkeypatch):
    db = f"sqlite:///{tmp_path / 'crm.db'}"
    build_crm(db)
    folder = tmp_path / "exports"
    folder.mkdir()
    (folder / "list.csv").write_text("name,email,phone\nAlice Smith,alice.smith@example.org,02079460123\n"
                                     "Bob Jones,bob.jones@example.org,02079460999\n", encoding="utf-8")
    engine = engine_for(tmp_path, {"crm": {"kind": "sql", "url": db}, "exports": {"kind": "csv", "path": str(folder)}})
    runs = RunService(engine)
    real_csv, real_sql = CsvConnector.apply, SqlConnector.apply

    def killed(self, actions, done, matcher):
        raise KeyboardInterrupt  # the worker dies before the CSV file is rewritten

    monkeypatch.setattr(CsvConnector, "apply", killed)
    with pytest.raises(KeyboardInterrupt):
        runs.run_through(RectifyRun(ALICE, CHANGES), "r", "dpo")
    assert rows(db)["people"][1][3] == "alice.jones@example.org"  # the SQL store was done
    assert "alice.smith@example.org" in (folder / "list.csv").read_text()

    applied: list[str] = []

    def counting_sql(self, actions, done, matcher):
        applied.extend(a.action_id for a in actions)
        return real_sql(self, actions, done, matcher)

    monkeypatch.setattr(CsvConnector, "apply", real_csv)
    monkeypatch.setattr(SqlConnector, "apply", counting_sql)
    outcome = runs.run_through(RectifyRun(ALICE, CHANGES), "r", "dpo")
    assert outcome.plan is None and len(outcome.reports) == 1  # the same plan resumed, no new one
    report = outcome.last
    assert report.state == "verified" and report.remaining == 0
    assert applied == []  # nothing repeated in the store already done
    assert (folder / "list.csv").read_text() == ("name,email,phone\nAlice Jones,alice.jones@example.org,02079460777\n"
                                                 "Bob Jones,bob.jones@example.org,02079460999\n")
    assert rows(db)["people"][1] == (1, "Alice", "Jones", "alice.jones@example.org", "+442079460777")


def test_when_a_run_dies_after_the_write_but_before_the_ledger_then_the_rerun_does_not_write_again(
        sqlite_url, tmp_path, monkeypatch):
    build_crm(sqlite_url)
    engine = engine_for(tmp_path, {"crm": {"kind": "sql", "url": sqlite_url}})
    runs = RunService(engine)
    real = SqlConnector.apply

    def dies_after_commit(self, actions, done, matcher):
        def lost(_ids, _rows, _detail):
            raise KeyboardInterrupt  # committed in the store, never recorded in the ledger
        return real(self, actions, lost, matcher)

    monkeypatch.setattr(SqlConnector, "apply", dies_after_commit)
    with pytest.raises(KeyboardInterrupt):
        runs.run_through(RectifyRun(ALICE, CHANGES), "r", "dpo")
    written = rows(sqlite_url)
    calls: list[int] = []

    def counting(self, actions, done, matcher):
        calls.append(len(actions))
        return real(self, actions, done, matcher)

    monkeypatch.setattr(SqlConnector, "apply", counting)
    report = runs.run_through(RectifyRun(ALICE, CHANGES), "r", "dpo").last
    assert report.state == "verified" and sum(calls) == 0
    assert rows(sqlite_url) == written and written["contacts"][10][1] == "Jones, Alice"


# ---------------------------------------------------------------------------- CSV, FTP, Gmail
CSV_FILE = ("name;email;mobile;notes\n"
            "\"SMITH, Alice\";alice.smith@example.org;+44 20 7946 0123;prefers email\n"
            "\"JONES, Bob\";bob.jones@example.org;+44 20 7946 0999;knows alice.smith@example.org\n")
CSV_AFTER = ("name;email;mobile;notes\n"  # the writer quotes only where needed
             "JONES, Alice;alice.jones@example.org;+44 20 7946 0777;prefers email\n"
             "\"JONES, Bob\";bob.jones@example.org;+44 20 7946 0999;knows alice.smith@example.org\n")


def test_when_rectified_in_a_csv_folder_then_the_row_keeps_its_forms_and_others_stay(tmp_path):
    folder = tmp_path / "exports"
    folder.mkdir()
    (folder / "people.csv").write_text(CSV_FILE, encoding="utf-8")
    (folder / "split.csv").write_text("given_name,family_name,phone\nAlice,Smith,020 7946 0123\n"
                                      "Alice,Brown,020 7946 0555\n", encoding="utf-8")
    engine = engine_for(tmp_path, {"exports": {"kind": "csv", "path": str(folder)}})
    subject = Subject.build(emails=["alice.smith@example.org"], names=["Alice Smith"], phones=["020 7946 0123"])
    report = RunService(engine).run_through(RectifyRun(subject, CHANGES), "r", "dpo").last
    assert report.state == "verified" and report.remaining == 0
    assert (folder / "people.csv").read_text(encoding="utf-8") == CSV_AFTER  # Bob's row and mention untouched
    split = (folder / "split.csv").read_text(encoding="utf-8").splitlines()
    assert split[1:] == ["Alice,Jones,020 7946 0777", "Alice,Brown,020 7946 0555"]  # given/family split
    cert = engine.certificate(report.plan_id)
    assert cert["rectification"]["mentions_for_review"] == 1


def test_when_rectified_on_an_ftp_drop_then_the_file_is_rewritten_there(tmp_path, monkeypatch):
    from connectors.fakes.ftp_server import PASSWORD, PASSWORD_ENV, FtpServer

    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    with FtpServer(tmp_path / "home") as server:
        server.put("/incoming/people.csv", CSV_FILE.encode("utf-8"))
        engine = engine_for(tmp_path, {"drop": {"kind": "ftp", **server.store_options(path="/incoming")}})
        report = RunService(engine).run_through(RectifyRun(ALICE, CHANGES), "r", "dpo").last
        assert report.state == "verified" and report.remaining == 0
        assert (tmp_path / "home" / "incoming" / "people.csv").read_text(encoding="utf-8") == CSV_AFTER
        assert_nothing_personal(audit_text(engine))


def test_when_the_person_is_in_a_mailbox_then_the_mail_is_listed_not_changeable_and_untouched(sqlite_url, tmp_path):
    from connectors.fakes.gmail_server import FakeGmail, mail

    build_crm(sqlite_url)
    with FakeGmail() as gmail:
        mid = gmail.add(mail(frm="Alice Smith <alice.smith@example.org>", to="support@example.test",
                             subject="My new number", text="Please call me."))
        raw = gmail.messages[mid].raw
        engine = engine_for(tmp_path, {
            "crm": {"kind": "sql", "url": sqlite_url},
            "mail": {"kind": "gmail", "user_id": "support@example.test", "api_endpoint": gmail.endpoint}})
        runs = RunService(engine)
        plan = runs.dry_run(RectifyRun(ALICE, CHANGES))
        mail_entries = [a for a in plan.review if a.store == "mail"]
        assert len(mail_entries) == 1 and mail_entries[0].reason.startswith("not changeable: review")
        assert all(a.store != "mail" for a in plan.actions)
        report = runs.run_through(RectifyRun(ALICE, CHANGES), "r", "dpo").last
        assert report.state == "verified"
        assert gmail.messages[mid].raw == raw and mid in gmail.messages  # never changed, never deleted
        cert = engine.certificate(report.plan_id)
        assert cert["rectification"]["not_changeable"][0]["store"] == "mail"
        assert cert["rectification"]["not_changeable"][0]["locations"] == 1
        from pii.reports.certificate import certificate_lines

        text = "\n".join(certificate_lines(cert))
        assert "not changeable: review: 1 in mail/" in text
        assert_nothing_personal(text)
