"""The data map and records of processing (pii.reports.datamap): rows from the inventory, the retention schedule
and the stores' metadata; the "no retention rule" flag; CSV/JSON exports that parse back; a self-contained
HTML page that escapes every name; and the `lethe inventory` options that write them."""
from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest
import yaml

from pii.core.config import load_config
from pii.reports.datamap import (
    NO_RULE, NOT_SWEPT, data_map, export_inventory, export_ropa, records_of_processing, reports_dir,
    write_data_map_html, write_reports,
)
from pii.core.errors import ConfigError
from pii.core.inventory import ColumnProfile
from pii.state.inventory import Inventory
from pii.core.retention import load_schedule
from pii.engine.sweep import sweep_store

EVIL = '<script>alert("x")</script>&'
RETENTION = [
    {"name": "customers-6y", "store": "crm", "match": ["customers"], "date": "created_at", "period": "6y",
     "category": "Customer records", "legal_basis": "Contract (Art. 6(1)(b))"},
    {"name": "orders-tax", "store": "crm", "match": ["orders", "order_*"], "date": "ordered_at", "period": "7y",
     "category": "Orders and invoices", "action": "anonymise", "anonymise": {"email": "null"}},
    {"name": "orders-marketing", "store": "crm", "match": ["orders"], "date": "ordered_at", "period": "2y",
     "category": "Marketing preferences", "where": {"consent": "withdrawn"}},
    {"name": "exports-90d", "store": "exports", "match": ["*.csv"], "date": "file_time", "period": "90d",
     "category": "Exports"},
]
STORES = {
    "crm": {"kind": "sql", "url": "sqlite:///crm.db",
            "metadata": {"purpose": "Customer service", "legal_basis": "Contract", "recipients": "Courier Ltd",
                         "retention": "Six years"}},
    "exports": {"kind": "csv", "path": "exports", "metadata": {"purpose": "Marketing lists",
                                                               "description": EVIL}},
    "drop": {"kind": "csv", "path": "drop"},  # never swept
}
P = ColumnProfile


@pytest.fixture
def world(tmp_path):
    """A config (three stores, a retention schedule) and an inventory filled as sweeps would fill it."""
    (tmp_path / "exports").mkdir()
    (tmp_path / "drop").mkdir()
    path = tmp_path / "stores.yaml"
    path.write_text(yaml.safe_dump({"ledger": "sqlite:///state.db", "retention": RETENTION, "stores": STORES}))
    config = load_config(path)
    inv = Inventory(config.state_url)
    inv.put("crm", "customers", "s", {"email": P("email", ["EMAIL_ADDRESS"], 0.9, 30), "id": P("other", [], 1.0, 30),
                                      "notes": P("free_text", ["LOCATION", "PERSON"], 0.6, 30)})
    inv.put("crm", "orders", "s", {"order_id": P("other", [], 1.0, 30), "phone": P("phone", ["PHONE_NUMBER"], 0.9, 30)})
    inv.put("crm", "order_lines", "s", {"sku": P("other", [], 1.0, 30), "qty": P("other", [], 1.0, 30)})
    inv.put("crm", "leads", "s", {"full_name": P("name", ["PERSON"], 0.8, 25)})  # no rule covers it
    inv.put("exports", f"{EVIL}.csv", "s", {EVIL: P("email", ["EMAIL_ADDRESS"], 1.0, 50)})
    inv.put("gone_store", "t", "s", {"email": P("email", ["EMAIL_ADDRESS"], 1.0, 5)})  # no longer configured
    return config


def by_container(rows) -> dict[tuple[str, str], dict]:
    return {(r["store"], r["container"]): r for r in rows}


# --------------------------------------------------------------------------- rows
def test_when_data_map_is_built_then_it_has_one_row_per_configured_column_with_rules(world):
    rows = data_map(world)
    assert len(rows) == 3 + 2 + 2 + 1 + 1  # the unconfigured store's rows are left out
    assert [r["store"] for r in rows] == ["crm"] * 8 + ["exports"]  # config order
    email = next(r for r in rows if r["container"] == "customers" and r["column"] == "email")
    assert email == {"store": "crm", "store_kind": "sql", "container": "customers", "column": "email",
                     "kind": "email", "entities": ["EMAIL_ADDRESS"], "confidence": 0.9, "sample_size": 30,
                     "updated_at": email["updated_at"], "personal": True, "retention_rules": ["customers-6y"]}
    assert next(r for r in rows if r["column"] == "order_id")["retention_rules"] == ["orders-tax", "orders-marketing"]
    assert next(r for r in rows if r["column"] == "sku")["personal"] is False
    assert [r["store"] for r in data_map(world, "exports")] == ["exports"]


