"""The Gmail connector against a fake Gmail server (tests/gmail_server.py), through the real
google-api-python-client: search, batch fetch, MIME parsing, confirmation, erasure, quotas, credentials."""
from __future__ import annotations

import base64
import json
import time
from pathlib import Path

import pytest

from connectors import connector_class
from connectors.base import DELETE, UPDATE, ExecAction
from connectors.gmail import GmailConnector, html_to_text, search_queries
from pii.core.config import StoreConfig
from pii.core.errors import ConfigError, StoreError, StoreUnreachable
from pii.core.subject import Subject, SubjectMatcher
from connectors.fakes.gmail_server import FakeGmail, SearchSyntaxError, mail

USER = "support@example.test"
ALICE = "alice.smith@example.org"
ALICE_PHONE = "020 7946 0123"
STORE = "support_mailbox"


# --------------------------------------------------------------------------- helpers
@pytest.fixture
def gmail():
    with FakeGmail() as server:
        yield server


def _store(gmail: FakeGmail | None, **options) -> StoreConfig:
    opts = {"user_id": USER}
    if gmail is not None:
        opts["api_endpoint"] = gmail.endpoint
    opts.update(options)
    return StoreConfig(name=STORE, kind="gmail", options=opts, base_dir=Path("."))


class _Run:
    """A connector with recorded sleeps and progress lines."""

    def __init__(self, gmail: FakeGmail | None, **options):
        self.sleeps: list[float] = []
        self.said: list[str] = []
        self.conn = GmailConnector(_store(gmail, **options), sleep=self.sleeps.append,
                                   progress=lambda store, msg: self.said.append(msg))

    def locate(self, **identifiers):
        return self.conn.locate(_matcher(**identifiers))

    def apply(self, actions, **identifiers):
        calls: list[tuple[list[str], int, str | None]] = []
        self.conn.apply(actions, lambda ids, n, detail: calls.append((list(ids), n, detail)),
                        _matcher(**(identifiers or {"emails": [ALICE]})))
        return calls


def _matcher(**identifiers) -> SubjectMatcher:
    return SubjectMatcher(Subject.build(**identifiers))


def _by_id(findings) -> dict:
    return {f.location["message_id"]: f for f in findings}


def _deletes(ids) -> list[ExecAction]:
    return [ExecAction(f"act-{i}", "messages", {"message_id": mid}, DELETE) for i, mid in enumerate(ids)]


# --------------------------------------------------------------------------- bodies and parts
def test_when_message_is_multipart_text_and_html_then_party_record_holds_whole_plain_text_and_raw_eml(gmail):
    text = "Hello,\nplease refund order 1234.\nThanks, Alice"
    mid = gmail.add(mail(frm=f'"Alice Smith" <{ALICE}>', to=USER, subject="Refund request", text=text,
                         html_body="<html><body><p>Hello,</p><p>please refund <b>order 1234</b>.</p>"
                                   "<p>Thanks, Alice</p></body></html>"))
    gmail.add(mail(frm="bob@example.org", to=USER, subject="Other", text="Unrelated"))
    run = _Run(gmail)
    findings = run.locate(emails=[ALICE])
    assert [f.location for f in findings] == [{"message_id": mid}]
    f = findings[0]
    assert (f.match, f.strength, f.entities) == ("identifier", "strong", ["EMAIL_ADDRESS"])
    rec = f.record
    assert rec["party"] is True and rec["message_id"] == mid and rec["thread_id"] == mid
    assert rec["subject"] == "Refund request" and ALICE in rec["from"] and rec["to"] == USER
    assert rec["body_text"] == text  # the plain part whole; the HTML alternative is not repeated
    assert base64.b64decode(rec["_raw_eml"]) == gmail.messages[mid].raw
    assert rec["date"].endswith("Z")


