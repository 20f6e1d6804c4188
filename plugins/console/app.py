"""The Lethe console: a FastAPI app the Airflow API server mounts at ``/lethe`` (see plugins/console/__init__).

Airflow does not protect a plugin's endpoints: every route here first resolves the Airflow user
(`access.signed_in_user`: Airflow's own `get_user`, Bearer token or the UI's ``_token`` cookie), then
checks Lethe's roles (`access.console_roles`; package downloads `access.package_roles`). Not signed in:
a browser is sent to Airflow's login page (303), anything else gets 401; signed in without the role: 403.

Lethe's config comes from the API server's environment as on the workers (``LETHE_CONFIG``,
``LETHE_OUTPUT_DIR``; `plugins.runtime`): the ledger is the config's state database, certificates and
access packages the files the DAGs wrote under the output folder.
"""
from __future__ import annotations

import io
import logging
import zipfile
from pathlib import Path
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from plugins.console import access, pages

log = logging.getLogger("lethe.console")

SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; "
                               "frame-ancestors 'self'; form-action 'self'; base-uri 'none'",
    "X-Frame-Options": "SAMEORIGIN",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}

app = FastAPI(title="Lethe privacy console", docs_url=None, redoc_url=None, openapi_url=None)


def _root(request: Request) -> str:
    return (request.scope.get("root_path") or "").rstrip("/")


