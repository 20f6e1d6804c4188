"""The distributed set-up for real: Airflow with the CeleryExecutor, a PostgreSQL metadata DB, a Redis broker
and a PostgreSQL ledger shared by the tasks (what docker/docker-compose.yaml runs, as processes on this host).

Processes (each in its own session, SIGKILLed with everything they started when the test ends, pass or
fail; see tests/airflow_runner.py): ``airflow db migrate``, then ``api-server`` (the Task Execution API the
worker's tasks talk to, and the REST API this test uses), ``scheduler``, ``dag-processor`` and
``triggerer`` and ``celery worker --concurrency 2``. A ``subject_access`` run on the demo stores is triggered
over REST; then a ``subject_erasure`` run with the CRM split into groups of 4 tables (store option
``table_group``): each group's search is its own mapped ``locate`` task on the worker, the plan is built from
their work files, approved over REST, carried out and verified.

What proves the Celery worker ran the per-store tasks (each check alone would; together they leave no
other explanation):

1. ``task_instance.hostname``: Airflow records it from the process that runs the task (the Task SDK calls
   ``[core] hostname_callable`` there). Only the worker's environment names a hostname callable that
   answers ``celery-<token>``; the scheduler and API server keep the machine's name. Every mapped
   ``locate`` instance must carry the worker's name.
2. The worker's own log: Celery's ``Executing workload in Celery: ... task_id='locate' ... map_index=N``
   for each store, and the Task SDK supervisor's ``Workload finished ... final_state=success`` for each of
   those task instance ids.
3. The queue: the tasks go to a queue named for this test (``[operators] default_queue``), which only this
   worker consumes; the scheduler logs each ``locate`` instance as finished by the CeleryExecutor; and the
   Celery result backend (``db+postgresql``) holds a SUCCESS row per task.

The compose file and the Dockerfile in docker/ describe the same set-up for containers; no container engine
runs here, so the last tests read them (and run the init job's script against the local PostgreSQL).
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml

from pii.demo.world import build_demo, location_key
from tests.airflow_runner import (
    HOSTNAME_ENV, AirflowProcesses, Api, answer_path, api_ready, base_env, free_port, wait_for, wait_for_approval,
    write_passwords,
)

PG_ADMIN_URL = os.environ.get("LETHE_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("LETHE_TEST_REDIS_URL", "redis://127.0.0.1:6379/11")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
DOCKER = Path(__file__).resolve().parents[2] / "docker"
AIRFLOW_SERVICES = {"init", "api-server", "scheduler", "dag-processor", "triggerer", "worker"}
SUBJECT_CONF = {"emails": ["alice.smith@example.org"], "names": ["Alice Smith"], "phones": ["020 7946 0123"],
                "received_at": "2026-11-02"}
STARTUP_S, RUN_S = 120, 150


def _unavailable(reason: str):
    if IN_CI:
        pytest.fail(f"{reason}; under CI=true this test must run")
    pytest.skip(reason)


def _pg_admin() -> sa.Engine:
    """An AUTOCOMMIT engine on the PostgreSQL server (skip, or fail under CI=true, when it is unreachable)."""
    admin_url = sa.engine.make_url(PG_ADMIN_URL)
    try:
        admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except Exception as exc:  # noqa: BLE001 - any failure means "no server here"
        _unavailable(f"PostgreSQL not reachable at {admin_url.render_as_string(hide_password=True)} "
                     f"({exc.__class__.__name__})")
    return admin


@pytest.fixture
def pg_databases():
    """Two fresh PostgreSQL databases (Airflow's metadata, Lethe's ledger), as psycopg URLs; dropped after."""
    admin = _pg_admin()
    admin_url = admin.url
    suffix = uuid.uuid4().hex[:10]
    names = {"airflow": f"lethe_af_{suffix}", "ledger": f"lethe_afl_{suffix}"}
    with admin.connect() as conn:
        for name in names.values():
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield {k: admin_url.set(drivername="postgresql+psycopg", database=v).render_as_string(hide_password=False)
               for k, v in names.items()}
    finally:
        with admin.connect() as conn:
            for name in names.values():
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def redis_broker():
    """The Redis broker URL and a queue name of this test's own; the queue's keys are deleted after."""
    import redis

    try:
        client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3)
        client.ping()
    except Exception as exc:  # noqa: BLE001
        _unavailable(f"Redis not reachable at {REDIS_URL} ({exc.__class__.__name__})")
    queue = f"lethe-test-{uuid.uuid4().hex[:8]}"
    try:
        yield REDIS_URL, queue
    finally:
        for key in client.scan_iter(match=f"*{queue}*"):
            client.delete(key)
        client.close()


@pytest.fixture
def processes(request, tmp_path):
    """Holder for the cluster's processes; on teardown (pass or fail) every one of them is SIGKILLed."""
    holder: dict[str, AirflowProcesses] = {}

    def stop():
        procs = holder.get("procs")
        if procs is not None:
            procs.stop()
            assert procs.leftovers() == [], "Airflow processes survived the teardown"

    request.addfinalizer(stop)
    return holder


