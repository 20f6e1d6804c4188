"""Shared fixtures. Real servers: PostgreSQL and MariaDB on this machine (skipped with a reason when
absent, but required under CI=true)."""
from __future__ import annotations

import os
import uuid

# --- Airflow: set up before anything imports airflow (NOTES.md, "Airflow 3.3 in tests"). A private
# AIRFLOW_HOME per session, so tests never touch a real Airflow; the DB is reset lazily, only by tests
# that use the `airflow_db` fixture (tests/airflow/test_dags.py), so other tests pay nothing.
import atexit
import shutil
import tempfile
from pathlib import Path

_AIRFLOW_HOME = tempfile.mkdtemp(prefix="lethe-airflow-")
atexit.register(shutil.rmtree, _AIRFLOW_HOME, True)
os.environ["AIRFLOW_HOME"] = _AIRFLOW_HOME
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(Path(__file__).resolve().parent.parent / "dags")
os.environ["AIRFLOW__CORE__UNIT_TEST_MODE"] = "True"
os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{_AIRFLOW_HOME}/airflow.db"
for _name in ("LETHE_CONFIG", "LETHE_ALLOW_CONFIG_OVERRIDE", "LETHE_APPROVERS", "LETHE_OUTPUT_DIR", "LETHE_WORK_DIR"):
    os.environ.pop(_name, None)  # the tests choose these themselves

os.environ.setdefault("TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS", "")

import pytest
import sqlalchemy as sa

PG_ADMIN_URL = os.environ.get("LETHE_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
MARIADB_ADMIN_URL = os.environ.get("LETHE_TEST_MARIADB_URL", "mysql+pymysql://root@127.0.0.1:3306/test")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _server_or_skip(admin_url: str, what: str):
    try:
        engine = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        return engine
    except Exception as exc:  # noqa: BLE001 - any failure means "no server here"
        reason = f"{what} not reachable at {sa.engine.make_url(admin_url).render_as_string(hide_password=True)} " \
                 f"({exc.__class__.__name__})"
        if IN_CI:
            pytest.fail(f"{reason}; under CI=true this test must run")
        pytest.skip(reason)


def _fresh_database(admin_url: str, what: str, create: str, drop: str):
    """Create an empty database named lethe_t_<random> on a real server, yield its URL, drop it."""
    admin = _server_or_skip(admin_url, what)
    name = f"lethe_t_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.execute(sa.text(create.format(name=name)))
    yield sa.engine.make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.execute(sa.text(drop.format(name=name)))
    admin.dispose()


@pytest.fixture
def postgres_url():
    """A fresh, empty PostgreSQL database; dropped afterwards."""
    yield from _fresh_database(PG_ADMIN_URL, "PostgreSQL", 'CREATE DATABASE "{name}"',
                               'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def mariadb_url():
    """A fresh, empty MariaDB database; dropped afterwards."""
    yield from _fresh_database(MARIADB_ADMIN_URL, "MariaDB",
                               "CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci",
                               "DROP DATABASE IF EXISTS `{name}`")


@pytest.fixture
def sqlite_url(tmp_path):
    return f"sqlite:///{tmp_path / 'store.db'}"


@pytest.fixture(params=["sqlite", "postgresql", "mariadb"])
def any_sql_url(request):
    """The same test on SQLite, PostgreSQL and MariaDB."""
    return request.getfixturevalue({"sqlite": "sqlite_url", "postgresql": "postgres_url",
                                    "mariadb": "mariadb_url"}[request.param])


@pytest.fixture(scope="session")
def airflow_db():
    """Airflow's metadata DB (SQLite under the session's AIRFLOW_HOME), reset once per session."""
    from airflow.utils import db

    db.resetdb()
    return _AIRFLOW_HOME
