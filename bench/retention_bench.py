"""Retention benchmark: purge the expired part of a large table through the retention flow.

    .venv/bin/python bench/retention_bench.py [--rows 300000] [--expired-share 0.2] [--url postgresql+psycopg://...]

Builds one `enquiries` table (SQLite by default, or any SQLAlchemy URL of an empty database) of --rows
rows with a DATE-typed `received_on` column (indexed; pushed down as `WHERE received_on < cutoff`) and a
text `logged_at` column (ISO text: read and parsed in Python), plus a CSV export of --csv-rows visitor
records. Then, through the library (`pii.engine.flows` + `pii.engine.erasure.ErasureEngine`), it runs three rules:

- `enquiries-typed`: delete rows whose `received_on` is more than two years old (push-down),
- `enquiries-text`: anonymise for statistics rows whose `logged_at` is more than three years old
  (every row read; dates parsed in Python),
- `visitors`: delete CSV records older than three months,

and prints, per rule, the seconds and rows/s for planning (select + plan) and for execution (approve,
carry out, verify), checks that exactly the expired rows went and no identifier survives in anonymised
rows, and re-runs each rule to show a second run finds nothing to do.
"""
from __future__ import annotations

import argparse
import csv
import datetime as dt
import shutil
import sys
import time
from pathlib import Path

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pii.core.config import parse_config  # noqa: E402
from pii.engine.erasure import ErasureEngine  # noqa: E402
from pii.engine.flows import retention_selection, submit_selection  # noqa: E402
from pii.core.retention import parse_schedule  # noqa: E402

RUN_DATE = dt.date(2026, 11, 22)


