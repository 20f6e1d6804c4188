"""Search benchmark: how fast Lethe locates one subject in a realistic CRM (bench/crm_world.py, about 1.06M
rows at scale 1.0) on SQLite, PostgreSQL and MariaDB, against the database's own scan floor, and whether
it finds exactly the planted rows.

    .venv/bin/python bench/search_bench.py --db all --scale 0.1 --indexes both
    .venv/bin/python bench/search_bench.py --db postgresql --scale 1.0 --indexes crm --reuse

For each database and index mode (none: primary keys only; crm: the indexes a real CRM has):
a) the floor, measured in the same run: per table ONE `count(*)` whose WHERE clause is a substring
   test on every text column (PostgreSQL ILIKE with bitmap and index scans off; MariaDB LIKE, its
   collations being case-insensitive; SQLite LIKE, ASCII case-insensitive; JSON cast to text), best of 3,
   summed over the tables; and an indexed lookup, members by lower(email) (MariaDB: email = ..., its
   collation is case-insensitive), best of 3;
b) Lethe: `pii.engine.discover.locate_subject` on a stores.yaml written to a temporary folder, cold once (empty
   inventory: columns are classified) and warm 3 times;
c) recall: findings against the planted rows (per table and kind), decoys, and anything else;
d) one results line per run.

Each database holds nothing but the benchmark: a SQLite file (default bench/out/crm.sqlite), and a
database `crmbench` on PostgreSQL and MariaDB (created when missing). Output names tables, primary keys
and counts only, never a planted value. Exit status 0 when every run's findings are exactly the planted
rows with the planted kinds, 1 otherwise (also when a run failed; its traceback goes to stderr).
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
import traceback
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import crm_world  # noqa: E402
from bench.crm_world import SUBJECT, WORLD_VERSION, apply_indexes, build, make_metadata, read_meta  # noqa: E402

STORE = "crm"
DB_NAME = "crmbench"
DEFAULT_URLS = {
    "postgresql": f"postgresql+psycopg2://postgres@127.0.0.1:5432/{DB_NAME}",
    "mariadb": f"mysql+pymysql://root@127.0.0.1:3306/{DB_NAME}",
}
PREFIX = "crm_"


def err(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def say(msg: str) -> None:
    print(msg, flush=True)


# ---------------------------------------------------------------------------------------------- databases
def ensure_database(kind: str, url: str) -> None:
    """Create the dedicated benchmark database when missing (PostgreSQL, MariaDB)."""
    u = make_url(url)
    if kind == "postgresql":
        admin = crm_world._engine(u.set(database="postgres").render_as_string(hide_password=False))
        try:
            with admin.connect() as conn:
                conn = conn.execution_options(isolation_level="AUTOCOMMIT")
                if not conn.execute(sa.text("SELECT 1 FROM pg_database WHERE datname = :d"),
                                    {"d": u.database}).first():
                    conn.execute(sa.text(f'CREATE DATABASE "{u.database}"'))
        finally:
            admin.dispose()
        eng = crm_world._engine(url)
        try:
            with eng.begin() as conn:
                conn.execute(sa.text("CREATE EXTENSION IF NOT EXISTS pg_trgm"))
        finally:
            eng.dispose()
    elif kind == "mariadb":
        admin = crm_world._engine(u._replace(database=None).render_as_string(hide_password=False))
        try:
            with admin.begin() as conn:
                conn.execute(sa.text(f"CREATE DATABASE IF NOT EXISTS `{u.database}` "
                                     "CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci"))
        finally:
            admin.dispose()


def lethe_url(kind: str, url: str) -> str:
    """The URL Lethe gets: the plain scheme, so it picks its own drivers (psycopg 3, PyMySQL)."""
    u = make_url(url)
    if kind == "postgresql":
        u = u.set(drivername="postgresql")
    elif kind == "mariadb":
        u = u.set(drivername="mysql+pymysql")
        if "charset" not in u.query:
            u = u.update_query_dict({"charset": "utf8mb4"})
    return u.render_as_string(hide_password=False)


# ---------------------------------------------------------------------------------------------- floors
def _best(n: int, fn) -> float:
    best = float("inf")
    for _ in range(n):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def floors(kind: str, url: str, runs: int = 3) -> dict:
    """The database's own scan floor (best of `runs` per table, summed) and an indexed lookup."""
    _md, tables = make_metadata(PREFIX)
    engine = crm_world._engine(url)
    dialect = engine.dialect.name
    like_op = "ILIKE" if dialect == "postgresql" else "LIKE"
    needle = "%" + SUBJECT["emails"][0].split("@")[0] + "%"
    q = (lambda c: f"`{c}`") if dialect in ("mysql", "mariadb") else (lambda c: f'"{c}"')
    per_table = {}
    try:
        with engine.connect() as conn:
            if dialect == "postgresql":
                conn.execute(sa.text("SET enable_bitmapscan = off"))
                conn.execute(sa.text("SET enable_indexscan = off"))
            for key in crm_world.TABLE_ORDER:
                t = tables[key]
                preds = []
                for c in crm_world.text_columns(t):
                    col = q(c)
                    if isinstance(t.c[c].type, sa.JSON):
                        col = f"{col}::text" if dialect == "postgresql" else (
                            f"CAST({col} AS CHAR)" if dialect in ("mysql", "mariadb") else col)
                    preds.append(f"{col} {like_op} :needle")
                sql = sa.text(f"SELECT count(*) FROM {q(t.name)} WHERE " + " OR ".join(preds))
                per_table[t.name] = _best(runs, lambda: conn.execute(sql, {"needle": needle}).scalar())
            if dialect == "postgresql":  # the lookup floor uses the indexes again
                conn.execute(sa.text("RESET enable_bitmapscan"))
                conn.execute(sa.text("RESET enable_indexscan"))
            members = q(tables["members"].name)
            if dialect in ("mysql", "mariadb"):
                lookup = sa.text(f"SELECT * FROM {members} WHERE email = :e")  # case-insensitive collation
            else:
                lookup = sa.text(f"SELECT * FROM {members} WHERE lower(email) = :e")
            index_s = _best(runs, lambda: conn.execute(lookup, {"e": SUBJECT["emails"][0]}).all())
            conn.rollback()
    finally:
        engine.dispose()
    return {"scan": sum(per_table.values()), "per_table": per_table, "index": index_s}


