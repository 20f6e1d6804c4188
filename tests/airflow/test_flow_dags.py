"""`dag.test()` runs of the special-flow DAGs (received_in_error, child_data_purge, retention_purge,
consent_withdrawal) on the demo stores of all four kinds (SQLite CRM, CSV exports, the FTP drop and the
mailbox served in-process), the approval answered in the test as in tests/airflow/test_dags.py; the stores are
checked afterwards."""
from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from pii.demo import flows as demo_flows

from pii.demo import remote as demo_remote
from pii.demo.world import build_demo
from tests.dag_support import answer, flow, ledger_for, states, xcoms  # noqa: F401 - `answer` is a fixture

pytestmark = pytest.mark.usefixtures("airflow_db")
RUN_DATE = demo_flows.RUN_DATE.isoformat()


@pytest.fixture
def world(tmp_path, monkeypatch):
    ftp_port, gmail_port = demo_remote.free_port(0), demo_remote.free_port(0)
    w = build_demo(tmp_path / "demo", remote=True, ftp_port=ftp_port, gmail_port=gmail_port)
    monkeypatch.setenv(demo_remote.FTP_PASSWORD_ENV, "pw-for-this-test")
    monkeypatch.setenv("LETHE_CONFIG", str(w.config_path))
    monkeypatch.setenv("LETHE_OUTPUT_DIR", str(tmp_path / "out"))
    monkeypatch.setenv("LETHE_WORK_DIR", str(tmp_path / "work"))
    with demo_remote.serve(w.root, ftp_port, gmail_port):
        yield w


def ids(world, table: str, key: str) -> set[int]:
    con = sqlite3.connect(world.crm_path)
    try:
        return {r[0] for r in con.execute(f'SELECT "{key}" FROM "{table}"')}
    finally:
        con.close()


def _rendered(dag_id: str, run_id: str, task_id: str) -> list[str]:
    """How the UI names a mapped task's instances (`map_index_template`)."""
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as s:
        return list(s.scalars(select(TaskInstance.rendered_map_index).where(
            TaskInstance.dag_id == dag_id, TaskInstance.run_id == run_id, TaskInstance.task_id == task_id)))


def drop(world) -> Path:
    return world.root / "data" / "ftp" / "incoming"


def test_when_received_in_error_dag_is_approved_then_the_mail_sender_is_gone(world, answer):
    seen = answer("Approve", user="dpo")
    box = world.root / "data" / "mailbox"
    dr = flow("received_in_error").test(run_conf={"store": "support_mailbox", "sender": demo_flows.ERROR_SENDER,
                                                  "requester": "support desk"})
    assert dr.state == "success", states(dr)
    out = xcoms("received_in_error", dr.run_id)
    assert out[("certificate", "return_value", -1)]["verified"] is True
    assert sorted(p.name for p in box.glob("*.trash.eml")) == sorted(
        f"{m}.trash.eml" for m in world.flows.error_message_ids)
    body = seen["body"]
    assert body.startswith("## Received in error plan `") and "What this plan does: **2 delete**." in body
    assert "### Store `support_mailbox`" in body and "| Requester | support desk |" in body
    assert demo_flows.ERROR_SENDER not in body
    assert ledger_for(world).is_suppressed("email", demo_flows.ERROR_SENDER)


def test_when_received_in_error_dag_names_a_sql_batch_and_is_rejected_then_nothing_changes(world, answer):
    answer("Reject", user="dpo", reason="wrong batch")
    before = ids(world, "enquiries", "enquiry_id")
    dr = flow("received_in_error").test(run_conf={"store": "crm", "batch_column": "import_batch",
                                                  "batch_value": demo_flows.ERROR_BATCH})
    assert dr.state == "success", states(dr)
    assert states(dr)["execute"] == "skipped"
    assert ids(world, "enquiries", "enquiry_id") == before
    plan_id = xcoms("received_in_error", dr.run_id)[("plan", "plan_id", -1)]
    row = ledger_for(world).get_plan(plan_id)
    assert row["state"] == "rejected" and row["decision_reason"] == "wrong batch"


def test_when_child_purge_dag_is_approved_then_children_go_in_every_store_and_clues_are_listed(world, answer):
    answer("Approve", user="dpo")
    signups = ids(world, "youth_signups", "signup_id")
    dr = flow("child_data_purge").test(run_conf={"run_date": RUN_DATE})
    assert dr.state == "success", states(dr)
    f = world.flows
    assert signups - ids(world, "youth_signups", "signup_id") == set(f.child_signup_ids)
    assert len((drop(world) / "juniors.jsonl").read_text().splitlines()) == 6 - len(f.child_jsonl_rows)
    assert len((world.root / "data" / "exports" / "junior_club.csv").read_text().splitlines()) == 11 - len(
        f.child_csv_rows)
    out = xcoms("child_data_purge", dr.run_id)
    planned = out[("plan", "review", -1)]
    assert planned == len(f.clue_signup_ids) + len(f.clue_message_ids)
    report = json.loads(Path(out[("plan", "report", -1)]).read_text())
    assert {r["store"] for r in report["review"]} == {"crm", "support_mailbox"}
    assert "I am 12" not in json.dumps(report)


