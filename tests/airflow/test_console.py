"""The Lethe console's FastAPI app (plugins/console) in-process, through FastAPI's TestClient, with Airflow's
own simple auth manager issuing and checking the JWTs (the UI's ``_token`` cookie or a Bearer header).

On the demo stores: a real erasure plan stored by `lethe erase` (awaiting approval), an access request
with a package in the output folder, a certificate file for the plan. Every page is fetched as a user
with the console role and checked for the demo subject's identifiers (never on a page); refusals:
not signed in (401, or 303 to Airflow's login for a browser), a forged token, a role without the console
(403), a console role without the package role (403 on the download); a download lands in the ledger.
"""
from __future__ import annotations

import io
import json
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

PERSONAL = ("alice.smith@example.org", "7946 0123", "79460123", "Alice Smith")
USERS = {"admin": "admin", "dpo": "user", "viewer": "viewer", "auditor": "op"}


@dataclass
class World:
    client: object
    tokens: dict[str, str]
    ledger: object
    plan_id: str
    erasure_request: str
    access_request: str
    out: Path


def _no_personal_values(where: str, text: str) -> None:
    # report only which identifier and which page: never the text around it
    found = [i for i, needle in enumerate(PERSONAL) if needle.casefold() in text.casefold()]
    assert found == [], f"{where}: demo identifier(s) #{found} appear on the page"


@pytest.fixture(scope="module")
def world(tmp_path_factory, airflow_db):
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from airflow.api_fastapi.app import init_auth_manager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
    from airflow.configuration import conf

    from pii.cli.main import main as lethe
    from pii.core.config import load_config
    from pii.core.subject import Subject
    from pii.demo.world import build_demo
    from pii.ledger import Ledger

    tmp = tmp_path_factory.mktemp("console")
    demo = build_demo(tmp / "demo")
    out = tmp / "out"
    saved_env = {k: os.environ.get(k) for k in ("LETHE_CONFIG", "LETHE_OUTPUT_DIR", "LETHE_PACKAGE_ROLES",
                                                "LETHE_CONSOLE_ROLES")}
    os.environ.update({"LETHE_CONFIG": str(demo.config_path), "LETHE_OUTPUT_DIR": str(out)})
    os.environ.pop("LETHE_PACKAGE_ROLES", None)
    os.environ.pop("LETHE_CONSOLE_ROLES", None)
    saved_users = conf.get("core", "simple_auth_manager_users", fallback=None)
    conf.set("core", "simple_auth_manager_users", ",".join(f"{u}:{r}" for u, r in USERS.items()))
    try:
        code = lethe(["--config", str(demo.config_path), "-q", "erase", "--email", "alice.smith@example.org",
                      "--phone", "020 7946 0123", "--requester", "support desk", "--store", "crm",
                      "--store", "exports"])
        assert code == 3  # stored, awaiting approval
        ledger = Ledger(load_config(str(demo.config_path)).state_url)
        (pending,) = [p for p in _planned(ledger)]
        plan_id, erasure_request = pending
        access_request = ledger.create_request("access", Subject.build(emails=["alice.smith@example.org"]),
                                               "support desk")
        package = out / "access" / access_request
        package.mkdir(parents=True)
        (package / "manifest.json").write_text(json.dumps({"subject": {"email": ["alice.smith@example.org"]}}))
        (package / "summary.html").write_text("<p>Alice Smith</p>")
        cert = out / "erasure" / erasure_request / f"{plan_id}.certificate.json"
        cert.parent.mkdir(parents=True)
        cert.write_text(json.dumps({"plan_id": plan_id, "verified": True}))
        cert.with_suffix(".txt").write_text(f"Erasure certificate for plan {plan_id}\nverified: yes\n")

        am = init_auth_manager()
        tokens = {u: am.generate_jwt(SimpleAuthManagerUser(username=u, role=r)) for u, r in USERS.items()}
        from plugins.console.app import app

        root = FastAPI()
        root.mount("/lethe", app)
        yield World(TestClient(root), tokens, ledger, plan_id, erasure_request, access_request, out)
    finally:
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        if saved_users is not None:
            conf.set("core", "simple_auth_manager_users", saved_users)


def _planned(ledger):
    from pii.ledger import views

    return [(p["plan_id"], p["request_id"]) for p in views.pending_approvals(ledger)]


def _get(w: World, path: str, user: str | None = "dpo", **kwargs):
    cookies = {"_token": w.tokens[user]} if user else {}
    w.client.cookies.clear()
    return w.client.get(path, cookies=cookies, follow_redirects=False, **kwargs)


def _pages(w: World) -> list[str]:
    return ["/lethe/requests", f"/lethe/requests/{w.erasure_request}", f"/lethe/requests/{w.access_request}",
            f"/lethe/plans/{w.plan_id}", "/lethe/approvals", "/lethe/inventory", "/lethe/datamap", "/lethe/ropa",
            f"/lethe/plans/{w.plan_id}/certificate"]


def test_when_nobody_is_signed_in_then_every_page_is_refused(world):
    for path in [*_pages(world), f"/lethe/requests/{world.access_request}/package"]:
        r = _get(world, path, user=None)
        assert r.status_code == 401, (path, r.status_code)
        assert "Sign in" in r.text
    # a browser (asks for HTML) is sent to Airflow's login page, coming back here afterwards
    r = _get(world, "/lethe/requests", user=None, headers={"accept": "text/html"})
    assert r.status_code == 303 and r.headers["location"].startswith("/auth/login?next=")
    assert "%2Flethe%2Frequests" in r.headers["location"]


