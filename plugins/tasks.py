"""The bodies of Lethe's Airflow tasks. DAG files only wire these together; every rule they apply lives
in `pii/` (the same functions the CLI calls).

What crosses task boundaries (XCom) is ids, counts and paths. The subject's identifiers travel only
through the ledger's encrypted request store (keyed by request id), and findings with their records
through encrypted work files (`pii.engine.requests.write_findings`), never through Airflow's metadata.
Every body runs under `plugins.outcomes.lethe_outcomes`, the single mapping of Lethe errors to
retry / fail / skip.
"""
from __future__ import annotations

import importlib
import logging
import os
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterable, Mapping

from plugins.outcomes import UnsupportedStore, lethe_outcomes
from plugins.runtime import (
    actor_of, load_run_config, output_dir, remember_request, remove_work_dir, requester_of, run_work_dir,
    selected_stores, task_progress, work_root,
)

log = logging.getLogger("lethe.airflow")

ALERT_HOOK_ENV = "LETHE_ALERT_HOOK"


def _params(context: Mapping[str, Any]) -> dict:
    return dict(context.get("params") or {})


def _counts(findings) -> dict[str, int]:
    from pii.core.findings import WEAK

    out = {"locations": 0, "identifier": 0, "text": 0, "linked": 0, "weak": 0}
    for f in findings:
        out["locations"] += 1
        out[f.match] += 1
        out["weak"] += f.strength == WEAK
    return out


def _present(results) -> list:
    """The mapped upstream's results that exist (a skipped store has none). Indexing by length avoids the
    lazy sequence probing past its end (which Airflow logs as an error)."""
    if results is None:
        return []
    try:
        items = [results[i] for i in range(len(results))]
    except TypeError:
        items = list(results)
    return [r for r in items if r]


def _ledger(config):
    from pii.ledger import Ledger

    return Ledger(config.state_url)


# =========================================================================== intake (both flows)
def register_request(kind: str, context: Mapping[str, Any]) -> dict:
    """Register the run's request in the ledger and seal its identifiers in the request store; or, when
    the run names only a ``request_id``, pick up a request registered beforehand. Returns ids only."""
    from pii.core.errors import InvalidIdentifier
    from pii.engine.requests import has_identifiers, parse_received, pick_up, register, subject_from_conf

    with lethe_outcomes():
        params = _params(context)
        config = load_run_config(params)
        stores = selected_stores(config, params)
        ledger = _ledger(config)
        request_id = params.get("request_id") or None
        if has_identifiers(params):
            # a retried task must not register the request twice: the run's own id names it
            request_id = request_id or run_request_id(context)
            subject = subject_from_conf(params, config.default_region)
            request_id = register(ledger, kind, subject, requester_of(params, context),
                                  received_at=parse_received(params.get("received_at")), request_id=request_id)
            source = "run conf"
        elif request_id:
            pick_up(ledger, kind, request_id)  # exists, right kind, still open, identifiers sealed
            source = "request store"
        else:
            raise InvalidIdentifier("give the subject's identifiers (emails, names, phones, ids) or the "
                                    "request_id of a request registered beforehand")
        row = ledger.get_request(request_id)
        log.info("%s request %s (identifiers from the %s), received %s, due %s; stores: %s", kind, request_id,
                 source, row["received_at"], row["due_at"], ", ".join(stores))
        return {"request_id": request_id, "stores": stores, "received_at": row["received_at"],
                "due_at": row["due_at"]}


def run_request_id(context: Mapping[str, Any]) -> str:
    """An opaque request id derived from the DAG run (stable across task retries)."""
    import hashlib

    ti = context["ti"]
    return "req-" + hashlib.sha256(f"{ti.dag_id}\0{ti.run_id}".encode("utf-8")).hexdigest()[:32]


# =========================================================================== subject_access
DEFAULT_TABLE_GROUP = 25  # tables per mapped search task in a big SQL store (store option table_group)


