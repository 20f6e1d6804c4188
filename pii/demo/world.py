"""Lethe's embedded demo stores: a SQLite CRM and a folder of CSV exports, full of fake people.

`build_demo(root)` writes, deterministically (fixed seed, stdlib only):

- ``root/data/crm.db``: a SQLite CRM with real FOREIGN KEY constraints: ``companies`` and ``events``
  (shared reference data), ``members``, ``registrations`` -> members, ``payments`` -> registrations
  (two hops from a member), ``support_tickets`` (member_id NULLable), ``notes`` (member_id = the member
  the note is about; free text), ``newsletter`` (no primary key) and ``member_tags`` (composite key);
- ``root/data/exports/``: ``crm_export.csv`` (comma, UTF-8 with BOM, CRLF, a quoted newline),
  ``marketing_list.csv`` (semicolon), ``event_badges.csv`` (names only) and ``legacy_contacts.csv``
  (cp1252, "Last, First" names);
- ``root/stores.yaml`` naming both stores, with per-store metadata for access answers.

The demo subject is Alice Smith (`DEMO_SUBJECT`). Every place her data lands is recorded while the data
is generated, in `DemoWorld.expected`; near misses that must never match are in `DemoWorld.decoys`.

Rules used for `expected` (CONTRACT.md: one finding per location, match order identifier > text > linked):

- ``identifier``: a field of the row, normalised, equals one of her identifiers (email, phone, or the
  whole name in a name column / first+last name columns).
- ``text``: one of her identifiers occurs inside a free-text field (notes, body) of a row that has no
  identifier field of hers.
- ``linked``: the row is reached only by following foreign keys *backwards* from a matched row, i.e. it
  references (directly or transitively) her member row: her registrations, their payments, her
  member_tags, her own support ticket and the notes written *about* her (member_id = her id). The rows
  she merely points to (her company, the events) are shared reference data and are never expected.
  None of her linked rows contains one of her identifiers, so none of them is upgraded to ``text``.
  Rows that match by text have no rows referencing them, so text matches spread no links here.
- ``strength`` is ``weak`` only where the sole evidence is her name (the ``event_badges.csv`` row);
  everything else is ``strong`` (an email or phone corroborates it, or it is linked to her member row).

Locations follow CONTRACT.md: SQL ``{"table": t, "key": {pk: value}}`` (the composite key of
member_tags; every column for the key-less newsletter table); CSV ``{"file": name, "row": n}`` with n the
1-based data record number (header excluded; a quoted newline does not start a new record).

Her customer number (``customer_no`` C-10042, `DEMO_SUBJECT_IDS`) is only in rows that already match
by email or phone, so `expected` is the same whether or not ``--id customer_no=C-10042`` is given.
"""
from __future__ import annotations

import csv
import io
import json
import random
import shutil
import sqlite3
import unicodedata
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple

SEED = 20261121

DEMO_SUBJECT: dict[str, list[str]] = {
    "emails": ["alice.smith@example.org"],
    "names": ["Alice Smith"],
    "phones": ["020 7946 0123"],
}
DEMO_SUBJECT_IDS: dict[str, str] = {"customer_no": "C-10042"}

CRM_FILE = "data/crm.db"
EXPORTS_DIR = "data/exports"
CONFIG_FILE = "stores.yaml"
EXPORT_FILES = ("crm_export.csv", "marketing_list.csv", "event_badges.csv", "legacy_contacts.csv")

SUBJECT_EMAIL = "alice.smith@example.org"
SUBJECT_MEMBER_ID = 3042


class ExpectedFinding(NamedTuple):
    """One location the demo subject's data is expected at (what `lethe access` should report)."""

    store: str
    location: dict
    match: str  # identifier, text or linked
    strength: str = "strong"

    @property
    def key(self) -> tuple[str, str]:
        return location_key(self.store, self.location)


class Decoy(NamedTuple):
    """A near miss that must never be reported for the demo subject."""

    store: str
    location: dict
    what: str  # e.g. "email malice.smith@example.org": a description for test messages (fake data only)

    @property
    def key(self) -> tuple[str, str]:
        return location_key(self.store, self.location)


def location_key(store: str, location: dict) -> tuple[str, str]:
    """A hashable identity for (store, location), as `pii.core.findings.Finding.key` compares them."""
    return store, json.dumps(location, sort_keys=True, default=str)


@dataclass
class DemoWorld:
    root: Path
    config_path: Path
    crm_path: Path
    exports_dir: Path
    subject: dict[str, list[str]]  # keyword arguments for pii.core.subject.Subject.build
    expected: list[ExpectedFinding]
    decoys: list[Decoy]
    subject_ids: dict[str, str] = field(default_factory=lambda: dict(DEMO_SUBJECT_IDS))
    reasons: dict[tuple[str, str], str] = field(default_factory=dict)  # expected key -> why it is expected
    remote: bool = False  # with the FTP drop and mailbox (served by pii.demo.remote.serve)
    ftp_port: int | None = None
    gmail_port: int | None = None
    flows: Any = None  # pii.demo.flows.FlowFacts: what each special flow should select

    def expected_index(self) -> dict[tuple[str, str], ExpectedFinding]:
        return {e.key: e for e in self.expected}

    def build_subject(self, with_ids: bool = False):
        from pii.core.subject import Subject

        return Subject.build(**self.subject, ids=dict(self.subject_ids) if with_ids else ())


