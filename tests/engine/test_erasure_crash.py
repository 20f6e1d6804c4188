"""Issue 3: kill -9 at any moment of an erasure, run the same command again, and it resumes: nothing missed,
nothing done twice with a different effect, no half-written file.

Every trial builds the world afresh (a CRM in SQLite or PostgreSQL, a folder of CSV exports, a policy that
keeps payment records with the e-mail hashed, the ledger in SQLite or in the PostgreSQL database), runs
the real command ``lethe --config stores.yaml erase ... --yes`` as a child process and SIGKILLs it at a
point spread over the work (timed from its first progress line, so the interpreter's start-up does not
eat the kill points); some trials kill the resuming run too. Then it runs the same command to the end.

After every kill the stores are checked for atomicity: the SQL store is either untouched or completely
erased (one transaction), each CSV file is byte for byte either the original or the finished rewrite.
After the final run: exit 0 and verified; the stores equal those of an uninterrupted run and are checked
on their own too (her rows gone, mentions of her redacted, her retained payments hashed once, everyone
else's rows and CSV records byte-identical, no temp files); the ledger shows the plan verified, every
action done or skipped exactly once, no lock left, the request completed and its identifiers shredded.

Two moments are too short to hit often by timing, so they get tests of their own: CSV rewrites of large
files SIGKILLed mid-file (each file must be the old or the new one, and running again finishes it), and a
kill right after the file of retained, hashed rows was renamed into place but before the ledger heard of
it (the re-run must neither hash them again nor count them as left over).

Kill -9 may also land after all is complete, before the process exits; the re-run then cannot resume and
makes a new request, which must change nothing. A kill during planning leaves an unapproved request behind;
the re-run makes a new one (those are counted in the summary).

Summaries (trials, kills in the middle of the work, where they landed) print with ``pytest -s``.
"""
from __future__ import annotations

import csv
import datetime as dt
import hashlib
import hmac
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import sqlalchemy as sa

from connectors.fileformat import TMP_MARK
from pii.ledger import (
    ledger_actions, ledger_events, ledger_locks, ledger_plan_actions, ledger_plans, ledger_request_secrets,
    ledger_requests, ledger_suppression,
)
from tests import sql_world
from tests.conftest import PG_ADMIN_URL

REPO = Path(__file__).resolve().parents[2]
EMAIL = "alice.smith@example.org"
PHONE_DIGITS = "79460123"
SUBJECT_ARGS = ["--email", EMAIL, "--phone", "020 7946 0123", "--name", "Alice Smith"]
CHILD_ENV = {"LETHE_LEDGER_KEY": "crash-test-ledger-key-" + "k" * 24,
             "LETHE_HASH_KEY": "crash-test-hash-key-" + "h" * 24}
WORK_STARTED = "[crm] searching (sql)"  # first progress line: the erasure's work starts here
CRM_TABLES = ["companies", "members", "orders", "order_items", "notes", "newsletter", "badges"]
HER_ORDERS, OTHERS = 16, 40

TARGET_MID_KILLS = 20  # per backend: kills that landed while the erasure was at work
MIN_TRIALS, MAX_TRIALS = 20, 40
WORKERS = 2
GOLDEN = 0.6180339887


# =========================================================================== the world
@dataclass
class CsvFile:
    name: str
    header_raw: str
    records: list[tuple[str, list[str], str]]  # (raw text, values, "her" | "mention" | "other")
    delimiter: str
    bom: bool = False

    def data(self) -> bytes:
        text = self.header_raw + "".join(raw for raw, _, _ in self.records)
        return (b"\xef\xbb\xbf" if self.bom else b"") + text.encode("utf-8")


def _csv_line(values: list[str], delimiter: str, end: str, *, quote_all: bool = False) -> str:
    buf = io.StringIO()
    csv.writer(buf, delimiter=delimiter, lineterminator=end,
               quoting=csv.QUOTE_ALL if quote_all else csv.QUOTE_MINIMAL).writerow(values)
    return buf.getvalue()


def _export_file(name: str, *, delimiter: str, end: str, bom: bool, offset: int, rows: int = 100) -> CsvFile:
    header = ["name", "email", "phone", "comment"]
    records = []
    for i in range(rows):
        last = i == rows - 1
        term = "" if (last and bom) else end  # one file ends without a final line ending
        if i % 25 == offset:
            email = EMAIL if i % 2 else EMAIL.replace("alice.smith", "Alice.Smith")
            values, kind = ["Alice Smith", email, "+44 20 7946 0123", f"order {i}"], "her"
        elif i % 40 == offset + 4:
            values, kind = [f"Person {i}", f"p{offset}-{i}@example.net", f"020 7946 {3000 + i}",
                            f"spoke to {EMAIL} on day {i}"], "mention"
        elif i == 50:
            values, kind = [f"Person {i}", f"p{offset}-{i}@example.net", "", "two\nlines, quoted"], "other"
        else:
            values, kind = [f"Person {i}", f"p{offset}-{i}@example.net", f"020 7946 {3000 + i}", f"row {i}"], "other"
        raw = _csv_line(values, delimiter, term, quote_all=(kind == "other" and i % 10 == 1))
        records.append((raw, values, kind))
    return CsvFile(name, _csv_line(header, delimiter, end), records, delimiter, bom)


