"""Declared retention honoured end to end (issue 13, item 2): containers a store's stores.yaml metadata
declares kept under a legal basis are retained by the default plan and stay in the real stores after an
approved erasure; a rule or flow that erases them goes ahead only as flagged in the plan (and what the CLI
and the approval print), the flag is part of the digested stored plan, and a declaration added after
approval stops the erasure of what it covers."""
from __future__ import annotations

import csv
import datetime as dt
import sqlite3
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml

from pii.core.config import load_config, parse_config
from pii.core.errors import LedgerTampered
from pii.core.policy import parse_policy
from pii.core.subject import Subject
from pii.engine.erasure import ErasureEngine
from tests import sql_world
from tests.cli_support import assert_no_personal_data, run

ALICE = Subject.build(**sql_world.ALICE)
BASIS = "Legal obligation (UK GDPR Art. 6(1)(c)): tax and accounting records"
ORDERS = {"orders": {"period": "6 years", "legal_basis": BASIS, "reason": "order records kept for HMRC"},
          "order_items": {"period": "6 years", "legal_basis": BASIS}}
RUN_DATE = dt.date(2026, 11, 22)


def snapshot(url, schema=None) -> dict[str, set]:
    eng = sa.create_engine(url)
    md = sa.MetaData(schema=schema)
    md.reflect(eng)
    with eng.connect() as conn:
        out = {t.name: {tuple(str(v) for v in r) for r in conn.execute(sa.select(t))} for t in md.sorted_tables}
    eng.dispose()
    return out


def sql_engine(url, tmp_path, retained=ORDERS, policy=None):
    schema = "crm" if url.startswith("postgresql") else None
    sql_world.build(url, schema=schema).dispose()
    cfg = parse_config({"stores": {"crm": {"kind": "sql", "url": url, "metadata": {
        "legal_basis": "Contract", "retention": "Orders six years", "retained": retained}}}},
        tmp_path / "stores.yaml")
    return ErasureEngine(cfg, policy=parse_policy(policy, "test-policy") if policy else None), schema


def erase(engine, subject=ALICE):
    plan = engine.submit(subject, "requester@example.test")
    engine.approve(plan.plan_id, "dpo@example.test")
    return plan, engine.execute(plan.plan_id, subject=subject)


# ---------------------------------------------------------------------------- subject erasure
def test_when_a_store_declares_orders_retained_then_an_approved_erasure_keeps_them(any_sql_url, tmp_path):
    engine, schema = sql_engine(any_sql_url, tmp_path)
    before = snapshot(any_sql_url, schema)
    plan, report = erase(engine)
    assert report.state == "verified" and report.remaining == 0
    by_table = {a.container.split(".")[-1]: a for a in plan.actions if a.action == "retain"}
    assert set(by_table) == {"orders", "order_items"}
    assert by_table["orders"].legal_basis == BASIS and "order records kept for HMRC" in by_table["orders"].reason
    after = snapshot(any_sql_url, schema)
    assert after["orders"] == before["orders"] and after["order_items"] == before["order_items"]  # rows kept
    # her member row is still referenced by the kept orders: stripped to its keys, not deleted
    alice = next(r for r in after["members"] if r[0] == "1")
    assert alice[1:6] == ("None",) * 5
    assert ("alice.smith@example.org", "web") not in after["newsletter"]  # undeclared tables: the default
    cert = engine.certificate(plan.plan_id)
    assert {r["container"].split(".")[-1] for r in cert["retained"]} == {"orders", "order_items"}
    assert {r["legal_basis"] for r in cert["retained"]} == {BASIS}
    assert cert["declared_retention_conflicts"] == []
    text = "\n".join(plan.lines())
    assert "(declared in stores.yaml: kept 6 years)" in text and "!" not in text


