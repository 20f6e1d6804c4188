"""Restrictions of processing and objections in the ledger (issue 14, items 2 and 3): keyed hashes only, the
reason sealed (shredded on release), an end date after which a restriction lapses, per-purpose objections,
audit events without identifiers or reasons. On SQLite (the raw file bytes too) and PostgreSQL."""
from __future__ import annotations

from datetime import date

import pytest
import sqlalchemy as sa

from pii.core.errors import LedgerError
from pii.core.subject import Subject
from pii.ledger import Ledger
from pii.ledger.schema import ledger_notes, ledger_restrictions
from tests.ledger.test_ledger import KEY, RAW, Clock, alice
from tests.ledger.test_notes import file_bytes, table_text

REASON = "Disputed by Bob Jonesworth, case R-77: accuracy contested"
CLEAR = ("Jonesworth", "R-77", "accuracy contested")


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request):
    return request.getfixturevalue({"sqlite": "sqlite_url", "postgresql": "postgres_url"}[request.param])


def assert_nothing_in_clear(ledger: Ledger, url: str) -> None:
    text, raw = table_text(ledger).casefold(), file_bytes(url)
    for needle in CLEAR + RAW:
        assert needle.casefold() not in text, needle
        assert needle.encode() not in raw, needle


def count(ledger: Ledger, table, *where) -> int:
    with ledger.engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(table).where(*where)).scalar_one()


def test_a_restriction_is_kept_as_hashes_with_a_sealed_reason_and_released_with_its_reason_shredded(url):
    clock = Clock()
    ledger = Ledger(url, key=KEY, clock=clock)
    assert not ledger.is_restricted(alice())
    assert ledger.restrict(alice(), REASON, actor="dpo") == 2  # email and phone; a name is never stored
    assert_nothing_in_clear(ledger, url)
    assert ledger.is_restricted(alice())
    assert ledger.is_restricted(Subject.build(emails=[" ALICE.Smith@example.org "]))  # any spelling
    assert ledger.is_restricted(Subject.build(phones=["020 7946 0123"]))
    assert not ledger.is_restricted(Subject.build(emails=["bob@example.org"]))
    assert {r["reason"] for r in ledger.restrictions_on(alice())} == {REASON}
    assert count(ledger, ledger_notes, ledger_notes.c.purpose == "restriction_reason") == 1

    event = [e for e in ledger.audit_events() if e["event"] == "restricted"][-1]
    assert event["details"]["added"] == 2 and event["details"]["reason"].startswith("note-")
    assert ledger.reason_matches(event["details"]["reason_hash"], REASON)

    assert ledger.release_restriction(Subject.build(emails=["alice.smith@example.org"]), actor="dpo") == 1
    assert ledger.is_restricted(alice())  # the phone is still restricted
    assert ledger.release_restriction(alice(), actor="dpo") == 1
    assert not ledger.is_restricted(alice())
    assert count(ledger, ledger_restrictions) == 0
    assert count(ledger, ledger_notes, ledger_notes.c.purpose == "restriction_reason") == 0  # shredded
    assert [e["event"] for e in ledger.audit_events()][-2:] == ["restriction_released"] * 2
    assert_nothing_in_clear(ledger, url)
    assert ledger.verify_chain()["intact"]


def test_a_restriction_with_an_end_date_holds_through_that_day_and_lapses_the_day_after(url):
    clock = Clock()  # 2026-11-21
    ledger = Ledger(url, key=KEY, clock=clock)
    ledger.restrict(alice(), REASON, until=date(2026, 11, 30))
    assert ledger.is_restricted(alice(), today=date(2026, 11, 30))
    assert not ledger.is_restricted(alice(), today=date(2026, 12, 1))
    assert ledger.restricted_hashes(today=date(2026, 12, 1)) == {}
    assert len(ledger.restricted_hashes(today=date(2026, 11, 30))) == 2
    clock.advance(days=10)  # the ledger's clock says 2026-12-01
    assert not ledger.is_restricted(alice()) and ledger.export_restrictions() == []
    with pytest.raises(LedgerError, match="already passed"):
        ledger.restrict(alice(), REASON, until=date(2026, 11, 30))


def test_restricting_again_renews_the_end_date_and_keeps_the_first_date(sqlite_url):
    clock = Clock()
    ledger = Ledger(sqlite_url, key=KEY, clock=clock)
    ledger.restrict(alice(), REASON, until=date(2026, 12, 1))
    first = ledger.export_restrictions()
    clock.advance(days=1)
    assert ledger.restrict(alice(), "renewed: still contested", until=date(2027, 6, 1)) == 0
    again = ledger.export_restrictions()
    assert [r["since"] for r in again] == [r["since"] for r in first]
    assert {r["until"] for r in again} == {"2027-06-01"}
    assert {r["reason"] for r in ledger.restrictions_on(alice())} == {"renewed: still contested"}
    assert count(ledger, ledger_notes) == 1  # the old reason shredded


def test_objections_are_per_purpose_and_a_restriction_covers_every_purpose(url):
    ledger = Ledger(url, key=KEY, clock=Clock())
    assert ledger.object_to(alice(), "profiling", REASON, actor="dpo") == 2
    assert ledger.is_restricted(alice(), purpose="profiling")
    assert not ledger.is_restricted(alice(), purpose="analytics")
    assert not ledger.is_restricted(alice())  # an objection is not a restriction of everything
    assert ledger.restricted_hashes() == {}  # the flows hold only restricted records
    ledger.restrict(alice(), REASON)
    assert ledger.is_restricted(alice(), purpose="analytics")
    exported = ledger.export_restrictions()
    assert {(r["kind"], r["purpose"]) for r in exported} == {
        ("email", "profiling"), ("phone", "profiling"), ("email", "restriction"), ("phone", "restriction")}
    assert all(set(r) == {"kind", "hash", "purpose", "since", "until"} for r in exported)
    assert all(len(r["hash"]) == 64 for r in exported)
    assert exported[0]["hash"] in {ledger.hash_identifier("email", "alice.smith@example.org"),
                                   ledger.hash_identifier("phone", "+442079460123")}
    assert_nothing_in_clear(ledger, url)
    assert ledger.release_restriction(alice(), purpose="profiling") == 2
    assert not ledger.is_restricted(Subject.build(emails=["bob@example.org"]), purpose="profiling")


def test_bad_input_is_refused_and_changes_nothing(sqlite_url):
    ledger = Ledger(sqlite_url, key=KEY, clock=Clock())
    events = len(ledger.audit_events())
    with pytest.raises(LedgerError, match="unknown purpose 'dating': use one of marketing, profiling, analytics"):
        ledger.object_to(alice(), "dating", REASON)
    with pytest.raises(LedgerError, match="needs a reason"):
        ledger.restrict(alice(), "  ")
    with pytest.raises(LedgerError, match="a name alone"):
        ledger.restrict(Subject.build(names=["Alice Smith"]), REASON)
    assert count(ledger, ledger_restrictions) == 0 and count(ledger, ledger_notes) == 0
    assert len(ledger.audit_events()) == events


def test_a_reason_naming_the_subject_is_shown_masked_or_withheld(sqlite_url):
    ledger = Ledger(sqlite_url, key=KEY, clock=Clock())
    ledger.restrict(alice(), "alice.smith@example.org disputes her address")
    assert {r["reason"] for r in ledger.restrictions_on(alice())} == {"[email] disputes her address"}
    ledger.restrict(alice(), "Alice Smith disputes her address")
    assert {r["reason"] for r in ledger.restrictions_on(alice())} == {"[withheld: it named the subject]"}
