"""A synthetic but realistic CRM (about 1.06M rows at scale 1.0) in one SQL database, for search benchmarks.

    from bench.crm_world import build, apply_indexes
    world = build("postgresql+psycopg2://postgres@127.0.0.1:5432/crmbench", scale=1.0, indexes="crm")
    apply_indexes(url, "none")          # switch index modes without rebuilding

Tables (prefixed, default ``crm_``; rows at scale 1.0): accounts 5,000, members 100,000, addresses
100,000, orders 250,000, order_items 400,000, interactions 150,000 (with a column named "from", a
reserved word), payments 55,000; plus ``crm_meta`` (one row: version, scale, seed, index mode and the
planted locations as JSON, so a later run can reuse the world).

The generator is deterministic (``random.Random(seed)``) and the same rows go to every dialect. It
plants one subject, Nora Quill (email nora.quill@crm-bench.test, UK phone 07700 900456), in a known set
of rows (her member row, address, orders, items, payments, an interaction, a payment whose reference is
her email, and mentions of her in other people's notes, message bodies, preferences JSON and a delivery
note), next to decoys (near-miss emails, phones and names) that must never match. `build` returns the
description of those rows: table names and primary keys only, never a value.

Index modes: ``none`` (primary keys only; MariaDB/InnoDB also keeps the indexes its foreign keys
require) and ``crm`` (what a real CRM has: see `index_specs`).

Bulk loading: PostgreSQL by COPY (psycopg2 ``copy_expert`` or psycopg 3 ``cursor.copy``), MariaDB by
LOAD DATA LOCAL INFILE (multi-row INSERTs when the server refuses it), SQLite by executemany in one
transaction.
"""
from __future__ import annotations

import datetime as dt
import io
import json
import os
import random
import tempfile
import time
import unicodedata
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.engine import make_url

WORLD_VERSION = 1
DEFAULT_SEED = 20261201
INDEX_MODES = ("none", "crm")

BASE_COUNTS = {"accounts": 5_000, "members": 100_000, "addresses": 100_000, "orders": 250_000,
               "order_items": 400_000, "interactions": 150_000, "payments": 55_000}
MIN_COUNTS = {"accounts": 20, "members": 200, "addresses": 200, "orders": 500, "order_items": 800,
              "interactions": 300, "payments": 120}
TABLE_ORDER = ("accounts", "members", "addresses", "orders", "order_items", "interactions", "payments")

# The planted subject (kept here so the bench and the generator agree; never printed by either).
SUBJECT = dict(names=["Nora Quill"], emails=["nora.quill@crm-bench.test"], phones=["07700 900456"])
_SUBJECT_NATIONAL = "7700900456"

# ---------------------------------------------------------------------------------------------- vocabulary
FIRST = ("Oliver George Harry Jack Jacob Noah Charlie Muhammad Thomas Oscar William James Leo Alfie Henry "
         "Joshua Freddie Archie Ethan Isaac Alexander Joseph Edward Samuel Max Daniel Arthur Lucas Mohammed "
         "Logan Olivia Amelia Isla Ava Emily Sophia Grace Mia Poppy Ella Lily Evie Isabella Sophie Ivy "
         "Freya Harper Willow Charlotte Jessica Daisy Florence Ruby Matilda Phoebe Chloe Alice Sienna "
         "Priya Aisha Fatima Zainab Wei Mei Hiroshi Yuki Dana Diana Daniela Siobhán Zoë José Renée Chloé "
         "Björn Søren Ana Mateo Lucía Élodie Nuala Ciarán Tomasz Agnieszka Kwame Ama Chidi Ngozi Eleanor "
         "Martha Imogen Rosa Hannah Laura Claire Fiona Gemma Rachel Megan Bethan Rhys Owain Callum Euan").split()
LAST = ("Smith Jones Williams Taylor Brown Davies Evans Wilson Thomas Johnson Roberts Robinson Thompson "
        "Wright Walker White Edwards Hughes Green Hall Lewis Harris Clarke Patel Jackson Wood Turner Martin "
        "Cooper Hill Ward Morris Moore Clark Lee King Baker Harrison Morgan Allen James Scott Phillips "
        "Watson Davis Parker Price Bennett Young Griffiths Mitchell Kelly Cook Carter Richardson Bailey "
        "Collins Bell Shaw Murphy Miller Cox Richards Khan Marshall Anderson Simpson Ellis Adams Singh "
        "Begum Wilkinson Foster Chapman Powell Webb Rogers Gray Mason Ali Hunt Hussain Campbell Matthews "
        "Owen Palmer Holmes Mills Barnes Knight Lloyd Butler Russell Barker Fisher Stevens Jenkins Murray "
        "Dixon Harvey Müller O'Brien Nowak García Nakamura Okafor Mensah Andersson Dubois Quigley Quinn").split()
DOMAINS = ("example.com", "mail.test", "example.org", "post.test", "inbox.test", "corp.example",
           "crm-bench.test")
STAFF = ("Sam Patel", "Ruth Okafor", "Ian Fletcher", "Megan Doyle", "Tariq Aziz", "Helen Marsh", "Owen Pryce",
         "Lucy Byrne", "Kofi Boateng", "Anna Kowalska", "Greg Hale", "Nina Rossi")
INDUSTRIES = ("Retail", "Education", "Healthcare", "Charity", "Hospitality", "Construction", "Finance",
              "Software", "Logistics", "Agriculture", "Media", "Public sector", "Manufacturing", "Legal")
COMPANY_WORDS = ("Northern", "Harbour", "Meadow", "Summit", "Riverside", "Oak", "Beacon", "Granite", "Willow",
                 "Kestrel", "Lantern", "Copper", "Orchard", "Pioneer", "Thistle", "Anchor")