def search_units(context: Mapping[str, Any]) -> list[dict]:
    """What the locate tasks map over: one unit per store, and for a SQL store with more tables than its
    ``table_group`` option (default 25), one unit per group of that many tables, so a big store spreads
    over the workers. Each unit: {"store", "tables" (None: all), "group" ("2/5")}."""
    from pii.engine.stores import connect

    with lethe_outcomes():
        params = _params(context)
        config = load_run_config(params)
        units: list[dict] = []
        for name in selected_stores(config, params):
            store = config.stores[name]
            size = int(store.get("table_group", DEFAULT_TABLE_GROUP) or 0)
            groups = None
            if store.kind == "sql" and size > 0:
                resolved = load_run_config(params, resolve=[name]).stores[name]
                with connect(config, resolved, inventory=None) as conn:
                    groups = conn.table_groups(size)
            if not groups or len(groups) == 1:
                units.append({"store": name, "tables": None, "group": "1/1"})
                continue
            units += [{"store": name, "tables": g, "group": f"{i}/{len(groups)}"} for i, g in enumerate(groups, 1)]
        log.info("%d search task(s) over %d store(s)", len(units), len({u["store"] for u in units}))
        return units


def locate_unit(request_id: str, unit: Mapping[str, Any], context: Mapping[str, Any], *,
                kind: str = "access") -> dict:
    """`locate_in_store` for one unit of `search_units` (a store, or a group of its tables); `kind`: the
    request's kind (access, or erasure for the erasure plan's search)."""
    return locate_in_store(request_id, unit["store"], context, tables=unit.get("tables"),
                           group=unit.get("group") or "1/1", kind=kind)


def locate_in_store(request_id: str, store: str, context: Mapping[str, Any], *, tables: list[str] | None = None,
                    group: str = "1/1", kind: str = "access") -> dict:
    """Locate the request's subject in one store (or one group of its tables); findings go to an encrypted
    work file."""
    from connectors import connector_class
    from pii.engine.discover import locate_in_store as locate
    from pii.core.errors import ConfigError
    from pii.state.inventory import Inventory
    from pii.engine.requests import identity_required, pick_up, write_findings

    with lethe_outcomes():
        params = _params(context)
        config = load_run_config(params)
        store_config = config.select([store])[0]
        try:
            connector_class(store_config.kind)
        except ConfigError as exc:
            raise UnsupportedStore(f"store '{store}' is not searched: {exc}") from None
        config = load_run_config(params, resolve=[store])
        ledger = _ledger(config)
        subject, _row = pick_up(ledger, kind, request_id, require_identity=identity_required(config))
        result = locate(config, config.stores[store], subject, progress=task_progress,
                        inventory=Inventory(config.state_url), tables=tables)
        ti = context["ti"]
        suffix = "" if group == "1/1" else "." + group.replace("/", "-of-")
        path = run_work_dir(config, ti.dag_id, ti.run_id) / f"{request_id}.{store}{suffix}.findings.enc"
        write_findings(path, ledger, result.findings)
        counts = _counts(result.findings)
        log.info("[%s%s] %d locations (%d identifier, %d text, %d linked; %d weak) in %.2fs", store,
                 "" if group == "1/1" else f" tables {group}", counts["locations"], counts["identifier"],
                 counts["text"], counts["linked"], counts["weak"], result.seconds)
        coverage = result.coverage.to_dict() if result.coverage is not None else None
        if coverage and not coverage["complete"]:
            log.warning("[%s] %d place(s) could not be fully searched (listed in the package manifest)", store,
                        len(coverage["skipped"]) + len(coverage["partial"]))
        return {"store": store, "kind": store_config.kind, **counts, "seconds": round(result.seconds, 3),
                "result_file": str(path), "coverage": coverage, "group": group}


