"""The ledger is tamper-evident with its key (issue 12): someone who can write to the ledger database but
does not hold the key cannot make a plan run by setting its state, cannot rewrite a plan and re-digest it,
and cannot edit, insert or drop audit events without `verify_chain` (`lethe audit --verify`) naming the
first event that no longer fits. On SQLite and PostgreSQL."""
from __future__ import annotations

import hashlib

import pytest
import sqlalchemy as sa

from pii.core.config import parse_config
from pii.core.errors import LedgerTampered
from pii.core.subject import Subject
from pii.engine.erasure import ErasureEngine
from pii.ledger import Ledger
from tests import sql_world

KEY = b"test-ledger-key-0123456789abcdef"
ALICE = Subject.build(**sql_world.ALICE)


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger_url(request):
    return request.getfixturevalue({"sqlite": "sqlite_url", "postgresql": "postgres_url"}[request.param])


@pytest.fixture
def world(ledger_url, tmp_path):
    """A SQLite CRM to erase from, a ledger on SQLite or PostgreSQL, and one stored plan for Alice."""
    crm = f"sqlite:///{tmp_path / 'crm.db'}"
    sql_world.build(crm).dispose()
    config = parse_config({"stores": {"crm": {"kind": "sql", "url": crm}}}, tmp_path / "stores.yaml")
    engine = ErasureEngine(config, ledger=Ledger(ledger_url, key=KEY))
    plan = engine.submit(ALICE, "helpdesk")
    return engine, plan, crm


def crm_rows(url: str) -> dict:
    eng = sa.create_engine(url)
    md = sa.MetaData()
    md.reflect(eng)
    with eng.connect() as conn:
        out = {t.name: sorted(map(tuple, conn.execute(sa.select(t)))) for t in md.sorted_tables}
    eng.dispose()
    return out


def sql(ledger: Ledger, statement: str, **params) -> None:
    with ledger.engine.begin() as conn:
        conn.execute(sa.text(statement), params)


def drop_event_triggers(ledger: Ledger) -> None:
    """What an attacker with the database's owner rights can do: the append-only triggers go."""
    if ledger.engine.dialect.name == "sqlite":
        for name in ("ledger_events_no_update", "ledger_events_no_delete"):
            sql(ledger, f"DROP TRIGGER {name}")
    else:
        sql(ledger, "DROP TRIGGER ledger_events_no_change ON ledger_events")


def test_when_nobody_tampers_then_the_chain_is_intact_and_the_plan_runs(world):
    engine, plan, crm = world
    engine.approve(plan.plan_id, "dpo")
    assert engine.execute(plan.plan_id, subject=ALICE).state == "verified"
    result = engine.ledger.verify_chain()
    events = engine.ledger.audit_events()
    assert result == {"intact": True, "events": len(events), "before_chain": 0, "broken_at": None, "reason": None}
    assert len(events) > 5


def test_when_a_plan_is_set_approved_in_the_database_then_execute_refuses_and_changes_nothing(world):
    engine, plan, crm = world
    before = crm_rows(crm)
    sql(engine.ledger, "UPDATE ledger_plans SET state = 'approved', decided_by = 'dpo', decided_at = :t "
                       "WHERE plan_id = :p", p=plan.plan_id, t="2026-12-03T12:00:00+00:00")
    with pytest.raises(LedgerTampered, match="without an approval signed with the ledger key") as err:
        engine.execute(plan.plan_id, subject=ALICE)
    assert err.value.exit_code == 3
    assert crm_rows(crm) == before
    assert engine.ledger.plan_state(plan.plan_id) == "approved"  # not moved on by the refused run


def test_when_a_signed_approval_is_copied_to_another_approver_then_execute_refuses(world):
    engine, plan, crm = world
    engine.approve(plan.plan_id, "dpo")
    sql(engine.ledger, "UPDATE ledger_plans SET decided_by = 'someone-else' WHERE plan_id = :p", p=plan.plan_id)
    with pytest.raises(LedgerTampered, match="without an approval signed"):
        engine.execute(plan.plan_id, subject=ALICE)


