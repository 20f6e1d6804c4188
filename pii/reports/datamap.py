"""The PII data map and the draft records of processing (GDPR Art. 30), drawn from the column inventory
(filled by discovery sweeps and access runs), the stores' ``metadata`` in stores.yaml and the retention
schedule (pii.core.retention).

- `data_map(config)`: one row per store / container / column: kind, entity types, confidence, sample
  size, when it was classified, whether it holds personal data and the retention rules covering it.
- `records_of_processing(config)`: one row per store / container holding personal data (any column of a
  kind other than ``other``): data categories (the covering retention rules' categories, else derived
  from the entity types), purpose, legal basis and the rest of the store's metadata, retention rule(s)
  and period(s), and ``flag`` = ``no retention rule`` where no rule covers it. A configured store that
  was never swept gets one row flagged ``not swept``.
- `export_inventory`, `export_ropa` (CSV or JSON by suffix), `write_data_map_html` (one self-contained
  page: no external assets, no scripts, everything escaped) and `write_reports` (all of them into a
  folder, for the discovery_sweep DAG and ``lethe inventory``).

Nothing here reads a store: no value can reach these files, only names of stores, tables, files and
columns, entity types and counts.
"""
from __future__ import annotations

import csv
import html
import io
import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable

from pii.core.config import Config
from pii.core.errors import ConfigError
from pii.core.inventory import OTHER
from pii.state.inventory import Inventory
from pii.core.printable import spreadsheet_safe
from pii.reports import write_atomic
from pii.core.retention import RetentionSchedule, load_schedule

REPORTS_ENV = "LETHE_REPORTS_DIR"
NO_RULE = "no retention rule"
NOT_SWEPT = "not swept"
INVENTORY_FIELDS = ("store", "store_kind", "container", "column", "kind", "entities", "confidence",
                    "sample_size", "updated_at", "personal", "retention_rules")
ROPA_FIELDS = ("store", "store_kind", "container", "data_categories", "entities", "personal_columns", "purpose",
               "legal_basis", "source", "recipients", "retention_stated", "retention_rules", "retention_periods",
               "retention_actions", "flag")
REPORT_FILES = {"data_map": "data_map.html", "ropa_csv": "ropa.csv", "ropa_json": "ropa.json",
                "inventory_csv": "inventory.csv", "inventory_json": "inventory.json"}

# Entity types (Presidio's and Lethe's recognizers) -> the data categories a records-of-processing names.
ENTITY_CATEGORIES: dict[str, str | None] = {
    "PERSON": "Names",
    "EMAIL_ADDRESS": "Contact details",
    "PHONE_NUMBER": "Contact details",
    "LOCATION": "Addresses and locations",
    "UK_POSTCODE": "Addresses and locations",
    "ADDRESS": "Addresses and locations",
    "DATE_TIME": "Dates",
    "NRP": "Nationality, religious or political group (special category)",
    "MEDICAL_LICENSE": "Health (special category)",
    "CREDIT_CARD": "Financial data",
    "IBAN_CODE": "Financial data",
    "US_BANK_NUMBER": "Financial data",
    "CRYPTO": "Financial data",
    "UK_NINO": "Government identifiers",
    "UK_NHS": "Government identifiers",
    "UK_PASSPORT": "Government identifiers",
    "US_SSN": "Government identifiers",
    "US_PASSPORT": "Government identifiers",
    "US_DRIVER_LICENSE": "Government identifiers",
    "US_ITIN": "Government identifiers",
    "IP_ADDRESS": "Online identifiers",
    "URL": "Online identifiers",
    "ORGANIZATION": None,  # an organisation is not a data category about a person
}
KIND_CATEGORIES = {"email": "Contact details", "phone": "Contact details", "name": "Names",
                   "given_name": "Names", "family_name": "Names", "free_text": "Free text (may hold personal data)"}


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def is_personal(kind: str) -> bool:
    """A column holds personal data when it was classified as anything but ``other``."""
    return kind != OTHER


def data_map(config: Config, store: str | None = None, *, schedule: RetentionSchedule | None = None,
             inventory: Inventory | None = None) -> list[dict]:
    """Inventory rows of the configured stores (all, or `store`), one per column, ordered by store as
    configured, then container and column."""
    if store is not None:
        config.select([store])
    schedule = schedule if schedule is not None else load_schedule(config)
    inventory = inventory or Inventory(config.state_url)
    order = {name: i for i, name in enumerate(config.stores)}
    rules: dict[tuple[str, str], list[str]] = {}
    out = []
    for r in inventory.rows(store):
        if r["store"] not in config.stores:
            continue  # a store no longer configured
        key = (r["store"], r["container"])
        if key not in rules:
            rules[key] = [rule.name for rule in schedule.for_container(*key)]
        try:
            entities = sorted(json.loads(r["entities"]))
        except (TypeError, ValueError):
            entities = []
        out.append({
            "store": r["store"], "store_kind": config.stores[r["store"]].kind, "container": r["container"],
            "column": r["column_name"], "kind": r["kind"], "entities": entities,
            "confidence": r["confidence"], "sample_size": r["sample_size"], "updated_at": r["updated_at"],
            "personal": is_personal(r["kind"]), "retention_rules": rules[key],
        })
    out.sort(key=lambda row: (order[row["store"]], row["container"], row["column"]))
    return out