def assemble_package(request_id: str, results: Iterable[Mapping[str, Any] | None],
                     context: Mapping[str, Any]) -> dict:
    """Write the access package from the stores' work files (`pii.reports.package.write_access_package`)."""
    from pii.reports.package import write_access_package
    from pii.engine.requests import access_request_info, identity_required, pick_up

    with lethe_outcomes():
        params = _params(context)
        config = load_run_config(params)
        ledger = _ledger(config)
        subject, row = pick_up(ledger, "access", request_id, require_identity=identity_required(config))
        results = _present(results)
        searched = list(dict.fromkeys(r["store"] for r in results))
        not_searched = [s for s in selected_stores(config, params) if s not in searched]
        findings, coverage = read_work_files(ledger, results)
        extra = {"stores_searched": searched, "stores_not_searched": not_searched,
                 "identity_verification": params.get("identity_verification")}
        request = access_request_info(ledger, subject, row, extra=extra)
        out = output_dir(config) / "access" / request_id
        metadata = {name: s.metadata for name, s in config.stores.items()}
        pkg = write_access_package(out, subject, findings, stores_metadata=metadata, request=request,
                                   coverage=coverage, portable=bool(params.get("portable")),
                                   controller=(config.raw or {}).get("controller"))
        ti = context["ti"]
        remove_work_dir(run_work_dir(config, ti.dag_id, ti.run_id))
        counts = _counts(findings)
        log.info("access package for %s: %d locations in %d store(s), %d files%s; not searched: %s", request_id,
                 counts["locations"], len({f.store for f in findings}), len(pkg.files),
                 " (encrypted)" if pkg.encrypted else "", ", ".join(not_searched) or "none")
        partly = sorted(c["store"] for c in coverage if not c.get("complete", True))
        return {"request_id": request_id, "package_dir": str(pkg.out_dir), "files": len(pkg.files),
                "encrypted": pkg.encrypted, "portable": bool(params.get("portable")), **counts,
                "stores_not_searched": not_searched,
                "stores_not_fully_searched": partly}


def record_access(request_id: str, package: Mapping[str, Any], context: Mapping[str, Any]) -> dict:
    """Close the request in the ledger: completed (identifiers shredded) when every store was searched;
    in progress (identifiers kept, so the run can be repeated by id) otherwise."""
    from pii.engine.requests import complete

    remember_request(context, request_id)  # the task's "Lethe request" link
    with lethe_outcomes():
        config = load_run_config(_params(context))
        ledger = _ledger(config)
        actor = actor_of(context)
        if package.get("stores_not_searched") or package.get("stores_not_fully_searched"):
            ledger.set_request_status(request_id, "in_progress", actor=actor)
            status = "in_progress"
        else:
            complete(ledger, request_id, actor)
            status = "completed"
        row = ledger.get_request(request_id)
        log.info("request %s %s (due %s)", request_id, status, row["due_at"])
        return {"request_id": request_id, "status": status, "due_at": row["due_at"],
                "package_dir": package.get("package_dir")}


