"""Demo data for the special flows, written beside the demo stores by `pii.demo.world.build_demo`.

None of it is about the demo subject (her expected locations are unchanged). Dates are fixed around
`RUN_DATE` (2026-11-22): run the flows with `--date 2026-11-22` to get the outcomes below, which the
tests check in the stores afterwards (`FlowFacts`).

- **Received in error**: ``crm.enquiries`` rows with ``import_batch = PARTNER-2026-07`` (a partner sent
  another client's enquiries), the export ``partner_upload_0426.csv``, the FTP drop file
  ``/incoming/misdirected_batch.csv`` and the mails from ``cv-desk@recruit.example.net``.
- **Child-data purge** (under 13): ``crm.youth_signups`` (date_of_birth; comments with text clues on
  rows without a date of birth) and the ``crm.youth_attendance`` rows linked to a child's sign-up, ``junior_club.csv`` (dob) and the FTP ``/incoming/juniors.jsonl`` (dob);
  a mail "I'm 11 years old" is a text clue for review.
- **Retention** (the schedule in stores.yaml): enquiries two years after received_at, anonymised for
  statistics; marketing contacts five years after last contact; withdrawn consent one month; partner
  leads three months (file time); call recordings three months (file time); visitor records three
  months; complaints five years, under a legal hold; support mail two years.
- **Unsubscribe**: ``crm.newsletter``, ``crm.marketing_contacts`` and ``marketing_list.csv`` are the
  marketing lists.
"""
from __future__ import annotations

import csv
import io
import json
import os
import random
import sqlite3
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path

RUN_DATE = date(2026, 11, 22)
SEED = 20261122
ERROR_BATCH = "PARTNER-2026-07"
ERROR_EXPORT = "partner_upload_0426.csv"
ERROR_FTP_FILE = "/incoming/misdirected_batch.csv"
ERROR_SENDER = "cv-desk@recruit.example.net"
THRESHOLD = 13
EXPORT_FILES = (ERROR_EXPORT, "junior_club.csv", "visitors.csv")

_FIRST = ["Bram", "Cleo", "Dara", "Eamon", "Fenna", "Gideon", "Hana", "Idris", "Juno", "Kai", "Lorna", "Milo",
          "Nadia", "Orin", "Pia", "Quinn", "Rafe", "Saskia", "Tobin", "Una", "Viggo", "Wren", "Xavi", "Yara"]
_LAST = ["Ashdown", "Brierley", "Calloway", "Dunmore", "Everly", "Fairbairn", "Gorse", "Hollins", "Ingram",
         "Jessop", "Kettering", "Langridge", "Merriweather", "Northcott", "Ormsby", "Pendle", "Quarrie",
         "Rainford", "Stourton", "Thackeray", "Underhill", "Vickery", "Westlake", "Yelland"]
_POSTCODES = ["LS1 4DY", "M1 1AE", "BS1 5TR", "SW1A 2AA", "EH1 1YZ", "CF10 1EP", "YO1 7HH", "B1 1BB"]


@dataclass
class FlowFacts:
    """What each flow should select in the demo stores on RUN_DATE (keys and names, for tests)."""

    error_enquiry_ids: list[int] = field(default_factory=list)
    expired_enquiry_ids: list[int] = field(default_factory=list)      # received before RUN_DATE - 2y
    expired_enquiry_people: list[dict] = field(default_factory=list)  # their identifiers (tests only)
    child_signup_ids: list[int] = field(default_factory=list)          # DOB: under 13 on RUN_DATE
    teen_signup_ids: list[int] = field(default_factory=list)           # 13..17: kept at threshold 13
    clue_signup_ids: list[int] = field(default_factory=list)           # no DOB, a text clue: review
    child_csv_rows: list[int] = field(default_factory=list)
    child_jsonl_rows: list[int] = field(default_factory=list)
    clue_message_ids: list[str] = field(default_factory=list)
    error_message_ids: list[str] = field(default_factory=list)
    old_message_ids: list[str] = field(default_factory=list)          # before RUN_DATE - 2y
    expired_marketing_ids: list[int] = field(default_factory=list)
    expired_withdrawn_ids: list[int] = field(default_factory=list)
    expired_visitor_rows: list[int] = field(default_factory=list)
    old_recordings: list[str] = field(default_factory=list)
    new_recordings: list[str] = field(default_factory=list)
    old_leads_files: list[str] = field(default_factory=list)
    held_ticket_ids: list[int] = field(default_factory=list)
    child_attendance_ids: list[int] = field(default_factory=list)     # linked to a child's sign-up: purged too          # expired complaints under a legal hold