def test_when_message_is_html_only_then_visible_text_is_scanned_and_excerpt_kept(gmail):
    html = ("<html><head><style>.x{color:red}</style></head><body>"
            "<p>Ticket&nbsp;#88: please call back.</p>"
            f"<p>Customer called: <b>Alice&nbsp;Smith</b> &lt;{ALICE}&gt; wants a callback on {ALICE_PHONE}.</p>"
            "<p>Unrelated paragraph about the weather.</p>"
            "<script>var x = 1;</script></body></html>")
    mid = gmail.add(mail(frm="agent@example.test", to="team@example.test", subject="Callbacks", html_body=html))
    findings = _Run(gmail).locate(emails=[ALICE], phones=[ALICE_PHONE])
    assert [f.location for f in findings] == [{"message_id": mid}]
    f = findings[0]
    assert (f.match, f.strength) == ("text", "strong")
    assert f.entities == ["EMAIL_ADDRESS", "PHONE_NUMBER"]
    assert f.record["party"] is False and "_raw_eml" not in f.record
    assert f.record["body_text"] == f"Customer called: Alice Smith <{ALICE}> wants a callback on {ALICE_PHONE}."
    assert html_to_text('<p>Write <a href="mailto:a%40b.example">to her</a></p>') == "Write to her (a@b.example)"


def test_when_attachments_are_text_then_txt_and_csv_are_scanned_and_pdf_is_listed_not_scanned(gmail):
    csv_bytes = f"id,name,email\n1,Bob Jones,bob@example.org\n2,Alice Smith,{ALICE}\n3,Carol King,c@example.org\n"
    pdf = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\n(invoice) Tj\n%%EOF\n"
    in_csv = gmail.add(mail(frm="hr@example.test", to="payroll@example.test", subject="Leavers",
                            text="See the attached export.",
                            attachments=[("leavers.csv", "text/csv", csv_bytes.encode()),
                                         ("notes.txt", "text/plain", b"Nothing to see here"),
                                         ("scan.pdf", "application/pdf", pdf)]))
    in_txt = gmail.add(mail(frm="hr@example.test", to="payroll@example.test", subject="Call log",
                            text="Log attached.",
                            attachments=[("call-log.txt", "text/plain",
                                          f"09:10 weather chat\n09:12 call from {ALICE_PHONE}, wants refund\n".encode())]))
    only_pdf = gmail.add(mail(frm="scanner@example.test", to=USER, subject="Scan", text="Scanned document.",
                              attachments=[("form.pdf", "application/pdf",
                                            b"%PDF-1.4\n(Applicant: " + ALICE.encode() + b") Tj\n%%EOF\n")]))
    party = gmail.add(mail(frm=f"Alice Smith <{ALICE}>", to=USER, subject="My ID", text="Attached.",
                           attachments=[("passport.png", "image/png", b"\x89PNG\r\n\x1a\nfake")]))
    run = _Run(gmail)
    found = _by_id(run.locate(emails=[ALICE], phones=[ALICE_PHONE]))
    assert set(found) == {in_csv, in_txt, only_pdf, party}
    # coverage: the three messages with attachments Lethe cannot read are partly read, by type, no names
    partial = {p["place"]: p["reason"] for p in run.conn.coverage.partial}
    assert partial == {f"message {in_csv}": "1 attachment(s) not scanned (application/pdf)",
                       f"message {only_pdf}": "1 attachment(s) not scanned (application/pdf)",
                       f"message {party}": "1 attachment(s) not scanned (image/png)"}
    assert not run.conn.coverage.complete

    f = found[in_csv]
    assert f.location == {"message_id": in_csv, "part": "leavers.csv"}
    assert (f.match, f.strength, f.entities) == ("text", "strong", ["EMAIL_ADDRESS"])
    assert f.record["body_text"] == f"[leavers.csv] 2,Alice Smith,{ALICE}"  # only the line that mentions her
    atts = {a["filename"]: a for a in f.record["attachments"]}
    assert atts["leavers.csv"]["scanned"] and atts["notes.txt"]["scanned"]
    assert atts["scan.pdf"]["scanned"] is False and "application/pdf" in atts["scan.pdf"]["reason"]

    assert found[in_txt].record["body_text"] == f"[call-log.txt] 09:12 call from {ALICE_PHONE}, wants refund"
    assert found[in_txt].entities == ["PHONE_NUMBER"]

    # Gmail's index matched the PDF; Lethe cannot read it: reported for review, never as confirmed
    f = found[only_pdf]
    assert (f.match, f.strength, f.entities) == ("text", "weak", [])
    assert "not scanned" in f.note and f.record["attachments"][0]["scanned"] is False
    assert "from" not in f.record and f.record["body_text"] == ""

    f = found[party]
    assert f.match == "identifier" and f.record["attachments"][0]["scanned"] is False
    assert "_raw_eml" in f.record


