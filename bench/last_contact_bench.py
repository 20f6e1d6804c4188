"""Retention-by-last-contact benchmark: which of >=300,000 people expired, five years after their last contact.

    .venv/bin/python bench/last_contact_bench.py --db all --people 300000      # add --reuse to keep the world

The world (per database; SQLite file bench/out/lastcontact.sqlite, database `lcbench` on PostgreSQL and
MariaDB): `lc_customers` (--people rows: e-mail, phone, segment, `last_login` DATETIME), `lc_orders` (about
3 per person, `ordered_at` DATETIME, foreign key indexed), `lc_tickets` (about 1 per person, `opened_at`
as ISO text, foreign key indexed) and a CSV export `newsletter.csv` of mailings sent (e-mail, `sent_at`):
a contact in another store, matched by e-mail. The rule (pii.core.retention) keeps customers five years
after their latest contact over `last_login`, orders, tickets and the newsletter.

Measured, each best of 3 after one warm-up:
a) the floor, in the same run: what any correct answer must read: one grouped `MAX` per typed linked
   table, one pass over the text-dated table's (key, date), and the person table read once (all rows
   fetched, nothing computed);
b) Lethe: `pii.engine.lastcontact.recent_contacts` over the CSV export, then the SQL connector's
   `select` of the rule's filter (people only; then again following foreign keys to their rows);
c) correctness: the selected people equal the expired set computed from the generated data.
Output: counts and seconds, never a value. Exit 1 when a selection differs from the expected set.
"""
from __future__ import annotations

import argparse
import csv
import datetime as dt
import random
import sys
import time
from pathlib import Path

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from pii.core.config import parse_config  # noqa: E402
from pii.core.retention import parse_schedule  # noqa: E402

RUN_DATE = dt.date(2026, 12, 3)
OUT = ROOT / "bench" / "out"
URLS = {"sqlite": f"sqlite:///{OUT / 'lastcontact.sqlite'}",
        "postgresql": "postgresql+psycopg://postgres@127.0.0.1:5432/lcbench",
        "mariadb": "mysql+pymysql://root@127.0.0.1:3306/lcbench"}
SEED = 20261203


def say(msg: str) -> None:
    print(msg, flush=True)


def _when(r: random.Random) -> dt.datetime:
    """A contact time between 2012 and the run date, more of them recent."""
    days = int((RUN_DATE - dt.date(2012, 1, 1)).days * (r.random() ** 0.7))
    return dt.datetime.combine(RUN_DATE - dt.timedelta(days=days), dt.time(r.randrange(24), r.randrange(60)))


def generate(people: int):
    r = random.Random(SEED)
    customers, orders, tickets, letters = [], [], [], []
    for i in range(1, people + 1):
        login = _when(r) if r.random() < 0.7 else None
        customers.append({"id": i, "email": f"c{i}@lc-bench.test", "phone": f"+4477009{i:05d}"[:13],
                          "segment": "retail" if r.random() < 0.9 else "trade", "last_login": login})
        for _ in range(r.choice((0, 1, 2, 3, 4, 5, 6))):
            orders.append({"id": len(orders) + 1, "customer_id": i, "ordered_at": _when(r)})
        if r.random() < 0.8:
            tickets.append({"id": len(tickets) + 1, "customer_id": i, "opened_at": _when(r).isoformat()})
        if r.random() < 0.15:
            letters.append({"email": f"c{i}@lc-bench.test", "sent_at": _when(r).date().isoformat()})
    return customers, orders, tickets, letters


def expected_expired(customers, orders, tickets, letters, cutoff: dt.date) -> set[int]:
    latest: dict[int, dt.date] = {}

    def see(cid, day):
        if day is not None and (cid not in latest or day > latest[cid]):
            latest[cid] = day

    for c in customers:
        see(c["id"], c["last_login"].date() if c["last_login"] else None)
    for o in orders:
        see(o["customer_id"], o["ordered_at"].date())
    for t in tickets:
        see(t["customer_id"], dt.datetime.fromisoformat(t["opened_at"]).date())
    recent = {row["email"] for row in letters if dt.date.fromisoformat(row["sent_at"]) >= cutoff}
    return {c["id"] for c in customers if c["segment"] == "retail" and c["id"] in latest
            and latest[c["id"]] < cutoff and c["email"] not in recent}


