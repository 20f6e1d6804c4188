"""Spreadsheet formulas in the CSV files people open (issue 12): a cell starting with = + - @, tab or CR gets a
leading apostrophe (OWASP, "CSV Injection"), so a spreadsheet shows it rather than running it; the JSON beside
it keeps the exact value; numbers and ordinary text are written as they are. Covered: the access package's
data files, the inventory and records-of-processing exports, the audit export, the suppression exports.
All values are made up."""
from __future__ import annotations

import csv
import io
import json
from datetime import datetime, timezone
from pathlib import Path

import pytest
import yaml

from pii.core.config import load_config
from pii.core.findings import Finding
from pii.core.inventory import ColumnProfile
from pii.core.subject import Subject
from pii.ledger import Ledger
from pii.ledger import audit as ledger_audit
from pii.core.printable import FORMULA_STARTS, spreadsheet_safe, spreadsheet_safe_row
from pii.reports.datamap import export_inventory, export_ropa
from pii.reports.package import KEY_ENV, write_access_package
from pii.state.inventory import Inventory
from tests.cli_support import run

HOSTILE = ['=HYPERLINK("http://x")', "+1 555", "-2+3", "@SUM(A1)", "\tx", "\rx"]
PLAIN = "Customer service"
EMAIL = "casey.doe@example.test"  # fake
WHEN = datetime(2026, 11, 21, 12, 0, 0, tzinfo=timezone.utc)


def read_csv(path: Path, encoding: str = "utf-8") -> list[dict]:
    return list(csv.DictReader(io.StringIO(path.read_bytes().decode(encoding), newline="")))  # CR kept


# --------------------------------------------------------------------------- the helper
@pytest.mark.parametrize("value", HOSTILE)
def test_when_text_starts_like_a_formula_then_it_gets_a_leading_apostrophe(value):
    assert spreadsheet_safe(value) == "'" + value


@pytest.mark.parametrize("value", [PLAIN, "", "a=b", "1+1", "'=already quoted", " =spaced", "x@example.test",
                                   "2026-11-21", '{"a": -1}'])
def test_when_text_does_not_start_like_a_formula_then_it_is_unchanged(value):
    assert spreadsheet_safe(value) == value


@pytest.mark.parametrize("value", [-5, -2.5, 0, 3, None, True])
def test_when_a_cell_is_not_text_then_it_is_unchanged(value):
    assert spreadsheet_safe(value) is value


def test_when_a_row_is_made_safe_then_every_cell_but_no_key_changes():
    assert spreadsheet_safe_row({"=k": "=v", "n": -1, "t": PLAIN}) == {"=k": "'=v", "n": -1, "t": PLAIN}
    assert spreadsheet_safe_row(["@a", 2, None]) == ["'@a", 2, None]
    assert set(FORMULA_STARTS) == {"=", "+", "-", "@", "\t", "\r"}
    assert spreadsheet_safe_row is ledger_audit.spreadsheet_safe_row  # one helper, shared by every writer


# --------------------------------------------------------------------------- the access package
@pytest.fixture(autouse=True)
def _no_env_key(monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)


def test_when_a_record_holds_formula_text_then_the_package_csv_neutralises_it_and_json_keeps_it(tmp_path):
    subject = Subject.build(emails=[EMAIL], names=["Casey Doe"])
    record = {"member_id": 7, "balance": -5, "email": EMAIL, "purpose": PLAIN,
              **{f"v{i}": v for i, v in enumerate(HOSTILE)}, "=col": "x"}
    finding = Finding("crm", {"table": "members", "key": {"member_id": 7}}, ["EMAIL_ADDRESS"], "identifier",
                      container="sales.members", record=record)
    write_access_package(tmp_path / "pkg", subject, [finding], generated_at=WHEN, redact=False)
    data = tmp_path / "pkg" / "data" / "crm"
    (row,) = read_csv(data / "sales.members.csv", "utf-8-sig")
    for i, v in enumerate(HOSTILE):
        assert row[f"v{i}"] == "'" + v
    assert row["'=col"] == "x"  # a column name from the store is a cell too
    assert row["member_id"] == "7" and row["balance"] == "-5"  # numbers as they are
    assert row["email"] == EMAIL and row["purpose"] == PLAIN
    (rec,) = json.loads((data / "sales.members.json").read_text(encoding="utf-8"))["records"]
    assert {f"v{i}": rec["record"][f"v{i}"] for i in range(len(HOSTILE))} == \
        {f"v{i}": v for i, v in enumerate(HOSTILE)}
    assert rec["record"]["=col"] == "x" and rec["record"]["balance"] == -5