COMPANY_KINDS = ("Ltd", "LLP", "Trust", "Group", "& Co", "Partners", "Cooperative", "Services Ltd")
STREETS = ("High", "Station", "Church", "Park", "Victoria", "Green", "Manor", "Kingsway", "Mill", "School",
           "Queen's", "North", "Albert", "Castle", "Bridge", "Chapel", "Elm", "Springfield", "Windsor", "York")
STREET_KINDS = ("Street", "Road", "Lane", "Avenue", "Close", "Drive", "Way", "Gardens", "Crescent", "Terrace")
CITIES = ("London", "Manchester", "Birmingham", "Leeds", "Glasgow", "Bristol", "Cardiff", "Edinburgh",
          "Liverpool", "Newcastle", "Sheffield", "Belfast", "Nottingham", "Leicester", "Brighton", "York",
          "Norwich", "Exeter", "Aberdeen", "Swansea", "Dublin", "Cork", "Lyon", "Berlin", "Utrecht")
COUNTRIES = ("GB",) * 16 + ("IE", "IE", "FR", "DE", "NL")
ORDER_STATUSES = ("placed", "paid", "picking", "shipped", "delivered", "delivered", "delivered", "returned",
                  "cancelled")
PAY_METHODS = ("card", "card", "card", "direct_debit", "paypal", "bank_transfer", "voucher")
CHANNELS = ("email", "email", "email", "phone", "chat", "letter")
MEMBER_STATUSES = ("active",) * 7 + ("lapsed", "lapsed", "closed")
ADJ = ("Blue", "Large", "Organic", "Classic", "Compact", "Deluxe", "Recycled", "Bamboo", "Steel", "Wool",
       "Travel", "Family", "Mini", "Heritage", "Eco")
NOUN = ("Widget", "Kettle", "Lamp", "Backpack", "Notebook", "Mug", "Scarf", "Planter", "Blanket", "Speaker",
        "Tote", "Umbrella", "Candle", "Cushion", "Bottle")
FEATURES = ("hand made", "imported", "best seller", "limited run", "machine washable", "dishwasher safe",
            "two-year warranty", "recyclable packaging", "gift wrapped", "members' edition")
PLANS = ("Standard", "Plus", "Family", "Student", "Patron")
MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December")

NOTE_TEMPLATES = (
    "Called about the {month} renewal; happy to stay on the {plan} plan.",
    "{agent} spoke to the member about order {order}. Refund of £{amount} agreed, reference {ref}.",
    "Member says her partner {name} may ring on {phone} about the joint membership.",
    "Prefers contact by email ({email}). Please do not call before 10am.",
    "Complained that the parcel was left with {name}; courier reference {ref}.",
    "Address change requested by phone; new postcode {postcode} confirmed by {agent}.",
    "Gift membership paid for by {name} ({email}).",
    "Asked to be removed from marketing; done by {agent}.",
    "Payment failed twice, card updated by the member. Nothing else to do.",
    "Requested large-print statements from {month} onwards.",
    "Upgrade to {plan} discussed; will decide after the {month} newsletter.",
    "Emergency contact updated to {name}, {phone}.",
    "Met {agent} at the open day, asked about volunteering.",
    "Duplicate record merged into this one by {agent}.",
)
SUBJECT_LINES = (
    "Renewal reminder", "Your order {order} has shipped", "Re: delivery problem", "Change of address",
    "Question about invoice {ref}", "Complaint", "Feedback on the {month} event", "Re: membership card",
    "Welcome to the {plan} plan", "Refund for order {order}", "Re: your enquiry", "Password reset",
)
BODY_TEMPLATES = (
    "Hello, my order {order} has not arrived yet. Could you check with the courier? Thanks.",
    "Hi, please update my address: the new postcode is {postcode}. Kind regards.",
    "Thanks for your help on the phone with {agent} today, all sorted now.",
    "I would like to renew on the {plan} plan from {month}. Please call me on {phone}.",
    "My friend {name} would like to join too; her email is {email}.",
    "The item in order {order} arrived damaged; photos attached. Reference {ref}.",
    "Please stop sending the paper newsletter, email is fine.",
    "Can I change the payment date to the 15th of each month?",
    "Our office manager {name} ({phone}) will handle the invoices from now on.",
    "Re: {month} event. We will be two people, one of us needs step-free access.",
    "Dear team, I was charged twice for order {order}; please refund one payment.",
)
DELIVERY_NOTES = (
    "Leave in the porch.", "Ring the bell twice, the dog barks but is friendly.",
    "Leave with {name} next door if out.", "Call {phone} on arrival.", "Side gate is unlocked.",
    "Deliver to reception and ask for {name}.", "Safe place: green bin by the garage.",
    "Flat 3, buzzer broken - please knock.", "Do not leave with neighbours.",
)

# ----------------------------------------------------------------------------- planted subject and decoys
NORA_MEMBER = ("Nora", "Quill", "Nora.Quill@CRM-Bench.test", "+44 7700 900456")
NORA_NOTES = "Prefers email contact. Renewed on the Plus plan in March."
NORA_PREFS = {"newsletter": True, "sms": False, "language": "en"}
NORA_ADDRESS = ("14 Lantern Close", "Bristol", "BS6 7QX", "GB")
NORA_INTERACTION = ("email", "nora.quill@crm-bench.test", "Re: membership card",
                    "Hello, my new membership card has not arrived. Could you send another one? Thanks, Nora")
NORA_PAY_IDENT_REF = "nora.quill@crm-bench.test"  # a payment whose reference column holds her email
MENTION_NOTES = "Member is away until June; if urgent call Nora on 07700 900 456 (her sister-in-law)."
MENTION_PREFS_CONTACT = {"name": "Nora", "phone": "07700900456"}
MENTION_BODY = ("Please also copy nora.quill@crm-bench.test on the renewal reminder, she pays for our "
                "family plan. Thanks.")
WEAK_DELIVERY_NOTE = "If nobody answers, leave with Nora Quill next door (number 16)."