def _payments_file() -> CsvFile:
    records = []
    for i in range(30):
        if i % 10 == 5:
            values, kind = ["Alice Smith", EMAIL, "+44 20 7946 0123", f"{10 + i}.50"], "her"
        else:
            values, kind = [f"Person {i}", f"pay{i}@example.net", f"020 7946 {4000 + i}", f"{i}.00"], "other"
        records.append((_csv_line(values, ",", "\n"), values, kind))
    return CsvFile("payments.csv", "name,email,phone,amount\n", records, ",")


CSV_FILES = [
    _export_file("export_a.csv", delimiter=",", end="\n", bom=False, offset=3),
    _export_file("export_b.csv", delimiter=";", end="\r\n", bom=False, offset=11),
    _export_file("export_c.csv", delimiter=",", end="\r\n", bom=True, offset=19),
    _payments_file(),
]
RETAINED_FILE = "payments.csv"

POLICY_YAML = """\
rules:
  - store: files
    container: payments.csv
    action: retain
    reason: Payment records kept for tax
    legal_basis: Legal obligation (Art. 6(1)(c))
    anonymise:
      email: hash
"""


def build_world(root: Path, build_url: str, schema: str | None) -> None:
    """The CRM of tests/sql_world.py with more of her orders and other people, and the CSV exports."""
    sql_world.build(build_url, schema).dispose()
    engine = sa.create_engine(build_url)
    md = sa.MetaData(schema=schema)
    md.reflect(engine, only=CRM_TABLES)

    def t(name):
        return md.tables[f"{schema}.{name}" if schema else name]

    day = dt.datetime(2026, 1, 1)
    with engine.begin() as conn:
        conn.execute(t("members").insert(), [
            dict(member_id=100 + i, first_name=f"Person{i}", last_name=f"Family{i}", email=f"person{i}@example.net",
                 phone=f"020 7946 {2000 + i}", customer_no=f"C-9{i:04d}", company_id=1 + i % 2,
                 referred_by=None if i % 3 else 2) for i in range(OTHERS)])
        orders = [dict(order_id=1000 + i, member_id=1, total=10 + i, placed_at=day + dt.timedelta(days=i))
                  for i in range(HER_ORDERS)]
        orders += [dict(order_id=2000 + i, member_id=100 + i, total=i, placed_at=day + dt.timedelta(hours=i))
                   for i in range(OTHERS)]
        conn.execute(t("orders").insert(), orders)
        conn.execute(t("order_items").insert(), [dict(order_id=o["order_id"], line_no=k, sku=f"S{o['order_id']}{k}")
                                                 for o in orders for k in (1, 2)])
        conn.execute(t("notes").insert(), [
            dict(note_id=1000 + i, member_id=100 + i,
                 note=(f"Called {EMAIL.upper() if i % 8 == 0 else EMAIL} about case {i}." if i % 4 == 0
                       else f"Routine note {i}.")) for i in range(OTHERS)])
    engine.dispose()
    exports = root / "exports"
    exports.mkdir(parents=True, exist_ok=True)
    for f in CSV_FILES:
        (exports / f.name).write_bytes(f.data())
    (root / "policy.yaml").write_text(POLICY_YAML, encoding="utf-8")


def write_config(root: Path, store_url: str, schema: str | None, ledger_url: str) -> None:
    lines = ["stores:", "  crm:", "    kind: sql", f"    url: {store_url}"]
    if schema:
        lines.append(f"    schemas: [{schema}]")
    lines += ["  files:", "    kind: csv", "    path: exports", f"ledger: {ledger_url}", "policy: policy.yaml", ""]
    (root / "stores.yaml").write_text("\n".join(lines), encoding="utf-8")


def child_env() -> dict:
    env = dict(os.environ, **CHILD_ENV)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO)] + [p for p in [env.get("PYTHONPATH")] if p])
    env.pop("LETHE_CONFIG", None)
    return env


def lethe(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pii.cli.main", "--config", "stores.yaml", *args], cwd=root,
                          env=child_env(), capture_output=True, text=True, timeout=300)


@dataclass
class World:
    root: Path
    store_url: str
    schema: str | None
    ledger_url: str
    db: str | None = None  # PostgreSQL: the trial's database