def test_when_a_rule_deletes_declared_tables_then_they_are_deleted_and_the_plan_and_certificate_flag_it(
        sqlite_url, tmp_path):
    engine, _ = sql_engine(sqlite_url, tmp_path, policy={"rules": [{"container": "order*", "action": "delete"}]})
    plan = engine.build_plan(ALICE)
    flagged = [a for a in plan.actions if a.container in ("orders", "order_items")]
    assert len(flagged) == 5 and {a.action for a in flagged} == {"delete"}  # 2 orders, 3 order lines
    assert {a.conflict for a in flagged} == {
        f"crm/orders is declared kept 6 years ({BASIS}); policy rules[0] says delete",
        f"crm/order_items is declared kept 6 years ({BASIS}); policy rules[0] says delete"}
    assert all(not a.conflict for a in plan.actions if a not in flagged)
    text = "\n".join(plan.lines())
    assert "  ! 5 action(s) conflict with retention declared in stores.yaml" in text
    assert "  crm/orders: 2 delete  ! conflicts with declared retention" in text
    plan, report = erase(engine)
    assert report.state == "verified"
    with sqlite3.connect(sqlite_url.removeprefix("sqlite:///")) as con:  # the rule won: her orders are gone
        assert [r[0] for r in con.execute("SELECT order_id FROM orders ORDER BY 1")] == [12]
        assert [r[0] for r in con.execute("SELECT order_id FROM order_items ORDER BY 1")] == [12]
    cert = engine.certificate(plan.plan_id)
    assert cert["declared_retention_conflicts"] == [
        {"store": "crm", "container": c, "action": "delete", "locations": n,
         "conflict": f"crm/{c} is declared kept 6 years ({BASIS}); policy rules[0] says delete", "override": None}
        for c, n in (("order_items", 3), ("orders", 2))]


def test_when_the_stored_conflict_flag_is_edited_then_the_plan_is_refused(sqlite_url, tmp_path):
    engine, _ = sql_engine(sqlite_url, tmp_path, policy={"rules": [{"container": "orders", "action": "delete"}]})
    plan = engine.submit(ALICE, "requester@example.test")
    ledger_db = sa.create_engine(engine.config.state_url)
    with ledger_db.begin() as conn:
        text = conn.execute(sa.text("SELECT plan_json FROM ledger_plans WHERE plan_id = :p"),
                            {"p": plan.plan_id}).scalar_one()
        assert '"conflict":' in text
        edited = text.replace('"conflict":', '"x_conflict":')
        conn.execute(sa.text("UPDATE ledger_plans SET plan_json = :t WHERE plan_id = :p"),
                     {"t": edited, "p": plan.plan_id})
    ledger_db.dispose()
    with pytest.raises(LedgerTampered):
        engine.approve(plan.plan_id, "dpo@example.test")


def test_when_a_declaration_is_added_after_approval_then_the_erasure_of_what_it_covers_is_refused(
        sqlite_url, tmp_path):
    engine, _ = sql_engine(sqlite_url, tmp_path, retained={})
    plan = engine.submit(ALICE, "requester@example.test")
    assert {a.action for a in plan.actions if a.container == "orders"} == {"delete"}
    engine.approve(plan.plan_id, "dpo@example.test")
    cfg = parse_config({"stores": {"crm": {"kind": "sql", "url": sqlite_url, "metadata": {"retained": ORDERS}}}},
                       tmp_path / "stores.yaml")
    report = ErasureEngine(cfg).execute(plan.plan_id, subject=ALICE)
    assert report.refused == 5 and report.state == "verified"  # 2 orders + 3 order lines, kept
    with sqlite3.connect(sqlite_url.removeprefix("sqlite:///")) as con:
        assert [r[0] for r in con.execute("SELECT order_id FROM orders ORDER BY 1")] == [10, 11, 12]
        assert con.execute("SELECT count(*) FROM newsletter WHERE email = 'alice.smith@example.org'").fetchone()[0] == 0


def test_when_a_csv_file_is_declared_retained_then_erasure_leaves_it_byte_for_byte(tmp_path):
    exports = tmp_path / "exports"
    exports.mkdir()
    (exports / "payments.csv").write_bytes(b"name,email,amount\r\nAlice Smith,alice.smith@example.org,12.50\r\n"
                                           b"Bob Jones,bob.jones@example.org,5.00\r\n")
    (exports / "contacts.csv").write_bytes(b"name,email\nAlice Smith,alice.smith@example.org\nBob,bob@example.org\n")
    before = (exports / "payments.csv").read_bytes()
    cfg = parse_config({"stores": {"exports": {"kind": "csv", "path": "exports", "metadata": {"retained": {
        "pay*.csv": {"period": "6y", "legal_basis": BASIS}}}}}}, tmp_path / "stores.yaml")
    engine = ErasureEngine(cfg)
    plan, report = erase(engine)
    assert report.state == "verified"
    assert {(a.container, a.action) for a in plan.actions} == {("payments.csv", "retain"), ("contacts.csv", "delete")}
    assert (exports / "payments.csv").read_bytes() == before
    assert "alice" not in (exports / "contacts.csv").read_text().lower()


