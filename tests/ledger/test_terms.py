"""Request terms (issue 14, ledger part): extensions by calendar months (at most two beyond the first due
date, only before it passes) and identity verification, with their reasons and notes sealed."""
from __future__ import annotations

from datetime import date

import pytest

from pii.core.errors import LedgerError, RequestTermsRefused
from pii.engine.requests import due_report, list_requests, pick_up, register
from pii.ledger import Ledger
from tests.ledger.test_ledger import KEY, Clock, alice


@pytest.fixture
def ledger(sqlite_url):
    return Ledger(sqlite_url, key=KEY, clock=Clock())  # the clock says 2026-11-21


def test_extensions_move_the_due_date_by_calendar_months_at_most_two(ledger):
    rid = ledger.create_request("erasure", alice(), "helpdesk", date(2026, 10, 31))
    assert ledger.request_terms(rid)["due"] == "2026-11-30"
    assert ledger.extend_request(rid, 1, "Complex request from Zed Quarrington") == date(2026, 12, 30)
    assert ledger.extend_request(rid, 1, "still complex") == date(2027, 1, 30)
    with pytest.raises(RequestTermsRefused) as err:
        ledger.extend_request(rid, 1, "more")
    assert err.value.exit_code == 2
    row = list_requests(ledger, today=date(2027, 1, 31))[0]
    assert (row["due"], row["first_due"], row["extended_to"], row["overdue"]) == \
        ("2027-01-30", "2026-11-30", "2027-01-30", True)
    assert [r["request_id"] for r in due_report(ledger, date(2026, 12, 1))["overdue"]] == []
    assert "Quarrington" not in str(ledger.audit_events(rid))


def test_no_extension_after_the_first_due_date_or_of_more_than_two_months(ledger):
    late = ledger.create_request("erasure", alice(), "helpdesk", date(2026, 9, 1))
    with pytest.raises(RequestTermsRefused, match="has passed"):
        ledger.extend_request(late, 1, "too late")
    rid = ledger.create_request("access", alice(), "helpdesk", date(2026, 11, 20))
    with pytest.raises(RequestTermsRefused):
        ledger.extend_request(rid, 3, "three months")
    assert ledger.request_terms(rid)["extended_to"] is None


def test_identity_verification_gates_runs_by_request_id_when_required(ledger):
    rid = register(ledger, "access", alice(), "helpdesk", received_at=date(2026, 11, 20))
    pick_up(ledger, "access", rid)  # not required: runs
    with pytest.raises(LedgerError, match="not verified") as err:
        pick_up(ledger, "access", rid, require_identity=True)
    assert err.value.exit_code == 3
    with pytest.raises(RequestTermsRefused):
        ledger.verify_identity(rid, "a passport!", "clerk")
    ledger.verify_identity(rid, "document", "clerk", note="passport of Yolanda Fennimore seen")
    subject, _ = pick_up(ledger, "access", rid, require_identity=True)
    assert subject.emails
    terms = ledger.request_terms(rid)
    assert (terms["identity"], terms["identity_method"], terms["identity_by"]) == ("verified", "document", "clerk")
    assert "Fennimore" not in str(ledger.audit_events(rid))
    assert ledger.verify_chain()["intact"]
