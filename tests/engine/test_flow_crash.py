"""Kill -9 at any moment of a special flow (retention, received in error), run the same command again, and it
resumes: nothing missed, nothing done twice, no half-written file, no lock left.

The world: a SQLite CRM with `enquiries` (3,000 rows; a typed DATE column `received_on` and a text date
`logged_at` written five ways, a few unreadable) and `members` (no rule covers it), and a folder of CSV
exports: three visit logs in different dialects (`,` LF; `;` CRLF with a BOM and day-first dates; `,` CRLF
with no final line ending), a file no rule covers, and `bad.csv`, received in error. stores.yaml holds a
retention schedule: delete enquiries two years after `received_on` (typed date, pushed down), anonymise
for statistics (e-mail and name nulled) three years after `logged_at` (text dates parsed), delete visits
three months after `visited_at`.

Each trial copies the world and runs the commands a person runs, `lethe --config stores.yaml retention
--date 2026-11-22 --yes` and then `lethe ... received-in-error --store exports --file bad.csv --yes`. A
command is SIGKILLed at a moment spread over an uninterrupted run (timed from the first line the run
prints; the windows come from a reference run), or at one exact, otherwise rare moment
(tests/flow_crash_child.py: right after a store committed a change or a file was renamed or dropped, before
the ledger heard of it; in the middle of a CSV rewrite, its temp file written but not renamed; right before a
stored plan is approved). The killed command is run again (killed again in some trials; at most two kills
per command), then once more without a kill, which must finish.

After every kill: the SQL store is in one of the states between whole rules (each rule's changes are one
transaction), and each CSV file is byte for byte the original or the finished one (temp files aside).
At the end: the stores equal those of an uninterrupted reference run (and the expectations computed from
the world: exactly the expired rows deleted, the expired statistics rows anonymised, every other row and
file byte-identical); no temp file in the CSV folder; the ledger holds no lock; every plan that carried
out actions is verified (plans left by a kill before approval are `planned`/`expired` with no action
recorded); each rule (and the received-in-error source) has exactly one verified plan with actions, as
many as the reference run's, each recorded done exactly once across the runs (audit events); the
suppression list equals the reference run's.

Kill statistics (counts only) print with ``pytest -s``.
"""
from __future__ import annotations

import csv
import datetime as dt
import io
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

from connectors.fileformat import TMP_MARK
from pii.ledger import (
    ledger_actions, ledger_events, ledger_locks, ledger_plan_actions, ledger_plans, ledger_request_secrets,
    ledger_requests, ledger_suppression,
)

REPO = Path(__file__).resolve().parents[2]
CHILD = REPO / "tests" / "flow_crash_child.py"
LEDGER_KEY = "flow-crash-test-ledger-key-" + "k" * 24

RUN_DATE = dt.date(2026, 11, 22)
CUT_DELETE = dt.date(2024, 11, 22)   # enquiries: 2y after received_on
CUT_STATS = dt.date(2023, 11, 22)    # enquiries: anonymised 3y after logged_at
CUT_VISITS = dt.date(2026, 8, 22)    # visits: 3m after visited_at
ENQUIRIES, MEMBERS = 3000, 300
BAD_FILE = "bad.csv"

RETENTION = "retention"
IN_ERROR = "received-in-error"
COMMANDS = {RETENTION: ["retention", "--date", RUN_DATE.isoformat(), "--yes"],
            IN_ERROR: ["received-in-error", "--store", "exports", "--file", BAD_FILE, "--yes"]}

TRIALS = 8
WORKERS = 2
GOLDEN = 0.6180339887

STORES_YAML = """\
stores:
  crm:
    kind: sql
    url: sqlite:///crm.db
  exports:
    kind: csv
    path: exports
ledger: sqlite:///ledger.db
retention:
  - name: enquiries-expired
    store: crm
    match: enquiries
    date: received_on
    period: 2y
    category: Enquiries
  - name: enquiries-statistics
    store: crm
    match: enquiries
    date: logged_at
    period: 3y
    category: Enquiries (kept for statistics)
    action: anonymise
    anonymise: {email: null, full_name: null}
  - name: visits
    store: exports
    match: "visits_*.csv"
    date: visited_at
    period: 3m
    category: Website visits
"""