def _person(rng: random.Random, i: int) -> dict:
    first, last = _FIRST[i % len(_FIRST)], _LAST[(i * 7 + i // len(_FIRST)) % len(_LAST)]
    return {"name": f"{first} {last}", "first": first, "last": last,
            "email": f"{first.lower()}.{last.lower()}{i}@example.test",
            "phone": f"07700 900{500 + i:03d}", "postcode": _POSTCODES[i % len(_POSTCODES)]}


def _csv(header: list[str], rows: list[list]) -> bytes:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    return buf.getvalue().encode("utf-8")


def _utime(path: Path, day: date) -> None:
    ts = datetime(day.year, day.month, day.day, 12, 0, tzinfo=timezone.utc).timestamp()
    os.utime(path, (ts, ts))


SQL = """
CREATE TABLE enquiries (
    enquiry_id INTEGER PRIMARY KEY,
    full_name TEXT, email TEXT, phone TEXT, postcode TEXT,
    topic TEXT, message TEXT, received_at TEXT, import_batch TEXT
);
CREATE TABLE marketing_contacts (
    contact_id INTEGER PRIMARY KEY,
    full_name TEXT, email TEXT, consent TEXT, last_contacted TEXT, withdrawn_at TEXT
);
CREATE TABLE youth_signups (
    signup_id INTEGER PRIMARY KEY,
    first_name TEXT, last_name TEXT, email TEXT, date_of_birth TEXT, signed_up_at TEXT, comments TEXT
);
CREATE TABLE youth_attendance (
    attendance_id INTEGER PRIMARY KEY,
    signup_id INTEGER NOT NULL REFERENCES youth_signups (signup_id),
    session_on TEXT
);
"""

_TOPICS = ["membership", "events", "training", "sponsorship", "venue hire"]
_MESSAGES = ["Could you send the membership prices?", "Is the spring summit sold out?",
             "Do you offer group training?", "We would like to sponsor a session.", "Can we hire the hall?"]
_CLUES = ["I am 12 and I love chess, can I join the club?", "Signing up for my son (9), he is keen on robotics.",
          "I'm 11 years old and want to learn coding."]
_ADULT_COMMENTS = ["Looking forward to it.", "Please send the timetable.", "Happy to volunteer at weekends.",
                   "Our team of 12 people would like a group rate."]


def write_flow_data(root: Path, *, remote: bool) -> FlowFacts:
    rng = random.Random(SEED)
    facts = FlowFacts()
    root = Path(root)
    # ---- SQL
    db = sqlite3.connect(root / "data" / "crm.db")
    db.executescript(SQL)
    enquiries = []
    for i in range(1, 41):
        p = _person(rng, i)
        received = RUN_DATE - timedelta(days=rng.randrange(30, 1400))
        batch = ERROR_BATCH if i % 7 == 0 else "WEB"
        if batch == ERROR_BATCH:
            facts.error_enquiry_ids.append(i)
        if received < date(RUN_DATE.year - 2, RUN_DATE.month, RUN_DATE.day):
            facts.expired_enquiry_ids.append(i)
            facts.expired_enquiry_people.append({"email": p["email"], "phone": p["phone"], "name": p["name"]})
        topic = rng.randrange(len(_TOPICS))
        # half the dates as ISO text, some as UK day/month/year: the purge reads both
        when = received.isoformat() if i % 3 else received.strftime("%d/%m/%Y")
        enquiries.append((i, p["name"], p["email"], p["phone"], p["postcode"], _TOPICS[topic],
                          _MESSAGES[topic] + f" Best, {p['first']}", when, batch))
    db.executemany("INSERT INTO enquiries VALUES (?,?,?,?,?,?,?,?,?)", enquiries)
    contacts = []
    for i in range(1, 31):
        p = _person(rng, 100 + i)
        last = RUN_DATE - timedelta(days=rng.randrange(10, 2600))
        if i % 5 == 0:
            withdrawn = RUN_DATE - timedelta(days=rng.randrange(5, 90))
            contacts.append((i, p["name"], p["email"], "withdrawn", last.isoformat(), withdrawn.isoformat()))
            if withdrawn < _month_before(RUN_DATE):
                facts.expired_withdrawn_ids.append(i)
        else:
            contacts.append((i, p["name"], p["email"], "given", last.isoformat(), None))
            if last < date(RUN_DATE.year - 5, RUN_DATE.month, RUN_DATE.day):
                facts.expired_marketing_ids.append(i)
    db.executemany("INSERT INTO marketing_contacts VALUES (?,?,?,?,?,?)", contacts)
    signups = []
    for i in range(1, 25):
        p = _person(rng, 200 + i)
        kind = i % 6
        if kind in (0, 1):  # a child under 13 on RUN_DATE
            dob = RUN_DATE - timedelta(days=365 * rng.randrange(7, 12) + rng.randrange(0, 300))
            facts.child_signup_ids.append(i)
            comment = rng.choice(_ADULT_COMMENTS[:3])
        elif kind == 2:  # a teenager
            dob = RUN_DATE - timedelta(days=365 * rng.randrange(14, 17) + rng.randrange(0, 300))
            facts.teen_signup_ids.append(i)
            comment = rng.choice(_ADULT_COMMENTS[:3])
        elif kind == 3 and len(facts.clue_signup_ids) < len(_CLUES):  # no DOB, but the text says a child
            dob = None
            comment = _CLUES[len(facts.clue_signup_ids)]
            facts.clue_signup_ids.append(i)
        else:
            dob = RUN_DATE - timedelta(days=365 * rng.randrange(20, 60))
            comment = rng.choice(_ADULT_COMMENTS)
        signups.append((i, p["first"], p["last"], p["email"], dob.isoformat() if dob else None,
                        (RUN_DATE - timedelta(days=rng.randrange(1, 200))).isoformat(), comment))
    # one child born exactly 13 years before RUN_DATE: 13 today, not under 13 (kept)
    p = _person(rng, 299)
    signups.append((25, p["first"], p["last"], p["email"], RUN_DATE.replace(year=RUN_DATE.year - 13).isoformat(),
                    RUN_DATE.isoformat(), "Birthday today!"))
    facts.teen_signup_ids.append(25)
    db.executemany("INSERT INTO youth_signups VALUES (?,?,?,?,?,?,?)", signups)
    attendance = [(n, sid, (RUN_DATE - timedelta(days=7 * k)).isoformat())
                  for n, (sid, k) in enumerate(((s[0], k) for s in signups for k in (1, 2)), 1)]
    db.executemany("INSERT INTO youth_attendance VALUES (?,?,?)", attendance)
    facts.child_attendance_ids = [n for n, sid, _ in attendance if sid in facts.child_signup_ids]
    # old complaints (support tickets from 2019-2020, nobody's member row): past five years, but held
    top = db.execute("SELECT max(ticket_id) FROM support_tickets").fetchone()[0] or 0
    for n, day in enumerate((date(2019, 5, 2), date(2020, 2, 17), date(2022, 3, 30)), 1):
        db.execute("INSERT INTO support_tickets (ticket_id, member_id, subject, body, opened_at) VALUES (?,?,?,?,?)",
                   (top + n, None, "Complaint", f"Complaint about a late refund (case {n}).",
                    f"{day.isoformat()} 10:00:00"))
        if day < date(RUN_DATE.year - 5, RUN_DATE.month, RUN_DATE.day):
            facts.held_ticket_ids.append(top + n)
    db.commit()
    db.close()
    # ---- CSV exports
    exports = root / "data" / "exports"
    rows = []
    for i in range(1, 9):
        p = _person(rng, 400 + i)
        rows.append([f"P-{i:03d}", p["name"], p["email"], p["phone"], "partner upload"])
    (exports / ERROR_EXPORT).write_bytes(_csv(["ref", "name", "email", "phone", "source"], rows))
    rows = []
    for n in range(1, 11):
        p = _person(rng, 500 + n)
        if n % 3 == 0:
            dob = RUN_DATE - timedelta(days=365 * 10 + n)
            facts.child_csv_rows.append(n)
        else:
            dob = RUN_DATE - timedelta(days=365 * (20 + n))
        rows.append([p["first"], p["last"], p["email"], dob.strftime("%d/%m/%Y"), "chess"])
    (exports / "junior_club.csv").write_bytes(_csv(["first_name", "last_name", "email", "dob", "club"], rows))
    rows = []
    for n in range(1, 13):
        p = _person(rng, 600 + n)
        visited = RUN_DATE - timedelta(days=20 * n)
        if visited < _months_before(RUN_DATE, 3):
            facts.expired_visitor_rows.append(n)
        rows.append([f"V-{n:03d}", p["name"], "Kestrel Logistics", visited.isoformat()])
    (exports / "visitors.csv").write_bytes(_csv(["visitor_id", "name", "company", "visited_at"], rows))
    if remote:
        _remote(root, rng, facts)
    return facts


def _month_before(day: date) -> date:
    return _months_before(day, 1)


def _months_before(day: date, months: int) -> date:
    from pii.core.retention import Period

    return Period(months, "m").before(day)


def _remote(root: Path, rng: random.Random, facts: FlowFacts) -> None:
    from pii.demo import remote as demo_remote

    base = root / demo_remote.FTP_DIR / demo_remote.FTP_FOLDER.strip("/")
    rows = [[f"M-{i}", _person(rng, 700 + i)["name"], _person(rng, 700 + i)["email"], "misdirected"]
            for i in range(1, 6)]
    (base / ERROR_FTP_FILE.rsplit("/", 1)[1]).write_bytes(_csv(["ref", "name", "email", "note"], rows))
    lines = []
    for n in range(1, 7):
        p = _person(rng, 800 + n)
        child = n % 2 == 0
        dob = RUN_DATE - timedelta(days=365 * (9 if child else 30) + n)
        if child:
            facts.child_jsonl_rows.append(n)
        lines.append(json.dumps({"name": p["name"], "email": p["email"], "dob": dob.isoformat()}))
    (base / "juniors.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    old_leads = base / "leads_2026-06.csv"
    old_leads.write_bytes(_csv(["lead_id", "name", "email", "interest"],
                               [[f"L-6{i:02d}", _person(rng, 900 + i)["name"], _person(rng, 900 + i)["email"],
                                 "events"] for i in range(1, 5)]))
    _utime(old_leads, date(2026, 6, 30))
    facts.old_leads_files.append(f"{demo_remote.FTP_FOLDER}/leads_2026-06.csv")
    rec = base / "recordings"
    rec.mkdir(exist_ok=True)
    for day in (date(2026, 5, 4), date(2026, 7, 19), date(2026, 10, 2), date(2026, 11, 10)):
        f = rec / f"call_{day.isoformat()}.wav"
        f.write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(28))
        _utime(f, day)
        remote = f"{demo_remote.FTP_FOLDER}/recordings/{f.name}"
        (facts.old_recordings if day < _months_before(RUN_DATE, 3) else facts.new_recordings).append(remote)
    # ---- mail
    box = root / demo_remote.MAILBOX_DIR
    support = f"Member Support <{demo_remote.MAILBOX_USER}>"
    mails = [
        ("19a0e0000000b001", f"CV Desk <{ERROR_SENDER}>", "Candidate CV: Bram Ashdown",
         "Please find attached the CV of Bram Ashdown, phone 07700 900777.", datetime(2026, 11, 3, 9, 0), "error"),
        ("19a0e0000000b002", f"CV Desk <{ERROR_SENDER}>", "Candidate CV: Cleo Brierley",
         "CV of Cleo Brierley attached, cleo.b@example.test.", datetime(2026, 11, 4, 9, 0), "error"),
        ("19a0e0000000b003", "Wren Westlake <wren.w@example.test>", "Can I join?",
         "Hello, I'm 11 years old and I would like to join the coding club.", datetime(2026, 11, 12, 16, 0), "clue"),
        ("19a0e0000000b004", "Orin Ormsby <orin.o@example.test>", "Old question",
         "Do you still run the spring summit?", datetime(2023, 3, 14, 10, 0), "old"),
        ("19a0e0000000b005", "Pia Pendle <pia.p@example.test>", "Invoice",
         "Could you resend the invoice?", datetime(2024, 6, 2, 10, 0), "old"),
    ]
    for mid, frm, subject, body, when, kind in mails:
        msg = EmailMessage()
        msg["From"], msg["To"], msg["Subject"] = frm, support, subject
        msg["Date"] = format_datetime(when.replace(tzinfo=timezone.utc))
        msg["Message-ID"] = f"<{mid}@demo.example.test>"
        msg.set_content(body)
        (box / f"{mid}.eml").write_bytes(bytes(msg))
        {"error": facts.error_message_ids, "clue": facts.clue_message_ids,
         "old": facts.old_message_ids}[kind].append(mid)


FLOWS_YAML = """\
# The special flows (see README "Special flows"). Ages and retention are computed on the run date:
# the demo's dates are set around 2026-11-22, so run them with --date 2026-11-22.
marketing_lists:
  crm: [newsletter, marketing_contacts]
  exports: [marketing_list.csv]
child_purge:
  threshold: 13
  dob_columns: [date_of_birth, dob]
retention:
  - name: enquiries
    store: crm
    match: enquiries
    date: received_at
    period: 2y
    category: Enquiries
    action: anonymise           # kept for statistics: topic, year and postcode district only
    anonymise: {full_name: null, email: null, phone: null, message: null, postcode: postcode_district}
    legal_basis: "Legitimate interests (Art. 6(1)(f)): answering enquiries"
  - name: marketing-contacts
    store: crm
    match: marketing_contacts
    where: {consent: given}
    date: last_contacted
    period: 5y
    category: Marketing contacts
    legal_basis: "Consent (Art. 6(1)(a))"
  - name: withdrawn-consent
    store: crm
    match: marketing_contacts
    where: {consent: withdrawn}
    date: withdrawn_at
    period: 1m
    category: Marketing contacts (consent withdrawn)
  - name: complaints
    store: crm
    match: support_tickets
    date: opened_at
    period: 5y
    category: Complaints
    legal_hold: "Ombudsman case 2026-114: keep every complaint until it closes"
  - name: visitors
    store: exports
    match: visitors.csv
    date: visited_at
    period: 3m
    category: Visitor records
"""

FLOWS_YAML_REMOTE = """\
  - name: partner-leads
    store: partner_drop
    match: "leads_*.csv"
    date: file_time
    period: 3m
    category: Uncontacted third-party leads
  - name: call-recordings
    store: partner_drop
    match: "recordings/*"
    date: file_time
    period: 3m
    category: Call recordings
  - name: support-mail
    store: support_mailbox
    match: "*"
    date: message_date
    period: 2y
    category: Support correspondence
"""
