"""Redacting a mail instead of keeping it: a redacted RFC 822 copy added with users.messages.import through the
real google-api-python-client against the fake Gmail endpoint, checked, then the original trashed or deleted;
crash-safe (one copy, never an original removed without a checked copy)."""
from __future__ import annotations

import base64
import email
import email.policy
import email.utils
from pathlib import Path

import pytest

from connectors.base import UPDATE, ExecAction
from connectors.fakes.gmail_server import FakeGmail, mail
from connectors.gmail import GmailConnector
from connectors.mailredact import MARKER_HEADER, leaf_parts, redact_message
from pii.core.config import StoreConfig
from pii.core.policy import redact_fields
from pii.core.subject import Subject, SubjectMatcher

USER = "events@example.test"
ALICE = "alice.smith@example.org"
ALICE_PHONE = "020 7946 0123"
ALICE_NAME = "Alice Smith"
SECRETS = (ALICE, ALICE_PHONE, ALICE_NAME, "alice.smith", "7946 0123", "02079460123")
PDF = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj << /Type /Catalog >> endobj\n(binary \x00\xff) Tj\n%%EOF\n"
CSV = (f"name,email,phone\nBob Jones,bob.jones@example.net,020 7946 0999\n{ALICE_NAME},{ALICE},{ALICE_PHONE}\n"
       "Carol King,carol.king@example.net,020 7946 0555\n")
HTML = (f"<html><body><p>Attendees for Thursday are attached.</p><p>Please call <b>Alice&nbsp;Smith</b> on "
        f'<a href="tel:020%207946%200123">{ALICE_PHONE}</a> or write to '
        f'<a href="mailto:{ALICE}">her</a>.</p><p>Bob Jones brings the projector.</p></body></html>')
TEXT = (f"Attendees for Thursday are attached.\nPlease call {ALICE_NAME} on {ALICE_PHONE} or write to {ALICE}.\n"
        "Bob Jones brings the projector.\n")
DATE = "Tue, 10 Nov 2026 09:30:00 +0000"


@pytest.fixture
def gmail():
    with FakeGmail() as server:
        yield server


def _matcher() -> SubjectMatcher:
    return SubjectMatcher(Subject.build(emails=[ALICE], phones=[ALICE_PHONE], names=[ALICE_NAME]))


def _conn(gmail: FakeGmail, said: list, **options) -> GmailConnector:
    store = StoreConfig(name="events_mailbox", kind="gmail",
                        options={"user_id": USER, "api_endpoint": gmail.endpoint, **options}, base_dir=Path("."))
    return GmailConnector(store, sleep=lambda s: None, progress=lambda store, msg: said.append(msg))


def _staff_mail(**extra) -> bytes:
    return mail(frm="Events Team <events@example.test>", to="staff@example.test", cc="Bob Jones <bob.jones@example.net>",
                subject="Thursday attendees", text=TEXT, html_body=HTML, date=DATE,
                attachments=[("attendees.csv", "text/csv", CSV.encode()), ("floorplan.pdf", "application/pdf", PDF)],
                **extra)


def _redact_actions(conn: GmailConnector, matcher: SubjectMatcher, action_id: str = "act-3f9c2a") -> list[ExecAction]:
    """The actions the engine makes for the mentions: REDACT updates as pii/engine/erasure.py computes them."""
    out = []
    for f in conn.locate(matcher):
        new = redact_fields(f.record, matcher)
        updates = {k: v for k, v in new.items() if v != f.record.get(k)}
        assert updates, "the engine would not plan this redaction"
        out.append(ExecAction(action_id, f.container, f.location, UPDATE, updates, expected=f.record))
    return out


def _apply(conn, actions, matcher):
    calls = []
    conn.apply(actions, lambda ids, n, detail: calls.append((list(ids), n, detail)), matcher)
    return calls


def _copies(gmail: FakeGmail) -> list:
    return [m for m in gmail.messages.values() if MARKER_HEADER.encode() in m.raw.split(b"\r\n\r\n", 1)[0]]