def _categories(entities: Iterable[str], kinds: Iterable[str]) -> list[str]:
    cats = {ENTITY_CATEGORIES.get(e, "Other identifiers") for e in entities} - {None}
    cats |= {KIND_CATEGORIES[k] for k in kinds if k in KIND_CATEGORIES}
    if len(cats) > 1:
        cats.discard(KIND_CATEGORIES["free_text"])  # named more precisely by the entities found in it
    return sorted(cats)


def records_of_processing(config: Config, *, schedule: RetentionSchedule | None = None,
                          rows: list[dict] | None = None) -> list[dict]:
    """The draft records of processing: one row per store / container holding personal data (see the
    module docstring), plus one ``not swept`` row per configured store the inventory knows nothing of."""
    schedule = schedule if schedule is not None else load_schedule(config)
    rows = rows if rows is not None else data_map(config, schedule=schedule)
    containers: dict[tuple[str, str], list[dict]] = {}
    for r in rows:
        containers.setdefault((r["store"], r["container"]), []).append(r)
    out: list[dict] = []
    swept = {store for store, _c in containers}
    for name, store in config.stores.items():
        meta = store.metadata or {}
        common = {
            "store": name, "store_kind": store.kind,
            "purpose": _text(meta.get("purpose")), "legal_basis": _text(meta.get("legal_basis")),
            "source": _text(meta.get("source")), "recipients": _text(meta.get("recipients")),
            "retention_stated": _text(meta.get("retention")),
        }
        if name not in swept:
            out.append({**common, "container": "", "data_categories": [], "entities": [], "personal_columns": [],
                        "retention_rules": [], "retention_periods": [], "retention_actions": [],
                        "flag": NOT_SWEPT})
            continue
        for (s, container), cols in sorted(containers.items()):
            if s != name:
                continue
            personal = [c for c in cols if c["personal"]]
            if not personal:
                continue
            covering = schedule.for_container(name, container)
            entities = sorted({e for c in personal for e in c["entities"]})
            if covering:
                categories = sorted(dict.fromkeys(r.category for r in covering))
            else:
                categories = _categories(entities, (c["kind"] for c in personal))
            legal = common["legal_basis"] or "; ".join(dict.fromkeys(r.legal_basis for r in covering
                                                                        if r.legal_basis))
            out.append({**common, "legal_basis": legal, "container": container, "data_categories": categories,
                        "entities": entities, "personal_columns": [c["column"] for c in personal],
                        "retention_rules": [r.name for r in covering],
                        "retention_periods": [str(r.period) for r in covering],
                        "retention_actions": [r.action for r in covering],
                        "flag": "" if covering else NO_RULE})
    return out


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        return "; ".join(str(v) for v in value)
    return str(value)


# --------------------------------------------------------------------------- files
def _format(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".json"):
        raise ConfigError(f"{path}: write .csv or .json (by the file's suffix)")
    return suffix[1:]


def _table_text(rows: list[dict], fields: tuple[str, ...], fmt: str, what: str) -> str:
    if fmt == "json":
        return json.dumps({"generated_at": _now(), what: rows}, indent=2, ensure_ascii=False) + "\n"
    buf = io.StringIO()
    # CRLF rows (RFC 4180): the csv module then also quotes a cell holding a bare CR, which it does not
    # with "\n" rows (Python 3.11), and a spreadsheet would split the row there
    writer = csv.DictWriter(buf, fieldnames=list(fields), lineterminator="\r\n")
    writer.writeheader()
    for r in rows:  # text cells made spreadsheet_safe (a leading ' before = + - @, tab, CR); JSON stays exact
        writer.writerow({k: spreadsheet_safe("; ".join(map(str, v)) if isinstance(v, list) else
                                             ("true" if v is True else "false" if v is False else v))
                         for k, v in r.items() if k in fields})
    return buf.getvalue()


def export_inventory(config: Config, path: str | os.PathLike, store: str | None = None, *,
                     rows: list[dict] | None = None) -> Path:
    """The data map's column rows as CSV (lists joined with "; ", text `spreadsheet_safe`) or JSON (``{"generated_at", "columns"}``)."""
    path = Path(path)
    fmt = _format(path)
    rows = rows if rows is not None else data_map(config, store)
    return write_atomic(path, _table_text(rows, INVENTORY_FIELDS, fmt, "columns"))