# --------------------------------------------------------------------------- fake people
_FIRST = [
    "Oliver", "Amelia", "George", "Isla", "Harry", "Ava", "Noah", "Mia", "Jack", "Ivy", "Leo", "Grace",
    "Oscar", "Freya", "Charlie", "Lily", "Arthur", "Sophia", "Muhammad", "Emily", "Theo", "Ella", "Thomas",
    "Poppy", "James", "Evie", "Henry", "Chloe", "William", "Ruby", "Priya", "Aisha", "Wei", "Sanjay",
    "Zoë", "José", "Renée", "Siobhan", "Tomasz", "Ngozi", "Kofi", "Mei", "Lars", "Ines", "Dmitri", "Fatima",
]
_LAST = [
    "Jones", "Williams", "Taylor", "Brown", "Davies", "Evans", "Wilson", "Thomas", "Johnson", "Roberts",
    "Robinson", "Thompson", "Wright", "Walker", "White", "Edwards", "Hughes", "Green", "Hall", "Lewis",
    "Harris", "Clarke", "Patel", "Jackson", "Wood", "Turner", "Martin", "Cooper", "Hill", "Ward", "Morris",
    "Moore", "Clark", "Lee", "King", "Baker", "Harrison", "Morgan", "Allen", "James", "Scott", "Phillips",
    "Watson", "Davis", "Parker", "Price", "Bennett", "Young", "Griffiths", "Mitchell", "Kelly", "Cook",
    "Carter", "Richardson", "Bailey", "Collins", "Bell", "Shaw", "Murphy", "Miller", "Cox", "Richards",
    "Khan", "Marshall", "Anderson", "Simpson", "Ellis", "Adams", "Singh", "Begum", "Wilkinson", "Foster",
    "Chapman", "Powell", "Webb", "Rogers", "Gray", "Mason", "Ali", "Hunt", "Hussain", "Campbell", "Matthews",
    "Owen", "Palmer", "Holmes", "Mills", "Barnes", "Knight", "Lloyd", "Butler", "Russell", "Barker",
    "Fisher", "Stevens", "Jenkins", "Murray", "Dixon", "Harvey", "Smith", "O'Brien", "Müller", "Nowak",
    "García", "Okafor", "Chen", "Nguyen", "Kowalski", "Dubois",
]
_STAFF = ["Priya Shah", "Tom Baker", "Hannah Reid", "Marcus Obi", "Lucy Fairweather", "Dev Rao"]
_DOMAINS = ["example.test", "example.org", "example.test", "example.net"]
_COMPANIES = [
    ("Northwind Analytics Ltd", "Technology"), ("Blue Heron Consulting", "Consulting"),
    ("Kestrel Logistics", "Transport"), ("Greenleaf Foods plc", "Food & drink"),
    ("Harbour Lane Legal LLP", "Legal"), ("Quarry Hill Housing", "Property"),
    ("Brightwater Energy", "Energy"), ("Oakridge Health", "Healthcare"),
    ("Silverline Media", "Media"), ("Redbrick University", "Education"),
    ("Tidewell Insurance", "Finance"), ("Copperfield Retail", "Retail"),
]
_EVENTS = [
    ("Spring Data Summit", "ExCeL London", "2024-04-18"),
    ("Privacy Engineering Day", "Manchester Central", "2024-06-06"),
    ("Autumn Members' Meetup", "The Lowry, Salford", "2024-10-03"),
    ("Winter Roundtable", "Edinburgh ICC", "2024-12-05"),
    ("Spring Data Summit", "ExCeL London", "2025-04-24"),
    ("Records Retention Workshop", "Leeds Town Hall", "2025-05-15"),
    ("Autumn Members' Meetup", "Bristol Beacon", "2025-09-25"),
    ("Annual General Meeting", "Online", "2025-11-20"),
]
_TAGS = ["vip", "speaker", "volunteer", "sponsor", "student", "press", "board", "mentor"]
_TOWNS = ["London", "Manchester", "Leeds", "Bristol", "Düsseldorf", "Lyon", "Kraków", "Cardiff", "York"]
_SUBJECT_PHONE_BLOCK = range(120, 130)  # 020 7946 0120-0129 are reserved for the subject and decoys


def _ascii(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if c.isascii() and (c.isalnum() or c in ".-")).lower()


def _phone_format(rng: random.Random, mobile: bool, last: int) -> str:
    if mobile:
        sub = f"{last:03d}"
        return rng.choice([
            f"07700 900{sub}", f"07700900{sub}", f"+44 7700 900{sub}", f"+447700900{sub}",
            f"07700-900-{sub}", f"(07700) 900{sub}", f"+44 (0)7700 900{sub}",
        ])
    sub = f"{last:04d}"
    return rng.choice([
        f"020 7946 {sub}", f"(020) 7946 {sub}", f"+44 20 7946 {sub}", f"+44 (0)20 7946 {sub}",
        f"0044 20 7946 {sub}", f"020-7946-{sub}", f"0207946{sub}", f"(020) 7946-{sub}",
    ])