def _text_of(raw: bytes) -> str:
    """Every decoded header and text part of a message (what a reader of the mailbox sees)."""
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    out = [f"{k}: {v}" for k, v in msg.items()]
    for part in msg.walk():
        if not part.is_multipart() and part.get_content_maintype() == "text":
            out.append(part.get_content())
    return "\n".join(out)


def _assert_clean(raw: bytes) -> None:
    seen = (_text_of(raw) + raw.decode("latin-1")).lower().replace("&nbsp;", " ").replace("\xa0", " ")
    for value in SECRETS:
        assert value.lower() not in seen


# --------------------------------------------------------------------------- the redacted copy
def test_when_a_staff_mail_mentions_her_then_a_checked_redacted_copy_replaces_it(gmail):
    other = gmail.add(mail(frm="staff@example.test", to=USER, subject="Thursday", text="Room booked.", date=DATE),
                      thread_id="thread-77", labels=["INBOX", "Label_12"])
    mid = gmail.add(_staff_mail(), thread_id="thread-77", labels=["INBOX", "Label_12", "IMPORTANT", "UNREAD"],
                    internal_date=1_762_767_000_000 + 42)
    original = gmail.messages[mid].raw
    said: list[str] = []
    matcher = _matcher()
    with _conn(gmail, said) as conn:
        actions = _redact_actions(conn, matcher)
        assert [a.location["message_id"] for a in actions] == [mid]
        calls = _apply(conn, actions, matcher)
    assert calls == [(["act-3f9c2a"], 1, None)]
    assert gmail.stats["import"] == 1 and gmail.imported[0]["params"]["internalDateSource"] == "dateHeader"
    # the original: in Trash (erase: trash, the default); the other mail of the thread untouched
    assert gmail.messages[mid].labels[-1] == "TRASH" and "INBOX" not in gmail.messages[mid].labels
    assert gmail.messages[other].labels == ["INBOX", "Label_12"]
    (copy,) = _copies(gmail)
    assert copy.id not in (mid, other)
    # labels, thread and date kept (the date from the Date header, as internalDateSource=dateHeader says)
    assert copy.labels == ["INBOX", "Label_12", "IMPORTANT", "UNREAD"] and copy.thread_id == "thread-77"
    assert copy.internal_date == int(email.utils.parsedate_to_datetime(DATE).timestamp() * 1000)
    _assert_clean(copy.raw)
    msg = email.message_from_bytes(copy.raw, policy=email.policy.default)
    # headers kept (she is not a party here): the same sender, recipients, subject, Message-ID
    old = email.message_from_bytes(original, policy=email.policy.default)
    for h in ("From", "To", "Cc", "Subject", "Date", "Message-ID"):
        assert msg[h] == old[h], h
    plain = msg.get_body(("plain",)).get_content().replace("\r\n", "\n")
    assert plain == TEXT.replace(ALICE_NAME, "[redacted]").replace(ALICE_PHONE, "[redacted]").replace(ALICE, "[redacted]")
    html = msg.get_body(("html",)).get_content()
    assert "<b>[redacted]</b>" in html and 'href="tel:[redacted]"' in html and 'href="mailto:[redacted]"' in html
    assert "<p>Bob Jones brings the projector.</p>" in html
    # the CSV: her row redacted, the other attendees' rows exactly as they were
    atts = {p.get_filename(): p for p in msg.iter_attachments()}
    csv = atts["attendees.csv"].get_content().replace("\r\n", "\n")
    assert csv.splitlines() == ["name,email,phone", "Bob Jones,bob.jones@example.net,020 7946 0999",
                                "[redacted],[redacted],[redacted]", "Carol King,carol.king@example.net,020 7946 0555"]
    # the PDF: byte for byte, its MIME part too (headers and base64 lines)
    assert atts["floorplan.pdf"].get_payload(decode=True) == PDF
    before, after = leaf_parts(original), leaf_parts(copy.raw)
    assert after["3"] == before["3"] and after["3"][0] == "application/pdf"
    assert original.split(b"floorplan.pdf", 1)[1] == copy.raw.split(b"floorplan.pdf", 1)[1]
    # a new search finds nothing of her in the mailbox (the original is in Trash)
    with _conn(gmail, said) as conn:
        assert conn.locate(matcher) == []
    # progress and errors carry counts only
    joined = "\n".join(said).lower()
    assert "1 of 1 messages replaced by a checked redacted copy" in joined
    for value in SECRETS:
        assert value.lower() not in joined


