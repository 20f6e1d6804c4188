"""The portability export (GDPR Art. 20): the data the person provided, in one archive, ``portable.zip``.

What goes in: the records of the person's own rows and files, that is every *strong* finding with match
``identifier`` (a field equals one of their identifiers) or ``linked`` (reached through a foreign key from
one of their rows), with its record. What stays out, because it is (or may be) other people's data:
``text`` findings (someone else's record that mentions the person), ``weak`` findings (a name alone: perhaps
a namesake), mail messages (a message also holds its other parties' addresses and words; the whole messages
where the person is a party are in the access package as ``.eml`` files) and locations without a record.

Layout of the archive (paths use the store's name and the table or file's name, made safe)::

    README.txt                       what the files are
    index.json                       the tables/files, their record counts and file names, what was left out
    <store>/<container>.json         {"store", "container", "count", "records": [{column: value}, ...]}
    <store>/<container>.csv          the same records, one row each, a header row of column names
    <store>/<container>.schema.json  JSON Schema (draft 2020-12) of the .json file: the data dictionary

The data dictionary names every column, the JSON type(s) inferred from its values (``format`` where every
value is a date, a date-time with an offset or an email address) and whether the column is an identifier:
``x-lethe-identifier`` is true where a value equals one of the person's identifiers (``x-lethe-identifies``
says which: email, phone, name, id) or where the column is part of the record's key in its store
(``record key``). The CSV follows the project's rule for files people open: text starting with = + - @,
tab or CR has a leading apostrophe; the JSON holds the exact values.

The archive is written in memory and added to the package's files, so with a package key it is encrypted
like every other file (``portable.zip.enc``).
"""
from __future__ import annotations

import csv
import io
import re
import zipfile
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Iterable

from pii.core.findings import STRONG, Finding, merge
from pii.core.subject import EMAIL_FULL_RE, Subject, SubjectMatcher

PORTABLE = "portable.zip"
INCLUDED_MATCHES = ("identifier", "linked")
SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
FORMAT_NAME = "lethe-portable/1"

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")


@dataclass
class _Table:
    store: str
    container: str
    stem: str = ""
    records: list[dict] = field(default_factory=list)
    keys: set[str] = field(default_factory=set)  # columns that locate a record in its store (primary key)
    refs: set[str] = field(default_factory=set)  # columns holding the key of another of the person's records

    def columns(self) -> list[str]:
        cols: dict[str, None] = {}
        for r in self.records:
            for k in r:
                cols.setdefault(k, None)
        return list(cols)


def is_portable(f: Finding) -> bool:
    """Whether a finding's record is data the person provided (see the module docstring)."""
    loc = f.location or {}
    return (f.match in INCLUDED_MATCHES and f.strength == STRONG and f.record is not None
            and "message_id" not in loc)


def _keyless(f: Finding) -> bool:
    """A row of a table without a primary key, located by all its column values: those are not a key."""
    return "no primary key" in (f.note or "")


def excluded_counts(merged: Iterable[Finding]) -> dict[str, int]:
    """Why the findings left out were left out (counts only)."""
    out = {"mentions_in_other_records": 0, "weak": 0, "messages": 0, "without_record": 0}
    for f in merged:
        if is_portable(f):
            continue
        if "message_id" in (f.location or {}):
            out["messages"] += 1
        elif f.match == "text":
            out["mentions_in_other_records"] += 1
        elif f.strength != STRONG:
            out["weak"] += 1
        else:
            out["without_record"] += 1
    return out


# --------------------------------------------------------------------------- the data dictionary
def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return "string"  # json_safe leaves nothing else


def _identifies(matcher: SubjectMatcher, column: str, value: Any) -> set[str]:
    if value is None or isinstance(value, (bool, list, dict)):
        return set()
    text = str(value)
    if not text.strip() or len(text) > 500:
        return set()
    out = set()
    if matcher.id_matches(column, text):
        out.add("id")
    if "@" in text and matcher.email_matches(text):
        out.add("email")
    if sum(c.isdigit() for c in text) >= 6 and matcher.phone_matches(text):
        out.add("phone")
    if any(c.isalpha() for c in text) and matcher.name_matches(text):
        out.add("name")
    return out


_LABELS = {"email": "email address", "phone": "phone number", "name": "name", "id": "identifier"}