DECOY_MEMBERS = (  # (first, last, email or None, phone or None): random values where None
    (None, None, "nora.quill@crm-bench.testing", None),
    (None, None, "nnora.quill@crm-bench.test", None),
    (None, None, "nora.quil@crm-bench.test", None),
    (None, None, None, "07700 900457"),
    (None, None, None, "07700 9004561"),
    ("Nora", "Quillan", None, None),
    ("Norah", "Quill", None, None),
)
DECOY_NOTES = ("Asked us to write to nora.quill@crm-bench.testing from now on.",
               "Ring Norah Quill on 07700 9004561 about the group booking.")
DECOY_PREFS_CONTACT = {"name": "Norah Quill", "phone": "07700 900457"}
DECOY_BODIES = ("Sent from nnora.quill@crm-bench.test: please confirm my booking for Saturday.",
                "Can you call Nora Quillan on 07700 900457 about the refund?")
DECOY_FROM = "nora.quil@crm-bench.test"
DECOY_DELIVERY = ("Call 07700 900457 on arrival.", "Leave with Nora Quillan at number 12.")
DECOY_PAY_REF = "nora.quill@crm-bench.testing"


# ---------------------------------------------------------------------------------------------- schema
def counts_for(scale: float) -> dict[str, int]:
    return {t: max(MIN_COUNTS[t], int(round(n * scale))) for t, n in BASE_COUNTS.items()}


def _json_type():
    return sa.JSON().with_variant(pg.JSONB(), "postgresql").with_variant(sa.Text(), "sqlite")


def make_metadata(prefix: str = "crm_") -> tuple[sa.MetaData, dict[str, sa.Table]]:
    md = sa.MetaData()
    p = prefix
    t = {}

    def pkcol():
        return sa.Column("id", sa.Integer, primary_key=True, autoincrement=False)

    t["accounts"] = sa.Table(
        f"{p}accounts", md, pkcol(), sa.Column("name", sa.String(120), nullable=False),
        sa.Column("industry", sa.String(40)), sa.Column("created", sa.Date))
    t["members"] = sa.Table(
        f"{p}members", md, pkcol(),
        sa.Column("account_id", sa.Integer, sa.ForeignKey(f"{p}accounts.id", name=f"fk_{p}members_account"),
                  nullable=False),
        sa.Column("first_name", sa.String(60)), sa.Column("last_name", sa.String(60)),
        sa.Column("email", sa.String(254)), sa.Column("phone", sa.String(32)),
        sa.Column("status", sa.String(12), nullable=False), sa.Column("joined", sa.Date),
        sa.Column("notes", sa.Text), sa.Column("preferences", _json_type()),
        sa.CheckConstraint("status IN ('active','lapsed','closed')", name=f"ck_{p}members_status"))
    t["addresses"] = sa.Table(
        f"{p}addresses", md, pkcol(),
        sa.Column("member_id", sa.Integer, sa.ForeignKey(f"{p}members.id", name=f"fk_{p}addresses_member"),
                  nullable=False),
        sa.Column("line1", sa.String(200)), sa.Column("city", sa.String(80)),
        sa.Column("postcode", sa.String(12)), sa.Column("country", sa.CHAR(2)))
    t["orders"] = sa.Table(
        f"{p}orders", md, pkcol(),
        sa.Column("member_id", sa.Integer, sa.ForeignKey(f"{p}members.id", name=f"fk_{p}orders_member"),
                  nullable=False),
        sa.Column("placed", sa.Date), sa.Column("status", sa.String(16)),
        sa.Column("total", sa.Numeric(10, 2)), sa.Column("delivery_note", sa.String(400)))
    t["order_items"] = sa.Table(
        f"{p}order_items", md, pkcol(),
        sa.Column("order_id", sa.Integer, sa.ForeignKey(f"{p}orders.id", name=f"fk_{p}order_items_order"),
                  nullable=False),
        sa.Column("sku", sa.String(24)), sa.Column("description", sa.String(200)),
        sa.Column("qty", sa.Integer), sa.Column("price", sa.Numeric(10, 2)))
    t["interactions"] = sa.Table(
        f"{p}interactions", md, pkcol(),
        sa.Column("member_id", sa.Integer,
                  sa.ForeignKey(f"{p}members.id", name=f"fk_{p}interactions_member"), nullable=False),
        sa.Column("channel", sa.String(12)), sa.Column("from", sa.String(254)),
        sa.Column("subject", sa.String(200)), sa.Column("body", sa.Text), sa.Column("at", sa.DateTime))
    t["payments"] = sa.Table(
        f"{p}payments", md, pkcol(),
        sa.Column("order_id", sa.Integer, sa.ForeignKey(f"{p}orders.id", name=f"fk_{p}payments_order"),
                  nullable=False),
        sa.Column("method", sa.String(16)), sa.Column("reference", sa.String(64)),
        sa.Column("amount", sa.Numeric(10, 2)))
    t["meta"] = sa.Table(
        f"{p}meta", md, sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("version", sa.Integer), sa.Column("scale", sa.Float), sa.Column("seed", sa.Integer),
        sa.Column("indexes", sa.String(16)), sa.Column("built_at", sa.String(32)),
        sa.Column("world", sa.Text))
    return md, t


def text_columns(table: sa.Table) -> list[str]:
    """The string-valued columns of a table (JSON included): what a scan for a substring must read."""
    out = []
    for c in table.columns:
        if isinstance(c.type, (sa.String, sa.Text, sa.JSON)) or isinstance(c.type, sa.types.TypeDecorator):
            out.append(c.name)
    return out


# ---------------------------------------------------------------------------------------------- generator
def _ascii(s: str) -> str:
    return unicodedata.normalize("NFKD", s).encode("ascii", "ignore").decode().lower().replace("'", "")