# =========================================================================== subject_erasure
def plan_erasure(request_id: str, context: Mapping[str, Any], results: Iterable[Mapping[str, Any] | None] | None = None
                 ) -> dict:
    """Build and store the plan (`ErasureEngine.submit`), awaiting approval. Returns its id and counts.

    With `results` (the mapped `locate` tasks' outputs: one per store or group of tables, findings in
    encrypted work files) the plan decides those findings instead of searching again; a store no task
    searched (skipped: its kind is not supported here) goes into the plan's coverage as not searched, so
    the certificate cannot call it verified."""
    from pii.engine.erasure import ErasureEngine
    from pii.engine.requests import identity_required, pick_up
    from pii.engine.runs import RunService, SubjectRun

    with lethe_outcomes():
        params = _params(context)
        config = load_run_config(params, resolve=True)
        engine = ErasureEngine(config, progress=task_progress)
        subject, row = pick_up(engine.ledger, "erasure", request_id, require_identity=identity_required(config))
        received = date.fromisoformat(row["received_at"])
        stores = list(params.get("stores") or []) or None
        found = None
        if results is not None:
            results = _present(results)
            searched = {r["store"] for r in results}
            selected = selected_stores(config, params)
            findings, coverage = read_work_files(engine.ledger, results)
            for name in selected:
                if name not in searched:
                    log.warning("[%s] not searched: the plan cannot erase there, and the certificate says so", name)
                    coverage.append(not_searched_report(name, config.stores[name].kind))
            found = (findings, coverage)
            stores = [s for s in selected if s in searched]  # what the plan covers (and verification searches)
            if not stores:
                raise UnsupportedStore("no store of this erasure could be searched: nothing is planned")
        spec = SubjectRun(subject, include_weak=bool(params.get("include_weak")), stores=stores,
                          request_id=request_id, found=found)
        plan = RunService(engine).store(spec, requester_of(params, context), received_at=received)
        if results is not None:
            ti = context["ti"]
            remove_work_dir(run_work_dir(config, ti.dag_id, ti.run_id))
        actions: dict[str, int] = {}
        for a in plan.everything():
            actions[a.action] = actions.get(a.action, 0) + 1
        for line in plan.lines():
            log.info("%s", line)
        return {"plan_id": plan.plan_id, "request_id": request_id, "actions": actions,
                "review": len(plan.data["review"]), "held": len(plan.data["held"])}


def read_work_files(ledger, results: list[Mapping[str, Any]]) -> tuple[list, list[dict]]:
    """The mapped `locate` tasks' findings (from their encrypted work files, merged across groups of one
    store) and coverage reports (merged: one per store)."""
    from pii.core.coverage import merge_reports
    from pii.core.findings import merge
    from pii.engine.requests import read_findings

    findings = []
    for r in results:
        findings.extend(read_findings(Path(r["result_file"]), ledger))
    return merge(findings), merge_reports([r["coverage"] for r in results if r.get("coverage")])


def not_searched_report(store: str, kind: str) -> dict:
    """The coverage report of a store no task searched (its search was skipped)."""
    from pii.core.coverage import Coverage

    report = Coverage(store, kind)
    report.add_skipped("(whole store)", "not searched in this run (skipped)")
    return report.to_dict()


def execute_erasure(decision: Mapping[str, Any], context: Mapping[str, Any]) -> dict:
    """Carry out an approved plan and verify it (`ErasureEngine.execute`); skipped when rejected."""
    from airflow.sdk.exceptions import AirflowSkipException

    from pii.engine.erasure import ErasureEngine
    from pii.engine.runs import RunService

    if not decision or decision.get("decision") != "approved":
        raise AirflowSkipException("the plan was not approved: nothing is erased")
    with lethe_outcomes():
        config = load_run_config(_params(context), resolve=True)
        engine = ErasureEngine(config, progress=task_progress)
        report = RunService(engine).run(decision["plan_id"], actor=actor_of(context))
        log.info("plan %s: %s; %d done, %d drifted, %d failed, %d rows, %s remaining", report.plan_id,
                 report.state, report.done, report.drifted, report.failed, report.rows, report.remaining)
        return {"plan_id": report.plan_id, "state": report.state, "done": report.done, "drifted": report.drifted,
                "failed": report.failed, "rows": report.rows, "remaining": report.remaining,
                "new_locations": report.new_locations}


