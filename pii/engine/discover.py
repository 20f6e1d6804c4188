"""Locate one subject across every configured store: the library call behind `lethe access`, the
erasure planner and the Airflow tasks alike."""
from __future__ import annotations

import time
from dataclasses import dataclass, field

from pii.engine.stores import connect
from connectors.base import Progress, null_progress
from pii.core.config import Config, StoreConfig
from pii.core.coverage import Coverage
from pii.core.findings import Finding, merge, summarise
from pii.state.inventory import Inventory
from pii.core.subject import Subject, SubjectMatcher


@dataclass
class StoreResult:
    store: str
    kind: str
    findings: list[Finding]
    seconds: float
    coverage: Coverage | None = None  # what the search read, skipped or read in part (pii/core/coverage.py)


@dataclass
class LocateResult:
    subject: Subject
    stores: list[StoreResult] = field(default_factory=list)
    inventory_hits: int = 0
    inventory_misses: int = 0

    @property
    def findings(self) -> list[Finding]:
        return merge(f for s in self.stores for f in s.findings)

    def summary(self) -> dict:
        return summarise(self.findings)

    def coverages(self) -> list[Coverage]:
        return [s.coverage or Coverage(s.store, s.kind) for s in self.stores]

    @property
    def complete(self) -> bool:
        """Every place of every searched store was searched whole."""
        return all(c.complete for c in self.coverages())

    def not_scanned(self) -> list[dict]:
        """Places in the searched stores that could not be (fully) searched (e.g. a PDF in an FTP drop, a
        binary column, a CSV malformed from some line on), with why: {"store", "place", "reason", "state"}."""
        return [g for c in self.coverages() for g in c.gaps()]


def locate_in_store(config: Config, store: StoreConfig, subject: Subject, *, progress: Progress = null_progress,
                    inventory: Inventory | None = None, tables: list[str] | None = None) -> StoreResult:
    """One store's findings. `tables` (SQL stores): search only these tables (one group of a big store;
    foreign keys are still followed into every table)."""
    started = time.perf_counter()
    with connect(config, store, progress=progress, inventory=inventory) as conn:
        if tables is not None:
            if not hasattr(conn, "only_tables"):
                raise ValueError(f"store '{store.name}' ({store.kind}) cannot be searched by table group")
            conn.only_tables = list(tables)
        findings = conn.locate(SubjectMatcher(subject))
        coverage = conn.coverage
    return StoreResult(store.name, store.kind, findings, time.perf_counter() - started, coverage)


def locate_subject(config: Config, subject: Subject, *, stores: list[str] | None = None,
                   progress: Progress = null_progress, use_inventory: bool = True) -> LocateResult:
    """Every finding about `subject` in the selected stores (all by default). Unreachable stores raise
    pii.core.errors.StoreUnreachable naming the store: an access answer must not silently miss a store."""
    inventory = Inventory(config.state_url) if use_inventory else None
    result = LocateResult(subject)
    for store in config.select(stores):
        progress(store.name, f"searching ({store.kind})")
        res = locate_in_store(config, store, subject, progress=progress, inventory=inventory)
        progress(store.name, f"{len(res.findings)} locations in {res.seconds:.2f}s")
        result.stores.append(res)
    if inventory is not None:
        result.inventory_hits, result.inventory_misses = inventory.hits, inventory.misses
    return result