def test_when_the_cli_prints_a_plan_with_a_conflict_then_the_flag_shows_and_no_personal_value(tmp_path):
    url = f"sqlite:///{tmp_path / 'crm.db'}"
    sql_world.build(url).dispose()
    (tmp_path / "policy.yaml").write_text(yaml.safe_dump({"rules": [{"container": "orders", "action": "delete"}]}))
    (tmp_path / "stores.yaml").write_text(yaml.safe_dump({
        "policy": "policy.yaml",
        "stores": {"crm": {"kind": "sql", "url": "sqlite:///crm.db", "metadata": {"retained": ORDERS}}}}))
    before = snapshot(url)
    code, out, err = run("--config", tmp_path / "stores.yaml", "erase", "--email", "alice.smith@example.org",
                         "--dry-run")
    assert code == 0, err
    assert "! 2 action(s) conflict with retention declared in stores.yaml" in out
    assert f"! delete 2 in crm/orders conflicts with declared retention: crm/orders is declared kept 6 years " \
           f"({BASIS}); policy rules[0] says delete" in out
    assert "retain 3 in crm/order_items: declared in stores.yaml: kept 6 years; legal basis: " in out
    assert_no_personal_data(out + err)
    assert snapshot(url) == before


def test_when_a_declaration_is_misspelt_then_the_cli_refuses_with_one_line(tmp_path):
    (tmp_path / "stores.yaml").write_text(yaml.safe_dump({"stores": {"crm": {
        "kind": "sql", "url": "sqlite:///crm.db",
        "metadata": {"retained": {"payments": {"period": "6y", "legal_bassis": BASIS}}}}}}))
    code, out, err = run("--config", tmp_path / "stores.yaml", "erase", "--email", "alice.smith@example.org",
                         "--dry-run")
    assert code == 2 and out == ""
    assert err.strip().count("\n") == 0
    assert "metadata.retained 'payments': unknown key 'legal_bassis' (did you mean 'legal_basis'?)" in err


