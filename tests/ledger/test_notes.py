"""Sealed notes (issue 12.3): free text people type (the requester, an approval's or rejection's reason, a
legal hold's reason) is kept encrypted and shreddable; events and rows hold a note id and a keyed hash; what
the ledger shows is screened. Checked on SQLite (the raw file bytes too) and PostgreSQL."""
from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from pii.ledger import Ledger
from pii.ledger.notes import SHREDDED
from pii.ledger.schema import LEDGER_TABLES, ledger_holds, ledger_notes, ledger_plans
from tests.ledger.test_ledger import KEY, Clock, alice, make_plan

# Other people named in free text: nothing in the ledger's tables or files may hold them in clear.
REQUESTER = "Carol Danvers (front desk)"
REASON = "Bob Jonesworth at bob.jonesworth@example.net confirmed the request by phone"
HOLD = "Litigation with Dana Scullyson, case C-114"
CLEAR = ("Carol Danvers", "Danvers", "Jonesworth", "bob.jonesworth", "Scullyson")


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request):
    return request.getfixturevalue({"sqlite": "sqlite_url", "postgresql": "postgres_url"}[request.param])


def table_text(ledger: Ledger) -> str:
    with ledger.engine.connect() as conn:
        return "\n".join(json.dumps([list(r) for r in conn.execute(sa.select(t))], default=str)
                         for t in LEDGER_TABLES)


def file_bytes(url: str) -> bytes:
    if not url.startswith("sqlite:///"):
        return b""
    path = Path(url[len("sqlite:///"):])
    return b"".join(p.read_bytes() for p in (path, path.with_name(path.name + "-wal")) if p.exists())


def assert_nothing_in_clear(ledger: Ledger, url: str) -> None:
    text, raw = table_text(ledger), file_bytes(url)
    for needle in CLEAR:
        assert needle.casefold() not in text.casefold(), needle
        assert needle.encode() not in raw, needle


def new_plan(ledger: Ledger) -> tuple[str, str]:
    rid = ledger.create_request("erasure", alice(), REQUESTER, date(2026, 11, 20))
    return rid, ledger.store_plan(rid, make_plan(ledger, 2), ledger._now() + timedelta(hours=24))


def event(ledger: Ledger, rid: str, name: str) -> dict:
    return [e for e in ledger.audit_events(rid) if e["event"] == name][-1]


def test_requester_and_reasons_are_sealed_shown_screened_and_shredded_with_the_request(url):
    ledger = Ledger(url, key=KEY, clock=Clock())
    rid, approved = new_plan(ledger)
    _, rejected = new_plan(ledger)
    ledger.approve(approved, "dpo", reason=REASON)
    ledger.reject(rejected, "dpo", REASON)
    assert_nothing_in_clear(ledger, url)

    # shown: the requester as typed, the reasons screened (anyone's address masked)
    assert ledger.get_request(rid)["requester"] == REQUESTER
    shown = REASON.replace("bob.jonesworth@example.net", "[email]")
    assert ledger.get_plan(approved)["decision_reason"] == shown
    assert ledger.get_plan(rejected)["decision_reason"] == shown

    # the row and the event hold a note id; the event also a keyed hash that confirms the text
    with ledger.engine.connect() as conn:
        stored = conn.execute(sa.select(ledger_plans.c.decision_reason).where(
            ledger_plans.c.plan_id == approved)).scalar_one()
    assert stored.startswith("note-")
    details = event(ledger, rid, "plan_approved")["details"]
    assert details["reason"] == stored and details["reason_hash"].startswith("hmac:")
    assert ledger.reason_matches(details["reason_hash"], REASON)
    assert not ledger.reason_matches(details["reason_hash"], REASON + ".")

    ledger.shred_subject(rid, actor="lethe")
    assert ledger.get_request(rid)["requester"] == SHREDDED
    assert ledger.get_plan(approved)["decision_reason"] == SHREDDED
    assert event(ledger, rid, "identifiers_shredded")["details"]["notes"] == 2  # requester, one reason
    assert ledger.reason_matches(details["reason_hash"], REASON)  # the hash outlives the note
    assert ledger.verify_chain()["intact"]


def test_a_reason_naming_the_subject_is_withheld_when_shown(sqlite_url):
    ledger = Ledger(sqlite_url, key=KEY, clock=Clock())
    _, pid = new_plan(ledger)
    ledger.reject(pid, "dpo", "Alice Smith asked us to stop")
    assert ledger.get_plan(pid)["decision_reason"] == "[withheld: it named the subject]"
    assert "alice" not in table_text(ledger).casefold()


def test_hold_reason_is_sealed_shown_to_the_holder_and_shredded_on_release(url):
    ledger = Ledger(url, key=KEY, clock=Clock())
    assert ledger.place_hold(alice(), HOLD, actor="legal") == 3
    assert_nothing_in_clear(ledger, url)
    assert {h["reason"] for h in ledger.holds_on(alice())} == {HOLD}
    with ledger.engine.connect() as conn:
        notes = conn.execute(sa.select(sa.func.count()).select_from(ledger_notes)).scalar_one()
    assert notes == 1
    ledger.release_hold(alice(), actor="legal")
    with ledger.engine.connect() as conn:
        left = conn.execute(sa.select(sa.func.count()).select_from(ledger_notes).where(
            ledger_notes.c.purpose == "hold_reason")).scalar_one()
        holds = conn.execute(sa.select(sa.func.count()).select_from(ledger_holds)).scalar_one()
    assert (left, holds) == (0, 0)


def test_text_stored_before_notes_reads_as_it_was(sqlite_url):
    ledger = Ledger(sqlite_url, key=KEY, clock=Clock())
    _, pid = new_plan(ledger)
    ledger.reject(pid, "dpo", "duplicate request")
    with ledger.engine.begin() as conn:  # a row written by an older Lethe: screened text in place of a note id
        conn.execute(sa.update(ledger_plans).where(ledger_plans.c.plan_id == pid)
                     .values(decision_reason="withdrawn by the requester"))
    assert ledger.get_plan(pid)["decision_reason"] == "withdrawn by the requester"