class SqliteBackend:
    """Store and ledger in SQLite files beside stores.yaml; a trial copies the template folder."""

    name = "sqlite"

    def __init__(self, base: Path):
        self.base = base
        self.template = base / "template"

    def prepare(self) -> None:
        self.template.mkdir(parents=True)
        build_world(self.template, f"sqlite:///{self.template / 'crm.db'}", None)
        write_config(self.template, "sqlite:///crm.db", None, "sqlite:///ledger.db")
        warm_up(self.template)

    def clone(self, name: str) -> World:
        root = self.base / name
        shutil.copytree(self.template, root)
        return World(root, f"sqlite:///{root / 'crm.db'}", None, f"sqlite:///{root / 'ledger.db'}")

    def discard(self, world: World) -> None:
        shutil.rmtree(world.root, ignore_errors=True)


class PostgresBackend:
    """Store (schema crm) and ledger (public) in one PostgreSQL database; a trial gets a copy of the
    template database (CREATE DATABASE ... TEMPLATE) and of the CSV folder."""

    name = "postgresql"

    def __init__(self, base: Path, template_url: str):
        self.base = base
        self.template = base / "template"
        self.template_url = sa.engine.make_url(template_url)
        self.admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        self.lock = threading.Lock()

    def _url(self, db: str) -> str:
        return self.template_url.set(database=db).render_as_string(hide_password=False)

    def prepare(self) -> None:
        self.template.mkdir(parents=True)
        url = self._url(self.template_url.database)
        build_world(self.template, url, "crm")
        write_config(self.template, url, "crm", url)
        warm_up(self.template)

    def clone(self, name: str) -> World:
        db = f"{self.template_url.database}_{name}"
        with self.lock:  # one copy of the template at a time
            for attempt in range(20):
                try:
                    with self.admin.connect() as conn:
                        conn.execute(sa.text(f'CREATE DATABASE "{db}" TEMPLATE "{self.template_url.database}"'))
                    break
                except sa.exc.OperationalError:  # the template is briefly in use (autovacuum)
                    if attempt == 19:
                        raise
                    time.sleep(0.25)
        root = self.base / name
        shutil.copytree(self.template, root)
        url = self._url(db)
        write_config(root, url, "crm", url)
        return World(root, url, "crm", url, db)

    def discard(self, world: World) -> None:
        with self.admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{world.db}" WITH (FORCE)'))
        shutil.rmtree(world.root, ignore_errors=True)

    def close(self) -> None:
        self.admin.dispose()


def warm_up(root: Path) -> None:
    """Classify the columns once (cached in the state database), as any earlier run would have."""
    done = lethe(root, "-q", "locate", *SUBJECT_ARGS)
    assert done.returncode == 0, done.stderr


# =========================================================================== snapshots
def _plain(value):
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    if value is None or isinstance(value, (int, str)):
        return value
    return str(value)  # Decimal


def _sorted(rows) -> list[dict]:
    return sorted(rows, key=lambda r: json.dumps(r, sort_keys=True))


def sql_state(world: World) -> dict[str, list[dict]]:
    engine = sa.create_engine(world.store_url)
    try:
        md = sa.MetaData(schema=world.schema)
        md.reflect(engine, only=CRM_TABLES)
        out = {}
        with engine.connect() as conn:
            for name in CRM_TABLES:
                table = md.tables[f"{world.schema}.{name}" if world.schema else name]
                out[name] = _sorted({k: _plain(v) for k, v in r.items()}
                                    for r in conn.execute(sa.select(table)).mappings())
        return out
    finally:
        engine.dispose()


def csv_state(world: World) -> dict[str, bytes]:
    folder = world.root / "exports"
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@dataclass
class Reference:
    sql_before: dict
    csv_before: dict
    sql_after: dict
    csv_after: dict
    window: float  # seconds from the first progress line to the end of an uninterrupted run
    rows: int  # rows affected, as the ledger of an uninterrupted run records them
    actions: int


# =========================================================================== the child
class Run:
    """A child process whose work starts when it writes `marker` on stderr."""

    def __init__(self, argv: list[str], cwd: Path, marker: str = WORK_STARTED):
        self.proc = subprocess.Popen(argv, cwd=cwd, env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True)
        self.marker = marker
        self.stamps: list[tuple[float, str]] = []  # stderr lines and when they came
        self.out: list[str] = []
        self.err: list[str] = []
        self.working = threading.Event()
        self.work_at: float | None = None
        self.pumps = [threading.Thread(target=self._pump, args=(self.proc.stdout, self.out, False), daemon=True),
                      threading.Thread(target=self._pump, args=(self.proc.stderr, self.err, True), daemon=True)]
        for p in self.pumps:
            p.start()

    def _pump(self, stream, sink: list[str], watch: bool) -> None:
        for line in stream:
            if watch and self.work_at is None and self.marker in line:
                self.work_at = time.monotonic()
                self.working.set()
            if watch:
                self.stamps.append((time.monotonic(), line))
            sink.append(line)
        if watch:
            self.working.set()  # ended without working: the caller sees work_at is None

    def kill_after(self, delay: float) -> bool:
        """SIGKILL `delay` seconds after the work started; True when the child was still running then."""
        assert self.working.wait(120), "the erasure did not start within 120 s"
        if self.work_at is not None:
            time.sleep(max(0.0, self.work_at + delay - time.monotonic()))
        running = self.proc.poll() is None
        if running:
            self.proc.send_signal(signal.SIGKILL)
        rc = self.proc.wait(60)
        return running and rc == -signal.SIGKILL

    def finish(self, timeout: float = 300) -> tuple[int, str, str]:
        rc = self.proc.wait(timeout)
        for p in self.pumps:
            p.join(10)
        return rc, "".join(self.out), "".join(self.err)


