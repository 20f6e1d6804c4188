"""Discovery sweep: refresh one store's column inventory (which column holds which kind of personal
data) from a fresh sample, so access and erasure runs find it cached.

Classification is the connectors' own (`SqlConnector.classify_tables`, the CSV connector's per-file
classification); the sweep only makes it ignore the cache and write the result back. Returns counts, never
values. The special-flows issue extends this (retention and child-data checks on the same pass).
"""
from __future__ import annotations

import time
from collections import Counter

from connectors import open_connector
from connectors.base import Progress, null_progress
from pii.config import Config
from pii.detection import model_name
from pii.errors import ConfigError
from pii.inventory import ColumnProfile, Inventory

SWEEP_KINDS = ("sql", "csv")  # store kinds a sweep can classify today


class RefreshingInventory(Inventory):
    """An inventory that never answers from its cache but records what is classified now."""

    def get(self, store, container, signature):
        self.misses += 1
        return None


def sweep_store(config: Config, store_name: str, *, progress: Progress = null_progress) -> dict:
    """Re-classify every table (SQL) or file (CSV) of one store and store the profiles in the inventory.

    Returns ``{"store", "kind", "containers", "tables"|"files", "columns", "by_kind", "seconds"}``.
    """
    started = time.perf_counter()
    store = config.select([store_name])[0]
    if store.kind not in SWEEP_KINDS:
        raise ConfigError(f"store '{store.name}': a discovery sweep cannot classify {store.kind} stores yet")
    inventory = RefreshingInventory(config.state_url)
    profiles: dict[str, dict[str, ColumnProfile]] = {}
    with open_connector(store, config=config, progress=progress, inventory=inventory,
                        analyzer_model=model_name(config.detection)) as conn:
        conn.check()
        if store.kind == "sql":
            conn.classify_tables()
            profiles = {info.container: dict(info.profiles) for info in conn.tables()}
        else:
            for rel in conn.files():
                profiles[rel] = _classify_csv_file(conn, rel)
    by_kind = Counter(p.kind for cols in profiles.values() for p in cols.values())
    result = {
        "store": store.name,
        "kind": store.kind,
        "containers": len(profiles),
        "tables" if store.kind == "sql" else "files": len(profiles),
        "columns": sum(len(c) for c in profiles.values()),
        "by_kind": dict(sorted(by_kind.items())),
        "seconds": round(time.perf_counter() - started, 3),
    }
    progress(store.name, f"inventory refreshed: {result['containers']} containers, {result['columns']} columns")
    return result


def _classify_csv_file(conn, rel: str) -> dict[str, ColumnProfile]:
    """The CSV connector's classification of one file from its first records (as `locate` samples it)."""
    from connectors.csvfiles import SAMPLE_ROWS

    with conn._open(rel) as (columns, _extra_key, rows):
        sample = []
        for _n, row in rows:
            sample.append(row)
            if len(sample) >= SAMPLE_ROWS:
                break
        return conn._profiles(rel, columns, sample)
