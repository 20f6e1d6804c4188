"""Lethe's Airflow DAGs: integrity (every file imports, no I/O at parse time) and `dag.test()` runs of each
flow on the demo stores, with the approval answered in the test (NOTES.md: a Human-in-the-loop task that
nobody answers waits forever, so the suite runs under `timeout -s KILL`).

How the approval is answered: `HITLOperator.execute` (the provider's, which would park the task in
`awaiting_input`) is replaced by a function that calls the operator's own `execute_complete` with the event
the API server or the scheduler's timeout sweep would deliver. Lethe's `ErasureApprovalOperator.execute`
still runs (it loads the plan and renders the body), and so does its `execute_complete` (ledger decision).
"""
from __future__ import annotations

import datetime as dt
import json
import os
import sqlite3
from pathlib import Path

import pytest

os.environ["LETHE_TASK_RETRIES"] = "0"  # read when the DAG files are parsed: no retry delays in tests

from pii.demo.world import build_demo, location_key  # noqa: E402
from tests.dag_support import answer, flow, ledger_for, states, xcoms  # noqa: F401 - `answer` is a fixture

DAGS = Path(__file__).resolve().parents[2] / "dags"
DAG_IDS = {"subject_access", "subject_erasure", "discovery_sweep", "requests_due", "lethe_db_cleanup",
           "received_in_error", "child_data_purge", "retention_purge", "consent_withdrawal",
           "subject_restriction", "subject_rectification", "inactive_accounts"}
SUBJECT_CONF = {"emails": ["alice.smith@example.org"], "names": ["Alice Smith"], "phones": ["020 7946 0123"]}
# forms of the demo subject's identifiers that must never reach Airflow's metadata or task logs
PERSONAL = ("alice", "79460123", "7946 0123", "+442079460123")

pytestmark = pytest.mark.usefixtures("airflow_db")


# ---------------------------------------------------------------------------- helpers
def load_bag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(DAGS))


@pytest.fixture(scope="module")
def bag():
    return load_bag()


@pytest.fixture
def world(tmp_path, monkeypatch):
    """The demo stores, LETHE_CONFIG pointing at them, output and work folders in tmp_path."""
    w = build_demo(tmp_path / "demo")
    monkeypatch.setenv("LETHE_CONFIG", str(w.config_path))
    monkeypatch.setenv("LETHE_OUTPUT_DIR", str(tmp_path / "out"))
    monkeypatch.setenv("LETHE_WORK_DIR", str(tmp_path / "work"))
    return w


def run_meta(dag_id: str, run_id: str) -> str:
    """Everything Airflow keeps about one run that a subject's identifiers could leak into, as one text:
    the run conf, XComs, rendered template fields and Human-in-the-loop details."""
    from airflow.models.dagrun import DagRun
    from airflow.models.hitl import HITLDetail
    from airflow.models.renderedtifields import RenderedTaskInstanceFields as RTIF
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as s:
        conf = s.scalars(select(DagRun.conf).where(DagRun.dag_id == dag_id, DagRun.run_id == run_id)).all()
        xcoms = s.scalars(select(XComModel.value).where(XComModel.dag_id == dag_id, XComModel.run_id == run_id)).all()
        rtif = s.scalars(select(RTIF.rendered_fields).where(RTIF.dag_id == dag_id, RTIF.run_id == run_id)).all()
        ti_ids = s.scalars(select(TaskInstance.id).where(TaskInstance.dag_id == dag_id,
                                                         TaskInstance.run_id == run_id)).all()
        hitl = [(h.subject, h.body, h.params_input, h.chosen_options)
                for h in s.scalars(select(HITLDetail).where(HITLDetail.ti_id.in_(ti_ids))).all()]
    assert xcoms, "the run left no XComs: the query is wrong"
    return json.dumps({"conf": conf, "xcom": xcoms, "rtif": rtif, "hitl": hitl}, default=str).lower()


def rendered_map_indexes(dag_id: str, run_id: str, task_id: str) -> list[str]:
    """How the UI names a mapped task's instances (`map_index_template`, rendered on the worker)."""
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as s:
        return list(s.scalars(select(TaskInstance.rendered_map_index).where(
            TaskInstance.dag_id == dag_id, TaskInstance.run_id == run_id, TaskInstance.task_id == task_id)))