def write_certificate(report: Mapping[str, Any], context: Mapping[str, Any]) -> dict:
    """Write the certificate (JSON and text) to the output folder; fails the run when the erasure is not
    verified (drifted rows, erasable data still found), after writing what was done."""
    from airflow.sdk.exceptions import AirflowFailException

    from pii.engine.erasure import ErasureEngine
    from pii.reports.certificate import certificate_lines, write_certificate as write_certificate_files

    with lethe_outcomes():
        params = _params(context)
        config = load_run_config(params)
        engine = ErasureEngine(config)
        plan_id = report["plan_id"]
        cert = engine.certificate(plan_id)
        remember_request(context, cert.get("request_id"))  # the task's "Lethe request" link
        if params.get("identity_verification"):
            cert["identity_verification"] = params["identity_verification"]
        folder = output_dir(config) / "erasure" / cert["request_id"]
        folder.mkdir(parents=True, exist_ok=True)
        lines = certificate_lines(cert)
        path, _text = write_certificate_files(cert, folder / f"{plan_id}.certificate.json", lines)
        for line in lines:
            log.info("%s", line)
        out = {"plan_id": plan_id, "request_id": cert["request_id"], "state": cert["state"],
               "verified": cert["verified"], "not_verified": len(cert.get("not_verified") or []),
               "actions": cert["actions"], "rows_affected": cert["rows_affected"], "certificate": str(path)}
    if not cert["verified"]:
        gaps = cert.get("not_verified") or []
        why = (f"{len(gaps)} place(s) could not be fully searched (listed in the certificate)" if gaps
               and cert["state"] == "verified" else f"plan {plan_id} is {cert['state']}")
        raise AirflowFailException(f"{why}, not verified: see the certificate "
                                   f"and `lethe show-plan {plan_id}`; re-plan if rows drifted")
    return out


def store_names(context: Mapping[str, Any]) -> list[str]:
    """The stores a run covers (the run's ``stores``, else all): what the per-store tasks map over."""
    with lethe_outcomes():
        params = _params(context)
        return selected_stores(load_run_config(params), params)


# =========================================================================== discovery_sweep

def sweep_one(store: str, context: Mapping[str, Any]) -> dict:
    """Sweep one store (`pii.engine.sweep.sweep_store`): incremental unless the run's ``full`` is set; the run's
    ``sample_rows`` overrides the sample size. Returns counts only."""
    from connectors import connector_class
    from pii.core.errors import ConfigError
    from pii.engine.sweep import SWEEP_KINDS, summary_line, sweep_store

    with lethe_outcomes():
        params = _params(context)
        config = load_run_config(params)
        kind = config.select([store])[0].kind
        if kind not in SWEEP_KINDS:
            raise UnsupportedStore(f"store '{store}' ({kind}): a discovery sweep cannot classify this kind yet")
        try:
            connector_class(kind)
        except ConfigError as exc:
            raise UnsupportedStore(f"store '{store}' is not swept: {exc}") from None
        config = load_run_config(params, resolve=[store])
        sample_rows = params.get("sample_rows")
        result = sweep_store(config, store, progress=task_progress, full=bool(params.get("full")),
                             sample_rows=int(sample_rows) if sample_rows not in (None, "") else None)
        log.info("[%s] %s; kinds: %s", store, summary_line(result),
                 ", ".join(f"{n} {k}" for k, n in result["by_kind"].items()) or "none")
        for err in result["errors"]:
            log.warning("[%s] %s not classified: %s", store, err["container"], err["reason"])
        return result