def export_ropa(config: Config, path: str | os.PathLike, *, rows: list[dict] | None = None) -> Path:
    """The records of processing as CSV (lists joined with "; ", text `spreadsheet_safe`) or JSON (``{"generated_at", "records"}``)."""
    path = Path(path)
    fmt = _format(path)
    rows = rows if rows is not None else records_of_processing(config)
    return write_atomic(path, _table_text(rows, ROPA_FIELDS, fmt, "records"))


def reports_dir(config: Config, override: str | os.PathLike | None = None) -> Path:
    """Where sweep reports go: `override` (a run's ``reports_dir``), else LETHE_REPORTS_DIR, else
    ``reports/`` beside stores.yaml. Relative paths are relative to stores.yaml's folder."""
    value = override or os.environ.get(REPORTS_ENV)
    path = Path(os.path.expanduser(str(value))) if value else config.base_dir / "reports"
    return path if path.is_absolute() else config.base_dir / path


def write_reports(config: Config, folder: str | os.PathLike, *, rows: list[dict] | None = None,
                  ropa: list[dict] | None = None) -> dict[str, str]:
    """The data map (HTML), the records of processing (CSV and JSON) and the inventory export (CSV and
    JSON) in `folder` (file names in REPORT_FILES). Returns {report: path}."""
    folder = Path(folder)
    if rows is None or ropa is None:
        schedule = load_schedule(config)
        rows = rows if rows is not None else data_map(config, schedule=schedule)
        ropa = ropa if ropa is not None else records_of_processing(config, schedule=schedule, rows=rows)
    paths = {
        "data_map": write_data_map_html(config, folder / REPORT_FILES["data_map"], rows=rows, ropa=ropa),
        "ropa_csv": export_ropa(config, folder / REPORT_FILES["ropa_csv"], rows=ropa),
        "ropa_json": export_ropa(config, folder / REPORT_FILES["ropa_json"], rows=ropa),
        "inventory_csv": export_inventory(config, folder / REPORT_FILES["inventory_csv"], rows=rows),
        "inventory_json": export_inventory(config, folder / REPORT_FILES["inventory_json"], rows=rows),
    }
    return {k: str(v) for k, v in paths.items()}


def report_counts(rows: list[dict], ropa: list[dict]) -> dict[str, int]:
    return {"columns": len(rows), "personal_columns": sum(r["personal"] for r in rows),
            "containers": len({(r["store"], r["container"]) for r in rows}),
            "records": sum(1 for r in ropa if r["flag"] != NOT_SWEPT),
            "no_retention_rule": sum(1 for r in ropa if r["flag"] == NO_RULE),
            "not_swept": sum(1 for r in ropa if r["flag"] == NOT_SWEPT)}