def approval_reason_is(ledger, plan_id: str, text: str) -> bool:
    """Whether the plan's approval event records `text` as its reason (the keyed hash the event keeps)."""
    (event,) = [e for e in ledger.audit_events(plan_id=plan_id) if e["event"] == "plan_approved"]
    return bool(event["details"].get("reason_hash")) and ledger.reason_matches(event["details"]["reason_hash"], text)


def assert_no_personal(text: str) -> None:
    low = text.lower()
    for p in PERSONAL:
        assert p not in low, f"{p!r} leaked"


def demo_rows(world) -> dict:
    con = sqlite3.connect(world.crm_path)
    tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")]
    out = {t: sorted(map(repr, con.execute(f'SELECT * FROM "{t}"'))) for t in tables}
    con.close()
    for f in sorted(world.exports_dir.iterdir()):
        out[f.name] = f.read_bytes()
    return out


# ---------------------------------------------------------------------------- integrity
def test_when_dags_folder_is_parsed_without_lethe_config_then_every_dag_imports(bag):
    assert "LETHE_CONFIG" not in os.environ  # parsing needs no config: no I/O at import time
    assert bag.import_errors == {}
    assert set(bag.dags) == DAG_IDS
    assert {p.stem for p in DAGS.glob("*.py")} == DAG_IDS  # one file per flow, named by its DAG id


def test_when_lethe_config_points_nowhere_then_parsing_still_succeeds(monkeypatch, tmp_path):
    monkeypatch.setenv("LETHE_CONFIG", str(tmp_path / "missing.yaml"))
    parsed = load_bag()
    assert parsed.import_errors == {} and set(parsed.dags) == DAG_IDS
    assert list(tmp_path.iterdir()) == []


def test_when_dags_are_inspected_then_flows_are_wired_as_documented(bag):
    from plugins.approval import ErasureApprovalOperator

    access = bag.dags["subject_access"]
    assert set(access.task_dict) == {"register", "identity", "units", "locate", "assemble", "record"}
    assert access.task_dict["units"].upstream_task_ids == {"identity"}  # nothing is searched before it
    assert type(access.task_dict["locate"]).__name__.endswith("MappedOperator")  # one task per store
    assert access.schedule is None
    erasure = bag.dags["subject_erasure"]
    assert set(erasure.task_dict) == {"register", "identity", "units", "locate", "plan", "approval", "execute",
                                      "certificate"}
    assert erasure.task_dict["units"].upstream_task_ids == {"identity"}
    assert type(erasure.task_dict["locate"]).__name__.endswith("MappedOperator")  # the plan's search, mapped
    assert erasure.task_dict["plan"].upstream_task_ids == {"register", "locate"}
    approval = erasure.task_dict["approval"]
    assert isinstance(approval, ErasureApprovalOperator)
    assert approval.options == ["Approve", "Reject"] and approval.defaults == ["Reject"]
    assert approval.response_timeout == dt.timedelta(hours=48) and approval.retries == 0
    assert erasure.task_dict["execute"].upstream_task_ids == {"approval"}
    for dag_id in ("discovery_sweep", "requests_due", "lethe_db_cleanup"):
        assert bag.dags[dag_id].catchup is False
        assert bag.dags[dag_id].schedule == "@daily", dag_id
    params = access.params
    assert params["emails"] == [] and params["request_id"] is None


def test_when_privacy_staff_open_a_dag_then_its_description_and_docs_speak_to_them(bag):
    for dag_id, dag in bag.dags.items():
        assert dag.description and len(dag.description) <= 120, dag_id  # one line in the DAG list
        doc = dag.doc_md or ""
        assert "**What it does.**" in doc, dag_id
        for developer_talk in ("Wiring only", "plugins/", "pii/", ".py", "XCom"):
            assert developer_talk not in doc, (dag_id, developer_talk)


def test_when_lethe_approvers_is_set_then_only_those_users_may_answer(monkeypatch):
    monkeypatch.setenv("LETHE_APPROVERS", "dpo, privacy-lead")
    monkeypatch.setenv("LETHE_APPROVAL_TIMEOUT_HOURS", "24")
    approval = load_bag().dags["subject_erasure"].task_dict["approval"]
    assert approval.assigned_users == [{"id": "dpo", "name": "dpo"}, {"id": "privacy-lead", "name": "privacy-lead"}]
    assert approval.response_timeout == dt.timedelta(hours=24)