def build(url: str, folder: Path, rows: int, share: float, csv_rows: int) -> dict:
    engine = sa.create_engine(url)
    md = sa.MetaData()
    t = sa.Table("enquiries", md, sa.Column("enquiry_id", sa.Integer, primary_key=True),
                 sa.Column("full_name", sa.String(80)), sa.Column("email", sa.String(120)),
                 sa.Column("topic", sa.String(40)), sa.Column("received_on", sa.Date, index=True),
                 sa.Column("logged_at", sa.String(40)))
    md.drop_all(engine)
    md.create_all(engine)
    cutoff_typed = dt.date(RUN_DATE.year - 2, RUN_DATE.month, RUN_DATE.day)
    cutoff_text = dt.date(RUN_DATE.year - 3, RUN_DATE.month, RUN_DATE.day)
    expired_typed = expired_text = 0
    batch = []
    with engine.begin() as conn:
        for i in range(1, rows + 1):
            old = (i % 1000) < share * 1000
            day = RUN_DATE - dt.timedelta(days=(800 + i % 700) if old else (i % 700))
            logged_old = share * 1000 <= (i % 1000) < share * 1500  # rows the typed rule leaves
            logged = RUN_DATE - dt.timedelta(days=(1200 + i % 300) if logged_old else (i % 1000))
            expired_typed += day < cutoff_typed
            expired_text += (logged < cutoff_text) and not (day < cutoff_typed)
            batch.append({"enquiry_id": i, "full_name": f"Person {i}", "email": f"p{i}@bench.test",
                          "topic": ("membership", "events", "training")[i % 3], "received_on": day,
                          "logged_at": logged.isoformat() + "T09:00:00"})
            if len(batch) == 20000:
                conn.execute(t.insert(), batch)
                batch.clear()
        if batch:
            conn.execute(t.insert(), batch)
    engine.dispose()
    exports = folder / "exports"
    exports.mkdir(parents=True, exist_ok=True)
    expired_csv = 0
    with (exports / "visitors.csv").open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["visitor_id", "name", "email", "visited_at"])
        for n in range(1, csv_rows + 1):
            day = RUN_DATE - dt.timedelta(days=n % 200)
            expired_csv += day < dt.date(2026, 8, 22)
            w.writerow([n, f"Visitor {n}", f"v{n}@bench.test", day.isoformat()])
    return {"expired_typed": expired_typed, "expired_text": expired_text, "expired_csv": expired_csv}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=300_000)
    ap.add_argument("--expired-share", type=float, default=0.2)
    ap.add_argument("--csv-rows", type=int, default=50_000)
    ap.add_argument("--url", help="SQLAlchemy URL of an empty database (default: a SQLite file)")
    ap.add_argument("--dir", default=str(Path(__file__).resolve().parent / "out" / "retention"))
    args = ap.parse_args()
    folder = Path(args.dir)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    url = args.url or f"sqlite:///{folder / 'enquiries.db'}"
    started = time.perf_counter()
    facts = build(url, folder, args.rows, args.expired_share, args.csv_rows)
    print(f"world: {args.rows:,} enquiries ({facts['expired_typed']:,} past two years by received_on, "
          f"{facts['expired_text']:,} more past three years by logged_at), {args.csv_rows:,} CSV visitors "
          f"({facts['expired_csv']:,} expired); built in {time.perf_counter() - started:.1f}s")
    raw = {"stores": {"db": {"kind": "sql", "url": url}, "exports": {"kind": "csv", "path": "exports"}},
           "ledger": f"sqlite:///{folder / 'ledger.db'}"}
    config = parse_config(raw, folder / "stores.yaml")
    schedule = parse_schedule([
        {"name": "enquiries-typed", "store": "db", "match": "enquiries", "date": "received_on", "period": "2y",
         "category": "Enquiries"},
        {"name": "enquiries-text", "store": "db", "match": "enquiries", "date": "logged_at", "period": "3y",
         "category": "Enquiries", "action": "anonymise",
         "anonymise": {"full_name": None, "email": None}},
        {"name": "visitors", "store": "exports", "match": "visitors.csv", "date": "visited_at", "period": "3m",
         "category": "Visitor records"},
    ], "bench", config.stores)
    expected = {"enquiries-typed": facts["expired_typed"], "enquiries-text": facts["expired_text"],
                "visitors": facts["expired_csv"]}
    ok = True
    for rule in schedule.rules:
        engine = ErasureEngine(config, today=RUN_DATE)
        t0 = time.perf_counter()
        plan = submit_selection(engine, retention_selection(engine, rule, RUN_DATE), "bench")
        t1 = time.perf_counter()
        engine.approve(plan.plan_id, "bench approver")
        report = engine.execute(plan.plan_id)
        t2 = time.perf_counter()
        n = len(plan.actions)
        again = submit_selection(engine, retention_selection(engine, rule, RUN_DATE), "bench")
        t3 = time.perf_counter()
        good = n == expected[rule.name] and report.state == "verified" and not again.actions
        ok &= good
        print(f"{rule.name:16s} {n:>8,} rows {rule.action:9s} plan {t1 - t0:6.1f}s ({n / (t1 - t0):8,.0f} rows/s)  "
              f"execute+verify {t2 - t1:6.1f}s ({n / (t2 - t1):8,.0f} rows/s)  end to end "
              f"{n / (t2 - t0):8,.0f} rows/s  re-run {t3 - t2:5.1f}s, {len(again.actions)} to do  "
              f"{'ok' if good else 'MISMATCH (expected %d)' % expected[rule.name]}")
    eng = sa.create_engine(url)
    with eng.connect() as conn:
        leaked = conn.execute(sa.text("SELECT count(*) FROM enquiries WHERE logged_at < :c AND "
                                      "(email IS NOT NULL OR full_name IS NOT NULL)"),
                              {"c": dt.date(RUN_DATE.year - 3, RUN_DATE.month, RUN_DATE.day).isoformat()}).scalar()
        typed_left = conn.execute(sa.text("SELECT count(*) FROM enquiries WHERE received_on < :c"),
                                  {"c": dt.date(RUN_DATE.year - 2, RUN_DATE.month, RUN_DATE.day)}).scalar()
    eng.dispose()
    ok &= leaked == 0 and typed_left == 0
    print(f"check: {'ok' if ok else 'FAILED'} (identifiers left in anonymised rows: {leaked}; "
          f"expired rows left: {typed_left})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
