"""The erasure ledger: requests, plan states, approvals, crash-safe action progress, locks, suppression,
the append-only audit trail, and that no personal value reaches any ledger table."""
from __future__ import annotations

import csv
import json
import os
import re
import signal
import stat
import subprocess
import sys
import threading
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa

from pii.core.errors import LedgerError
from pii.ledger import KEY_ENV, KEY_FILE, Ledger
from pii.core.subject import Subject

KEY = b"test-ledger-key-0123456789abcdef"
ROOT = Path(__file__).resolve().parents[2]
EMAIL, PHONE, NAME = "alice.smith@example.org", "+442079460123", "Alice Smith"
RAW = (EMAIL, PHONE, NAME, "2079460123", "alice smith", "smith, alice", "alice", "smith", "c-10042")


def alice(**extra) -> Subject:
    return Subject.build(emails=[EMAIL], phones=[PHONE], names=[NAME], **extra)


class Clock:
    """A settable clock, so expiry and lock tests need no sleeping."""

    def __init__(self):
        self.now = datetime(2026, 11, 21, 12, 0, tzinfo=timezone.utc)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta) -> None:
        self.now += timedelta(**delta)


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request):
    """The same test on a SQLite ledger and on a PostgreSQL one (shared by several hosts)."""
    return request.getfixturevalue({"sqlite": "sqlite_url", "postgresql": "postgres_url"}[request.param])


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def ledger(sqlite_url, clock):
    return Ledger(sqlite_url, key=KEY, clock=clock)


def make_plan(ledger: Ledger, n: int = 3) -> dict:
    return {"actions": [
        {"action_id": f"a{i}", "store": "crm", "action": "delete", "fingerprint": f"{i:064x}",
         "location": ledger.protect_location({"table": "members", "key": {"email": EMAIL, "n": i}}, {"email"})}
        for i in range(1, n + 1)]}


def new_plan(ledger: Ledger, *, requester="helpdesk", n=3, hours=24, request_id=None) -> tuple[str, str]:
    rid = ledger.create_request("erasure", alice(), requester, date(2026, 11, 20), request_id=request_id)
    now = ledger._now()
    return rid, ledger.store_plan(rid, make_plan(ledger, n), now + timedelta(hours=hours))


def executing_plan(ledger: Ledger, n=3) -> str:
    _, pid = new_plan(ledger, n=n)
    ledger.approve(pid, "dpo")
    ledger.start_execution(pid, "worker-1")
    return pid


def plan_in_state(ledger: Ledger, state: str) -> str:
    _, pid = new_plan(ledger, n=1)
    steps = {
        "planned": [],
        "approved": [lambda: ledger.approve(pid, "dpo")],
        "rejected": [lambda: ledger.reject(pid, "dpo", "out of scope")],
        "expired": [lambda: ledger.transition(pid, "planned", "expired")],
        "executing": [lambda: ledger.approve(pid, "dpo"), lambda: ledger.start_execution(pid, "w")],
        "failed": [lambda: ledger.approve(pid, "dpo"), lambda: ledger.start_execution(pid, "w"),
                   lambda: ledger.finish_execution(pid, "w", success=False)],
        "executed": [lambda: ledger.approve(pid, "dpo"), lambda: ledger.start_execution(pid, "w"),
                     lambda: ledger.mark_action(pid, "a1", "done", 1),
                     lambda: ledger.finish_execution(pid, "w")],
    }
    steps["verified"] = steps["executed"] + [lambda: ledger.record_verification(pid, "w", 0)]
    for step in steps[state]:
        step()
    assert ledger.plan_state(pid) == state
    return pid


def dump_ledger_tables(url: str) -> str:
    """Every row of every ledger_ table, as one lower-cased text (read through a fresh engine)."""
    engine = sa.create_engine(url)
    try:
        names = [t for t in sa.inspect(engine).get_table_names() if t.startswith("ledger_")]
        assert len(names) >= 9
        meta = sa.MetaData()
        parts = []
        with engine.connect() as conn:
            for name in names:
                table = sa.Table(name, meta, autoload_with=engine)
                for row in conn.execute(sa.select(table)):
                    parts.append(name + " " + " | ".join(str(v) for v in row))
        return "\n".join(parts).lower()
    finally:
        engine.dispose()


# --------------------------------------------------------------------------- requests
def test_when_request_repeated_with_same_id_then_one_request_and_same_id(ledger):
    first = ledger.create_request("erasure", alice(), "helpdesk", date(2026, 11, 20), request_id="REQ-1")
    same = Subject.build(emails=[EMAIL.upper()], phones=["020 7946 0123"], names=["Smith, Alice"])
    again = ledger.create_request("erasure", same, "helpdesk", None, request_id="REQ-1")
    assert first == again == "REQ-1"
    with ledger.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM ledger_requests")).scalar() == 1
        kinds = sorted(conn.execute(sa.text("SELECT kind FROM ledger_request_identifiers")).scalars())
    assert kinds == ["email", "name", "phone"]
    assert [e["event"] for e in ledger.audit_events(request_id="REQ-1")] == ["request_created", "request_repeated"]
    assert ledger.get_request("REQ-1")["received_at"] == "2026-11-20"  # the repeat changed nothing


def test_when_request_id_reused_for_another_subject_then_refused(ledger):
    ledger.create_request("erasure", alice(), "helpdesk", request_id="REQ-1")
    with pytest.raises(LedgerError, match="REQ-1 already exists"):
        ledger.create_request("erasure", Subject.build(emails=["bob@example.org"]), "helpdesk", request_id="REQ-1")
    with pytest.raises(LedgerError, match="REQ-1 already exists"):
        ledger.create_request("access", alice(), "helpdesk", request_id="REQ-1")