def _html(text: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(text, status_code=status, headers=SECURITY_HEADERS)


class Refused(Exception):
    def __init__(self, response: Response):
        self.response = response


@app.exception_handler(Refused)
async def _refused(_request: Request, exc: Refused) -> Response:
    return exc.response


async def _user(request: Request, roles: tuple[str, ...] | None = None) -> access.ConsoleUser:
    """The signed-in user holding one of the console's roles (else Refused with the 303/401/403 answer)."""
    root = _root(request)
    try:
        user = await access.signed_in_user(request)
    except access.NotSignedIn:
        wants_html = "text/html" in request.headers.get("accept", "")
        if request.method == "GET" and wants_html:
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            raise Refused(RedirectResponse(access.login_url(target), status_code=303, headers=SECURITY_HEADERS))
        raise Refused(_html(pages.message("Sign in required", "Sign in to Airflow to use the Lethe console.",
                                          root=root), 401))
    allowed = roles if roles is not None else access.console_roles()
    if not user.has_any(allowed):
        log.info("lethe console: %s refused (%s)", user.name, request.url.path)
        raise Refused(_html(pages.message(
            "Not allowed",
            f"You are signed in as {user.name} (role: {', '.join(user.roles) or 'none'}). This needs one of the "
            f"roles {', '.join(allowed)} (set by {access.CONSOLE_ROLES_ENV if roles is None else access.PACKAGE_ROLES_ENV} "
            "on the API server). Ask an Airflow administrator for access.", root=root, user=user.name), 403))
    return user


def _config():
    from plugins.runtime import load_run_config

    return load_run_config(None)


def _ledger(config):
    from pii.ledger import Ledger

    return Ledger(config.state_url)


def _not_found(request: Request, user, what: str) -> HTMLResponse:
    return _html(pages.message("Not found", f"{what} is not in the ledger.", root=_root(request), user=user.name), 404)


def _inside(base: Path, path: Path) -> bool:
    try:
        path.resolve().relative_to(base.resolve())
        return True
    except ValueError:
        return False


def _certificate_path(config, request_id: str, plan_id: str) -> Path | None:
    from plugins.runtime import output_dir

    base = output_dir(config)
    path = base / "erasure" / request_id / f"{plan_id}.certificate.json"
    return path if _inside(base, path) and path.is_file() else None


def _package_dir(config, request_id: str) -> Path | None:
    from plugins.runtime import output_dir

    base = output_dir(config)
    path = base / "access" / request_id
    return path if _inside(base, path) and path.is_dir() and any(path.iterdir()) else None


def hitl_links(plan_ids: list[str]) -> dict[str, str]:
    """plan id -> the Airflow UI page of the Human-in-the-loop task waiting on it (its "required actions"
    page: ``/dags/<dag>/runs/<run>/tasks/<task>[/mapped/<i>]/required_actions``), found among the waiting
    HITL details whose subject or body names the plan. Empty when Airflow's metadata cannot be read."""
    if not plan_ids:
        return {}
    try:
        from sqlalchemy import select
        from sqlalchemy.orm import joinedload

        from airflow.configuration import conf
        from airflow.models.hitl import HITLDetail
        from airflow.utils.session import create_session

        base = (conf.get("api", "base_url", fallback="") or "").rstrip("/")
        out: dict[str, str] = {}
        with create_session() as session:
            rows = session.scalars(select(HITLDetail).options(joinedload(HITLDetail.task_instance))
                                   .where(HITLDetail.responded_at.is_(None))).all()
            for d in rows:
                text = f"{d.subject or ''}\n{d.body or ''}"
                ti = d.task_instance
                for pid in plan_ids:
                    if pid in text and pid not in out:
                        mapped = f"/mapped/{ti.map_index}" if ti.map_index is not None and ti.map_index >= 0 else ""
                        out[pid] = (f"{base}/dags/{quote(ti.dag_id, safe='')}/runs/{quote(ti.run_id, safe='')}"
                                    f"/tasks/{quote(ti.task_id, safe='')}{mapped}/required_actions")
        return out
    except Exception as exc:  # noqa: BLE001 - links are a convenience: the page works without them
        log.warning("lethe console: approval tasks not listed (%s)", exc.__class__.__name__)
        return {}


def _unconfigured(request: Request, user, exc: Exception) -> HTMLResponse:
    return _html(pages.message("Lethe is not configured",
                               f"The API server cannot read Lethe's config: {exc}", root=_root(request),
                               user=user.name), 503)


# --------------------------------------------------------------------------- routes
@app.get("/", include_in_schema=False)
async def index(request: Request):
    await _user(request)
    return RedirectResponse(f"{_root(request)}/requests", status_code=303, headers=SECURITY_HEADERS)


@app.get("/requests", response_class=HTMLResponse)
async def requests_list(request: Request):
    from pii.core.errors import LetheError
    from pii.ledger import views

    user = await _user(request)
    try:
        rows = views.list_requests(_ledger(_config()))
    except LetheError as exc:
        return _unconfigured(request, user, exc)
    return _html(pages.requests_page(rows, root=_root(request), user=user.name))


@app.get("/requests/{request_id}", response_class=HTMLResponse)
async def request_detail(request: Request, request_id: str):
    from pii.core.errors import LedgerError, LetheError
    from pii.ledger import views

    user = await _user(request)
    try:
        config = _config()
        ledger = _ledger(config)
        req = views.get_request(ledger, request_id)
    except LedgerError:
        return _not_found(request, user, "This request")
    except LetheError as exc:
        return _unconfigured(request, user, exc)
    plans = views.plans_for(ledger, request_id)
    certs = {p["plan_id"]: _certificate_path(config, request_id, p["plan_id"]) is not None for p in plans}
    package = _package_dir(config, request_id)
    return _html(pages.request_page(req, views.timeline(ledger, request_id), plans, root=_root(request),
                                    user=user.name, certificates=certs,
                                    package=str(package) if package else None,
                                    may_download=user.has_any(access.package_roles())))


@app.get("/requests/{request_id}/package")
async def package_download(request: Request, request_id: str):
    from pii.core.errors import LedgerError, LetheError

    user = await _user(request, access.package_roles())
    try:
        config = _config()
        ledger = _ledger(config)
        ledger.get_request(request_id)
    except LedgerError:
        return _not_found(request, user, "This request")
    except LetheError as exc:
        return _unconfigured(request, user, exc)
    folder = _package_dir(config, request_id)
    if folder is None:
        return _html(pages.message("No package", "No access package was written for this request.",
                                   root=_root(request), user=user.name), 404)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(folder.rglob("*")):
            if path.is_file() and _inside(folder, path):
                zf.write(path, str(path.relative_to(folder)))
    name = f"{request_id}-access-package.zip"
    ledger.record_download(request_id, user.name, name)  # before the bytes leave
    log.info("lethe console: access package of %s downloaded by %s", request_id, user.name)
    return Response(buf.getvalue(), media_type="application/zip",
                    headers={**SECURITY_HEADERS, "Content-Disposition": f'attachment; filename="{name}"'})


@app.get("/plans/{plan_id}", response_class=HTMLResponse)
async def plan_detail(request: Request, plan_id: str):
    from pii.core.errors import LedgerError, LedgerTampered, LetheError
    from pii.ledger import views

    user = await _user(request)
    try:
        config = _config()
        plan = views.get_plan(_ledger(config), plan_id)
    except LedgerTampered:
        return _html(pages.message("Plan altered", "This plan does not match its keyed digest: it was changed "
                                   "outside Lethe. Plan it again.", root=_root(request), user=user.name), 409)
    except LedgerError:
        return _not_found(request, user, "This plan")
    except LetheError as exc:
        return _unconfigured(request, user, exc)
    hitl = hitl_links([plan_id]).get(plan_id) if plan["state"] == "planned" else None
    cert = _certificate_path(config, plan["request_id"], plan_id) is not None
    return _html(pages.plan_page(plan, root=_root(request), user=user.name, certificate=cert, hitl_url=hitl))


def _certificate(request: Request, user, plan_id: str):
    from pii.core.errors import LedgerError, LetheError

    try:
        config = _config()
        row = _ledger(config).get_plan(plan_id)
    except LedgerError:
        return None, _not_found(request, user, "This plan")
    except LetheError as exc:
        return None, _unconfigured(request, user, exc)
    path = _certificate_path(config, row["request_id"], plan_id)
    if path is None:
        return None, _html(pages.message("No certificate", "No certificate was written for this plan.",
                                         root=_root(request), user=user.name), 404)
    return (row["request_id"], path), None


@app.get("/plans/{plan_id}/certificate", response_class=HTMLResponse)
async def certificate(request: Request, plan_id: str):
    user = await _user(request)
    found, refusal = _certificate(request, user, plan_id)
    if refusal is not None:
        return refusal
    request_id, path = found
    text_path = path.with_suffix(".txt")
    text = text_path.read_text(encoding="utf-8") if text_path.is_file() else path.read_text(encoding="utf-8")
    return _html(pages.certificate_page(plan_id, request_id, text, root=_root(request), user=user.name))


@app.get("/plans/{plan_id}/certificate.json")
async def certificate_json(request: Request, plan_id: str):
    user = await _user(request)
    found, refusal = _certificate(request, user, plan_id)
    if refusal is not None:
        return refusal
    return Response(found[1].read_bytes(), media_type="application/json", headers=SECURITY_HEADERS)


@app.get("/approvals", response_class=HTMLResponse)
async def approvals(request: Request):
    from pii.core.errors import LetheError
    from pii.ledger import views

    user = await _user(request)
    try:
        rows = views.pending_approvals(_ledger(_config()))
    except LetheError as exc:
        return _unconfigured(request, user, exc)
    links = hitl_links([p["plan_id"] for p in rows])
    return _html(pages.approvals_page(rows, links, root=_root(request), user=user.name))


def _reports():
    from pii.reports import datamap

    config = _config()
    schedule = datamap.load_schedule(config)
    rows = datamap.data_map(config, schedule=schedule)
    return config, rows, datamap.records_of_processing(config, schedule=schedule, rows=rows)


@app.get("/inventory", response_class=HTMLResponse)
async def inventory(request: Request):
    from pii.core.errors import LetheError

    user = await _user(request)
    try:
        _c, rows, _r = _reports()
    except LetheError as exc:
        return _unconfigured(request, user, exc)
    return _html(pages.inventory_page(rows, root=_root(request), user=user.name))


@app.get("/datamap", response_class=HTMLResponse)
async def datamap_page(request: Request):
    from pii.core.errors import LetheError
    from pii.reports.datamap import render_data_map_html

    user = await _user(request)
    try:
        config, rows, ropa = _reports()
    except LetheError as exc:
        return _unconfigured(request, user, exc)
    text = render_data_map_html(config, rows, ropa)  # the page `lethe inventory --data-map` writes
    nav = pages.page("x", "", root=_root(request), user=user.name)
    nav = nav[nav.index("<nav>"):nav.index("</nav>") + 6]
    return _html(text.replace("<body>", "<body>" + nav, 1))


@app.get("/ropa", response_class=HTMLResponse)
async def ropa(request: Request):
    from pii.core.errors import LetheError

    user = await _user(request)
    try:
        _c, _rows, records = _reports()
    except LetheError as exc:
        return _unconfigured(request, user, exc)
    return _html(pages.ropa_page(records, root=_root(request), user=user.name))