def erase(world: World) -> Run:
    """`lethe --config stores.yaml erase <her identifiers> --yes`: the command a person runs, and runs again."""
    return Run([sys.executable, "-m", "pii.cli.main", "--config", "stores.yaml", "erase", *SUBJECT_ARGS, "--yes"],
               world.root)


# =========================================================================== checks
def _digits(text) -> str:
    return "".join(c for c in str(text) if c.isdigit())


_HER_EMAIL = re.compile(r"(?<![\w.+-])" + re.escape(EMAIL) + r"(?![\w-])", re.IGNORECASE)  # not malice.smith@


def _mentions_her(value) -> bool:
    return value is not None and (_HER_EMAIL.search(str(value)) is not None or PHONE_DIGITS in _digits(value))


def check_sql_erased(before: dict, after: dict) -> None:
    """Her rows are gone (her member row, still referenced by Bob, is stripped to its keys), mentions of her
    in other people's notes are redacted, and every other row is exactly as it was."""
    her_orders = {r["order_id"] for r in before["orders"] if r["member_id"] == 1}
    assert len(her_orders) == HER_ORDERS + 2
    stripped = {k: None for k in before["members"][0]}
    expected_members = _sorted(r if r["member_id"] != 1 else {**stripped, "member_id": 1, "company_id": r["company_id"],
                                                        "referred_by": r["referred_by"]}
                               for r in before["members"])
    assert after["members"] == expected_members
    assert after["orders"] == [r for r in before["orders"] if r["order_id"] not in her_orders]
    assert after["order_items"] == [r for r in before["order_items"] if r["order_id"] not in her_orders]
    assert after["newsletter"] == [r for r in before["newsletter"] if r["email"] != EMAIL]
    for table in ("companies", "badges"):  # the name-only badge waits for a person's review
        assert after[table] == before[table]
    notes_before = {r["note_id"]: r for r in before["notes"]}
    notes_after = {r["note_id"]: r for r in after["notes"]}
    assert notes_after.keys() == notes_before.keys()
    redacted = 0
    for note_id, old in notes_before.items():
        new = notes_after[note_id]
        if _mentions_her(old["note"]):
            redacted += 1
            assert new["member_id"] == old["member_id"] and "[redacted]" in new["note"], note_id
            assert not _mentions_her(new["note"]), note_id
        else:
            assert new == old, note_id
    assert redacted == 2 + OTHERS // 4
    for table, rows in after.items():
        for row in rows:
            assert not any(_mentions_her(v) for v in row.values()), (table, "her e-mail or phone remains")


def _parse(data: bytes, delimiter: str) -> list[list[str]]:
    text = data.decode("utf-8-sig")
    return [r for r in csv.reader(io.StringIO(text, newline=""), delimiter=delimiter) if r]


def _hashed(value: str) -> str:
    return hmac.new(CHILD_ENV["LETHE_HASH_KEY"].encode(), value.encode("utf-8"), hashlib.sha256).hexdigest()


def check_csv_erased(before: dict[str, bytes], after: dict[str, bytes]) -> None:
    """No temp file and no other new file; every file parses with its header; her records are gone (or, in the
    retained payments file, kept with the e-mail hashed once); mentions of her are redacted; every other
    record is byte for byte what it was, in the same place."""
    assert sorted(after) == sorted(before), "files appeared or vanished (a temp file left behind?)"
    for spec in CSV_FILES:
        data = after[spec.name]
        assert data.startswith(b"\xef\xbb\xbf") == spec.bom
        text = data.decode("utf-8-sig")
        assert text.startswith(spec.header_raw), spec.name
        pos = len(spec.header_raw)
        for raw, values, kind in spec.records:
            if kind == "her" and spec.name != RETAINED_FILE:
                continue  # deleted
            if kind == "other":
                assert text.startswith(raw, pos), (spec.name, "a record of someone else changed", values[0])
                pos += len(raw)
                continue
            end = text.index("\n", pos) + 1 if "\n" in text[pos:] else len(text)
            new = next(csv.reader(io.StringIO(text[pos:end], newline=""), delimiter=spec.delimiter))
            if kind == "mention":
                assert new[:3] == values[:3] and "[redacted]" in new[3] and not _mentions_her(new[3]), spec.name
            else:  # retained with the e-mail hashed, once
                assert new == [values[0], _hashed(values[1]), values[2], values[3]], spec.name
            pos = end
        assert pos == len(text), (spec.name, "unexpected trailing content")
        rows = _parse(data, spec.delimiter)
        assert rows[0] == _parse(spec.header_raw.encode(), spec.delimiter)[0]
        assert not any(_HER_EMAIL.search(v) for r in rows for v in r), spec.name


