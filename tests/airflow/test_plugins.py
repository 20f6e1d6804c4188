"""Lethe's Airflow glue without an Airflow database: the error mapping, Airflow connections behind
`conn_id:`, run settings, the approval operator's pieces, and the request/sweep library it calls."""
from __future__ import annotations

import datetime as dt
import json
import os

import pytest

from pii.core.errors import ConfigError, InvalidIdentifier, LedgerError, PackageError, StoreError, StoreUnreachable


# ---------------------------------------------------------------------------- error mapping
def _outcome(exc: BaseException):
    from plugins.outcomes import lethe_outcomes

    with pytest.raises(BaseException) as info:
        with lethe_outcomes():
            raise exc
    return info.value


@pytest.mark.parametrize("exc,expected", [
    (StoreUnreachable("crm", "connection refused"), StoreUnreachable),
    (StoreError("crm", "table members", "deadlock"), StoreError),
    (PackageError("disk full"), PackageError),
    (ConfigError("store 'crm' needs 'url'"), "AirflowFailException"),
    (InvalidIdentifier("email #1 is not a valid email address"), "AirflowFailException"),
    (LedgerError("plan p is rejected"), "AirflowFailException"),
])
def test_when_a_lethe_error_is_raised_then_it_maps_to_retry_or_fail(exc, expected):
    got = _outcome(exc)
    if isinstance(expected, str):
        assert type(got).__name__ == expected and str(exc) in str(got)
    else:
        assert got is exc  # raised as it is: the task's retries apply


def test_when_an_erasure_is_blocked_then_the_task_fails_without_retry():
    from pii.engine.erasure import ErasureBlocked

    got = _outcome(ErasureBlocked("the subject is under a legal hold (Litigation)"))
    assert type(got).__name__ == "AirflowFailException" and "legal hold" in str(got)


def test_when_a_store_kind_is_unsupported_then_the_task_is_skipped():
    from plugins.outcomes import UnsupportedStore

    got = _outcome(UnsupportedStore("store 'mail' is not searched"))
    assert type(got).__name__ == "AirflowSkipException"


def test_when_an_unexpected_error_carries_a_value_then_only_its_class_is_reported(monkeypatch):
    monkeypatch.delenv("LETHE_DEBUG", raising=False)
    got = _outcome(ValueError("bad value alice.smith@example.org"))
    assert type(got).__name__ == "LetheTaskError" and "ValueError" in str(got) and "alice" not in str(got)
    assert got.__cause__ is None and got.__suppress_context__
    monkeypatch.setenv("LETHE_DEBUG", "1")
    original = ValueError("details")
    assert _outcome(original) is original


def test_when_airflow_raises_its_own_control_exceptions_then_they_pass_untouched():
    from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

    for exc in (AirflowSkipException("skip"), AirflowFailException("fail")):
        assert _outcome(exc) is exc


def test_when_mapped_errors_decorates_a_function_then_it_maps_the_same_way():
    from plugins.outcomes import mapped_errors

    @mapped_errors
    def body():
        raise ConfigError("bad")

    with pytest.raises(Exception) as info:
        body()
    assert type(info.value).__name__ == "AirflowFailException"


# ---------------------------------------------------------------------------- connections
def _store(kind: str, **options):
    from pathlib import Path

    from pii.core.config import StoreConfig

    return StoreConfig(name="crm" if kind == "sql" else "drop", kind=kind, options=options, base_dir=Path("/tmp"))


@pytest.mark.parametrize("uri,expected", [
    ("postgres://u%40x:p%2Fw@db.example:5433/crm?sslmode=require&sneaky=1",
     "postgresql+psycopg://u%40x:p%2Fw@db.example:5433/crm?sslmode=require"),
    ('{"conn_type": "postgresql", "host": "h", "login": "u", "password": "pw", "schema": "d"}',
     "postgresql+psycopg://u:pw@h/d"),
    ("mysql://root:secret@127.0.0.1:3306/test?charset=utf8mb4&init_command=DROP",
     "mysql+pymysql://root:secret@127.0.0.1:3306/test?charset=utf8mb4"),
    ('{"conn_type": "sqlite", "host": "/data/crm.db"}', "sqlite:////data/crm.db"),
])
def test_when_a_sql_store_names_a_connection_then_its_url_uses_lethes_drivers_and_named_extras(
        monkeypatch, uri, expected):
    from plugins.hooks import resolve_store

    monkeypatch.setenv("AIRFLOW_CONN_CRM_DB", uri)
    resolved = resolve_store(_store("sql", conn_id="crm_db", schemas=["sales"]))
    assert resolved.options["url"] == expected
    assert resolved.options["schemas"] == ["sales"] and "conn_id" not in resolved.options


