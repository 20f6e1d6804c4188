"""The Lethe console in a real browser: headless Debian Chromium (selenium + chromium-driver) against a real
Airflow API server that loaded the plugin from the project's ``airflow.plugins`` entry point.

One cluster for the module (tests/airflow_runner.py: ``db migrate``, api-server, scheduler, dag-processor,
triggerer; simple auth manager with ``admin`` (admin), ``dpo`` (user) and ``viewer`` (viewer)). The DPO
signs in on Airflow's login page, opens the console from Airflow's navigation, finds the erasure request,
opens the pending approval, reads the per-store table, follows the link to the Airflow approval task and
approves it there with a reason, then follows the certificate link once the run has finished. A viewer is
refused. Screenshots and page sources of a failure go to ``<pytest tmp>/console_browser/screenshots``
(the path is printed). Outside CI the test skips when chromium or chromedriver is missing; under CI=true
it must run (``.ci/run`` installs them).
"""
from __future__ import annotations

import os
import shutil
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.airflow_runner import (
    AirflowProcesses, Api, api_ready, base_env, free_port, wait_for, wait_for_approval, write_passwords,
)

pytestmark = [pytest.mark.airflow_processes, pytest.mark.slow]

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
SUBJECT_CONF = {"emails": ["alice.smith@example.org"], "names": ["Alice Smith"], "phones": ["020 7946 0123"],
                "requester": "support desk"}
PERSONAL = ("alice.smith@example.org", "7946 0123", "79460123")
STARTUP_S, RUN_S, UI_S = 120, 150, 30
REASON = "verified request, nothing to retain"


def _browser_or_skip() -> None:
    missing = [n for n, p in (("chromium", CHROMIUM), ("chromedriver", CHROMEDRIVER)) if not p]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("selenium (Python package)")
    if missing:
        reason = f"{', '.join(missing)} not installed (apt-get install chromium chromium-driver)"
        if IN_CI:
            pytest.fail(f"{reason}; under CI=true the browser test must run")
        pytest.skip(reason)


@dataclass
class Cluster:
    procs: AirflowProcesses
    api: Api
    base: str
    passwords: dict
    world: object
    tmp: Path


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    _browser_or_skip()
    from pii.demo.world import build_demo

    tmp = tmp_path_factory.mktemp("console_browser")
    world = build_demo(tmp / "demo")
    home = tmp / "airflow"
    port = free_port()
    env = base_env(home, api_port=port, extra={
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "LETHE_CONFIG": str(world.config_path),
        "LETHE_OUTPUT_DIR": str(tmp / "out"),
        "LETHE_WORK_DIR": str(tmp / "work"),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin,dpo:user,viewer:viewer",
        # not the checkout on the path: its lethe.egg-info (setuptools' editable build) would be a second
        # copy of the distribution, whose entry point Airflow reports as "already registered"
        "PYTHONPATH": "",
    })
    passwords = {u: os.urandom(12).hex() for u in ("admin", "dpo", "viewer")}
    write_passwords(env, passwords)
    procs = AirflowProcesses(env, tmp / "logs")
    try:
        base = f"http://127.0.0.1:{port}"
        api = Api(base, "admin", passwords["admin"])
        procs.run("db-migrate", "db", "migrate", timeout=120)
        procs.start("api-server", "api-server", "--port", str(port), "--host", "127.0.0.1")
        procs.start("scheduler", "scheduler")
        procs.start("dag-processor", "dag-processor")
        procs.start("triggerer", "triggerer")
        wait_for("the API server to answer", lambda: api_ready(api), STARTUP_S, alive=procs.assert_running,
                 diagnostics=procs.tails)
        wait_for("subject_erasure to be parsed", lambda: api.request("GET", "/api/v2/dags/subject_erasure")[0] == 200,
                 STARTUP_S, alive=procs.assert_running, diagnostics=procs.tails)
        yield Cluster(procs, api, base, passwords, world, tmp)
    finally:
        procs.stop()
        assert procs.leftovers() == [], "Airflow processes survived the teardown"


@pytest.fixture
def browser(cluster, request):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1400,1000", "--disable-extensions", "--no-first-run"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(UI_S)
    shots = cluster.tmp / "screenshots"
    failures = request.session.testsfailed
    try:
        yield driver
    finally:
        # the test's own report is counted before its fixtures are torn down
        if request.session.testsfailed > failures:
            shots.mkdir(parents=True, exist_ok=True)
            name = request.node.name
            try:
                driver.switch_to.default_content()
                driver.save_screenshot(str(shots / f"{name}.png"))
                (shots / f"{name}.url.txt").write_text(driver.current_url)
                (shots / f"{name}.html").write_text(driver.page_source)
            except Exception:  # noqa: BLE001 - the browser may be gone already
                pass
            print(f"\n[console browser] screenshot of the failure kept in {shots}")
        driver.quit()