def test_when_run_conf_has_an_invalid_email_then_param_validation_fails(world):
    from airflow.sdk.exceptions import ParamValidationError

    with pytest.raises(ParamValidationError):
        flow("subject_access").test(run_conf={"emails": ["not an email"]})
    with pytest.raises(ParamValidationError):  # "@" in it is not enough: the CLI's rules
        flow("subject_erasure").test(run_conf={"emails": ["x@@y"]})
    with pytest.raises(ParamValidationError):
        flow("subject_erasure").test(run_conf={"received_at": "31/01/2026", "emails": ["a@b.org"]})


def test_when_an_email_passes_the_form_but_not_the_idna_rules_then_the_first_task_fails_without_the_value(
        world, capfd):
    """What a schema pattern cannot check (an internationalised domain that is not valid IDNA, here a label
    over 63 characters) is refused by the run's first task: it fails at once, no later task runs, and the
    error names the field and position, never the address."""
    from pii.core.subject import normalise_email
    from plugins.params import email_pattern
    import re

    bad = "a@" + "ä" * 70 + ".example"
    assert re.search(email_pattern(), bad) and normalise_email(bad) is None  # passes the form, not the CLI
    dr = flow("subject_access").test(run_conf={"emails": [bad]})
    st = states(dr)
    assert dr.state == "failed" and st["register"] == "failed" and st["locate"] == "upstream_failed", st
    out, err = capfd.readouterr()
    errors = [line for line in (out + err).splitlines() if "InvalidIdentifier" in line]
    assert any("email #1" in e for e in errors), errors
    assert "ää" not in out + err  # the address appears nowhere in the output


# ---------------------------------------------------------------------------- subject_access
def test_when_subject_access_runs_on_demo_then_package_matches_and_metadata_holds_no_identifiers(world, tmp_path):
    dr = flow("subject_access").test(run_conf={**SUBJECT_CONF, "received_at": "2026-11-02",
                                                   "identity_verification": "checked by phone call"})
    assert dr.state == "success", states(dr)
    out = xcoms("subject_access", dr.run_id)
    request_id = out[("register", "request_id", -1)]
    package = out[("assemble", "return_value", -1)]
    manifest = json.loads((Path(package["package_dir"]) / "manifest.json").read_text())
    got = {location_key(f["store"], f["location"]): (f["match"], f["strength"]) for f in manifest["findings"]}
    assert got == {e.key: (e.match, e.strength) for e in world.expected}
    assert manifest["request"]["received_at"] == "2026-11-02" and manifest["request"]["due_by"] == "2026-12-02"
    assert manifest["request"]["stores_not_searched"] == []
    assert package["locations"] == len(world.expected) and package["stores_not_searched"] == []
    located = {out[k]["store"]: out[k] for k in out if k[0] == "locate"}
    assert set(located) == {"crm", "exports"}
    assert sum(r["locations"] for r in located.values()) == len(world.expected)
    # XComs carry ids, counts and paths; the conf is the only place the identifiers were typed
    meta = json.loads(run_meta("subject_access", dr.run_id))
    assert_no_personal(json.dumps({k: v for k, v in meta.items() if k != "conf"}))
    assert not any((tmp_path / "work").rglob("*.enc"))  # work files removed once the package is written
    ledger = ledger_for(world)
    assert ledger.get_request(request_id)["status"] == "completed"
    with pytest.raises(Exception, match="not in the request store"):
        ledger.unseal_subject(request_id)  # shredded after the answer


def test_when_a_big_sql_store_is_split_into_table_groups_then_each_group_is_a_task_and_the_answer_is_the_same(
        world):
    import yaml

    cfg = yaml.safe_load(world.config_path.read_text())
    cfg["stores"]["crm"]["table_group"] = 4  # the demo CRM's tables in groups of 4: several mapped tasks
    world.config_path.write_text(yaml.safe_dump(cfg))
    dr = flow("subject_access").test(run_conf=SUBJECT_CONF)
    assert dr.state == "success", states(dr)
    out = xcoms("subject_access", dr.run_id)
    groups = sorted(out[k]["group"] for k in out if k[0] == "locate" and out[k]["store"] == "crm")
    assert len(groups) >= 3 and groups[0].startswith("1/"), groups
    names = sorted(rendered_map_indexes("subject_access", dr.run_id, "locate"))
    assert names == sorted([f"crm (tables {g})" for g in groups] + ["exports"]), names  # not "locate 0"
    assert out[("record", "_link_LetheRequest", -1)].endswith(f"/lethe/requests/{out[('record', 'return_value', -1)]['request_id']}")
    package = out[("assemble", "return_value", -1)]
    manifest = json.loads((Path(package["package_dir"]) / "manifest.json").read_text())
    got = {location_key(f["store"], f["location"]): (f["match"], f["strength"]) for f in manifest["findings"]}
    assert got == {e.key: (e.match, e.strength) for e in world.expected}  # links cross groups: none lost
    (crm,) = [c for c in manifest["coverage"] if c["store"] == "crm"]
    assert crm["searched"] == 13  # every table of the demo CRM, each searched by exactly one group