# ---------------------------------------------------------------------------------------------- Lethe
def write_config(folder: Path, url: str) -> Path:
    path = folder / "stores.yaml"
    path.write_text(
        "# written by bench/search_bench.py\n"
        "default_region: GB\n"
        "ledger: sqlite:///lethe_state.db\n"
        "stores:\n"
        f"  {STORE}:\n"
        "    kind: sql\n"
        f"    url: '{url}'\n"
        f"    skip_tables: [{PREFIX}meta]\n"
        "    metadata: {purpose: Membership CRM (benchmark)}\n",
        encoding="utf-8")
    return path


def run_lethe(config_path: Path, *, cold: bool, verbose: bool):
    from pii.core.config import load_config
    from pii.engine.discover import locate_subject
    from pii.core.subject import Subject

    config = load_config(config_path)
    if cold:
        state = Path(config.state_url.removeprefix("sqlite:///"))
        for suffix in ("", "-wal", "-shm"):
            Path(str(state) + suffix).unlink(missing_ok=True)
    subject = Subject.build(**SUBJECT)
    progress = (lambda store, msg: err(f"    [{store}] {msg}")) if verbose else None
    started = time.perf_counter()
    if progress:
        result = locate_subject(config, subject, progress=progress)
    else:
        result = locate_subject(config, subject)
    return result, time.perf_counter() - started


def finding_kind(f) -> str:
    if getattr(f, "strength", "strong") == "weak":
        return "weak" if f.match == "text" else f"{f.match}/weak"
    return f.match