def _details(row) -> dict:
    d = row["details"]
    return json.loads(d) if isinstance(d, str) else d


def _finished_ids(events, states):
    """Action ids in the audit events that moved actions to one of `states` (one event per action, or one
    per batch)."""
    for e in events:
        for state in states:
            if e["event"] == f"action_{state}":
                yield _details(e)["action_id"]
            elif e["event"] == f"actions_{state}":
                yield from _details(e)["action_ids"]


def check_ledger(world: World, ref: Reference | None) -> dict:
    """One plan carried out, verified, every action done or skipped once; no lock left; identifiers of the
    completed request shredded; plans left by a crash before approval never ran. Returns counts."""
    engine = sa.create_engine(world.ledger_url)
    try:
        with engine.connect() as conn:
            requests = {r["request_id"]: r for r in conn.execute(sa.select(ledger_requests)).mappings()}
            plans = list(conn.execute(sa.select(ledger_plans).order_by(ledger_plans.c.created_at)).mappings())
            secrets = {r[0] for r in conn.execute(sa.select(ledger_request_secrets.c.request_id))}
            locks = list(conn.execute(sa.select(ledger_locks.c.name)))
            suppressed = conn.execute(sa.select(sa.func.count()).select_from(ledger_suppression)).scalar()
            verified = [p for p in plans if p["state"] == "verified"]
            assert verified, "no verified plan"
            main = verified[0]
            planned = list(conn.execute(sa.select(ledger_plan_actions.c.action_id)
                                        .where(ledger_plan_actions.c.plan_id == main["plan_id"])).scalars())
            actions = {r["action_id"]: r for r in conn.execute(
                sa.select(ledger_actions).where(ledger_actions.c.plan_id == main["plan_id"])).mappings()}
            events = list(conn.execute(sa.select(ledger_events).where(
                ledger_events.c.plan_id == main["plan_id"])).mappings())
            broken = conn.execute(sa.select(sa.func.count()).select_from(ledger_events)
                                  .where(ledger_events.c.event == "lock_broken")).scalar()
            rows_of = sa.select(sa.func.coalesce(sa.func.sum(ledger_actions.c.rows), 0))
            later_rows = {p["plan_id"]: conn.execute(rows_of.where(ledger_actions.c.plan_id == p["plan_id"])).scalar()
                          for p in verified[1:]}  # re-runs after a kill that came once all was complete
            # a kill between storing a plan and approving it leaves a plan the next run withdraws (expired)
            ran_expired = {p["plan_id"]: conn.execute(sa.select(sa.func.count()).select_from(ledger_actions).where(
                ledger_actions.c.plan_id == p["plan_id"])).scalar() for p in plans if p["state"] == "expired"}
    finally:
        engine.dispose()
    assert not locks, f"locks left behind: {locks}"
    assert suppressed > 0
    assert {p["state"] for p in plans} <= {"verified", "planned", "expired"}, [p["state"] for p in plans]
    assert all(n == 0 for n in ran_expired.values()), "a withdrawn (expired) plan had carried out actions"
    for p in verified:
        assert requests[p["request_id"]]["status"] == "completed"
        assert p["request_id"] not in secrets, "identifiers of a completed request were not shredded"
    assert all(rows == 0 for rows in later_rows.values()), "a re-run after completion changed something"
    assert len(planned) == main["action_count"] and set(actions) == set(planned)
    assert {a["state"] for a in actions.values()} <= {"done", "skipped"}
    finals = Counter(_finished_ids(events, ("done", "skipped")))
    assert set(finals) == set(planned), "an action was never recorded as finished"
    assert set(finals.values()) == {1}, "an action was recorded as finished twice"
    assert not list(_finished_ids(events, ("failed", "drifted")))
    rows = sum(a["rows"] or 0 for a in actions.values())
    recovered = sum(1 for a in actions.values() if a["detail"] and ("not found any more" in a["detail"]
                                                                    or "interrupted run" in a["detail"]))
    if ref is not None:
        assert main["action_count"] == ref.actions
        assert rows <= ref.rows and (recovered or rows == ref.rows), (rows, ref.rows, recovered)
    orphans = [r for r in requests if not any(p["request_id"] == r and p["state"] == "verified" for p in plans)]
    return {"rows": rows, "actions": main["action_count"], "recovered": recovered, "orphans": len(orphans),
            "orphan_secrets": len(set(orphans) & secrets), "locks_broken": broken, "after_completion": len(later_rows),
            "resumed": sum(e["event"] == "plan_resumed" for e in events)}