def _raw(headers: str, body: bytes) -> bytes:
    return headers.replace("\n", "\r\n").encode("ascii") + b"\r\n" + body.replace(b"\n", b"\r\n")


def test_when_bodies_use_iso_8859_1_or_windows_1252_then_they_decode_and_match(gmail):
    latin1 = gmail.add(_raw(
        "From: =?iso-8859-1?q?Zo=EB_Bront=EB?= <zoe@mail.example>\nTo: support@example.test\n"
        "Subject: =?iso-8859-1?q?R=E9clamation?=\nDate: Mon, 16 Nov 2026 10:00:00 +0000\nMIME-Version: 1.0\n"
        'Content-Type: text/plain; charset="iso-8859-1"\nContent-Transfer-Encoding: 8bit\n',
        b"Bonjour, je suis Zo\xeb Bront\xeb, t\xe9l. 020 7946 0123.\n"))
    cp1252 = gmail.add(_raw(
        "From: agent@example.test\nTo: team@example.test\nSubject: Notes\nDate: Mon, 16 Nov 2026 11:00:00 +0000\n"
        'MIME-Version: 1.0\nContent-Type: text/plain; charset="windows-1252"\nContent-Transfer-Encoding: 8bit\n',
        b"Queue notes.\nCaller \x93Zo\xeb Bront\xeb\x94 paid \x8050 \x96 refund due.\nEnd.\n"))
    mislabelled = gmail.add(_raw(  # says Latin-1, holds windows-1252 quotes (common): read as windows-1252
        "From: agent@example.test\nTo: team@example.test\nSubject: More\nDate: Mon, 16 Nov 2026 12:00:00 +0000\n"
        'MIME-Version: 1.0\nContent-Type: text/plain; charset="iso-8859-1"\nContent-Transfer-Encoding: quoted-printable\n',
        b"Re: =93Zo=EB Bront=EB=94 called again.\n"))
    found = _by_id(_Run(gmail).locate(names=["Zoë Brontë"], phones=[ALICE_PHONE]))
    assert set(found) == {latin1, cp1252, mislabelled}

    f = found[latin1]
    assert (f.match, f.strength) == ("identifier", "strong")  # display name, corroborated by the phone
    assert f.entities == ["PERSON", "PHONE_NUMBER"]
    assert f.record["from"] == "Zoë Brontë <zoe@mail.example>" and f.record["subject"] == "Réclamation"
    assert f.record["body_text"] == "Bonjour, je suis Zoë Brontë, tél. 020 7946 0123."

    assert found[cp1252].record["body_text"] == "Caller “Zoë Brontë” paid €50 – refund due."
    assert (found[cp1252].match, found[cp1252].strength) == ("text", "weak")
    assert found[mislabelled].record["body_text"] == "Re: “Zoë Brontë” called again."


