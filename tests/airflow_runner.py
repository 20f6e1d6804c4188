"""Start and stop real Airflow processes for the end-to-end tests (tests/airflow/test_airflow_*.py).

Every process a test starts gets its own session (``start_new_session=True``: process group = its pid) and
an environment marker ``LETHE_AF_RUN=<token>`` that every descendant inherits (LocalExecutor and Celery
pool processes, task supervisors, the tasks themselves, uvicorn workers). Stopping means SIGKILL to each
process group, then to every process on the machine whose environment carries the marker (read from
``/proc/<pid>/environ``), so nothing survives even if some child started its own session.

If pytest itself dies (``timeout -s KILL``), no finaliser runs: a small watchdog process (its own session,
without the marker) polls pytest's pid and sweeps the marker's processes once pytest is gone.

This module must stay cheap to import: the Celery test's worker imports it for `process_hostname`.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Callable, Mapping

MARKER = "LETHE_AF_RUN"
HOSTNAME_ENV = "LETHE_AF_HOSTNAME"
REPO = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
AIRFLOW = str(VENV_BIN / "airflow")


def process_hostname() -> str:
    """``[core] hostname_callable`` for one process: the name in ``LETHE_AF_HOSTNAME``.

    Airflow records ``task_instance.hostname`` from the process that runs the task (the Task SDK calls the
    hostname callable there), so a worker started with its own name marks every task it ran."""
    return os.environ.get(HOSTNAME_ENV) or socket.getfqdn()


# --------------------------------------------------------------------------- processes
def _marked_pids(token: str) -> list[int]:
    """Pids of every process whose environment holds MARKER=token (Linux /proc; other users' skipped)."""
    needle = f"{MARKER}={token}".encode()
    me = os.getpid()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as fh:
                env = fh.read()
        except OSError:
            continue
        if needle + b"\0" in env or env.endswith(needle):
            found.append(int(entry))
    return found


def sweep(token: str, pgids: list[int] = (), rounds: int = 5) -> int:
    """SIGKILL the process groups, then every marked process, until none is left (children may fork while
    we kill). Returns how many marked processes were found."""
    for pgid in pgids:
        try:
            os.killpg(pgid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    seen = 0
    for _ in range(rounds):
        pids = _marked_pids(token) if os.path.isdir("/proc") else []
        if not pids:
            break
        seen += len(pids)
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        time.sleep(0.2)
    return seen


_WATCHDOG = r"""
import os, sys, time
sys.path.insert(0, sys.argv[3])
from airflow_runner import sweep
parent, token = int(sys.argv[1]), sys.argv[2]
while True:
    try:
        os.kill(parent, 0)
    except ProcessLookupError:
        break
    time.sleep(1)
sweep(token, rounds=20)
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class AirflowProcesses:
    """Airflow components as subprocesses of this test, sharing one environment.

    `env` is the full environment (see `base_env`); logs go to `<log_dir>/<name>.log`."""

    def __init__(self, env: Mapping[str, str], log_dir: Path) -> None:
        self.token = os.urandom(8).hex()
        self.env = {**env, MARKER: self.token}
        self.log_dir = Path(log_dir)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.procs: dict[str, subprocess.Popen] = {}  # long-running components
        self._finished: list[subprocess.Popen] = []  # one-shot commands (still killed by pgid on stop)
        self._watchdog: subprocess.Popen | None = None

    # ------------------------------------------------------------------ lifecycle
    def _ensure_watchdog(self) -> None:
        if self._watchdog is None:
            env = {k: v for k, v in os.environ.items() if k != MARKER}
            self._watchdog = subprocess.Popen(
                [sys.executable, "-c", _WATCHDOG, str(os.getpid()), self.token, str(Path(__file__).parent)],
                env=env, start_new_session=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL)

    def log_path(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    def start(self, name: str, *args: str, env: Mapping[str, str] | None = None) -> subprocess.Popen:
        """Start `airflow <args>` in its own session, stdout+stderr to <name>.log."""
        self._ensure_watchdog()
        log = open(self.log_path(name), "ab")
        try:
            proc = subprocess.Popen([AIRFLOW, *args], env={**self.env, **(env or {})}, cwd=self.log_dir,
                                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        finally:
            log.close()
        self.procs[name] = proc
        return proc

    def run(self, name: str, *args: str, timeout: float = 180) -> str:
        """Run `airflow <args>` to completion (same session and kill rules); returns its output; raises with
        the output's tail when it fails or overruns."""
        proc = self.start(name, *args)
        self._finished.append(self.procs.pop(name))
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self._kill(proc)
            raise RuntimeError(f"`airflow {' '.join(args)}` did not finish in {timeout:.0f}s:\n{self.tail(name)}")
        if rc != 0:
            raise RuntimeError(f"`airflow {' '.join(args)}` exited {rc}:\n{self.tail(name)}")
        return self.log_path(name).read_text(errors="replace")

    @staticmethod
    def _kill(proc: subprocess.Popen) -> None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass

    def stop(self) -> int:
        """SIGKILL everything this object started (and their descendants); idempotent. Returns how many
        marked processes the sweep found."""
        every = [*self.procs.values(), *self._finished]
        # killpg only groups whose leader we have not reaped (its pid, hence the group id, is still ours);
        # the marker sweep finds the rest, including children of leaders that already exited
        found = sweep(self.token, [p.pid for p in every if p.poll() is None])
        for proc in every:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        if self._watchdog is not None:
            self._watchdog.kill()
            self._watchdog.wait(timeout=10)
            self._watchdog = None
        return found

    def leftovers(self) -> list[int]:
        return _marked_pids(self.token)

    # ------------------------------------------------------------------ diagnostics
    def tail(self, name: str, lines: int = 40) -> str:
        try:
            text = self.log_path(name).read_text(errors="replace")
        except FileNotFoundError:
            return f"(no log for {name})"
        return f"--- {name} (last {lines} lines) ---\n" + "\n".join(text.splitlines()[-lines:])

    def tails(self, lines: int = 25) -> str:
        return "\n".join(self.tail(p.stem, lines) for p in sorted(self.log_dir.glob("*.log")))

    def wait_for_line(self, name: str, needles: tuple[str, ...], timeout: float) -> str:
        """Wait until one line of <name>.log holds every one of `needles`; returns that line."""
        def found():
            text = self.log_path(name).read_text(errors="replace")
            return next((line for line in text.splitlines() if all(n in line for n in needles)), None)

        return wait_for(f"{name}.log to show {needles}", found, timeout, interval=0.5, alive=self.assert_running,
                        diagnostics=self.tails)

    def assert_running(self, *names: str) -> None:
        for name in names or tuple(self.procs):
            rc = self.procs[name].poll()
            if rc is not None:
                raise RuntimeError(f"airflow {name} exited with {rc}:\n{self.tail(name, 60)}")


# --------------------------------------------------------------------------- configuration
def base_env(home: Path, *, api_port: int, dags_folder: Path | str = REPO / "dags",
             extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment shared by every component: this process's environment without any AIRFLOW_* or
    LETHE_* setting (pytest's conftest sets its own), plus a private AIRFLOW_HOME and shared secrets."""
    from cryptography.fernet import Fernet

    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AIRFLOW", "LETHE_", "_AIRFLOW")) and k != "PYTEST_CURRENT_TEST"}
    env.update({
        "PATH": f"{VENV_BIN}{os.pathsep}{env.get('PATH', '/usr/bin:/bin')}",
        "PYTHONPATH": str(REPO),  # `tests.airflow_runner.process_hostname` (the Celery worker's name)
        "PYTHONUNBUFFERED": "1",
        "TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS": "",
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(home / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__PARALLELISM": "4",
        "AIRFLOW__CORE__FERNET_KEY": Fernet.generate_key().decode(),
        "AIRFLOW__API_AUTH__JWT_SECRET": os.urandom(32).hex(),
        "AIRFLOW__API__SECRET_KEY": os.urandom(32).hex(),
        "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{api_port}/",
        "AIRFLOW__API__PORT": str(api_port),
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{api_port}/execution/",
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
        "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "passwords.json"),
        "LETHE_TASK_RETRIES": "0",  # a failure fails the run at once (no two-minute retry delay)
    })
    env.update(extra or {})
    return env


def write_passwords(env: Mapping[str, str], users: Mapping[str, str]) -> None:
    path = Path(env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(dict(users)) + "\n", encoding="utf-8")
    path.chmod(0o600)


# --------------------------------------------------------------------------- REST
class Api:
    """A minimal client of Airflow's REST API (Bearer token from POST /auth/token)."""

    def __init__(self, base_url: str, username: str, password: str) -> None:
        self.base = base_url.rstrip("/")
        self.username, self.password = username, password
        self.token: str | None = None

    def request(self, method: str, path: str, body: Any = None, *, auth: bool = True,
                timeout: float = 30) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        headers = {"Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        if auth:
            if self.token is None:
                self.login()
            headers["Authorization"] = f"Bearer {self.token}"
        req = urllib.request.Request(self.base + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                status, raw = resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            status, raw = exc.code, exc.read()
        try:
            payload = json.loads(raw) if raw else None
        except ValueError:
            payload = raw.decode(errors="replace")
        return status, payload

    def login(self) -> None:
        status, body = self.request("POST", "/auth/token", {"username": self.username, "password": self.password},
                                    auth=False)
        if status not in (200, 201):
            raise RuntimeError(f"POST /auth/token answered {status}: {body}")
        self.token = body["access_token"]

    def ok(self, method: str, path: str, body: Any = None) -> Any:
        status, payload = self.request(method, path, body)
        if not 200 <= status < 300:
            raise RuntimeError(f"{method} {path} answered {status}: {payload}")
        return payload

    def trigger(self, dag_id: str, conf: Mapping[str, Any]) -> tuple[int, Any]:
        return self.request("POST", f"/api/v2/dags/{dag_id}/dagRuns", {"logical_date": None, "conf": dict(conf)})

    def task_instances(self, dag_id: str, run_id: str) -> list[dict]:
        run = urllib.parse.quote(run_id, safe="")
        return self.ok("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run}/taskInstances?limit=100")["task_instances"]

    def xcom(self, dag_id: str, run_id: str, task_id: str, key: str = "return_value", map_index: int = -1) -> Any:
        run = urllib.parse.quote(run_id, safe="")
        value = self.ok("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run}/taskInstances/{task_id}/xcomEntries/{key}"
                               f"?map_index={map_index}")["value"]
        if isinstance(value, str):
            try:
                return json.loads(value)
            except ValueError:
                return value
        return value

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float, *, interval: float = 2, **kwargs) -> str:
        """Poll the run until it is finished (success or failed); returns the state."""
        def finished():
            state = self.run_state(dag_id, run_id)
            return state if state in ("success", "failed") else None

        return wait_for(f"run {run_id} of {dag_id} to finish", finished, timeout, interval=interval, **kwargs)

    def dag_run(self, dag_id: str, run_id: str) -> dict:
        run = urllib.parse.quote(run_id, safe="")
        return self.ok("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run}")

    def run_state(self, dag_id: str, run_id: str) -> str:
        return self.dag_run(dag_id, run_id)["state"]


def wait_for(what: str, check: Callable[[], Any], timeout: float, *, interval: float = 1.0,
             alive: Callable[[], None] | None = None, diagnostics: Callable[[], str] | None = None) -> Any:
    """Poll `check` until it returns something truthy; `alive` raises when a component died. Raises
    TimeoutError (with `diagnostics()`) after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while time.monotonic() < deadline:
        if alive is not None:
            alive()
        try:
            result = check()
        except (OSError, urllib.error.URLError, RuntimeError, KeyError) as exc:
            last_exc, result = exc, None
        if result:
            return result
        time.sleep(interval)
    extra = f"\nlast error: {last_exc!r}" if last_exc else ""
    raise TimeoutError(f"{what}: not within {timeout:.0f}s{extra}\n{diagnostics() if diagnostics else ''}")


def api_ready(api: Api) -> bool:
    status, _ = api.request("GET", "/api/v2/monitor/health", auth=False, timeout=5)
    return status == 200


def wait_for_approval(api: "Api", procs: AirflowProcesses, run_id: str, timeout: float, *,
                      dag_id: str = "subject_erasure", task_id: str = "approval") -> dict:
    """The run's approval detail once the task is parked (awaiting_input) and the scheduler has taken in the
    executor's report of that first try. Answering earlier races Airflow 3.3.2: the answer re-queues the
    task, then the parked process's late "success" event finds it queued and the scheduler fails it
    ("finished with state success, but the task instance's state attribute is queued")."""
    def waiting_approval():
        details = api.ok("GET", "/api/v2/dags/~/dagRuns/~/hitlDetails?response_received=false")["hitl_details"]
        # the detail row appears while the task still runs; answer once it is parked (awaiting_input)
        return next((d for d in details if d["task_instance"]["dag_run_id"] == run_id
                     and d["task_instance"]["task_id"] == task_id
                     and d["task_instance"]["state"] == "awaiting_input"), None)

    def not_failed():
        procs.assert_running()
        if api.run_state(dag_id, run_id) == "failed":
            states = [(t["task_id"], t["state"]) for t in api.task_instances(dag_id, run_id)]
            raise AssertionError(f"the run failed before the approval: {states}")

    detail = wait_for("the approval task to wait for an answer", waiting_approval, timeout, interval=1,
                      alive=not_failed, diagnostics=procs.tails)
    procs.wait_for_line("scheduler", ("TaskInstance Finished:", f"task_id={task_id}, run_id={run_id},"), timeout)
    return detail


def answer_path(run_id: str, *, dag_id: str = "subject_erasure", task_id: str = "approval") -> str:
    quoted = urllib.parse.quote(run_id, safe="")
    return f"/api/v2/dags/{dag_id}/dagRuns/{quoted}/taskInstances/{task_id}/-1/hitlDetails"