def test_when_nothing_is_due_then_child_purge_asks_no_one(world, answer):
    seen = answer("Approve", user="dpo")
    dr = flow("child_data_purge").test(run_conf={"run_date": "1940-01-01"})  # nobody was born yet
    assert dr.state == "success", states(dr)
    st = states(dr)
    assert st["needs_approval"] == "success" and st["approval"] == "skipped" and st["execute"] == "skipped"
    assert "body" not in seen


def test_when_retention_dag_runs_then_each_rule_is_planned_approved_and_held_data_stays(world, answer):
    answer("Approve", user="dpo")
    f = world.flows
    tickets = ids(world, "support_tickets", "ticket_id")
    dr = flow("retention_purge").test(run_conf={"run_date": RUN_DATE, "rules": [
        "withdrawn-consent", "complaints", "call-recordings", "support-mail", "visitors"]})
    assert dr.state == "success", states(dr)
    st = states(dr)
    assert sorted(k for k in st if k.startswith("approval[")) == [f"approval[{i}]" for i in range(4)]
    plans = {m: v for (t, k, m), v in xcoms("retention_purge", dr.run_id).items() if t == "plan" and k == "return_value"}
    assert sorted(_rendered("retention_purge", dr.run_id, "plan")) == sorted(  # named by rule, not "plan 0"
        ["withdrawn-consent", "call-recordings", "support-mail", "visitors"])
    assert sorted(_rendered("retention_purge", dr.run_id, "approval")) == sorted(plans.values())  # by plan
    assert not set(f.expired_withdrawn_ids) & ids(world, "marketing_contacts", "contact_id")
    assert ids(world, "support_tickets", "ticket_id") == tickets  # complaints under a legal hold
    assert all(not (drop(world) / r.split("/incoming/")[1]).exists() for r in f.old_recordings)
    assert all((drop(world) / r.split("/incoming/")[1]).exists() for r in f.new_recordings)
    box = world.root / "data" / "mailbox"
    assert all((box / f"{m}.trash.eml").exists() for m in f.old_message_ids)
    dry = json.loads(next((Path(world.root).parent / "out" / "retention").glob("dry-run-*.json")).read_text())
    held = {r["rule"]: r["held"] for r in dry["rules"]}
    assert held["complaints"] == len(f.held_ticket_ids) and dry["rules"][1]["legal_hold"]


def test_when_retention_dag_is_a_dry_run_then_only_the_report_is_written(world, answer):
    answer("Approve", user="dpo")
    before = ids(world, "marketing_contacts", "contact_id")
    dr = flow("retention_purge").test(run_conf={"run_date": RUN_DATE, "dry_run": True})
    assert dr.state == "success", states(dr)
    assert ids(world, "marketing_contacts", "contact_id") == before
    assert not [k for k in states(dr) if k.startswith("approval[")]


def test_when_consent_withdrawal_dag_runs_then_marketing_lists_drop_the_person(world, answer):
    answer("Approve", user="dpo")
    email = "alice.smith@example.org"
    members = ids(world, "members", "member_id")
    dr = flow("consent_withdrawal").test(run_conf={"emails": [email]})
    assert dr.state == "success", states(dr)
    con = sqlite3.connect(world.crm_path)
    assert con.execute("SELECT count(*) FROM newsletter WHERE lower(email)=?", (email,)).fetchone()[0] == 0
    con.close()
    assert ids(world, "members", "member_id") == members
    assert ledger_for(world).is_suppressed("email", email)


@pytest.mark.parametrize("store, path", [("exports", demo_flows.ERROR_EXPORT),
                                         ("partner_drop", demo_flows.ERROR_FTP_FILE)])
def test_when_received_in_error_dag_names_a_file_then_that_file_goes(world, answer, store, path):
    answer("Approve", user="dpo")
    folder = world.root / "data" / ("exports" if store == "exports" else "ftp/incoming")
    name = path.rsplit("/", 1)[-1]
    others = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file() and p.name != name}
    dr = flow("received_in_error").test(run_conf={"store": store, "file": path})
    assert dr.state == "success", states(dr)
    assert not (folder / name).exists()
    assert {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()} == others