class _Gen:
    def __init__(self, seed: int):
        self.r = random.Random(seed)
        r = self.r
        self.rand = r.random
        self.rr = r.randrange
        self.ch = r.choice
        self.ascii_first = {f: _ascii(f) for f in FIRST}
        self.ascii_last = {x: _ascii(x) for x in LAST}
        start = dt.date(2018, 1, 1)
        self.dates = [(start + dt.timedelta(days=i)).isoformat() for i in range(3200)]

    def name(self) -> tuple[str, str]:
        return self.ch(FIRST), self.ch(LAST)

    def full_name(self) -> str:
        return f"{self.ch(FIRST)} {self.ch(LAST)}"

    def phone(self) -> str:
        while True:
            national = "7" + str(self.rr(100000000, 1000000000))
            if national != _SUBJECT_NATIONAL:
                break
        style = self.rr(5)
        if style == 0:
            return f"0{national[:4]} {national[4:]}"
        if style == 1:
            return f"+44 {national[:4]} {national[4:]}"
        if style == 2:
            return f"0{national}"
        if style == 3:
            return f"+44{national}"
        return f"0{national[:4]} {national[4:7]} {national[7:]}"

    def email(self, first: str, last: str, tag=None) -> str:
        if tag is None:
            tag = self.rr(1, 10 ** 5)
        style = self.rr(3)
        f, l = self.ascii_first[first], self.ascii_last[last]
        user = f"{f}.{l}{tag}" if style == 0 else (f"{f[0]}{l}{tag}" if style == 1 else f"{f}{tag}.{l}")
        return f"{user}@{self.ch(DOMAINS)}"

    def date(self) -> str:
        return self.ch(self.dates)

    def timestamp(self) -> str:
        return f"{self.ch(self.dates)} {self.rr(7, 22):02d}:{self.rr(60):02d}:{self.rr(60):02d}"

    def postcode(self) -> str:
        rr, ch = self.rr, self.ch
        return (f"{ch('ABCEGHLMNSW')}{ch('ABDEHLMNRSW')}{rr(1, 20)} "
                f"{rr(1, 10)}{ch('ABDEFGHJLNPQRSTUWXYZ')}{ch('ABDEFGHJLNPQRSTUWXYZ')}")

    def money(self, lo: int, hi: int) -> str:
        p = self.rr(lo, hi)
        return f"{p // 100}.{p % 100:02d}"

    def fill(self, template: str, n_orders: int) -> str:
        if "{" not in template:
            return template
        f, l = self.name()
        return template.format(
            agent=self.ch(STAFF), name=f"{f} {l}", email=self.email(f, l), phone=self.phone(),
            order=f"ORD-{self.rr(1, n_orders + 1):07d}", ref=f"RF{self.rr(10 ** 6, 10 ** 7)}",
            amount=self.money(500, 20000), postcode=self.postcode(), month=self.ch(MONTHS), plan=self.ch(PLANS))

    def code(self, n: int) -> str:
        return "".join(self.r.choices("ABCDEFGHJKLMNPQRSTUVWXYZ23456789", k=n))


def _sample_distinct(r: random.Random, n: int, k: int) -> list[int]:
    return r.sample(range(1, n + 1), k)