def ledger_phase(world: World) -> str:
    """Where the killed run stopped, as the ledger tells it."""
    engine = sa.create_engine(world.ledger_url)
    try:
        with engine.connect() as conn:
            insp = sa.inspect(conn)
            if not insp.has_table("ledger_plans"):
                return "planning"
            requests = {r["request_id"]: r for r in conn.execute(sa.select(ledger_requests)).mappings()}
            plans = [p for p in conn.execute(sa.select(ledger_plans).order_by(ledger_plans.c.created_at)).mappings()
                     if p["state"] != "planned"]
            if not plans:
                return "planning"
            p = plans[-1]
            if p["state"] == "executing":
                final = conn.execute(sa.select(sa.func.count()).select_from(ledger_actions).where(
                    ledger_actions.c.plan_id == p["plan_id"], ledger_actions.c.state.in_(["done", "skipped"]))).scalar()
                return "executing: " + ("0 done" if final == 0 else "all done" if final == p["action_count"]
                                        else "some done")
            if p["state"] == "verified":
                return "verified, completing" if requests[p["request_id"]]["status"] != "completed" else "completed"
            return p["state"]
    finally:
        engine.dispose()


# =========================================================================== trials
@dataclass
class Kill:
    delay: float
    mid_run: bool
    phase: str
    sql_changed: bool
    files_changed: int
    temps: int


@dataclass
class Tally:
    trials: int = 0
    kills: list[Kill] = field(default_factory=list)
    orphans: int = 0
    orphan_secrets: int = 0
    recovered_actions: int = 0
    resumed: int = 0
    locks_broken: int = 0
    after_completion: int = 0

    @property
    def mid_run(self) -> int:
        return sum(k.mid_run for k in self.kills)


def reference_run(backend) -> Reference:
    world = backend.clone("ref")
    try:
        sql_before, csv_before = sql_state(world), csv_state(world)
        run = erase(world)
        rc, out, err = run.finish()
        end = time.monotonic()
        assert rc == 0 and ": verified;" in out, out + err
        assert run.work_at is not None
        sql_after, csv_after = sql_state(world), csv_state(world)
        check_sql_erased(sql_before, sql_after)
        check_csv_erased(csv_before, csv_after)
        counts = check_ledger(world, None)
        assert counts["recovered"] == 0
        return Reference(sql_before, csv_before, sql_after, csv_after, end - run.work_at, counts["rows"],
                         counts["actions"])
    finally:
        backend.discard(world)


def check_after_kill(world: World, ref: Reference) -> tuple[bool, int, int]:
    """The SQL store is all or nothing; every CSV file is the old or the new one (temp files aside)."""
    sql = sql_state(world)
    assert sql == ref.sql_before or sql == ref.sql_after, "the SQL store is half erased"
    files = csv_state(world)
    temps = [n for n in files if TMP_MARK in n]
    assert sorted(n for n in files if n not in temps) == sorted(ref.csv_before)
    changed = 0
    for name, data in files.items():
        if name in temps:
            continue
        assert data in (ref.csv_before[name], ref.csv_after[name]), f"{name} is neither the old nor the new file"
        changed += data != ref.csv_before[name]
    return sql != ref.sql_before, changed, len(temps)


def delays_for(i: int, window: float) -> list[float]:
    """Kill points spread evenly over the work, up to the process's exit (a golden-ratio sequence); two
    trials in three also kill the run that resumes."""
    span = window
    first = span * ((0.05 + i * GOLDEN) % 1.0)
    if i % 3 == 0:
        return [first]
    return [first, span * 0.7 * ((0.4 + i * GOLDEN * GOLDEN) % 1.0)]  # a resuming run has less to do


def one_trial(backend, i: int, ref: Reference) -> tuple[list[Kill], dict]:
    world = backend.clone(f"t{i}")
    try:
        kills = []
        for delay in delays_for(i, ref.window):
            run = erase(world)
            mid = run.kill_after(delay)
            rc, out, err = run.finish()
            assert mid or rc == 0, f"trial {i}: the run failed on its own (exit {rc}): {err[-2000:]}"
            sql_changed, files_changed, temps = check_after_kill(world, ref)
            kills.append(Kill(delay, mid, ledger_phase(world) if mid else "finished before the kill",
                              sql_changed, files_changed, temps))
        rc, out, err = erase(world).finish()
        assert rc == 0, f"trial {i}: the run after the kill failed (exit {rc}): {out[-1000:]} {err[-2000:]}"
        assert ": verified;" in out and "0 erasable locations remain" in out, out
        sql, files = sql_state(world), csv_state(world)
        check_sql_erased(ref.sql_before, sql)
        check_csv_erased(ref.csv_before, files)
        assert sql == ref.sql_after, f"trial {i}: the SQL store differs from an uninterrupted run's"
        assert files == ref.csv_after, f"trial {i}: the CSV files differ from an uninterrupted run's"
        return kills, check_ledger(world, ref)
    finally:
        backend.discard(world)