def check(result, world: dict) -> dict:
    """Findings against the planted world: per (table, kind) found/expected, missing, unexpected."""
    expected = {(t, int(pk)): kind for t, pairs in world["expected"].items() for pk, kind in pairs}
    decoys = {(t, int(pk)) for t, pks in world["decoys"].items() for pk in pks}
    spill = {(t, int(pk)) for t, pks in world.get("spill", {}).items() for pk in pks}
    found: dict[tuple, str] = {}
    odd = []
    for f in result.findings:
        if f.store != STORE:
            continue
        loc = f.location
        key = loc.get("key") or {}
        if set(key) != {"id"}:
            odd.append(f"{loc.get('table')} key columns {sorted(key)}")
            continue
        try:
            found[(loc.get("table"), int(key["id"]))] = finding_kind(f)
        except (TypeError, ValueError):
            odd.append(f"{loc.get('table')} non-integer key")
    per = {}
    for (t, pk), kind in expected.items():
        e = per.setdefault((t, kind), [0, 0])
        e[1] += 1
        if found.get((t, pk)) == kind:
            e[0] += 1
    missing = [(t, pk, kind, found.get((t, pk))) for (t, pk), kind in sorted(expected.items())
               if found.get((t, pk)) != kind]
    unexpected = []
    for (t, pk), kind in sorted(found.items()):
        if (t, pk) in expected:
            continue
        why = "DECOY" if (t, pk) in decoys else (
            "spill: reached through a foreign key from another person's row that mentions the subject"
            if (t, pk) in spill else "other")
        unexpected.append((t, pk, kind, why))
    n_exp = len(expected)
    n_ok = n_exp - len(missing)
    return {"per": per, "missing": missing, "unexpected": unexpected, "odd": odd, "expected": n_exp,
            "ok_count": n_ok, "decoys": sum(1 for u in unexpected if u[3] == "DECOY"),
            "exact": not missing and not unexpected and not odd, "findings": len(found)}


def print_check(c: dict, limit: int = 25) -> None:
    tables = sorted({t for t, _k in c["per"]})
    for t in tables:
        parts = [f"{k} {c['per'][(t, k)][0]}/{c['per'][(t, k)][1]}" for tt, k in sorted(c["per"]) if tt == t]
        say(f"    {t}: " + ", ".join(parts))
    if c["missing"]:
        say(f"    missing or wrong kind ({len(c['missing'])}):")
        for t, pk, kind, got in c["missing"][:limit]:
            say(f"      {t} id={pk}: expected {kind}, " + (f"found as {got}" if got else "not found"))
        if len(c["missing"]) > limit:
            say(f"      ... and {len(c['missing']) - limit} more")
    if c["unexpected"]:
        by_why: dict[str, list] = {}
        for u in c["unexpected"]:
            by_why.setdefault(u[3], []).append(u)
        for why, items in by_why.items():
            say(f"    unexpected, {why} ({len(items)}):")
            for t, pk, kind, _w in items[:limit]:
                say(f"      {t} id={pk} ({kind})")
            if len(items) > limit:
                say(f"      ... and {len(items) - limit} more")
    for o in c["odd"][:limit]:
        say(f"    unreadable location: {o}")


def coverage_text(result) -> str:
    try:
        out: dict[str, int] = {}
        for s in result.stores:
            if s.coverage is not None:
                for m, n in s.coverage.methods().items():
                    out[m] = out.get(m, 0) + n
        return ", ".join(f"{m} {n}" for m, n in sorted(out.items())) or "-"
    except Exception as exc:  # the coverage API is optional for this bench
        return f"n/a ({type(exc).__name__})"


# ---------------------------------------------------------------------------------------------- main
def fmt_ms(x) -> str:
    return "-" if x is None else f"{x * 1000:.1f}ms"


def fmt_s(x, digits: int = 2) -> str:
    return "-" if x is None else f"{x:.{digits}f}s"