def test_when_no_request_id_given_then_each_call_makes_a_new_request(ledger):
    a = ledger.create_request("access", alice(), "helpdesk")
    b = ledger.create_request("access", alice(), "helpdesk")
    assert a != b
    assert set(ledger.find_requests(Subject.build(phones=["020 7946 0123"]))) == {a, b}
    assert ledger.find_requests(Subject.build(emails=["bob@example.org"])) == []


@pytest.mark.parametrize("received, due", [
    (date(2026, 1, 31), date(2026, 2, 28)),
    (date(2024, 1, 31), date(2024, 2, 29)),
    (date(2026, 3, 31), date(2026, 4, 30)),
    (date(2026, 5, 10), date(2026, 6, 10)),
    (date(2026, 12, 15), date(2027, 1, 15)),
])
def test_when_request_received_then_due_one_month_later_clamped_to_month_end(ledger, received, due):
    rid = ledger.create_request("access", alice(), "helpdesk", received)
    req = ledger.get_request(rid)
    assert (req["received_at"], req["due_at"], req["status"]) == (received.isoformat(), due.isoformat(), "open")


def test_when_request_received_date_missing_then_today_is_used(ledger, clock):
    rid = ledger.create_request("access", alice(), "helpdesk")
    assert ledger.get_request(rid)["due_at"] == "2026-12-21"


def test_when_request_id_holds_an_identifier_then_refused(ledger):
    subject = alice(ids={"customer_no": "C-10042"})
    with pytest.raises(LedgerError, match="opaque id"):
        ledger.create_request("erasure", subject, "helpdesk", request_id="c-10042")
    with pytest.raises(LedgerError, match="request id must be"):
        ledger.create_request("erasure", subject, "helpdesk", request_id=EMAIL)


# --------------------------------------------------------------------------- the key
def test_when_sqlite_ledger_has_no_key_then_a_0600_key_file_is_made_and_reused(sqlite_url, monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)
    first = Ledger(sqlite_url)
    key_file = Path(sa.engine.make_url(sqlite_url).database).parent / KEY_FILE
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert re.fullmatch(r"[0-9a-f]{64}", key_file.read_text().strip())
    second = Ledger(sqlite_url)
    assert second.hash_identifier("email", EMAIL) == first.hash_identifier("email", EMAIL)
    assert Ledger(sqlite_url, key=key_file.read_text().strip()).hash_identifier("email", EMAIL) == \
        first.hash_identifier("email", EMAIL)


def test_when_shared_ledger_has_no_key_then_error_says_to_set_the_variable(postgres_url, monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)
    with pytest.raises(LedgerError, match=f"{KEY_ENV} is not set.*every host"):
        Ledger(postgres_url)


def test_when_key_comes_from_environment_then_it_is_used(sqlite_url, monkeypatch):
    monkeypatch.setenv(KEY_ENV, KEY.decode())
    assert Ledger(sqlite_url).hash_identifier("phone", "020 7946 0123") == \
        Ledger(sqlite_url, key=KEY).hash_identifier("phone", PHONE)
    assert not (Path(sa.engine.make_url(sqlite_url).database).parent / KEY_FILE).exists()


def test_when_environment_key_is_short_then_refused(sqlite_url, monkeypatch):
    monkeypatch.setenv(KEY_ENV, "short")
    with pytest.raises(LedgerError, match="at least 32"):
        Ledger(sqlite_url)


def test_when_ledger_opened_with_another_key_then_refused(sqlite_url):
    Ledger(sqlite_url, key=KEY)
    with pytest.raises(LedgerError, match="another key"):
        Ledger(sqlite_url, key=b"another-key-0123456789abcdef-xyz")


# --------------------------------------------------------------------------- plans and locations
def test_when_location_protected_then_personal_parts_are_stable_hashes(ledger):
    loc = {"table": "members", "key": {"email": EMAIL, "member_id": 3001}, "file": "Alice_Smith.csv", "row": 4}
    out = ledger.protect_location(loc, {"email", "file"})
    assert out["table"] == "members" and out["key"]["member_id"] == 3001 and out["row"] == 4
    assert re.fullmatch(r"hmac:[0-9a-f]{64}", out["key"]["email"])
    assert re.fullmatch(r"hmac:[0-9a-f]{64}", out["file"])
    assert out == ledger.protect_location(loc, {"email", "file"}) == ledger.protect_location(out, {"email", "file"})
    assert EMAIL not in json.dumps(out) and "Alice_Smith" not in json.dumps(out)
    assert loc["key"]["email"] == EMAIL  # the caller's dict is left alone


@pytest.mark.parametrize("location, kind", [
    ({"table": "members", "key": {"email": EMAIL}}, "email"),
    ({"table": "members", "key": {"email": EMAIL.upper()}}, "email"),
    ({"file": "Alice_Smith.csv", "row": 3}, "name"),
    ({"file": "exports/smith, alice.csv", "row": 3}, "name"),
    ({"path": f"/incoming/{EMAIL}.csv", "row": 3}, "email"),
    ({"table": "calls", "key": {"phone": "020 7946 0123"}}, "phone"),
    ({"table": "customers", "key": {"customer_no": "C-10042"}}, "id:customer_no"),
])
def test_when_plan_holds_a_raw_identifier_then_refused_without_echoing_it(ledger, location, kind):
    rid = ledger.create_request("erasure", alice(ids={"customer_no": "C-10042"}), "helpdesk")
    plan = {"actions": [{"action_id": "a1", "store": "crm", "location": location}]}
    with pytest.raises(LedgerError, match=f"subject's {kind} at plan.actions\\[0\\].location") as err:
        ledger.store_plan(rid, plan, ledger._now() + timedelta(hours=1))
    assert not any(raw in str(err.value).lower() for raw in RAW)
    with ledger.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM ledger_plans")).scalar() == 0