@pytest.mark.parametrize("store, container, rules, categories, flag", [
    ("crm", "customers", ["customers-6y"], ["Customer records"], ""),
    ("crm", "orders", ["orders-tax", "orders-marketing"], ["Marketing preferences", "Orders and invoices"], ""),
    ("crm", "leads", [], ["Names"], NO_RULE),
    ("exports", f"{EVIL}.csv", ["exports-90d"], ["Exports"], ""),
    ("drop", "", [], [], NOT_SWEPT),
])
def test_when_ropa_is_drawn_then_rows_match_the_retention_schedule(world, store, container, rules, categories, flag):
    ropa = by_container(records_of_processing(world))
    row = ropa[(store, container)]
    assert row["retention_rules"] == rules and row["data_categories"] == categories and row["flag"] == flag
    if container:
        schedule = load_schedule(world)
        covering = schedule.for_container(store, container)
        assert row["retention_rules"] == [r.name for r in covering]
        assert row["retention_periods"] == [str(r.period) for r in covering]
        assert row["retention_actions"] == [r.action for r in covering]


def test_when_no_rule_covers_personal_data_then_categories_come_from_entities_and_metadata_fills_purpose(world):
    leads = by_container(records_of_processing(world))[("crm", "leads")]
    assert leads["flag"] == NO_RULE and leads["entities"] == ["PERSON"]
    assert (leads["purpose"], leads["legal_basis"], leads["recipients"], leads["retention_stated"]) == (
        "Customer service", "Contract", "Courier Ltd", "Six years")
    assert leads["personal_columns"] == ["full_name"]


def test_when_a_container_holds_no_personal_data_then_it_is_not_a_record_of_processing(world):
    containers = {(r["store"], r["container"]) for r in records_of_processing(world)}
    assert ("crm", "order_lines") not in containers
    assert ("gone_store", "t") not in containers


def test_when_a_store_has_no_legal_basis_then_the_rules_basis_is_used(world, tmp_path):
    raw = yaml.safe_load(world.path.read_text())
    raw["stores"]["crm"]["metadata"].pop("legal_basis")
    world.path.write_text(yaml.safe_dump(raw))
    ropa = by_container(records_of_processing(load_config(world.path)))
    assert ropa[("crm", "customers")]["legal_basis"] == "Contract (Art. 6(1)(b))"
    assert ropa[("crm", "leads")]["legal_basis"] == ""


# --------------------------------------------------------------------------- exports
def test_when_exports_are_written_then_csv_and_json_parse_back(world, tmp_path):
    rows = data_map(world)
    ropa = records_of_processing(world)
    export_inventory(world, tmp_path / "inv.csv")
    export_inventory(world, tmp_path / "inv.json")
    export_ropa(world, tmp_path / "ropa.csv")
    export_ropa(world, tmp_path / "ropa.json")
    inv_json = json.loads((tmp_path / "inv.json").read_text())
    assert inv_json["columns"] == rows and inv_json["generated_at"]
    with open(tmp_path / "inv.csv", newline="", encoding="utf-8") as fh:
        inv_csv = list(csv.DictReader(fh))
    assert [(r["store"], r["container"], r["column"], r["kind"]) for r in inv_csv] == [
        (r["store"], r["container"], r["column"], r["kind"]) for r in rows]
    assert [r["entities"].split("; ") if r["entities"] else [] for r in inv_csv] == [r["entities"] for r in rows]
    assert [float(r["confidence"]) for r in inv_csv] == [r["confidence"] for r in rows]
    assert {r["personal"] for r in inv_csv} == {"true", "false"}
    assert json.loads((tmp_path / "ropa.json").read_text())["records"] == ropa
    with open(tmp_path / "ropa.csv", newline="", encoding="utf-8") as fh:
        ropa_csv = list(csv.DictReader(fh))
    assert [(r["store"], r["container"], r["flag"]) for r in ropa_csv] == [
        (r["store"], r["container"], r["flag"]) for r in ropa]
    assert ropa_csv[[r["container"] for r in ropa_csv].index("orders")]["retention_rules"] == \
        "orders-tax; orders-marketing"


def test_when_export_suffix_is_neither_csv_nor_json_then_config_error(world, tmp_path):
    with pytest.raises(ConfigError, match=r"\.csv or \.json"):
        export_inventory(world, tmp_path / "inv.xlsx")
    assert not (tmp_path / "inv.xlsx").exists()


