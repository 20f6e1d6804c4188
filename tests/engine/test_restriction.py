"""Restriction of processing in the flows (issue 14, item 2): a retention purge (delete and anonymise) and the
child-data purge hold a restricted person's records (and the rows linked to them) on SQLite, PostgreSQL,
MariaDB and CSV, report them as held in the plan and the certificate, and act on them again once the
restriction is released or its end date has passed. An explicit erasure request still erases."""
from __future__ import annotations

import csv
import datetime as dt

import pytest
import sqlalchemy as sa

from pii.core.config import parse_config
from pii.core.retention import load_schedule
from pii.core.subject import Subject
from pii.engine.erasure import ErasureEngine
from pii.engine.flows import child_purge, retention_selection, submit_selection

RUN_DATE = dt.date(2026, 11, 22)
RITA = "rita.restricted@example.test"     # restricted: her old enquiry and its reply must stay
KID = "kid.restricted@example.test"       # a restricted child's sign-up must stay
REASON = "accuracy contested by the person"


def build_sql(url: str) -> None:
    engine = sa.create_engine(url)
    md = sa.MetaData()
    S = sa.String
    enquiries = sa.Table("enquiries", md, sa.Column("enquiry_id", sa.Integer, primary_key=True, autoincrement=False),
                         sa.Column("email", S(120)), sa.Column("phone", S(40)), sa.Column("full_name", S(100)),
                         sa.Column("received_at", S(10)))
    replies = sa.Table("enquiry_replies", md, sa.Column("reply_id", sa.Integer, primary_key=True, autoincrement=False),
                       sa.Column("enquiry_id", sa.Integer, sa.ForeignKey(enquiries.c.enquiry_id)),
                       sa.Column("body", S(200)))
    youth = sa.Table("youth_signups", md, sa.Column("signup_id", sa.Integer, primary_key=True, autoincrement=False),
                     sa.Column("email", S(120)), sa.Column("full_name", S(100)), sa.Column("date_of_birth", S(10)))
    md.create_all(engine)
    with engine.begin() as conn:
        conn.execute(enquiries.insert(), [
            dict(enquiry_id=1, email=RITA, phone="020 7946 0555", full_name="Rita Restricted", received_at="2022-01-10"),
            dict(enquiry_id=2, email="old.one@example.test", phone=None, full_name="Old One", received_at="2022-02-10"),
            dict(enquiry_id=3, email="new.one@example.test", phone=None, full_name="New One", received_at="2026-10-01")])
        conn.execute(replies.insert(), [dict(reply_id=10, enquiry_id=1, body="we replied"),
                                        dict(reply_id=11, enquiry_id=2, body="we replied too")])
        conn.execute(youth.insert(), [
            dict(signup_id=1, email=KID, full_name="Kid Restricted", date_of_birth="2016-05-01"),
            dict(signup_id=2, email="kid.other@example.test", full_name="Kid Other", date_of_birth="2017-01-01"),
            dict(signup_id=3, email="adult@example.test", full_name="Adult Person", date_of_birth="1990-05-01")])
    engine.dispose()


def ids(url: str, table: str, key: str) -> list:
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        out = sorted(r[0] for r in conn.execute(sa.text(f"SELECT {key} FROM {table}")))
    engine.dispose()
    return out


def column(url: str, table: str, key: str, col: str) -> dict:
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        out = dict(conn.execute(sa.text(f"SELECT {key}, {col} FROM {table}")).all())
    engine.dispose()
    return out


RULES = [
    {"name": "enquiries", "store": "crm", "match": "enquiries", "date": "received_at", "period": "2y",
     "category": "Enquiries", "include_linked": True},
    {"name": "enquiry_stats", "store": "crm", "match": "enquiries", "date": "received_at", "period": "2y",
     "category": "Enquiries", "action": "anonymise", "anonymise": {"email": "null", "full_name": "null"}},
]


def sql_config(url, tmp_path, rules=RULES):
    return parse_config({"stores": {"crm": {"kind": "sql", "url": url}}, "retention": rules,
                         "child_purge": {"text_clues": False, "stores": ["crm"]}}, tmp_path / "stores.yaml")


def run_flow(engine, selection):
    plan = submit_selection(engine, selection, "dpo@example.test")
    engine.approve(plan.plan_id, "dpo@example.test")
    report = engine.execute(plan.plan_id)
    return plan, report


def retention(engine, name="enquiries"):
    return retention_selection(engine, load_schedule(engine.config).rule(name), RUN_DATE)


def restrict(engine, email=RITA, until=None):
    engine.ledger.restrict(Subject.build(emails=[email]), REASON, until=until, actor="dpo")


def held_reasons(plan) -> list[str]:
    return sorted(a.reason for a in plan.held)