def test_when_a_plan_is_rewritten_and_digested_again_without_the_key_then_it_is_refused(world):
    engine, plan, crm = world
    before = crm_rows(crm)
    row = engine.ledger.get_plan(plan.plan_id)
    text = row["plan"]
    for a in text["actions"]:
        a["action"] = "delete"
    import json

    forged = json.dumps(text, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    sql(engine.ledger, "UPDATE ledger_plans SET plan_json = :j, digest = :d WHERE plan_id = :p", j=forged,
        d=hashlib.sha256(forged.encode("utf-8")).hexdigest(), p=plan.plan_id)
    with pytest.raises(LedgerTampered, match="does not match its digest"):
        engine.approve(plan.plan_id, "dpo")
    with pytest.raises(LedgerTampered, match="does not match its digest"):
        engine.execute(plan.plan_id, subject=ALICE)
    assert crm_rows(crm) == before


def test_when_an_event_is_edited_after_dropping_the_triggers_then_the_chain_names_it(world):
    engine, plan, crm = world
    ledger = engine.ledger
    stored = next(e for e in ledger.audit_events() if e["event"] == "plan_stored")
    drop_event_triggers(ledger)
    sql(ledger, "UPDATE ledger_events SET actor = 'someone' WHERE event_id = :e", e=stored["event_id"])
    result = ledger.verify_chain()
    assert not result["intact"] and result["broken_at"] == stored["event_id"]
    assert "edited" in result["reason"]
    with pytest.raises(LedgerTampered, match=f"audit event {stored['event_id']} does not fit"):
        engine.approve(plan.plan_id, "dpo")


def test_when_an_event_is_inserted_or_the_last_ones_dropped_then_the_chain_says_so(world):
    engine, plan, crm = world
    ledger = engine.ledger
    engine.approve(plan.plan_id, "dpo")
    events = ledger.audit_events()
    drop_event_triggers(ledger)
    sql(ledger, "DELETE FROM ledger_events WHERE event_id = :e", e=events[-1]["event_id"])
    result = ledger.verify_chain()
    assert not result["intact"] and "deleted" in result["reason"]
    sql(ledger, "INSERT INTO ledger_events (ts, request_id, plan_id, event, actor, details) "
                "VALUES ('2026-12-03T12:00:00Z', NULL, :p, 'plan_approved', 'dpo', '{}')", p=plan.plan_id)
    inserted = ledger.audit_events()[-1]["event_id"]  # SQLite may hand the dropped event's id out again
    result = ledger.verify_chain()
    assert not result["intact"] and result["broken_at"] == inserted
    assert result["reason"].startswith(("the event has no link", "the event does not match its link"))


def test_when_the_audit_chain_is_verified_from_the_cli_then_exit_0_intact_and_1_broken(tmp_path, monkeypatch):
    from tests.cli_support import run

    state = tmp_path / "state.db"
    cfg = tmp_path / "stores.yaml"
    crm = tmp_path / "crm.db"
    sql_world.build(f"sqlite:///{crm}").dispose()
    cfg.write_text(f"ledger: sqlite:///{state}\nstores:\n  crm:\n    kind: sql\n    url: sqlite:///{crm}\n",
                   encoding="utf-8")
    monkeypatch.setenv("LETHE_LEDGER_KEY", KEY.decode())
    code, out, err = run("--config", str(cfg), "erase", "--email", sql_world.ALICE["emails"][0], "--yes")
    assert code == 0, err
    code, out, err = run("--config", str(cfg), "audit", "--verify")
    assert code == 0 and "audit chain intact" in out, err
    ledger = Ledger(f"sqlite:///{state}", key=KEY)
    drop_event_triggers(ledger)
    third = ledger.audit_events()[2]["event_id"]
    sql(ledger, "UPDATE ledger_events SET details = '{}' WHERE event_id = :e", e=third)
    code, out, err = run("--config", str(cfg), "audit", "--verify")
    assert code == 1 and f"BROKEN at event {third}" in err
    code, out, err = run("--config", str(cfg), "audit")
    assert code == 2 and "--out FILE" in err


def test_when_the_policy_changes_after_approval_then_actions_it_no_longer_allows_are_refused(world):
    from pii.core.policy import parse_policy

    engine, plan, crm = world
    engine.approve(plan.plan_id, "dpo")
    before = crm_rows(crm)
    planned_orders = [a for a in plan.actions if a.container.endswith("orders") and a.action == "delete"]
    assert planned_orders  # the default policy planned to delete Alice's orders
    engine.policy = parse_policy({"rules": [{"store": "crm", "container": "orders", "action": "retain",
                                             "reason": "invoices kept six years for tax",
                                             "legal_basis": "legal obligation"}]}, "stricter-policy")
    report = engine.execute(plan.plan_id, subject=ALICE)
    assert report.refused == len(planned_orders)
    assert any("refused: the current policy no longer allows" in d for d in report.details)
    assert crm_rows(crm)["orders"] == before["orders"]  # kept, as the policy now says
    assert crm_rows(crm)["newsletter"] != before["newsletter"]  # what it still allows was carried out
    refused = [r for r in engine.ledger.actions(plan.plan_id) if "refused" in (r["detail"] or "")]
    assert {r["action_id"] for r in refused} == {a.action_id for a in planned_orders}
    cert = engine.certificate(plan.plan_id)
    assert cert["refused_by_policy"] == len(planned_orders)
    from pii.reports.certificate import certificate_lines

    assert any("approved action(s) refused" in line for line in certificate_lines(cert))


def test_when_a_finished_plans_certificate_is_asked_for_again_then_it_is_reissued_from_the_ledger(tmp_path, monkeypatch):
    import json

    from tests.cli_support import run

    cfg = tmp_path / "stores.yaml"
    crm = tmp_path / "crm.db"
    sql_world.build(f"sqlite:///{crm}").dispose()
    cfg.write_text(f"ledger: sqlite:///{tmp_path / 'state.db'}\nstores:\n  crm:\n    kind: sql\n"
                   f"    url: sqlite:///{crm}\n", encoding="utf-8")
    monkeypatch.setenv("LETHE_LEDGER_KEY", KEY.decode())
    code, out, err = run("--config", str(cfg), "erase", "--email", sql_world.ALICE["emails"][0])
    assert code == 3, err
    plan_id = out.split("plan ")[-1].split()[0]
    code, out, err = run("--config", str(cfg), "certificate", plan_id)
    assert code == 3 and "has not been carried out" in err  # a refusal: exit 3
    assert run("--config", str(cfg), "approve", plan_id, "--execute")[0] == 0
    code, out, err = run("--config", str(cfg), "certificate", plan_id, "--out", str(tmp_path / "again.json"))
    assert code == 0, err
    assert f"certificate: plan {plan_id}" in out and "state: verified" in out
    cert = json.loads((tmp_path / "again.json").read_text(encoding="utf-8"))
    assert cert["plan_id"] == plan_id and cert["verified"] is True and cert["rows_affected"] > 0
    assert "alice" not in out.lower() + (tmp_path / "again.txt").read_text(encoding="utf-8").lower()