def test_when_erase_is_delete_then_the_original_is_deleted_for_good_after_the_copy_is_checked(gmail):
    mid = gmail.add(_staff_mail())
    matcher = _matcher()
    with _conn(gmail, [], erase="delete") as conn:
        calls = _apply(conn, _redact_actions(conn, matcher), matcher)
    assert calls == [(["act-3f9c2a"], 1, None)]
    assert mid not in gmail.messages and gmail.stats["delete"] == 1 and gmail.stats["trash"] == 0
    (copy,) = _copies(gmail)
    assert set(gmail.messages) == {copy.id}
    _assert_clean(copy.raw)


def test_when_the_run_dies_between_import_and_delete_then_a_rerun_uses_its_copy_and_removes_the_original(
        gmail, monkeypatch):
    mid = gmail.add(_staff_mail(), labels=["INBOX", "Label_3"])
    matcher = _matcher()

    def crash(self, mid, mode):
        raise RuntimeError("killed after the import")

    with _conn(gmail, []) as conn:
        actions = _redact_actions(conn, matcher)
        monkeypatch.setattr(GmailConnector, "_remove_original", crash)
        with pytest.raises(RuntimeError):
            _apply(conn, actions, matcher)
        monkeypatch.undo()
    (copy,) = _copies(gmail)
    assert gmail.messages[mid].labels == ["INBOX", "Label_3"]  # never removed without a checked copy
    # the re-run: a fresh search still finds the original (the copy holds nothing of her)
    said: list[str] = []
    with _conn(gmail, said) as conn:
        again = _redact_actions(conn, matcher)
        assert [a.location["message_id"] for a in again] == [mid]
        calls = _apply(conn, again, matcher)
        assert calls == [(["act-3f9c2a"], 1, None)]
        # and a third run over the same plan: nothing left to do, still one copy
        assert _apply(conn, again, matcher) == [(["act-3f9c2a"], 0, None)]
    assert gmail.stats["import"] == 1 and [c.id for c in _copies(gmail)] == [copy.id]
    assert "TRASH" in gmail.messages[mid].labels and gmail.messages[copy.id].labels == ["INBOX", "Label_3"]
    assert "1 copies from an interrupted run" in "\n".join(said)


def test_when_a_mail_has_no_message_id_then_the_copy_gets_one_from_the_marker_and_a_rerun_finds_it(gmail, monkeypatch):
    raw = _staff_mail()
    head, body = raw.split(b"\r\n\r\n", 1)
    raw = b"\r\n".join(line for line in head.split(b"\r\n") if not line.startswith(b"Message-ID")) + b"\r\n\r\n" + body
    mid = gmail.add(raw)
    matcher = _matcher()
    with _conn(gmail, []) as conn:
        actions = _redact_actions(conn, matcher)
        monkeypatch.setattr(GmailConnector, "_remove_original", lambda self, m, mode: 1 / 0)
        with pytest.raises(ZeroDivisionError):
            _apply(conn, actions, matcher)
        monkeypatch.undo()
        assert _apply(conn, actions, matcher) == [(["act-3f9c2a"], 1, None)]
    (copy,) = _copies(gmail)
    assert copy.msgid == "lethe-redacted.act-3f9c2a@lethe.invalid" and gmail.stats["import"] == 1
    assert "TRASH" in gmail.messages[mid].labels


def test_when_she_is_in_cc_and_the_policy_redacts_then_her_entry_goes_and_the_others_stay(gmail):
    mid = gmail.add(mail(frm=f"{ALICE_NAME} <{ALICE}>", to="staff@example.test",
                         cc=[f"Bob Jones <bob.jones@example.net>", f'"Smith, Alice" <{ALICE}>'],
                         subject=f"Notes from {ALICE_NAME}", text=f"Minutes attached. Call me on {ALICE_PHONE}.\n"))
    matcher = _matcher()
    f = ExecAction("act-77", "messages", {"message_id": mid}, UPDATE, {"body_text": "x"})
    with _conn(gmail, []) as conn:
        assert _apply(conn, [f], matcher) == [(["act-77"], 1, None)]
    (copy,) = _copies(gmail)
    msg = email.message_from_bytes(copy.raw, policy=email.policy.default)
    assert msg["From"] == '"[redacted]" <redacted@redacted.invalid>'  # a mail keeps a sender
    assert msg["To"] == "staff@example.test" and msg["Cc"] == "Bob Jones <bob.jones@example.net>"
    assert msg["Subject"] == "Notes from [redacted]"
    _assert_clean(copy.raw)