def sweep_summary(results: Iterable[Mapping[str, Any] | None], context: Mapping[str, Any] | None = None) -> dict:
    """Totals of the stores' sweeps; with the run's `context`, also writes the reports (HTML data map,
    records of processing and inventory export, `pii.reports.datamap.write_reports`) into the run's ``reports_dir``,
    else LETHE_REPORTS_DIR, else ``reports/`` beside stores.yaml."""
    results = _present(results)
    by_kind: dict[str, int] = {}
    for r in results:
        for k, n in r["by_kind"].items():
            by_kind[k] = by_kind.get(k, 0) + n
    seconds = sum(r.get("seconds", 0) for r in results)
    rows = sum(r.get("rows_sampled", 0) for r in results)
    out = {"stores": len(results), "containers": sum(r["containers"] for r in results),
           "swept": sum(r.get("swept", 0) for r in results), "unchanged": sum(r.get("unchanged", 0) for r in results),
           "failed": sum(r.get("failed", 0) for r in results),
           "columns": sum(r["columns"] for r in results), "rows_sampled": rows,
           "rows_per_s": round(rows / seconds, 1) if seconds > 0 else 0.0, "by_kind": dict(sorted(by_kind.items()))}
    log.info("sweep: %d stores, %d tables/files (%d swept, %d unchanged, %d failed), %d columns, %d rows sampled",
             out["stores"], out["containers"], out["swept"], out["unchanged"], out["failed"], out["columns"], rows)
    if context is None:
        return out
    from pii.reports import datamap

    with lethe_outcomes():
        params = _params(context)
        config = load_run_config(params)
        requested = params.get("reports_dir")
        if requested and os.environ.get("LETHE_ALLOW_CONFIG_OVERRIDE") != "1":
            from pii.core.errors import ConfigError

            raise ConfigError("the run names its own 'reports_dir', which is only honoured when "
                              "LETHE_ALLOW_CONFIG_OVERRIDE=1 on the workers (whoever triggers a run must not "
                              "choose where workers write); leave it empty to use LETHE_REPORTS_DIR")
        folder = datamap.reports_dir(config, requested)
        schedule = datamap.load_schedule(config)
        rows_map = datamap.data_map(config, schedule=schedule)
        ropa = datamap.records_of_processing(config, schedule=schedule, rows=rows_map)
        out["reports"] = datamap.write_reports(config, folder, rows=rows_map, ropa=ropa)
        out.update({f"ropa_{k}": v for k, v in datamap.report_counts(rows_map, ropa).items()
                    if k in ("records", "no_retention_rule", "not_swept")})
        log.info("reports in %s: %d records of processing, %d with no retention rule, %d stores not swept",
                 folder, out["ropa_records"], out["ropa_no_retention_rule"], out["ropa_not_swept"])
    return out


# =========================================================================== requests_due
def check_due(context: Mapping[str, Any]) -> dict:
    """Open requests and their due dates; overdue and due-within-7-days ones are logged (ids and dates)
    and handed to the alert hook."""
    from pii.engine.requests import due_report

    with lethe_outcomes():
        params = _params(context)
        config = load_run_config(params)
        from pii.engine.erasure import ErasureEngine
        from pii.engine.flows import lapse_flow_requests

        lapsed = lapse_flow_requests(ErasureEngine(config))  # flow runs whose plans expired unapproved
        if lapsed:
            log.info("%d special-flow requests withdrawn: their plans expired unapproved", lapsed)
        within = params.get("within_days")
        report = due_report(_ledger(config), date.today(), 7 if within in (None, "") else int(within))
        for r in report["overdue"]:
            log.warning("OVERDUE: %s request %s received %s was due %s (%s)", r["kind"], r["request_id"],
                        r["received_at"], r["due_at"], r["status"])
        for r in report["due_soon"]:
            log.warning("due soon: %s request %s received %s is due %s (%s)", r["kind"], r["request_id"],
                        r["received_at"], r["due_at"], r["status"])
        log.info("%d open requests: %d overdue, %d due within %d days", report["open"], len(report["overdue"]),
                 len(report["due_soon"]), report["within_days"])
        alert(report)
        return report


def alert(report: Mapping[str, Any]) -> None:
    """Call the alert hook named by LETHE_ALERT_HOOK (``package.module:function``, called with the report)
    when anything is overdue or due soon. Without one, the warnings in the task log are the alert."""
    if not (report.get("overdue") or report.get("due_soon")):
        return
    target = os.environ.get(ALERT_HOOK_ENV, "").strip()
    if not target:
        return
    module, _, name = target.partition(":")
    from pii.core.errors import ConfigError

    try:
        hook = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError):
        raise ConfigError(f"{ALERT_HOOK_ENV}={target!r} does not name an importable module:function") from None
    hook(dict(report))