@pytest.fixture
def sql_url(any_sql_url):
    build_sql(any_sql_url)
    return any_sql_url


def test_when_a_person_is_restricted_then_a_retention_purge_holds_their_rows_and_links_and_acts_after_release(
        sql_url, tmp_path):
    config = sql_config(sql_url, tmp_path)
    engine = ErasureEngine(config, today=RUN_DATE)
    restrict(engine)
    plan, report = run_flow(engine, retention(engine))
    assert report.state == "verified"
    assert held_reasons(plan) == [
        "restricted (linked to the record of a person whose processing is restricted)",
        "restricted (processing restricted at the person's request, until released)"]
    assert ids(sql_url, "enquiries", "enquiry_id") == [1, 3]        # hers held, the other old one purged
    assert ids(sql_url, "enquiry_replies", "reply_id") == [10]      # the reply to hers held too
    cert = engine.certificate(plan.plan_id)
    assert sorted(h["reason"] for h in cert["held"]) == held_reasons(plan)
    assert "  hold 1 in crm/enquiries: restricted (processing restricted at the person's request, until released)" \
        in plan.lines()

    # released: the next run purges her old enquiry and its reply
    assert engine.ledger.release_restriction(Subject.build(emails=[RITA]), actor="dpo") == 1
    engine = ErasureEngine(config, today=RUN_DATE)
    plan, report = run_flow(engine, retention(engine))
    assert report.state == "verified" and plan.held == []
    assert ids(sql_url, "enquiries", "enquiry_id") == [3]
    assert ids(sql_url, "enquiry_replies", "reply_id") == []


def test_when_a_person_is_restricted_then_an_anonymising_retention_rule_leaves_their_row_as_it_is(sql_url, tmp_path):
    engine = ErasureEngine(sql_config(sql_url, tmp_path), today=RUN_DATE)
    restrict(engine)
    plan, report = run_flow(engine, retention(engine, "enquiry_stats"))
    assert report.state == "verified"
    assert held_reasons(plan) == ["restricted (processing restricted at the person's request, until released)"]
    emails = column(sql_url, "enquiries", "enquiry_id", "email")
    assert emails[1] == RITA and emails[2] is None and emails[3] == "new.one@example.test"


def test_when_a_child_is_restricted_until_a_date_then_the_child_purge_holds_them_and_purges_once_it_passed(
        sql_url, tmp_path):
    config = sql_config(sql_url, tmp_path)
    engine = ErasureEngine(config, today=RUN_DATE)
    engine.ledger.restrict(Subject.build(emails=[KID]), REASON, until=dt.date(2026, 12, 31), actor="dpo")
    plan, report = run_flow(engine, child_purge(engine, RUN_DATE))
    assert report.state == "verified"
    assert held_reasons(plan) == ["restricted (processing restricted at the person's request, until 2026-12-31)"]
    assert ids(sql_url, "youth_signups", "signup_id") == [1, 3]
    cert = engine.certificate(plan.plan_id)
    assert [h["reason"] for h in cert["held"]] == held_reasons(plan)

    later = dt.date(2027, 1, 1)  # the day after its last day: the restriction has lapsed
    engine = ErasureEngine(config, today=later)
    plan, report = run_flow(engine, child_purge(engine, later))
    assert report.state == "verified" and plan.held == []
    assert ids(sql_url, "youth_signups", "signup_id") == [3]


def test_when_restricted_then_an_explicit_erasure_request_still_erases(sqlite_url, tmp_path):
    build_sql(sqlite_url)
    engine = ErasureEngine(sql_config(sqlite_url, tmp_path), today=RUN_DATE)
    restrict(engine)
    subject = Subject.build(emails=[RITA])
    plan = engine.submit(subject, "rita")
    assert plan.held == []
    engine.approve(plan.plan_id, "dpo@example.test")
    assert engine.execute(plan.plan_id, subject=subject).state == "verified"
    assert ids(sqlite_url, "enquiries", "enquiry_id") == [2, 3]


def test_when_a_person_is_restricted_then_access_still_finds_their_records(sqlite_url, tmp_path):
    from pii.engine.discover import locate_subject

    build_sql(sqlite_url)
    config = sql_config(sqlite_url, tmp_path)
    restrict(ErasureEngine(config, today=RUN_DATE))
    found = locate_subject(config, Subject.build(emails=[RITA])).findings
    assert {f.container for f in found} >= {"enquiries"}


