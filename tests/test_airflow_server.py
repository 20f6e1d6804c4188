"""End to end through a real Airflow API server: an erasure requested over REST, approved by a person over
REST (the Human-in-the-loop task), carried out and verified on the demo stores.

Processes (each in its own session, SIGKILLed with everything they started when the test ends, pass or
fail; see tests/airflow_runner.py): ``airflow db migrate`` on a SQLite metadata DB, then ``api-server``,
``scheduler`` (LocalExecutor, PARALLELISM=4), ``dag-processor`` and ``triggerer`` (the approval task defers
to a trigger that waits for the answer). Users come from the simple auth manager: ``admin`` with a password
and ``dpo`` (role user), passwords in a file this test writes; REST calls carry a token from
``POST /auth/token``. ``LETHE_APPROVERS=dpo`` makes ``dpo`` the approval's only respondent (Airflow's
``assigned_users``): the admin's answer is refused with 403, the DPO's is taken.
"""
from __future__ import annotations

import os
import time
import urllib.parse

import pytest

from pii.demo import build_demo
from tests.airflow_runner import (
    AirflowProcesses, Api, api_ready, base_env, free_port, wait_for, write_passwords,
)

pytestmark = [pytest.mark.airflow_processes, pytest.mark.slow]

SUBJECT_CONF = {"emails": ["alice.smith@example.org"], "names": ["Alice Smith"], "phones": ["020 7946 0123"],
                "requester": "support desk", "require_distinct_approver": True}
PERSONAL = ("alice", "79460123", "7946 0123", "+442079460123")
STARTUP_S, RUN_S = 120, 150


@pytest.fixture
def processes(request):
    """Holder for the server's processes; on teardown (pass or fail) every one of them is SIGKILLed."""
    holder: dict[str, AirflowProcesses] = {}

    def stop():
        procs = holder.get("procs")
        if procs is not None:
            procs.stop()
            assert procs.leftovers() == [], "Airflow processes survived the teardown"

    request.addfinalizer(stop)
    return holder


def test_when_erasure_is_approved_over_rest_then_subject_is_erased_and_plan_verified(tmp_path, processes):
    from pii.config import load_config
    from pii.discover import locate_subject
    from pii.ledger import Ledger

    t0 = time.monotonic()
    world = build_demo(tmp_path / "demo")
    home = tmp_path / "airflow"
    port = free_port()
    env = base_env(home, api_port=port, extra={
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "LETHE_CONFIG": str(world.config_path),  # SQLite ledger beside it: every task runs on this host
        "LETHE_OUTPUT_DIR": str(tmp_path / "out"),
        "LETHE_WORK_DIR": str(tmp_path / "work"),
        "LETHE_APPROVERS": "dpo",  # read when the DAG file is parsed (dag-processor)
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin,dpo:user",
    })
    passwords = {"admin": os.urandom(12).hex(), "dpo": os.urandom(12).hex()}
    write_passwords(env, passwords)
    procs = processes["procs"] = AirflowProcesses(env, tmp_path / "logs")
    api = Api(f"http://127.0.0.1:{port}", "admin", passwords["admin"])
    dpo = Api(f"http://127.0.0.1:{port}", "dpo", passwords["dpo"])

    procs.run("db-migrate", "db", "migrate", timeout=120)
    procs.start("api-server", "api-server", "--port", str(port), "--host", "127.0.0.1")
    procs.start("scheduler", "scheduler")
    procs.start("dag-processor", "dag-processor")
    procs.start("triggerer", "triggerer")
    wait_for("the API server to answer", lambda: api_ready(api), STARTUP_S, alive=procs.assert_running,
             diagnostics=procs.tails)
    wait_for("subject_erasure to be parsed", lambda: api.request("GET", "/api/v2/dags/subject_erasure")[0] == 200,
             STARTUP_S, alive=procs.assert_running, diagnostics=procs.tails)
    started = time.monotonic()

    # a run conf with an invalid email is refused by the trigger form's schema: 400, no run
    status, body = api.trigger("subject_erasure", {"emails": ["not an email"]})
    assert status == 400, (status, body)
    assert api.ok("GET", "/api/v2/dags/subject_erasure/dagRuns")["total_entries"] == 0

    api.ok("PATCH", "/api/v2/dags/subject_erasure", {"is_paused": False})
    status, run = api.trigger("subject_erasure", SUBJECT_CONF)
    assert status == 200, run
    run_id = run["dag_run_id"]
    quoted = urllib.parse.quote(run_id, safe="")

    def waiting_approval():
        details = api.ok("GET", "/api/v2/dags/~/dagRuns/~/hitlDetails?response_received=false")["hitl_details"]
        # the detail row appears while the task still runs; answer once it is parked (awaiting_input)
        return next((d for d in details if d["task_instance"]["dag_run_id"] == run_id
                     and d["task_instance"]["task_id"] == "approval"
                     and d["task_instance"]["state"] == "awaiting_input"), None)

    def not_failed():
        procs.assert_running()
        if api.run_state("subject_erasure", run_id) == "failed":
            states = [(t["task_id"], t["state"]) for t in api.task_instances("subject_erasure", run_id)]
            raise AssertionError(f"the run failed before the approval: {states}")

    detail = wait_for("the approval task to wait for an answer", waiting_approval, RUN_S, interval=2,
                      alive=not_failed, diagnostics=procs.tails)
    plan_id = api.xcom("subject_erasure", run_id, "plan", "plan_id")
    assert detail["options"] == ["Approve", "Reject"] and detail["defaults"] == ["Reject"]
    assert f"plan `{plan_id}`" in detail["body"]  # the approver reads the plan: counts, no personal values
    assert not any(p in detail["body"].lower() for p in PERSONAL)
    waited = time.monotonic()

    assert [u["id"] for u in detail["assigned_users"]] == ["dpo"]
    answer = f"/api/v2/dags/subject_erasure/dagRuns/{quoted}/taskInstances/approval/-1/hitlDetails"
    status, body = api.request("PATCH", answer, {"chosen_options": ["Approve"], "params_input": {}})
    assert status == 403, (status, body)  # the admin is not the assigned approver
    answered = dpo.ok("PATCH", answer, {"chosen_options": ["Approve"], "params_input": {"reason": None}})
    assert answered["chosen_options"] == ["Approve"] and answered["responded_by"]["id"] == "dpo"
    state = api.wait_for_run("subject_erasure", run_id, RUN_S, alive=procs.assert_running, diagnostics=procs.tails)
    tis = {t["task_id"]: t["state"] for t in api.task_instances("subject_erasure", run_id)}
    print(f"\n[server] up in {started - t0:.1f}s, approval waiting after {waited - started:.1f}s, "
          f"run {state} {time.monotonic() - waited:.1f}s after the answer; tasks {tis}")
    assert state == "success", f"{tis}\n{procs.tails(40)}"
    assert set(tis.values()) == {"success"}, tis
    assert api.xcom("subject_erasure", run_id, "approval") == {
        "plan_id": plan_id, "decision": "approved", "decided_by": "dpo", "timed_out": False}
    cert = api.xcom("subject_erasure", run_id, "certificate")
    assert cert["verified"] is True and cert["state"] == "verified"

    # the demo stores: only the name-only badge (weak, left for review) still mentions the subject
    config = load_config(world.config_path)
    remaining = locate_subject(config, world.build_subject()).findings
    assert [f.strength for f in remaining] == ["weak"]
    row = Ledger(config.state_url).get_plan(plan_id)
    assert row["state"] == "verified" and row["decided_by"] == "dpo"
