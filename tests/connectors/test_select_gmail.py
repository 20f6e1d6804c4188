"""GmailConnector.select against the fake Gmail server (connectors/fakes/gmail_server.py) through the real
google-api-python-client: senders, message-date bounds (pushed down as before:/after:, checked in Python),
message ids, text tests under a sender bound, equals on from/to/subject, containers and labels, and the
selected messages erased by the connector's own apply."""
from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from connectors.base import DELETE, ExecAction
from connectors.gmail import GmailConnector
from pii.core.config import StoreConfig
from pii.core.errors import ConfigError
from pii.core.selection import MESSAGE_DATE, RecordFilter
from pii.core.subject import Subject, SubjectMatcher
from connectors.fakes.gmail_server import FakeGmail, SearchSyntaxError, mail

USER = "support@example.test"
STORE = "support_mailbox"
PARTNER = "orders@partner.example"
OTHER = "news@elsewhere.example"


@pytest.fixture
def gmail():
    with FakeGmail() as server:
        yield server


def connector(gmail: FakeGmail, said: list | None = None, **options) -> GmailConnector:
    opts = {"user_id": USER, "api_endpoint": gmail.endpoint, **options}
    store = StoreConfig(name=STORE, kind="gmail", options=opts, base_dir=Path("."))
    progress = (lambda _s, m: said.append(m)) if said is not None else (lambda _s, _m: None)
    return GmailConnector(store, sleep=lambda _s: None, progress=progress)


def ms(year: int, month: int, day: int, hour: int = 12) -> int:
    return int(dt.datetime(year, month, day, hour, tzinfo=dt.timezone.utc).timestamp() * 1000)


def ids(findings) -> set[str]:
    return {f.location["message_id"] for f in findings}


def erase(conn: GmailConnector, findings) -> list[tuple]:
    calls: list[tuple] = []
    actions = [ExecAction(f"act-{i}", f.container, f.location, DELETE, expected=f.record)
               for i, f in enumerate(findings)]
    conn.apply(actions, lambda aids, n, detail: calls.append((sorted(aids), n, detail)),
               SubjectMatcher(Subject.build(emails=["nobody@example.test"])))
    return calls


def child(text: str) -> bool:
    return "my son" in text.lower() or "my daughter" in text.lower()


# --------------------------------------------------------------------------- senders
def test_when_mail_from_names_senders_then_their_messages_are_selected_and_delete_trashes_exactly_those(gmail):
    a = gmail.add(mail(frm=f'"Orders Desk" <{PARTNER.upper()}>', to=USER, subject="Batch 7", text="rows attached"))
    b = gmail.add(mail(frm="second@partner.example", to=USER, subject="Batch 8", text="more rows"))
    c = gmail.add(mail(frm=OTHER, to=USER, subject="Weekly news", text=f"forwarded from {PARTNER}"))
    d = gmail.add(mail(frm=USER, to=PARTNER, subject="Re: Batch 7", text="thanks"))  # to the partner, not from
    said: list[str] = []
    with connector(gmail, said) as conn:
        found = conn.select(RecordFilter(mail_from=(PARTNER, " Second@Partner.example "), entity="EMAIL_ADDRESS"))
        assert ids(found) == {a, b}
        assert gmail.queries[-1] == f"(from:{PARTNER} OR from:second@partner.example)"
        f = next(x for x in found if x.location["message_id"] == a)
        assert (f.match, f.strength, f.entities, f.container) == ("identifier", "strong", ["EMAIL_ADDRESS"], "messages")
        assert f.record["body_text"] == "rows attached" and f.record["subject"] == "Batch 7"
        assert "_raw_eml" not in f.record and f.record["party"] is False
        assert f.record == next(x for x in conn.select(RecordFilter(mail_from=(PARTNER,)))).record  # stable
        calls = erase(conn, found)
    assert sum(n for _, n, _ in calls) == 2
    assert gmail.ids() == {c, d}
    assert gmail.ids(include_trash=True) == {a, b, c, d}  # erase: trash (the default)
    assert not any(PARTNER in m.casefold() or "batch" in m.casefold() for m in said)  # counts only


def test_when_no_accepted_sender_is_an_address_then_nothing_is_selected_without_a_search(gmail):
    gmail.add(mail(frm=PARTNER, to=USER, subject="x", text="y"))
    with connector(gmail) as conn:
        assert conn.select(RecordFilter(mail_from=("not an address",))) == []
    assert gmail.stats["list"] == 0