def bench_db(kind: str, url: str, args, modes: list[str]) -> list[dict]:
    """Build (or reuse) the world on one database, then run every index mode. Returns one dict per mode."""
    results = []
    say(f"\n== {kind}: {make_url(url).render_as_string(hide_password=True)}")
    ensure_database(kind, url)
    meta = read_meta(url, PREFIX) if args.reuse else None
    world = None
    build_s = None
    if meta and meta.get("version") == WORLD_VERSION and meta.get("world") and \
            abs(float(meta.get("scale") or 0) - args.scale) < 1e-9 and meta.get("seed") == args.seed:
        world = meta["world"]
        say(f"world: reused (scale {args.scale}, index mode {meta.get('indexes')})")
        current = meta.get("indexes")
    if world is None:
        t = time.perf_counter()
        world = build(url, args.scale, modes[0], PREFIX, seed=args.seed)
        build_s = time.perf_counter() - t
        tm = world["timings"]
        say(f"world: built in {build_s:.1f}s (generate+load {tm['generate_and_load']:.1f}s, indexes "
            f"'{modes[0]}' + ANALYZE {tm['indexes_and_analyze']:.1f}s)"
            + (f"; {world['mariadb_load']}" if world.get("mariadb_load") else ""))
        current = modes[0]
    counts = world["counts"]
    say("rows: " + ", ".join(f"{t} {n:,}" for t, n in counts.items()) + f" = {world['rows']:,}")
    for mode in modes:
        rec: dict = {"db": kind, "indexes": mode, "scale": args.scale, "rows": world["rows"], "build_s": build_s,
                     "error": None}
        results.append(rec)
        say(f"\n-- {kind} indexes={mode}")
        try:
            if mode != current:
                r = apply_indexes(url, mode, PREFIX)
                current = mode
                say(f"indexes: switched to '{mode}' in {r['seconds']:.1f}s "
                    f"(+{len(r['created'])} -{len(r['dropped'])}, ANALYZE included)")
            elif build_s is None:
                r = apply_indexes(url, mode, PREFIX)  # reused world: make sure the mode is complete
                if r["created"] or r["dropped"]:
                    say(f"indexes: completed '{mode}' in {r['seconds']:.1f}s")
            rec["index_s"] = None
            fl = floors(kind, url)
            rec["floor_scan"], rec["floor_index"] = fl["scan"], fl["index"]
            say(f"floor: scan {fl['scan']:.2f}s (" + ", ".join(
                f"{t.removeprefix(PREFIX)} {s:.2f}" for t, s in fl["per_table"].items())
                + f"), indexed lookup {fl['index'] * 1000:.1f}ms")
        except Exception as exc:
            rec["error"] = f"{type(exc).__name__} (setup/floor)"
            err(f"[{kind} indexes={mode}] setup or floor failed: {type(exc).__name__}")
            traceback.print_exc()
            continue
        folder = Path(tempfile.mkdtemp(prefix=f"lethe_search_{kind}_{mode}_"))
        try:
            config_path = write_config(folder, lethe_url(kind, url))
            result, cold_s = run_lethe(config_path, cold=True, verbose=args.verbose)
            rec["cold"] = cold_s
            c = check(result, world)
            say(f"lethe cold: {cold_s:.2f}s, {c['findings']} findings; inventory hits {result.inventory_hits}, "
                f"misses {result.inventory_misses}; methods: {coverage_text(result)}")
            warm = []
            for _ in range(args.warm_runs):
                result, s = run_lethe(config_path, cold=False, verbose=args.verbose)
                warm.append(s)
            rec["warm_best"], rec["warm_median"] = min(warm), statistics.median(warm)
            c = check(result, world)
            rec["check"] = c
            say(f"lethe warm: best {min(warm):.2f}s, median {statistics.median(warm):.2f}s "
                f"(runs: {', '.join(f'{s:.2f}' for s in warm)}); inventory hits {result.inventory_hits}, "
                f"misses {result.inventory_misses}; methods: {coverage_text(result)}")
            say(f"  recall: {c['ok_count']}/{c['expected']} planted rows found with the planted kind; "
                f"{len(c['unexpected'])} unexpected ({c['decoys']} decoys)")
            print_check(c)
        except Exception as exc:
            rec["error"] = f"{type(exc).__name__} (lethe)"
            err(f"[{kind} indexes={mode}] Lethe search failed: {type(exc).__name__}")
            traceback.print_exc()
        finally:
            if not args.keep_tmp:
                shutil.rmtree(folder, ignore_errors=True)
    return results