# ---------------------------------------------------------------------------- the special flows
def _flow_world(tmp_path, retained_crm, retained_exports=None, retention=None, child=None) -> Path:
    """A SQLite CRM (enquiries, youth_signups) and a CSV folder (a partner upload received in error)."""
    db = tmp_path / "crm.db"
    con = sqlite3.connect(db)
    con.executescript("""
        CREATE TABLE enquiries (enquiry_id INTEGER PRIMARY KEY, email TEXT, full_name TEXT, received_at TEXT);
        CREATE TABLE youth_signups (signup_id INTEGER PRIMARY KEY, email TEXT, full_name TEXT, date_of_birth TEXT);
        INSERT INTO enquiries VALUES (1, 'old.one@example.test', 'Old One', '2022-01-10'),
                                     (2, 'new.one@example.test', 'New One', '2026-10-01');
        INSERT INTO youth_signups VALUES (1, 'kid@example.test', 'Kid Person', '2016-05-01'),
                                         (2, 'adult@example.test', 'Adult Person', '1990-05-01');
    """)
    con.commit()
    con.close()
    exports = tmp_path / "exports"
    exports.mkdir()
    with (exports / "partner_upload.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["name", "email"])
        w.writerow(["Wrong Person", "wrong.person@example.test"])
    (exports / "kept.csv").write_text("name,email\nKeep Me,keep.me@example.test\n")
    data = {"stores": {
        "crm": {"kind": "sql", "url": "sqlite:///crm.db", "metadata": {"retained": retained_crm}},
        "exports": {"kind": "csv", "path": "exports", "metadata": {"retained": retained_exports or {}}}},
        "child_purge": child or {"text_clues": False, "stores": ["crm"]}}
    if retention:
        data["retention"] = retention
    (tmp_path / "stores.yaml").write_text(yaml.safe_dump(data))
    return tmp_path / "stores.yaml"


def _approve_and_run(engine, plan):
    engine.approve(plan.plan_id, "dpo@example.test")
    return engine.execute(plan.plan_id)


def test_when_data_received_in_error_lies_in_a_declared_container_then_it_is_deleted_and_flagged(tmp_path):
    from pii.engine.flows import Source, received_in_error, submit_selection

    path = _flow_world(tmp_path, {}, {"partner_*.csv": {"period": "6y", "legal_basis": BASIS}})
    engine = ErasureEngine(load_config(path), today=RUN_DATE)
    plan = submit_selection(engine, received_in_error(engine, Source(store="exports", file="partner_upload.csv")),
                            "dpo@example.test")
    assert [a.action for a in plan.actions] == ["delete"]
    assert plan.actions[0].conflict == (f"exports/partner_*.csv is declared kept 6y ({BASIS}); the received-in-error "
                                        "flow (no legal basis to hold it) says delete")
    assert "! 1 action(s) conflict with retention declared in stores.yaml" in "\n".join(plan.lines())
    report = _approve_and_run(engine, plan)
    assert report.state == "verified"
    assert sorted(p.name for p in (tmp_path / "exports").iterdir()) == ["kept.csv"]


def test_when_a_childs_record_lies_in_a_declared_table_then_it_is_deleted_and_flagged(tmp_path):
    from pii.engine.flows import child_purge, submit_selection

    path = _flow_world(tmp_path, {"youth_signups": {"period": "2y", "legal_basis": "Contract"}})
    engine = ErasureEngine(load_config(path), today=RUN_DATE)
    plan = submit_selection(engine, child_purge(engine, RUN_DATE), "dpo@example.test")
    assert [a.action for a in plan.actions] == ["delete"]
    assert "crm/youth_signups is declared kept 2y (Contract); the child-data purge says delete" == \
        plan.actions[0].conflict
    assert _approve_and_run(engine, plan).state == "verified"
    with sqlite3.connect(tmp_path / "crm.db") as con:
        assert [r[0] for r in con.execute("SELECT signup_id FROM youth_signups")] == [2]


def _retention_plan(tmp_path, period, **extra):
    from pii.core.retention import load_schedule
    from pii.engine.flows import preview_selection, retention_selection

    rule = {"name": "enquiries", "store": "crm", "match": "enquiries", "date": "received_at", "period": period,
            "category": "Enquiries", **extra}
    path = _flow_world(tmp_path, {"enquiries": {"period": "3y", "legal_basis": BASIS}}, retention=[rule])
    config = load_config(path)
    engine = ErasureEngine(config, today=RUN_DATE)
    selection = retention_selection(engine, load_schedule(config).rule("enquiries"), RUN_DATE)
    return engine, selection, preview_selection(engine, selection)


def test_when_a_retention_rule_purges_sooner_than_declared_then_it_is_flagged_and_still_purges(tmp_path):
    from pii.engine.flows import submit_selection

    engine, selection, preview = _retention_plan(tmp_path, "2y")
    assert [a.action for a in preview.actions] == ["delete"]  # only the 2022 enquiry has expired
    assert preview.actions[0].conflict == (f"crm/enquiries is declared kept 3y ({BASIS}); retention rule "
                                           "enquiries (kept 2y) says delete")
    assert "  crm/enquiries: 1 delete  ! conflicts with declared retention" in preview.lines()
    plan = submit_selection(engine, selection, "dpo@example.test")
    assert _approve_and_run(engine, plan).state == "verified"
    with sqlite3.connect(tmp_path / "crm.db") as con:
        assert [r[0] for r in con.execute("SELECT enquiry_id FROM enquiries")] == [2]


def test_when_a_retention_rule_keeps_at_least_the_declared_period_then_it_is_not_a_conflict(tmp_path):
    _, _, preview = _retention_plan(tmp_path, "4y")
    assert [a.action for a in preview.actions] == ["delete"] and preview.actions[0].conflict is None
    assert "!" not in "\n".join(preview.lines())


def test_when_a_retention_rule_overrides_the_declaration_then_the_plan_says_why(tmp_path):
    _, _, preview = _retention_plan(tmp_path, "2y", override_retained="enquiries are not tax records")
    a = preview.actions[0]
    assert a.conflict and a.override_reason == "enquiries are not tax records"
    text = "\n".join(preview.lines())
    assert "!" not in text and "override: enquiries are not tax records" in text