@pytest.mark.parametrize("store,message", [
    (dict(kind="sql", conn_id="missing_conn"), "connection 'missing_conn' does not exist"),
    (dict(kind="sql", conn_id="crm_db", url="sqlite:///x.db"), "either conn_id or url"),
    (dict(kind="csv", conn_id="crm_db", path="exports"), "csv stores are folders"),
])
def test_when_a_connection_cannot_serve_the_store_then_config_error_names_it(monkeypatch, store, message):
    from plugins.hooks import resolve_store

    monkeypatch.setenv("AIRFLOW_CONN_CRM_DB", "postgres://u:p@h/d")
    with pytest.raises(ConfigError, match=message):
        resolve_store(_store(store.pop("kind"), **store))


def test_when_a_connection_is_not_a_database_then_config_error_lists_the_types(monkeypatch):
    from plugins.hooks import resolve_store

    monkeypatch.setenv("AIRFLOW_CONN_CRM_DB", '{"conn_type": "http", "host": "h"}')
    with pytest.raises(ConfigError, match="use postgres, mysql or sqlite"):
        resolve_store(_store("sql", conn_id="crm_db"))


def test_when_an_ftp_store_names_a_connection_then_the_password_goes_through_a_process_variable(monkeypatch):
    from plugins.hooks import resolve_store

    monkeypatch.setenv("AIRFLOW_CONN_PARTNER_FTP", json.dumps({
        "conn_type": "ftps", "host": "ftp.example", "port": 2121, "login": "lethe", "password": "s3cret-pw",
        "extra": {"passive": "false", "timeout": 10, "blocksize": 8192}}))
    resolved = resolve_store(_store("ftp", conn_id="partner_ftp", path="/incoming"))
    opts = resolved.options
    assert opts["host"] == "ftp.example" and opts["port"] == 2121 and opts["user"] == "lethe"
    assert opts["tls"] is True and opts["passive"] is False and opts["timeout"] == 10
    assert "blocksize" not in opts and "s3cret-pw" not in json.dumps(opts)  # extras by name; no secret
    assert os.environ[opts["password_env"]] == "s3cret-pw" and resolved.secret("password") == "s3cret-pw"
    monkeypatch.delenv(opts["password_env"])


def test_when_a_gmail_store_names_a_connection_then_credentials_go_through_a_process_variable(monkeypatch):
    from plugins.hooks import resolve_store

    keyfile = {"type": "service_account", "client_email": "x@y.iam"}
    monkeypatch.setenv("AIRFLOW_CONN_MAILBOX", json.dumps({
        "conn_type": "google_cloud_platform", "login": "support@example.test",
        "extra": {"keyfile_dict": keyfile, "api_endpoint": "http://127.0.0.1:8085", "scope": "x"}}))
    opts = resolve_store(_store("gmail", conn_id="mailbox")).options
    assert opts["user_id"] == "support@example.test" and opts["api_endpoint"] == "http://127.0.0.1:8085"
    assert json.loads(os.environ[opts["credentials_env"]]) == keyfile and "scope" not in opts
    monkeypatch.delenv(opts["credentials_env"])


def test_when_demo_crm_is_reached_through_a_connection_then_locate_finds_the_same(tmp_path, monkeypatch):
    from pii.core.config import load_config
    from pii.demo.world import build_demo
    from pii.engine.discover import locate_subject
    from plugins.hooks import resolve_config

    world = build_demo(tmp_path / "demo")
    text = world.config_path.read_text().replace("url: sqlite:///data/crm.db", "conn_id: crm_sqlite")
    world.config_path.write_text(text)
    monkeypatch.setenv("AIRFLOW_CONN_CRM_SQLITE", json.dumps({"conn_type": "sqlite", "host": str(world.crm_path)}))
    config = load_config(world.config_path)
    with pytest.raises(ConfigError, match="conn_id"):  # outside Airflow's glue a conn_id is not a URL
        locate_subject(config, world.build_subject(), stores=["crm"])
    found = locate_subject(resolve_config(config, ["crm"]), world.build_subject(), stores=["crm"]).findings
    assert {f.key for f in found} == {f"crm\x00{json.dumps(e.location, sort_keys=True, default=str)}"
                                      for e in world.expected if e.store == "crm"}