@dataclass
class _Person:
    member_id: int
    customer_no: str
    first: str
    last: str
    email: str
    phone: str
    company_id: int | None
    dob: str
    created_at: str
    role: str = "other"  # "subject", "decoy" or "other"


def _make_people(rng: random.Random, count: int = 200, leads: int = 95) -> tuple[list[_Person], list[tuple]]:
    """`count` members plus the subject and the decoys, and `leads` non-members (first, last, email, phone)."""
    used_emails = {SUBJECT_EMAIL, "malice.smith@example.org", "alice.smith@example.com", "alan.smithers@example.test",
                   "alice.smithson@example.test"}
    used_phones: set[tuple[bool, int]] = {(True, 412), (True, 988), (False, 871)}  # the decoys' numbers
    others: list[tuple[str, str, str, str]] = []
    while len(others) < count + leads:
        first, last = rng.choice(_FIRST), rng.choice(_LAST)
        style = rng.randrange(4)
        local = {0: f"{_ascii(first)}.{_ascii(last)}", 1: f"{_ascii(first)[0]}{_ascii(last)}",
                 2: f"{_ascii(first)}{rng.randrange(10, 99)}", 3: f"{_ascii(last)}.{_ascii(first)}"}[style]
        domain = rng.choice(_DOMAINS)
        email = f"{local}@{domain}"
        n = 2
        while email in used_emails:
            email = f"{local}{n}@{domain}"
            n += 1
        used_emails.add(email)
        while True:
            mobile = rng.random() < 0.55
            last_digits = rng.randrange(1000)  # 07700 900000-900999 or 020 7946 0000-0999
            if not mobile and last_digits in _SUBJECT_PHONE_BLOCK:
                continue
            if (mobile, last_digits) not in used_phones:
                break
        used_phones.add((mobile, last_digits))
        phone = _phone_format(rng, mobile, last_digits)
        if rng.random() < 0.1 and style == 0:  # some addresses were typed with capitals
            email = email[0].upper() + email[1:]
        others.append((first, last, email, phone))

    # The subject and the decoys take fixed places; everyone else fills the rest.
    specials = {
        SUBJECT_MEMBER_ID: ("Alice", "Smith", SUBJECT_EMAIL, "+44 20 7946 0123", "subject"),
        3007: ("Mallory", "Smith", "malice.smith@example.org", "07700 900412", "decoy"),
        3077: ("Alicia", "Smith", "alice.smith@example.com", "+44 7700 900988", "decoy"),
        3118: ("Alan", "Smithers", "alan.smithers@example.test", "+44 20 7946 0124", "decoy"),
        3163: ("Alice", "Smithson", "alice.smithson@example.test", "020 7946 0871", "decoy"),
    }
    people: list[_Person] = []
    it = iter(others[:count])
    start = datetime(2019, 1, 7, 9, 0)
    for i in range(count + len(specials)):
        member_id = 3001 + i
        if member_id in specials:
            first, last, email, phone, role = specials[member_id]
        else:
            first, last, email, phone = next(it)
            role = "other"
        dob = date(1950, 1, 1) + timedelta(days=rng.randrange(0, 365 * 55))
        created = start + timedelta(days=i * 7 + rng.randrange(7), minutes=rng.randrange(600))
        company = rng.randrange(1, len(_COMPANIES) + 1) if rng.random() < 0.8 else None
        if role == "subject":
            dob, company = date(1988, 4, 17), 3
        people.append(_Person(member_id, f"C-{10001 + i}", first, last, email, phone, company,
                              dob.isoformat(), created.isoformat(sep=" ", timespec="seconds"), role))
    assert people[SUBJECT_MEMBER_ID - 3001].customer_no == DEMO_SUBJECT_IDS["customer_no"]
    return people, others[count:]


# --------------------------------------------------------------------------- the CRM
_SCHEMA = """
CREATE TABLE companies (
    company_id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    sector TEXT
);
CREATE TABLE events (
    event_id INTEGER PRIMARY KEY,
    title TEXT NOT NULL,
    venue TEXT,
    starts_on TEXT
);
CREATE TABLE members (
    member_id INTEGER PRIMARY KEY,
    customer_no TEXT NOT NULL UNIQUE,
    first_name TEXT,
    last_name TEXT,
    email TEXT,
    phone TEXT,
    company_id INTEGER,
    date_of_birth TEXT,
    created_at TEXT,
    FOREIGN KEY (company_id) REFERENCES companies (company_id)
);
CREATE TABLE registrations (
    reg_id INTEGER PRIMARY KEY,
    member_id INTEGER NOT NULL,
    event_id INTEGER NOT NULL,
    registered_at TEXT,
    FOREIGN KEY (member_id) REFERENCES members (member_id),
    FOREIGN KEY (event_id) REFERENCES events (event_id)
);
CREATE INDEX ix_registrations_member ON registrations (member_id);
CREATE TABLE payments (
    payment_id INTEGER PRIMARY KEY,
    reg_id INTEGER NOT NULL,
    amount REAL NOT NULL,
    paid_at TEXT,
    FOREIGN KEY (reg_id) REFERENCES registrations (reg_id)
);
CREATE INDEX ix_payments_reg ON payments (reg_id);
CREATE TABLE support_tickets (
    ticket_id INTEGER PRIMARY KEY,
    member_id INTEGER,
    subject TEXT,
    body TEXT,
    opened_at TEXT,
    FOREIGN KEY (member_id) REFERENCES members (member_id)
);
CREATE TABLE notes (
    note_id INTEGER PRIMARY KEY,
    member_id INTEGER NOT NULL,
    author TEXT,
    note TEXT,
    FOREIGN KEY (member_id) REFERENCES members (member_id)
);
CREATE TABLE newsletter (
    email TEXT NOT NULL,
    subscribed_on TEXT,
    source TEXT
);
CREATE TABLE member_tags (
    member_id INTEGER NOT NULL,
    tag TEXT NOT NULL,
    PRIMARY KEY (member_id, tag),
    FOREIGN KEY (member_id) REFERENCES members (member_id)
);
"""