# =========================================================================== the world
def _text_date(d: dt.date, style: int) -> str:
    return (f"{d.isoformat()}T12:00:00", d.isoformat(), d.strftime("%Y/%m/%d"), d.strftime("%d/%m/%Y"),
            d.strftime("%Y%m%d"))[style % 5]


def _enquiries() -> list[tuple]:
    """(enquiry_id, full_name, email, topic, received_on, logged_at, expired, statistics)."""
    rows = []
    for i in range(1, ENQUIRIES + 1):
        expired = i % 3 == 0
        received = (CUT_DELETE - dt.timedelta(days=10 + (i * 7) % 900) if expired
                    else CUT_DELETE + dt.timedelta(days=5 + (i * 11) % 700))
        if i % 101 == 0:
            logged, old = "n/a", False  # unreadable: never selected
        elif i % 103 == 0:
            logged, old = "", False
        else:
            old = i % 5 == 1
            day = (CUT_STATS - dt.timedelta(days=10 + (i * 13) % 400) if old
                   else CUT_STATS + dt.timedelta(days=10 + (i * 17) % 1000))
            logged = _text_date(day, i // 5)
        rows.append((i, f"Person {i}", f"person{i}@example.net", ("membership", "events", "training")[i % 3],
                     received.isoformat(), logged, expired, old and not expired))
    return rows


def _line(values: list[str], delimiter: str, end: str) -> str:
    buf = io.StringIO()
    csv.writer(buf, delimiter=delimiter, lineterminator=end).writerow(values)
    return buf.getvalue()


@dataclass
class CsvSpec:
    name: str
    delimiter: str
    end: str
    bom: bool
    header: str
    records: list[tuple[str, bool]]  # (raw text, expired)

    def data(self, *, purged: bool) -> bytes:
        text = self.header + "".join(raw for raw, expired in self.records if not (purged and expired))
        return (b"\xef\xbb\xbf" if self.bom else b"") + text.encode("utf-8")


def _visits(k: int, rows: int, delimiter: str, end: str, bom: bool, dates: str, final_end: bool) -> CsvSpec:
    header = _line(["visit_id", "name", "email", "visited_at", "page"], delimiter, end)
    records = []
    for n in range(rows):
        day = RUN_DATE - dt.timedelta(days=(n * 7 + k * 3) % 200)
        if n % 97 == 5:
            when, expired = "", False
        elif n % 89 == 7:
            when, expired = "unknown", False
        else:
            when = {"iso": day.isoformat(), "dmy": day.strftime("%d/%m/%Y"),
                    "stamp": f"{day.isoformat()}T08:30:00Z"}[dates]
            expired = day < CUT_VISITS
        page = "/a page, with a comma" if n % 50 == 3 else "two\nlines" if n % 150 == 9 else f"/page/{n % 40}"
        term = end if (final_end or n < rows - 1) else ""
        records.append((_line([str(n), f"Visitor {k}-{n}", f"v{k}-{n}@example.net", when, page], delimiter, term),
                        expired))
    return CsvSpec(f"visits_{k}.csv", delimiter, end, bom, header, records)


def _plain_file(name: str, header: list[str], rows: list[list[str]]) -> CsvSpec:
    return CsvSpec(name, ",", "\n", False, _line(header, ",", "\n"), [(_line(r, ",", "\n"), False) for r in rows])


VISITS = [_visits(0, 2000, ",", "\n", False, "iso", True),
          _visits(1, 2000, ";", "\r\n", True, "dmy", True),
          _visits(2, 1500, ",", "\r\n", False, "stamp", False)]
NOTES = _plain_file("notes.csv", ["name", "email", "visited_at", "note"],
                    [[f"Note {n}", f"note{n}@example.org", "2020-01-01", f"note {n}"] for n in range(60)])
BAD = _plain_file(BAD_FILE, ["name", "email", "phone"],
                  [[f"Wrong {n}", f"wrong{n}@example.org", f"020 7946 {5000 + n}"] for n in range(400)])
ENQUIRY_ROWS = _enquiries()


def _members() -> list[tuple]:
    return [(m, f"Member {m}", f"member{m}@example.net", (RUN_DATE - dt.timedelta(days=3000 + m)).isoformat())
            for m in range(1, MEMBERS + 1)]


@dataclass
class Expected:
    """The stores at the points a kill may leave them, computed from the world (not from a run)."""

    sql: list[dict]        # before, after the delete rule, after the anonymise rule
    files: list[dict]      # before, after retention, after received-in-error


def expected_states() -> Expected:
    members = _members()
    before = [r[:6] for r in ENQUIRY_ROWS]
    deleted = [r[:6] for r in ENQUIRY_ROWS if not r[6]]
    anonymised = [(r[0], None, None, *r[3:6]) if r[7] else r[:6] for r in ENQUIRY_ROWS if not r[6]]
    sql = [{"enquiries": rows, "members": members} for rows in (before, deleted, anonymised)]
    files0 = {f.name: f.data(purged=False) for f in VISITS + [NOTES, BAD]}
    files1 = {**files0, **{f.name: f.data(purged=True) for f in VISITS}}
    files2 = {k: v for k, v in files1.items() if k != BAD_FILE}
    return Expected(sql, [files0, files1, files2])


def build_world(root: Path) -> None:
    root.mkdir(parents=True)
    con = sqlite3.connect(root / "crm.db")
    with con:
        con.execute("CREATE TABLE enquiries (enquiry_id INTEGER PRIMARY KEY, full_name VARCHAR(80), "
                    "email VARCHAR(120), topic VARCHAR(40), received_on DATE, logged_at VARCHAR(40))")
        con.execute("CREATE INDEX ix_enquiries_received_on ON enquiries (received_on)")
        con.execute("CREATE TABLE members (member_id INTEGER PRIMARY KEY, full_name VARCHAR(80), "
                    "email VARCHAR(120), joined_on DATE)")
        con.executemany("INSERT INTO enquiries VALUES (?, ?, ?, ?, ?, ?)", [r[:6] for r in ENQUIRY_ROWS])
        con.executemany("INSERT INTO members VALUES (?, ?, ?, ?)", _members())
    con.close()
    exports = root / "exports"
    exports.mkdir()
    for spec in VISITS + [NOTES, BAD]:
        (exports / spec.name).write_bytes(spec.data(purged=False))
    (root / "stores.yaml").write_text(STORES_YAML, encoding="utf-8")


def child_env() -> dict:
    env = dict(os.environ, LETHE_LEDGER_KEY=LEDGER_KEY, PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join([str(REPO)] + [p for p in [env.get("PYTHONPATH")] if p])
    env.pop("LETHE_CONFIG", None)
    return env


def lethe_argv(*args: str) -> list[str]:
    script = Path(sys.executable).with_name("lethe")  # .venv/bin/lethe, the command a person runs
    head = [str(script)] if script.exists() else [sys.executable, "-m", "pii.cli.main"]
    return [*head, "--config", "stores.yaml", *args]


def warm_up(root: Path) -> None:
    """Classify the columns once (cached in the state database), as any earlier run would have."""
    done = subprocess.run(lethe_argv("-q", "locate", "--email", "nobody@example.invalid"), cwd=root,
                          env=child_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr


# =========================================================================== snapshots
def sql_state(root: Path) -> dict:
    con = sqlite3.connect(root / "crm.db")
    try:
        return {"enquiries": con.execute("SELECT * FROM enquiries ORDER BY enquiry_id").fetchall(),
                "members": con.execute("SELECT * FROM members ORDER BY member_id").fetchall()}
    finally:
        con.close()


def file_state(root: Path) -> dict[str, bytes]:
    folder = root / "exports"
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def temp_names(files: dict) -> list[str]:
    return [n for n in files if TMP_MARK in n]


# =========================================================================== the child
class Run:
    """A child process; `first_at` is when it printed its first line (interpreter start-up is over)."""

    def __init__(self, argv: list[str], cwd: Path):
        self.proc = subprocess.Popen(argv, cwd=cwd, env=child_env(), stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        self.first_at: float | None = None
        self.started = threading.Event()
        self.lock = threading.Lock()
        self.out: list[str] = []
        self.err: list[str] = []
        self.pumps = [threading.Thread(target=self._pump, args=(s, sink), daemon=True)
                      for s, sink in ((self.proc.stdout, self.out), (self.proc.stderr, self.err))]
        for p in self.pumps:
            p.start()

    def _pump(self, stream, sink: list[str]) -> None:
        for line in stream:
            with self.lock:
                if self.first_at is None:
                    self.first_at = time.monotonic()
            self.started.set()
            sink.append(line)
        self.started.set()  # ended without a line: first_at stays None

    def kill_after(self, delay: float) -> bool:
        """SIGKILL `delay` seconds after the first line; True when the child was still running then."""
        assert self.started.wait(120), "the run printed nothing within 120 s"
        if self.first_at is not None:
            time.sleep(max(0.0, self.first_at + delay - time.monotonic()))
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


def lethe(root: Path, command: str) -> Run:
    return Run(lethe_argv(*COMMANDS[command]), root)


def lethe_killed_at(root: Path, command: str, moment: str) -> Run:
    return Run([sys.executable, str(CHILD), moment, "--config", "stores.yaml", *COMMANDS[command]], root)


# =========================================================================== the ledger
def _details(row) -> dict:
    d = row["details"]
    return json.loads(d) if isinstance(d, str) else d


def _finished_ids(events, states):
    """Action ids the audit events moved to one of `states` (one event per action, or one per batch)."""
    for e in events:
        for state in states:
            if e["event"] == f"action_{state}":
                yield _details(e)["action_id"]
            elif e["event"] == f"actions_{state}":
                yield from _details(e)["action_ids"]


@dataclass
class LedgerFacts:
    requests: dict
    plans: list
    plan_actions: dict   # plan_id -> set of action ids
    actions: dict        # plan_id -> action_id -> row
    events: dict         # plan_id -> events
    locks: list
    secrets: set
    suppression: set
    locks_broken: int


def ledger_facts(root: Path) -> LedgerFacts:
    engine = sa.create_engine(f"sqlite:///{root / 'ledger.db'}")
    try:
        with engine.connect() as conn:
            if not sa.inspect(conn).has_table("ledger_plans"):
                return LedgerFacts({}, [], {}, {}, {}, [], set(), set(), 0)
            requests = {r["request_id"]: dict(r) for r in conn.execute(sa.select(ledger_requests)).mappings()}
            plans = [dict(p) for p in conn.execute(sa.select(ledger_plans).order_by(ledger_plans.c.created_at,
                                                                                    ledger_plans.c.plan_id)).mappings()]
            for p in plans:
                plan = json.loads(p["plan_json"])
                rule = (plan.get("selection") or {}).get("description", {}).get("rule")
                p["group"] = f"rule {rule}" if rule else str(plan.get("flow"))
            plan_actions, actions, events = defaultdict(set), defaultdict(dict), defaultdict(list)
            for r in conn.execute(sa.select(ledger_plan_actions)).mappings():
                plan_actions[r["plan_id"]].add(r["action_id"])
            for r in conn.execute(sa.select(ledger_actions)).mappings():
                actions[r["plan_id"]][r["action_id"]] = dict(r)
            for e in conn.execute(sa.select(ledger_events).order_by(ledger_events.c.event_id)).mappings():
                events[e["plan_id"]].append(dict(e))
            locks = list(conn.execute(sa.select(ledger_locks.c.name)).scalars())
            secrets = set(conn.execute(sa.select(ledger_request_secrets.c.request_id)).scalars())
            s = ledger_suppression
            suppression = {tuple(r) for r in conn.execute(sa.select(s.c.kind, s.c.hash, s.c.reason))}
            broken = conn.execute(sa.select(sa.func.count()).select_from(ledger_events)
                                  .where(ledger_events.c.event == "lock_broken")).scalar()
    finally:
        engine.dispose()
    return LedgerFacts(requests, plans, plan_actions, actions, events, locks, secrets, suppression, broken)


def plan_marks(facts: LedgerFacts) -> dict[str, tuple]:
    """Per plan: its state and how many of its actions are recorded finished (to see what a run changed)."""
    out = {}
    for p in facts.plans:
        finished = sum(a["state"] in ("done", "skipped") for a in facts.actions[p["plan_id"]].values())
        out[p["plan_id"]] = (p["state"], finished, facts.requests[p["request_id"]]["status"])
    return out


def phase_of(before: dict, facts: LedgerFacts) -> str:
    """Where a killed run stopped, as the ledger tells it: the last plan the run stored or moved on."""
    after = plan_marks(facts)
    moved = [p for p in facts.plans if after[p["plan_id"]] != before.get(p["plan_id"])]
    if not moved:
        return "no plan stored or moved yet"
    p = moved[-1]
    state, finished, status = after[p["plan_id"]]
    where = p["group"]
    if state in ("executing", "approved") and p["action_count"]:
        done = "none" if finished == 0 else "all" if finished == p["action_count"] else "some"
        return f"{where}: {state}, {done} of its actions recorded"
    if state == "verified":
        return f"{where}: verified, request {'completed' if status == 'completed' else 'not yet completed'}"
    return f"{where}: {state}"


def check_ledger(facts: LedgerFacts, ref: "Reference | None") -> dict:
    """No lock; every plan that carried out actions verified and its request completed (identifiers shredded);
    plans left before approval ran nothing; one verified plan with actions per rule and per source, each action
    recorded finished exactly once; the same as the reference run. Returns per-group facts and counts."""
    assert not facts.locks, f"{len(facts.locks)} locks left behind in ledger_locks"
    states = Counter(p["state"] for p in facts.plans)
    assert set(states) <= {"verified", "planned", "expired"}, f"plans left unfinished: {dict(states)}"
    groups: dict[str, list[dict]] = defaultdict(list)
    recovered = resumed = 0
    for p in facts.plans:
        pid = p["plan_id"]
        if p["state"] != "verified":
            assert not facts.actions[pid], f"a {p['state']} plan ({p['group']}) has recorded actions"
            assert not list(_finished_ids(facts.events[pid], ("done", "skipped", "started")))
            continue
        assert facts.requests[p["request_id"]]["status"] == "completed", f"{p['group']}: request not completed"
        assert p["request_id"] not in facts.secrets, f"{p['group']}: identifiers of a completed request kept"
        planned = facts.plan_actions[pid]
        assert len(planned) == p["action_count"] and set(facts.actions[pid]) == planned, p["group"]
        assert {a["state"] for a in facts.actions[pid].values()} <= {"done", "skipped"}, p["group"]
        finals = Counter(_finished_ids(facts.events[pid], ("done", "skipped")))
        assert set(finals) == planned, f"{p['group']}: an action was never recorded as finished"
        assert set(finals.values()) <= {1}, f"{p['group']}: an action was recorded as finished twice"
        assert not list(_finished_ids(facts.events[pid], ("failed", "drifted"))), p["group"]
        resumed += sum(e["event"] == "plan_resumed" for e in facts.events[pid])
        if p["action_count"]:
            rows = sum(a["rows"] or 0 for a in facts.actions[pid].values())
            back = sum(1 for a in facts.actions[pid].values() if a["detail"] and (
                "not found any more" in a["detail"] or "interrupted run" in a["detail"]))
            recovered += back
            groups[p["group"]].append({"actions": p["action_count"], "rows": rows, "recovered": back})
    for group, with_actions in groups.items():
        assert len(with_actions) == 1, f"{group}: {len(with_actions)} verified plans carried out actions " \
                                       f"(a re-run planned again what an earlier plan had done)"
    facts_by_group = {g: v[0] for g, v in groups.items()}
    if ref is not None:
        assert sorted(facts_by_group) == sorted(ref.groups), (sorted(facts_by_group), sorted(ref.groups))
        for g, got in facts_by_group.items():
            want = ref.groups[g]
            assert got["actions"] == want["actions"], f"{g}: {got['actions']} actions, reference {want['actions']}"
            assert got["rows"] <= want["rows"] and (got["recovered"] or got["rows"] == want["rows"]), \
                f"{g}: {got['rows']} rows recorded, reference {want['rows']}, {got['recovered']} recovered"
        assert facts.suppression == ref.suppression, "the suppression list differs from the reference run's"
    orphans = [r for r in facts.requests if not any(p["request_id"] == r and p["state"] == "verified"
                                                    for p in facts.plans)]
    return {"groups": facts_by_group, "recovered": recovered, "resumed": resumed, "unapproved": states["planned"] + states["expired"],
            "orphans": len(orphans), "orphan_secrets": len(set(orphans) & facts.secrets),
            "locks_broken": facts.locks_broken}


# =========================================================================== reference and trials
@dataclass
class Reference:
    windows: dict[str, float]   # seconds from the first line to the end of an uninterrupted run
    sql: dict
    files: dict
    groups: dict
    suppression: set


def reference_run(template: Path, base: Path, expected: Expected) -> Reference:
    root = base / "ref"
    shutil.copytree(template, root)
    assert sql_state(root) == expected.sql[0] and file_state(root) == expected.files[0]
    windows = {}
    for command, stage in ((RETENTION, 1), (IN_ERROR, 2)):
        run = lethe(root, command)
        rc, out, err = run.finish()
        windows[command] = time.monotonic() - run.first_at
        assert rc == 0, f"{command}: exit {rc}: {out[-2000:]} {err[-2000:]}"
        assert sql_state(root) == expected.sql[2], f"{command}: the CRM is not as the schedule says"
        assert file_state(root) == expected.files[stage], f"{command}: the exports are not as expected"
    for command in (RETENTION, IN_ERROR):  # once more after completion: nothing to change
        rc, out, err = lethe(root, command).finish()
        assert rc == 0 and "nothing to change" in out, out + err
    assert sql_state(root) == expected.sql[2] and file_state(root) == expected.files[2]
    facts = ledger_facts(root)
    counts = check_ledger(facts, None)
    assert counts["recovered"] == 0 and counts["unapproved"] == 0
    assert sorted(counts["groups"]) == ["received_in_error", "rule enquiries-expired", "rule enquiries-statistics",
                                        "rule visits"]
    assert facts.suppression  # received in error: the file's addresses and phones
    ref = Reference(windows, sql_state(root), file_state(root), counts["groups"], facts.suppression)
    shutil.rmtree(root)
    return ref


@dataclass
class Kill:
    command: str
    how: str            # "timed" or an exact moment
    mid_run: bool
    phase: str
    temps: int


def kill_plan(i: int) -> dict[str, list]:
    """What kills each command of trial `i`: a fraction of the command's window (timed) or an exact moment.
    Timed kills are spread over the window by a golden-ratio sequence; a resuming run has less to do."""
    first = (0.03 + i * GOLDEN) % 1.0
    second = 0.7 * ((0.4 + i * GOLDEN * GOLDEN) % 1.0)
    retention = {0: ["done:crm:1"],                 # the delete rule's transaction committed, ledger not told
                 1: ["done:crm:2", second],         # the anonymise rule's transaction committed, ledger not told
                 2: ["done:exports:2"],             # the second visit log renamed into place, ledger not told
                 3: ["approve:2", second],          # the anonymise rule's plan stored, not yet approved
                 4: ["rewrite:2", second],          # the second visit log's temp file written, not renamed
                 }.get(i, [first] if i % 3 == 0 else [first, second])
    in_error = {1: ["done:exports:1"],              # the file dropped, ledger not told
                2: ["shred:1"],                     # verified, sealed data shredded, request not yet completed
                3: [(0.1 + i * GOLDEN) % 1.0],
                5: ["approve:1"],                   # the plan stored, not yet approved
                7: [(0.1 + i * GOLDEN) % 1.0, 0.5 * second]}.get(i, [])
    return {RETENTION: retention, IN_ERROR: in_error}


def check_after_kill(root: Path, command: str, expected: Expected) -> int:
    """Whole rules or nothing in the CRM; every file the old or the new one; returns the temp files seen."""
    sql = sql_state(root)
    files = file_state(root)
    temps = temp_names(files)
    kept = {n: b for n, b in files.items() if n not in temps}
    if command == RETENTION:
        assert sql in expected.sql, "the CRM is in none of the states between whole rules"
        old, new = expected.files[0], expected.files[1]
    else:
        assert sql == expected.sql[2], "received-in-error changed the CRM"
        old, new = expected.files[1], expected.files[2]
    assert set(new) <= set(kept) <= set(old), f"files appeared or vanished: {sorted(set(kept) ^ set(old))}"
    for name, data in kept.items():
        assert data == old[name] or data == new.get(name), f"{name} is neither the old nor the new file"
    for t in temps:
        assert t.split(TMP_MARK)[0].lstrip(".") in old, "a temp file of an unknown file"
    return len(temps)


def one_trial(template: Path, base: Path, i: int, ref: Reference, expected: Expected) -> tuple[list[Kill], dict]:
    root = base / f"t{i}"
    shutil.copytree(template, root)
    kills: list[Kill] = []
    resumed_lines = 0
    for command, specs in kill_plan(i).items():
        for spec in specs:
            before = plan_marks(ledger_facts(root))
            if isinstance(spec, str):
                run = lethe_killed_at(root, command, spec)
                rc, out, err = run.finish()
                assert rc == -signal.SIGKILL, f"trial {i}: {command} never reached the moment {spec} " \
                                              f"(exit {rc}): {err[-2000:]}"
                mid, how = True, spec.rsplit(":", 1)[0]
            else:
                run = lethe(root, command)
                mid = run.kill_after(spec * ref.windows[command])
                rc, out, err = run.finish()
                assert mid or rc == 0, f"trial {i}: {command} failed on its own (exit {rc}): {err[-2000:]}"
                how = "timed"
            resumed_lines += out.count("resuming plan")
            temps = check_after_kill(root, command, expected)
            kills.append(Kill(command, how, mid, phase_of(before, ledger_facts(root)) if mid else "finished", temps))
        rc, out, err = lethe(root, command).finish()
        assert rc == 0, f"trial {i}: {command} after the kill(s) failed (exit {rc}): {out[-1500:]} {err[-2000:]}"
        resumed_lines += out.count("resuming plan")
    sql, files = sql_state(root), file_state(root)
    assert not temp_names(files), f"trial {i}: temp files left in the CSV folder"
    assert sql == ref.sql, f"trial {i}: the CRM differs from an uninterrupted run's"
    assert files == ref.files, f"trial {i}: the CSV exports differ from an uninterrupted run's " \
                               f"({sorted(n for n in set(files) | set(ref.files) if files.get(n) != ref.files.get(n))})"
    counts = check_ledger(ledger_facts(root), ref)
    counts["resumed_lines"] = resumed_lines
    shutil.rmtree(root)
    return kills, counts


def report(ref: Reference, kills: list[Kill], totals: Counter, elapsed: float) -> None:
    mid = [k for k in kills if k.mid_run]
    exact = sum(k.how != "timed" for k in kills)
    print(f"\n[flow crash] {TRIALS} trials in {elapsed:.1f}s, {len(kills)} SIGKILLs ({exact} at exact moments), "
          f"{len(mid)} mid-run ({len(kills) - len(mid)} landed after the run had finished); "
          f"windows: retention {ref.windows[RETENTION]:.2f}s, received-in-error {ref.windows[IN_ERROR]:.2f}s; "
          f"reference actions: " + ", ".join(f"{g} {v['actions']}" for g, v in sorted(ref.groups.items())))
    for command in COMMANDS:
        phases = Counter(k.phase for k in mid if k.command == command)
        print(f"[flow crash] {command} kills by ledger phase: "
              + "; ".join(f"{p}: {n}" for p, n in sorted(phases.items())))
    print(f"[flow crash] kills leaving a CSV temp file: {sum(k.temps > 0 for k in kills)}; plans resumed by a "
          f"re-run: {totals['resumed_lines']} (ledger plan_resumed events: {totals['resumed']}); actions found "
          f"already carried out on resume: {totals['recovered']}; locks of killed runs broken: "
          f"{totals['locks_broken']}")
    print(f"[flow crash] plans left unapproved by a kill (never executed; the re-run planned anew): "
          f"{totals['unapproved']}; requests without a verified plan: {totals['orphans']}, still holding sealed "
          f"selections: {totals['orphan_secrets']}")


def test_when_retention_or_received_in_error_is_killed_at_any_moment_then_running_it_again_finishes_it_exactly_once(
        tmp_path):
    started = time.monotonic()
    expected = expected_states()
    template = tmp_path / "template"
    build_world(template)
    warm_up(template)
    ref = reference_run(template, tmp_path, expected)

    kills: list[Kill] = []
    totals: Counter = Counter()
    with ThreadPoolExecutor(WORKERS) as pool:
        for got, counts in pool.map(lambda i: one_trial(template, tmp_path, i, ref, expected), range(TRIALS)):
            kills.extend(got)
            totals.update({k: v for k, v in counts.items() if isinstance(v, int)})
    report(ref, kills, totals, time.monotonic() - started)

    mid = [k for k in kills if k.mid_run]
    assert len(mid) >= len(kills) // 2, f"only {len(mid)} of {len(kills)} kills landed mid-run"
    assert any("executing" in k.phase for k in mid if k.command == RETENTION), "no kill landed in an execution"
    assert totals["recovered"] > 0, "no kill came between a store's change and the ledger's record of it"
    assert totals["unapproved"] > 0, "no kill came between storing a plan and approving it"
    assert totals["orphan_secrets"] == 0, "a request left unapproved by a kill still holds its sealed data"
    assert any(k.temps for k in kills), "no kill left a CSV temp file behind"