def test_when_access_is_requested_by_id_then_identifiers_never_enter_airflow(world, capfd, caplog):
    from pii.engine.requests import register

    subject = world.build_subject(with_ids=True)
    request_id = register(ledger_for(world), "access", subject, "privacy team",
                          received_at=dt.date(2026, 11, 1), request_id="sar-2026-0042")
    capfd.readouterr()
    caplog.set_level("INFO")
    dr = flow("subject_access").test(run_conf={"request_id": request_id})
    out = capfd.readouterr()
    logs = out.out + out.err + caplog.text
    assert dr.state == "success", states(dr)
    assert_no_personal(run_meta("subject_access", dr.run_id))  # conf, XComs, rendered fields
    assert "[crm] members: 1 matching rows" in logs  # the task logs were captured...
    assert_no_personal(logs)  # ...and hold counts and places only
    package = xcoms("subject_access", dr.run_id)[("assemble", "return_value", -1)]
    manifest = json.loads((Path(package["package_dir"]) / "manifest.json").read_text())
    assert {location_key(f["store"], f["location"]) for f in manifest["findings"]} == {e.key for e in world.expected}
    assert manifest["request"]["request_id"] == "sar-2026-0042" and manifest["request"]["due_by"] == "2026-12-01"


def add_mailbox(world) -> None:
    """A Gmail store in the demo config that no test server answers: tasks must skip it before connecting."""
    text = world.config_path.read_text()
    world.config_path.write_text(text.replace("stores:\n", "stores:\n  mail:\n    kind: gmail\n"
                                              "    user_id: support@example.test\n"
                                              "    api_endpoint: http://127.0.0.1:9/\n", 1))


def test_when_a_store_kind_has_no_connector_then_it_is_skipped_and_the_answer_says_so(world, monkeypatch):
    import connectors

    add_mailbox(world)
    monkeypatch.setitem(connectors._MODULES, "gmail", ("connectors.not_installed", "GmailConnector"))
    dr = flow("subject_access").test(run_conf=SUBJECT_CONF)
    assert dr.state == "success", states(dr)
    assert sorted(v for k, v in states(dr).items() if k.startswith("locate")) == ["skipped", "success", "success"]
    out = xcoms("subject_access", dr.run_id)
    package = out[("assemble", "return_value", -1)]
    manifest = json.loads((Path(package["package_dir"]) / "manifest.json").read_text())
    assert manifest["request"]["stores_not_searched"] == ["mail"] == package["stores_not_searched"]
    assert {location_key(f["store"], f["location"]) for f in manifest["findings"]} == {e.key for e in world.expected}
    record = out[("record", "return_value", -1)]
    assert record["status"] == "in_progress"  # not answered in full: identifiers kept to re-run by id
    ledger_for(world).unseal_subject(record["request_id"])


def test_when_request_id_is_unknown_then_register_fails_without_retry(world):
    dr = flow("subject_access").test(run_conf={"request_id": "no-such-request"})
    assert dr.state == "failed"
    assert states(dr)["register"] == "failed"


