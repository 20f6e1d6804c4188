"""Record selection: which records a flow that is *not* about one named person acts on.

Erasure finds records by who they are about (a subject). The special flows choose records by something
else: where they came from (received in error), how old they are (retention schedules), whose date of
birth makes them a child's (child-data purge). A `RecordFilter` says which records, in terms every
connector can push down to its store (SQL `WHERE`, a streaming pass over a file, a Gmail `q=` search).
Connectors implement `select(flt)`; `pii/` decides what the selection means and what to do with it.

Semantics (every connector follows them; tests/connectors/test_select_*.py check them):

- A container (table, file, mailbox) is considered when its name matches one of `containers` (the globs
  of `pii.core.policy.container_matches`: tables case-insensitively as "schema.table" or bare; files by their
  path or, for a pattern without "/", by their last part) and it has every column the filter names.
  A container lacking a named column is skipped, and listed in the connector's `skipped` attribute as
  (container, reason) so a report can say why nothing was taken from it.
- A record is selected when *all* given conditions hold:
  - `equals`: column -> accepted values; the record's value, as text with surrounding spaces stripped,
    equals one of them (exact, case-sensitive; numbers compare by their text, e.g. 7 == "7").
  - `date_column` with `before` and/or `after`: the record's date (parsed with `parse_date`) is strictly
    before `before` and strictly after `after`. A missing or unreadable date never selects a record; the
    connector counts those in `undated`. `date_column` may be the special `FILE_TIME` (a file's
    modification time: every record of the file shares it; with `whole_files` the file as a whole) or
    `MESSAGE_DATE` (a mail message's date, pushed down as Gmail `before:`/`after:`).
  - `text_test`: at least one free-text value of the record (a column the inventory classifies as
    free_text; for a TXT/JSONL line the line; for mail the subject and body) passes `text_test`.
    `text_terms` are lower-case substrings one of which such a value must contain (pushed down as SQL
    `LIKE` prefilters; the connector checks them before calling `text_test`). Findings from a text test
    get match "text"; all others match "identifier".
  - `mail_from`: mail whose From address (normalised e-mail) is one of these; `message_ids`: mail with
    these message ids (the store's ids, as in findings' `message_id`).
- `whole_files`: for file stores, a file whose records would be selected is selected *as a file*: one
  finding with location {"file": name} (CSV) or {"path": remote} (FTP) and no row, and `record` = None.
  Applying an `ExecAction` of kind `drop` on it removes the file. Without `whole_files` each record is a
  finding with the usual location ({"file", "row"} / {"path", "row"} / {"table", "key"} / {"message_id"}).
- `follow_links` (SQL): rows that reference a selected row through foreign keys (as `locate` follows
  them from a subject's rows: children, transitively; shared `reference_tables` never spread) are
  selected too, with match "linked". Other store kinds have no links and ignore it.
- Findings carry `record` (the row as a dict, as `locate` gives it) so a plan can fingerprint and
  anonymise it; `entities` = `entity` when given, else [].
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, Callable

from pii.core.dates import parse_date

FILE_TIME = "@file_time"
MESSAGE_DATE = "@message_date"

@dataclass
class RecordFilter:
    containers: tuple[str, ...] = ("*",)
    equals: dict[str, tuple[str, ...]] = field(default_factory=dict)
    date_column: str | None = None
    before: dt.date | None = None
    after: dt.date | None = None
    text_terms: tuple[str, ...] = ()
    text_test: Callable[[str], bool] | None = field(default=None, compare=False)
    mail_from: tuple[str, ...] = ()
    message_ids: tuple[str, ...] = ()
    whole_files: bool = False
    entity: str | None = None
    follow_links: bool = False
    #: a child's age stated in free text, {"threshold": AGE, "min_score": S}: sets `text_test` and
    #: `text_terms` (pii.core.age), and, unlike a bare `text_test`, survives `to_spec` / `from_spec`
    text_clue: dict | None = None
    #: a per-person clock (retention by last contact): the container is the person table, and each entry
    #: names a contact date: "column" of the person table, or "table.column" of a table whose rows reference
    #: the person by a foreign key. A person is selected when their latest contact date is strictly before
    #: `before` (no contact date at all: counted in `undated`, never selected) and none of their
    #: identifying values is in `recent` ({"emails": [...], "phones": [...]}: people with a later contact
    #: in another store, matched by their identifiers). SQL stores only.
    last_contact: tuple[str, ...] = ()
    recent: dict | None = None

    def __post_init__(self):
        self.containers = tuple(self.containers) or ("*",)
        self.equals = {str(k): tuple(str(v).strip() for v in (vs if isinstance(vs, (list, tuple, set)) else [vs]))
                       for k, vs in (self.equals or {}).items()}
        if self.text_clue:
            from pii.core import age

            self.text_clue = {"threshold": int(self.text_clue["threshold"]),
                              "min_score": float(self.text_clue.get("min_score", 0.0))}
            self.text_test = age.text_test(self.text_clue["threshold"], min_score=self.text_clue["min_score"])
            self.text_terms = tuple(age.PREFILTER_TERMS)
            self.entity = self.entity or "CHILD_AGE"
        self.text_terms = tuple(t.lower() for t in self.text_terms)
        self.mail_from, self.message_ids = tuple(self.mail_from), tuple(self.message_ids)
        for name in ("before", "after"):
            if isinstance(getattr(self, name), str):
                setattr(self, name, dt.date.fromisoformat(getattr(self, name)))
        self.last_contact = tuple(str(c) for c in self.last_contact)
        if self.recent is not None:
            self.recent = {k: sorted({str(v) for v in self.recent.get(k) or ()}) for k in ("emails", "phones")}
        if (self.before or self.after) and not (self.date_column or self.last_contact):
            raise ValueError("a date bound needs date_column")
        if self.last_contact and (self.date_column or self.before is None or self.after is not None):
            raise ValueError("a last-contact filter takes `before` (the cutoff) and no date_column or `after`")

    # ---- as JSON (a plan's selection is sealed in the request store and rebuilt to resume or verify)
    _SPEC_FIELDS = ("containers", "equals", "date_column", "before", "after", "mail_from", "message_ids",
                    "whole_files", "entity", "follow_links", "text_clue", "last_contact", "recent")

    def to_spec(self) -> dict:
        """The filter as JSON: every field that differs from its default, dates as ISO text; `from_spec`
        rebuilds an equal filter. A bare `text_test` (a function) has no JSON form: use `text_clue`."""
        if self.text_test is not None and not self.text_clue:
            raise ValueError("a filter with a text_test function cannot be serialised (give a text_clue)")
        default = RecordFilter()
        out: dict[str, Any] = {}
        for name in self._SPEC_FIELDS:
            value = getattr(self, name)
            if name == "entity" and self.text_clue and value == "CHILD_AGE":
                continue  # implied by the clue
            if value == getattr(default, name):
                continue
            if isinstance(value, dt.date):
                value = value.isoformat()
            elif isinstance(value, tuple):
                value = list(value)
            elif name == "equals":
                value = {k: list(v) for k, v in value.items()}
            out[name] = value
        if not self.text_clue and self.text_terms:
            out["text_terms"] = list(self.text_terms)
        return out

    @classmethod
    def from_spec(cls, spec: dict) -> "RecordFilter":
        """The filter `to_spec` wrote (unknown keys are refused, so a stored spec never half-applies)."""
        unknown = set(spec) - set(cls._SPEC_FIELDS) - {"text_terms"}
        if unknown:
            raise ValueError(f"unknown record filter field(s): {', '.join(sorted(unknown))}")
        return cls(**spec)

    # ---- helpers every connector uses, so the semantics stay one
    def columns_needed(self) -> list[str]:
        """Record columns the container must have (not the special file/mail times)."""
        cols = list(self.equals)
        if self.date_column and self.date_column not in (FILE_TIME, MESSAGE_DATE):
            cols.append(self.date_column)
        return cols

    def date_ok(self, value: Any) -> bool | None:
        """True/False for a readable date inside/outside the bounds; None for a missing/unreadable one."""
        d = parse_date(value)
        if d is None:
            return None
        if self.before is not None and not d < self.before:
            return False
        if self.after is not None and not d > self.after:
            return False
        return True

    def equals_ok(self, record: dict) -> bool:
        for col, accepted in self.equals.items():
            value = record_value(record, col)
            if value is None or str(value).strip() not in accepted:
                return False
        return True

    def text_ok(self, value: Any) -> bool:
        if self.text_test is None:
            return True
        if not isinstance(value, str) or not value:
            return False
        low = value.lower()
        if self.text_terms and not any(t in low for t in self.text_terms):
            return False
        return bool(self.text_test(value))

    def describe(self) -> dict:
        """JSON-able, for plans and reports: names and dates, never the `equals` values (they may be
        personal: an import batch is not, a sender is) - those appear as counts."""
        return {
            "containers": list(self.containers),
            "equals_columns": sorted(self.equals),
            "date_column": self.date_column,
            "before": self.before.isoformat() if self.before else None,
            "after": self.after.isoformat() if self.after else None,
            "text_test": bool(self.text_test),
            "mail_from": len(self.mail_from),
            "message_ids": len(self.message_ids),
            "whole_files": self.whole_files,
            "follow_links": self.follow_links,
            **({"last_contact": list(self.last_contact),
                "recent_elsewhere": sum(len(v) for v in (self.recent or {}).values())} if self.last_contact else {}),
        }


def record_value(record: dict, col: str):
    """A record's value for a column named in a rule, matched exactly, else case-insensitively (None: absent)."""
    if col in record:
        return record[col]
    folded = col.casefold()
    for k, v in record.items():
        if str(k).casefold() == folded:
            return v
    return None