@pytest.mark.parametrize("plan, expires, message", [
    ({"steps": []}, timedelta(hours=1), "'actions' list"),
    ({"actions": [{"store": "crm"}]}, timedelta(hours=1), "needs an 'action_id'"),
    ({"actions": [{"action_id": "a1"}, {"action_id": "a1"}]}, timedelta(hours=1), "repeats an action id"),
    ({"actions": [{"action_id": "a1", "when": date(2026, 1, 1)}]}, timedelta(hours=1), "not JSON"),
    ({"actions": [{"action_id": "a1"}]}, None, "timezone-aware"),
])
def test_when_plan_is_malformed_then_refused(ledger, plan, expires, message):
    rid = ledger.create_request("erasure", alice(), "helpdesk")
    expires_at = ledger._now() + expires if expires else datetime(2030, 1, 1)
    with pytest.raises(LedgerError, match=message):
        ledger.store_plan(rid, plan, expires_at)


def test_when_plan_stored_then_it_reads_back_planned_and_idempotent_on_plan_id(ledger):
    rid = ledger.create_request("erasure", alice(), "helpdesk")
    plan = make_plan(ledger)
    expires = ledger._now() + timedelta(days=2)
    pid = ledger.store_plan(rid, plan, expires, plan_id="P-1")
    assert ledger.store_plan(rid, plan, expires, plan_id="P-1") == "P-1"
    got = ledger.get_plan(pid)
    assert (got["state"], got["plan"], got["request_id"], got["action_count"]) == ("planned", plan, rid, 3)
    assert ledger.pending_actions(pid) == ["a1", "a2", "a3"]
    with pytest.raises(LedgerError, match="P-1 already exists with other content"):
        ledger.store_plan(rid, make_plan(ledger, 2), expires, plan_id="P-1")


def test_when_stored_plan_is_altered_then_reading_it_fails(ledger):
    _, pid = new_plan(ledger)
    with ledger.engine.begin() as conn:
        conn.execute(sa.text("UPDATE ledger_plans SET plan_json = replace(plan_json, 'delete', 'keep')"))
    with pytest.raises(LedgerError, match="altered"):
        ledger.get_plan(pid)


# --------------------------------------------------------------------------- plan state machine
def test_when_plan_goes_through_every_step_then_each_state_and_event_is_recorded(db_url):
    ledger = Ledger(db_url, key=KEY)
    rid, pid = new_plan(ledger, n=2)
    ledger.approve(pid, "dpo")
    assert ledger.plan_state(pid) == "approved"
    ledger.start_execution(pid, "worker-1")
    for aid in ("a1", "a2"):
        ledger.mark_action(pid, aid, "started")
        ledger.mark_action(pid, aid, "done", rows=1)
    ledger.finish_execution(pid, "worker-1")
    assert ledger.record_verification(pid, "worker-1", 0) == "verified"
    events = [(e["event"], e["details"].get("from"), e["details"].get("to")) for e in ledger.audit_events(plan_id=pid)
              if e["event"].startswith("plan_")]
    assert events == [("plan_stored", None, None), ("plan_approved", "planned", "approved"),
                      ("plan_executing", "approved", "executing"), ("plan_executed", "executing", "executed"),
                      ("plan_verified", "executed", "verified")]
    assert ledger.get_plan(pid)["decided_by"] == "dpo"


@pytest.mark.parametrize("state, operation, target", [
    ("planned", lambda l, p: l.start_execution(p, "w"), "executing"),
    ("planned", lambda l, p: l.finish_execution(p, "w", success=False), "failed"),
    ("planned", lambda l, p: l.record_verification(p, "w", 0), "verified"),
    ("approved", lambda l, p: l.reject(p, "dpo", "no"), "rejected"),
    ("rejected", lambda l, p: l.approve(p, "dpo"), "approved"),
    ("expired", lambda l, p: l.start_execution(p, "w"), "executing"),
    ("executing", lambda l, p: l.approve(p, "dpo"), "approved"),
    ("executing", lambda l, p: l.start_execution(p, "w2"), "executing"),
    ("executed", lambda l, p: l.start_execution(p, "w"), "executing"),
    ("verified", lambda l, p: l.finish_execution(p, "w", success=False), "failed"),
    ("failed", lambda l, p: l.record_verification(p, "w", 0), "verified"),
])
def test_when_transition_is_invalid_then_error_names_plan_and_states(ledger, state, operation, target):
    pid = plan_in_state(ledger, state)
    before = len(ledger.audit_events(plan_id=pid))
    with pytest.raises(LedgerError) as err:
        operation(ledger, pid)
    assert pid in str(err.value) and state in str(err.value) and target in str(err.value)
    assert ledger.plan_state(pid) == state
    assert len(ledger.audit_events(plan_id=pid)) == before


@pytest.mark.parametrize("expected, new", [("planned", "executed"), ("approved", "verified"),
                                           ("executing", "planned"), ("verified", "expired")])
def test_when_bare_transition_is_not_in_the_machine_then_refused(ledger, expected, new):
    pid = plan_in_state(ledger, expected)
    with pytest.raises(LedgerError, match=f"{pid}: {expected} -> {new} is not a valid transition"):
        ledger.transition(pid, expected, new)


def test_when_bare_transition_expects_the_wrong_state_then_refused(ledger):
    pid = plan_in_state(ledger, "approved")
    with pytest.raises(LedgerError, match=f"plan {pid} is approved, not planned"):
        ledger.transition(pid, "planned", "expired")