# --------------------------------------------------------------------------- what cannot be redacted
def test_when_the_copy_still_names_her_then_it_is_discarded_and_the_original_stays_for_review(gmail):
    # the phone is in the body (redactable); her name is in a uuencoded text attachment, which Python's email
    # package (and so the search) decodes but Lethe does not rewrite
    import binascii

    uu = b"begin 644 notes.txt\r\n" + binascii.b2a_uu(b"Badge list: Alice Smith, table 4\n") + b"`\r\nend\r\n"
    raw = (b"From: events@example.test\r\nTo: staff@example.test\r\nSubject: Badges\r\nMIME-Version: 1.0\r\n"
           b'Content-Type: multipart/mixed; boundary="XX"\r\n\r\n--XX\r\nContent-Type: text/plain; charset=utf-8\r\n'
           b"\r\nCall 020 7946 0123.\r\n--XX\r\nContent-Type: text/plain; name=notes.txt\r\n"
           b"Content-Disposition: attachment; filename=notes.txt\r\nContent-Transfer-Encoding: x-uuencode\r\n\r\n"
           + uu + b"--XX--\r\n")
    mid = gmail.add(raw)
    said: list[str] = []
    matcher = _matcher()
    with _conn(gmail, said) as conn:
        calls = _apply(conn, _redact_actions(conn, matcher), matcher)
    # recorded with 0 messages changed and why; the verification will find the message and say so
    assert calls == [(["act-3f9c2a"], 0, "not redacted: the subject is named where Lethe cannot rewrite it; left as "
                                         "it is, for review")]
    assert gmail.stats["import"] == 1 and gmail.stats["delete"] == 1  # the failed copy, deleted for good
    assert _copies(gmail) == [] and gmail.messages[mid].labels == ["INBOX"] and gmail.messages[mid].raw == raw
    assert "1 messages NOT redacted" in "\n".join(said)


def test_when_her_name_is_split_by_inline_tags_then_the_html_is_still_redacted(gmail):
    mid = gmail.add(mail(frm="events@example.test", to="staff@example.test", subject="Badges",
                         html_body=f"<p>Badge for <b>Alice</b>\n<span>Smith</span>, phone {ALICE_PHONE}.</p>"
                                   "<p>Bob Jones: table 2.</p>"))
    matcher = _matcher()
    with _conn(gmail, []) as conn:
        assert _apply(conn, _redact_actions(conn, matcher), matcher) == [(["act-3f9c2a"], 1, None)]
    (copy,) = _copies(gmail)
    _assert_clean(copy.raw)
    html = email.message_from_bytes(copy.raw, policy=email.policy.default).get_body(("html",)).get_content()
    assert "<p>Badge for <b>[redacted]</b><span></span>, phone [redacted].</p><p>Bob Jones: table 2.</p>" in html
    assert "TRASH" in gmail.messages[mid].labels


def test_when_the_mail_is_larger_than_the_json_path_takes_then_it_is_reported_not_redacted(gmail, monkeypatch):
    import connectors.gmail as gm

    mid = gmail.add(_staff_mail())
    monkeypatch.setattr(gm, "RAW_JSON_MAX", 1000)
    said: list[str] = []
    matcher = _matcher()
    with _conn(gmail, said) as conn:
        assert _apply(conn, _redact_actions(conn, matcher), matcher) == [
            (["act-3f9c2a"], 0, "not redacted: larger than the 0 MB JSON upload path; left as it is, for review")]
    assert gmail.stats["import"] == 0 and set(gmail.messages) == {mid} and gmail.messages[mid].labels == ["INBOX"]
    assert "1 larger than the 0 MB JSON upload path" in "\n".join(said)