# --------------------------------------------------------------------------- HTML
_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:2rem;color:#1b1b1b;line-height:1.4}
h1{font-size:1.5rem}h2{font-size:1.2rem;margin-top:2rem;border-bottom:1px solid #ccc}
h3{font-size:1rem;margin-bottom:.3rem}
table{border-collapse:collapse;margin:.5rem 0 1rem;font-size:.9rem}
th,td{border:1px solid #ccc;padding:.25rem .5rem;text-align:left;vertical-align:top}
th{background:#f2f2f2}.muted{color:#666}.flag{background:#fde2e1;color:#8a1111;font-weight:bold}
.personal{background:#fff8e1}.ok{color:#1d6b2a}code{background:#f4f4f4;padding:0 .2rem}
.summary td{border:none;padding:.1rem .6rem .1rem 0}
"""


_FLAG_CLASS = ' class="flag"'
_PERSONAL_CLASS = ' class="personal"'
_COVERED = '<span class="ok">covered</span>'


def _e(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        value = ", ".join(str(v) for v in value)
    return html.escape("" if value is None else str(value), quote=True)


def _anchor(*parts: str) -> str:
    import hashlib

    return "c-" + hashlib.sha256("\0".join(parts).encode("utf-8")).hexdigest()[:12]


def render_data_map_html(config: Config, rows: list[dict], ropa: list[dict]) -> str:
    counts = report_counts(rows, ropa)
    out: list[str] = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; style-src \'unsafe-inline\'">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        "<title>PII data map</title>",
        f"<style>{_CSS}</style></head><body>",
        "<h1>PII data map and records of processing</h1>",
        f'<p class="muted">Generated {_e(_now())} from the column inventory of {_e(config.path or "config")}. '
        "Entity types and counts only: no values are shown.</p>",
        '<table class="summary">',
        f"<tr><td>Stores</td><td>{len(config.stores)}</td></tr>",
        f"<tr><td>Tables / files / mailboxes classified</td><td>{counts['containers']}</td></tr>",
        f"<tr><td>Columns</td><td>{counts['columns']} ({counts['personal_columns']} holding personal data)</td></tr>",
        f"<tr><td>Places holding personal data with no retention rule</td>"
        f"<td{_FLAG_CLASS if counts['no_retention_rule'] else ''}>{counts['no_retention_rule']}</td></tr>",
        f"<tr><td>Stores not swept yet</td><td>{counts['not_swept']}</td></tr>",
        "</table>",
        "<h2>Records of processing (draft)</h2>",
        "<p>One row per table, file or mailbox holding personal data. Data categories come from the retention "
        "rules covering it, else from the entity types found. Purpose and legal basis come from the store's "
        "<code>metadata</code> in stores.yaml.</p>",
        "<table><thead><tr><th>Store</th><th>Container</th><th>Data categories</th><th>Entity types</th>"
        "<th>Purpose</th><th>Legal basis</th><th>Recipients</th><th>Retention rule</th><th>Period</th>"
        "<th>Action</th><th>Flag</th></tr></thead><tbody>",
    ]
    for r in ropa:
        flag = r["flag"]
        link = (f'<a href="#{_anchor(r["store"], r["container"])}">{_e(r["container"])}</a>'
                if r["container"] else '<span class="muted">(whole store)</span>')
        out.append(
            f'<tr{_FLAG_CLASS if flag else ""}><td>{_e(r["store"])}</td><td>{link}</td>'
            f'<td>{_e(r["data_categories"])}</td><td>{_e(r["entities"])}</td><td>{_e(r["purpose"])}</td>'
            f'<td>{_e(r["legal_basis"])}</td><td>{_e(r["recipients"])}</td><td>{_e(r["retention_rules"])}</td>'
            f'<td>{_e(r["retention_periods"])}</td><td>{_e(r["retention_actions"])}</td>'
            f'<td>{("FLAG: " + _e(flag)) if flag else _COVERED}</td></tr>')
    if not ropa:
        out.append('<tr><td colspan="11" class="muted">No personal data in the inventory.</td></tr>')
    out.append("</tbody></table>")
    out.append("<h2>Stores, tables and files, columns</h2>")
    by_store: dict[str, dict[str, list[dict]]] = {}
    for r in rows:
        by_store.setdefault(r["store"], {}).setdefault(r["container"], []).append(r)
    for name, store in config.stores.items():
        meta = store.metadata or {}
        out.append(f'<h2>{_e(name)} <span class="muted">({_e(store.kind)})</span></h2>')
        facts = [(label, meta.get(key)) for key, label in (
            ("purpose", "Purpose"), ("legal_basis", "Legal basis"), ("source", "Source"),
            ("recipients", "Recipients"), ("retention", "Retention (stated)"), ("description", "Description"))
            if meta.get(key)]
        if facts:
            out.append('<table class="summary">' + "".join(
                f"<tr><td>{_e(label)}</td><td>{_e(_text(value))}</td></tr>" for label, value in facts) + "</table>")
        containers = by_store.get(name)
        if not containers:
            out.append('<p class="flag">Not swept yet: run <code>lethe sweep</code>.</p>')
            continue
        for container, cols in containers.items():
            personal = any(c["personal"] for c in cols)
            rules = cols[0]["retention_rules"]
            note = ""
            if personal and not rules:
                note = ' <span class="flag">FLAG: no retention rule</span>'
            elif rules:
                note = f' <span class="muted">retention: {_e(rules)}</span>'
            out.append(f'<h3 id="{_anchor(name, container)}">{_e(container)}{note}</h3>')
            out.append("<table><thead><tr><th>Column</th><th>Kind</th><th>Entity types</th><th>Confidence</th>"
                       "<th>Sample size</th><th>Classified</th></tr></thead><tbody>")
            for c in cols:
                out.append(
                    f'<tr{_PERSONAL_CLASS if c["personal"] else ""}><td>{_e(c["column"])}</td>'
                    f'<td>{_e(c["kind"])}</td><td>{_e(c["entities"])}</td><td>{_e(c["confidence"])}</td>'
                    f'<td>{_e(c["sample_size"])}</td><td>{_e(c["updated_at"])}</td></tr>')
            out.append("</tbody></table>")
    out.append("</body></html>\n")
    return "\n".join(out)


def write_data_map_html(config: Config, path: str | os.PathLike, *, rows: list[dict] | None = None,
                        ropa: list[dict] | None = None) -> Path:
    """The data map as one self-contained HTML page (inline CSS, no scripts, no external assets)."""
    if rows is None or ropa is None:
        schedule = load_schedule(config)
        rows = rows if rows is not None else data_map(config, schedule=schedule)
        ropa = ropa if ropa is not None else records_of_processing(config, schedule=schedule, rows=rows)
    return write_atomic(Path(path), render_data_map_html(config, rows, ropa))
