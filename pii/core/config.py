"""stores.yaml: which stores Lethe connects to, and Lethe's own settings.

Secrets never live in the file: a store names an environment variable (`url_env`, `password_env`,
`credentials_env`) or, inside Airflow, a connection (`conn_id`). Relative paths and SQLite paths are
resolved against the folder that holds stores.yaml.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml

from pii.core.errors import ConfigError

STORE_KINDS = ("sql", "csv", "ftp", "gmail")
# The keys each part of stores.yaml may hold (README, "stores.yaml"). Anything else is refused, naming the
# key and the closest known one, so a misspelt `skip_tabels` is not silently ignored.
TOP_LEVEL_KEYS = ("stores", "ledger", "ledger_env", "default_region", "detection", "policy", "erasure", "retention",
                  "child_purge", "marketing_lists", "suppression", "unsubscribe", "out_of_scope", "requests",
                  "controller", "accounts")
_FILE_KEYS = ("path", "pattern", "skip_files", "delimiter", "encoding", "header", "text_columns", "max_document_mb")
STORE_KEYS = {
    "sql": ("url", "url_env", "schemas", "skip_tables", "reference_tables", "personal_tables", "text_columns",
            "link_exclude", "search", "search_workers", "table_group"),
    "csv": _FILE_KEYS,
    "ftp": _FILE_KEYS + ("host", "port", "user", "password_env", "tls", "tls_verify", "tls_ca_file", "passive",
                         "timeout", "temp_dir"),
    "gmail": ("user_id", "credentials", "credentials_env", "api_endpoint", "erase", "include_spam_trash",
              "max_attachment_mb"),
}
COMMON_STORE_KEYS = ("kind", "conn_id", "metadata", "marketing", "sample_size")
METADATA_KEYS = ("purpose", "legal_basis", "source", "recipients", "retention", "description")
# `metadata: {retained: {CONTAINER: {...}}}`: the store's own declaration that a table/file (a glob, named as
# policy rules name containers) is kept for a period under a legal basis; the default erasure plan retains it
# (pii.core.policy.DeclaredRetention). Only these keys; period and legal_basis are required.
RETAINED_KEYS = ("period", "legal_basis", "reason")
# `controller: {name, email, ..., dpo: {...}, supervisory_authority: {...}}`: each a contact with these keys
CONTACT_KEYS = ("name", "email", "phone", "address", "url")
# A period as retention rules write it (pii.core.retention.Period reads it with this pattern): a positive
# count and a unit, e.g. 90d, 6w, 3m, 2y, "6 years".
PERIOD_PATTERN = r"^\s*(\d*[1-9]\d*)\s*(d|w|m|y|days?|weeks?|months?|years?)\s*$"
DEFAULT_STATE_FILE = "lethe_state.db"


@dataclass
class StoreConfig:
    """One store's settings. `options` holds the kind-specific keys exactly as written."""

    name: str
    kind: str
    options: dict[str, Any]
    base_dir: Path
    metadata: dict[str, Any] = field(default_factory=dict)

    def get(self, key: str, default=None):
        return self.options.get(key, default)

    def secret(self, key: str) -> str | None:
        """Value of `<key>_env` from the environment (or `<key>` itself for non-secret keys)."""
        env_name = self.options.get(f"{key}_env")
        if env_name:
            value = os.environ.get(env_name)
            if value is None:
                raise ConfigError(
                    f"store '{self.name}': environment variable {env_name} (named by {key}_env) is not set"
                )
            return value
        return self.options.get(key)

    def resolve_path(self, value: str | os.PathLike) -> Path:
        p = Path(os.path.expanduser(str(value)))
        return p if p.is_absolute() else (self.base_dir / p)

    def string_list(self, key: str) -> list[str]:
        value = self.options.get(key) or []
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"store '{self.name}': '{key}' must be a list of names")
        return value


@dataclass
class Config:
    path: Path | None
    stores: dict[str, StoreConfig]
    state_url: str
    default_region: str = "GB"
    detection: dict[str, Any] = field(default_factory=dict)
    policy: str | None = None
    raw: dict[str, Any] = field(default_factory=dict)

    @property
    def base_dir(self) -> Path:
        return self.path.parent if self.path else Path.cwd()

    def select(self, names: list[str] | None) -> list[StoreConfig]:
        if not names:
            return list(self.stores.values())
        unknown = [n for n in names if n not in self.stores]
        if unknown:
            raise ConfigError(f"unknown store(s) {', '.join(unknown)}; configured: {', '.join(self.stores)}")
        return [self.stores[n] for n in names]