# --------------------------------------------------------------------------- dates
def test_when_message_date_bounds_are_given_then_the_search_is_a_superset_and_dates_are_checked_strictly(gmail):
    on_after = gmail.add(mail(frm=PARTNER, to=USER, subject="on the after day", text="x"),
                         internal_date=ms(2026, 1, 5, 23))
    inside1 = gmail.add(mail(frm=PARTNER, to=USER, subject="inside", text="x"), internal_date=ms(2026, 1, 6, 0))
    inside2 = gmail.add(mail(frm=OTHER, to=USER, subject="inside too", text="x"), internal_date=ms(2026, 1, 9, 23))
    on_before = gmail.add(mail(frm=PARTNER, to=USER, subject="on the before day", text="x"),
                          internal_date=ms(2026, 1, 10, 1))
    gmail.add(mail(frm=PARTNER, to=USER, subject="long ago", text="x"), internal_date=ms(2025, 6, 1))
    with connector(gmail) as conn:
        found = conn.select(RecordFilter(date_column=MESSAGE_DATE, after=dt.date(2026, 1, 5),
                                         before=dt.date(2026, 1, 10)))
        from_partner = conn.select(RecordFilter(date_column=MESSAGE_DATE, after=dt.date(2026, 1, 5),
                                                mail_from=(PARTNER,)))
    assert gmail.queries[0] == "after:2026/01/05 before:2026/01/11"  # a day wider than the bounds
    assert len(gmail.search(gmail.queries[0])) == 4  # Gmail's answer held the boundary days...
    assert ids(found) == {inside1, inside2}  # ...which the connector's own check left out
    assert ids(from_partner) == {inside1, on_before}
    assert on_after not in ids(found) | ids(from_partner)
    assert found[0].record["date"].startswith("2026-01-0")


# --------------------------------------------------------------------------- message ids
def test_when_message_ids_are_given_then_those_messages_are_fetched_directly_and_unknown_ids_select_nothing(gmail):
    a = gmail.add(mail(frm=PARTNER, to=USER, subject="one", text="x"))
    b = gmail.add(mail(frm=OTHER, to=USER, subject="two", text="x"))
    c = gmail.add(mail(frm=PARTNER, to=USER, subject="three", text="x"), labels=("TRASH",))
    gmail.add(mail(frm=PARTNER, to=USER, subject="four", text="x"))
    with connector(gmail) as conn:
        found = conn.select(RecordFilter(message_ids=(a, b, c, "18c2f0000000ffff", "../profile")))
        narrowed = conn.select(RecordFilter(message_ids=(a, b), mail_from=(PARTNER,)))
        calls = erase(conn, found)
    assert ids(found) == {a, b}  # c is in Trash: erased already; the unknown ids select nothing
    assert ids(narrowed) == {a}
    assert gmail.stats["list"] == 0  # no search: the ids were fetched
    assert sum(n for _, n, _ in calls) == 2 and a not in gmail.ids() and b not in gmail.ids()
    assert len(gmail.ids()) == 1


# --------------------------------------------------------------------------- text tests
def test_when_a_text_test_runs_under_a_sender_bound_then_subject_or_body_must_pass_and_delete_removes_them(gmail):
    in_subject = gmail.add(mail(frm=PARTNER, to=USER, subject="My son's account", text="please close it"))
    in_body = gmail.add(mail(frm=PARTNER, to=USER, subject="Account", text="Hello,\nmy daughter is 12.\nBye"))
    in_html = gmail.add(mail(frm=PARTNER, to=USER, subject="Html", html_body="<p>about <b>my son</b></p>"))
    gmail.add(mail(frm=PARTNER, to=USER, subject="Attachment", text="see file",
                   attachments=(("note.txt", "text/plain", b"my son again"),)))  # attachments are not tested
    gmail.add(mail(frm=PARTNER, to=USER, subject="Nothing", text="an adult customer"))
    other = gmail.add(mail(frm=OTHER, to=USER, subject="My son", text="my son"))
    with connector(gmail, erase="delete") as conn:
        found = conn.select(RecordFilter(mail_from=(PARTNER,), text_test=child, text_terms=("son", "daughter")))
        assert ids(found) == {in_subject, in_body, in_html}
        assert {f.match for f in found} == {"text"}
        calls = erase(conn, found)
    assert sum(n for _, n, _ in calls) == 3
    assert gmail.ids(include_trash=True) & {in_subject, in_body, in_html} == set()  # deleted for good
    assert other in gmail.ids() and len(gmail.ids()) == 3


