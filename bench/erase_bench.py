"""Erasure benchmark: one subject with many rows (orders, order lines, CSV rows) among other people's data.

    .venv/bin/python bench/erase_bench.py [--orders 20000] [--url postgresql+psycopg://...]

Builds the world (SQLite by default, or any SQLAlchemy URL of an empty database), plans, approves and
executes the erasure through the library (`pii.engine.erasure.ErasureEngine`), checks that every one of the
subject's rows is gone and every other row is intact, and prints rows/s for each phase.
"""
from __future__ import annotations

import argparse
import csv
import os
import platform
import shutil
import sys
import time
from pathlib import Path

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pii.core.config import parse_config  # noqa: E402
from pii.engine.erasure import ErasureEngine  # noqa: E402
from pii.ledger import Ledger  # noqa: E402
from pii.core.subject import Subject  # noqa: E402

SUBJECT = dict(emails=["erin.example@bench.test"], phones=["020 7946 0777"], names=["Erin Example"])


def build(url: str, folder: Path, orders: int, others: int, csv_rows: int) -> dict:
    engine = sa.create_engine(url)
    md = sa.MetaData()
    customers = sa.Table("customers", md, sa.Column("customer_id", sa.Integer, primary_key=True),
                         sa.Column("full_name", sa.String(80)), sa.Column("email", sa.String(120)),
                         sa.Column("phone", sa.String(40)))
    orders_t = sa.Table("orders", md, sa.Column("order_id", sa.Integer, primary_key=True),
                        sa.Column("customer_id", sa.Integer, sa.ForeignKey("customers.customer_id"), index=True),
                        sa.Column("total", sa.Integer))
    lines = sa.Table("order_lines", md, sa.Column("line_id", sa.Integer, primary_key=True),
                     sa.Column("order_id", sa.Integer, sa.ForeignKey("orders.order_id"), index=True),
                     sa.Column("sku", sa.String(20)))
    md.drop_all(engine)
    md.create_all(engine)
    with engine.begin() as conn:
        conn.execute(customers.insert(), [{"customer_id": 1, "full_name": "Erin Example",
                                           "email": "erin.example@bench.test", "phone": "+44 20 7946 0777"}]
                     + [{"customer_id": i, "full_name": f"Person {i}", "email": f"p{i}@bench.test",
                         "phone": None} for i in range(2, others + 2)])
        rows, oid = [], 0
        for i in range(orders):
            oid += 1
            rows.append({"order_id": oid, "customer_id": 1, "total": i % 100})
        for i in range(orders):
            oid += 1
            rows.append({"order_id": oid, "customer_id": 2 + i % others, "total": i % 100})
        for k in range(0, len(rows), 10000):
            conn.execute(orders_t.insert(), rows[k:k + 10000])
        lrows = [{"line_id": j + 1, "order_id": (j // 2) + 1, "sku": f"S{j % 50}"} for j in range(4 * orders)]
        for k in range(0, len(lrows), 10000):
            conn.execute(lines.insert(), lrows[k:k + 10000])
    engine.dispose()
    exports = folder / "exports"
    exports.mkdir(parents=True, exist_ok=True)
    with (exports / "contacts.csv").open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["email", "name", "note"])
        for i in range(csv_rows):
            if i % 10 == 0:
                w.writerow(["erin.example@bench.test", "Erin Example", f"visit {i}"])
            else:
                w.writerow([f"p{i}@bench.test", f"Person {i}", f"visit {i}"])
    return {"sql_subject_rows": 1 + orders + 2 * orders, "csv_subject_rows": (csv_rows + 9) // 10,
            "sql_total_rows": 1 + others + 2 * orders + 4 * orders, "csv_total_rows": csv_rows}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--orders", type=int, default=20000, help="the subject's orders (each has 2 lines)")
    ap.add_argument("--others", type=int, default=5000, help="other customers")
    ap.add_argument("--csv-rows", type=int, default=50000)
    ap.add_argument("--url", help="an empty database (default: SQLite in --dir)")
    ap.add_argument("--dir", default=str(Path(__file__).resolve().parent / "out" / "erase"))
    args = ap.parse_args()
    folder = Path(args.dir)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    url = args.url or f"sqlite:///{folder / 'shop.db'}"
    t0 = time.perf_counter()
    counts = build(url, folder, args.orders, args.others, args.csv_rows)
    print(f"world built in {time.perf_counter() - t0:.1f}s: {counts}")
    config = parse_config({"stores": {"shop": {"kind": "sql", "url": url},
                                      "exports": {"kind": "csv", "path": str(folder / "exports")}},
                           "detection": {"model": "none"}}, folder / "stores.yaml")
    os.environ.setdefault("LETHE_LEDGER_KEY", "bench-ledger-key-" + "x" * 32)
    engine = ErasureEngine(config, ledger=Ledger(config.state_url))
    subject = Subject.build(**SUBJECT)
    t = time.perf_counter()
    plan = engine.submit(subject, "bench")
    t_plan = time.perf_counter() - t
    engine.approve(plan.plan_id, "bench-approver")
    t = time.perf_counter()
    report = engine.execute(plan.plan_id, subject=subject)
    t_exec = time.perf_counter() - t
    subject_rows = counts["sql_subject_rows"] + counts["csv_subject_rows"]
    eng = sa.create_engine(url)
    with eng.connect() as conn:
        left = conn.execute(sa.text("SELECT count(*) FROM orders WHERE customer_id = 1")).scalar()
        others_left = conn.execute(sa.text("SELECT count(*) FROM orders")).scalar()
    csv_left = sum(1 for line in (folder / "exports" / "contacts.csv").open() if "erin" in line)
    ok = (report.state == "verified" and left == 0 and others_left == args.orders and csv_left == 0)
    print(f"Lethe erase bench: nproc {os.cpu_count()}, Python {platform.python_version()}, "
          f"{sa.make_url(url).get_backend_name()}")
    print(f"plan:    {len(plan.actions)} actions in {t_plan:.1f}s")
    print(f"execute: {report.rows} rows affected in {t_exec:.1f}s = {report.rows / t_exec:,.0f} rows/s "
          f"(including re-locate and verification); state {report.state}")
    print(f"total:   {subject_rows:,} subject rows erased in {t_plan + t_exec:.1f}s = "
          f"{subject_rows / (t_plan + t_exec):,.0f} rows/s end to end")
    print("check: " + ("OK: subject gone, other people's orders intact" if ok else
                       f"FAIL: state {report.state}, {left} subject orders left, {csv_left} CSV rows left"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
