"""Airflow connections behind `conn_id:` in stores.yaml.

A store may name an Airflow connection instead of a URL, host or credentials::

    stores:
      crm:          {kind: sql, conn_id: crm_db}        # postgres / mysql / sqlite connection
      partner_drop: {kind: ftp, conn_id: partner_ftp, path: /incoming}

`LetheStoreHook(store).get_conn()` looks the connection up (lazily, only when a task needs the store)
and returns a copy of the store's settings with the connection's parts filled in:

- sql: a SQLAlchemy URL built from host, port, login, password and schema (the database), with the
  drivers Lethe installs: postgres -> ``postgresql+psycopg``, mysql/mariadb -> ``mysql+pymysql``,
  sqlite -> ``sqlite:///<host>``. Extras are read by named key only (`SQL_EXTRAS`); nothing else in
  the extras reaches the driver.
- ftp: host, port and login become ``host``/``port``/``user``; the password is handed to the connector
  through an environment variable set in this process only (``password_env``), never written anywhere.
  Connection type ``ftps`` (or extra ``tls: true``) means explicit FTPS. Extras by named key:
  `FTP_EXTRAS` (connectors/ftp.py's options).
- gmail: login becomes ``user_id``; the credentials JSON (extra ``keyfile_dict`` or ``credentials``, or
  the password field) goes to the connector through a process-local variable (``credentials_env``);
  extra ``api_endpoint`` for a Gmail-compatible test endpoint.
- csv stores have nothing to resolve (a folder path).

Settings written in stores.yaml win over the connection's, except the secret itself.
"""
from __future__ import annotations

import dataclasses
import os
import re
from typing import Any

from airflow.sdk import BaseHook

from pii.core.config import Config, StoreConfig
from pii.core.errors import ConfigError

# Named extras that may reach a SQL driver, per connection type (libpq / PyMySQL query parameters).
SQL_EXTRAS = {
    "postgres": ("sslmode", "sslrootcert", "sslcert", "sslkey", "application_name", "connect_timeout",
                 "options", "target_session_attrs"),
    "mysql": ("charset", "connect_timeout"),
}
SQL_DRIVERS = {"postgres": "postgresql+psycopg", "postgresql": "postgresql+psycopg",
               "mysql": "mysql+pymysql", "mariadb": "mysql+pymysql"}
# Named extras that become FTP store options (connectors/ftp.py); flags may be JSON booleans or "true"/"false".
FTP_FLAGS = ("tls", "tls_verify", "passive")
FTP_EXTRAS = (*FTP_FLAGS, "timeout", "tls_ca_file")
GMAIL_CREDENTIAL_EXTRAS = ("keyfile_dict", "credentials")
SECRET_ENV_PREFIX = "_LETHE_CONN_SECRET_"


class LetheStoreHook(BaseHook):
    """Resolves the Airflow connection a Lethe store names with `conn_id` into the store's settings."""

    conn_name_attr = "conn_id"
    default_conn_name = "lethe_store"
    conn_type = "lethe_store"
    hook_name = "Lethe store"

    def __init__(self, store: StoreConfig, **kwargs):
        super().__init__(**kwargs)
        self.store = store

    def get_conn(self) -> StoreConfig:
        store = self.store
        conn_id = store.get("conn_id")
        if not conn_id:
            return store
        conn = self._connection(conn_id)
        resolver = _RESOLVERS.get(store.kind)
        if resolver is None:
            raise ConfigError(f"store '{store.name}': conn_id is not supported for {store.kind} stores")
        options = {k: v for k, v in store.options.items() if k != "conn_id"}
        options.update(resolver(store, conn, options))
        return dataclasses.replace(store, options=options)

    def _connection(self, conn_id: str):
        from airflow.sdk.exceptions import AirflowNotFoundException

        try:
            return self.get_connection(conn_id)
        except AirflowNotFoundException:
            raise ConfigError(f"store '{self.store.name}': Airflow connection '{conn_id}' does not exist") from None


def resolve_store(store: StoreConfig) -> StoreConfig:
    return LetheStoreHook(store).get_conn()


def resolve_config(config: Config, names: list[str] | None = None) -> Config:
    """A copy of `config` whose stores (all, or `names`) have their connections resolved."""
    wanted = set(names) if names is not None else set(config.stores)
    stores = {name: (resolve_store(s) if name in wanted else s) for name, s in config.stores.items()}
    return dataclasses.replace(config, stores=stores)