# --------------------------------------------------------------------------- inventory and ROPA
@pytest.fixture
def hostile_config(tmp_path):
    path = tmp_path / "stores.yaml"
    path.write_text(yaml.safe_dump({"ledger": "sqlite:///state.db", "stores": {
        "crm": {"kind": "sql", "url": "sqlite:///crm.db",
                "metadata": {"purpose": HOSTILE[0], "legal_basis": HOSTILE[1], "recipients": HOSTILE[2],
                             "source": HOSTILE[3], "retention": PLAIN}}}}))
    config = load_config(path)
    P = ColumnProfile
    Inventory(config.state_url).put("crm", HOSTILE[4], "s", {
        HOSTILE[5]: P("email", ["EMAIL_ADDRESS"], 0.9, 30), "@SUM(A1)": P("name", ["PERSON"], 0.8, 30),
        "plain": P("email", ["EMAIL_ADDRESS"], -0.5, 30)})
    return config


def test_when_inventory_names_look_like_formulas_then_its_csv_neutralises_them_and_json_keeps_them(
        hostile_config, tmp_path):
    export_inventory(hostile_config, tmp_path / "inv.csv")
    export_inventory(hostile_config, tmp_path / "inv.json")
    rows = {r["column"]: r for r in read_csv(tmp_path / "inv.csv")}
    assert set(rows) == {"'" + HOSTILE[5], "'@SUM(A1)", "plain"}
    assert {r["container"] for r in rows.values()} == {"'" + HOSTILE[4]}
    assert rows["plain"]["confidence"] == "-0.5" and rows["plain"]["store"] == "crm"  # a number stays a number
    columns = json.loads((tmp_path / "inv.json").read_text(encoding="utf-8"))["columns"]
    assert {c["column"] for c in columns} == {HOSTILE[5], "@SUM(A1)", "plain"}
    assert {c["container"] for c in columns} == {HOSTILE[4]}
    assert next(c for c in columns if c["column"] == "plain")["confidence"] == -0.5


def test_when_store_metadata_looks_like_formulas_then_the_ropa_csv_neutralises_it_and_json_keeps_it(
        hostile_config, tmp_path):
    export_ropa(hostile_config, tmp_path / "ropa.csv")
    export_ropa(hostile_config, tmp_path / "ropa.json")
    (row,) = read_csv(tmp_path / "ropa.csv")
    assert [row[k] for k in ("purpose", "legal_basis", "recipients", "source")] == ["'" + v for v in HOSTILE[:4]]
    assert row["container"] == "'" + HOSTILE[4] and row["retention_stated"] == PLAIN
    assert row["personal_columns"].startswith("'")  # the joined list starts with "\rx" or "@SUM(A1)"
    (rec,) = json.loads((tmp_path / "ropa.json").read_text(encoding="utf-8"))["records"]
    assert [rec[k] for k in ("purpose", "legal_basis", "recipients", "source")] == HOSTILE[:4]
    assert rec["container"] == HOSTILE[4] and sorted(rec["personal_columns"]) == sorted([HOSTILE[5], "@SUM(A1)", "plain"])