def test_when_a_token_is_not_airflows_then_refused_and_a_bearer_token_works(world):
    w = world
    w.client.cookies.clear()
    forged = w.tokens["admin"][:-4] + ("AAAA" if not w.tokens["admin"].endswith("AAAA") else "BBBB")
    r = w.client.get("/lethe/requests", cookies={"_token": forged}, follow_redirects=False)
    assert r.status_code == 401, r.status_code
    r = w.client.get("/lethe/requests", headers={"Authorization": f"Bearer {w.tokens['dpo']}"})
    assert r.status_code == 200


def test_when_the_user_lacks_the_console_role_then_403_with_a_clear_page(world):
    for path in _pages(world):
        r = _get(world, path, user="viewer")
        assert r.status_code == 403, (path, r.status_code)
        assert "viewer" in r.text and "LETHE_CONSOLE_ROLES" in r.text and "admin, op, user" in r.text


def test_when_the_console_roles_are_configured_then_they_decide(world, monkeypatch):
    monkeypatch.setenv("LETHE_CONSOLE_ROLES", "viewer")
    assert _get(world, "/lethe/requests", user="viewer").status_code == 200
    assert _get(world, "/lethe/requests", user="dpo").status_code == 403


def test_when_pages_render_then_they_show_the_request_and_plan_but_no_personal_value(world):
    w = world
    for path in _pages(w):
        r = _get(w, path, user="admin")
        assert r.status_code == 200, (path, r.status_code)
        assert r.headers["content-type"].startswith("text/html")
        assert "<script" not in r.text.lower()
        assert r.headers["x-frame-options"] == "SAMEORIGIN"
        _no_personal_values(path, r.text)
    listing = _get(w, "/lethe/requests").text
    assert w.erasure_request in listing and w.access_request in listing
    assert "not recorded" in listing and "—" in listing  # identity, extension
    plan = _get(w, f"/lethe/plans/{w.plan_id}").text
    assert 'id="store-crm"' in plan and 'id="store-exports"' in plan
    assert "members" in plan and "whole record" in plan and "default policy" in plan
    approvals = _get(w, "/lethe/approvals").text
    assert f"/lethe/plans/{w.plan_id}" in approvals
    detail = _get(w, f"/lethe/requests/{w.erasure_request}").text
    assert "plan_stored" in detail and "request_created" in detail
    assert f"/lethe/plans/{w.plan_id}/certificate" in detail
    assert "verified: yes" in _get(w, f"/lethe/plans/{w.plan_id}/certificate").text


def test_when_values_would_be_html_then_they_are_escaped():
    from plugins.console import pages

    html = pages.requests_page([{"request_id": "<script>x</script>", "kind": "a&b", "status": "open", "open": True,
                                 "received": "2026-01-01", "due": "2026-02-01", "extension": "—", "days_left": -3,
                                 "overdue": True, "identity": '"><img src=x>'}], root="/lethe", user="<b>u</b>")
    assert "<script>x" not in html and "&lt;script&gt;" in html and "<img" not in html and "<b>u" not in html
    assert "%3Cscript%3E" in html  # the link's path segment is percent-encoded


def test_when_the_package_is_downloaded_then_only_by_allowed_roles_and_recorded(world, monkeypatch):
    w = world
    path = f"/lethe/requests/{w.access_request}/package"
    before = [e for e in w.ledger.audit_events(request_id=w.access_request) if e["event"] == "package_downloaded"]
    page = _get(w, f"/lethe/requests/{w.access_request}", user="dpo").text
    assert 'id="package-download"' not in page and "LETHE_PACKAGE_ROLES" in page
    r = _get(w, path, user="dpo")
    assert r.status_code == 403 and "LETHE_PACKAGE_ROLES" in r.text
    assert _get(w, f"/lethe/requests/{w.access_request}", user="admin").text.count('id="package-download"') == 1
    r = _get(w, path, user="admin")
    assert r.status_code == 200 and r.headers["content-type"] == "application/zip"
    names = zipfile.ZipFile(io.BytesIO(r.content)).namelist()
    assert sorted(names) == ["manifest.json", "summary.html"]
    after = [e for e in w.ledger.audit_events(request_id=w.access_request) if e["event"] == "package_downloaded"]
    assert len(after) == len(before) + 1
    assert after[-1]["actor"] == "admin" and after[-1]["details"]["file"].endswith("-access-package.zip")
    monkeypatch.setenv("LETHE_PACKAGE_ROLES", "user")
    assert _get(w, path, user="dpo").status_code == 200
    assert _get(w, path, user="admin").status_code == 403


def test_when_a_request_or_plan_is_unknown_then_404(world):
    assert _get(world, "/lethe/requests/req-nope").status_code == 404
    assert _get(world, "/lethe/plans/plan-nope").status_code == 404
    assert _get(world, "/lethe/plans/plan-nope/certificate").status_code == 404


def test_when_the_plugin_is_installed_then_airflow_sees_its_app_and_nav_entry():
    from importlib.metadata import entry_points

    from plugins.console import LetheConsolePlugin

    (ep,) = [e for e in entry_points(group="airflow.plugins") if e.name == "lethe_console"]
    assert ep.load() is LetheConsolePlugin
    (app,) = LetheConsolePlugin.fastapi_apps
    assert app["url_prefix"] == "/lethe"
    (view,) = LetheConsolePlugin.external_views
    assert view["href"] == "/lethe/requests" and view["destination"] == "nav"
