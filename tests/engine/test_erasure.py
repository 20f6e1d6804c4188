"""The erasure engine on SQLite, PostgreSQL and MariaDB: plan, approve, execute, verify."""
from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
import sqlalchemy as sa

from pii.core.config import parse_config
from pii.engine.erasure import ErasureEngine
from pii.core.errors import LedgerError
from pii.core.policy import parse_policy
from pii.core.subject import Subject
from tests import sql_world

ALICE = Subject.build(**sql_world.ALICE)
TABLES = ["companies", "members", "orders", "order_items", "notes", "newsletter", "badges"]


def _setup(url, tmp_path, policy=None, **store):
    schema = "crm" if url.startswith("postgresql") else None
    sql_world.build(url, schema=schema).dispose()
    cfg = parse_config({"stores": {"crm": {"kind": "sql", "url": url, **store}}}, tmp_path / "stores.yaml")
    engine = ErasureEngine(cfg, policy=parse_policy(policy, "test-policy") if policy else None)
    return engine, schema


def snapshot(url, schema=None) -> dict[str, set]:
    eng = sa.create_engine(url)
    md = sa.MetaData(schema=schema)
    md.reflect(eng)
    with eng.connect() as conn:
        out = {t.name: {tuple(str(v) for v in r) for r in conn.execute(sa.select(t))} for t in md.sorted_tables}
    eng.dispose()
    return out


def run_erasure(engine, subject=ALICE, approver="dpo@example.test"):
    plan = engine.submit(subject, "requester@example.test")
    engine.approve(plan.plan_id, approver)
    return plan, engine.execute(plan.plan_id, subject=subject)


def test_when_dry_run_then_nothing_changes_and_nothing_is_stored(any_sql_url, tmp_path):
    engine, schema = _setup(any_sql_url, tmp_path)
    before = snapshot(any_sql_url, schema)
    plan = engine.build_plan(ALICE)
    assert {a.action for a in plan.actions} == {"delete", "redact"}
    assert len(plan.data["review"]) == 1  # the name-only badge
    assert snapshot(any_sql_url, schema) == before
    assert engine.ledger.find_requests(ALICE) == []


def test_when_erased_then_subject_is_gone_and_everyone_else_is_untouched(any_sql_url, tmp_path):
    engine, schema = _setup(any_sql_url, tmp_path)
    before = snapshot(any_sql_url, schema)
    plan, report = run_erasure(engine)
    assert report.state == "verified" and report.remaining == 0 and report.drifted == 0
    after = snapshot(any_sql_url, schema)
    # orders 10, 11 and their items are gone; Bob's order 12 stays
    assert {r[0] for r in after["orders"]} == {"12"}
    assert {(r[0], r[1]) for r in after["order_items"]} == {("12", "1")}
    assert ("alice.smith@example.org", "web") not in after["newsletter"]
    # Alice's member row is referenced by Bob (referred_by): kept as keys only, everything else cleared
    alice = next(r for r in after["members"] if r[0] == "1")
    assert alice[1:6] == ("None",) * 5
    # every other member row and every untouched table row is exactly as before
    assert {r for r in after["members"] if r[0] != "1"} == {r for r in before["members"] if r[0] != "1"}
    assert after["companies"] == before["companies"] and after["badges"] == before["badges"]
    notes = {r[0]: r[2] for r in after["notes"]}
    assert notes["100"] == "Bob says his colleague called from [redacted] about a refund."
    assert notes["101"] == "Forwarded to [redacted] for approval."
    assert notes["102"] == "Met Alice Smithson at the fair; phone 020 7946 0124."  # decoy untouched
    # nothing erasable found any more; the weak badge is still there for review
    left = engine.build_plan(ALICE)
    assert left.actions == [] and len(left.data["review"]) == 1


def test_when_erased_twice_then_the_second_run_is_a_no_op(sqlite_url, tmp_path):
    engine, schema = _setup(sqlite_url, tmp_path)
    run_erasure(engine)
    between = snapshot(sqlite_url, schema)
    plan, report = run_erasure(engine)
    assert plan.actions == [] and report.state == "verified" and report.rows == 0
    assert snapshot(sqlite_url, schema) == between