def test_when_a_message_is_deleted_by_another_action_then_the_redaction_is_not_made(gmail):
    from connectors.base import DELETE

    mid = gmail.add(_staff_mail())
    actions = [ExecAction("act-d", "messages", {"message_id": mid}, DELETE),
               ExecAction("act-u", "messages", {"message_id": mid}, UPDATE, {"body_text": "x"})]
    with _conn(gmail, []) as conn:
        calls = _apply(conn, actions, _matcher())
    assert (["act-u"], 0, "the message is deleted by another action") in calls and (["act-d"], 1, None) in calls
    assert gmail.stats["import"] == 0 and "TRASH" in gmail.messages[mid].labels


# --------------------------------------------------------------------------- the fake endpoint, the pure part
def test_when_the_client_calls_import_and_insert_with_a_json_raw_body_then_the_fake_stores_them(gmail):
    said: list[str] = []
    conn = _conn(gmail, said)
    raw = mail(frm="a@example.test", to=USER, subject="Hello", text="hi", date=DATE, message_id="<m1@example.test>")
    body = {"raw": base64.urlsafe_b64encode(raw).decode(), "labelIds": ["INBOX", "STARRED"]}
    got = conn._messages.import_(userId=USER, body=body, internalDateSource="dateHeader").execute()
    inserted = conn._messages.insert(userId=USER, body=body).execute()
    assert gmail.messages[got["id"]].raw == raw and gmail.messages[got["id"]].labels == ["INBOX", "STARRED"]
    assert gmail.messages[got["id"]].internal_date == int(email.utils.parsedate_to_datetime(DATE).timestamp() * 1000)
    assert gmail.messages[inserted["id"]].internal_date != gmail.messages[got["id"]].internal_date  # receivedTime
    assert [i["how"] for i in gmail.imported] == ["import", "insert"]
    found = conn._messages.list(userId=USER, q="rfc822msgid:m1@example.test").execute()
    assert {m["id"] for m in found["messages"]} == {got["id"], inserted["id"]}
    from googleapiclient.errors import HttpError

    gmail.max_json_bytes = 100
    with pytest.raises(HttpError) as exc:
        conn._messages.import_(userId=USER, body=body).execute()
    assert exc.value.resp.status == 413
    conn.close()


def test_when_nothing_names_her_then_redact_message_changes_nothing():
    raw = mail(frm="x@example.test", to="y@example.test", subject="Lunch", text="Pizza at one.",
               attachments=[("menu.csv", "text/csv", b"item,price\npizza,9\n")])
    out = redact_message(raw, _matcher())
    assert out.raw == raw and out.changed == [] and set(out.kept) == {"1", "2"}


def test_when_a_file_name_or_a_forwarded_message_names_her_then_they_are_redacted_and_the_bytes_kept():
    from email.message import EmailMessage

    inner = mail(frm=f"{ALICE_NAME} <{ALICE}>", to="x@example.test", subject=f"Hi from {ALICE_NAME}",
                 text=f"Call me on {ALICE_PHONE}.")
    outer = EmailMessage()
    outer["From"], outer["To"], outer["Subject"] = "fw@example.test", "y@example.test", "Fwd"
    outer.set_content("See below.")
    outer.add_attachment(email.message_from_bytes(inner, policy=email.policy.default))
    outer.add_attachment(PDF, maintype="application", subtype="pdf", filename=f"{ALICE_NAME} CV.pdf")
    raw = outer.as_bytes(policy=email.policy.SMTP)
    out = redact_message(raw, _matcher())
    _assert_clean(out.raw)
    assert out.failed == [] and leaf_parts(out.raw)["3"][1] == leaf_parts(raw)["3"][1]  # the PDF's bytes
    msg = email.message_from_bytes(out.raw, policy=email.policy.default)
    assert [p.get_filename() for p in msg.iter_attachments()] == [None, "[redacted] CV.pdf"]
    forwarded = next(msg.iter_attachments()).get_content()
    assert forwarded["Subject"] == "Hi from [redacted]" and forwarded["To"] == "x@example.test"
    assert "Call me on [redacted]." in forwarded.get_content()