# ---------------------------------------------------------------------------- CSV
def csv_world(tmp_path):
    exports = tmp_path / "exports"
    exports.mkdir()
    with (exports / "enquiries.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["enquiry_id", "email", "phone", "received_at"])
        w.writerow(["1", "someone.else@example.test", "", "2022-01-10"])
        w.writerow(["2", "other.person@example.test", "020 7946 0555", "2022-03-01"])   # restricted by phone
        w.writerow(["3", "new.one@example.test", "", "2026-10-01"])
    with (exports / "signups.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["signup_id", "email", "date_of_birth"])
        w.writerow(["1", KID, "2016-05-01"])
        w.writerow(["2", "kid.other@example.test", "2017-01-01"])
    rules = [{"name": "enquiries", "store": "exports", "match": "enquiries.csv", "date": "received_at",
              "period": "2y", "category": "Enquiries"}]
    return parse_config({"stores": {"exports": {"kind": "csv", "path": str(exports)}}, "retention": rules,
                         "child_purge": {"text_clues": False, "stores": ["exports"]}}, tmp_path / "stores.yaml")


def csv_ids(tmp_path, name):
    with (tmp_path / "exports" / name).open(newline="") as fh:
        return [r[0] for r in list(csv.reader(fh))[1:]]


def test_when_restricted_then_csv_rows_are_held_by_retention_and_child_purge_and_purged_after_release(tmp_path):
    config = csv_world(tmp_path)
    engine = ErasureEngine(config, today=RUN_DATE)
    engine.ledger.restrict(Subject.build(phones=["+44 20 7946 0555"]), REASON, actor="dpo")
    engine.ledger.restrict(Subject.build(emails=[KID]), REASON, actor="dpo")
    plan, report = run_flow(engine, retention(engine))
    assert report.state == "verified" and len(plan.held) == 1
    assert csv_ids(tmp_path, "enquiries.csv") == ["2", "3"]
    plan, report = run_flow(engine, child_purge(engine, RUN_DATE))
    assert report.state == "verified" and len(plan.held) == 1
    assert csv_ids(tmp_path, "signups.csv") == ["1"]

    engine.ledger.release_restriction(Subject.build(phones=["020 7946 0555"]), actor="dpo")
    engine.ledger.release_restriction(Subject.build(emails=[KID]), actor="dpo")
    engine = ErasureEngine(config, today=RUN_DATE)
    assert run_flow(engine, retention(engine))[1].state == "verified"
    assert csv_ids(tmp_path, "enquiries.csv") == ["3"]
    assert run_flow(engine, child_purge(engine, RUN_DATE))[1].state == "verified"
    assert not (tmp_path / "exports" / "signups.csv").exists() or csv_ids(tmp_path, "signups.csv") == []


def test_when_nobody_is_restricted_then_the_flows_hold_nothing(sqlite_url, tmp_path):
    build_sql(sqlite_url)
    engine = ErasureEngine(sql_config(sqlite_url, tmp_path), today=RUN_DATE)
    plan, report = run_flow(engine, retention(engine))
    assert plan.held == [] and ids(sqlite_url, "enquiries", "enquiry_id") == [3]


def test_when_a_restriction_comes_after_the_approval_then_the_execution_leaves_their_rows(sqlite_url, tmp_path):
    build_sql(sqlite_url)
    engine = ErasureEngine(sql_config(sqlite_url, tmp_path), today=RUN_DATE)
    plan = submit_selection(engine, retention(engine), "dpo@example.test")
    assert plan.held == []  # nobody restricted yet: her old enquiry and its reply are planned
    engine.approve(plan.plan_id, "dpo@example.test")
    restrict(engine)
    report = engine.execute(plan.plan_id)
    assert report.refused == 2  # her enquiry and its reply: the restriction wins over the approved plan
    assert ids(sqlite_url, "enquiries", "enquiry_id") == [1, 3]
    assert ids(sqlite_url, "enquiry_replies", "reply_id") == [10]


def test_when_a_file_received_in_error_holds_a_restricted_persons_row_then_the_whole_file_is_held(tmp_path):
    from pii.engine.flows import Source, received_in_error

    config = csv_world(tmp_path)
    engine = ErasureEngine(config, today=RUN_DATE)
    engine.ledger.restrict(Subject.build(phones=["020 7946 0555"]), REASON, actor="dpo")
    plan, report = run_flow(engine, received_in_error(engine, Source(store="exports", file="enquiries.csv")))
    assert report.state == "verified"
    assert held_reasons(plan) == ["restricted (processing restricted at the person's request, until released)"]
    assert csv_ids(tmp_path, "enquiries.csv") == ["1", "2", "3"]
    engine.ledger.release_restriction(Subject.build(phones=["020 7946 0555"]), actor="dpo")
    engine = ErasureEngine(config, today=RUN_DATE)
    run_flow(engine, received_in_error(engine, Source(store="exports", file="enquiries.csv")))
    assert not (tmp_path / "exports" / "enquiries.csv").exists()
