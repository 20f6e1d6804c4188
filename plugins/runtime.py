"""What every Lethe task needs from its surroundings: the stores config, where files go, who is acting,
and a progress callback that writes counts (never values) to the task log.

Environment (on every Airflow worker):

- ``LETHE_CONFIG``: path of stores.yaml. A run conf's ``config`` is honoured only when
  ``LETHE_ALLOW_CONFIG_OVERRIDE=1`` (otherwise such a run fails: it must not silently use other stores).
- ``LETHE_OUTPUT_DIR``: access packages and erasure certificates (default ``lethe_output`` beside
  stores.yaml).
- ``LETHE_WORK_DIR``: encrypted work files passed between the tasks of one run, deleted when the run
  has used them (default ``lethe_work`` beside stores.yaml). Workers on several hosts need it shared.
- ``LETHE_TASK_RETRIES``: retries of a task whose store was unreachable (default 2; read at parse time).
"""
from __future__ import annotations

import logging
import os
import re
import shutil
from pathlib import Path
from typing import Any, Mapping

import pii.state.inventory  # noqa: F401 - declare every state table before the first state engine is made
import pii.ledger  # noqa: F401   (pii.state.db creates the tables it knows when it first sees a URL)
from pii.core.config import Config, load_config
from pii.core.errors import ConfigError

CONFIG_ENV = "LETHE_CONFIG"
OVERRIDE_ENV = "LETHE_ALLOW_CONFIG_OVERRIDE"
OUTPUT_ENV = "LETHE_OUTPUT_DIR"
WORK_ENV = "LETHE_WORK_DIR"
RETRIES_ENV = "LETHE_TASK_RETRIES"

log = logging.getLogger("lethe.airflow")

# How mapped tasks are named in the UI (``map_index_template``, rendered on the worker from the task's own
# arguments): by store (and group of tables), rule or plan instead of "locate 0", "locate 1". Store, rule
# and plan names only: never a value.
UNIT_LABEL = ("{{ task.op_kwargs['unit']['store'] }}{% if (task.op_kwargs['unit'].get('group') or '1/1') != '1/1' %}"
              " (tables {{ task.op_kwargs['unit']['group'] }}){% endif %}")
STORE_LABEL = "{{ task.op_kwargs['store'] }}"
RULE_LABEL = "{{ task.op_kwargs['rule'] }}"
PLAN_LABEL = "{{ task.plan_id }}"
DECISION_LABEL = "{{ (task.op_kwargs.get('decision') or {}).get('plan_id', '') }}"
REPORT_LABEL = "{{ (task.op_kwargs.get('report') or {}).get('plan_id', '') }}"

_NOISY = ("presidio-analyzer", "presidio_analyzer", "tldextract", "sqlalchemy", "spacy")


def task_defaults(retries: int = 2, retry_delay_minutes: float = 2) -> dict:
    """DAG default_args: retries for retryable errors (unreachable stores); LETHE_TASK_RETRIES overrides
    the count (read when the DAG file is parsed)."""
    from datetime import timedelta

    raw = os.environ.get(RETRIES_ENV, "")
    count = int(raw) if raw.strip().isdigit() else retries
    return {"retries": count, "retry_delay": timedelta(minutes=retry_delay_minutes)}


def quiet_libraries() -> None:
    """Libraries that might log a value at INFO or DEBUG: errors only."""
    for name in _NOISY:
        logging.getLogger(name).setLevel(logging.ERROR)


def config_path(params: Mapping[str, Any] | None) -> str:
    override = (params or {}).get("config")
    if override:
        if os.environ.get(OVERRIDE_ENV) != "1":
            raise ConfigError(f"the run names its own 'config', which is only honoured when {OVERRIDE_ENV}=1 "
                              f"on the workers; leave it empty to use {CONFIG_ENV}")
        return str(override)
    path = os.environ.get(CONFIG_ENV)
    if not path:
        raise ConfigError(f"{CONFIG_ENV} is not set on this worker: point it at stores.yaml")
    return path


def load_run_config(params: Mapping[str, Any] | None, *, resolve: list[str] | None | bool = False) -> Config:
    """The stores config for this run. `resolve`: store names whose Airflow connections to look up now,
    True for every store, False for none (listing store names needs no connection)."""
    quiet_libraries()
    config = load_config(config_path(params))
    if resolve is False:
        return config
    from plugins.hooks import resolve_config

    return resolve_config(config, None if resolve is True else list(resolve))