def test_when_two_workers_race_for_executing_then_exactly_one_wins(db_url):
    workers = [Ledger(db_url, key=KEY), Ledger(db_url, key=KEY)]
    plans = []
    for _ in range(4):
        _, pid = new_plan(workers[0], n=1)
        workers[0].approve(pid, "dpo")
        plans.append(pid)
    for pid in plans:
        barrier = threading.Barrier(2)
        outcomes: list[str] = []

        def run(ledger: Ledger, name: str):
            barrier.wait()
            try:
                ledger.start_execution(pid, name)
                outcomes.append("won")
            except LedgerError as exc:
                outcomes.append("lost" if "is executing, not approved or failed" in str(exc) else repr(exc))

        threads = [threading.Thread(target=run, args=(w, f"worker-{i}")) for i, w in enumerate(workers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert sorted(outcomes) == ["lost", "won"]
        assert [e["event"] for e in workers[1].audit_events(plan_id=pid)].count("plan_executing") == 1


def test_when_plan_marked_executed_with_actions_pending_then_refused(ledger):
    pid = executing_plan(ledger)
    ledger.mark_action(pid, "a1", "done", 1)
    ledger.mark_action(pid, "a2", "skipped")
    ledger.mark_action(pid, "a3", "drifted", None, "row changed since planning")
    with pytest.raises(LedgerError, match=f"plan {pid}: 1 action"):
        ledger.finish_execution(pid, "worker-1")
    ledger.finish_execution(pid, "worker-1", success=False)
    assert ledger.plan_state(pid) == "failed"


def test_when_failed_plan_is_retried_then_only_its_pending_actions_remain(ledger):
    pid = executing_plan(ledger)
    ledger.mark_action(pid, "a1", "done", 2)
    ledger.mark_action(pid, "a2", "failed", None, "store timed out")
    ledger.finish_execution(pid, "worker-1", success=False)
    ledger.start_execution(pid, "worker-2")
    assert ledger.pending_actions(pid) == ["a2", "a3"]
    assert ledger.pending_actions(pid, ["a3", "a1"]) == ["a3"]


# --------------------------------------------------------------------------- approvals
def test_when_approver_is_the_requester_and_distinct_required_then_refused(ledger):
    _, pid = new_plan(ledger, requester="Helpdesk.Agent@corp.example")
    with pytest.raises(LedgerError, match=f"plan {pid}: the approver is the requester"):
        ledger.approve(pid, " helpdesk.agent@CORP.example", require_distinct_from_requester=True)
    assert ledger.plan_state(pid) == "planned"
    ledger.approve(pid, "dpo@corp.example", require_distinct_from_requester=True)
    assert ledger.plan_state(pid) == "approved"


def test_when_distinct_approver_not_required_then_requester_may_approve(ledger):
    _, pid = new_plan(ledger, requester="ops")
    ledger.approve(pid, "ops")
    ledger.approve(pid, "ops")  # a retried approval by the same person changes nothing
    assert ledger.plan_state(pid) == "approved"
    assert [e["event"] for e in ledger.audit_events(plan_id=pid)].count("plan_approved") == 1


def test_when_plan_expired_then_it_cannot_be_approved_and_is_marked_expired(ledger, clock):
    _, pid = new_plan(ledger, hours=2)
    clock.advance(hours=2, seconds=1)
    with pytest.raises(LedgerError, match=f"plan {pid} expired"):
        ledger.approve(pid, "dpo")
    assert ledger.plan_state(pid) == "expired"


def test_when_approved_plan_expires_then_it_cannot_be_executed(ledger, clock):
    _, pid = new_plan(ledger, hours=2)
    ledger.approve(pid, "dpo")
    clock.advance(hours=3)
    with pytest.raises(LedgerError, match=f"plan {pid} expired"):
        ledger.start_execution(pid, "worker-1")
    assert ledger.plan_state(pid) == "expired"


def test_when_plan_approved_just_before_expiry_then_it_holds(ledger, clock):
    _, pid = new_plan(ledger, hours=2)
    clock.advance(hours=1, minutes=59)
    ledger.approve(pid, "dpo")
    assert ledger.plan_state(pid) == "approved"


def test_when_overdue_plans_swept_then_only_overdue_open_ones_expire(ledger, clock):
    _, short = new_plan(ledger, hours=1)
    _, long = new_plan(ledger, hours=48)
    clock.advance(hours=2)
    assert ledger.expire_overdue(actor="sweeper") == [short]
    assert (ledger.plan_state(short), ledger.plan_state(long)) == ("expired", "planned")


def test_when_reviewed_digest_differs_then_approval_refused(ledger):
    _, pid = new_plan(ledger)
    with pytest.raises(LedgerError, match="digest differs"):
        ledger.approve(pid, "dpo", expected_digest="0" * 64)
    ledger.approve(pid, "dpo", expected_digest=ledger.get_plan(pid)["digest"])
    assert ledger.plan_state(pid) == "approved"


def test_when_plan_rejected_then_reason_kept_without_personal_values_and_nothing_runs(ledger):
    _, pid = new_plan(ledger)
    ledger.reject(pid, "dpo", "legal hold: invoices must be kept")
    plan = ledger.get_plan(pid)
    assert (plan["state"], plan["decided_by"], plan["decision_reason"]) == \
        ("rejected", "dpo", "legal hold: invoices must be kept")
    with pytest.raises(LedgerError):
        ledger.start_execution(pid, "worker-1")
    _, other = new_plan(ledger)
    ledger.reject(other, "dpo", f"Alice Smith ({EMAIL}) withdrew")
    assert ledger.get_plan(other)["decision_reason"] == "[withheld: it named the subject]"


# --------------------------------------------------------------------------- actions (crash safety)
def test_when_actions_marked_then_a_new_ledger_and_a_fresh_connection_see_them(db_url):
    writer = Ledger(db_url, key=KEY)
    pid = executing_plan(writer)
    writer.mark_action(pid, "a1", "started")
    writer.mark_action(pid, "a1", "done", 4)
    writer.mark_action(pid, "a2", "started")
    reader = Ledger(db_url, key=KEY)
    assert (reader.action_state(pid, "a1"), reader.action_state(pid, "a2"), reader.action_state(pid, "a3")) == \
        ("done", "started", None)
    assert reader.pending_actions(pid, ["a1", "a2", "a3"]) == ["a2", "a3"]
    engine = sa.create_engine(db_url)  # not the ledger's engine: only committed rows are visible
    try:
        with engine.connect() as conn:
            rows = dict(conn.execute(sa.text("SELECT action_id, state FROM ledger_actions WHERE plan_id = :p"),
                                     {"p": pid}).all())
    finally:
        engine.dispose()
    assert rows == {"a1": "done", "a2": "started"}


CHILD = """
import os, signal, sys
from pii.ledger import Ledger
ledger = Ledger(sys.argv[1])
plan_id = sys.argv[2]
assert ledger.claim_execution(plan_id, "worker-1", 60)
ledger.mark_action(plan_id, "a1", "started")
ledger.mark_action(plan_id, "a1", "done", 1)
ledger.mark_action(plan_id, "a2", "started")
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_when_worker_is_killed_mid_plan_then_rerun_resumes_exactly_the_pending_actions(db_url, clock):
    ledger = Ledger(db_url, key=KEY, clock=clock)
    _, pid = new_plan(ledger, n=3, hours=24 * 365 * 20)
    ledger.approve(pid, "dpo")
    env = {**os.environ, KEY_ENV: KEY.decode(), "PYTHONPATH": str(ROOT)}
    child = subprocess.run([sys.executable, "-c", CHILD, db_url, pid], env=env, cwd=ROOT, timeout=120,
                           capture_output=True, text=True)
    assert child.returncode == -signal.SIGKILL, child.stderr
    assert ledger.plan_state(pid) == "executing"
    clock.now = datetime.now(timezone.utc)
    assert not ledger.claim_execution(pid, "worker-2", 60)  # the dead worker's lock is still live
    clock.advance(seconds=61)
    assert ledger.claim_execution(pid, "worker-2", 60)
    assert ledger.pending_actions(pid) == ["a2", "a3"]
    assert ledger.action_state(pid, "a1") == "done"
    ledger.mark_action(pid, "a2", "started")  # tried again: the store action must be idempotent
    assert {a["action_id"]: a["attempts"] for a in ledger.actions(pid)} == {"a1": 1, "a2": 2, "a3": None}
    events = [e["event"] for e in ledger.audit_events()]
    assert "lock_taken_over" in events and "plan_resumed" in events


def test_when_done_action_is_marked_again_then_refused_unless_same_state(ledger):
    pid = executing_plan(ledger)
    ledger.mark_action(pid, "a1", "started")
    ledger.mark_action(pid, "a1", "done", 3)
    ledger.mark_action(pid, "a1", "done", 3)  # a repeat of the same outcome is a no-op
    with pytest.raises(LedgerError, match=f"plan {pid}, action a1 is already done: it cannot become started"):
        ledger.mark_action(pid, "a1", "started")
    ledger.mark_action(pid, "a2", "skipped", None, "row already gone")
    with pytest.raises(LedgerError, match="already skipped"):
        ledger.mark_action(pid, "a2", "failed")
    assert [e["event"] for e in ledger.audit_events(plan_id=pid)].count("action_done") == 1


def test_when_failed_action_is_retried_then_attempts_are_counted(ledger):
    pid = executing_plan(ledger)
    ledger.mark_action(pid, "a1", "started")
    ledger.mark_action(pid, "a1", "failed", None, "lock wait timeout")
    ledger.mark_action(pid, "a1", "started")
    ledger.mark_action(pid, "a1", "done", 1)
    row = next(a for a in ledger.actions(pid) if a["action_id"] == "a1")
    assert (row["state"], row["attempts"], row["rows"]) == ("done", 2, 1)


def test_when_workers_mark_one_action_at_once_then_no_update_is_lost(db_url):
    ledgers = [Ledger(db_url, key=KEY) for _ in range(4)]
    pid = executing_plan(ledgers[0], n=1)
    barrier = threading.Barrier(len(ledgers))
    errors: list[Exception] = []

    def run(ledger: Ledger):
        barrier.wait()
        try:
            for _ in range(5):
                ledger.mark_action(pid, "a1", "started")
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(lg,)) for lg in ledgers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert ledgers[0].actions(pid)[0]["attempts"] == 20
    assert [e["event"] for e in ledgers[0].audit_events(plan_id=pid)].count("action_started") == 20


@pytest.mark.parametrize("state, action_id, message", [
    ("executing", "a9", "has no action with that id"),
    ("approved", "a1", "is approved: actions move only while it is executing"),
    ("executed", "a1", "is executed: actions move only while it is executing"),
])
def test_when_action_is_unknown_or_plan_not_executing_then_refused(ledger, state, action_id, message):
    pid = plan_in_state(ledger, state)
    with pytest.raises(LedgerError, match=message):
        ledger.mark_action(pid, action_id, "started")


@pytest.mark.parametrize("state, rows", [("finished", None), ("done", -1), ("done", "3")])
def test_when_action_state_or_rows_are_invalid_then_refused(ledger, state, rows):
    pid = executing_plan(ledger)
    with pytest.raises(LedgerError):
        ledger.mark_action(pid, "a1", state, rows)
    assert ledger.action_state(pid, "a1") is None


@pytest.mark.parametrize("detail, stored", [
    ("store crm timed out after 30s", "store crm timed out after 30s"),
    ("duplicate key bob.jones@example.org", "duplicate key [email]"),
    (f"Key (email)=({EMAIL.upper()}) is still referenced", "Key (email)=([email]) is still referenced"),
    ("called back on 020 7946 0999", "called back on [phone]"),
    ("row of SMITH, Alice changed", "[withheld: it named the subject]"),
    (None, None),
])
def test_when_action_detail_is_recorded_then_contacts_masked_and_subject_withheld(ledger, detail, stored):
    pid = executing_plan(ledger)
    ledger.mark_action(pid, "a1", "failed", None, detail)
    assert next(a for a in ledger.actions(pid) if a["action_id"] == "a1")["detail"] == stored


# --------------------------------------------------------------------------- locks
def test_when_lock_is_held_then_a_second_owner_is_refused(db_url):
    one, two = Ledger(db_url, key=KEY), Ledger(db_url, key=KEY)
    assert one.acquire_lock("store:crm", "worker-1", 60)
    assert not two.acquire_lock("store:crm", "worker-2", 60)
    assert one.acquire_lock("store:crm", "worker-1", 60)  # its own lock: renewed
    assert two.acquire_lock("store:exports", "worker-2", 60)  # another name is another lock


def test_when_lock_has_expired_then_another_owner_takes_it_over(db_url, clock):
    one = Ledger(db_url, key=KEY, clock=clock)
    two = Ledger(db_url, key=KEY, clock=clock)
    assert one.acquire_lock("subject:abc", "worker-1", 30)
    clock.advance(seconds=29)
    assert not two.acquire_lock("subject:abc", "worker-2", 30)
    clock.advance(seconds=2)
    assert two.acquire_lock("subject:abc", "worker-2", 30)
    assert not one.acquire_lock("subject:abc", "worker-1", 30)
    assert not one.release_lock("subject:abc", "worker-1")  # it is no longer worker-1's to release
    assert [e["event"] for e in one.audit_events() if e["event"].startswith("lock_")] == \
        ["lock_acquired", "lock_taken_over"]


def test_when_lock_is_released_then_another_owner_acquires_it(db_url):
    one, two = Ledger(db_url, key=KEY), Ledger(db_url, key=KEY)
    assert one.acquire_lock("store:crm", "worker-1", 600)
    assert not two.release_lock("store:crm", "worker-2")
    assert one.release_lock("store:crm", "worker-1")
    assert two.acquire_lock("store:crm", "worker-2", 600)


def test_when_owners_race_for_one_lock_then_exactly_one_wins(db_url):
    ledgers = [Ledger(db_url, key=KEY) for _ in range(4)]
    barrier = threading.Barrier(len(ledgers))
    results: dict[str, bool] = {}

    def run(i: int):
        barrier.wait()
        results[f"w{i}"] = ledgers[i].acquire_lock("store:crm", f"w{i}", 60)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(ledgers))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(results.values()) == [False, False, False, True]


@pytest.mark.parametrize("name, owner, ttl", [
    (f"subject:{EMAIL}", "worker-1", 60), ("store:crm", EMAIL, 60), ("", "worker-1", 60), ("store:crm", "w", 0)])
def test_when_lock_arguments_are_unusable_then_refused(ledger, name, owner, ttl):
    with pytest.raises(LedgerError):
        ledger.acquire_lock(name, owner, ttl)


# --------------------------------------------------------------------------- suppression
@pytest.mark.parametrize("kind, value, expected", [
    ("email", EMAIL, True),
    ("email", "  ALICE.Smith@Example.ORG ", True),
    ("phone", PHONE, True),
    ("phone", "020 7946 0123", True),
    ("phone", "(020) 7946-0123", True),
    ("name", "Smith, Alice", True),
    ("name", "alice smith", True),
    ("id:customer_no", "c-10042", True),
    ("id:CUSTOMER_NO", "C-10042", True),
    ("email", "malice.smith@example.org", False),
    ("phone", "020 7946 0124", False),
    ("name", "Alicia Smith", False),
    ("id:account_no", "C-10042", False),
])
def test_when_subject_suppressed_then_any_spelling_of_an_identifier_is_suppressed(ledger, kind, value, expected):
    ledger.suppress(alice(ids={"customer_no": "C-10042"}), "erased", None)
    assert ledger.is_suppressed(kind, value) is expected


def test_when_suppression_exported_then_it_holds_hashes_only(ledger, tmp_path):
    rid = ledger.create_request("erasure", alice(), "helpdesk")
    assert ledger.suppress(alice(), f"erased on request; contact {EMAIL} / 020 7946 0123", rid) == 3
    exported = ledger.export_suppression()
    assert sorted(e["kind"] for e in exported) == ["email", "name", "phone"]
    assert all(re.fullmatch(r"[0-9a-f]{64}", e["hash"]) and e["request_id"] == rid for e in exported)
    assert exported[0]["reason"] == "erased on request; contact [email] / [phone]"
    text = json.dumps(exported).lower()
    assert not [raw for raw in RAW if raw.lower() in text]


def test_when_subject_suppressed_twice_then_no_duplicates(ledger):
    assert ledger.suppress(alice(), "erased", None) == 3
    assert ledger.suppress(Subject.build(emails=[EMAIL], phones=["020 7946 0999"]), "again", None) == 1
    assert len(ledger.export_suppression()) == 4


def test_when_only_a_name_is_suppressed_then_a_namesake_is_not_suppressed(ledger):
    ledger.suppress(Subject.build(names=[NAME]), "erased", None)
    assert ledger.is_suppressed("name", NAME)
    assert not ledger.is_subject_suppressed(Subject.build(emails=["alice.other@example.org"], names=[NAME]))
    ledger.suppress(Subject.build(emails=["alice.other@example.org"]), "erased", None)
    assert ledger.is_subject_suppressed(Subject.build(emails=["Alice.Other@example.org"], names=[NAME]))


def test_when_identifier_kind_is_unknown_then_refused(ledger):
    with pytest.raises(LedgerError, match="unknown identifier kind"):
        ledger.is_suppressed("passport", "123")


# --------------------------------------------------------------------------- audit
def test_when_events_exist_then_no_method_and_no_sql_can_change_them(db_url):
    ledger = Ledger(db_url, key=KEY)
    rid, _pid = new_plan(ledger, hours=-1)  # already past its approval deadline
    before = ledger.audit_events()
    assert len(before) == 2
    # every operation that removes or forgets something leaves the recorded events as they were
    ledger.place_hold(alice(), "litigation", actor="dpo")
    ledger.release_hold(alice(), actor="dpo")
    assert ledger.acquire_lock("erase:x", "run-1", 60) and ledger.release_lock("erase:x", "run-1")
    ledger.expire_overdue(actor="sweeper")
    ledger.shred_subject(rid, actor="dpo")
    after = ledger.audit_events()
    assert after[:2] == before and len(after) > len(before)  # appended to, never rewritten
    before = after
    for statement in ("UPDATE ledger_events SET actor = 'someone'", "DELETE FROM ledger_events"):
        with pytest.raises(sa.exc.DatabaseError, match="append-only"):
            with ledger.engine.begin() as conn:
                conn.execute(sa.text(statement))
    assert ledger.audit_events() == before


def test_when_more_happens_then_earlier_events_stay_unchanged(ledger):
    rid, pid = new_plan(ledger)
    before = ledger.audit_events()
    ledger.approve(pid, "dpo")
    ledger.set_request_status(rid, "in_progress", actor="dpo")
    after = ledger.audit_events()
    assert after[:len(before)] == before and len(after) == len(before) + 2
    assert [e["event_id"] for e in after] == sorted(e["event_id"] for e in after)


def test_when_audit_filtered_then_only_matching_events_return(ledger):
    rid1, p1 = new_plan(ledger)
    rid2, p2 = new_plan(ledger)
    ledger.approve(p2, "dpo")
    assert {e["request_id"] for e in ledger.audit_events(request_id=rid1)} == {rid1}
    assert [e["event"] for e in ledger.audit_events(plan_id=p2)] == ["plan_stored", "plan_approved"]
    assert [e["event"] for e in ledger.audit_events(request_id=rid2, plan_id=p1)] == []


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_when_audit_exported_then_the_file_holds_every_event(ledger, tmp_path, fmt):
    rid, pid = new_plan(ledger)
    ledger.approve(pid, "dpo")
    out = tmp_path / f"audit.{fmt}"
    assert ledger.export_audit(out, fmt) == 3
    if fmt == "csv":
        with out.open(newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
        rows = [{**r, "details": json.loads(r["details"])} for r in rows]
    else:
        rows = json.loads(out.read_text(encoding="utf-8"))
    assert [r["event"] for r in rows] == ["request_created", "plan_stored", "plan_approved"]
    assert [(r["event"], str(r["event_id"])) for r in rows] == \
        [(e["event"], str(e["event_id"])) for e in ledger.audit_events()]
    signature = rows[2]["details"].pop("signature")  # the approval, signed with the ledger key
    assert re.fullmatch(r"[0-9a-f]{64}", signature)
    assert rows[2]["details"] == {"from": "planned", "to": "approved"} and rows[2]["plan_id"] == pid
    with pytest.raises(LedgerError, match="csv or json"):
        ledger.export_audit(tmp_path / "audit.xml", "xml")


# --------------------------------------------------------------------------- no personal values anywhere
def test_when_full_flow_is_recorded_then_no_raw_identifier_is_in_any_ledger_table(db_url, tmp_path):
    ledger = Ledger(db_url, key=KEY)
    subject = alice(ids={"customer_no": "C-10042"})
    rid = ledger.create_request("erasure", subject, EMAIL, date(2026, 11, 20), request_id="REQ-42")
    ledger.create_request("erasure", subject, EMAIL, None, request_id="REQ-42")
    plan = {"subject_ref": ledger.hash_identifier("email", EMAIL), "actions": [
        {"action_id": "a1", "store": "crm", "action": "delete", "fingerprint": "f" * 64,
         "location": ledger.protect_location({"table": "members", "key": {"email": EMAIL}}, {"email"})},
        {"action_id": "a2", "store": "exports", "action": "redact_row", "fingerprint": "e" * 64,
         "location": ledger.protect_location({"file": "Alice_Smith.csv", "row": 3}, {"file"})},
        {"action_id": "a3", "store": "crm", "action": "anonymise", "fingerprint": "d" * 64,
         "location": ledger.protect_location({"table": "customers", "key": {"customer_no": "C-10042"}},
                                             {"customer_no"})},
    ]}
    rejected = ledger.store_plan(rid, plan, datetime.now(timezone.utc) + timedelta(days=1))
    ledger.reject(rejected, "dpo", f"{NAME} called: wrong address {EMAIL}")
    pid = ledger.store_plan(rid, plan, datetime.now(timezone.utc) + timedelta(days=1))
    ledger.approve(pid, "dpo", require_distinct_from_requester=True)
    lock = "subject:" + ledger.hash_identifier("email", EMAIL)
    assert ledger.acquire_lock(lock, "worker-1", 60)
    assert ledger.claim_execution(pid, "worker-1", 60)
    ledger.mark_action(pid, "a1", "started", actor=EMAIL)
    ledger.mark_action(pid, "a1", "done", 1, f"deleted {EMAIL}")
    ledger.mark_action(pid, "a2", "started")
    ledger.mark_action(pid, "a2", "done", 1, f"row 3 ({NAME}, {PHONE}) blanked")
    ledger.mark_action(pid, "a3", "drifted", None, "customer C-10042 changed since planning")
    ledger.mark_action(pid, "a3", "started")
    ledger.mark_action(pid, "a3", "done", 1, "anonymised: 'Smith, Alice' -> 'X'")
    ledger.finish_execution(pid, "worker-1")
    assert ledger.record_verification(pid, "worker-1", 0) == "verified"
    ledger.release_lock(lock, "worker-1")
    ledger.suppress(subject, f"erasure {rid} for {NAME} <{EMAIL}> tel 020 7946 0123", rid, actor=EMAIL)
    ledger.set_request_status(rid, "completed", actor=NAME)
    ledger.export_audit(tmp_path / "audit.csv", "csv")
    ledger.export_audit(tmp_path / "audit.json", "json")

    dump = dump_ledger_tables(db_url)
    for table in ("ledger_requests", "ledger_request_identifiers", "ledger_plans", "ledger_plan_actions",
                  "ledger_actions", "ledger_suppression", "ledger_events"):
        assert table in dump  # every table was written to, so the check below looks at real rows
    exported = dump + (tmp_path / "audit.csv").read_text().lower() + (tmp_path / "audit.json").read_text().lower() \
        + json.dumps(ledger.export_suppression()).lower()
    leaked = [raw for raw in RAW if raw.lower() in exported]
    assert leaked == []


def test_when_a_request_is_sealed_then_shredded_then_the_request_store_says_so(ledger):
    rid = ledger.create_request("erasure", alice(), "helpdesk", date(2026, 11, 20))
    assert not ledger.is_sealed(rid)
    ledger.seal_subject(rid, alice())
    assert ledger.is_sealed(rid) and ledger.unseal_subject(rid).emails == alice().emails
    assert ledger.shred_subject(rid, actor="dpo")
    assert not ledger.is_sealed(rid)
    with pytest.raises(LedgerError, match="not in the request store"):
        ledger.unseal_subject(rid)


# --------------------------------------------------------------------------- approver identity (issue 12, item 7)
@pytest.mark.parametrize("requester, approver", [
    ("dpo", "DPO"),
    ("DPO", "\uff44\uff50\uff4f"),          # fullwidth "ｄｐｏ"
    ("\uff24\uff30\uff2f", "dpo"),          # fullwidth capitals "ＤＰＯ"
    ("Data  Protection\tOfficer", " data protection officer "),
    ("Jos\u00e9", "JOSE\u0301"),            # precomposed and decomposed é
])
def test_when_approver_is_the_requester_written_another_way_and_distinct_required_then_refused(
        ledger, requester, approver):
    _, pid = new_plan(ledger, requester=requester)
    with pytest.raises(LedgerError, match=f"plan {pid}: the approver is the requester"):
        ledger.approve(pid, approver, require_distinct_from_requester=True)
    assert ledger.plan_state(pid) == "planned"


def test_when_approver_name_mixes_scripts_then_refused_without_echoing_the_name(ledger):
    _, pid = new_plan(ledger, requester="dpo")
    lookalike = "dp\u043e"  # Cyrillic "о"
    with pytest.raises(LedgerError, match=r"mixes scripts \(Latin and Cyrillic\): use one script") as exc:
        ledger.approve(pid, lookalike, require_distinct_from_requester=True)
    assert lookalike not in str(exc.value)
    with pytest.raises(LedgerError, match=r"mixes scripts \(Latin and Greek\)"):
        ledger.approve(pid, "\u0391lice", require_distinct_from_requester=True)  # Greek capital alpha
    assert ledger.plan_state(pid) == "planned"


def test_when_requester_name_mixes_scripts_then_the_request_is_refused(ledger):
    with pytest.raises(LedgerError, match=r"the requester's name mixes scripts \(Latin and Cyrillic\)"):
        ledger.create_request("erasure", alice(), "h\u0435lpdesk", date(2026, 11, 20))


@pytest.mark.parametrize("approver", ["Dana Scully", "\u0414\u041f\u041e", "\u5c71\u7530 \u305f\u308d\u3046", "dpo-2"])
def test_when_approver_is_another_person_in_one_script_then_the_approval_holds(ledger, approver):
    _, pid = new_plan(ledger, requester="dpo")
    ledger.approve(pid, approver, require_distinct_from_requester=True)
    assert ledger.plan_state(pid) == "approved"


def test_when_a_legacy_request_stored_the_raw_requester_hash_then_its_requester_still_cannot_approve(
        ledger, sqlite_url):
    from pii.ledger.screening import legacy_actor_hash

    raw = "\uff44\uff50\uff4f"  # stored before normalisation: the hash of the fullwidth text itself
    rid, pid = new_plan(ledger, requester=raw)
    engine = sa.create_engine(sqlite_url)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE ledger_requests SET requester_hash = :h WHERE request_id = :r"),
                     {"h": legacy_actor_hash(ledger._mac, raw), "r": rid})
    engine.dispose()
    assert ledger.requested_by(rid, raw) and ledger.requested_by(rid, raw.upper())
    with pytest.raises(LedgerError, match="the approver is the requester"):
        ledger.approve(pid, raw.upper(), require_distinct_from_requester=True)
    ledger.approve(pid, "auditor", require_distinct_from_requester=True)
    assert ledger.plan_state(pid) == "approved"


def test_when_plain_ascii_requester_then_the_new_hash_equals_the_legacy_one(ledger):
    from pii.ledger.screening import actor_hash, legacy_actor_hash

    for who in ("helpdesk", " Helpdesk.Agent@corp.example ", "ops"):
        assert actor_hash(ledger._mac, who) == legacy_actor_hash(ledger._mac, who)


# --------------------------------------------------------------------------- internationalised emails (issue 12, item 9)
def test_when_subject_has_an_internationalised_email_then_every_spelling_hashes_and_screens_alike(ledger):
    from pii.ledger.screening import Screen, subject_hashes

    h = ledger.hash_identifier("email", "zoë@exämple.com")
    assert ledger.hash_identifier("email", "ZOË@EXÄMPLE.COM") == h
    assert ledger.hash_identifier("email", "zoë@xn--exmple-cua.com") == h
    rid = ledger.create_request("erasure", Subject.build(emails=["ZOË@xn--exmple-cua.com"]), "helpdesk",
                                date(2026, 11, 20))
    assert ledger.find_requests(Subject.build(emails=["zoë@exämple.com"])) == [rid]
    subject = Subject.build(emails=["zoë@exämple.com"])
    screen = Screen(ledger._mac, subject_hashes(ledger._mac, subject), "GB")
    for text in ("wrote to ZOË@EXÄMPLE.COM", "zoë@xn--exmple-cua.com", "/in/zoë@exämple.com.csv"):
        assert screen.find(text) == "email", text
    assert screen.find("zoe@example.com") is None
