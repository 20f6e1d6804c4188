"""A whole erasure on a demo-like support mailbox (the fake Gmail endpoint, the real Gmail client): her own mail
is trashed, a staff mail that mentions her among other attendees is replaced by a checked redacted copy, and the
plan ends verified with nothing of her left in the mailbox and everyone else's data as it was."""
from __future__ import annotations

import email
import email.policy

import pytest

from connectors.fakes.gmail_server import FakeGmail, mail
from connectors.gmail import GmailConnector
from connectors.mailredact import MARKER_HEADER
from pii.core.config import parse_config
from pii.core.policy import parse_policy
from pii.core.subject import Subject
from pii.engine.erasure import ErasureEngine

USER = "support@example.test"
ALICE = Subject.build(emails=["alice.smith@example.org"], phones=["020 7946 0123"], names=["Alice Smith"])
SECRETS = ("alice.smith@example.org", "020 7946 0123", "Alice Smith", "02079460123")
PDF = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n(programme) Tj\n%%EOF\n"
CSV = ("name,email,phone\nRuth Okafor,ruth.okafor@example.test,020 7946 0411\n"
       "Alice Smith,alice.smith@example.org,020 7946 0123\nJonas Berg,jonas.berg@example.net,020 7946 0310\n")


@pytest.fixture
def world(tmp_path):
    with FakeGmail() as gmail:
        ids = {
            "hers": gmail.add(mail(frm="Alice Smith <alice.smith@example.org>", to=USER, subject="Badge",
                                   text="I still have not received my badge. Thanks, Alice")),
            "reply": gmail.add(mail(frm=USER, to="alice.smith@example.org", subject="Re: Badge",
                                    text="Your badge is on its way.")),
            "staff": gmail.add(mail(
                frm="Events Team <events@example.test>", to=USER, subject="Summit attendees",
                text="List attached.\nAlice Smith (020 7946 0123) needs step-free access.\nRuth brings slides.\n",
                html_body="<p>List attached.</p><p><b>Alice Smith</b> (020 7946 0123) needs step-free access.</p>"
                          "<p>Ruth brings slides.</p>",
                attachments=[("attendees.csv", "text/csv", CSV.encode()),
                             ("programme.pdf", "application/pdf", PDF)]),
                labels=["INBOX", "Label_5"], thread_id="t-summit"),
            "decoy": gmail.add(mail(frm="Mallory Smith <malice.smith@example.org>", to=USER, subject="Newsletter",
                                    text="Please unsubscribe me.")),
        }
        cfg = parse_config({"stores": {"support_mailbox": {"kind": "gmail", "user_id": USER,
                                                           "api_endpoint": gmail.endpoint}}},
                           tmp_path / "stores.yaml")
        yield cfg, gmail, ids


def _copies(gmail):
    return [m for m in gmail.messages.values() if MARKER_HEADER.encode() in m.raw.split(b"\r\n\r\n", 1)[0]]


def _run(engine):
    plan = engine.submit(ALICE, "requester@example.test")
    engine.approve(plan.plan_id, "dpo@example.test")
    return plan, engine.execute(plan.plan_id, subject=ALICE)