@pytest.mark.airflow_processes
@pytest.mark.postgres
@pytest.mark.slow
def test_when_access_and_erasure_run_on_celery_then_worker_runs_each_store_and_table_group(
        tmp_path, pg_databases, redis_broker, processes, monkeypatch):
    from pii.core.config import load_config
    from pii.ledger import Ledger

    t0 = time.monotonic()
    broker_url, queue = redis_broker
    ledger_key = os.urandom(32).hex()
    world = build_demo(tmp_path / "demo")
    # a shared PostgreSQL ledger, as workers on several hosts would use (docker/README.md)
    with open(world.config_path, "a", encoding="utf-8") as fh:
        fh.write(f"\nledger: {pg_databases['ledger']}\n")
    port = free_port()
    worker_host = f"celery-{queue}"
    env = base_env(tmp_path / "airflow", api_port=port, extra={
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": pg_databases["airflow"],
        "AIRFLOW__CELERY__BROKER_URL": broker_url,
        "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + pg_databases["airflow"],
        "AIRFLOW__OPERATORS__DEFAULT_QUEUE": queue,
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(DOCKER.parent / "plugins"),  # as in docker/Dockerfile
        "LETHE_CONFIG": str(world.config_path),
        "LETHE_LEDGER_KEY": ledger_key,
        "LETHE_OUTPUT_DIR": str(tmp_path / "out"),
        "LETHE_WORK_DIR": str(tmp_path / "work"),
    })
    password = os.urandom(12).hex()
    write_passwords(env, {"admin": password})
    procs = processes["procs"] = AirflowProcesses(env, tmp_path / "logs")
    api = Api(f"http://127.0.0.1:{port}", "admin", password)

    procs.run("db-migrate", "db", "migrate", timeout=120)
    procs.start("api-server", "api-server", "--port", str(port), "--host", "127.0.0.1")
    procs.start("scheduler", "scheduler")
    procs.start("dag-processor", "dag-processor")
    procs.start("triggerer", "triggerer")  # the erasure's approval task waits there
    procs.start("worker", "celery", "worker", "--concurrency", "2", "--queues", queue, "--skip-serve-logs",
                "--celery-hostname", f"{queue}@%h",
                env={"AIRFLOW__CORE__HOSTNAME_CALLABLE": "tests.airflow_runner.process_hostname",
                     HOSTNAME_ENV: worker_host})
    wait_for("the API server to answer", lambda: api_ready(api), STARTUP_S, alive=procs.assert_running,
             diagnostics=procs.tails)
    wait_for("subject_access to be parsed", lambda: api.request("GET", "/api/v2/dags/subject_access")[0] == 200,
             STARTUP_S, alive=procs.assert_running, diagnostics=procs.tails)
    wait_for("the Celery worker to be ready", lambda: "ready." in procs.log_path("worker").read_text(errors="replace"),
             STARTUP_S, alive=procs.assert_running, diagnostics=lambda: procs.tail("worker"))
    started = time.monotonic()

    api.ok("PATCH", "/api/v2/dags/subject_access", {"is_paused": False})
    status, run = api.trigger("subject_access", SUBJECT_CONF)
    assert status == 200, run
    run_id = run["dag_run_id"]
    state = api.wait_for_run("subject_access", run_id, RUN_S, alive=procs.assert_running, diagnostics=procs.tails)
    tis = api.task_instances("subject_access", run_id)
    summary = {(t["task_id"], t["map_index"]): (t["state"], t["hostname"], t["queue"]) for t in tis}
    print(f"\n[celery] cluster up in {started - t0:.1f}s, run {state} in {time.monotonic() - started:.1f}s; "
          f"task instances: {summary}")
    assert state == "success", f"{summary}\n{procs.tails(40)}"

    # --- 1. every task instance, above all each per-store `locate`, ran in the Celery worker's process
    locate = sorted((t for t in tis if t["task_id"] == "locate"), key=lambda t: t["map_index"])
    assert [t["map_index"] for t in locate] == [0, 1]  # one mapped instance per demo store (crm, exports)
    for t in tis:
        assert t["state"] == "success" and t["hostname"] == worker_host and t["queue"] == queue, t
    # --- 2. the worker's own log names each store's task instance and its successful end
    worker_log = procs.log_path("worker").read_text(errors="replace")
    for t in locate:
        assert re.search(rf"Executing workload in Celery: .*task_id='locate'.*map_index={t['map_index']},",
                         worker_log), f"locate[{t['map_index']}] not in the worker log"
        assert re.search(rf"Workload finished .*final_state=success.*workload_id={t['id']}", worker_log), t["id"]
    # --- 3. the scheduler ran the CeleryExecutor, and Celery's result backend has a SUCCESS per task
    scheduler_log = procs.log_path("scheduler").read_text(errors="replace")
    for t in locate:
        assert re.search(rf"TaskInstance Finished: dag_id=subject_access, task_id=locate, "
                         rf".*map_index={t['map_index']}, .*state=success, executor=CeleryExecutor",
                         scheduler_log), t["map_index"]
    engine = sa.create_engine(pg_databases["airflow"], poolclass=sa.pool.NullPool)

    def celery_successes():  # the last task's result is stored just after Airflow marks the run successful
        with engine.connect() as conn:
            done = conn.execute(sa.text("SELECT count(*) FROM celery_taskmeta WHERE status = 'SUCCESS'")).scalar()
        return done >= len(tis)

    try:
        wait_for("Celery's result backend to hold a SUCCESS per task", celery_successes, 20)
    finally:
        engine.dispose()

    # --- the access package: the demo subject's expected findings, nothing more
    located = {api.xcom("subject_access", run_id, "locate", map_index=t["map_index"])["store"]
               for t in locate}
    assert located == {"crm", "exports"}
    package = api.xcom("subject_access", run_id, "assemble")
    manifest = json.loads((Path(package["package_dir"]) / "manifest.json").read_text(encoding="utf-8"))
    got = {location_key(f["store"], f["location"]): (f["match"], f.get("strength", "strong"))
           for f in manifest["findings"]}
    assert got == {e.key: (e.match, e.strength) for e in world.expected}
    assert manifest["request"]["stores_not_searched"] == []
    # the shared PostgreSQL ledger closed the request (and shredded its identifiers)
    monkeypatch.setenv("LETHE_LEDGER_KEY", ledger_key)
    ledger = Ledger(load_config(world.config_path).state_url)
    assert ledger.get_request(package["request_id"])["status"] == "completed"
    assert not (world.config_path.parent / "lethe_state.db").exists()  # nothing fell back to SQLite

    # --- an erasure whose search is spread over the worker: the CRM in groups of 4 tables, the exports
    cfg = yaml.safe_load(world.config_path.read_text(encoding="utf-8"))
    cfg["stores"]["crm"]["table_group"] = 4  # read by the tasks at run time: no re-parse needed
    world.config_path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    api.ok("PATCH", "/api/v2/dags/subject_erasure", {"is_paused": False})
    status, run = api.trigger("subject_erasure", SUBJECT_CONF)
    assert status == 200, run
    erase_id = run["dag_run_id"]
    wait_for_approval(api, procs, erase_id, RUN_S)
    searched = sorted((t for t in api.task_instances("subject_erasure", erase_id) if t["task_id"] == "locate"),
                      key=lambda t: t["map_index"])
    units = [api.xcom("subject_erasure", erase_id, "locate", map_index=t["map_index"]) for t in searched]
    crm_groups = sorted(u["group"] for u in units if u["store"] == "crm")
    n = len(crm_groups)
    assert n >= 3 and crm_groups == [f"{i}/{n}" for i in range(1, n + 1)] and [u["store"] for u in units].count("exports") == 1, units
    for t in searched:  # each group's search ran in the worker
        assert t["state"] == "success" and t["hostname"] == worker_host and t["queue"] == queue, t
        assert re.search(rf"Executing workload in Celery: .*id=UUID\('{t['id']}'\), task_id='locate', "
                         rf"dag_id='subject_erasure'.*map_index={t['map_index']},",
                         procs.log_path("worker").read_text(errors="replace")), t["id"]
    api.ok("PATCH", answer_path(erase_id), {"chosen_options": ["Approve"], "params_input": {}})
    state = api.wait_for_run("subject_erasure", erase_id, RUN_S, alive=procs.assert_running, diagnostics=procs.tails)
    erase_tis = {(t["task_id"], t["map_index"]): t["state"] for t in api.task_instances("subject_erasure", erase_id)}
    print(f"[celery] erasure over {len(units)} search tasks {state}: {erase_tis}")
    assert state == "success" and set(erase_tis.values()) == {"success"}, f"{erase_tis}\n{procs.tails(40)}"
    cert = api.xcom("subject_erasure", erase_id, "certificate")
    assert cert["verified"] is True and cert["state"] == "verified"
    plan = ledger.get_plan(api.xcom("subject_erasure", erase_id, "plan", "plan_id"))["plan"]
    crm = next(c for c in plan["coverage"] if c["store"] == "crm")
    assert crm["complete"] is True and crm["searched"] >= 9  # every CRM table, from all the groups


