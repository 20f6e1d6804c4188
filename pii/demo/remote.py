"""The demo's remote stores: an FTP drop and a support mailbox, served in-process by the fakes in
`connectors.fakes` (pyftpdlib, and a Gmail-compatible HTTP endpoint) while `lethe demo` runs.

Files: ``root/data/ftp/incoming/`` (leads.csv, call_notes.txt, events.jsonl) and ``root/data/mailbox/``
(``<message id>.eml``). Expected findings for the demo subject are recorded as the files are written.
Every person is fake; addresses use example domains.
"""
from __future__ import annotations

import contextlib
import json
import os
import socket
from email.message import EmailMessage
from email.utils import format_datetime
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

FTP_DIR = "data/ftp"
FTP_FOLDER = "/incoming"
MAILBOX_DIR = "data/mailbox"
FTP_USER = "lethe"
FTP_PASSWORD_ENV = "LETHE_DEMO_FTP_PASSWORD"
FTP_DEMO_PASSWORD = "lethe-demo-only"  # a throwaway password for the local demo server, never a real one
DEFAULT_FTP_PORT = 2121
DEFAULT_GMAIL_PORT = 8085
MAILBOX_USER = "support@example.test"


def free_port(preferred: int) -> int:
    """`preferred` when nothing listens there on 127.0.0.1, else a free port the system picks."""
    for port in (preferred, 0):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return s.getsockname()[1]
    raise OSError("no free port on 127.0.0.1")


def stores_yaml(ftp_port: int, gmail_port: int) -> str:
    return f"""\
  partner_drop:
    kind: ftp
    host: 127.0.0.1
    port: {ftp_port}
    user: {FTP_USER}
    password_env: {FTP_PASSWORD_ENV}   # `lethe demo` sets it for its own run; see README
    path: {FTP_FOLDER}
    metadata:
      description: Files a partner agency drops for us (leads, call notes, event sign-ups)
      purpose: Following up enquiries passed on by the partner
      legal_basis: "Legitimate interests (Art. 6(1)(f))"
      source: Example Partners Ltd (a lead-generation agency)
      recipients: [none outside the organisation]
      retention: Drop files are deleted after 3 months
  support_mailbox:
    kind: gmail
    user_id: {MAILBOX_USER}
    api_endpoint: http://127.0.0.1:{gmail_port}/   # the demo's Gmail-compatible endpoint, no credentials
    metadata:
      description: The support team's shared mailbox
      purpose: Answering members' questions and complaints
      legal_basis: "Contract (Art. 6(1)(b)) and legitimate interests (Art. 6(1)(f))"
      source: E-mails from members and third parties
      recipients: [none outside the organisation]
      retention: Two years after the last message in a conversation
"""


def _write_ftp(root: Path, expect, decoy) -> None:
    base = root / FTP_DIR / FTP_FOLDER.strip("/")
    base.mkdir(parents=True, exist_ok=True)
    leads = [
        ["lead_id", "name", "email", "phone", "interest"],
        ["L-501", "Jonas Berg", "jonas.berg@example.net", "020 7946 0310", "membership"],
        ["L-502", "Alice Smith", "alice.smith@example.org", "", "events"],
        ["L-503", "Mallory Smith", "malice.smith@example.org", "020 7946 0124", "newsletter"],
        ["L-504", "Ruth Okafor", "ruth.okafor@example.test", "020 7946 0411", "events"],
    ]
    (base / "leads.csv").write_text("\n".join(",".join(r) for r in leads) + "\n", encoding="utf-8")
    path = f"{FTP_FOLDER}/leads.csv"
    expect("partner_drop", {"path": path, "row": 2}, "identifier", "her lead row (email)")
    decoy("partner_drop", {"path": path, "row": 3}, "email malice.smith@example.org")
    notes = [
        "2025-09-01 Jonas asked for the autumn programme.",
        "2025-09-03 Alice called back from 020 7946 0123, wants the members' rate.",
        "2025-09-04 Alan Smithers rang from 020 7946 0124 about parking.",
    ]
    (base / "call_notes.txt").write_text("\n".join(notes) + "\n", encoding="utf-8")
    expect("partner_drop", {"path": f"{FTP_FOLDER}/call_notes.txt", "row": 2}, "text", "her phone in a note")
    decoy("partner_drop", {"path": f"{FTP_FOLDER}/call_notes.txt", "row": 3}, "phone 020 7946 0124")
    events = [
        {"event": "Autumn Members' Meetup", "attendee": {"email": "ruth.okafor@example.test"}},
        {"event": "Autumn Members' Meetup", "attendee": {"email": "alice.smith@example.org"}},
        {"event": "Winter Roundtable", "attendee": {"email": "alice.smith@example.com"}},
    ]
    (base / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events), encoding="utf-8")
    expect("partner_drop", {"path": f"{FTP_FOLDER}/events.jsonl", "row": 2}, "identifier", "her sign-up (email)")
    decoy("partner_drop", {"path": f"{FTP_FOLDER}/events.jsonl", "row": 3}, "email alice.smith@example.com")
    (base / "brochure.pdf").write_bytes(b"%PDF-1.4\n% not scanned: not a text format\n")