_NOTE_TEMPLATES = [
    "Asked about group discounts for the {event}.",
    "Requested a VAT invoice for the last payment.",
    "Updated billing address after office move.",
    "Dietary requirement: vegetarian.",
    "Needs step-free access at {venue}.",
    "Renewal reminder sent; no reply yet.",
    "Moved to {company}; kept membership.",
    "Call back on {phone} after 4pm.",
    "Happy to volunteer at the {event}.",
    "Call summary:\n- renewal due in March\n- wants a paper invoice",
    "Complained about the coffee at {venue}.",
    "Prefers contact by post.",
]
_TICKET_TEMPLATES = [
    ("Invoice request", "Could you send me an invoice for my registration to the {event}? Thanks."),
    ("Change of email", "Please use {email} for all future correspondence."),
    ("Parking at {venue}", "Is there parking available at {venue} for the {event}?"),
    ("Login problem", "I cannot sign in to the members' area since the update."),
    ("Refund", "I can no longer attend the {event}; can I transfer my place to a colleague?"),
    ("Dietary needs", "I am coeliac; please note this for the {event} lunch."),
]


class _Crm:
    """Rows of the CRM as they are generated, with the expected findings and decoys noted on the way."""

    def __init__(self, rng: random.Random, people: list[_Person]):
        self.rng = rng
        self.people = people
        self.by_id = {p.member_id: p for p in people}
        self.expected: list[ExpectedFinding] = []
        self.reasons: dict[tuple[str, str], str] = {}
        self.decoys: list[Decoy] = []
        self.rows: dict[str, list[tuple]] = {t: [] for t in (
            "companies", "events", "members", "registrations", "payments", "support_tickets", "notes",
            "newsletter", "member_tags")}

    def expect(self, table: str, key: dict, match: str, why: str, strength: str = "strong") -> None:
        e = ExpectedFinding("crm", {"table": table, "key": key}, match, strength)
        self.expected.append(e)
        self.reasons[e.key] = why

    def decoy(self, table: str, key: dict, what: str) -> None:
        self.decoys.append(Decoy("crm", {"table": table, "key": key}, what))

    def build(self) -> None:
        rng, R = self.rng, self.rows
        for i, (name, sector) in enumerate(_COMPANIES, 1):
            R["companies"].append((i, name, sector))
        for i, (title, venue, starts) in enumerate(_EVENTS, 1):
            R["events"].append((i, title, venue, starts))

        subject = self.by_id[SUBJECT_MEMBER_ID]
        for p in self.people:
            R["members"].append((p.member_id, p.customer_no, p.first, p.last, p.email, p.phone, p.company_id,
                                 p.dob, p.created_at))
            if p.role == "subject":
                self.expect("members", {"member_id": p.member_id}, "identifier", "her member row (email, phone, name)")
            elif p.role == "decoy":
                self.decoy("members", {"member_id": p.member_id}, f"member {p.first} {p.last}, {p.email}, {p.phone}")

        # registrations and payments (payments are two foreign-key hops from a member)
        reg_id, pay_id = 5001, 9001
        for p in self.people:
            if p.role == "subject":
                plan = [(1, "2024-02-11 10:02:00", [(149.0, "2024-02-11 10:03:12"), (149.0, "2024-02-11 10:04:55")]),
                        (5, "2025-01-30 18:40:00", [(165.0, "2025-01-30 18:41:30")])]
            else:
                plan = []
                for event_id in sorted(rng.sample(range(1, len(_EVENTS) + 1), rng.choice([0, 1, 1, 2, 2, 3]))):
                    day = date.fromisoformat(_EVENTS[event_id - 1][2]) - timedelta(days=rng.randrange(5, 90))
                    when = f"{day.isoformat()} {rng.randrange(8, 22):02d}:{rng.randrange(60):02d}:00"
                    pays = []
                    if rng.random() < 0.8:
                        pays.append((float(rng.choice([0, 49, 99, 149, 165, 199])), when))
                    plan.append((event_id, when, pays))
            for event_id, when, pays in plan:
                R["registrations"].append((reg_id, p.member_id, event_id, when))
                if p.role == "subject":
                    self.expect("registrations", {"reg_id": reg_id}, "linked", "her registration (member_id FK)")
                for amount, paid_at in pays:
                    R["payments"].append((pay_id, reg_id, amount, paid_at))
                    if p.role == "subject":
                        self.expect("payments", {"payment_id": pay_id}, "linked",
                                    "payment for her registration (two FK hops)")
                    pay_id += 1
                reg_id += 1

        # member_tags: composite primary key
        for p in self.people:
            tags = ["speaker", "vip"] if p.role == "subject" else sorted(rng.sample(_TAGS, rng.choice([0, 0, 1, 1, 2])))
            for tag in tags:
                R["member_tags"].append((p.member_id, tag))
                if p.role == "subject":
                    self.expect("member_tags", {"member_id": p.member_id, "tag": tag}, "linked", "her tag (member_id FK)")

        # newsletter: no primary key, so a location names every column
        seen: set[tuple] = set()
        subs = rng.sample([p for p in self.people if p.role == "other"], 110)
        subs_rows = []
        for p in subs:
            day = date(2022, 1, 1) + timedelta(days=rng.randrange(0, 1000))
            subs_rows.append((p.email if rng.random() < 0.85 else p.email.upper(), day.isoformat(),
                              rng.choice(["website", "summit-signup", "import-2022", "partner-list"])))
        for k in range(25):  # people who are not members
            day = date(2022, 1, 1) + timedelta(days=rng.randrange(0, 1000))
            subs_rows.append((f"reader{k + 1:02d}@{rng.choice(_DOMAINS)}", day.isoformat(), "website"))
        specials = [
            (("ALICE.SMITH@EXAMPLE.ORG", "2023-01-15", "summit-signup"), "subject"),
            (("malice.smith@example.org", "2023-02-02", "website"), "decoy"),
            (("alice.smith@example.com", "2023-03-09", "website"), "decoy"),
        ]
        for pos, (row, role) in zip((37, 12, 90), specials):
            subs_rows.insert(pos, row)
        for row in subs_rows:
            if row in seen:
                continue
            seen.add(row)
            R["newsletter"].append(row)
            key = {"email": row[0], "subscribed_on": row[1], "source": row[2]}
            if row == specials[0][0]:
                self.expect("newsletter", key, "identifier", "newsletter row, email in upper case")
            elif row[0] in ("malice.smith@example.org", "alice.smith@example.com"):
                self.decoy("newsletter", key, f"newsletter email {row[0]}")

        # support tickets: member_id may be NULL (sent from the website without signing in)
        tickets: list[tuple[int | None, str, str, str]] = []
        base = datetime(2023, 3, 1, 9, 0)
        for k in range(60):
            p = rng.choice([q for q in self.people if q.role == "other"])
            subj, body = rng.choice(_TICKET_TEMPLATES)
            ev, venue = rng.choice(_EVENTS)[:2]
            fill = dict(event=ev, venue=venue, email=p.email)
            opened = base + timedelta(days=k * 9 + rng.randrange(9), minutes=rng.randrange(480))
            member = p.member_id if rng.random() < 0.85 else None
            tickets.append((member, subj.format(**fill), body.format(**fill),
                            opened.isoformat(sep=" ", timespec="seconds"), "other"))
        tickets.insert(21, (SUBJECT_MEMBER_ID, "Charged twice",
                            "Hello, I was charged twice for the Spring Data Summit. Could you refund the "
                            "duplicate payment please? Thanks, A.", "2024-02-12 08:15:00", "own"))
        tickets.insert(33, (None, "Badge not received",
                            "Hi, I'm writing on behalf of my colleague alice.smith@example.org, who has not "
                            "received her badge for the summit yet.", "2025-04-01 11:20:00", "mention"))
        tickets.insert(40, (3077, "Change of email",
                            "Please use alice.smith@example.com for everything from now on. Alicia Smith",
                            "2025-05-06 14:02:00", "decoy"))
        for tid, (member, subj, body, opened, role) in enumerate(tickets, 701):
            R["support_tickets"].append((tid, member, subj, body, opened))
            if role == "own":
                self.expect("support_tickets", {"ticket_id": tid}, "linked",
                            "her own ticket (member_id FK); its body names none of her identifiers")
            elif role == "mention":
                self.expect("support_tickets", {"ticket_id": tid}, "text",
                            "anonymous ticket whose body mentions her email")
            elif role == "decoy":
                self.decoy("support_tickets", {"ticket_id": tid}, "ticket from alice.smith@example.com (Alicia)")

        # notes: member_id is the member the note is about; `note` is free text
        notes: list[tuple[int, str, str, str]] = []
        others = [p for p in self.people if p.role == "other"]
        for _ in range(150):
            p = rng.choice(others)
            ev, venue = rng.choice(_EVENTS)[:2]
            company = _COMPANIES[rng.randrange(len(_COMPANIES))][0]
            text = rng.choice(_NOTE_TEMPLATES).format(event=ev, venue=venue, company=company, phone=p.phone)
            notes.append((p.member_id, rng.choice(_STAFF), text, "other"))
        x, y, z = others[10].member_id, others[57].member_id, others[131].member_id
        specials_n = [
            (14, (SUBJECT_MEMBER_ID, "Hannah Reid", "Prefers contact by email. Spoke at the 2024 summit; "
                  "keen to mentor new members.", "about")),
            (26, (x, "Tom Baker", "Referred by a friend (alice.smith@example.org) after the Spring Data "
                  "Summit; send the welcome pack.", "mention")),
            (63, (y, "Priya Shah", "Called Alice on 020 7946 0123 about the refund; she will confirm "
                  "the transfer of this member's place.", "mention")),
            (71, (z, "Dev Rao", "Alice Smithson asked about group rates for her team.", "decoy")),
            (88, (3118, "Marcus Obi", "Left a voicemail on 020 7946 0124 about the renewal.", "decoy")),
            (95, (3007, "Lucy Fairweather", "Invoice re-sent to malice.smith@example.org.", "decoy")),
            (120, (3077, "Hannah Reid", "Alicia Smith changed her email to alice.smith@example.com.", "decoy")),
        ]
        for pos, row in specials_n:
            notes.insert(pos, row)
        for nid, (member, author, text, role) in enumerate(notes, 1):
            R["notes"].append((nid, member, author, text))
            if role == "about":
                self.expect("notes", {"note_id": nid}, "linked",
                            "a note about her (member_id FK) naming none of her identifiers")
            elif role == "mention":
                self.expect("notes", {"note_id": nid}, "text", "another member's note mentioning her")
            elif role == "decoy":
                self.decoy("notes", {"note_id": nid}, "note with a near miss: " + text)

    def write(self, path: Path) -> None:
        con = sqlite3.connect(path)
        try:
            con.execute("PRAGMA foreign_keys = ON")
            con.executescript(_SCHEMA)
            with con:
                for table, rows in self.rows.items():
                    if rows:
                        marks = ", ".join("?" * len(rows[0]))
                        con.executemany(f"INSERT INTO {table} VALUES ({marks})", rows)
            problems = con.execute("PRAGMA foreign_key_check").fetchall()
            if problems:
                raise RuntimeError(f"demo CRM violates its foreign keys: {problems[:3]}")
            con.execute("VACUUM")
        finally:
            con.close()