# ---------------------------------------------------------------------------- run settings
def test_when_run_conf_names_a_config_then_it_is_honoured_only_when_allowed(monkeypatch, tmp_path):
    from plugins.runtime import config_path

    monkeypatch.delenv("LETHE_CONFIG", raising=False)
    monkeypatch.delenv("LETHE_ALLOW_CONFIG_OVERRIDE", raising=False)
    with pytest.raises(ConfigError, match="LETHE_CONFIG is not set"):
        config_path({})
    monkeypatch.setenv("LETHE_CONFIG", "/etc/lethe/stores.yaml")
    assert config_path({"config": None}) == "/etc/lethe/stores.yaml"
    with pytest.raises(ConfigError, match="LETHE_ALLOW_CONFIG_OVERRIDE"):
        config_path({"config": "/tmp/other.yaml"})
    monkeypatch.setenv("LETHE_ALLOW_CONFIG_OVERRIDE", "1")
    assert config_path({"config": "/tmp/other.yaml"}) == "/tmp/other.yaml"


def test_when_output_folders_are_not_set_then_they_sit_beside_stores_yaml(monkeypatch, tmp_path):
    from pii.core.config import parse_config
    from plugins.runtime import output_dir, work_root

    config = parse_config({"stores": {"x": {"kind": "csv", "path": "e"}}}, tmp_path / "stores.yaml")
    monkeypatch.delenv("LETHE_OUTPUT_DIR", raising=False)
    monkeypatch.delenv("LETHE_WORK_DIR", raising=False)
    assert output_dir(config) == tmp_path / "lethe_output" and work_root(config) == tmp_path / "lethe_work"
    monkeypatch.setenv("LETHE_OUTPUT_DIR", "answers")
    assert output_dir(config) == tmp_path / "answers"


def test_when_retries_are_configured_then_task_defaults_follow(monkeypatch):
    from plugins.runtime import task_defaults

    monkeypatch.delenv("LETHE_TASK_RETRIES", raising=False)
    assert task_defaults(2, 5) == {"retries": 2, "retry_delay": dt.timedelta(minutes=5)}
    monkeypatch.setenv("LETHE_TASK_RETRIES", "0")
    assert task_defaults(2, 5)["retries"] == 0


# ---------------------------------------------------------------------------- approval
def test_when_approvers_and_timeout_are_set_then_the_operator_uses_them(monkeypatch):
    from plugins.approval import ErasureApprovalOperator, approval_timeout, approvers_from_env

    monkeypatch.setenv("LETHE_APPROVERS", " dpo ,, legal ")
    monkeypatch.setenv("LETHE_APPROVAL_TIMEOUT_HOURS", "not a number")
    assert approvers_from_env() == [{"id": "dpo", "name": "dpo"}, {"id": "legal", "name": "legal"}]
    assert approval_timeout() == dt.timedelta(hours=48)
    op = ErasureApprovalOperator(task_id="approval", plan_id="plan-1")
    assert op.options == ["Approve", "Reject"] and op.defaults == ["Reject"] and not op.multiple
    assert op.assigned_users == approvers_from_env() and "plan_id" in op.template_fields
    assert list(op.serialized_params) == ["reason"]  # the form's one field
    monkeypatch.delenv("LETHE_APPROVERS")
    assert ErasureApprovalOperator(task_id="a2", plan_id="p").assigned_users is None