# ---------------------------------------------------------------------------- docker/
def _compose() -> dict:
    return yaml.safe_load((DOCKER / "docker-compose.yaml").read_text(encoding="utf-8"))


def _init_script(compose: dict) -> str:
    """The Python part of the init job's command (between ``python - <<'PY'`` and ``PY``)."""
    script = compose["services"]["init"]["command"][-1]
    assert compose["services"]["init"]["command"][:2] == ["bash", "-ec"]
    assert script.splitlines()[0] == "airflow db migrate"
    return script.split("<<'PY'\n", 1)[1].rsplit("\nPY", 1)[0]


def test_when_compose_file_is_read_then_it_runs_every_component_on_celery_with_scalable_workers():
    compose = _compose()
    services = compose["services"]
    assert AIRFLOW_SERVICES | {"postgres", "redis"} <= set(services)
    image = services["worker"]["image"]
    for name in AIRFLOW_SERVICES:
        svc = services[name]
        env = svc["environment"]
        assert svc["image"] == image and svc["build"] == {"context": "..", "dockerfile": "docker/Dockerfile"}
        assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor", name
        assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql+psycopg://airflow:${POSTGRES_PASSWORD")
        assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].endswith("@postgres:5432/airflow")
        broker = env["AIRFLOW__CELERY__BROKER_URL"]
        assert broker.startswith("redis://") and "@redis:6379/" in broker
        assert env["AIRFLOW__CELERY__RESULT_BACKEND"].startswith("db+postgresql+psycopg://")
        assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://api-server:8080/execution/"
        assert env["LETHE_CONFIG"] == "/opt/lethe/config/stores.yaml"
        assert env["LETHE_WORK_DIR"].startswith("/opt/lethe/data/")
        assert svc["env_file"] == [{"path": ".env", "required": True}]  # secrets: docker/.env, never committed
        assert "lethe-data:/opt/lethe/data" in svc["volumes"]  # work files pass between tasks on any worker
        if name != "init":
            assert svc["depends_on"]["init"] == {"condition": "service_completed_successfully"}, name
            assert svc["command"][0] == "airflow" and svc["healthcheck"]["test"]
    assert services["worker"]["command"] == ["airflow", "celery", "worker"]
    assert not {"container_name", "ports", "hostname"} & set(services["worker"])  # --scale worker=N
    assert services["triggerer"]["command"] == ["airflow", "triggerer"]
    assert "airflow-auth:/opt/airflow/auth" in services["api-server"]["volumes"]
    compile(_init_script(compose), "init", "exec")
    assert "$" not in _init_script(compose)  # nothing in the script is eaten by Compose's interpolation

    # every ${VAR} without a default is documented in .env.example; secrets there are placeholders only
    example = {}
    for line in (DOCKER / ".env.example").read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            example[key.strip()] = value.strip()
    text = (DOCKER / "docker-compose.yaml").read_text(encoding="utf-8")
    required = {m.group(1) for m in re.finditer(r"(?<!\$)\$\{([A-Z0-9_]+)(?::\?[^}]*)?\}", text)}
    assert required - set(example) == set()
    for key in ("LETHE_LEDGER_KEY", "AIRFLOW__CORE__FERNET_KEY", "AIRFLOW__API_AUTH__JWT_SECRET", "POSTGRES_PASSWORD",
                "REDIS_PASSWORD", "AIRFLOW_PASSWORD_ADMIN"):
        assert example[key] == "CHANGE-ME", key
    assert not (DOCKER / ".env").exists() or subprocess.run(
        ["git", "ls-files", "--error-unmatch", str(DOCKER / ".env")], capture_output=True, cwd=DOCKER).returncode != 0