# --------------------------------------------------------------------------- CSV exports
def _csv_bytes(header: list[str], rows: list[list[Any]], *, delimiter: str = ",", newline: str = "\n",
               encoding: str = "utf-8", bom: bool = False) -> bytes:
    buf = io.StringIO(newline="")
    writer = csv.writer(buf, delimiter=delimiter, lineterminator=newline, quoting=csv.QUOTE_MINIMAL)
    writer.writerow(header)
    writer.writerows(["" if v is None else v for v in row] for row in rows)
    data = buf.getvalue().encode(encoding)
    return (b"\xef\xbb\xbf" + data) if bom else data


class _Exports:
    def __init__(self, rng: random.Random, people: list[_Person], leads: list[tuple]):
        self.rng = rng
        self.people = people
        self.leads = leads
        self.expected: list[ExpectedFinding] = []
        self.reasons: dict[tuple[str, str], str] = {}
        self.decoys: list[Decoy] = []
        self.files: dict[str, bytes] = {}

    def expect(self, file: str, row: int, match: str, why: str, strength: str = "strong") -> None:
        e = ExpectedFinding("exports", {"file": file, "row": row}, match, strength)
        self.expected.append(e)
        self.reasons[e.key] = why

    def decoy(self, file: str, row: int, what: str) -> None:
        self.decoys.append(Decoy("exports", {"file": file, "row": row}, what))

    def build(self) -> None:
        self._crm_export()
        self._marketing_list()
        self._event_badges()
        self._legacy_contacts()

    def _crm_export(self) -> None:
        rng = self.rng
        rows: list[tuple[list, str]] = []
        for p in self.people:
            phone = "02079460123" if p.role == "subject" else p.phone
            email = "Alice.Smith@Example.org" if p.role == "subject" else p.email
            company = _COMPANIES[p.company_id - 1][0] if p.company_id else ""
            notes = "Speaker 2024; prefers email" if p.role == "subject" else (
                rng.choice(["", "", "", "Renewed early", "Paper invoice please", "Lapsed 2023"]))
            rows.append(([p.customer_no, p.first, p.last, email, phone, company, p.created_at[:10], notes],
                         p.role))
        for first, last, email, phone in self.leads:
            rows.append((["", first, last, email, phone, "", "", rng.choice(["Lead from summit", "Cold lead", ""])],
                         "lead"))
        rng.shuffle(rows)
        # her row in the middle, quoted newlines before it (record numbers differ from line numbers)
        idx = next(i for i, (_, role) in enumerate(rows) if role == "subject")
        rows.insert(150, rows.pop(idx))
        first_plain = next(i for i, (_, role) in enumerate(rows) if role in ("other", "lead"))
        rows[first_plain][0][7] = 'Asked for an invoice copy.\nSent on 3 March, "urgent".'
        mention_at = next(i for i, (_, role) in enumerate(rows) if i > 190 and role == "lead")
        rows[mention_at][0][7] = "Referred by alice.smith@example.org;\nfollow up after the summit"
        rows[mention_at] = (rows[mention_at][0], "mention")
        for n, (row, role) in enumerate(rows, 1):
            if role == "subject":
                self.expect("crm_export.csv", n, "identifier", "her CRM export row (email mixed case, phone digits)")
            elif role == "mention":
                self.expect("crm_export.csv", n, "text", "another person's export row whose notes mention her email")
            elif role == "decoy":
                self.decoy("crm_export.csv", n, f"export row {row[1]} {row[2]}, {row[3]}, {row[4]}")
        header = ["customer_no", "first_name", "last_name", "email", "phone", "company", "member_since", "notes"]
        self.files["crm_export.csv"] = _csv_bytes(header, [r for r, _ in rows], newline="\r\n", bom=True)

    def _marketing_list(self) -> None:
        rng = self.rng
        chosen = sorted(rng.sample([p for p in self.people if p.role == "other"], 115), key=lambda p: p.member_id)
        rows: list[tuple[list, str]] = [
            ([p.email, p.first, p.last, p.phone, rng.choice(["yes", "yes", "no"])], "other") for p in chosen]
        rows.insert(48, (["alice.smith@example.org", "Alice", "Smith", "(020) 7946-0123", "yes"], "subject"))
        rows.insert(20, (["malice.smith@example.org", "Mallory", "Smith", "07700 900412", "no"], "decoy"))
        rows.insert(70, (["alice.smith@example.com", "Alicia", "Smith", "+44 7700 900988", "yes"], "decoy"))
        rows.insert(99, (["alan.smithers@example.test", "Alan", "Smithers", "(020) 7946-0124", "yes"], "decoy"))
        for n, (row, role) in enumerate(rows, 1):
            if role == "subject":
                self.expect("marketing_list.csv", n, "identifier", "her marketing row (email, phone in brackets)")
            elif role == "decoy":
                self.decoy("marketing_list.csv", n, f"marketing row {row[1]} {row[2]}, {row[0]}, {row[3]}")
        self.files["marketing_list.csv"] = _csv_bytes(["Email", "First Name", "Last Name", "Phone", "Consent"],
                                                      [r for r, _ in rows], delimiter=";")

    def _event_badges(self) -> None:
        rng = self.rng
        chosen = rng.sample([p for p in self.people if p.role == "other"], 75)
        rows: list[tuple[list, str]] = [([0, f"{p.first} {p.last}", rng.choice(_EVENTS)[0]], "other")
                                        for p in chosen]
        rows.insert(31, ([0, "Alice Smith", "Spring Data Summit"], "subject"))
        rows.insert(9, ([0, "Alicia Smith", "Spring Data Summit"], "decoy"))
        rows.insert(52, ([0, "Alice Smithson", "Privacy Engineering Day"], "decoy"))
        for n, (row, role) in enumerate(rows, 1):
            row[0] = f"B{2400 + n:05d}"
            if role == "subject":
                self.expect("event_badges.csv", n, "identifier",
                            "badge with only her name: weak evidence", strength="weak")
            elif role == "decoy":
                self.decoy("event_badges.csv", n, f"badge for {row[1]}")
        self.files["event_badges.csv"] = _csv_bytes(["badge_no", "name", "event"], [r for r, _ in rows])

    def _legacy_contacts(self) -> None:
        rng = self.rng
        fixed = [
            (["Müller, Zoë", "zoe.mueller@example.test", "+44 7700 900311", "Düsseldorf"], "other"),
            (["Renée Faÿ", "renee.fay@example.org", "020 7946 0655", "Lyon"], "other"),
            (["Núñez, José", "", "07700 900527", "London"], "other"),
            (["Søren Ørsted", "soren@example.net", "", "York"], "other"),
            (["François Lefèvre", "f.lefevre@example.test", "+44 (0)20 7946 0733", "Lyon"], "other"),
        ]
        chosen = rng.sample([p for p in self.people if p.role == "other"], 30)
        rows: list[tuple[list, str]] = [(list(r), role) for r, role in fixed]
        for p in chosen:
            name = f"{p.last}, {p.first}" if rng.random() < 0.5 else f"{p.first} {p.last}"
            rows.append(([name, p.email if rng.random() < 0.6 else "", p.phone, rng.choice(_TOWNS)], "other"))
        rows.insert(17, (["Smith, Alice", "", "+44 (0)20 7946 0123", "London"], "subject"))
        rows.insert(6, (["Smith, Alicia", "alice.smith@example.com", "+44 7700 900988", "Leeds"], "decoy"))
        for n, (row, role) in enumerate(rows, 1):
            if role == "subject":
                self.expect("legacy_contacts.csv", n, "identifier",
                            "her row in the cp1252 legacy file (phone; name as 'Smith, Alice')")
            elif role == "decoy":
                self.decoy("legacy_contacts.csv", n, f"legacy row {row[0]}, {row[1]}")
        self.files["legacy_contacts.csv"] = _csv_bytes(["Name", "E-mail", "Telephone", "Town"],
                                                       [r for r, _ in rows], newline="\r\n", encoding="cp1252")