def test_when_the_operator_sits_in_a_dag_with_params_then_its_form_still_has_the_reason_field():
    """Airflow merges the DAG's params into an operator's `params` before `__init__` runs (so a default set
    there never applied and the approval form had no field): the Reason field is the task's own whatever the
    DAG's params are, and the DAG's stay the run's."""
    from airflow.sdk import DAG, Param

    from plugins.approval import ErasureApprovalOperator

    with DAG("with_params", params={"emails": Param([], type=["null", "array"]),
                                    "require_distinct_approver": Param(False, type="boolean")}):
        op = ErasureApprovalOperator(task_id="approval", plan_id="plan-1")
        mapped = ErasureApprovalOperator.partial(task_id="approvals").expand(plan_id=["p1", "p2"])
    assert list(op.serialized_params) == ["reason"]
    reason = op.serialized_params["reason"]
    assert reason["source"] == "task" and reason["schema"]["type"] == ["null", "string"]
    assert reason["schema"]["title"] == "Reason"
    assert "require_distinct_approver" not in op.serialized_params  # the DAG's params are not form fields
    assert list(mapped.unmap({"plan_id": "p1"}).serialized_params) == ["reason"]  # retention: one per plan


def test_when_the_plan_body_is_rendered_then_it_is_the_markdown_with_a_table_per_store(monkeypatch):
    from plugins.approval import plan_body

    monkeypatch.setenv("AIRFLOW__API__BASE_URL", "http://airflow.example:8080/sub/")
    action = {"action_id": "a1", "store": "crm", "container": "members", "location": {"table": "members"},
              "match": "identifier", "strength": "strong", "entities": ["EMAIL_ADDRESS"], "fingerprint": "f",
              "action": "delete", "reason": "default policy: a row about the subject is deleted"}
    row = {"request_id": "req-1", "expires_at": "2026-11-25T00:00:00+00:00",
           "plan": {"policy": "default policy", "stores": ["crm"], "actions": [action], "review": [], "held": []}}
    body = plan_body("plan-1", row, {"received_at": "2026-11-20", "due_at": "2026-12-20", "requester": None},
                     distinct=True, approvers=[{"id": "dpo", "name": "dpo"}])
    assert body.startswith("## Erasure plan `plan-1`") and "### Store `crm`" in body
    assert "| members | delete | 1 | whole record |" in body and "| Answer due | **2026-12-20** |" in body
    assert "| Plan valid until | 2026-11-25 00:00 UTC |" in body and "| Requester | not recorded |" in body
    assert "| Who may approve | `dpo` |" in body and "a second person must" in body
    assert "(<http://airflow.example:8080/sub/lethe/plans/plan-1>)" in body
    assert "second person must" not in plan_body("p", row, {"received_at": "a", "due_at": "b"}, distinct=False)


def test_when_no_base_url_is_configured_then_console_links_are_relative(monkeypatch):
    from plugins.runtime import console_url

    monkeypatch.setenv("AIRFLOW__API__BASE_URL", "")
    assert console_url("requests", "req/1 x") == "/lethe/requests/req%2F1%20x"
    monkeypatch.setenv("AIRFLOW__API__BASE_URL", "https://h.example/airflow")
    assert console_url("plans", "plan-1") == "https://h.example/airflow/lethe/plans/plan-1"


def test_when_a_last_task_knows_its_request_then_its_lethe_request_link_points_at_the_console(monkeypatch):
    from plugins.runtime import remember_request, request_page_link

    monkeypatch.setenv("AIRFLOW__API__BASE_URL", "http://127.0.0.1:8080/")

    class Task:
        pass

    task, link = Task(), request_page_link()
    assert link.name == "Lethe request" and link.xcom_key == "_link_LetheRequest"
    assert link.get_link(task, ti_key=None) == ""  # nothing known (the task failed before): no link
    remember_request({"task": task}, "req-7")
    assert link.get_link(task, ti_key=None) == "http://127.0.0.1:8080/lethe/requests/req-7"


# ---------------------------------------------------------------------------- forms
@pytest.mark.parametrize("value", [
    "x@@y", "a@b", "a@b.c", "a..b@c.com", "a@-b.com", "a b@c.com", "@b.co", "a@", "a@b..co", "a@exämple.cöm",
    "alice.smith@example.org", " A@B.com ", "mailto:a@b.co", "<a@b.co>", "o'brien@x.ie", "a+tag@x.io",
    "zoë@exämple.com", "ZOË@EXÄMPLE.COM", "zoë@xn--exmple-cua.com", "zoe\u0308@example.com",
])
def test_when_a_form_email_is_checked_then_it_follows_the_clis_rules(value):
    """The form's email pattern (validated by the API server when a run is triggered) accepts exactly what
    `lethe` accepts (`normalise_email`), so `x@@y` never starts a run."""
    import jsonschema

    from pii.core.subject import normalise_email
    from plugins.params import email_item

    cli_accepts = normalise_email(value) is not None
    try:
        jsonschema.validate(value, email_item(), format_checker=jsonschema.FormatChecker())
        form_accepts = True
    except jsonschema.ValidationError:
        form_accepts = False
    assert form_accepts == cli_accepts