def selected_stores(config: Config, params: Mapping[str, Any] | None) -> list[str]:
    """Store names a run covers: the run's ``stores`` list, else every configured store."""
    names = list((params or {}).get("stores") or [])
    return [s.name for s in config.select(names or None)]


def _dir_from_env(env: str, config: Config, default: str) -> Path:
    value = os.environ.get(env)
    path = Path(os.path.expanduser(value)) if value else config.base_dir / default
    return path if path.is_absolute() else config.base_dir / path


def output_dir(config: Config) -> Path:
    from pii.engine.requests import output_root

    return output_root(config)


def work_root(config: Config) -> Path:
    return _dir_from_env(WORK_ENV, config, "lethe_work")


def _safe(part: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(part)).strip("._") or "_"


def run_work_dir(config: Config, dag_id: str, run_id: str) -> Path:
    """The work folder of one DAG run (created 0700)."""
    path = work_root(config) / _safe(dag_id) / _safe(run_id)
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


def remove_work_dir(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def task_progress(store: str, message: str) -> None:
    """Progress callback for connectors: messages are counts and places, never values."""
    log.info("[%s] %s", store, message)


def requester_of(params: Mapping[str, Any] | None, context: Mapping[str, Any] | None = None) -> str:
    """Who asked: the run conf's ``requester``, else the user who triggered the run, else 'airflow'."""
    who = (params or {}).get("requester")
    if who and str(who).strip():
        return str(who).strip()
    dag_run = (context or {}).get("dag_run")
    user = getattr(dag_run, "triggering_user_name", None) if dag_run is not None else None
    return str(user) if user else "airflow"


def actor_of(context: Mapping[str, Any] | None) -> str:
    """How Lethe names an Airflow task acting on its own (in the ledger's audit trail)."""
    ti = (context or {}).get("ti")
    if ti is None:
        return "airflow"
    return f"airflow {ti.dag_id}.{ti.task_id}"


# --------------------------------------------------------------------------- links to the Lethe console
def console_url(kind: str, ident: str) -> str:
    """A page of the Lethe console (``/lethe/<kind>/<id>``: ``requests`` or ``plans``), under Airflow's
    ``[api] base_url`` when it is set (else relative to the UI's own host)."""
    from urllib.parse import quote

    try:
        from airflow.configuration import conf

        base = (conf.get("api", "base_url", fallback="") or "").strip()
    except Exception:  # noqa: BLE001 - no Airflow configuration here: a link relative to the UI's host
        base = ""
    return f"{base.rstrip('/')}/lethe/{kind}/{quote(str(ident), safe='')}"


REQUEST_ATTR = "lethe_request_id"


def remember_request(context: Mapping[str, Any] | None, request_id: str | None) -> None:
    """Note the run's request id on the running task, for its "Lethe request" link (`RequestPageLink`)."""
    task = (context or {}).get("task")
    if task is not None and request_id:
        setattr(task, REQUEST_ATTR, str(request_id))


def request_page_link():
    """The "Lethe request" button of a run's last task: the request's page in the Lethe console (its
    package or certificate, timeline and decisions). Airflow stores the link in the task's XCom when the
    task ends (success or failure); the API server shows it on the task instance. Ids only."""
    from airflow.sdk import BaseOperatorLink

    class RequestPageLink(BaseOperatorLink):
        name = "Lethe request"

        @property
        def xcom_key(self) -> str:
            return "_link_LetheRequest"

        def get_link(self, operator, *, ti_key) -> str:
            request_id = getattr(operator, REQUEST_ATTR, None)
            return console_url("requests", request_id) if request_id else ""

    return RequestPageLink()


def link_to_request_page(task_output) -> None:
    """Give the (not mapped) task behind `task_output` the "Lethe request" link."""
    operator = getattr(task_output, "operator", task_output)
    if type(operator).__name__.endswith("MappedOperator"):
        return  # a mapped task's link would have to be the operator class's own: not for TaskFlow tasks
    operator.operator_extra_links = (request_page_link(),)