def resolve_sqlite_url(url: str, base_dir: Path) -> str:
    """Make a relative SQLite path in a SQLAlchemy URL relative to `base_dir` (not the process's cwd)."""
    for prefix in ("sqlite+pysqlite:///", "sqlite:///"):
        if url.startswith(prefix):
            rest = url[len(prefix):]
            if rest and not rest.startswith("/") and not rest.startswith(":memory:"):
                path, sep, query = rest.partition("?")
                return prefix + str((base_dir / path).resolve()) + sep + query
    return url


def read_yaml(p: Path, what: str = "config file"):
    """The YAML document in `p`; ConfigError naming the file (and the line) when it cannot be read."""
    if not p.is_file():
        raise ConfigError(f"{what} {p} does not exist")
    try:
        return yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{what} {p} is not valid YAML{where}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{what} {p} cannot be read: {exc.__class__.__name__}") from None


def load_config(path: str | os.PathLike) -> Config:
    p = Path(path)
    return parse_config(read_yaml(p, "config file"), p)


def parse_config(data: Any, path: Path | None = None) -> Config:
    where = str(path) if path else "config"
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: the top level must be a mapping with a 'stores:' key")
    _check_keys(data, where)
    stores_raw = data.get("stores")
    if not isinstance(stores_raw, Mapping) or not stores_raw:
        raise ConfigError(f"{where}: 'stores:' must name at least one store")
    base_dir = (path.parent if path else Path.cwd()).resolve()
    stores: dict[str, StoreConfig] = {}
    for name, raw in stores_raw.items():
        if not isinstance(name, str) or not name.strip() or not name.isprintable():
            raise ConfigError(f"{where}: store names must be non-empty strings of printable characters "
                              f"(no line breaks or control characters)")
        if not isinstance(raw, Mapping):
            raise ConfigError(f"{where}: store '{name}' must be a mapping")
        kind = raw.get("kind")
        if kind not in STORE_KINDS:
            raise ConfigError(
                f"{where}: store '{name}' has kind {kind!r}; known kinds: {', '.join(STORE_KINDS)}"
            )
        options = dict(raw)
        options.pop("kind")
        metadata = options.pop("metadata", None) or {}
        for key in METADATA_KEYS:  # metadata keys may also sit directly on the store
            if key in options:
                metadata.setdefault(key, options.pop(key))
        if not isinstance(metadata, Mapping):
            raise ConfigError(f"{where}: store '{name}': 'metadata' must be a mapping")
        store = StoreConfig(name=name, kind=kind, options=options, base_dir=base_dir, metadata=dict(metadata))
        _validate_store(store, where)
        stores[name] = store
    ledger = data.get("ledger")
    if data.get("ledger_env"):  # a ledger URL holding a password comes from the environment
        ledger = os.environ.get(str(data["ledger_env"]))
        if not ledger:
            raise ConfigError(f"{where}: environment variable {data['ledger_env']} (named by ledger_env) is not set")
    if ledger is not None and not isinstance(ledger, str):
        raise ConfigError(f"{where}: 'ledger' must be a SQLAlchemy URL string")
    state_url = resolve_sqlite_url(ledger, base_dir) if ledger else f"sqlite:///{base_dir / DEFAULT_STATE_FILE}"
    region = str(data.get("default_region", "GB")).upper()
    detection = data.get("detection") or {}
    if not isinstance(detection, Mapping):
        raise ConfigError(f"{where}: 'detection' must be a mapping")
    return Config(
        path=path.resolve() if path else None,
        stores=stores,
        state_url=state_url,
        default_region=region,
        detection=dict(detection),
        policy=data.get("policy"),
        raw=dict(data),
    )