def tables(md: sa.MetaData):
    customers = sa.Table("lc_customers", md, sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
                         sa.Column("email", sa.String(120)), sa.Column("phone", sa.String(20)),
                         sa.Column("segment", sa.String(10)), sa.Column("last_login", sa.DateTime))
    orders = sa.Table("lc_orders", md, sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
                      sa.Column("customer_id", sa.Integer, sa.ForeignKey("lc_customers.id"), index=True),
                      sa.Column("ordered_at", sa.DateTime))
    tickets = sa.Table("lc_tickets", md, sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
                       sa.Column("customer_id", sa.Integer, sa.ForeignKey("lc_customers.id"), index=True),
                       sa.Column("opened_at", sa.String(32)))
    return customers, orders, tickets


def ensure_database(db: str) -> None:
    if db == "sqlite":
        OUT.mkdir(parents=True, exist_ok=True)
        return
    url = sa.engine.make_url(URLS[db])
    admin = sa.create_engine(url.set(database="postgres" if db == "postgresql" else "mysql"),
                             isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        if db == "postgresql":
            if not conn.execute(sa.text("SELECT 1 FROM pg_database WHERE datname = 'lcbench'")).first():
                conn.execute(sa.text('CREATE DATABASE "lcbench"'))
        else:
            conn.execute(sa.text("CREATE DATABASE IF NOT EXISTS `lcbench` CHARACTER SET utf8mb4"))
    admin.dispose()


def build(db: str, data, reuse: bool) -> None:
    ensure_database(db)
    engine = sa.create_engine(URLS[db])
    md = sa.MetaData()
    customers, orders, tickets = tables(md)
    if reuse and sa.inspect(engine).has_table("lc_tickets"):
        with engine.connect() as conn:
            if conn.execute(sa.select(sa.func.count()).select_from(customers)).scalar_one() == len(data[0]):
                say(f"[{db}] reusing the world")
                engine.dispose()
                return
    started = time.perf_counter()
    md.drop_all(engine)
    md.create_all(engine)
    with engine.begin() as conn:
        for table, rows in ((customers, data[0]), (orders, data[1]), (tickets, data[2])):
            for i in range(0, len(rows), 20_000):
                conn.execute(table.insert(), rows[i:i + 20_000])
    with engine.begin() as conn:
        if db == "postgresql":
            conn.execute(sa.text("ANALYZE"))
        elif db == "sqlite":
            conn.execute(sa.text("ANALYZE"))
        else:
            for t in ("lc_customers", "lc_orders", "lc_tickets"):
                conn.execute(sa.text(f"ANALYZE TABLE {t}"))
    engine.dispose()
    say(f"[{db}] built {len(data[0])} people, {len(data[1])} orders, {len(data[2])} tickets "
        f"in {time.perf_counter() - started:.1f}s")


def best_of(fn, n: int = 3) -> tuple[float, object]:
    fn()  # warm-up
    times, result = [], None
    for _ in range(n):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return min(times), result


def floor(db: str) -> float:
    engine = sa.create_engine(URLS[db])
    md = sa.MetaData()
    customers, orders, tickets = tables(md)

    def run():
        with engine.connect() as conn:
            conn.execute(sa.select(orders.c.customer_id, sa.func.max(orders.c.ordered_at))
                         .group_by(orders.c.customer_id)).fetchall()
            conn.execute(sa.select(tickets.c.customer_id, tickets.c.opened_at)
                         .where(tickets.c.opened_at.is_not(None))).fetchall()
            conn.execute(sa.select(customers)).fetchall()

    seconds, _ = best_of(run)
    engine.dispose()
    return seconds


def lethe(db: str, folder: Path, letters_path: Path):
    from connectors.sql import SqlConnector
    from pii.engine.erasure import ErasureEngine
    from pii.engine.lastcontact import recent_contacts

    config = parse_config({
        "ledger": f"sqlite:///{folder / 'state.db'}",
        "stores": {"crm": {"kind": "sql", "url": URLS[db]},
                   "exports": {"kind": "csv", "path": str(letters_path.parent), "pattern": letters_path.name}},
    }, folder / "stores.yaml")
    rule = parse_schedule([{
        "name": "customers", "store": "crm", "match": ["lc_customers"], "where": {"segment": "retail"},
        "last_contact": {"dates": ["last_login", "lc_orders.ordered_at", "lc_tickets.opened_at"],
                         "elsewhere": [{"store": "exports", "match": ["*.csv"], "date": "sent_at"}]},
        "period": "5y", "category": "Customers"}], "bench", config.stores).rules[0]
    engine = ErasureEngine(config)
    t_recent, recent = best_of(lambda: recent_contacts(engine, rule, RUN_DATE))
    flt = rule.record_filter(RUN_DATE, recent)
    from dataclasses import replace

    people_only = replace(flt, follow_links=False)

    def select(f):
        with SqlConnector(config.stores["crm"], config=config, inventory=None) as conn:
            return conn.select(f), conn.undated

    t_people, (found, undated) = best_of(lambda: select(people_only))
    t_linked, (with_links, _) = best_of(lambda: select(flt), n=1)
    ids = {f.location["key"]["id"] for f in found}
    linked = sum(1 for f in with_links if f.match == "linked")
    return t_recent, t_people, t_linked, ids, undated, linked, sum(len(v) for v in recent.values())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--db", default="sqlite", choices=["sqlite", "postgresql", "mariadb", "all"])
    ap.add_argument("--people", type=int, default=300_000)
    ap.add_argument("--reuse", action="store_true", help="keep a world of the same size from an earlier run")
    args = ap.parse_args(argv)
    data = generate(args.people)
    customers, orders, tickets, letters = data
    cutoff = parse_schedule([{"name": "x", "store": "crm", "match": ["t"], "last_contact": {"dates": ["d"]},
                              "period": "5y", "category": "C"}], "bench").rules[0].cutoff(RUN_DATE)
    want = expected_expired(customers, orders, tickets, letters, cutoff)
    OUT.mkdir(parents=True, exist_ok=True)
    letters_path = OUT / "lc_exports" / "newsletter.csv"
    letters_path.parent.mkdir(parents=True, exist_ok=True)
    with letters_path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, ["email", "sent_at"])
        w.writeheader()
        w.writerows(letters)
    say(f"world: {len(customers)} people, {len(orders)} orders, {len(tickets)} tickets, {len(letters)} mailings; "
        f"cutoff {cutoff}; {len(want)} people expired")
    ok = True
    rows = []
    import tempfile

    for db in (["sqlite", "postgresql", "mariadb"] if args.db == "all" else [args.db]):
        build(db, data, args.reuse)
        base = floor(db)
        with tempfile.TemporaryDirectory() as tmp:
            t_recent, t_people, t_linked, ids, undated, linked, recent = lethe(db, Path(tmp), letters_path)
        right = ids == want
        ok &= right
        rows.append((db, base, t_recent, t_people, t_linked, len(ids), undated, linked, recent, right))
        say(f"[{db}] floor {base:.2f}s; Lethe: contacts elsewhere {t_recent:.2f}s ({recent} identifiers), "
            f"people {t_people:.2f}s ({t_people / base:.1f}x floor), with linked rows {t_linked:.2f}s "
            f"({linked} rows); selected {len(ids)}, undated {undated}; {'exact' if right else 'WRONG'}")
    say("\n| database | people | floor | contacts elsewhere (CSV) | Lethe: people | ratio | + linked rows "
        "| expired | exact |")
    say("|---|---|---|---|---|---|---|---|---|")
    for db, base, t_recent, t_people, t_linked, n, undated, linked, recent, right in rows:
        say(f"| {db} | {len(customers)} | {base:.2f} s | {t_recent:.2f} s | {t_people:.2f} s | {t_people / base:.1f}x "
            f"| {t_linked:.2f} s ({linked} rows) | {n} | {'yes' if right else 'NO'} |")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
