"""pii.ledger.views, the console's read side: deadlines and days left, extensions and identity state,
the timeline with keyed hashes shortened, decisions with who/when/reason, per-store tables, pending plans."""
from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pytest

from pii.core.errors import LedgerError
from pii.core.subject import Subject
from pii.ledger import Ledger, views

KEY = b"test-ledger-key-0123456789abcdef"
EMAIL = "alice.smith@example.org"


def _action(n: int, store: str, container: str, action: str, **extra) -> dict:
    return {"action_id": f"act-{n}", "store": store, "container": container,
            "location": {"table": container, "key": {"id": n}}, "match": "identifier", "strength": "strong",
            "entities": ["EMAIL_ADDRESS"], "fingerprint": f"fp{n}", "action": action,
            "reason": f"{action} by rule", **extra}


PLAN = {"version": 1, "stores": ["crm", "exports", "empty"], "policy": "policy.yaml",
        "actions": [_action(1, "crm", "members", "delete"), _action(2, "crm", "members", "delete"),
                    _action(3, "crm", "notes", "anonymise", fields={"body": {"operator": "redact"}}),
                    _action(4, "exports", "hmac:0123456789abcdef0123", "delete")],
        "held": [_action(5, "crm", "payments", "retain", legal_basis="legal obligation", until="2031-01-01")],
        "review": []}


@pytest.fixture
def ledger(tmp_path):
    return Ledger(f"sqlite:///{tmp_path / 'ledger.db'}", key=KEY)


def _request(ledger, kind="erasure", received=date(2026, 11, 1)) -> str:
    return ledger.create_request(kind, Subject.build(emails=[EMAIL]), "support desk", received_at=received)


def test_when_requests_are_listed_then_open_ones_show_days_left_and_overdue(ledger):
    late = _request(ledger, received=date(2026, 10, 1))  # due 2026-11-01
    soon = _request(ledger, kind="access", received=date(2026, 11, 20))  # due 2026-12-20
    done = _request(ledger, received=date(2026, 9, 1))
    ledger.set_request_status(done, "completed")
    rows = views.list_requests(ledger, today=date(2026, 12, 3))
    assert [r["request_id"] for r in rows] == [late, soon, done]
    by_id = {r["request_id"]: r for r in rows}
    assert by_id[late]["days_left"] == -32 and by_id[late]["overdue"] is True
    assert by_id[soon]["days_left"] == 17 and by_id[soon]["overdue"] is False and by_id[soon]["kind"] == "access"
    assert by_id[done]["days_left"] is None and by_id[done]["overdue"] is False and not by_id[done]["open"]
    assert {r["extension"] for r in rows} == {"—"} and {r["identity"] for r in rows} == {"not recorded"}


def test_when_a_request_is_extended_and_verified_then_the_view_shows_it(ledger):
    rid = _request(ledger, received=date(2026, 11, 20))
    ledger.extend_request(rid, 1, "complex request", actor="dpo", today=date(2026, 11, 25))
    ledger.verify_identity(rid, "document", "dpo")
    row = views.get_request(ledger, rid, today=date(2026, 12, 3))
    assert row["extension"] == "2027-01-20" and row["due"] == "2027-01-20" and row["first_due"] == "2026-12-20"
    assert row["identity"] == "verified" and row["identity_method"] == "document"
    with pytest.raises(LedgerError):
        views.get_request(ledger, "req-missing")


def test_when_a_plan_is_grouped_then_one_row_per_container_action_and_basis():
    tables = views.store_tables(PLAN)
    assert list(tables) == ["crm", "exports", "empty"]
    assert tables["empty"] == []
    crm = {(r["container"], r["action"]): r for r in tables["crm"]}
    assert crm[("members", "delete")]["count"] == 2 and crm[("members", "delete")]["fields"] == "whole record"
    assert crm[("notes", "anonymise")]["fields"] == "body (redact)"
    assert crm[("payments", "retain")]["legal_basis"] == "legal obligation"
    assert crm[("payments", "retain")]["until"] == "2031-01-01"
    (exports,) = tables["exports"]
    assert exports["container"].startswith("<named after the subject, withheld")


def test_when_a_plan_is_pending_then_listed_and_once_rejected_its_decision_shows(ledger):
    rid = _request(ledger)
    pid = ledger.store_plan(rid, PLAN, datetime.now(timezone.utc) + timedelta(hours=72), actor="support desk")
    (pending,) = views.pending_approvals(ledger)
    assert pending["plan_id"] == pid and pending["kind"] == "erasure" and pending["due"] == "2026-12-01"
    plan = views.get_plan(ledger, pid)
    assert plan["counts"] == {"delete": 3, "anonymise": 1, "retain": 1}
    assert plan["decision"]["at"] is None
    ledger.reject(pid, "dpo", "needs a policy review first")
    assert views.pending_approvals(ledger) == []
    (row,) = views.plans_for(ledger, rid)
    assert row["state"] == "rejected" and row["decision"]["by"] == "dpo"
    assert row["decision"]["reason"] == "needs a policy review first" and row["decision"]["at"]
    events = [e["event"] for e in views.timeline(ledger, rid)]
    assert events[0] == "request_created" and "plan_stored" in events and "plan_rejected" in events


def test_when_the_timeline_shows_actors_then_keyed_hashes_are_shortened_and_no_value_appears(ledger):
    rid = _request(ledger)
    events = views.timeline(ledger, rid)
    created = events[0]
    assert created["actor"].startswith("hmac:") and created["actor"].endswith("…") and len(created["actor"]) == 14
    text = repr(views.list_requests(ledger)) + repr(events)
    assert EMAIL not in text and "alice" not in text.lower()
    assert views.short_hash("dpo") == "dpo" and views.short_hash(None) is None