# ---------------------------------------------------------------------------- subject_erasure
def test_when_erasure_is_approved_then_subject_is_gone_and_plan_verified(world, answer):
    from pii.core.config import load_config
    from pii.engine.discover import locate_subject

    seen = answer("Approve", user="dpo", reason="identity checked by phone")
    dr = flow("subject_erasure").test(run_conf={**SUBJECT_CONF, "requester": "support desk",
                                                    "require_distinct_approver": True})
    assert dr.state == "success", states(dr)
    out = xcoms("subject_erasure", dr.run_id)
    plan_id = out[("plan", "plan_id", -1)]
    assert out[("approval", "return_value", -1)]["decision"] == "approved"
    cert = out[("certificate", "return_value", -1)]
    assert cert["verified"] is True and cert["state"] == "verified"
    assert json.loads(Path(cert["certificate"]).read_text())["approved_by"] == "dpo"
    assert Path(cert["certificate"]).with_suffix(".txt").exists()
    # the approver read the plan: counts per store and action, no personal values
    assert seen["subject"] == f"Lethe: approve erasure plan {plan_id}"
    body = seen["body"]
    assert body.startswith(f"## Erasure plan `{plan_id}`")
    assert "### Store `crm`" in body and "| members | delete | 1 | whole record |" in body
    assert "| payments | delete | 3 | whole record |" in body and "### Store `exports`" in body
    assert "| Requester | support desk |" in body and "a second person must" in body
    assert f"/lethe/plans/{plan_id}>)" in body
    assert_no_personal(body)
    meta = json.loads(run_meta("subject_erasure", dr.run_id))
    assert_no_personal(json.dumps({k: v for k, v in meta.items() if k != "conf"}))
    remaining = locate_subject(load_config(world.config_path), world.build_subject()).findings
    assert [f.strength for f in remaining] == ["weak"]  # only the name-only badge, left for review
    row = ledger_for(world).get_plan(plan_id)
    assert row["state"] == "verified" and row["decided_by"] == "dpo"
    # the approval's Reason reached the ledger: sealed as a note of the request (shredded with its identifiers
    # once the erasure is verified), its keyed hash on the approval event
    assert row["decision_reason"] in ("identity checked by phone", "[sealed note shredded]")
    assert approval_reason_is(ledger_for(world), plan_id, "identity checked by phone")
    assert not approval_reason_is(ledger_for(world), plan_id, "something else")
    # mapped tasks are named by store; the last task links to the request's console page
    assert sorted(rendered_map_indexes("subject_erasure", dr.run_id, "locate")) == ["crm", "exports"]
    assert out[("certificate", "_link_LetheRequest", -1)].endswith(f"/lethe/requests/{cert['request_id']}")


def test_when_erasure_searches_a_big_store_in_table_groups_then_the_plan_equals_the_one_search_plan(
        world, answer, tmp_path):
    """The erasure plan's search is mapped per store and group of tables (as for access); the plan built
    from those tasks' work files holds exactly the actions, fingerprints and coverage that one search in
    the library gives, and executing it verifies."""
    import yaml

    from pii.core.config import load_config
    from pii.engine.erasure import ErasureEngine

    direct = ErasureEngine(load_config(world.config_path)).build_plan(world.build_subject())
    cfg = yaml.safe_load(world.config_path.read_text())
    cfg["stores"]["crm"]["table_group"] = 4
    world.config_path.write_text(yaml.safe_dump(cfg))
    answer("Approve", user="dpo")
    dr = flow("subject_erasure").test(run_conf=SUBJECT_CONF)
    assert dr.state == "success", states(dr)
    out = xcoms("subject_erasure", dr.run_id)
    groups = sorted(out[k]["group"] for k in out if k[0] == "locate" and out[k]["store"] == "crm")
    assert len(groups) >= 3, groups
    plan = ledger_for(world).get_plan(out[("plan", "plan_id", -1)])["plan"]

    def key(a):
        return (a["action_id"], a["action"], a["fingerprint"])

    for part in ("actions", "review", "held"):
        assert sorted(map(key, plan[part])) == sorted(map(key, direct.data[part])), part
    assert plan["actions"], "the demo subject has erasable rows"
    assert {c["store"]: c["searched"] for c in plan["coverage"]} == \
        {c["store"]: c["searched"] for c in direct.data["coverage"]}
    assert out[("certificate", "return_value", -1)]["verified"] is True
    assert not any((tmp_path / "work").rglob("*.enc"))  # work files removed once planned


def test_when_a_store_the_erasure_covers_is_skipped_then_the_certificate_does_not_call_it_verified(
        world, answer, monkeypatch, tmp_path):
    import connectors

    add_mailbox(world)
    monkeypatch.setitem(connectors._MODULES, "gmail", ("connectors.not_installed", "GmailConnector"))
    answer("Approve", user="dpo")
    dr = flow("subject_erasure").test(run_conf=SUBJECT_CONF)
    st = states(dr)
    assert sorted(v for k, v in st.items() if k.startswith("locate")) == ["skipped", "success", "success"]
    assert st["plan"] == "success" and st["execute"] == "success"
    assert dr.state == "failed" and st["certificate"] == "failed"  # erased, but not verified everywhere
    plan = ledger_for(world).get_plan(xcoms("subject_erasure", dr.run_id)[("plan", "plan_id", -1)])["plan"]
    (mail,) = [c for c in plan["coverage"] if c["store"] == "mail"]
    assert mail["complete"] is False and "not searched" in mail["skipped"][0]["reason"]
    certs = list((tmp_path / "out" / "erasure").rglob("*.certificate.json"))
    (cert,) = [json.loads(p.read_text()) for p in certs]
    assert cert["verified"] is False and any(g["store"] == "mail" for g in cert["not_verified"])