# --------------------------------------------------------------------------- helpers
def _wait(driver, condition, timeout: float = UI_S):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout).until(condition)


def _login(driver, base: str, user: str, password: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC

    driver.get(f"{base}/auth/login")
    _wait(driver, EC.presence_of_element_located((By.NAME, "username"))).send_keys(user)
    driver.find_element(By.NAME, "password").send_keys(password)
    driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    _wait(driver, lambda d: "/auth/login" not in d.current_url and d.get_cookie("_token"))


def _no_personal_values(where: str, text: str) -> None:
    found = [i for i, needle in enumerate(PERSONAL) if needle.casefold() in text.casefold()]
    assert found == [], f"{where}: demo identifier(s) #{found} appear on the page"


def _text(driver) -> str:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.TAG_NAME, "body").text


def _click_link(driver, text: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC

    _wait(driver, EC.element_to_be_clickable((By.LINK_TEXT, text))).click()


# --------------------------------------------------------------------------- the test
def test_when_a_dpo_uses_the_console_then_they_find_approve_and_certify_an_erasure(cluster, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as EC

    c, driver = cluster, browser
    t0 = time.monotonic()
    errors = c.api.ok("GET", "/api/v2/plugins/importErrors")
    assert errors["total_entries"] == 0, errors
    names = [p["name"] for p in c.api.ok("GET", "/api/v2/plugins?limit=100")["plugins"]]
    assert "lethe_console" in names, names
    c.api.ok("PATCH", "/api/v2/dags/subject_erasure", {"is_paused": False})
    status, run = c.api.trigger("subject_erasure", SUBJECT_CONF)
    assert status == 200, run
    run_id = run["dag_run_id"]
    wait_for_approval(c.api, c.procs, run_id, RUN_S)
    plan_id = c.api.xcom("subject_erasure", run_id, "plan", "plan_id")
    t_ready = time.monotonic()

    # sign in on Airflow's own login page, open the console from Airflow's navigation
    _login(driver, c.base, "dpo", c.passwords["dpo"])
    driver.get(f"{c.base}/")
    nav = _wait(driver, EC.element_to_be_clickable((By.XPATH, "//a[.//*[normalize-space()='Lethe'] or "
                                                              "normalize-space()='Lethe']|//button[normalize-space()='Lethe']")))
    href = nav.get_attribute("href")
    assert href and href.endswith("/lethe/requests"), href
    driver.get(href if href.startswith("http") else c.base + href)  # Airflow opens it in a new tab

    # the request list: the erasure request is there, open, with its due date and no personal value
    table = _wait(driver, EC.presence_of_element_located((By.ID, "requests")))
    assert "erasure" in table.text and "open" in table.text and "not recorded" in table.text
    _no_personal_values("requests", driver.page_source)

    # pending approvals -> the plan -> its per-store table
    _click_link(driver, "Pending approvals")
    _wait(driver, EC.presence_of_element_located((By.ID, "approvals")))
    row_text = driver.find_element(By.ID, "approvals").text
    assert plan_id in row_text
    task_link = driver.find_element(By.CSS_SELECTOR, "#approvals a.hitl").get_attribute("href")
    assert task_link.endswith(f"/tasks/approval/required_actions"), task_link
    _click_link(driver, plan_id)
    crm = _wait(driver, EC.presence_of_element_located((By.ID, "store-crm")))
    cells = [[td.text for td in tr.find_elements(By.TAG_NAME, "td")] for tr in crm.find_elements(By.CSS_SELECTOR, "tbody tr")]
    containers = {row[0]: row for row in cells}
    assert {"members", "notes", "payments"} <= set(containers), sorted(containers)
    assert containers["members"][1] == "delete" and containers["members"][3] == "whole record"
    assert driver.find_element(By.ID, "store-exports")
    _no_personal_values("plan", driver.page_source)

    # decide in Airflow's own Human-in-the-loop page (the plan page links the approval task)
    _wait(driver, EC.element_to_be_clickable((By.ID, "hitl-link"))).click()
    _wait(driver, lambda d: "/required_actions" in d.current_url)
    reason = _wait(driver, EC.element_to_be_clickable(
        (By.XPATH, "//label[contains(normalize-space(), 'Reason')]/following::textarea[1]|"
                   "//label[contains(normalize-space(), 'Reason')]/following::input[1]")))
    reason.click()
    reason.send_keys(REASON)
    reason.send_keys(Keys.TAB)
    _wait(driver, EC.element_to_be_clickable((By.XPATH, "//button[normalize-space()='Approve']"))).click()

    state = c.api.wait_for_run("subject_erasure", run_id, RUN_S, alive=c.procs.assert_running,
                               diagnostics=c.procs.tails)
    assert state == "success", c.procs.tails(30)
    t_done = time.monotonic()

    # the request's page: the decision (who, reason) and the certificate link
    request_id = c.api.xcom("subject_erasure", run_id, "plan", "request_id") or \
        c.api.xcom("subject_erasure", run_id, "plan")["request_id"]
    driver.get(f"{c.base}/lethe/requests/{request_id}")
    plans = _wait(driver, EC.presence_of_element_located((By.ID, "plans")))
    row = plans.find_elements(By.CSS_SELECTOR, "tbody tr")[0].text
    assert plan_id in row and "verified" in row and "dpo" in row, "the plan's row lacks its state or approver"
    # the reason the DPO typed reached the ledger: sealed, shredded with the request's notes once the erasure
    # completed, its keyed hash kept in the approval's audit event
    from pii.core.config import load_config
    from pii.ledger import Ledger

    ledger = Ledger(load_config(str(c.world.config_path)).state_url)
    approved = [e for e in ledger.audit_events(plan_id=plan_id) if e["event"] == "plan_approved"]
    assert len(approved) == 1 and approved[0]["actor"] == "dpo"
    assert ledger.reason_matches(approved[0]["details"]["reason_hash"], REASON)
    timeline = driver.find_element(By.ID, "timeline").text
    assert "plan_approved" in timeline and "plan_verified" in timeline
    _no_personal_values("request", driver.page_source)
    _click_link(driver, "certificate")
    cert = _wait(driver, EC.presence_of_element_located((By.ID, "certificate")))
    assert plan_id in cert.text
    _no_personal_values("certificate", driver.page_source)
    # the DPO's role may not download the package (no access package for an erasure anyway)
    assert "/package" not in driver.page_source
    print(f"\n[timing] cluster+run to approval {t_ready - t0:.1f} s, browser to decision and run end "
          f"{t_done - t_ready:.1f} s, total {time.monotonic() - t0:.1f} s")


def test_when_a_viewer_opens_the_console_then_it_is_refused(cluster, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC

    c, driver = cluster, browser
    _login(driver, c.base, "viewer", c.passwords["viewer"])
    driver.get(f"{c.base}/lethe/requests")
    _wait(driver, EC.presence_of_element_located((By.TAG_NAME, "h1")))
    assert driver.find_element(By.TAG_NAME, "h1").text == "Not allowed"
    assert "viewer" in _text(driver) and "LETHE_CONSOLE_ROLES" in _text(driver)
    assert "requests" not in [t.get_attribute("id") for t in driver.find_elements(By.TAG_NAME, "table")]


def test_when_nobody_or_a_wrong_role_asks_the_real_server_then_refused(cluster):
    """Without a browser: the API server's /lethe routes refuse no login (401; a browser is sent to the
    login page), a wrong role (403), and serve a console role (200)."""
    def get(path, token=None, accept="application/json"):
        headers = {"Accept": accept}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        req = urllib.request.Request(cluster.base + path, headers=headers)

        class NoRedirect(urllib.request.HTTPRedirectHandler):
            def redirect_request(self, *a, **k):
                return None

        opener = urllib.request.build_opener(NoRedirect)
        try:
            with opener.open(req, timeout=30) as resp:
                return resp.status, dict(resp.headers)
        except urllib.error.HTTPError as exc:
            return exc.code, dict(exc.headers)

    viewer = Api(cluster.base, "viewer", cluster.passwords["viewer"])
    viewer.login()
    dpo = Api(cluster.base, "dpo", cluster.passwords["dpo"])
    dpo.login()
    assert get("/lethe/requests")[0] == 401
    status, headers = get("/lethe/requests", accept="text/html")
    assert status == 303 and headers["location"].startswith("/auth/login")
    assert get("/lethe/requests", viewer.token)[0] == 403
    assert get("/lethe/approvals", viewer.token)[0] == 403
    assert get("/lethe/requests", dpo.token)[0] == 200