def _message(mid: str, frm: str, to: str, subject: str, body: str, day: int) -> bytes:
    msg = EmailMessage()
    msg["From"] = frm
    msg["To"] = to
    msg["Subject"] = subject
    msg["Date"] = format_datetime(datetime(2025, 10, day, 9, 30, tzinfo=timezone.utc))
    msg["Message-ID"] = f"<{mid}@demo.example.test>"
    msg.set_content(body)
    return bytes(msg)


def _write_mailbox(root: Path, expect, decoy) -> None:
    box = root / MAILBOX_DIR
    box.mkdir(parents=True, exist_ok=True)
    support = f"Member Support <{MAILBOX_USER}>"
    messages = [
        ("18c2f0000000a001", "Alice Smith <alice.smith@example.org>", support, "Badge for the summit",
         "Hello, I still have not received my badge for the summit. Thanks, Alice", "identifier"),
        ("18c2f0000000a002", support, "alice.smith@example.org", "Re: Badge for the summit",
         "Dear member, your badge is on its way.", "identifier"),
        ("18c2f0000000a003", "Jonas Berg <jonas.berg@example.net>", support, "Colleague's refund",
         "My colleague (phone 020 7946 0123) was charged twice, could you look into it?", "text"),
        ("18c2f0000000a004", "Mallory Smith <malice.smith@example.org>", support, "Newsletter",
         "Please unsubscribe me.", "decoy"),
        ("18c2f0000000a005", "Ruth Okafor <ruth.okafor@example.test>", support, "Parking",
         "Is there parking at the venue? I met Alice Smithson there last year.", "decoy"),
    ]
    for day, (mid, frm, to, subject, body, kind) in enumerate(messages, 1):
        (box / f"{mid}.eml").write_bytes(_message(mid, frm, to, subject, body, day))
        if kind == "decoy":
            decoy("support_mailbox", {"message_id": mid}, "near-miss sender or name")
        else:
            expect("support_mailbox", {"message_id": mid}, kind, f"message ({kind})")


def build_remote(root: Path, expect, decoy) -> None:
    """Write the FTP drop and mailbox files, calling expect(store, location, match, why) and
    decoy(store, location, what) for every place the demo subject's data is, or nearly is."""
    _write_ftp(root, expect, decoy)
    _write_mailbox(root, expect, decoy)


@contextlib.contextmanager
def serve(root: Path, ftp_port: int, gmail_port: int) -> Iterator[None]:
    """Run the demo's FTP server and Gmail-compatible endpoint in this process for the duration."""
    from connectors.fakes.ftp_server import FtpServer
    from connectors.fakes.gmail_server import FakeGmail

    os.environ.setdefault(FTP_PASSWORD_ENV, FTP_DEMO_PASSWORD)
    ftp = FtpServer(root / FTP_DIR, port=ftp_port, user=FTP_USER, password=os.environ[FTP_PASSWORD_ENV])
    gmail = FakeGmail(port=gmail_port, mailbox_dir=root / MAILBOX_DIR)
    gmail.load_mailbox()
    ftp.start()
    gmail.start()
    try:
        yield
    finally:
        gmail.stop()
        ftp.stop()
