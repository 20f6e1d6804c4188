"""Findings: where a subject's data is, what kinds of data, and how it was matched. Never raw values.

A `Finding` may carry the subject's `record` (the row or excerpt) so the access package can be built
without reading the store twice; the record is never written to logs, the manifest or the ledger.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Iterable

MATCH_ORDER = ("identifier", "text", "linked")
STRONG, WEAK = "strong", "weak"


@dataclass
class Finding:
    store: str
    location: dict
    entities: list[str] = field(default_factory=list)
    match: str = "identifier"
    strength: str = STRONG
    container: str = ""  # table (schema.table) or file the location lies in: groups records for the package
    record: dict[str, Any] | None = field(default=None, repr=False, compare=False)
    note: str | None = None  # e.g. why a locator is not a primary key

    def __post_init__(self):
        if self.match not in MATCH_ORDER:
            raise ValueError(f"unknown match kind {self.match!r}")
        if self.strength not in (STRONG, WEAK):
            raise ValueError(f"unknown strength {self.strength!r}")

    @property
    def key(self) -> str:
        """Identity of the location: one finding per location."""
        return self.store + "\x00" + json.dumps(self.location, sort_keys=True, default=str)

    def to_manifest(self) -> dict:
        out = {
            "store": self.store,
            "location": self.location,
            "entities": sorted(self.entities),
            "match": self.match,
            "strength": self.strength,
        }
        if self.note:
            out["note"] = self.note
        return out


def merge(findings: Iterable[Finding]) -> list[Finding]:
    """One finding per location: the first match kind in MATCH_ORDER wins, entities are united,
    and a location is strong when any evidence for it is strong. Order of first appearance is kept."""
    merged: dict[str, Finding] = {}
    for f in findings:
        key = f.key  # one JSON encoding per finding (this runs over every record a big flow selects)
        prev = merged.get(key)
        if prev is None:
            merged[key] = Finding(
                store=f.store, location=f.location, entities=sorted(set(f.entities)), match=f.match,
                strength=f.strength, container=f.container, record=f.record, note=f.note,
            )
            continue
        prev.entities = sorted(set(prev.entities) | set(f.entities))
        if MATCH_ORDER.index(f.match) < MATCH_ORDER.index(prev.match):
            prev.match = f.match
            if f.record is not None:
                prev.record = f.record
        if f.strength == STRONG:
            prev.strength = STRONG
        prev.note = prev.note or f.note
        if prev.record is None:
            prev.record = f.record
    return list(merged.values())


def summarise(findings: Iterable[Finding]) -> dict:
    """Counts per store and match kind: safe to log and print."""
    out: dict[str, dict[str, int]] = {}
    for f in findings:
        per = out.setdefault(f.store, {})
        per[f.match] = per.get(f.match, 0) + 1
        if f.strength == WEAK:
            per["weak"] = per.get("weak", 0) + 1
    return out