def run_trials(backend) -> Tally:
    ref = reference_run(backend)
    tally = Tally()
    lock = threading.Lock()
    next_index = iter(range(MAX_TRIALS))

    def worker() -> None:
        while True:
            with lock:
                if tally.trials >= MIN_TRIALS and tally.mid_run >= TARGET_MID_KILLS:
                    return
                i = next(next_index, None)
                if i is None:
                    return
                tally.trials += 1
            kills, counts = one_trial(backend, i, ref)
            with lock:
                tally.kills.extend(kills)
                tally.orphans += counts["orphans"]
                tally.orphan_secrets += counts["orphan_secrets"]
                tally.recovered_actions += counts["recovered"]
                tally.resumed += counts["resumed"]
                tally.locks_broken += counts["locks_broken"]
                tally.after_completion += counts["after_completion"]

    with ThreadPoolExecutor(WORKERS) as pool:
        for f in [pool.submit(worker) for _ in range(WORKERS)]:
            f.result()
    report(backend.name, ref, tally)
    assert tally.mid_run >= TARGET_MID_KILLS, f"only {tally.mid_run} kills landed mid-run in {tally.trials} trials"
    mid = [k for k in tally.kills if k.mid_run]
    assert any(k.phase.startswith("executing") for k in mid), "no kill landed during execution"
    return tally


def report(name: str, ref: Reference, tally: Tally) -> None:
    mid = [k for k in tally.kills if k.mid_run]
    phases = Counter(k.phase for k in mid)
    print(f"\n[crash {name}] {tally.trials} trials, {len(tally.kills)} SIGKILLs, {len(mid)} mid-run "
          f"({len(tally.kills) - len(mid)} landed after the run had finished); work window {ref.window:.2f}s, "
          f"{ref.actions} actions, {ref.rows} rows")
    print(f"[crash {name}] mid-run kills by ledger phase: " + ", ".join(f"{p}: {n}" for p, n in sorted(phases.items())))
    print(f"[crash {name}] mid-run kills after the SQL commit: {sum(k.sql_changed for k in mid)}; with some CSV "
          f"files rewritten: {sum(k.files_changed > 0 for k in mid)}; with every CSV file rewritten: "
          f"{sum(k.files_changed == len(CSV_FILES) for k in mid)}; leaving a CSV temp file: "
          f"{sum(k.temps > 0 for k in mid)}")
    print(f"[crash {name}] plans resumed while executing: {tally.resumed}; locks of killed runs broken: "
          f"{tally.locks_broken}; actions found already carried out on resume: {tally.recovered_actions}; "
          f"re-runs after a kill that came once all was complete (changed nothing): {tally.after_completion}")
    print(f"[crash {name}] requests left unapproved by a kill during planning (never executed; the re-run made "
          f"a new one): {tally.orphans}, still holding their encrypted identifiers: {tally.orphan_secrets}")


@pytest.fixture(scope="module")
def sqlite_backend(tmp_path_factory):
    backend = SqliteBackend(tmp_path_factory.mktemp("crash-sqlite"))
    backend.prepare()
    return backend


def test_when_erase_is_killed_at_any_moment_on_sqlite_then_running_it_again_finishes_it_exactly_once(sqlite_backend):
    run_trials(sqlite_backend)


def test_when_erase_is_killed_at_any_moment_on_postgresql_then_running_it_again_finishes_it_exactly_once(
        postgres_url, tmp_path):
    backend = PostgresBackend(tmp_path, postgres_url)
    try:
        backend.prepare()
        run_trials(backend)
    finally:
        backend.close()


