"""Record values as the access package and the portability export write them (shared by
pii/reports/package.py and pii/reports/portability.py): JSON-safe values, CSV cells that cannot run as
spreadsheet formulas, file names that cannot leave their folder, a finding's container name."""
from __future__ import annotations

import base64
import dataclasses
import json
import math
import re
import uuid
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any, Iterable, Mapping

from pii.core.findings import Finding
from pii.core.printable import spreadsheet_safe

RAW_EML = "_raw_eml"  # a record key holding a whole message (base64); written as a .eml file, not a column
RAW_FILE = "_raw_file"  # a record key holding a whole document, {"name", "base64"} (connectors/documents.py)
_MAX_NAME = 100


def json_safe(value: Any) -> Any:
    """`value` as plain JSON data: datetimes/dates/times in ISO 8601, Decimal as exact text, bytes as
    ``base64:...``, NaN/infinity as null, sets and tuples as lists, anything else unknown as text."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Decimal):
        return str(value) if value.is_finite() else None
    if isinstance(value, (datetime, date, time)):
        try:
            return value.isoformat()
        except (ValueError, AttributeError):  # pandas NaT and friends
            return None
    if isinstance(value, timedelta):
        return str(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return "base64:" + base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        items = list(value)
        if isinstance(value, (set, frozenset)):
            items = sorted(items, key=repr)
        return [json_safe(v) for v in items]
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        try:
            return json_safe(value.item())
        except (TypeError, ValueError):
            pass
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return json_safe(dataclasses.asdict(value))
    return str(value)


def cell_text(value: Any) -> str:
    """A JSON-safe value as one CSV/HTML cell."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False, sort_keys=False)
    return str(value)


def dumps_json(data: Any) -> bytes:
    return (json.dumps(data, ensure_ascii=False, indent=2, allow_nan=False) + "\n").encode("utf-8")


def csv_cell(value: Any) -> str:
    """A record value as a CSV cell: text made `spreadsheet_safe` (a leading apostrophe before = + - @, tab or
    CR); numbers as they are (-5 stays a number); the JSON file keeps the exact value either way."""
    return spreadsheet_safe(value) if isinstance(value, str) else cell_text(value)


# --------------------------------------------------------------------------- names
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_RESERVED = {"CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(1, 10)), *(f"LPT{i}" for i in range(1, 10))}


def safe_name(name: str, taken: set[str], *, strip_ext: Iterable[str] = (".csv",)) -> str:
    """A file-name stem for `name` that cannot leave its folder and is unique (case-insensitively)
    among `taken` (which it is added to): unsafe characters become "_", leading/trailing dots go."""
    text = str(name or "")
    for ext in strip_ext:
        if text.lower().endswith(ext) and len(text) > len(ext):
            text = text[: -len(ext)]
    base = _UNSAFE.sub("_", text).strip("._") or "_"
    if base.split(".")[0].upper() in _RESERVED:
        base = "_" + base
    if len(base) > _MAX_NAME:
        import hashlib

        base = base[:_MAX_NAME] + "-" + hashlib.sha1(text.encode("utf-8")).hexdigest()[:8]
    candidate, n = base, 1
    while candidate.casefold() in taken:
        n += 1
        candidate = f"{base}-{n}"
    taken.add(candidate.casefold())
    return candidate


def container_of(f: Finding) -> str:
    if f.container:
        return f.container
    loc = f.location or {}
    if "table" in loc:
        return f"{loc['schema']}.{loc['table']}" if loc.get("schema") else str(loc["table"])
    for k in ("file", "path"):
        if k in loc:
            return str(loc[k])
    if "message_id" in loc:
        return "messages"
    return "records"
