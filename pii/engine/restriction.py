"""Restriction of processing in the flows (issue 14, item 2): which records a flow finds belong to a person whose
processing is restricted, so the flow holds them (HOLD, reason "restricted (...)") instead of changing them.

The flows find records by filters (a date, an age, a source), not by person, and the ledger knows restricted
people only as keyed hashes. So each record's values are matched the way the ledger screens values
(`pii.ledger.screening.Screen`: an e-mail address anywhere in a value, a phone number, an id in a column's
value), against the hashes of every restriction in force on the run date. Rows that reach the selection only
through a foreign key (`linked`: an order of a member) hold no identifier: they are held when they carry
the key of a held row (same column name and value, e.g. ``member_id``), transitively.
"""
from __future__ import annotations

import datetime as dt
from typing import Iterable

from pii.core.findings import Finding
from pii.ledger.screening import OPAQUE_RE, Screen

REASON_PREFIX = "restricted"


# ---------------------------------------------------------------------------- input (the CLI and Airflow)
def purpose_of(value) -> str:
    """A purpose as typed (any case), checked: ConfigError (exit 2) naming the known ones."""
    from pii.core.errors import ConfigError
    from pii.ledger.restrictions import PURPOSES

    p = str(value or "").strip().lower()
    if p not in PURPOSES:
        given = f"unknown purpose {str(value)[:40]!r}" if value else "--purpose is required"
        raise ConfigError(f"{given}: use one of {', '.join(PURPOSES)}")
    return p


def require_matchable(subject) -> None:
    """A name alone is never stored or matched: refuse it (exit 2) before anything changes."""
    from pii.core.errors import InvalidIdentifier

    if subject.is_empty():
        raise InvalidIdentifier("give at least one identifier (--email, --phone or --id KEY=VALUE)")
    if not (subject.emails or subject.phones or subject.ids):
        raise InvalidIdentifier("a name alone cannot be matched (many people share one): give --email, --phone "
                                "or --id KEY=VALUE")


def until_of(value: str | None, today: dt.date) -> dt.date | None:
    """The --until date (YYYY-MM-DD, today or later), or None; ConfigError (exit 2) otherwise."""
    from pii.core.errors import ConfigError

    if value is None:
        return None
    try:
        day = dt.date.fromisoformat(str(value).strip())
    except ValueError:
        raise ConfigError("--until must be a date written YYYY-MM-DD") from None
    if day < today:
        raise ConfigError("--until has already passed: give today or a later date")
    return day


def restriction_reason(entry: dict) -> str:
    until = entry.get("until")
    return (f"{REASON_PREFIX} (processing restricted at the person's request, "
            + (f"until {until})" if until else "until released)"))


class _Finder(Screen):
    """A Screen over many people's hashes that also tells which hash a value matched."""

    def __init__(self, mac, hashes, region):
        super().__init__(mac, hashes, region)
        self.last: tuple[str, str] | None = None
        self._seen: dict = {}

    def _hit(self, kind: str, canonical: str) -> bool:
        h = self._mac(kind, canonical)
        if (kind, h) in self.hashes:
            self.last = (kind, h)
            return True
        return False

    def which(self, value) -> tuple[str, str] | None:
        if value is None or isinstance(value, bool) or not self.hashes:
            return None
        if isinstance(value, str) and OPAQUE_RE.match(value):
            return None
        key = (type(value), value)
        if key not in self._seen:
            if len(self._seen) > 100_000:
                self._seen.clear()
            self.last = None
            self._seen[key] = self.last if self._find(value) else None
        return self._seen[key]


class RestrictedRecords:
    """The restrictions in force on `today` (from the ledger), matched against a flow's records."""

    def __init__(self, ledger, today: dt.date, region: str):
        self.entries = ledger.restricted_hashes(today=today)
        self._finder = _Finder(ledger._mac, self.entries, region) if self.entries else None

    def __bool__(self) -> bool:
        return bool(self.entries)

    def entry_for(self, record: dict | None) -> dict | None:
        """The restriction a record's values name, or None."""
        if self._finder is None or not record:
            return None
        for value in record.values():
            hit = self._finder.which(value)
            if hit is not None:
                return self.entries[hit]
        return None

    def held(self, findings: Iterable[Finding]) -> dict[str, str]:
        """Finding key -> hold reason for each record of a restricted person, and each linked row that
        carries the key of such a record (see the module docstring)."""
        if self._finder is None:
            return {}
        findings = list(findings)
        out: dict[str, str] = {}
        keys: dict[str, set] = {}  # store -> {(column, value)} of the held rows' primary keys

        def hold(f: Finding, reason: str) -> None:
            out[f.key] = reason
            key = f.location.get("key") if isinstance(f.location, dict) else None
            if isinstance(key, dict):
                keys.setdefault(f.store, set()).update((str(k).casefold(), str(v)) for k, v in key.items())

        for f in findings:
            entry = self.entry_for(f.record)
            if entry is not None:
                hold(f, restriction_reason(entry))
        linked = [f for f in findings if f.match == "linked" and f.key not in out]
        changed = True
        while changed and linked:
            changed = False
            for f in list(linked):
                held_keys = keys.get(f.store)
                if not held_keys or not f.record:
                    continue
                own = f.location.get("key") if isinstance(f.location, dict) else None
                own = {str(k).casefold() for k in own} if isinstance(own, dict) else set()
                # a row's own single key ("id") says nothing about links; a column of a composite key
                # (order_items: order_id + line_no) is a foreign key too
                skip = own if len(own) == 1 else set()
                if any((str(c).casefold(), str(v)) in held_keys for c, v in f.record.items()
                       if v is not None and str(c).casefold() not in skip):
                    hold(f, f"{REASON_PREFIX} (linked to the record of a person whose processing is restricted)")
                    linked.remove(f)
                    changed = True
        return out