def test_when_a_text_test_is_the_only_condition_then_config_error_and_no_search(gmail):
    gmail.add(mail(frm=PARTNER, to=USER, subject="My son", text="x"))
    with connector(gmail) as conn:
        with pytest.raises(ConfigError, match="needs a bound"):
            conn.select(RecordFilter(text_test=child))
        with pytest.raises(ConfigError, match="needs a bound"):
            conn.select(RecordFilter())
    assert gmail.stats["list"] == 0 and gmail.stats["batch"] == 0


# --------------------------------------------------------------------------- equals, containers
def test_when_equals_names_mail_headers_then_addresses_compare_normalised_and_subjects_exactly(gmail):
    a = gmail.add(mail(frm=PARTNER, to=f'"Help" <{USER.upper()}>, x@example.test', subject="Batch 7", text="x"))
    gmail.add(mail(frm=PARTNER, to="x@example.test", subject="Batch 7", text="x"))
    gmail.add(mail(frm=PARTNER, to=USER, subject="Batch 7 again", text="x"))  # Gmail's subject: matches it too
    gmail.add(mail(frm=PARTNER, to=USER, subject="batch 7", text="x"))  # case differs: another value
    with connector(gmail) as conn:
        found = conn.select(RecordFilter(equals={"To": [USER], "subject": [" Batch 7 "]}))
        skipped_before = list(conn.skipped)
        none = conn.select(RecordFilter(equals={"status": ["new"]}, mail_from=(PARTNER,)))
        skipped = list(conn.skipped)
    assert ids(found) == {a} and skipped_before == []
    assert gmail.queries[0] == f'to:{USER} subject:"Batch 7"'
    assert none == [] and skipped == [("messages", "no column 'status' (mail compares only from, to and subject)")]


def test_when_containers_do_not_name_the_mailbox_then_nothing_is_selected_and_a_label_restricts_the_search(gmail):
    a = gmail.add(mail(frm=PARTNER, to=USER, subject="one", text="x"), labels=("INBOX", "Partner Orders"))
    b = gmail.add(mail(frm=PARTNER, to=USER, subject="two", text="x"))
    with connector(gmail) as conn:
        assert conn.select(RecordFilter(containers=("*.csv", "crm.*"), mail_from=(PARTNER,))) == []
        assert gmail.stats["list"] == 0
        whole = conn.select(RecordFilter(containers=("messages",), mail_from=(PARTNER,)))
        mailbox = conn.select(RecordFilter(containers=("support@*",), mail_from=(PARTNER,)))
        labelled = conn.select(RecordFilter(containers=("partner orders",), mail_from=(PARTNER,)))
        by_id = conn.select(RecordFilter(containers=("Partner Orders",), message_ids=(a, b)))
    assert ids(whole) == ids(mailbox) == {a, b}
    assert ids(labelled) == ids(by_id) == {a}


# --------------------------------------------------------------------------- the fake's new operators
def test_when_the_fake_server_gets_date_and_label_operators_then_it_answers_as_gmail_does_in_utc(gmail):
    jan4 = gmail.add(mail(frm=PARTNER, to=USER, text="x"), internal_date=ms(2026, 1, 4, 23), labels=("Work",))
    jan5 = gmail.add(mail(frm=PARTNER, to=USER, text="x"), internal_date=ms(2026, 1, 5, 0))

    def found(q):
        return {m.id for m in gmail.search(q)}

    assert found("after:2026/01/05") == {jan5} and found("before:2026/01/05") == {jan4}
    assert found("newer:2026-01-05") == {jan5} and found("older:2026/1/5") == {jan4}
    assert found(f"after:{ms(2026, 1, 4, 23) // 1000}") == {jan4, jan5}
    assert found("label:work") == {jan4} and found("-label:work") == {jan5}
    with pytest.raises(SearchSyntaxError):
        gmail.search("after:yesterday")
    with pytest.raises(SearchSyntaxError):
        gmail.search("in:inbox")