# --------------------------------------------------------------------------- volume and quotas
def test_when_mailbox_holds_1600_matching_messages_then_every_list_page_and_batch_is_read(gmail, record_property):
    n = 1600
    for i in range(n):
        gmail.add(mail(frm="news@shop.example", to=ALICE, subject=f"Weekly offers {i}",
                       text=f"Offer {i}: 10% off garden chairs.\nUnsubscribe: https://shop.example/u/{i}"))
    for i in range(300):
        gmail.add(mail(frm="news@shop.example", to=f"customer{i}@example.net", subject="Weekly offers",
                       text="Offer: 10% off garden chairs."))
    run = _Run(gmail)
    started = time.perf_counter()
    findings = run.locate(emails=[ALICE])
    elapsed = time.perf_counter() - started
    rate = n / elapsed
    record_property("gmail_locate_messages_per_second", round(rate))
    print(f"\ngmail locate: {n} messages in {elapsed:.2f} s = {rate:.0f} messages/s")

    assert len(findings) == n and {f.match for f in findings} == {"identifier"}
    assert gmail.list_page_sizes == [500, 500, 500, 100]  # more than three pages, 500 ids a page
    assert gmail.batch_sizes == [50] * (n // 50)  # HTTP batches of at most 50 (Gmail's advice; max 100)
    assert gmail.stats["get_raw"] == n
    assert run.conn.stats == {"list_pages": 4, "listed": n, "fetched": n, "matched": n, "unconfirmed": 0}
    assert not any("alice" in line.lower() or "@" in line for line in run.said)  # progress: counts only
    assert any(f"{n} messages fetched, {n} matched" in line for line in run.said)


def test_when_batch_size_is_over_gmails_limit_then_config_error():
    with pytest.raises(ConfigError, match="batch_size"):
        GmailConnector(_store(None, api_endpoint="http://127.0.0.1:9/", batch_size=101))


def test_when_gmail_answers_a_429_storm_then_locate_recovers_with_bounded_backoff(gmail):
    ids = {gmail.add(mail(frm=ALICE, to=USER, subject=f"Order {i}", text="Where is my order?")) for i in range(120)}
    gmail.fail(429, 4, scope="http")  # profile and list calls, and whole batch requests
    gmail.fail(503, 2, scope="http")
    gmail.fail(429, 30, scope="part")  # calls inside a batch: 30 of the first 50 fetches
    gmail.fail(403, 5, scope="part", reason="userRateLimitExceeded")  # Gmail's per-user rate limit
    run = _Run(gmail, backoff_cap=8)
    findings = run.locate(emails=[ALICE])
    assert set(_by_id(findings)) == ids
    assert 7 <= len(run.sleeps) <= 10 and run.conn.retries == len(run.sleeps)
    assert all(0 < s <= 8 for s in run.sleeps)
    assert run.sleeps[1] > run.sleeps[0] / 2  # exponential growth, with jitter in each step


def test_when_rate_limit_never_ends_then_store_error_after_bounded_attempts(gmail):
    gmail.add(mail(frm=ALICE, to=USER, subject="Hi", text="Hello"))
    run = _Run(gmail)
    run.conn.check()
    gmail.fail(429, -1, scope="any")
    with pytest.raises(StoreError) as info:
        _Run(gmail, max_attempts=4).locate(emails=[ALICE])
    assert "429" in str(info.value) and "4 attempts" in str(info.value) and STORE in str(info.value)
    assert ALICE not in str(info.value)
    # the storm goes on: a fresh run with other limits still gives up in bounded time
    second = _Run(gmail, max_attempts=3, backoff_cap=2)
    with pytest.raises(StoreError):
        second.locate(emails=[ALICE])
    assert len(second.sleeps) == 2 and all(s <= 2 for s in second.sleeps)


def test_when_gmail_refuses_with_403_forbidden_then_store_unreachable_credentials_refused(gmail):
    gmail.fail(403, 1, scope="http", reason="forbidden")
    with pytest.raises(StoreUnreachable, match=f"{STORE}.*credentials refused"):
        _Run(gmail).locate(emails=[ALICE])


# --------------------------------------------------------------------------- confirmation
def test_when_decoys_look_like_the_subject_then_only_the_subject_is_matched(gmail):
    real = gmail.add(mail(frm=f"Alice Smith <{ALICE}>", to=USER, subject="Hello", text="It is me."))
    decoys = [
        gmail.add(mail(frm="malice.smith@example.org", to=USER, subject="Hi", text="From malice.smith@example.org")),
        gmail.add(mail(frm="x@example.net", to="alice.smith@example.org.evil.test", subject="Hi", text="Spam")),
        gmail.add(mail(frm="x@example.net", to=USER, subject="Team", text="Alice Smith, example.org marketing lead")),
        gmail.add(mail(frm="x@example.net", to=USER, subject="Hi", text="Write to alice.smith@example.organic.test")),
        gmail.add(mail(frm="x@example.net", to=USER, subject="Hi", text="Call 020 7946 0124 or 020 7946 01234")),
    ]
    run = _Run(gmail)
    findings = run.locate(emails=[ALICE], phones=[ALICE_PHONE])
    assert [f.location["message_id"] for f in findings] == [real]
    assert findings[0].entities == ["EMAIL_ADDRESS"]
    # the fuzzy search did return decoys: they were fetched and rejected by the matcher
    assert run.conn.stats["unconfirmed"] >= 2 and decoys[0] not in _by_id(findings)


def test_when_only_a_name_matches_then_findings_are_weak(gmail):
    by_name = gmail.add(mail(frm='"Smith, Alice" <a.smith@private.test>', to=USER, subject="Hi", text="Hello."))
    mentioned = gmail.add(mail(frm="bob@example.org", to=USER, subject="Re: visit",
                               text="Line one.\nAlice Smith visited the shop today.\nLine three."))
    strong = gmail.add(mail(frm=f'"Alice Smith" <{ALICE}>', to=USER, subject="Hi", text="Hello."))
    gmail.add(mail(frm='"Alicia Smith" <alicia@example.org>', to=USER, subject="Hi", text="Alicia Smith here."))
    found = _by_id(_Run(gmail).locate(emails=[ALICE], names=["Alice Smith"]))
    assert set(found) == {by_name, mentioned, strong}
    assert (found[by_name].match, found[by_name].strength, found[by_name].entities) == ("identifier", "weak", ["PERSON"])
    # a party by display name alone may be a namesake: no whole message until someone has reviewed it
    assert found[by_name].record["party"] is True and "_raw_eml" not in found[by_name].record
    assert found[by_name].record["body_text"] == "" and "display name only" in found[by_name].note
    assert "_raw_eml" in found[strong].record
    assert (found[mentioned].match, found[mentioned].strength) == ("text", "weak")
    assert found[mentioned].record["body_text"] == "Alice Smith visited the shop today."
    assert (found[strong].match, found[strong].strength) == ("identifier", "strong")
    assert found[strong].entities == ["EMAIL_ADDRESS", "PERSON"]


def test_when_subject_is_only_mentioned_then_record_holds_the_excerpt_not_the_whole_body(gmail):
    long_paragraph = ("The quarterly review covered many accounts and several escalations. "
                      "Most were closed within the agreed time and needed no follow-up at all. "
                      f"One caller, on {ALICE_PHONE}, asked twice for a refund. "
                      "Nothing else in this paragraph concerns any individual customer, and it goes on for a while "
                      "so that the line is long enough to be narrowed to its sentences.")
    body = "\n".join(["Weekly summary", "Bob Jones asked about invoices.",
                      f"Spoke to {ALICE} about the invoice.", long_paragraph, "Regards, Team"])
    mid = gmail.add(mail(frm="lead@example.test", to="team@example.test", cc="bob@example.org",
                         subject="Summary", text=body))
    (f,) = _Run(gmail).locate(emails=[ALICE], phones=[ALICE_PHONE])
    assert f.location == {"message_id": mid} and f.match == "text"
    assert f.record["party"] is False and "_raw_eml" not in f.record
    assert f.record["body_text"] == (f"Spoke to {ALICE} about the invoice.\n"
                                     f"One caller, on {ALICE_PHONE}, asked twice for a refund.")
    assert f.record["cc"] == "bob@example.org" and f.record["subject"] == "Summary"


# --------------------------------------------------------------------------- erasure
def test_when_erase_mode_is_trash_then_messages_move_to_trash_in_batches_and_stop_matching(gmail):
    keep = gmail.add(mail(frm="bob@example.org", to=USER, subject="Other", text="Not hers"))
    ids = [gmail.add(mail(frm=ALICE, to=USER, subject=f"Msg {i}", text="Hi")) for i in range(130)]
    run = _Run(gmail)
    findings = run.locate(emails=[ALICE])
    actions = [ExecAction(f"act-{i}", f.container, f.location, DELETE) for i, f in enumerate(findings)]
    gmail.batch_sizes.clear()
    calls = run.apply(actions)
    assert [len(c[0]) for c in calls] == [50, 50, 30] and sum(c[1] for c in calls) == 130
    assert {aid for c in calls for aid in c[0]} == {a.action_id for a in actions}
    assert gmail.stats["trash"] == 130 and gmail.batch_sizes == [50, 50, 30]
    assert gmail.ids() == {keep} and gmail.ids(include_trash=True) == set(ids) | {keep}
    assert _Run(gmail).locate(emails=[ALICE]) == []  # Trash is not searched: the erasure verifies


def test_when_erase_mode_is_delete_with_over_1000_ids_then_batch_delete_runs_in_two_calls(gmail):
    ids = [gmail.add(mail(frm=ALICE, to=USER, subject="Hi", text="Hi")) for _ in range(1050)]
    keep = gmail.add(mail(frm="bob@example.org", to=USER, subject="Other", text="Not hers"))
    calls = _Run(gmail, erase="delete").apply(_deletes(ids))
    assert gmail.batch_delete_sizes == [1000, 50] and gmail.stats["batchDelete"] == 2
    assert [(len(c[0]), c[1]) for c in calls] == [(1000, 1000), (50, 50)]
    assert gmail.ids(include_trash=True) == {keep}


def test_when_a_message_is_already_gone_then_it_counts_as_done():
    with FakeGmail(strict_batch_delete=True) as gmail:
        for mode in ("trash", "delete"):
            ids = [gmail.add(mail(frm=ALICE, to=USER, subject="Hi", text="Hi")) for _ in range(3)]
            gmail.messages.pop(ids[1])  # deleted by someone else since the plan
            calls = _Run(gmail, erase=mode).apply(_deletes(ids))
            assert [(sorted(c[0]), c[1]) for c in calls] == [(["act-0", "act-1", "act-2"], 2)], mode
            assert not (set(ids) & gmail.ids()), mode
        assert gmail.batch_delete_sizes == [] and gmail.stats["delete"] == 2  # refused: deleted one by one
        # a second run over the same plan is a no-op that still reports done
        assert _Run(gmail, erase="delete").apply(_deletes(ids)) == [(["act-0", "act-1", "act-2"], 0, None)]


def test_when_an_update_and_a_delete_name_the_same_message_then_it_is_deleted_and_no_copy_is_made(gmail):
    # an update (a redaction) is carried out as a redacted copy: tests/connectors/test_gmail_redaction.py
    mid = gmail.add(mail(frm=ALICE, to=USER, subject="Hi", text="Hi"))
    actions = _deletes([mid]) + [ExecAction("act-u", "messages", {"message_id": mid}, UPDATE, {"body_text": "x"})]
    calls = _Run(gmail).apply(actions)
    assert (["act-u"], 0, "the message is deleted by another action") in calls and (["act-0"], 1, None) in calls
    assert gmail.ids() == set() and gmail.stats["trash"] == 1 and gmail.stats["import"] == 0


def test_when_erase_option_is_unknown_then_config_error(gmail):
    with pytest.raises(ConfigError, match="'erase' must be one of trash, delete"):
        _Run(gmail, erase="shred").apply(_deletes(["1"]))


# --------------------------------------------------------------------------- credentials
def _service_account(token_uri: str):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    info = {"type": "service_account", "project_id": "lethe-test", "private_key_id": "k1", "private_key": pem,
            "client_email": "lethe@lethe-test.iam.gserviceaccount.com", "client_id": "1", "token_uri": token_uri}
    return key, info


def test_when_service_account_json_is_given_then_jwt_grant_carries_the_delegated_subject(monkeypatch):
    with FakeGmail(require_auth=True) as gmail:
        key, info = _service_account(gmail.token_uri)
        gmail.public_key = key.public_key()  # the fake verifies the JWT's signature
        mid = gmail.add(mail(frm=ALICE, to=USER, subject="Hi", text="Hi"))
        monkeypatch.setenv("LETHE_TEST_GMAIL_SA", json.dumps(info))
        findings = _Run(gmail, credentials_env="LETHE_TEST_GMAIL_SA").locate(emails=[ALICE])
        assert [f.location for f in findings] == [{"message_id": mid}]
        assert len(gmail.grants) == 1
        claims = gmail.grants[0]
        assert claims["sub"] == USER and claims["scope"] == "https://mail.google.com/"
        assert claims["iss"] == info["client_email"]
        (token, uses), = gmail.auth_headers_seen.items()
        assert uses >= 3  # profile, list and the batched get all carried the bearer token

        # the same server without credentials: refused, and said so
        with pytest.raises(StoreUnreachable, match="credentials refused"):
            _Run(gmail).locate(emails=[ALICE])


def test_when_token_endpoint_refuses_delegation_then_store_unreachable_without_personal_data(monkeypatch):
    with FakeGmail(require_auth=True, refuse_subjects=(USER,)) as gmail:
        _, info = _service_account(gmail.token_uri)
        monkeypatch.setenv("LETHE_TEST_GMAIL_SA", json.dumps(info))
        with pytest.raises(StoreUnreachable) as err:
            _Run(gmail, credentials_env="LETHE_TEST_GMAIL_SA").locate(emails=[ALICE])
        assert str(err.value) == (f"store '{STORE}' is unreachable: credentials refused by the token endpoint: "
                                  "unauthorized_client")


def test_when_authorized_user_json_is_given_then_oauth_user_credentials_with_full_mail_scope_are_built(monkeypatch):
    # google-auth always refreshes these at Google's token endpoint (a refresh token never goes elsewhere),
    # so this checks the credentials built, not a refresh
    from google.oauth2.credentials import Credentials

    info = {"type": "authorized_user", "client_id": "cid", "client_secret": "secret", "refresh_token": "rt-1"}
    monkeypatch.setenv("LETHE_TEST_GMAIL_USER", json.dumps(info))
    creds = _Run(None, credentials_env="LETHE_TEST_GMAIL_USER").conn._credentials()
    assert isinstance(creds, Credentials) and creds.refresh_token == "rt-1"
    assert creds.scopes == ["https://mail.google.com/"]
    monkeypatch.setenv("LETHE_TEST_GMAIL_USER", json.dumps({**info, "type": "external_account"}))
    with pytest.raises(ConfigError, match="'external_account'"):
        _Run(None, credentials_env="LETHE_TEST_GMAIL_USER").conn._credentials()


def test_when_credentials_are_missing_without_api_endpoint_then_config_error_names_the_variable(monkeypatch):
    monkeypatch.delenv("LETHE_TEST_GMAIL_SA", raising=False)
    run = _Run(None, credentials_env="LETHE_TEST_GMAIL_SA")
    with pytest.raises(ConfigError, match="LETHE_TEST_GMAIL_SA"):
        run.conn.check()
    with pytest.raises(ConfigError, match="credentials_env"):
        _Run(None).locate(emails=[ALICE])
    monkeypatch.setenv("LETHE_TEST_GMAIL_SA", '{"type": "service_account", "private_key": "SECRET-ish"')
    with pytest.raises(ConfigError) as err:
        _Run(None, credentials_env="LETHE_TEST_GMAIL_SA").conn.check()
    assert "valid JSON" in str(err.value) and "SECRET" not in str(err.value)


def test_when_store_kind_is_gmail_then_the_registry_opens_this_connector():
    assert connector_class("gmail") is GmailConnector


# --------------------------------------------------------------------------- search
def test_when_queries_are_built_then_they_cover_each_identifier_in_gmail_syntax():
    m = _matcher(emails=[ALICE], phones=[ALICE_PHONE], names=["Smith, Zoë"], ids={"customer_no": ["CUST-12345"]})
    assert search_queries(m) == [
        f'from:{ALICE} OR to:{ALICE} OR cc:{ALICE} OR bcc:{ALICE} OR "{ALICE}"',
        '"020 7946 0123" OR "+44 20 7946 0123" OR "02079460123" OR "+442079460123"',
        '"Zoë Smith" OR "Smith, Zoë" OR "zoe smith" OR "smith, zoe"',
        '"CUST-12345"',
    ]


def test_when_the_fake_server_searches_then_it_behaves_like_gmail_not_like_substring_matching(gmail):
    a = gmail.add(mail(frm=f'"Alice Smith" <{ALICE}>', to=USER, subject="Invoice", text="pay the invoice"))
    b = gmail.add(mail(frm="malice.smith@example.org", to=USER, subject="Quote", text="Smith Alice wrote"))
    c = gmail.add(mail(frm="bob@example.org", to=USER, cc="Alice Smith <other@example.net>", subject="Quote",
                       text="nothing"))

    def ids(q):
        return {m.id for m in gmail.search(q)}

    assert ids(f"from:{ALICE}") == {a}  # not malice.smith@...
    assert ids('"alice smith"') == {a, c}  # a phrase: consecutive words, any header or body
    assert ids("alice smith") == {a, b, c}  # implicit AND of words, anywhere
    assert ids('from:"alice smith"') == {a}  # display names count for from:
    assert ids("quote OR invoice nothing") == {c}  # OR binds tighter than AND
    assert ids("{invoice nothing}") == {a, c} and ids("(quote -nothing)") == {b}
    assert ids("cc:other@example.net") == {c} and ids("invo") == set()  # words, not substrings
    with pytest.raises(SearchSyntaxError):
        gmail.search("in:inbox alice")
    assert len(gmail.search("")) == 3 and ids("alice") == {a, b, c} and ids("alic") == set()


def test_when_a_forwarded_message_mentions_the_subject_then_it_is_a_text_finding(gmail):
    import email.message
    import email.policy

    inner = email.message_from_bytes(mail(frm=f"Alice Smith <{ALICE}>", to="shop@example.org",
                                          subject="Complaint", text="The chair broke."),
                                     policy=email.policy.default)
    outer = email.message.EmailMessage()
    outer["From"], outer["To"], outer["Subject"] = "shop@example.org", USER, "Fwd: Complaint"
    outer.set_content("Forwarding this one.")
    outer.add_attachment(inner)  # message/rfc822, inline
    mid = gmail.add(outer)
    (f,) = _Run(gmail).locate(emails=[ALICE])
    assert f.location["message_id"] == mid and (f.match, f.strength) == ("text", "strong")
    assert f.record["party"] is False and ALICE in f.record["body_text"]


def test_when_the_endpoint_is_down_then_store_unreachable_after_bounded_retries():
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    run = _Run(None, api_endpoint=f"http://127.0.0.1:{port}/")
    with pytest.raises(StoreUnreachable, match=f"cannot reach 127.0.0.1:{port}"):
        run.conn.check()
    assert len(run.sleeps) == 2


def test_when_the_fake_server_is_asked_for_full_format_then_attachment_ids_resolve(gmail):
    import httplib2
    from googleapiclient.discovery import build

    mid = gmail.add(mail(frm=ALICE, to=USER, subject="Hi", text="Body",
                         attachments=[("a.csv", "text/csv", b"x,y\n1,2\n")]))
    service = build("gmail", "v1", http=httplib2.Http(), static_discovery=True,
                    client_options={"api_endpoint": gmail.endpoint})
    msg = service.users().messages().get(userId=USER, id=mid, format="full").execute()
    parts = {p["filename"]: p for p in msg["payload"]["parts"]}
    assert base64.urlsafe_b64decode(parts[""]["body"]["data"]).decode().strip() == "Body"
    att = service.users().messages().attachments().get(userId=USER, messageId=mid,
                                                       id=parts["a.csv"]["body"]["attachmentId"]).execute()
    assert base64.urlsafe_b64decode(att["data"]) == b"x,y\n1,2\n"
    meta = service.users().messages().get(userId=USER, id=mid, format="metadata").execute()
    assert {h["name"] for h in meta["payload"]["headers"]} >= {"From", "To", "Subject"}


def test_when_an_internationalised_address_wrote_in_either_spelling_then_gmail_search_finds_both(gmail):
    """The Gmail search names the address as its key (A-label domain) and as written in Unicode."""
    unicode_form = gmail.add(mail(frm="Zoë <zoë@exämple.com>", to=USER, subject="Hallo", text="hi"))
    a_label = gmail.add(mail(frm="Zoë <zoë@xn--exmple-cua.com>", to=USER, subject="Again", text="hi"))
    other = gmail.add(mail(frm="zoe@example.com", to=USER, subject="Not her", text="hi"))
    found = _by_id(_Run(gmail).locate(emails=["ZOË@EXÄMPLE.COM"]))
    assert set(found) == {unicode_form, a_label} and other not in found
    query = search_queries(_matcher(emails=["zoë@exämple.com"]))[0]
    assert "from:zoë@exämple.com" in query and "from:zoë@xn--exmple-cua.com" in query