def test_when_policy_retains_orders_for_tax_then_they_stay_and_the_certificate_says_why(any_sql_url, tmp_path):
    policy = {"rules": [{"store": "crm", "container": "orders", "action": "retain",
                         "reason": "invoices kept six years for tax", "legal_basis": "legal obligation"},
                        {"store": "crm", "container": "order_items", "action": "retain",
                         "reason": "invoice lines", "legal_basis": "legal obligation"}]}
    engine, schema = _setup(any_sql_url, tmp_path, policy)
    before = snapshot(any_sql_url, schema)
    plan, report = run_erasure(engine)
    assert report.state == "verified"
    after = snapshot(any_sql_url, schema)
    assert after["orders"] == before["orders"] and after["order_items"] == before["order_items"]
    cert = engine.certificate(plan.plan_id)
    assert {r["container"].split(".")[-1] for r in cert["retained"]} == {"orders", "order_items"}
    assert cert["retained"][0]["legal_basis"] == "legal obligation"
    # the member row is still referenced by retained orders: stripped to its keys, not deleted
    assert next(r for r in after["members"] if r[0] == "1")[3] == "None"


def test_when_policy_anonymises_fields_then_row_is_kept_with_new_values(sqlite_url, tmp_path, monkeypatch):
    monkeypatch.setenv("LETHE_HASH_KEY", "k" * 32)
    policy = {"rules": [{"store": "crm", "container": "newsletter", "action": "anonymise",
                         "anonymise": {"email": {"operator": "hash"}}}]}
    engine, schema = _setup(sqlite_url, tmp_path, policy)
    _, report = run_erasure(engine)
    assert report.state == "verified"
    rows = snapshot(sqlite_url, schema)["newsletter"]
    hashed = [r for r in rows if r[1] == "web" and len(r[0]) == 64]
    assert len(hashed) == 1 and ("malice.smith@example.org", "web") in rows


def test_when_a_legal_hold_covers_a_table_then_it_is_not_erased_and_is_reported(sqlite_url, tmp_path):
    policy = {"holds": [{"store": "crm", "container": "notes", "reason": "litigation hold 2026-17"}]}
    engine, schema = _setup(sqlite_url, tmp_path, policy)
    before = snapshot(sqlite_url, schema)
    plan, report = run_erasure(engine)
    assert report.state == "verified"
    assert snapshot(sqlite_url, schema)["notes"] == before["notes"]
    assert {h["reason"] for h in engine.certificate(plan.plan_id)["held"]} == {"legal hold: litigation hold 2026-17"}


def test_when_a_planned_row_changes_before_execution_then_it_is_not_touched(sqlite_url, tmp_path):
    engine, schema = _setup(sqlite_url, tmp_path)
    plan = engine.submit(ALICE, "requester")
    engine.approve(plan.plan_id, "dpo")
    eng = sa.create_engine(sqlite_url)
    with eng.begin() as conn:
        conn.execute(sa.text("UPDATE orders SET total = 13 WHERE order_id = 10"))
    report = engine.execute(plan.plan_id, subject=ALICE)
    assert report.drifted == 1 and report.state == "failed"
    with eng.connect() as conn:
        assert conn.execute(sa.text("SELECT total FROM orders WHERE order_id = 10")).scalar() == 13
    states = {a["state"] for a in engine.ledger.actions(plan.plan_id)}
    assert "drifted" in states
    # the certificate counts what was done, not what was planned: the drifted order is "delete not done"
    by_location = engine.certificate(plan.plan_id)["by_location"]
    assert by_location["crm/orders"] == {"delete": 1, "delete not done": 1}
    assert sum(n for per in by_location.values() for k, n in per.items() if k.endswith("not done")) == 1


def test_when_plan_is_rejected_then_nothing_changes(sqlite_url, tmp_path):
    engine, schema = _setup(sqlite_url, tmp_path)
    before = snapshot(sqlite_url, schema)
    plan = engine.submit(ALICE, "requester")
    engine.reject(plan.plan_id, "dpo", "identity not verified")
    with pytest.raises(LedgerError):
        engine.execute(plan.plan_id, subject=ALICE)
    assert snapshot(sqlite_url, schema) == before
    assert engine.ledger.plan_state(plan.plan_id) == "rejected"


def test_when_approver_must_differ_then_requester_cannot_approve(sqlite_url, tmp_path):
    engine, _ = _setup(sqlite_url, tmp_path)
    plan = engine.submit(ALICE, "Pat Requester")
    with pytest.raises(LedgerError, match="second person"):
        engine.approve(plan.plan_id, "pat requester", require_distinct=True)
    engine.approve(plan.plan_id, "dpo", require_distinct=True)
    assert engine.ledger.plan_state(plan.plan_id) == "approved"