# --------------------------------------------------------------------------- per kind
def _extra(conn) -> dict[str, Any]:
    try:
        extra = conn.extra_dejson
    except Exception:  # noqa: BLE001 - unparsable extras: behave as if there were none
        return {}
    return extra if isinstance(extra, dict) else {}


def sql_url(store_name: str, conn) -> str:
    """The SQLAlchemy URL for an Airflow connection (see the module docstring)."""
    from sqlalchemy.engine import URL

    ctype = (conn.conn_type or "").lower()
    if ctype == "sqlite":
        path = conn.host or conn.schema
        if not path:
            raise ConfigError(f"store '{store_name}': the sqlite connection names no file (host)")
        return f"sqlite:///{path}"
    driver = SQL_DRIVERS.get(ctype)
    if driver is None:
        raise ConfigError(f"store '{store_name}': connection type {ctype or '(none)'!r} is not a SQL database "
                          f"Lethe connects to; use postgres, mysql or sqlite")
    family = "postgres" if driver.startswith("postgresql") else "mysql"
    extra = _extra(conn)
    query = {k: str(extra[k]) for k in SQL_EXTRAS[family] if extra.get(k) not in (None, "")}
    url = URL.create(driver, username=conn.login or None, password=conn.password or None,
                     host=conn.host or None, port=conn.port or None, database=conn.schema or None, query=query)
    return url.render_as_string(hide_password=False)


def _resolve_sql(store: StoreConfig, conn, options: dict) -> dict:
    if store.get("url") or store.get("url_env"):
        raise ConfigError(f"store '{store.name}': give either conn_id or url/url_env, not both")
    return {"url": sql_url(store.name, conn)}


def _secret_env(store: StoreConfig, what: str) -> str:
    """Name of a process-local environment variable for one store's secret."""
    return SECRET_ENV_PREFIX + re.sub(r"[^A-Za-z0-9]", "_", store.name).upper() + "_" + what.upper()


def _resolve_ftp(store: StoreConfig, conn, options: dict) -> dict:
    out: dict[str, Any] = {}
    if conn.host and not options.get("host"):
        out["host"] = conn.host
    if conn.port and not options.get("port"):
        out["port"] = int(conn.port)
    if conn.login and not options.get("user"):
        out["user"] = conn.login
    if conn.password:
        name = _secret_env(store, "password")
        os.environ[name] = conn.password  # this task process only; the connector reads password_env
        out["password_env"] = name
    extra = _extra(conn)
    for key in FTP_EXTRAS:
        if key in extra and key not in options:
            value = extra[key]
            if key in FTP_FLAGS and isinstance(value, str) and value.strip().lower() in ("true", "false"):
                value = value.strip().lower() == "true"
            out[key] = value
    if (conn.conn_type or "").lower() == "ftps" and "tls" not in options:
        out["tls"] = True
    if not (options.get("host") or out.get("host")):
        raise ConfigError(f"store '{store.name}': the FTP connection names no host")
    return out


def _resolve_gmail(store: StoreConfig, conn, options: dict) -> dict:
    import json

    out: dict[str, Any] = {}
    if conn.login and not options.get("user_id"):
        out["user_id"] = conn.login
    extra = _extra(conn)
    credentials = next((extra[k] for k in GMAIL_CREDENTIAL_EXTRAS if extra.get(k)), None) or conn.password
    if credentials and not options.get("credentials_env"):
        name = _secret_env(store, "credentials")
        os.environ[name] = credentials if isinstance(credentials, str) else json.dumps(credentials)
        out["credentials_env"] = name
    if extra.get("api_endpoint") and not options.get("api_endpoint"):
        out["api_endpoint"] = str(extra["api_endpoint"])
    if not (options.get("user_id") or out.get("user_id")):
        raise ConfigError(f"store '{store.name}': the Gmail connection names no mailbox (login)")
    return out


def _resolve_csv(store: StoreConfig, conn, options: dict) -> dict:
    raise ConfigError(f"store '{store.name}': csv stores are folders; give 'path' instead of conn_id")


_RESOLVERS = {"sql": _resolve_sql, "ftp": _resolve_ftp, "gmail": _resolve_gmail, "csv": _resolve_csv}