def column_schema(column: str, values: list[Any], *, matcher: SubjectMatcher, is_key: bool,
                  is_ref: bool = False) -> dict:
    """One column's entry in the data dictionary (a JSON Schema with Lethe's annotations)."""
    types = {_json_type(v) for v in values}
    if {"integer", "number"} <= types:
        types.discard("integer")
    order = ["string", "integer", "number", "boolean", "array", "object", "null"]
    kinds = [t for t in order if t in types] or ["null"]
    schema: dict[str, Any] = {"type": kinds[0] if len(kinds) == 1 else kinds}
    strings = [v for v in values if isinstance(v, str)]
    if strings and types - {"null"} == {"string"}:
        if all(_DATE.match(v) for v in strings):
            schema["format"] = "date"
        elif all(_DATETIME.match(v) for v in strings):
            schema["format"] = "date-time"
        elif all(EMAIL_FULL_RE.match(v.strip()) for v in strings):
            schema["format"] = "email"
        elif all(v.startswith("base64:") for v in strings):
            schema["contentEncoding"] = "base64"
    identifies: set[str] = set()
    for v in values:
        identifies |= _identifies(matcher, column, v)
    labels = sorted(identifies) + (["record key"] if is_key else []) + (["reference"] if is_ref else [])
    schema["x-lethe-identifier"] = bool(labels)
    if labels:
        schema["x-lethe-identifies"] = labels
    what = []
    if identifies:
        what.append("holds your " + " / ".join(_LABELS[i] for i in sorted(identifies)))
    if is_key:
        what.append("part of the record's key in this system")
    if is_ref:
        what.append("refers to another of your records here (same column and value as its key)")
    if schema.get("contentEncoding"):
        what.append("binary data, written as 'base64:' followed by base64 text")
    kind = " or ".join(kinds)
    schema["description"] = f"Column '{column}' ({kind})" + (": " + "; ".join(what) if what else "") + "."
    return schema


def table_schema(t: _Table, matcher: SubjectMatcher) -> dict:
    """The JSON Schema (draft 2020-12) that the table's .json file validates against."""
    cols = t.columns()
    props = {}
    required = []
    for c in cols:
        present = [r for r in t.records if c in r]
        values = [r[c] for r in present]
        every = len(present) == len(t.records)
        if every:
            required.append(c)
        props[c] = column_schema(c, values, matcher=matcher, is_key=c in t.keys, is_ref=c in t.refs)
    record = {"type": "object", "properties": props, "required": required, "additionalProperties": False}
    return {
        "$schema": SCHEMA_DIALECT,
        "$id": f"{t.stem}.schema.json",
        "title": f"{t.store}: {t.container}",
        "description": (f"Your records from '{t.container}' in the system '{t.store}': the file {t.stem}.json "
                        f"(and, one row per record, {t.stem}.csv, whose header row names the same columns)."),
        "type": "object",
        "required": ["store", "container", "count", "records"],
        "additionalProperties": False,
        "properties": {
            "store": {"const": t.store, "description": "the system the records come from"},
            "container": {"const": t.container, "description": "the table or file in that system"},
            "count": {"const": len(t.records), "description": "how many records"},
            "records": {"type": "array", "items": {"$ref": "#/$defs/record"}, "minItems": len(t.records),
                        "maxItems": len(t.records)},
        },
        "$defs": {"record": record},
        "x-lethe-columns": cols,
        "x-lethe-identifier-columns": [c for c in cols if props[c]["x-lethe-identifier"]],
        "x-lethe-csv": {"file": f"{t.stem}.csv", "encoding": "utf-8 with BOM", "delimiter": ",",
                        "header": True, "columns": cols,
                        "note": "text starting with = + - @, tab or CR has a leading apostrophe (so a spreadsheet "
                                "does not run it); lists and objects are JSON text; empty means null. The JSON "
                                "file holds the exact values."},
    }


# --------------------------------------------------------------------------- the archive
def _csv_bytes(t: _Table) -> bytes:
    from pii.core.printable import spreadsheet_safe_row
    from pii.reports.values import csv_cell

    cols = t.columns()
    buf = io.StringIO(newline="")
    w = csv.writer(buf, lineterminator="\r\n")
    w.writerow(spreadsheet_safe_row(cols))
    for r in t.records:
        w.writerow([csv_cell(r.get(c)) for c in cols])
    return buf.getvalue().encode("utf-8-sig")