# --------------------------------------------------------------------------- the audit export
def test_when_an_audit_event_holds_formula_text_then_the_audit_csv_neutralises_it_and_json_keeps_it(tmp_path):
    ledger = Ledger(f"sqlite:///{tmp_path / 'state.db'}", key=b"test-ledger-key-0123456789abcdef")
    subject = Subject.build(emails=[EMAIL])
    rid = ledger.create_request("erasure", subject, "helpdesk", request_id="REQ-7")
    actors = HOSTILE[:4]  # (the ledger trims an actor's surrounding white space: tab and CR go there)
    for actor in actors:
        ledger.set_request_status(rid, "in_progress", actor=actor)
    ledger.set_request_status(rid, "completed", actor=PLAIN)
    ledger.export_audit(tmp_path / "audit.csv", "csv")
    ledger.export_audit(tmp_path / "audit.json", "json")
    rows = read_csv(tmp_path / "audit.csv")
    events = json.loads((tmp_path / "audit.json").read_text(encoding="utf-8"))
    assert [r["actor"] for r in rows][-len(actors) - 1:] == ["'" + v for v in actors] + [PLAIN]
    assert [e["actor"] for e in events][-len(actors) - 1:] == actors + [PLAIN]
    assert [r["request_id"] for r in rows] == [e["request_id"] for e in events] == ["REQ-7"] * len(events)
    assert [r["event_id"] for r in rows] == [str(e["event_id"]) for e in events]  # numbers as they are
    assert [json.loads(r["details"]) for r in rows] == [e["details"] for e in events]


# --------------------------------------------------------------------------- the suppression exports
@pytest.fixture
def suppressed(tmp_path, monkeypatch):
    """A config whose ledger holds one suppressed subject (address kept) with a formula-like reason."""
    monkeypatch.setenv("LETHE_LEDGER_KEY", "test-ledger-key-0123456789abcdef-0123456789")
    path = tmp_path / "stores.yaml"
    (tmp_path / "drop").mkdir()
    path.write_text(yaml.safe_dump({"ledger": "sqlite:///state.db", "stores": {"drop": {"kind": "csv", "path": "drop"}},
                                    "suppression": {"keep_addresses": True}}))
    config = load_config(path)
    ledger = Ledger(config.state_url)
    rid = ledger.create_request("erasure", Subject.build(emails=["-" + EMAIL]), "helpdesk", request_id="REQ-8")
    ledger.suppress(Subject.build(emails=["-" + EMAIL]), HOSTILE[0], rid, keep_addresses=True)
    return path


def test_when_a_suppression_entry_holds_formula_text_then_its_csv_neutralises_it_and_json_keeps_it(
        suppressed, tmp_path):
    for name in ("s.csv", "s.json"):
        code, _out, err = run("--config", suppressed, "suppression", "export", "--out", tmp_path / name)
        assert code == 0, err
    (row,) = read_csv(tmp_path / "s.csv")
    assert row["reason"] == "'" + HOSTILE[0] and row["request_id"] == "REQ-8" and row["kind"] == "email"
    (entry,) = json.loads((tmp_path / "s.json").read_text(encoding="utf-8"))["entries"]
    assert entry["reason"] == HOSTILE[0] and entry["request_id"] == "REQ-8"
    assert entry["hash"] == row["hash"]  # hex: unchanged


def test_when_a_mailing_export_holds_formula_text_then_its_csv_neutralises_it_and_json_keeps_it(
        suppressed, tmp_path):
    for name in ("m.csv", "m.json"):
        code, _out, err = run("--config", suppressed, "suppression", "export", "--out", tmp_path / name,
                              "--for-mailing", "--with-addresses")
        assert code == 0, err
    (row,) = read_csv(tmp_path / "m.csv")
    assert row["reason"] == "'" + HOSTILE[0] and row["email"] == "'-" + EMAIL
    (entry,) = json.loads((tmp_path / "m.json").read_text(encoding="utf-8"))["entries"]
    assert entry["reason"] == HOSTILE[0] and entry["email"] == "-" + EMAIL
