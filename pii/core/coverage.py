"""Coverage: what a search of one store read, and what it could not.

Lethe's answers ("here is everything about you", "nothing of you remains") are only as good as the places
searched, so every search reports, per store:

- ``searched``: tables, files or mailboxes searched whole, with how (per column, the predicate method the
  search planner chose, e.g. ``index:lower(email)``, ``scan``, ``domain``; see connectors/sql_search.py);
- ``skipped``: places that could not be searched at all (a binary column, an unsupported file type, a table
  that cannot be read, a file that cannot be decoded), with the reason;
- ``partial``: places read only in part (a CSV malformed from line N on), with the reason;
- ``excluded``: places left out by the store's configuration (``skip_tables``, ``skip_files``, a file
  ``pattern``), listed so a reader knows.

A store is *complete* when nothing was skipped or partly read. Certificates say "verified" only for complete
stores (exclusions are named there too); the access manifest, the stored plan and the approval text carry
the same report. Place names may name a person (a file called after them): `Coverage.shown` withholds those
before anything is printed or stored outside the access package.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

SEARCHED, SKIPPED, PARTIAL, EXCLUDED = "searched", "skipped", "partial", "excluded"


@dataclass
class Coverage:
    store: str
    kind: str = ""
    searched: list[dict] = field(default_factory=list)   # {"place", "how": {method: columns}, ...}
    skipped: list[dict] = field(default_factory=list)    # {"place", "reason"}
    partial: list[dict] = field(default_factory=list)    # {"place", "reason", "from_line"?}
    excluded: list[dict] = field(default_factory=list)   # {"place", "reason"}

    # ---- filling
    def add_searched(self, place: str, **details) -> None:
        self.searched.append({"place": place, **details})

    def add_skipped(self, place: str, reason: str) -> None:
        if not any(s["place"] == place and s["reason"] == reason for s in self.skipped):
            self.skipped.append({"place": place, "reason": reason})

    def add_partial(self, place: str, reason: str, **details) -> None:
        self.partial.append({"place": place, "reason": reason, **details})

    def add_excluded(self, place: str, reason: str) -> None:
        self.excluded.append({"place": place, "reason": reason})

    # ---- reading
    @property
    def complete(self) -> bool:
        """Every place in scope was searched whole (exclusions by configuration aside)."""
        return not self.skipped and not self.partial

    def gaps(self) -> list[dict]:
        """Places not (fully) searched: {"store", "place", "reason", "state"}, skipped first."""
        return ([{"store": self.store, "place": s["place"], "reason": s["reason"], "state": SKIPPED}
                 for s in self.skipped]
                + [{"store": self.store, "place": p["place"], "reason": p["reason"], "state": PARTIAL}
                   for p in self.partial])

    def methods(self) -> dict[str, int]:
        """How many columns (or fields) each search method covered, over the whole store."""
        out: dict[str, int] = {}
        for s in self.searched:
            for method, n in (s.get("how") or {}).items():
                out[method] = out.get(method, 0) + n
        return out

    def to_dict(self, shown: Callable[[str], str] | None = None) -> dict:
        """JSON form. `shown` maps each place name to what may be written (see `withhold_personal`)."""
        show = shown or (lambda p: p)
        return {
            "store": self.store,
            "kind": self.kind,
            "complete": self.complete,
            "searched": len(self.searched),
            "methods": self.methods(),
            "skipped": [{**s, "place": show(s["place"])} for s in self.skipped],
            "partial": [{**p, "place": show(p["place"])} for p in self.partial],
            "excluded": [{**e, "place": show(e["place"])} for e in self.excluded],
        }

    def detailed(self, shown: Callable[[str], str] | None = None) -> dict:
        """`to_dict` plus every searched place with its methods (for the access manifest)."""
        show = shown or (lambda p: p)
        out = self.to_dict(shown)
        out["searched_places"] = [{**s, "place": show(s["place"])} for s in self.searched]
        return out

    @classmethod
    def from_dict(cls, data: dict) -> "Coverage":
        c = cls(data.get("store", ""), data.get("kind", ""))
        c.skipped = list(data.get("skipped") or [])
        c.partial = list(data.get("partial") or [])
        c.excluded = list(data.get("excluded") or [])
        c.searched = list(data.get("searched_places") or [{"place": f"#{i}"} for i in range(data.get("searched", 0))])
        return c


def summary_lines(coverages: list[dict], *, indent: str = "  ") -> list[str]:
    """People's lines for coverage reports in `to_dict` form: one per store with gaps or exclusions."""
    lines = []
    for c in coverages:
        gaps = c.get("skipped", []) + c.get("partial", [])
        if not gaps and not c.get("excluded"):
            continue
        state = "searched in full" if not gaps else f"NOT fully searched ({len(gaps)} place(s))"
        lines.append(f"{indent}{c['store']}: {c.get('searched', 0)} place(s) searched; {state}")
        for s in c.get("skipped", []):
            lines.append(f"{indent}  not searched: {s['place']}: {s['reason']}")
        for p in c.get("partial", []):
            lines.append(f"{indent}  partly read: {p['place']}: {p['reason']}")
        for e in c.get("excluded", []):
            lines.append(f"{indent}  excluded by configuration: {e['place']}: {e['reason']}")
    return lines


def coverage_gaps(coverages: list[dict] | None) -> list[dict]:
    """Places not (fully) searched in coverage reports in `to_dict` form: {"store", "place", "reason", "state"}."""
    out = []
    for c in coverages or []:
        for s in c.get("skipped", []):
            out.append({"store": c.get("store"), "place": s["place"], "reason": s["reason"], "state": SKIPPED})
        for p in c.get("partial", []):
            out.append({"store": c.get("store"), "place": p["place"], "reason": p["reason"], "state": PARTIAL})
    return out


def merge_reports(reports: list[dict]) -> list[dict]:
    """Reports in `to_dict` form, one per store: those of one store searched in parts (groups of tables in
    separate tasks) combined; exclusions, listed by every part, once."""
    out: dict[str, dict] = {}
    for r in reports:
        m = out.get(r["store"])
        if m is None:
            out[r["store"]] = {**r, "methods": dict(r.get("methods") or {}), "skipped": list(r.get("skipped") or []),
                               "partial": list(r.get("partial") or []), "excluded": list(r.get("excluded") or [])}
            continue
        m["searched"] = m.get("searched", 0) + r.get("searched", 0)
        for k, n in (r.get("methods") or {}).items():
            m["methods"][k] = m["methods"].get(k, 0) + n
        m["skipped"] += r.get("skipped") or []
        m["partial"] += r.get("partial") or []
        m["excluded"] += [e for e in r.get("excluded") or [] if e not in m["excluded"]]
        if "searched_places" in m or "searched_places" in r:
            m["searched_places"] = list(m.get("searched_places") or []) + list(r.get("searched_places") or [])
    for m in out.values():
        m["complete"] = not m["skipped"] and not m["partial"]
    return list(out.values())