@pytest.mark.parametrize("user,timed_out,reason", [("dpo", False, "identity not verified"),
                                                   (None, True, None)])
def test_when_erasure_is_rejected_or_times_out_then_nothing_changes(world, answer, user, timed_out, reason):
    before = demo_rows(world)
    answer("Reject", user=user, reason=reason, timed_out=timed_out)
    dr = flow("subject_erasure").test(run_conf=SUBJECT_CONF)
    assert dr.state == "success", states(dr)
    st = states(dr)
    assert st["approval"] == "success" and st["execute"] == "skipped" and st["certificate"] == "skipped"
    assert demo_rows(world) == before
    plan_id = xcoms("subject_erasure", dr.run_id)[("plan", "plan_id", -1)]
    row = ledger_for(world).get_plan(plan_id)
    assert row["state"] == "rejected"
    assert row["decided_by"] == ("dpo" if user else "airflow: approval timed out")
    assert row["decision_reason"] == (reason or "no answer before the approval timeout")


def test_when_requester_approves_own_plan_under_distinct_rule_then_approval_fails(world, answer):
    answer("Approve", user="dpo")
    before = demo_rows(world)
    dr = flow("subject_erasure").test(run_conf={**SUBJECT_CONF, "requester": "dpo",
                                                    "require_distinct_approver": True})
    assert dr.state == "failed" and states(dr)["approval"] == "failed"
    plan_id = xcoms("subject_erasure", dr.run_id)[("plan", "plan_id", -1)]
    assert ledger_for(world).get_plan(plan_id)["state"] == "planned"  # still awaiting a second person
    assert demo_rows(world) == before


def test_when_erasure_is_requested_by_id_then_it_runs_from_the_request_store(world, answer):
    from pii.engine.requests import register

    request_id = register(ledger_for(world), "erasure", world.build_subject(), "privacy team",
                          request_id="erase-2026-0007")
    answer("Approve", user="dpo")
    dr = flow("subject_erasure").test(run_conf={"request_id": request_id})
    assert dr.state == "success", states(dr)
    assert_no_personal(run_meta("subject_erasure", dr.run_id))
    cert = xcoms("subject_erasure", dr.run_id)[("certificate", "return_value", -1)]
    assert cert["verified"] and cert["request_id"] == request_id
    assert ledger_for(world).get_request(request_id)["status"] == "completed"


# ---------------------------------------------------------------------------- scheduled flows
def test_when_discovery_sweep_runs_then_inventory_holds_every_store(world, monkeypatch):
    import connectors
    from pii.core.config import load_config
    from pii.state.inventory import Inventory

    add_mailbox(world)  # a kind with no connector in this installation: skipped
    monkeypatch.setitem(connectors._MODULES, "gmail", ("connectors.not_installed", "GmailConnector"))
    dr = flow("discovery_sweep").test()
    assert dr.state == "success", states(dr)
    assert sorted(v for k, v in states(dr).items() if k.startswith("sweep")) == ["skipped", "success", "success"]
    out = xcoms("discovery_sweep", dr.run_id)
    summary = out[("summary", "return_value", -1)]
    rows = Inventory(load_config(world.config_path).state_url).rows()
    assert {r["store"] for r in rows} == {"crm", "exports"}
    assert summary["stores"] == 2 and summary["columns"] == len(rows)
    assert summary["by_kind"]["email"] >= 2
    per_store = {v["store"]: v for k, v in out.items() if k[0] == "sweep"}
    con = sqlite3.connect(world.crm_path)
    tables = con.execute("SELECT count(*) FROM sqlite_master WHERE type='table'").fetchone()[0]
    con.close()
    assert per_store["crm"]["tables"] == tables
    assert per_store["exports"]["files"] == len(list(world.exports_dir.glob("*.csv")))
    reports = {k: Path(v) for k, v in summary["reports"].items()}
    assert all(p.is_file() and p.parent == world.config_path.parent / "reports" for p in reports.values())
    assert summary["ropa_not_swept"] == 1  # the skipped mailbox
    assert_no_personal(reports["data_map"].read_text() + reports["inventory_csv"].read_text())


