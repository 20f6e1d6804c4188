"""Locate one subject across every configured store: the library call behind `lethe access`, the
erasure planner and the Airflow tasks alike."""
from __future__ import annotations

import time
from dataclasses import dataclass, field

from connectors import open_connector
from connectors.base import Progress, null_progress
from pii.config import Config, StoreConfig
from pii.detection import model_name
from pii.findings import Finding, merge, summarise
from pii.inventory import Inventory
from pii.subject import Subject, SubjectMatcher


@dataclass
class StoreResult:
    store: str
    kind: str
    findings: list[Finding]
    seconds: float
    not_scanned: list[tuple[str, str]] = field(default_factory=list)  # (place, reason): files Lethe cannot read


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

    def not_scanned(self) -> list[dict]:
        """Places in the searched stores that could not be read (e.g. a PDF in an FTP drop), with why."""
        return [{"store": s.store, "place": place, "reason": reason}
                for s in self.stores for place, reason in s.not_scanned]


def locate_in_store(config: Config, store: StoreConfig, subject: Subject, *, progress: Progress = null_progress,
                    inventory: Inventory | None = None) -> StoreResult:
    started = time.perf_counter()
    with open_connector(store, config=config, progress=progress, inventory=inventory,
                        analyzer_model=model_name(config.detection)) as conn:
        findings = conn.locate(SubjectMatcher(subject))
        not_scanned = list(getattr(conn, "not_scanned", []) or [])
    return StoreResult(store.name, store.kind, findings, time.perf_counter() - started, not_scanned)


def locate_subject(config: Config, subject: Subject, *, stores: list[str] | None = None,
                   progress: Progress = null_progress, use_inventory: bool = True) -> LocateResult:
    """Every finding about `subject` in the selected stores (all by default). Unreachable stores raise
    pii.errors.StoreUnreachable naming the store: an access answer must not silently miss a store."""
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