_MAPPING = {"type": "object"}
_TEXT = {"type": "string", "pattern": r"\S"}  # a non-empty text
CONFIG_SCHEMA = {  # JSON Schema (draft 2020-12) of stores.yaml's shape; values are checked where they are used
    "type": "object",
    "properties": {**{k: {} for k in TOP_LEVEL_KEYS},
                   "stores": {"type": "object", "minProperties": 1, "additionalProperties": {"$ref": "#/$defs/store"}},
                   "ledger": {"type": "string"}, "ledger_env": {"type": "string"},
                   "default_region": {"type": "string"}, "detection": _MAPPING, "erasure": _MAPPING,
                   "child_purge": _MAPPING, "marketing_lists": _MAPPING, "suppression": _MAPPING,
                   "unsubscribe": _MAPPING, "out_of_scope": {"type": "array"},
                   "requests": {"type": "object", "additionalProperties": False,
                                "properties": {"require_identity_verification": {"type": "boolean"}}},
                   "controller": {"$ref": "#/$defs/controller"},
                   "accounts": {"type": "array", "items": {"$ref": "#/$defs/account_rule"}}},
    "required": ["stores"],
    "additionalProperties": False,
    "$defs": {
        # who answers for the data (named in access answers: how to exercise each right, whom to contact)
        "contact": {"type": "object", "additionalProperties": False,
                    "properties": {k: _TEXT for k in CONTACT_KEYS}},
        "controller": {"type": "object", "additionalProperties": False,
                       "properties": {**{k: _TEXT for k in CONTACT_KEYS},
                                      "dpo": {"$ref": "#/$defs/contact"},
                                      "supervisory_authority": {"$ref": "#/$defs/contact"}}},
        # inactivity rules for stores holding one folder per account (pii.engine.accounts)
        "account_rule": {"type": "object", "additionalProperties": False,
                         "required": ["name", "store", "inactive_after"],
                         "properties": {"name": {"type": "string", "pattern": r"^[A-Za-z0-9_.\-]{1,80}$"},
                                        "store": _TEXT,
                                        "inactive_after": {"type": "string", "pattern": "(?i)" + PERIOD_PATTERN},
                                        "grace": {"type": "string", "pattern": "(?i)" + PERIOD_PATTERN},
                                        "close_within": {"type": "string", "pattern": "(?i)" + PERIOD_PATTERN},
                                        "legal_basis": _TEXT, "category": _TEXT}},
        # a store's keys by its kind (an unknown kind or a missing one is named by parse_config)
        "store": {"type": "object", "allOf": [
            {"if": {"properties": {"kind": {"const": kind}}, "required": ["kind"]},
             "then": {"properties": {**{k: {} for k in COMMON_STORE_KEYS + METADATA_KEYS + keys},
                                     "metadata": {"$ref": "#/$defs/metadata"}},
                      "additionalProperties": False}}
            for kind, keys in STORE_KEYS.items()]},
        # the store's metadata is free (shown in access answers), except `retained:`, which Lethe acts on
        "metadata": {"type": ["object", "null"], "properties": {"retained": {"$ref": "#/$defs/retained"}}},
        "retained": {"type": "object", "additionalProperties": {"$ref": "#/$defs/declaration"}},
        "declaration": {"type": "object", "required": ["period", "legal_basis"], "additionalProperties": False,
                        "properties": {"period": {"type": "string", "pattern": "(?i)" + PERIOD_PATTERN},
                                       "legal_basis": _TEXT, "reason": _TEXT}},
    },
}


def _shown(key) -> str:
    """A key as a message may show it: on one line, non-printable characters escaped, at most 60 long."""
    return "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in str(key))[:60]


