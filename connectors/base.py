"""What every connector offers. Connectors move data; `pii/` decides what it means."""
from __future__ import annotations

import hashlib
import json
import sys
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Iterator

from pii.core.config import Config, StoreConfig
from pii.core.coverage import Coverage
from pii.core.findings import Finding
from pii.core.selection import RecordFilter
from pii.core.subject import SubjectMatcher

Progress = Callable[[str, str], None]  # (store name, message without personal data)
EntityCounter = Callable[[list[str]], dict[str, int]]  # texts -> {entity type: texts holding one} (Presidio)


# --------------------------------------------------------------------------- discovery (sweeps)
@dataclass
class Container:
    """A place a discovery sweep classifies (table, file, mailbox) and its change signature: the same
    signature as at the last sweep means unchanged (None: unknown, so always sampled again)."""

    name: str
    signature: str | None


@dataclass
class Sampled:
    """One container classified from a sample: per column its profile (kind, entity types, confidence,
    sample size), how many records were sampled, or why it could not be read (no values)."""

    container: str
    profiles: dict = field(default_factory=dict)  # column -> pii.core.inventory.ColumnProfile
    rows: int = 0
    error: str | None = None


def change_signature(*parts: Any) -> str:
    """A container's change signature from what cheaply tells a change (sizes, times, counts, ids)."""
    return hashlib.sha256(json.dumps(parts, default=str, sort_keys=True).encode("utf-8")).hexdigest()[:40]


def null_progress(store: str, message: str) -> None:
    pass


def stderr_progress(store: str, message: str) -> None:
    print(f"[{store}] {message}", file=sys.stderr, flush=True)


class Connector(ABC):
    """One store. Construction does no I/O; `check()` connects; `locate()` finds one subject's data.

    Findings returned by `locate` carry the subject's record (`Finding.record`) for the access package.
    """

    kind: ClassVar[str]
    can_update: ClassVar[bool] = True  # False: records cannot be changed in place (only deleted or kept)

    def __init__(self, store: StoreConfig, *, config: Config | None = None, progress: Progress = null_progress,
                 inventory=None, analyzer_model: str | None = None):
        self.store = store
        self.config = config
        self.progress = progress
        self.inventory = inventory  # pii.state.inventory.Inventory or None: cache of column classifications
        self.analyzer_model = analyzer_model
        self.skipped: list[tuple[str, str]] = []  # select(): containers left out, and why (no values)
        self.undated = 0  # select(): records whose date could not be read
        self.coverage = Coverage(store.name, getattr(self, "kind", ""))  # locate(): what was searched, skipped, partly read

    @property
    def name(self) -> str:
        return self.store.name

    def say(self, message: str) -> None:
        self.progress(self.name, message)

    @abstractmethod
    def check(self) -> None:
        """Connect once; raise pii.core.errors.StoreUnreachable naming the store when it cannot be reached."""

    @abstractmethod
    def locate(self, matcher: SubjectMatcher) -> list[Finding]:
        """Every location in this store holding data about the matcher's subject. Fills `self.coverage`
        (pii/core/coverage.py) afresh: every place searched, and every place that could not be, with why."""

    def select(self, flt: "RecordFilter") -> list[Finding]:
        """Every record (or, with `flt.whole_files`, every file) the filter selects: see pii/core/selection.py
        for the semantics all connectors share. Containers skipped for lacking a named column are listed
        in `self.skipped` as (container, reason); records without a readable date are counted in
        `self.undated`."""
        raise NotImplementedError(f"store kind {self.kind!r} cannot select records yet")

    def apply(self, actions: "list[ExecAction]", done: "Done", matcher: SubjectMatcher) -> None:
        """Carry out `actions` (all in this store), calling `done` after each durable commit. Must be
        idempotent: an action whose record is already gone or changed affects nothing."""
        raise NotImplementedError(f"store kind {self.kind!r} cannot erase yet")

    # ---- discovery: what a sweep (pii/engine/sweep.py) needs, the same for every kind
    def containers(self, rows: int | None = None) -> list[Container]:
        """Every container of the store with its change signature; cheap (listings, counts, file stats),
        reads no records. `rows`: the sample size the sweep will use (a mailbox is signed by the ids of its
        newest `rows` messages)."""
        raise NotImplementedError(f"store kind {self.kind!r} cannot be swept yet")

    def sample_containers(self, names: list[str], rows: int,
                          counter: Callable[[], EntityCounter | None]) -> Iterator[Sampled]:
        """Classify each named container (from `containers()`) from its first `rows` records into
        `self.inventory`, yielding what was found; `counter()` gives Presidio's entity counter, built only
        when a container needs it. A container that cannot be read is yielded with `error` set; an
        unreachable store raises."""
        raise NotImplementedError(f"store kind {self.kind!r} cannot be swept yet")

    def keep_profiles(self, container: str, profiles: dict) -> None:
        """Store profiles a sweep classified without the connector's own column rules (mail, text and JSON
        lines: every column a string) in `self.inventory`, if there is one."""
        if self.inventory is not None:
            from pii.core import classify as cls

            self.inventory.put(self.name, container, cls.signature(
                [cls.ColumnInfo(c, cls.STRING) for c in profiles]), profiles)

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# --------------------------------------------------------------------------- erasure
DELETE, UPDATE, DROP = "delete", "update", "drop"  # drop: remove a whole file (location without a row)


class ExecAction:
    """One change a connector carries out: delete the record at `location`, or set `updates`
    (column -> new value, computed by pii/ from the policy) on it. `location` is the real locator from a
    fresh locate (never stored: the ledger keeps only its keyed hash)."""

    __slots__ = ("action_id", "container", "location", "kind", "updates", "expected")

    def __init__(self, action_id: str, container: str, location: dict, kind: str, updates: dict | None = None,
                 expected: dict | None = None):
        if kind not in (DELETE, UPDATE, DROP):
            raise ValueError(f"unknown action kind {kind!r}")
        self.action_id = action_id
        self.container = container
        self.location = location
        self.kind = kind
        self.updates = dict(updates or {})
        # The record as located (Finding.record). Connectors whose locators are positions (a CSV row number)
        # check it before changing anything: a record that moved or changed there is left alone.
        self.expected = dict(expected) if expected else None

    def __repr__(self) -> str:  # no values: locations and updates may be personal
        return f"ExecAction({self.action_id}, {self.kind}, {self.container})"


# done(action_ids, rows affected, detail or None): called after each durable commit of a batch
Done = Callable[[list[str], int, "str | None"], None]