ALERTS: list = []


def record_alert(report):  # LETHE_ALERT_HOOK target
    ALERTS.append(report)


def test_when_requests_are_overdue_then_requests_due_reports_them_and_alerts(world, monkeypatch):
    from pii.engine.requests import register

    ledger = ledger_for(world)
    today = dt.date.today()
    overdue = register(ledger, "access", world.build_subject(), "x", received_at=today - dt.timedelta(days=40),
                       request_id="late-1")
    soon = register(ledger, "erasure", world.build_subject(), "x", received_at=today - dt.timedelta(days=28),
                    request_id="soon-1")
    later = register(ledger, "access", world.build_subject(), "x", received_at=today, request_id="fresh-1")
    ledger.set_request_status(register(ledger, "access", world.build_subject(), "x",
                                       received_at=today - dt.timedelta(days=60), request_id="done-1"), "completed")
    monkeypatch.setenv("LETHE_ALERT_HOOK", f"{__name__}:record_alert")
    ALERTS.clear()
    dr = flow("requests_due").test()
    assert dr.state == "success", states(dr)
    report = xcoms("requests_due", dr.run_id)[("check", "return_value", -1)]
    assert [r["request_id"] for r in report["overdue"]] == [overdue]
    assert [r["request_id"] for r in report["due_soon"]] == [soon]
    assert report["open"] == 3 and later not in json.dumps(report["overdue"] + report["due_soon"])
    assert ALERTS and ALERTS[-1]["overdue"][0]["request_id"] == overdue


def test_when_db_cleanup_runs_then_old_identifier_runs_are_deleted(world, monkeypatch):
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from sqlalchemy import func, select

    # a run whose conf holds an identifier (it fails fast: no such store)
    dr = flow("subject_access").test(run_conf={"emails": ["alice.smith@example.org"], "stores": ["nope"]})
    assert dr.state == "failed"
    monkeypatch.setenv("LETHE_AIRFLOW_RUN_RETENTION_DAYS", "0")  # parse-time setting: everything is "old"
    run = flow("lethe_db_cleanup").test()
    assert run.state == "success", states(run)
    from airflow.models.renderedtifields import RenderedTaskInstanceFields as RTIF
    from airflow.models.xcom import XComModel

    with create_session() as s:
        def count(model, dag_id):
            return s.scalar(select(func.count()).select_from(model).where(model.dag_id == dag_id))

        assert count(DagRun, "subject_access") == 0 and count(DagRun, "lethe_db_cleanup") >= 1
        assert count(XComModel, "subject_access") == 0 and count(RTIF, "subject_access") == 0
    con = sqlite3.connect(Path(os.environ["AIRFLOW_HOME"]) / "airflow.db")
    archives = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE name LIKE '_airflow_deleted%'")]
    con.close()
    assert archives == []  # --skip-archive: no copy of the deleted run confs is kept
    out = xcoms("lethe_db_cleanup", run.run_id)
    assert out[("clean_runs", "return_value", -1)]["dag_ids"][:2] == ["subject_access", "subject_erasure"]
    assert out[("work_folders", "return_value", -1)] == {"removed": 0}


def test_when_a_sweep_run_names_its_own_reports_dir_then_it_is_refused_unless_overrides_are_allowed(
        world, tmp_path, monkeypatch):
    from plugins import tasks

    monkeypatch.delenv("LETHE_ALLOW_CONFIG_OVERRIDE", raising=False)
    result = {"store": "crm", "kind": "sql", "containers": 1, "swept": 1, "unchanged": 0, "removed": 0,
              "columns": 1, "rows_sampled": 1, "seconds": 0.1, "by_kind": {}}
    context = {"params": {"reports_dir": str(tmp_path / "elsewhere")}}
    with pytest.raises(Exception, match="LETHE_ALLOW_CONFIG_OVERRIDE"):
        tasks.sweep_summary([result], context)
    assert not (tmp_path / "elsewhere").exists()
    monkeypatch.setenv("LETHE_ALLOW_CONFIG_OVERRIDE", "1")
    out = tasks.sweep_summary([result], context)
    assert Path(out["reports"]["data_map"]).parent == tmp_path / "elsewhere"