def test_when_erased_then_the_mention_is_redacted_in_a_copy_and_the_plan_is_verified(world):
    cfg, gmail, ids = world
    said: list[str] = []
    engine = ErasureEngine(cfg, progress=lambda store, msg: said.append(msg))
    plan = engine.build_plan(ALICE)
    by_action = {a.action for a in plan.actions}
    assert by_action == {"delete", "redact"}  # the mention is redacted now, no longer "kept and reported"
    staff_before = gmail.messages[ids["staff"]].raw
    plan, report = _run(engine)
    assert report.state == "verified" and report.remaining == 0, report
    for key in ("hers", "reply", "staff"):
        assert "TRASH" in gmail.messages[ids[key]].labels, key
    assert gmail.messages[ids["decoy"]].labels == ["INBOX"]
    (copy,) = _copies(gmail)
    assert copy.labels == ["INBOX", "Label_5"] and copy.thread_id == "t-summit"
    text = copy.raw.decode("latin-1")
    msg = email.message_from_bytes(copy.raw, policy=email.policy.default)
    seen = text + "\n".join(p.get_content() for p in msg.walk()
                            if not p.is_multipart() and p.get_content_maintype() == "text")
    for value in SECRETS:
        assert value not in seen
    csv = next(p for p in msg.iter_attachments() if p.get_filename() == "attendees.csv").get_content()
    assert csv.replace("\r\n", "\n") == CSV.replace("Alice Smith,alice.smith@example.org,020 7946 0123",
                                                    "[redacted],[redacted],[redacted]")
    pdf = next(p for p in msg.iter_attachments() if p.get_filename() == "programme.pdf")
    assert pdf.get_payload(decode=True) == PDF
    assert "Ruth brings slides." in msg.get_body(("plain",)).get_content()
    assert msg["Subject"] == "Summit attendees" and msg["Message-ID"] == email.message_from_bytes(
        staff_before, policy=email.policy.default)["Message-ID"]
    # nothing erasable left; the certificate says verified
    assert engine.build_plan(ALICE).actions == []
    assert engine.certificate(plan.plan_id)["state"] == "verified"
    out = "\n".join(said) + "\n" + "\n".join(report.details)
    assert "1 of 1 messages replaced by a checked redacted copy" in out
    for value in SECRETS + ("alice.smith",):
        assert value.lower() not in out.lower()


def test_when_the_run_dies_after_the_import_then_re_executing_verifies_with_one_copy(world, monkeypatch):
    cfg, gmail, ids = world
    engine = ErasureEngine(cfg)
    plan = engine.submit(ALICE, "requester@example.test")
    engine.approve(plan.plan_id, "dpo@example.test")
    real = GmailConnector._remove_original

    def crash(self, mid, mode):
        raise KeyboardInterrupt  # the process dies after the import and its check, before the original goes

    monkeypatch.setattr(GmailConnector, "_remove_original", crash)
    with pytest.raises(KeyboardInterrupt):
        engine.execute(plan.plan_id, subject=ALICE)
    monkeypatch.setattr(GmailConnector, "_remove_original", real)
    assert len(_copies(gmail)) == 1 and gmail.messages[ids["staff"]].labels == ["INBOX", "Label_5"]
    report = ErasureEngine(cfg).execute(plan.plan_id, subject=ALICE)
    assert report.state == "verified" and report.remaining == 0, report
    assert len(_copies(gmail)) == 1 and gmail.stats["import"] == 1
    assert "TRASH" in gmail.messages[ids["staff"]].labels


def test_when_the_policy_anonymises_mail_then_it_is_still_kept_and_reported(world):
    cfg, _gmail, _ids = world
    policy = parse_policy({"rules": [{"match": "text", "store": "support_mailbox", "action": "anonymise",
                                      "anonymise": {"body_text": {"operator": "redact"}}}]}, "test-policy")
    plan = ErasureEngine(cfg, policy=policy).build_plan(ALICE)
    kept = [a for a in plan.actions if a.action == "retain"]
    assert len(kept) == 1 and "cannot edit a record in place: kept and reported" in kept[0].reason


def test_when_a_mail_cannot_be_redacted_then_the_plan_is_not_verified_and_the_mail_is_untouched(world, monkeypatch):
    import connectors.gmail as gm

    cfg, gmail, ids = world
    monkeypatch.setattr(gm, "RAW_JSON_MAX", 1000)  # the staff mail is now too large for the JSON path
    staff = gmail.messages[ids["staff"]].raw
    plan, report = _run(ErasureEngine(cfg))
    assert report.state == "executed" and report.remaining == 1, report  # not verified
    assert any("support_mailbox: 1 action(s): not redacted: larger than" in d for d in report.details)
    assert gmail.messages[ids["staff"]].raw == staff and gmail.messages[ids["staff"]].labels == ["INBOX", "Label_5"]
    assert _copies(gmail) == [] and gmail.stats["import"] == 0
    assert "TRASH" in gmail.messages[ids["hers"]].labels  # the rest of the plan was carried out