# --------------------------------------------------------------------------- stores.yaml
STORES_YAML = """\
# Lethe demo stores, written by `pii.demo.world.build_demo`. Every person in them is fake.
# Relative paths are resolved against the folder that holds this file.
# Who answers for the data (fictional): every access answer names them, with how to exercise each right.
controller:
  name: Example Members Club Ltd
  email: privacy@example.org
  address: 1 Example Street, London EX1 1AA
  dpo: {name: Data Protection Officer, email: dpo@example.org}
  supervisory_authority: {name: "Information Commissioner's Office (UK)", url: "https://ico.org.uk/make-a-complaint/"}
stores:
  crm:
    kind: sql
    url: sqlite:///data/crm.db
    # Shared reference data: reported only if it matches itself, never reached through links.
    reference_tables: [companies, events]
    metadata:
      description: Membership CRM (members, event registrations, payments, support tickets, notes)
      purpose: Membership administration, event registration, billing and member support
      legal_basis: "Contract (UK GDPR Art. 6(1)(b)); legal obligation for payment records (Art. 6(1)(c))"
      source: Collected from the member at sign-up, event registration and in support conversations
      recipients: [Example Pay Ltd (payment processor), event venues (attendee lists)]
      retention: Membership records 6 years after membership ends; support tickets and notes 2 years
  exports:
    kind: csv
    path: data/exports
    metadata:
      description: CSV exports from the CRM, the marketing list, event badges and a legacy contacts file
      purpose: Reporting, e-mail marketing (with consent) and badge printing
      legal_basis: "Consent (Art. 6(1)(a)) for marketing; legitimate interests (Art. 6(1)(f)) for reporting"
      source: Exported from the CRM; the legacy contacts file was migrated from the old address book
      recipients: [Mailing service (Example Mail Ltd), badge printer]
      retention: Exports are deleted after 90 days; the marketing list is kept while consent lasts
"""