# =========================================================================== one exact, rare moment
@pytest.mark.parametrize("action", ["retain", "anonymise"])
def test_when_killed_right_after_a_kept_row_was_rewritten_then_it_is_changed_once_and_verified(sqlite_backend,
                                                                                                action):
    """Her payment rows stay (retained, or anonymised) with the e-mail hashed: still hers by name and phone.
    A kill right after their file is rewritten, before the ledger records it, must not make the re-run hash
    them again, nor count them as left over; and neither may one more run after completion (a kill just
    before the process exits cannot be told apart from that)."""
    def clone(name: str) -> World:
        world = sqlite_backend.clone(f"{name}-{action}")
        if action == "anonymise":
            policy = "\n".join(l for l in POLICY_YAML.splitlines() if not l.strip().startswith(("reason", "legal")))
            (world.root / "policy.yaml").write_text(policy.replace("action: retain", "action: anonymise") + "\n")
        return world

    ref = clone("ref")
    crashed = clone("crashed")
    try:
        rc, out, err = erase(ref).finish()
        assert rc == 0 and ": verified;" in out, out + err
        expected_sql, expected_csv = sql_state(ref), csv_state(ref)
        before_sql, before_csv = sql_state(crashed), csv_state(crashed)
        check_csv_erased(before_csv, expected_csv)

        killed = subprocess.run([sys.executable, str(REPO / "tests" / "crash_child.py"), "kill-after-rewrite",
                                 RETAINED_FILE, "--config", "stores.yaml", "erase", *SUBJECT_ARGS, "--yes"],
                                cwd=crashed.root, env=child_env(), capture_output=True, text=True, timeout=300)
        assert killed.returncode == -signal.SIGKILL, killed.stderr
        assert ledger_phase(crashed).startswith("executing")
        files = csv_state(crashed)
        assert files[RETAINED_FILE] == expected_csv[RETAINED_FILE]  # rewritten, hashed once
        assert sql_state(crashed) in (before_sql, expected_sql)

        for run in ("resume", "one more run after completion"):
            rc, out, err = erase(crashed).finish()
            assert rc == 0, f"{run}: exit {rc}: {out} {err}"
            assert ": verified;" in out and "0 erasable locations remain" in out, f"{run}: {out}"
            assert csv_state(crashed) == expected_csv, f"{run}: the kept rows were changed again"
            assert sql_state(crashed) == expected_sql
            check_sql_erased(before_sql, expected_sql)
            check_ledger(crashed, None)
    finally:
        sqlite_backend.discard(ref)
        sqlite_backend.discard(crashed)


# =========================================================================== CSV rewrites killed mid-file
BIG_ROWS = 25_000
BIG_FILES = 3


def _big_file(n: int) -> bytes:
    lines = ["id,name,email,phone,comment\n"]
    her = {7, BIG_ROWS // 2, BIG_ROWS - 3}
    for i in range(BIG_ROWS):
        if i in her:
            lines.append(f"{i},Alice Smith,{EMAIL},+44 20 7946 0123,file {n}\n")
        elif i % 9000 == 11:
            lines.append(f'{i},Person {i},p{i}@example.net,,"wrote to {EMAIL}, twice"\n')
        else:
            lines.append(f"{i},Person {i},p{i}@example.net,020 7946 {1000 + i % 8000},{'lorem ipsum ' * 4}\n")
    return "".join(lines).encode("utf-8")


def test_when_a_csv_rewrite_is_killed_then_each_file_is_the_old_or_the_new_one_and_a_rerun_finishes(tmp_path):
    from tests.crash_child import erase_csv_folder

    originals = {f"big_{n}.csv": _big_file(n) for n in range(BIG_FILES)}

    def fresh(name: str) -> Path:
        folder = tmp_path / name / "exports"
        folder.mkdir(parents=True)
        for f, data in originals.items():
            (folder / f).write_bytes(data)
        return folder

    def child(folder: Path) -> Run:
        return Run([sys.executable, str(REPO / "tests" / "crash_child.py"), str(folder)], tmp_path, "applying")

    windows = []
    for attempt in range(2):  # the first run pays cold caches: the second gives the window kills aim at
        ref_folder = fresh(f"ref{attempt}")
        run = child(ref_folder)
        rc, _, err = run.finish()
        assert rc == 0 and "applying" in err, err
        windows.append(next(t for t, line in run.stamps if line.startswith("done")) - run.work_at)  # the rewrites
    window = min(windows)
    expected = {f: (ref_folder / f).read_bytes() for f in originals}
    assert all(expected[f] != originals[f] for f in originals)

    kills = 10
    mid_rewrite = mixed = finished = 0
    for k in range(kills):
        folder = fresh(f"k{k}")
        run = child(folder)
        if not run.kill_after(window * (0.05 + 0.9 * k / (kills - 1))):
            finished += 1
        run.finish()
        names = sorted(p.name for p in folder.iterdir())
        temps = [n for n in names if TMP_MARK in n]
        assert sorted(set(names) - set(temps)) == sorted(originals)
        states = []
        for f in originals:
            data = (folder / f).read_bytes()
            assert data in (originals[f], expected[f]), f"{f} is neither the old nor the new file"
            states.append(data == expected[f])
        mid_rewrite += bool(temps)
        mixed += 0 < sum(states) < len(states)
        erase_csv_folder(folder)  # run again: locate afresh, rewrite what is left
        assert sorted(p.name for p in folder.iterdir()) == sorted(originals), "a temp file was left behind"
        for f in originals:
            assert (folder / f).read_bytes() == expected[f]
        shutil.rmtree(folder.parent)
    print(f"\n[crash csv] {kills} SIGKILLs over a {window:.2f}s rewrite of {BIG_FILES} files of {BIG_ROWS} rows: "
          f"{mid_rewrite} left a temp file (killed mid-file), {mixed} left some files rewritten and others not, "
          f"{finished} landed after the child had finished; every file was the old or the new one")
    assert mid_rewrite >= kills // 2, "too few kills landed inside a rewrite"