def test_when_dockerfile_is_read_then_it_installs_from_the_lock_as_a_non_root_user():
    text = (DOCKER / "Dockerfile").read_text(encoding="utf-8")
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    assert lines[0] == "FROM python:3.11-slim"
    assert "pip install -r /tmp/requirements.lock" in text and "pip install --no-deps" in text
    assert "constraints" not in " ".join(lines)
    for setting in ("AIRFLOW__CORE__DAGS_FOLDER=/opt/lethe/dags", "AIRFLOW__CORE__PLUGINS_FOLDER=/opt/lethe/plugins"):
        assert setting in text
    users = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert users and not users[-1].startswith(("root", "0:", "0 ")) and users[-1] != "0"
    repo = DOCKER.parent
    allowed = (DOCKER / "Dockerfile.dockerignore").read_text(encoding="utf-8").splitlines()
    for line in lines:
        if line.startswith("COPY "):
            sources = [p for p in line.split()[1:-1] if not p.startswith("--")]
            for src in sources:
                assert (repo / src).exists(), src
                assert f"!{src}" in allowed or f"!{src}/" in allowed, f"{src} is left out of the build context"


@pytest.mark.postgres
def test_when_init_job_script_runs_then_user_passwords_and_ledger_database_exist(tmp_path):
    admin = _pg_admin()
    admin_url = admin.url
    name = f"lethe_afi_{uuid.uuid4().hex[:10]}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "LETHE_"))}
    env.update({"AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin,dpo:user",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(tmp_path / "passwords.json"),
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": admin_url.render_as_string(hide_password=False),
                "AIRFLOW_PASSWORD_ADMIN": "a" * 16, "LETHE_LEDGER_DB": name,
                "LETHE_CONFIG": str(tmp_path / "stores.yaml")})
    script = _init_script(_compose())
    try:
        missing = subprocess.run([sys.executable, "-"], input=script, env=env, text=True, capture_output=True,
                                 timeout=60)
        assert missing.returncode != 0 and "AIRFLOW_PASSWORD_DPO" in missing.stderr  # refuses a user without one
        env["AIRFLOW_PASSWORD_DPO"] = "d" * 16
        for _ in range(2):  # idempotent: a second `docker compose up` runs it again
            done = subprocess.run([sys.executable, "-"], input=script, env=env, text=True, capture_output=True,
                                  timeout=60)
            assert done.returncode == 0, done.stderr
        assert "a" * 16 not in done.stdout + done.stderr  # passwords are never printed
        assert json.loads((tmp_path / "passwords.json").read_text()) == {"admin": "a" * 16, "dpo": "d" * 16}
        assert (tmp_path / "passwords.json").stat().st_mode & 0o077 == 0
        with admin.connect() as conn:
            assert conn.execute(sa.text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}).scalar() == 1
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