REQUIRED_FIELDS = {("received_in_error", "store"), ("consent_withdrawal", "emails")}


def _forms():
    from plugins.flow_params import child_purge_params, received_in_error_params, retention_params, unsubscribe_params
    from plugins.params import due_params, store_params, subject_params, sweep_params

    return {"subject_access": subject_params(erasure=False), "subject_erasure": subject_params(erasure=True),
            "discovery_sweep": sweep_params(), "requests_due": due_params(), "store_params": store_params(),
            "received_in_error": received_in_error_params(), "child_data_purge": child_purge_params(),
            "retention_purge": retention_params(), "consent_withdrawal": unsubscribe_params()}


def test_when_a_form_is_shown_then_only_the_truly_required_fields_carry_the_required_mark():
    """Airflow's UI marks a field required when its schema has a type that does not allow null (its
    FlexibleForm `isRequired`); an optional field must therefore allow null."""
    def ui_required(param) -> bool:
        kind = param.schema.get("type")
        return bool(kind) and (not isinstance(kind, list) or "null" not in kind)

    marked = {(form, name) for form, params in _forms().items() for name, p in params.items() if ui_required(p)}
    assert marked == REQUIRED_FIELDS


def test_when_an_optional_field_is_left_empty_then_the_run_still_validates():
    from airflow.sdk.definitions.param import ParamsDict

    for form, params in _forms().items():
        required = {n for f, n in REQUIRED_FIELDS if f == form}
        conf = {name: None for name in params if name not in required}
        conf.update({"store": "crm"} if form == "received_in_error" else {})
        conf.update({"emails": ["a@b.co"]} if form == "consent_withdrawal" else {})
        merged = ParamsDict(dict(params))
        merged.update(conf)
        merged.validate()  # raises ParamValidationError on a field that refuses null


# ---------------------------------------------------------------------------- pii.engine.requests / pii.engine.sweep
@pytest.fixture
def ledger(tmp_path):
    from pii.ledger import Ledger

    return Ledger(f"sqlite:///{tmp_path / 'state.db'}")


@pytest.mark.parametrize("conf,message", [
    ({"emails": ["nope"]}, "email #1"),
    ({"phones": ["12"]}, "phone #1"),
    ({"ids": ["customer_no"]}, "'ids' must be an object"),
    ({"ids": {"bad key!": "1"}}, "key must be a column"),
    ({"names": "Alice Smith", "emails": [3]}, "'emails' must be a list of strings"),
    ({}, "at least one identifier"),
])
def test_when_run_conf_identifiers_are_bad_then_invalid_identifier_names_kind_not_value(conf, message):
    from pii.engine.requests import subject_from_conf

    with pytest.raises(InvalidIdentifier, match=message) as info:
        subject_from_conf(conf)
    assert "nope" not in str(info.value)


def test_when_a_request_is_registered_then_it_can_be_picked_up_by_id_only(ledger):
    from pii.engine.requests import pick_up, register, subject_from_conf

    subject = subject_from_conf({"emails": ["A@Example.org"], "ids": {"customer_no": "C-1"}})
    rid = register(ledger, "access", subject, "desk", received_at=dt.date(2026, 1, 31), request_id="sar-1")
    assert register(ledger, "access", subject, "desk", request_id="sar-1") == rid  # a retry is a no-op
    again, row = pick_up(ledger, "access", rid)
    assert again == subject and row["due_at"] == "2026-02-28"
    with pytest.raises(LedgerError, match="is a access request, not erasure"):
        pick_up(ledger, "erasure", rid)
    ledger.set_request_status(rid, "completed")
    with pytest.raises(LedgerError, match="completed"):
        pick_up(ledger, "access", rid)