def _suggest(key: str, known) -> str:
    import difflib

    close = difflib.get_close_matches(str(key), list(known), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else f"; known keys: {', '.join(sorted(known))}"


def _check_keys(data: Mapping, where: str) -> None:
    """stores.yaml against CONFIG_SCHEMA (jsonschema): an unknown or misspelt key is named with the closest
    known one; a wrong shape names the key and what it must be. Values are not echoed (they may be secret)."""
    from jsonschema import Draft202012Validator

    for name in data.get("stores") or {} if isinstance(data.get("stores"), Mapping) else ():
        if not isinstance(name, str) or not name.strip() or not name.isprintable():
            raise ConfigError(f"{where}: store names must be non-empty strings of printable characters "
                              f"(no line breaks or control characters)")
    errors = Draft202012Validator(CONFIG_SCHEMA).iter_errors(dict(data))
    # the top level first, then by key; at one place a misspelt key (with its suggestion) before a missing one
    for error in sorted(errors, key=lambda e: (list(map(str, e.path)), e.validator != "additionalProperties")):
        path = list(error.path)
        declared = _retained_error(path, error)
        if declared:
            raise ConfigError(f"{where}: {declared}")
        if error.validator == "additionalProperties":
            known = list(error.schema["properties"])
            bad = sorted(str(k) for k in error.instance if k not in known)[0]
            if not path:
                place = "unknown top-level key"
            elif path[0] == "stores":
                place = f"store '{path[-1]}' ({error.instance['kind']}): unknown key"
            else:
                place = f"'{_shown('.'.join(map(str, path)))}': unknown key"
            raise ConfigError(f"{where}: {place} '{_shown(bad)}'{_suggest(bad, known)}")
        if error.validator == "type":
            kinds = error.validator_value if isinstance(error.validator_value, list) else [error.validator_value]
            what = " or ".join({"object": "a mapping", "array": "a list", "string": "a string"}.get(k, k)
                               for k in kinds if k != "null")
            raise ConfigError(f"{where}: '{_shown('.'.join(map(str, path)))}' must be {what}")
        if path and path[0] == "accounts":
            here = "'" + _shown(".".join(map(str, path))) + "'"
            if error.validator == "required":
                missing = [k for k in error.validator_value if k not in error.instance]
                raise ConfigError(f"{where}: {here} needs {', '.join(repr(k) for k in missing)}")
            if error.validator == "pattern" and path[-1] == "name":
                raise ConfigError(f"{where}: {here} must be letters, digits, _ . - (at most 80)")
            if error.validator == "pattern":
                raise ConfigError(f"{where}: {here} must be a positive count with a unit, e.g. 30d, 6w, 3m, 2y")
            raise ConfigError(f"{where}: {here} is not valid ({error.validator})")
        if error.validator in ("minProperties", "required"):
            raise ConfigError(f"{where}: 'stores:' must name at least one store")
        if error.validator == "pattern" and path and path[0] == "controller":
            raise ConfigError(f"{where}: '{_shown('.'.join(map(str, path)))}' must be a non-empty text")


def _retained_error(path: list, error) -> str | None:
    """The one-line message for a wrong `metadata: {retained: ...}` declaration (None for other places):
    names the store, the container and the key, never a value."""
    if len(path) < 4 or path[0] != "stores" or path[2:4] != ["metadata", "retained"]:
        return None
    here = f"store '{_shown(path[1])}': metadata.retained"
    if len(path) == 4:
        return f"{here} must map tables/files to {{period, legal_basis, reason}}"
    here += f" '{_shown(path[4])}'"
    if len(path) == 5:
        if error.validator == "additionalProperties":
            bad = sorted(str(k) for k in error.instance if k not in RETAINED_KEYS)[0]
            return f"{here}: unknown key '{_shown(bad)}'{_suggest(bad, RETAINED_KEYS)}"
        if error.validator == "required":
            missing = [k for k in error.validator_value if k not in error.instance]
            why = {"period": "how long it is kept, e.g. 6y", "legal_basis": "why it must be kept"}
            return (f"{here} needs {' and '.join(repr(k) for k in missing)} "
                    f"({'; '.join(why[k] for k in missing)})")
        return f"{here} must be a mapping with period, legal_basis and (optionally) reason"
    key = str(path[5])
    if key == "period":
        return f"{here}: 'period' must be a positive count with a unit, e.g. 90d, 6w, 3m, 6y or '6 years'"
    return f"{here}: '{_shown(key)}' must be a non-empty text"


def _validate_store(store: StoreConfig, where: str) -> None:
    o = store.options
    name = store.name
    if store.kind == "sql":
        if not (o.get("url") or o.get("url_env") or o.get("conn_id")):
            raise ConfigError(f"{where}: store '{name}' (sql) needs 'url', 'url_env' or 'conn_id'")
        for key in ("schemas", "skip_tables", "reference_tables", "personal_tables", "text_columns",
                    "link_exclude"):
            store.string_list(key)
    elif store.kind == "csv":
        if not o.get("path"):
            raise ConfigError(f"{where}: store '{name}' (csv) needs 'path', the folder of CSV exports")
    elif store.kind == "ftp":
        if not (o.get("host") or o.get("conn_id")):
            raise ConfigError(f"{where}: store '{name}' (ftp) needs 'host' or 'conn_id'")
        if "password" in o:
            raise ConfigError(
                f"{where}: store '{name}': put the password in the environment and name it with 'password_env'"
            )
    elif store.kind == "gmail":
        if not (o.get("user_id") or o.get("conn_id")):
            raise ConfigError(f"{where}: store '{name}' (gmail) needs 'user_id'")