# --------------------------------------------------------------------------- entry point
def build_demo(root: Path | str, *, overwrite: bool = True, remote: bool = False,
               ftp_port: int | None = None, gmail_port: int | None = None) -> DemoWorld:
    """Write the demo stores under `root` and describe where the demo subject's data is.

    With `overwrite` (the default) the demo's own files are replaced; without it, an existing demo file
    raises FileExistsError. Nothing else under `root` is touched (Lethe's ledger survives).
    """
    root = Path(root)
    crm_path = root / CRM_FILE
    exports_dir = root / EXPORTS_DIR
    config_path = root / CONFIG_FILE
    from pii.demo import flows as demo_flows

    ours = [config_path, crm_path] + [exports_dir / f for f in EXPORT_FILES + demo_flows.EXPORT_FILES]
    existing = [p for p in ours if p.exists()]
    if existing and not overwrite:
        raise FileExistsError(f"demo file {existing[0]} exists (pass overwrite=True to replace it)")
    for p in existing + [crm_path.with_name(crm_path.name + s) for s in ("-journal", "-wal", "-shm")]:
        if p.exists():
            p.unlink()
    exports_dir.mkdir(parents=True, exist_ok=True)

    rng = random.Random(SEED)
    people, leads = _make_people(rng)
    crm = _Crm(rng, people)
    crm.build()
    crm.write(crm_path)
    exports = _Exports(rng, people, leads)
    exports.build()
    for name in EXPORT_FILES:
        (exports_dir / name).write_bytes(exports.files[name])
    expected, decoys, reasons = crm.expected + exports.expected, crm.decoys + exports.decoys, {**crm.reasons,
                                                                                            **exports.reasons}
    config = STORES_YAML
    if remote:  # the FTP drop and the mailbox, served by `pii.demo.remote.serve`
        from pii.demo import remote as demo_remote

        def expect(store, location, match, why, strength="strong"):
            e = ExpectedFinding(store, location, match, strength)
            expected.append(e)
            reasons[e.key] = why

        def decoy(store, location, what):
            decoys.append(Decoy(store, location, what))

        for sub in (demo_remote.FTP_DIR, demo_remote.MAILBOX_DIR):
            if (root / sub).exists():
                shutil.rmtree(root / sub)
        demo_remote.build_remote(root, expect, decoy)
        config += demo_remote.stores_yaml(ftp_port or demo_remote.DEFAULT_FTP_PORT,
                                          gmail_port or demo_remote.DEFAULT_GMAIL_PORT)
    flows = demo_flows.write_flow_data(root, remote=remote)  # special-flow data; none of it about her
    config += demo_flows.FLOWS_YAML + (demo_flows.FLOWS_YAML_REMOTE if remote else "")
    config_path.write_bytes(config.encode("utf-8"))

    return DemoWorld(
        root=root,
        config_path=config_path,
        crm_path=crm_path,
        exports_dir=exports_dir,
        subject={k: list(v) for k, v in DEMO_SUBJECT.items()},
        expected=expected,
        decoys=decoys,
        reasons=reasons,
        remote=remote,
        ftp_port=ftp_port,
        gmail_port=gmail_port,
        flows=flows,
    )