def test_when_plan_expired_then_it_cannot_be_approved(sqlite_url, tmp_path):
    engine, _ = _setup(sqlite_url, tmp_path)
    engine.plan_ttl = dt.timedelta(seconds=-1)
    plan = engine.submit(ALICE, "requester")
    with pytest.raises(LedgerError, match="expired"):
        engine.approve(plan.plan_id, "dpo")


def test_when_only_a_name_is_given_then_nothing_is_erased_without_include_weak(sqlite_url, tmp_path):
    engine, schema = _setup(sqlite_url, tmp_path)
    before = snapshot(sqlite_url, schema)
    name_only = Subject.build(names=["Alice Smith"])
    plan, report = run_erasure(engine, name_only)
    assert plan.actions == [] and len(plan.data["review"]) >= 3
    assert snapshot(sqlite_url, schema) == before


def test_when_stored_plan_is_read_then_it_holds_no_personal_values(sqlite_url, tmp_path):
    engine, _ = _setup(sqlite_url, tmp_path)
    plan = engine.submit(ALICE, "requester")
    text = str(engine.ledger.get_plan(plan.plan_id)["plan"]).lower()
    for value in ("alice.smith@example.org", "7946 0123", "79460123", "alice smith"):
        assert value not in text
    newsletter = next(a for a in plan.actions if a.container == "newsletter")
    assert str(newsletter.location["key"]).startswith("hmac:")  # a key-less row's locator is hashed


def test_when_table_names_are_hostile_then_erasure_quotes_them(sqlite_url, tmp_path):
    eng = sa.create_engine(sqlite_url)
    md = sa.MetaData()
    t = sa.Table('x"; DROP TABLE y; --', md, sa.Column("id", sa.Integer, primary_key=True),
                 sa.Column("e-mail", sa.String(80)))
    keep = sa.Table("y", md, sa.Column("id", sa.Integer, primary_key=True))
    md.create_all(eng)
    with eng.begin() as conn:
        conn.execute(t.insert(), [{"id": 1, "e-mail": "alice.smith@example.org"}, {"id": 2, "e-mail": "b@x.org"}])
        conn.execute(keep.insert(), [{"id": 1}])
    cfg = parse_config({"stores": {"crm": {"kind": "sql", "url": sqlite_url}}}, tmp_path / "stores.yaml")
    engine = ErasureEngine(cfg)
    _, report = run_erasure(engine, Subject.build(emails=["alice.smith@example.org"]))
    assert report.state == "verified"
    with eng.connect() as conn:
        assert conn.execute(sa.select(t.c.id)).scalars().all() == [2]
        assert conn.execute(sa.select(keep.c.id)).scalars().all() == [1]


def test_when_subject_is_under_a_legal_hold_then_erasure_is_refused_until_released(sqlite_url, tmp_path):
    from pii.engine.erasure import ErasureBlocked

    engine, schema = _setup(sqlite_url, tmp_path)
    before = snapshot(sqlite_url, schema)
    engine.ledger.place_hold(Subject.build(emails=["ALICE.SMITH@example.org"]), "subpoena from the county court")
    with pytest.raises(ErasureBlocked, match="legal hold \\(subpoena from the county court\\)") as err:
        engine.submit(ALICE, "requester")
    assert "alice" not in str(err.value).lower()
    assert snapshot(sqlite_url, schema) == before
    assert engine.ledger.holds_on(Subject.build(names=["Alice Smith"])) == []  # a name alone never matches
    engine.ledger.release_hold(ALICE)
    _, report = run_erasure(engine)
    assert report.state == "verified"


def test_when_an_unapproved_request_is_left_behind_then_the_same_requester_supersedes_it(sqlite_url, tmp_path):
    engine, _ = _setup(sqlite_url, tmp_path)
    stale = engine.submit(ALICE, "pat")
    other = engine.submit(ALICE, "sam")  # someone else's request is not theirs to withdraw
    assert engine.supersede_unapproved(ALICE, "pat") == 1
    assert engine.ledger.plan_state(stale.plan_id) == "expired"
    assert engine.ledger.get_request(stale.request_id)["status"] == "withdrawn"
    with pytest.raises(LedgerError, match="not in the request store"):
        engine.ledger.unseal_subject(stale.request_id)
    assert engine.ledger.plan_state(other.plan_id) == "planned"
    assert engine.supersede_unapproved(ALICE, "pat") == 0