def generate(scale: float = 1.0, seed: int = DEFAULT_SEED):
    """Yield (table key, rows iterator) in foreign-key order; after the last table is exhausted,
    `state["world"]` holds the description of planted rows, decoys and spill-over."""
    g = _Gen(seed)
    r, rr, rand, ch = g.r, g.rr, g.rand, g.ch
    n = counts_for(scale)
    na, nm, no, ni, nx, npay = (n["accounts"], n["members"], n["orders"], n["order_items"], n["interactions"],
                                n["payments"])

    # ---- where things go
    special_members = _sample_distinct(r, nm, 1 + 2 + len(DECOY_MEMBERS) + len(DECOY_NOTES) + 1)
    nora = special_members[0]
    m_notes, m_prefs = special_members[1:3]
    decoy_members = dict(zip(special_members[3:3 + len(DECOY_MEMBERS)], DECOY_MEMBERS))
    rest = special_members[3 + len(DECOY_MEMBERS):]
    decoy_note_members = dict(zip(rest[:len(DECOY_NOTES)], DECOY_NOTES))
    decoy_prefs_member = rest[len(DECOY_NOTES)]
    special_orders = _sample_distinct(r, no, 3 + 1 + len(DECOY_DELIVERY) + 1)
    nora_orders = sorted(special_orders[:3])
    weak_order = special_orders[3]
    decoy_delivery = dict(zip(special_orders[4:4 + len(DECOY_DELIVERY)], DECOY_DELIVERY))
    pay_ident_order = special_orders[-1]  # someone else's order that Nora paid for (reference = her email)
    nora_order_set = set(nora_orders)
    item_ids = _sample_distinct(r, ni, 2 * len(nora_orders))
    nora_items = {iid: nora_orders[k // 2] for k, iid in enumerate(item_ids)}
    special_pay = _sample_distinct(r, npay, 3 + 1 + 1)
    nora_payments = dict(zip(special_pay[:3], nora_orders))
    pay_ident = special_pay[3]
    decoy_pay = special_pay[4]
    special_ix = _sample_distinct(r, nx, 1 + 1 + len(DECOY_BODIES) + 1)
    nora_ix = special_ix[0]
    mention_ix = special_ix[1]
    decoy_ix_bodies = dict(zip(special_ix[2:2 + len(DECOY_BODIES)], DECOY_BODIES))
    decoy_ix_from = special_ix[-1]

    expected: dict[str, dict[int, str]] = {t: {} for t in TABLE_ORDER}
    decoys: dict[str, list[int]] = {t: [] for t in TABLE_ORDER}
    spill: dict[str, list[int]] = {t: [] for t in TABLE_ORDER}
    expected["members"][nora] = "identifier"
    expected["members"][m_notes] = "text"
    expected["members"][m_prefs] = "text"
    expected["addresses"][nora] = "linked"  # address i belongs to member i
    for o in nora_orders:
        expected["orders"][o] = "linked"
    expected["orders"][weak_order] = "weak"
    for i in nora_items:
        expected["order_items"][i] = "linked"
    for p in nora_payments:
        expected["payments"][p] = "linked"
    expected["payments"][pay_ident] = "identifier"
    expected["interactions"][nora_ix] = "identifier"
    expected["interactions"][mention_ix] = "text"
    decoys["members"] += sorted(list(decoy_members) + list(decoy_note_members) + [decoy_prefs_member])
    decoys["orders"] += sorted(decoy_delivery)
    decoys["payments"].append(decoy_pay)
    decoys["interactions"] += sorted(list(decoy_ix_bodies) + [decoy_ix_from])
    # rows a tool reaches by following foreign keys from OTHER people's rows that mention Nora:
    # not hers (counted as unexpected when reported), listed so the bench can say why they showed up.
    spill_members = {m_notes, m_prefs}
    spill_orders: set[int] = {weak_order}

    def other_member() -> int:
        while True:
            m = rr(1, nm + 1)
            if m != nora:
                return m

    def other_order() -> int:
        while True:
            o = rr(1, no + 1)
            if o not in nora_order_set:
                return o

    member_email: list[str | None] = [None] * (nm + 1)
    member_phone: list[str | None] = [None] * (nm + 1)
    order_member = [0] * (no + 1)

    def accounts():
        for i in range(1, na + 1):
            style = rr(3)
            if style == 0:
                name = f"{ch(LAST)} & {ch(LAST)} {ch(COMPANY_KINDS)}"
            elif style == 1:
                name = f"{ch(COMPANY_WORDS)} {ch(NOUN)}s {ch(COMPANY_KINDS)}"
            else:
                name = f"{ch(COMPANY_WORDS)} {ch(INDUSTRIES)} {ch(COMPANY_KINDS)}"
            yield (i, name, ch(INDUSTRIES), g.date())

    def prefs(contact=None) -> str:
        d = {"newsletter": rand() < 0.6, "sms": rand() < 0.3, "language": ch(("en", "en", "en", "cy", "fr"))}
        if contact is not None:
            d["emergency_contact"] = contact
        elif rand() < 0.3:
            d["emergency_contact"] = {"name": g.full_name(), "phone": g.phone()}
        return json.dumps(d, ensure_ascii=False)

    def members():
        for i in range(1, nm + 1):
            acct = rr(1, na + 1)
            status = ch(MEMBER_STATUSES)
            joined = g.date()
            if i == nora:
                f, l, e, p = NORA_MEMBER
                row = (i, acct, f, l, e, p, "active", "2021-04-09", NORA_NOTES, json.dumps(NORA_PREFS))
            else:
                f, l = g.name()
                e, p = g.email(f, l, i), g.phone()
                if i in decoy_members:
                    df, dl, de, dp = decoy_members[i]
                    f, l, e, p = df or f, dl or l, de or e, dp or p
                if i == m_notes:
                    note = MENTION_NOTES
                elif i in decoy_note_members:
                    note = decoy_note_members[i]
                else:
                    note = g.fill(ch(NOTE_TEMPLATES), no) if rand() < 0.5 else None
                pref = prefs(MENTION_PREFS_CONTACT if i == m_prefs else
                             DECOY_PREFS_CONTACT if i == decoy_prefs_member else None)
                row = (i, acct, f, l, e, p, status, joined, note, pref)
            member_email[i], member_phone[i] = row[4], row[5]
            yield row

    def addresses():
        for i in range(1, nm + 1):
            if i == nora:
                yield (i, i) + NORA_ADDRESS
                continue
            if i in spill_members:
                spill["addresses"].append(i)
            flat = f"Flat {rr(1, 30)}, " if rand() < 0.15 else ""
            yield (i, i, f"{flat}{rr(1, 250)} {ch(STREETS)} {ch(STREET_KINDS)}", ch(CITIES), g.postcode(),
                   ch(COUNTRIES))

    def orders():
        for i in range(1, no + 1):
            member = nora if i in nora_order_set else other_member()
            order_member[i] = member
            if member in spill_members:
                spill_orders.add(i)
                spill["orders"].append(i)
            if i == weak_order:
                note = WEAK_DELIVERY_NOTE
            elif i in decoy_delivery:
                note = decoy_delivery[i]
            elif member != nora and rand() < 0.12:
                note = g.fill(ch(DELIVERY_NOTES), no)
            else:
                note = None
            yield (i, member, g.date(), ch(ORDER_STATUSES), g.money(300, 40000), note)

    catalog = []
    for k in range(1, 2001):
        title = f"{ch(ADJ)} {ch(NOUN)} {rr(100, 999)}"
        catalog.append((f"SKU-{k:05d}-{ch(('S', 'M', 'L', 'XL', 'OS'))}",
                        f"{title}: {ch(FEATURES)}, {ch(FEATURES)}", g.money(199, 9999)))

    def order_items():
        for i in range(1, ni + 1):
            oid = nora_items.get(i) or other_order()
            if oid in spill_orders:
                spill["order_items"].append(i)
            sku, desc, price = ch(catalog)
            yield (i, oid, sku, desc, 1 + (rr(10) // 7), price)

    def interactions():
        for i in range(1, nx + 1):
            if i == nora_ix:
                c, frm, subj, body = NORA_INTERACTION
                yield (i, nora, c, frm, subj, body, "2025-02-11 09:42:10")
                continue
            member = other_member()
            if member in spill_members:
                spill["interactions"].append(i)
            channel = ch(CHANNELS)
            if channel == "email":
                frm = member_email[member] if rand() < 0.7 else "support@crm-bench.example"
            elif channel == "phone":
                frm = member_phone[member]
            elif channel == "chat":
                frm = f"chat:{g.code(8)}"
            else:
                frm = "post"
            if i == decoy_ix_from:
                channel, frm = "email", DECOY_FROM
            subj = g.fill(ch(SUBJECT_LINES), no)
            if i == mention_ix:
                body = MENTION_BODY
            elif i in decoy_ix_bodies:
                body = decoy_ix_bodies[i]
            else:
                body = g.fill(ch(BODY_TEMPLATES), no)
            yield (i, member, channel, frm, subj, body, g.timestamp())

    def payments():
        for i in range(1, npay + 1):
            if i in nora_payments:
                oid = nora_payments[i]
            elif i == pay_ident:
                oid = pay_ident_order
            else:
                oid = other_order()
            if oid in spill_orders and i != pay_ident:
                spill["payments"].append(i)
            if i == pay_ident:
                ref = NORA_PAY_IDENT_REF
            elif i == decoy_pay:
                ref = DECOY_PAY_REF
            else:
                ref = f"PAY-{g.code(10)}" if rand() < 0.9 else f"DD{rr(10 ** 7, 10 ** 8)}"
            yield (i, oid, ch(PAY_METHODS), ref, g.money(300, 40000))

    state: dict = {}
    for key, fn in (("accounts", accounts), ("members", members), ("addresses", addresses),
                    ("orders", orders), ("order_items", order_items), ("interactions", interactions),
                    ("payments", payments)):
        yield key, fn()
    state["world"] = {
        "version": WORLD_VERSION, "scale": scale, "seed": seed, "counts": n,
        "expected": {t: sorted([pk, kind] for pk, kind in d.items()) for t, d in expected.items() if d},
        "decoys": {t: v for t, v in decoys.items() if v},
        "spill": {t: sorted(set(v) - set(expected[t])) for t, v in spill.items() if v},
    }
    generate.last_world = state["world"]


# ---------------------------------------------------------------------------------------------- loading
def _engine(url: str) -> sa.Engine:
    u = make_url(url)
    kwargs = {}
    if u.get_backend_name() in ("mysql", "mariadb"):
        if u.drivername in ("mysql", "mariadb"):
            u = u.set(drivername="mysql+pymysql")
        if u.drivername.endswith("pymysql"):
            kwargs["connect_args"] = {"local_infile": True}
        if "charset" not in u.query:
            u = u.update_query_dict({"charset": "utf8mb4"})
    elif u.get_backend_name() == "postgresql" and u.drivername == "postgresql":
        u = u.set(drivername="postgresql+psycopg2")
    return sa.create_engine(u, **kwargs)


def _q(dialect: str, name: str) -> str:
    return f"`{name}`" if dialect in ("mysql", "mariadb") else f'"{name}"'


_ESC = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _tsv(rows, chunk: int = 50_000):
    """Yield text chunks of COPY/LOAD DATA text format (tab separated, \\N for NULL)."""
    buf = []
    for row in rows:
        buf.append("\t".join("\\N" if v is None else (v.translate(_ESC) if type(v) is str else str(v))
                             for v in row))
        if len(buf) >= chunk:
            yield "\n".join(buf) + "\n"
            buf = []
    if buf:
        yield "\n".join(buf) + "\n"


def _load_postgresql(raw, table: sa.Table, rows) -> None:
    cols = ", ".join(_q("postgresql", c.name) for c in table.columns)
    sql = f"COPY {_q('postgresql', table.name)} ({cols}) FROM STDIN"
    cur = raw.cursor()
    if hasattr(cur, "copy_expert"):  # psycopg2
        for text in _tsv(rows):
            cur.copy_expert(sql, io.StringIO(text))
    else:  # psycopg 3
        with cur.copy(sql) as cp:
            for text in _tsv(rows):
                cp.write(text)
    cur.close()


def _load_mysql(raw, table: sa.Table, rows, state: dict) -> None:
    cols = ", ".join(_q("mysql", c.name) for c in table.columns)
    cur = raw.cursor()
    if state.get("infile", True):
        fd, path = tempfile.mkstemp(prefix="crm_", suffix=".tsv")
        try:
            with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
                for text in _tsv(rows):
                    fh.write(text)
            try:
                cur.execute(f"LOAD DATA LOCAL INFILE %s INTO TABLE {_q('mysql', table.name)} CHARACTER SET utf8mb4 "
                            f"FIELDS TERMINATED BY '\\t' ESCAPED BY '\\\\' LINES TERMINATED BY '\\n' ({cols})",
                            (path,))
                cur.close()
                return
            except Exception as exc:  # server or client refuses LOCAL INFILE: fall back to INSERTs
                state["infile"] = False
                state["infile_error"] = type(exc).__name__
                with open(path, encoding="utf-8") as fh:
                    rows = [tuple(None if v == "\\N" else v for v in line.rstrip("\n").split("\t")) for line in fh]
        finally:
            os.unlink(path)
    marks = ", ".join(["%s"] * len(table.columns))
    sql = f"INSERT INTO {_q('mysql', table.name)} ({cols}) VALUES ({marks})"
    batch = []
    for row in rows:
        batch.append(row)
        if len(batch) >= 5_000:
            cur.executemany(sql, batch)
            batch = []
    if batch:
        cur.executemany(sql, batch)
    cur.close()


def _load_sqlite(raw, table: sa.Table, rows) -> None:
    marks = ", ".join("?" * len(table.columns))
    raw.cursor().executemany(f"INSERT INTO {_q('sqlite', table.name)} VALUES ({marks})", rows)


def _drop_existing(engine: sa.Engine, md: sa.MetaData, prefix: str) -> None:
    dialect = engine.dialect.name
    if dialect == "sqlite":
        path = make_url(str(engine.url)).database
        if path and path != ":memory:" and Path(path).exists():
            names = sa.inspect(engine).get_table_names()
            if all(n.startswith(prefix) for n in names):  # a file of ours only: start afresh (no VACUUM)
                engine.dispose()
                for suffix in ("", "-wal", "-shm", "-journal"):
                    Path(path + suffix).unlink(missing_ok=True)
                return
    with engine.begin() as conn:
        if dialect == "postgresql":
            for t in reversed(md.sorted_tables):
                conn.execute(sa.text(f"DROP TABLE IF EXISTS {_q(dialect, t.name)} CASCADE"))
        elif dialect in ("mysql", "mariadb"):
            conn.execute(sa.text("SET FOREIGN_KEY_CHECKS = 0"))
            for t in reversed(md.sorted_tables):
                conn.execute(sa.text(f"DROP TABLE IF EXISTS {_q(dialect, t.name)}"))
            conn.execute(sa.text("SET FOREIGN_KEY_CHECKS = 1"))
        else:
            md.drop_all(conn, checkfirst=True)


def build(url: str, scale: float = 1.0, indexes: str = "none", schema_prefix: str = "crm_",
          seed: int = DEFAULT_SEED) -> dict:
    """Drop and recreate the CRM tables at `url`, load them, apply `indexes`, ANALYZE. Returns the world:
    {"version", "scale", "seed", "counts", "rows", "expected": {table: [[pk, kind], ...]} with kind
    identifier|linked|text|weak, "decoys": {table: [pk]}, "spill": {table: [pk]}, "timings": {...}}.
    Table keys in expected/decoys/spill are the real (prefixed) table names."""
    if indexes not in INDEX_MODES:
        raise ValueError(f"indexes must be one of {INDEX_MODES}")
    md, tables = make_metadata(schema_prefix)
    engine = _engine(url)
    dialect = engine.dialect.name
    timings = {}
    t0 = time.perf_counter()
    _drop_existing(engine, md, schema_prefix)
    engine = _engine(url)
    if dialect in ("mysql", "mariadb"):
        with engine.begin() as conn:
            conn.execute(sa.text("SET FOREIGN_KEY_CHECKS = 0"))
            md.create_all(conn)
    else:
        md.create_all(engine)
    raw = engine.raw_connection()
    state: dict = {}
    try:
        cur = raw.cursor()
        if dialect == "postgresql":
            cur.execute("SET session_replication_role = replica")  # no FK triggers: rows are consistent
            cur.execute("SET synchronous_commit = off")
        elif dialect in ("mysql", "mariadb"):
            cur.execute("SET FOREIGN_KEY_CHECKS = 0")
            cur.execute("SET UNIQUE_CHECKS = 0")
        else:
            cur.execute("PRAGMA journal_mode = OFF")
            cur.execute("PRAGMA synchronous = OFF")
            cur.execute("PRAGMA cache_size = -200000")
        cur.close()
        for key, rows in generate(scale, seed):
            t = time.perf_counter()
            if dialect == "postgresql":
                _load_postgresql(raw, tables[key], rows)
            elif dialect in ("mysql", "mariadb"):
                _load_mysql(raw, tables[key], rows, state)
            else:
                _load_sqlite(raw, tables[key], rows)
            if dialect != "sqlite":
                raw.commit()
            timings[f"load_{key}"] = round(time.perf_counter() - t, 2)
        raw.commit()
        if dialect == "postgresql":
            cur = raw.cursor()
            cur.execute("SET session_replication_role = origin")
            cur.close()
    finally:
        raw.close()
    world = dict(generate.last_world)
    world["timings"] = timings
    timings["generate_and_load"] = round(time.perf_counter() - t0, 2)
    if state.get("infile") is False:
        world["mariadb_load"] = f"INSERT fallback ({state.get('infile_error')})"
    p = schema_prefix
    world["expected"] = {p + t: v for t, v in world["expected"].items()}
    world["decoys"] = {p + t: v for t, v in world["decoys"].items()}
    world["spill"] = {p + t: v for t, v in world["spill"].items()}
    world["rows"] = sum(world["counts"].values())
    world["prefix"] = p
    with engine.begin() as conn:
        conn.execute(tables["meta"].insert().values(
            id=1, version=WORLD_VERSION, scale=scale, seed=seed, indexes="none",
            built_at=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), world=json.dumps(world)))
    engine.dispose()
    t = time.perf_counter()
    apply_indexes(url, indexes, schema_prefix)
    timings["indexes_and_analyze"] = round(time.perf_counter() - t, 2)
    timings["total"] = round(time.perf_counter() - t0, 2)
    world["indexes"] = indexes
    return world


def read_meta(url: str, prefix: str = "crm_") -> dict | None:
    """The crm_meta row ({"version", "scale", "seed", "indexes", "world"}), or None when absent."""
    engine = _engine(url)
    try:
        if not sa.inspect(engine).has_table(f"{prefix}meta"):
            return None
        _, tables = make_metadata(prefix)
        with engine.connect() as conn:
            row = conn.execute(sa.select(tables["meta"]).where(tables["meta"].c.id == 1)).mappings().first()
        if row is None:
            return None
        out = dict(row)
        out["world"] = json.loads(out["world"]) if out.get("world") else None
        return out
    finally:
        engine.dispose()


# ---------------------------------------------------------------------------------------------- indexes
def index_specs(dialect: str, prefix: str = "crm_") -> list[tuple[str, str, str]]:
    """(index name, table, column list or expression SQL) for the "crm" mode. FULLTEXT/GIN marked in the
    expression by the caller's dialect-specific DDL (see apply_indexes)."""
    p = prefix
    my = dialect in ("mysql", "mariadb")
    q = (lambda c: f"`{c}`") if my else (lambda c: f'"{c}"')
    low = (lambda c: f"(lower({q(c)}))") if dialect == "postgresql" else q
    specs = [
        ("members_email", "members", low("email")), ("members_phone", "members", q("phone")),
        ("members_last_name", "members", low("last_name")),
        ("addresses_postcode", "addresses", q("postcode")), ("addresses_city", "addresses", q("city")),
        ("members_account_id", "members", q("account_id")), ("addresses_member_id", "addresses", q("member_id")),
        ("orders_member_id", "orders", q("member_id")), ("order_items_order_id", "order_items", q("order_id")),
        ("interactions_member_id", "interactions", q("member_id")), ("payments_order_id", "payments", q("order_id")),
        ("orders_status", "orders", q("status")), ("order_items_sku", "order_items", q("sku")),
        ("interactions_from", "interactions", low("from")), ("payments_reference", "payments", q("reference")),
        ("accounts_name", "accounts", q("name")),
    ]
    if my:  # InnoDB already keeps an index per foreign key (and refuses to drop a replacement later)
        specs = [s for s in specs if not s[0].endswith("_id")]
    out = [(f"ix_{p}{n}", f"{p}{t}", f"BTREE {cols}") for n, t, cols in specs]
    if dialect == "postgresql":
        for n, t, expr in (("members_notes", "members", '"notes"'),
                           ("orders_delivery_note", "orders", '"delivery_note"'),
                           ("order_items_description", "order_items", '"description"'),
                           ("interactions_subject", "interactions", '"subject"'),
                           ("interactions_body", "interactions", '"body"'),
                           ("addresses_line1", "addresses", '"line1"'),
                           ("members_preferences", "members", '("preferences"::text)')):
            out.append((f"ix_{p}{n}_trgm", f"{p}{t}", f"GIN {expr}"))
    elif my:
        for n, t, col in (("members_notes", "members", "notes"), ("interactions_body", "interactions", "body"),
                          ("interactions_subject", "interactions", "subject"),
                          ("order_items_description", "order_items", "description"),
                          ("orders_delivery_note", "orders", "delivery_note")):
            out.append((f"ix_{p}{n}_ft", f"{p}{t}", f"FULLTEXT `{col}`"))
    return out


def _existing_indexes(conn, dialect: str, prefix: str) -> list[tuple[str, str]]:
    like = f"ix_{prefix}%"
    if dialect == "postgresql":
        rows = conn.execute(sa.text("SELECT indexname, tablename FROM pg_indexes WHERE schemaname = current_schema() "
                                    "AND indexname LIKE :p"), {"p": like}).all()
    elif dialect in ("mysql", "mariadb"):
        rows = conn.execute(sa.text("SELECT DISTINCT index_name, table_name FROM information_schema.statistics "
                                    "WHERE table_schema = DATABASE() AND index_name LIKE :p"), {"p": like}).all()
    else:
        rows = conn.execute(sa.text("SELECT name, tbl_name FROM sqlite_master WHERE type = 'index' AND name LIKE :p"),
                            {"p": like}).all()
    return [(a, b) for a, b in rows if a.startswith(f"ix_{prefix}")]


def apply_indexes(url: str, mode: str, prefix: str = "crm_") -> dict:
    """Put the tables in index mode `mode` ("none" or "crm"): drop our secondary indexes (named
    ix_<prefix>...) not in the mode, create the missing ones, ANALYZE. Returns {"seconds", "created",
    "dropped"}."""
    if mode not in INDEX_MODES:
        raise ValueError(f"indexes must be one of {INDEX_MODES}")
    engine = _engine(url)
    dialect = engine.dialect.name
    started = time.perf_counter()
    wanted = index_specs(dialect, prefix) if mode == "crm" else []
    wanted_names = {n for n, _t, _c in wanted}
    created, dropped = [], []
    md, tables = make_metadata(prefix)
    with engine.connect() as conn:
        conn = conn.execution_options(isolation_level="AUTOCOMMIT")
        existing = dict(_existing_indexes(conn, dialect, prefix))
        for name, table in existing.items():
            if name in wanted_names:
                continue
            if dialect in ("mysql", "mariadb"):
                conn.execute(sa.text(f"DROP INDEX `{name}` ON `{table}`"))
            else:
                conn.execute(sa.text(f'DROP INDEX IF EXISTS "{name}"'))
            dropped.append(name)
        if dialect == "postgresql" and any(c.startswith("GIN") for _n, _t, c in wanted):
            conn.execute(sa.text("CREATE EXTENSION IF NOT EXISTS pg_trgm"))
            conn.execute(sa.text("SET maintenance_work_mem = '512MB'"))
        for name, table, spec in wanted:
            if name in existing:
                continue
            kind, cols = spec.split(" ", 1)
            if dialect == "postgresql":
                if kind == "GIN":
                    sql = f'CREATE INDEX "{name}" ON "{table}" USING gin ({cols} gin_trgm_ops)'
                else:
                    sql = f'CREATE INDEX "{name}" ON "{table}" ({cols})'
            elif dialect in ("mysql", "mariadb"):
                if kind == "FULLTEXT":
                    sql = f"CREATE FULLTEXT INDEX `{name}` ON `{table}` ({cols})"
                else:
                    sql = f"CREATE INDEX `{name}` ON `{table}` ({cols})"
            else:
                sql = f'CREATE INDEX "{name}" ON "{table}" ({cols})'
            conn.execute(sa.text(sql))
            created.append(name)
        names = [tables[k].name for k in TABLE_ORDER]
        if dialect == "postgresql":
            for n in names:
                conn.execute(sa.text(f'ANALYZE "{n}"'))
        elif dialect in ("mysql", "mariadb"):
            conn.execute(sa.text("ANALYZE TABLE " + ", ".join(f"`{n}`" for n in names))).all()
        else:
            conn.execute(sa.text("ANALYZE"))
        if sa.inspect(conn).has_table(tables["meta"].name):
            conn.execute(tables["meta"].update().where(tables["meta"].c.id == 1).values(indexes=mode))
    engine.dispose()
    return {"seconds": round(time.perf_counter() - started, 2), "created": created, "dropped": dropped}


if __name__ == "__main__":
    import argparse
    ap = argparse.ArgumentParser(description="build the synthetic CRM")
    ap.add_argument("url")
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--indexes", choices=INDEX_MODES, default="none")
    a = ap.parse_args()
    w = build(a.url, a.scale, a.indexes)
    print(json.dumps({"rows": w["rows"], "timings": w["timings"]}, indent=1))