def _readme(tables: list[_Table], excluded: dict[str, int], stamp: str) -> bytes:
    lines = [
        "Your data in a portable form",
        "============================",
        "",
        f"Generated at {stamp} (UTC). The data you provided to us, as we hold it, in a structured, commonly",
        "used and machine-readable form (GDPR Art. 20), to keep or to pass to another provider.",
        "",
        "Files:",
        "  index.json                     the list of tables and files below, with record counts",
        "  <system>/<name>.json           your records from one table or file (exact values)",
        "  <system>/<name>.csv            the same records as CSV (UTF-8, header row)",
        "  <system>/<name>.schema.json    data dictionary: a JSON Schema of the .json file, naming every column,",
        "                                 its type and whether it is an identifier (x-lethe-identifier)",
        "",
        f"{sum(len(t.records) for t in tables)} record(s) in {len(tables)} table(s) or file(s).",
        "",
        "Not included: records of other people that mention you, records matched on a name alone, and",
        "e-mail messages (they also hold other people's data). They are listed in the access package.",
    ]
    if any(excluded.values()):
        lines.append("Left out here: " + ", ".join(f"{k.replace('_', ' ')}: {v}" for k, v in excluded.items() if v)
                     + ".")
    return ("\n".join(lines) + "\n").encode("utf-8")


def build_portable(subject: Subject, findings: Iterable[Finding], *, stamp: str) -> tuple[bytes, dict]:
    """(the archive's bytes, its manifest entry). `stamp` is the package's generated_at as written."""
    from pii.core.printable import names_subject
    from pii.reports.values import RAW_EML, container_of, dumps_json, json_safe, safe_name

    merged = merge(findings)
    matcher = SubjectMatcher(subject)
    tables: dict[tuple[str, str], _Table] = {}
    for f in merged:
        if not is_portable(f):
            continue
        record = {k: v for k, v in dict(f.record).items() if k != RAW_EML}
        cname = container_of(f)
        t = tables.setdefault((f.store, cname), _Table(f.store, cname))
        t.records.append(json_safe(record))
        key = (f.location or {}).get("key")
        if isinstance(key, dict) and not _keyless(f):
            t.keys.update(str(k) for k in key)
    # a column that holds, under the same name, the key of another of the person's records in the same store
    # (registrations.member_id -> members.member_id) identifies them too
    key_values: dict[str, set[tuple[str, str]]] = {}
    for f in merged:
        key = (f.location or {}).get("key") if is_portable(f) and not _keyless(f) else None
        if isinstance(key, dict):
            key_values.setdefault(f.store, set()).update((str(k), repr(json_safe(v))) for k, v in key.items())
    for t in tables.values():
        own = key_values.get(t.store, set())
        for r in t.records:
            t.refs.update(c for c, v in r.items() if c not in t.keys and (c, repr(v)) in own)
    taken_stores: set[str] = set()
    store_dirs: dict[str, str] = {}
    taken_in: dict[str, set[str]] = {}
    for n, t in enumerate(tables.values(), 1):
        if t.store not in store_dirs:
            store_dirs[t.store] = safe_name(t.store, taken_stores, strip_ext=())
        sdir = store_dirs[t.store]
        base = f"named-after-you-{n}" if names_subject(t.container.rsplit("/", 1)[-1], matcher) else t.container
        t.stem = f"{sdir}/{safe_name(base, taken_in.setdefault(sdir, set()), strip_ext=('.csv', '.tsv', '.txt', '.jsonl'))}"

    excluded = excluded_counts(merged)
    entries = []
    files: dict[str, bytes] = {}
    for t in tables.values():
        schema = table_schema(t, matcher)
        files[f"{t.stem}.json"] = dumps_json({"store": t.store, "container": t.container, "count": len(t.records),
                                          "records": t.records})
        files[f"{t.stem}.csv"] = _csv_bytes(t)
        files[f"{t.stem}.schema.json"] = dumps_json(schema)
        entries.append({"store": t.store, "container": t.container, "records": len(t.records),
                        "json": f"{t.stem}.json", "csv": f"{t.stem}.csv", "schema": f"{t.stem}.schema.json",
                        "columns": schema["x-lethe-columns"],
                        "identifier_columns": schema["x-lethe-identifier-columns"]})
    index = {"format": FORMAT_NAME, "generated_at": stamp, "schema_dialect": SCHEMA_DIALECT,
             "included": "records matched on your identifiers, and records linked to them",
             "tables": entries, "excluded": excluded}
    files = {"README.txt": _readme(list(tables.values()), excluded, stamp), "index.json": dumps_json(index), **files}

    buf = io.BytesIO()
    when = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").timetuple()[:6]
    when = when if when[0] >= 1980 else (1980, 1, 1, 0, 0, 0)
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            info = zipfile.ZipInfo(name, date_time=when)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o600 << 16
            zf.writestr(info, data)
    entry = {"file": PORTABLE, "format": FORMAT_NAME, "schema_dialect": SCHEMA_DIALECT,
             "records": sum(len(t.records) for t in tables.values()),
             "tables": [{k: e[k] for k in ("store", "container", "records", "json", "csv", "schema",
                                           "identifier_columns")} for e in entries],
             "excluded": excluded}
    return buf.getvalue(), entry
