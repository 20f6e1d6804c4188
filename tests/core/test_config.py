"""stores.yaml is checked against one schema (pii/core/config.py, jsonschema): a misspelt or unknown key is
named with the closest known one, a wrong shape names the key; what is valid still loads."""
from __future__ import annotations

from pathlib import Path

import pytest

from pii.core.config import STORE_KEYS, parse_config
from pii.core.errors import ConfigError

WHERE = Path("/etc/lethe/stores.yaml")
SQL = {"kind": "sql", "url": "sqlite:///crm.db"}


@pytest.mark.parametrize("data, message", [
    ({"stores": {"crm": {**SQL, "skip_tabels": ["audit"]}}},
     "store 'crm' (sql): unknown key 'skip_tabels' (did you mean 'skip_tables'?)"),
    ({"stores": {"exports": {"kind": "csv", "path": "x", "delimeter": ";"}}},
     "store 'exports' (csv): unknown key 'delimeter' (did you mean 'delimiter'?)"),
    ({"stores": {"drop": {"kind": "ftp", "host": "h", "pasword_env": "P"}}},
     "unknown key 'pasword_env' (did you mean 'password_env'?)"),
    ({"stores": {"crm": SQL}, "retension": []}, "unknown top-level key 'retension' (did you mean 'retention'?)"),
    ({"stores": {"crm": SQL}, "zzz": 1}, "unknown top-level key 'zzz'; known keys: "),
    ({"stores": {"crm": SQL}, "erasure": [1]}, "'erasure' must be a mapping"),
    ({"stores": {"crm": SQL}, "ledger": 5}, "'ledger' must be a string"),
    ({"stores": {}}, "'stores:' must name at least one store"),
    ({"stores": {"crm": {"kind": "nosql"}}}, "has kind 'nosql'; known kinds: sql, csv, ftp, gmail"),
    ({"stores": {"bad\nname": SQL}}, "store names must be non-empty strings of printable characters"),
])
def test_when_stores_yaml_has_a_wrong_key_then_the_error_names_it_and_the_closest_known_one(data, message):
    with pytest.raises(ConfigError) as err:
        parse_config(data, WHERE)
    assert message in str(err.value) and "\n" not in str(err.value)
    assert str(err.value).startswith(str(WHERE))


def test_when_every_documented_key_is_used_then_the_config_loads():
    stores = {}
    for kind, keys in STORE_KEYS.items():
        raw = {"kind": kind, **{k: None for k in keys}, "conn_id": "c", "metadata": {"purpose": "p"},
               "purpose": "p", "marketing": True, "sample_size": 10}
        raw.update({"url": "sqlite:///x.db", "path": "x", "host": "h", "user_id": "u@example.test"})
        stores[kind] = {k: v for k, v in raw.items() if k in keys or k in ("kind", "conn_id", "metadata", "purpose",
                                                                            "marketing", "sample_size")}
    for store in stores.values():
        for k in ("skip_tables", "schemas", "reference_tables", "personal_tables", "text_columns", "link_exclude",
                  "skip_files"):
            if k in store:
                store[k] = []
    config = parse_config({"stores": stores, "default_region": "GB", "ledger": "sqlite:///s.db", "detection": {},
                           "erasure": {"plan_ttl_hours": 24}, "retention": [], "child_purge": {},
                           "marketing_lists": {}, "suppression": {}, "unsubscribe": {}, "out_of_scope": []}, WHERE)
    assert sorted(config.stores) == sorted(STORE_KEYS)


def test_when_the_demo_and_readme_configs_load_then_the_schema_knows_their_keys(tmp_path):
    import re

    import yaml

    from pii.core.config import load_config
    from pii.demo.world import build_demo

    world = build_demo(tmp_path / "demo", remote=True)
    assert load_config(world.config_path).stores
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    block = re.search(r"## stores\.yaml\n.*?```yaml\n(.*?)```", readme, re.S).group(1)
    data = yaml.safe_load(block)
    data.pop("policy", None)  # names a file this test does not write
    parse_config(data, tmp_path / "stores.yaml")


def test_when_stores_set_their_size_limits_then_the_schema_accepts_them_and_the_connector_reads_them(tmp_path):
    from connectors import open_connector
    from connectors.documents import max_bytes

    config = parse_config({"stores": {"drop": {"kind": "ftp", "host": "h", "path": "/", "max_document_mb": 2},
                                      "box": {"kind": "gmail", "user_id": "me", "max_attachment_mb": 3}}},
                          tmp_path / "stores.yaml")
    assert max_bytes(config.stores["drop"]) == 2 * 1024 * 1024
    assert open_connector(config.stores["box"]).max_attachment_bytes == 3 * 1024 * 1024