def test_when_the_os_user_is_on_a_fully_qualified_host_then_locks_still_work(sqlite_url, tmp_path, monkeypatch):
    import socket

    monkeypatch.setattr(socket, "gethostname", lambda: "worker-3.corp.example.com")
    engine, _ = _setup(sqlite_url, tmp_path)
    plan = engine.submit(ALICE, "requester")
    engine.approve(plan.plan_id, "dpo")
    assert engine.execute(plan.plan_id, subject=ALICE).state == "verified"


@pytest.mark.parametrize("ttl, message", [("abc", "must be a number of hours"), (-1, "positive"), (0, "positive"),
                                          (True, "positive"), ("nan", "positive")])
def test_when_plan_ttl_hours_is_not_a_positive_number_then_config_error(sqlite_url, tmp_path, ttl, message):
    from pii.core.errors import ConfigError

    cfg = parse_config({"stores": {"crm": {"kind": "sql", "url": sqlite_url}}, "erasure": {"plan_ttl_hours": ttl}},
                       tmp_path / "stores.yaml")
    with pytest.raises(ConfigError, match=f"erasure.plan_ttl_hours {message}" if "number" in message
                       else "erasure.plan_ttl_hours must be a positive"):
        ErasureEngine(cfg)


def test_when_another_run_holds_the_subject_then_the_losing_plan_is_failed_not_stuck_executing(sqlite_url, tmp_path):
    import os

    from pii.core.host import node_id
    from pii.engine.erasure import ErasureBlocked, SubjectTarget

    engine, schema = _setup(sqlite_url, tmp_path)
    before = snapshot(sqlite_url, schema)
    plan = engine.submit(ALICE, "requester")
    engine.approve(plan.plan_id, "dpo")
    # a live run (this very process, so its lock is not broken as a dead one) holds the subject
    holder = f"other-run:{node_id()}:{os.getpid()}:feedc0de"
    name = SubjectTarget(engine, ALICE).lock_names()[0]
    assert engine.ledger.acquire_lock(name, holder, 600)
    with pytest.raises(ErasureBlocked):
        engine.execute(plan.plan_id, subject=ALICE)
    assert engine.ledger.plan_state(plan.plan_id) == "failed"  # consistent: resumable, not stuck in executing
    assert snapshot(sqlite_url, schema) == before
    engine.ledger.release_lock(name, holder)
    assert engine.execute(plan.plan_id, subject=ALICE).state == "verified"  # the re-run finishes it


@pytest.mark.parametrize("kind", ["mariadb", "postgresql"])
def test_when_a_database_error_echoes_a_row_value_then_lethe_prints_only_its_class_and_code(kind, request, tmp_path):
    """A trigger's message (or a duplicate key's) can quote the row: the driver's text is never shown."""
    from pii.core.errors import LetheError

    url = request.getfixturevalue("postgres_url" if kind == "postgresql" else "mariadb_url")
    engine, schema = _setup(url, tmp_path)
    table = f"{schema}.newsletter" if schema else "newsletter"
    eng = sa.create_engine(url)
    with eng.begin() as conn:
        if kind == "mariadb":
            conn.execute(sa.text("CREATE TRIGGER keep BEFORE DELETE ON newsletter FOR EACH ROW BEGIN "
                                 "DECLARE msg VARCHAR(200); SET msg = CONCAT('row ', OLD.email, ' is protected'); "
                                 "SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = msg; END"))
        else:
            conn.execute(sa.text("CREATE FUNCTION keep() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION "
                                 "'row % is protected', OLD.email; END; $$ LANGUAGE plpgsql"))
            conn.execute(sa.text(f"CREATE TRIGGER keep BEFORE DELETE ON {table} FOR EACH ROW EXECUTE FUNCTION keep()"))
    eng.dispose()
    plan = engine.submit(ALICE, "requester")
    engine.approve(plan.plan_id, "dpo")
    with pytest.raises(LetheError) as err:
        engine.execute(plan.plan_id, subject=ALICE)
    text = str(err.value)
    assert "alice" not in text.lower() and "protected" not in text
    assert ("IntegrityError" in text or "OperationalError" in text or "RaiseException" in text
            or "InternalError" in text), text