# =========================================================================== lethe_db_cleanup
def remove_stale_work(context: Mapping[str, Any], max_age_days: float) -> dict:
    """Delete work folders of runs older than `max_age_days` (failed runs leave theirs behind)."""
    from airflow.sdk.exceptions import AirflowSkipException

    if not os.environ.get("LETHE_CONFIG"):
        raise AirflowSkipException("LETHE_CONFIG is not set: no Lethe work folder to clean")
    with lethe_outcomes():
        root = work_root(load_run_config({}))
        cutoff = time.time() - max_age_days * 86400
        removed = 0
        if root.is_dir():
            for dag_dir in root.iterdir():
                if not dag_dir.is_dir():
                    continue
                for run_dir in dag_dir.iterdir():
                    if run_dir.is_dir() and run_dir.stat().st_mtime < cutoff:
                        remove_work_dir(run_dir)
                        removed += 1
        log.info("removed %d stale work folders under %s", removed, root)
        return {"removed": removed}


def cleanup_cutoff(days: float, now: datetime | None = None) -> str:
    """The `--clean-before-timestamp` for runs older than `days`, to the microsecond: cut to the second, a run
    started in the same second as the cutoff would survive a cleanup that should remove it."""
    now = now or datetime.now(timezone.utc)
    return (now - timedelta(days=days)).isoformat(timespec="microseconds")


METADATA_CONN_ENV = "LETHE_AIRFLOW_DB_CONN_ID"
METADATA_CONN_DEFAULT = "lethe_airflow_db"


def metadata_db_url() -> str:
    """The metadata DB URL for `airflow db clean`. Airflow 3 blocks database access from task processes
    (it replaces the URL with a placeholder), so a real deployment names the database in an Airflow
    connection (``lethe_airflow_db``, or the id in LETHE_AIRFLOW_DB_CONN_ID); without one, the process's own
    setting is used where it is real (``dag.test()``), otherwise the task is skipped with how to fix it."""
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException, AirflowSkipException

    from plugins.hooks import sql_url

    conn_id = os.environ.get(METADATA_CONN_ENV) or METADATA_CONN_DEFAULT
    try:
        return sql_url("airflow metadata database", BaseHook.get_connection(conn_id))
    except AirflowNotFoundException:
        pass
    url = os.environ.get("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "")
    if url and not url.startswith("airflow-db-not-allowed"):
        return url
    raise AirflowSkipException(f"no Airflow connection '{conn_id}' names the metadata database (tasks may not "
                               "reach it otherwise): create one, or run `airflow db clean` from cron instead")


def clean_airflow_runs(dag_ids: Iterable[str], tables: Iterable[str], max_age_days: float) -> dict:
    """`airflow db clean` for Lethe's identifier-taking DAGs: their runs (with what depends on them: task
    instances and their history, XComs, rendered fields, Human-in-the-loop details) and audit-log rows
    older than `max_age_days`, deleted without archive tables (an archive would keep the run confs)."""
    import subprocess
    import sys

    from airflow.sdk.exceptions import AirflowException

    cutoff = cleanup_cutoff(max_age_days)
    env = {**os.environ, "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": metadata_db_url()}
    cmd = [sys.executable, "-m", "airflow", "db", "clean", "--yes", "--skip-archive",
           "--dag-ids", ",".join(dag_ids), "--tables", ",".join(tables), "--clean-before-timestamp", cutoff]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=3600, env=env)
    found = [line.strip() for line in proc.stdout.splitlines() if "rows meeting deletion criteria" in line]
    for line in found:
        log.info("%s", line)
    for line in proc.stderr.splitlines():  # e.g. a table this Airflow version cannot clean on SQLite
        if "not cleaned" in line or "error when attempting to clean" in line:
            log.warning("%s", line.strip()[:300])
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()[-1:] or ["no output"]
        raise AirflowException(f"airflow db clean exited {proc.returncode}: {tail[0][:300]}")
    log.info("cleaned runs of %s before %s", ", ".join(dag_ids), cutoff)
    return {"before": cutoff, "dag_ids": list(dag_ids), "tables": list(tables)}