# --------------------------------------------------------------------------- HTML
def test_when_html_is_written_then_every_name_is_escaped_and_nothing_external_is_loaded(world, tmp_path):
    page = write_data_map_html(world, tmp_path / "map.html").read_text(encoding="utf-8")
    assert "<script" not in page and EVIL not in page
    assert html_escaped(EVIL) in page  # the file name, the column name and the store description
    assert page.count(html_escaped(EVIL)) >= 3
    assert not re.search(r"(?i)\b(src|href)\s*=\s*[\"']?(https?:|//)", page)
    assert not re.search(r"(?i)<(link|img|iframe|object|embed)\b", page) and "@import" not in page
    assert "default-src 'none'" in page  # a content security policy that forbids any load


def html_escaped(text: str) -> str:
    import html

    return html.escape(text, quote=True)


def test_when_a_container_has_no_retention_rule_then_the_html_flags_it(world, tmp_path):
    page = write_data_map_html(world, tmp_path / "map.html").read_text(encoding="utf-8")
    leads_row = next(line for line in page.splitlines() if ">leads</a>" in line)
    assert "FLAG: no retention rule" in leads_row
    customers_row = next(line for line in page.splitlines() if ">customers</a>" in line)
    assert "FLAG" not in customers_row and "covered" in customers_row
    assert 'id="' in page and "Not swept yet" in page  # the drop store
    heading = next(line for line in page.splitlines() if line.startswith("<h3") and ">leads" in line)
    assert "FLAG: no retention rule" in heading


def test_when_reports_are_written_then_the_folder_holds_all_five_files(world, tmp_path):
    paths = write_reports(world, tmp_path / "reports")
    assert sorted(Path(p).name for p in paths.values()) == ["data_map.html", "inventory.csv", "inventory.json",
                                                            "ropa.csv", "ropa.json"]
    assert not [p for p in (tmp_path / "reports").iterdir() if p.name.startswith(".")]  # no temp files left


@pytest.mark.parametrize("env, override, expected", [
    (None, None, "{base}/reports"),
    ("/srv/lethe-reports", None, "/srv/lethe-reports"),
    ("/srv/lethe-reports", "run-reports", "{base}/run-reports"),
    ("rel", None, "{base}/rel"),
])
def test_when_reports_folder_is_chosen_then_run_beats_env_beats_default(world, monkeypatch, env, override, expected):
    if env is None:
        monkeypatch.delenv("LETHE_REPORTS_DIR", raising=False)
    else:
        monkeypatch.setenv("LETHE_REPORTS_DIR", env)
    assert reports_dir(world, override) == Path(expected.format(base=world.base_dir))


# --------------------------------------------------------------------------- end to end, no values
def test_when_swept_store_is_mapped_then_no_sampled_value_reaches_any_report(tmp_path, capsys):
    from pii.cli.main import main

    exports = tmp_path / "exports"
    exports.mkdir()
    secret = "wilhelmina.faraday@example.org"
    (exports / "signups.csv").write_text("email,comment\n" + "".join(
        f"{secret if i == 3 else f'u{i}@example.com'},{'see ' + secret if i == 4 else 'ok'}\n" for i in range(20)))
    (exports / "stock.csv").write_text("sku,qty\nA,1\nB,2\n")
    path = tmp_path / "stores.yaml"
    path.write_text(yaml.safe_dump({"ledger": "sqlite:///state.db", "detection": {"model": "none"},
                                    "stores": {"exports": {"kind": "csv", "path": "exports"}}}))
    sweep_store(load_config(path), "exports")
    out_dir = tmp_path / "out"
    assert main(["--config", str(path), "inventory", "--export", str(out_dir / "inv.csv"),
                 "--ropa", str(out_dir / "ropa.json"), "--data-map", str(out_dir / "map.html")]) == 0
    out, err = capsys.readouterr()
    assert "inv.csv" in out and "ropa.json" in out and "map.html" in out
    assert "1 places hold personal data with no retention rule" in err
    written = "".join(p.read_text() for p in out_dir.iterdir()) + out + err
    assert secret not in written and "wilhelmina" not in written
    ropa = json.loads((out_dir / "ropa.json").read_text())["records"]
    assert [(r["container"], r["flag"]) for r in ropa] == [("signups.csv", NO_RULE)]
    assert main(["--config", str(path), "inventory"]) == 0  # no option: the tab-separated listing
    listing = capsys.readouterr().out.splitlines()
    assert len(listing) == 4 and all(line.startswith("exports\t") for line in listing)
    assert main(["--config", str(path), "inventory", "--store", "exports", "--ropa", "x.csv"]) == 2