def block_line(rec: dict) -> str:
    c = rec.get("check")
    if c:
        recall = (f"ok({c['ok_count']}/{c['expected']})" if not c["missing"]
                  else f"FAIL({c['ok_count']}/{c['expected']})")
        kinds: dict[str, int] = {}
        for u in c["unexpected"]:
            kinds[u[3].split(":")[0]] = kinds.get(u[3].split(":")[0], 0) + 1
        detail = ("(" + ",".join(f"{k}={n}" for k, n in sorted(kinds.items()) if k != "DECOY") + ")"
                  if any(k != "DECOY" for k in kinds) else "")
        tail = f"recall={recall} decoys={c['decoys']} unexpected={len(c['unexpected'])}{detail}"
    else:
        tail = "recall=n/a"
    ratio = (f"{rec['warm_best'] / rec['floor_scan']:.1f}x"
             if rec.get("warm_best") is not None and rec.get("floor_scan") else "-")
    line = (f"db={rec['db']} indexes={rec['indexes']} scale={rec['scale']} rows={rec['rows']:,} "
            f"floor_scan={fmt_s(rec.get('floor_scan'))} floor_index={fmt_ms(rec.get('floor_index'))} "
            f"lethe_cold={fmt_s(rec.get('cold'))} lethe_warm={fmt_s(rec.get('warm_best'))} "
            f"(median {fmt_s(rec.get('warm_median'))}) ratio={ratio} {tail}")
    if rec.get("error"):
        line += f" ERROR={rec['error']}"
    return line


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--db", choices=("sqlite", "postgresql", "mariadb", "all"), default="all")
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--indexes", choices=("none", "crm", "both"), default="both")
    ap.add_argument("--reuse", action="store_true", help="skip the rebuild when the world (version, scale) exists")
    ap.add_argument("--sqlite-path", type=Path, default=ROOT / "bench" / "out" / "crm.sqlite")
    ap.add_argument("--pg-url", default=DEFAULT_URLS["postgresql"], help="its database is dedicated to the bench")
    ap.add_argument("--mariadb-url", default=DEFAULT_URLS["mariadb"], help="its database is dedicated to the bench")
    ap.add_argument("--seed", type=int, default=crm_world.DEFAULT_SEED)
    ap.add_argument("--warm-runs", type=int, default=3)
    ap.add_argument("--verbose", action="store_true", help="Lethe's progress lines on stderr")
    ap.add_argument("--keep-tmp", action="store_true", help="keep the temporary stores.yaml folders")
    args = ap.parse_args(argv)
    dbs = ["sqlite", "postgresql", "mariadb"] if args.db == "all" else [args.db]
    modes = ["none", "crm"] if args.indexes == "both" else [args.indexes]
    args.sqlite_path = args.sqlite_path.resolve()
    args.sqlite_path.parent.mkdir(parents=True, exist_ok=True)
    urls = {"sqlite": f"sqlite:///{args.sqlite_path}", "postgresql": args.pg_url, "mariadb": args.mariadb_url}
    say(f"== Lethe search bench: scale {args.scale}, databases {', '.join(dbs)}, index modes {', '.join(modes)}, "
        f"nproc {os.cpu_count()}")
    records = []
    for kind in dbs:
        try:
            records += bench_db(kind, urls[kind], args, modes)
        except Exception as exc:
            err(f"[{kind}] failed: {type(exc).__name__}")
            traceback.print_exc()
            records.append({"db": kind, "indexes": "-", "scale": args.scale, "rows": 0,
                            "error": f"{type(exc).__name__} (build)"})
    say("\n```")
    for rec in records:
        say(block_line(rec))
    say("```")
    ok = bool(records) and all(r.get("check") and r["check"]["exact"] and not r.get("error") for r in records)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