def test_when_findings_go_to_a_work_file_then_it_is_encrypted_and_reads_back(ledger, tmp_path):
    from pii.core.findings import Finding
    from pii.engine.requests import read_findings, write_findings

    found = [Finding("crm", {"table": "members", "key": {"id": 1}}, ["EMAIL_ADDRESS"], container="members",
                     record={"email": "alice@example.org", "joined": dt.date(2024, 1, 2)})]
    path = write_findings(tmp_path / "w" / "f.enc", ledger, found)
    assert b"alice" not in path.read_bytes() and oct(path.stat().st_mode)[-3:] == "600"
    back = read_findings(path, ledger)
    assert back == found and back[0].record == {"email": "alice@example.org", "joined": "2024-01-02"}


def test_when_requests_are_open_then_due_report_splits_overdue_and_due_soon(ledger):
    from pii.engine.requests import due_report, register, subject_from_conf

    subject = subject_from_conf({"emails": ["a@example.org"]})
    today = dt.date(2026, 11, 21)
    register(ledger, "access", subject, "x", received_at=dt.date(2026, 10, 1), request_id="late")
    register(ledger, "erasure", subject, "x", received_at=dt.date(2026, 10, 25), request_id="soon")
    register(ledger, "access", subject, "x", received_at=dt.date(2026, 11, 20), request_id="fresh")
    report = due_report(ledger, today)
    assert [r["request_id"] for r in report["overdue"]] == ["late"]
    assert [r["request_id"] for r in report["due_soon"]] == ["soon"] and report["open"] == 3
    assert set(report["overdue"][0]) == {"request_id", "kind", "status", "received_at", "due_at"}


def test_when_a_store_is_swept_then_its_inventory_is_refreshed(tmp_path):
    from pii.core.config import load_config
    from pii.demo.world import build_demo
    from pii.state.inventory import Inventory
    from pii.engine.sweep import sweep_store

    world = build_demo(tmp_path / "demo")
    config = load_config(world.config_path)
    result = sweep_store(config, "exports")
    rows = Inventory(config.state_url).rows("exports")
    assert result["files"] == result["containers"] == len({r["container"] for r in rows}) >= 1
    assert result["columns"] == len(rows) and result["by_kind"].get("email", 0) >= 1
    assert "alice" not in json.dumps(result).lower()
    with pytest.raises(ConfigError, match="unknown store"):
        sweep_store(config, "nope")


def test_when_task_processes_are_kept_from_the_metadata_db_then_cleanup_needs_a_connection(monkeypatch, tmp_path):
    from airflow.sdk.exceptions import AirflowSkipException

    from plugins.tasks import metadata_db_url

    monkeypatch.delenv("AIRFLOW_CONN_LETHE_AIRFLOW_DB", raising=False)
    monkeypatch.setenv("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "airflow-db-not-allowed:///")  # as in a real task
    with pytest.raises(AirflowSkipException, match="lethe_airflow_db"):
        metadata_db_url()
    monkeypatch.setenv("AIRFLOW_CONN_LETHE_AIRFLOW_DB", "postgres://airflow:pw@db:5432/airflow")
    assert metadata_db_url() == "postgresql+psycopg://airflow:pw@db:5432/airflow"
    monkeypatch.delenv("AIRFLOW_CONN_LETHE_AIRFLOW_DB")
    monkeypatch.setenv("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", f"sqlite:///{tmp_path}/airflow.db")  # dag.test()
    assert metadata_db_url() == f"sqlite:///{tmp_path}/airflow.db"


def test_when_a_cleanup_cutoff_is_computed_then_it_keeps_the_microseconds():
    # a run started 0.12 s after the whole second of a zero-day cutoff must still be "before" it
    from datetime import datetime, timezone

    from plugins.tasks import cleanup_cutoff

    now = datetime(2026, 12, 3, 21, 50, 2, 500000, tzinfo=timezone.utc)
    cutoff = datetime.fromisoformat(cleanup_cutoff(0, now=now))
    assert cutoff == now and datetime(2026, 12, 3, 21, 50, 2, 120000, tzinfo=timezone.utc) < cutoff
    assert cleanup_cutoff(1.5, now=now) == "2026-12-02T09:50:02.500000+00:00"
