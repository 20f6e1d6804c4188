"""Discovery sweep: sample every container (table, file, mailbox) of a store and record, per column, the
kinds of personal data it holds (entity types, confidence, sample size) in the inventory, so access and
erasure runs find the classification cached and the data map (pii.reports.datamap) can be drawn from it.

Incremental by default: each container's *change signature* is kept in the state DB
(`pii.state.inventory.inventory_containers`) and a container whose signature (and the sample size) is the same
as at the last sweep is not sampled again ("unchanged"); ``full=True`` re-samples everything.

| kind  | container                 | change signature                                     | columns            |
|-------|---------------------------|------------------------------------------------------|--------------------|
| sql   | table (schema.table)      | column names and types, row count, max of a single   | the table's        |
|       |                           | numeric primary key                                  |                    |
| csv   | file (relative path)      | size and modification time                           | the header's       |
| ftp   | file (remote path)        | size and modification time (MLSD, else SIZE/MDTM)    | CSV/TSV: header;   |
|       |                           |                                                      | JSONL: top-level   |
|       |                           |                                                      | keys; TXT: "line"  |
| gmail | "messages"                | history id, message count, ids of the newest N       | from, to, cc,      |
|       |                           |                                                      | subject, body      |

Each connector lists its containers with their change signatures (`Connector.containers`) and classifies
the changed ones into the inventory (`Connector.sample_containers`: SQL tables and CSV files by the rules
`locate` uses, on local copies for FTP; JSON lines, text lines and mail with the same `pii.core.classify` rules
and Presidio); this module only decides what changed and counts, the same for every kind. Sample size: the ``sample_rows`` argument, else the store's
``sample_size``, else ``detection: {sample_rows: N}``, else what the connectors use (SQL 30 rows, files
50 records, mail 50 messages). Samples never leave this module: results, progress and the inventory hold
entity types and counts only.
"""
from __future__ import annotations

import time
from collections import Counter

from pii.engine.stores import connect
from connectors.base import Progress, null_progress
from pii.core.config import STORE_KINDS, Config, StoreConfig
from pii.core.detection import model_name
from pii.core.errors import ConfigError
from pii.core.inventory import ColumnProfile
from pii.state.inventory import Inventory

SWEEP_KINDS = STORE_KINDS  # every store kind can be swept
DEFAULT_SAMPLE = {"sql": 30, "csv": 50, "ftp": 50, "gmail": 50}
MAX_SAMPLE = 100_000


class RefreshingInventory(Inventory):
    """An inventory that never answers from its cache but records what is classified now."""

    def get(self, store, container, signature):
        self.misses += 1
        return None


def sample_size(config: Config, store: StoreConfig, override: int | None = None) -> int:
    """Rows (records, messages) sampled per container: `override`, else the store's ``sample_size``,
    else ``detection: {sample_rows: N}``, else the connector's default."""
    for value, where in ((override, "sample_rows"), (store.get("sample_size"), f"store '{store.name}': sample_size"),
                         ((config.detection or {}).get("sample_rows"), "detection: sample_rows")):
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, str)) or not str(value).strip().isdigit() \
                or not 1 <= int(value) <= MAX_SAMPLE:
            raise ConfigError(f"{where} must be a whole number from 1 to {MAX_SAMPLE}")
        return int(value)
    return DEFAULT_SAMPLE.get(store.kind, 50)


class _Sweep:
    """One store's sweep: decides per container whether it changed, classifies, records, counts."""

    def __init__(self, config: Config, store: StoreConfig, inventory: Inventory, *, full: bool,
                 sample: int, progress: Progress):
        self.config, self.store, self.inventory = config, store, inventory
        self.full, self.sample, self.progress = full, sample, progress
        self.states = inventory.sweep_states(store.name)
        self.seen: list[str] = []
        self.swept = self.unchanged = self.rows_sampled = self.columns_swept = 0
        self.errors: list[dict] = []
        self._counter = None

    def say(self, message: str) -> None:
        self.progress(self.store.name, message)

    def is_unchanged(self, container: str, signature: str | None) -> bool:
        """Whether `container` can be skipped: same change signature and sample size as last time, and the
        inventory still holds its columns."""
        self.seen.append(container)
        state = self.states.get(container)
        if (self.full or signature is None or state is None or state["change_signature"] != signature
                or state["sample_rows"] != self.sample or state["inventory_columns"] != state["column_count"]):
            return False
        self.unchanged += 1
        return True

    def record(self, container: str, signature: str | None, profiles: dict[str, ColumnProfile],
               rows: int) -> None:
        """A container classified now (its columns already in the inventory: the connector put them)."""
        self.swept += 1
        self.rows_sampled += rows
        self.columns_swept += len(profiles)
        if signature is not None:
            self.inventory.record_sweep(self.store.name, container, store_kind=self.store.kind,
                                        change_signature=signature, sample_rows=self.sample,
                                        column_count=len(profiles), rows_sampled=rows)
        self.say(f"{container}: {len(profiles)} columns classified from {rows} sampled rows")

    def failed(self, container: str, reason: str) -> None:
        """A container that cannot be read (a malformed file): reported, the rest of the store still swept."""
        self.errors.append({"container": container, "reason": reason})
        self.say(f"{container}: not classified ({reason})")

    def counter(self):
        """Presidio's entity counter (pii.core.detection.entities_in) for the configured model, built once."""
        if self._counter is None:
            import functools

            from pii.core.detection import build_analyzer, entities_in

            self._counter = functools.partial(entities_in, build_analyzer(model_name(self.config.detection)))
        return self._counter


# --------------------------------------------------------------------------- entry points
def sweep_store(config: Config, store_name: str, *, progress: Progress = null_progress, full: bool = False,
                sample_rows: int | None = None) -> dict:
    """Sweep one store: re-classify its changed containers (all of them with `full`) into the inventory.

    Returns counts only: ``{"store", "kind", "containers", "tables"|"files"|"mailboxes", "swept",
    "unchanged", "removed", "failed", "errors", "columns", "columns_swept", "rows_sampled", "sample_rows",
    "by_kind", "seconds", "rows_per_s", "containers_per_s", "full"}``. ``columns`` and ``by_kind`` cover
    every current container of the store (swept now or unchanged); ``errors`` names containers that could
    not be read, with why (no values).
    """
    started = time.perf_counter()
    store = config.select([store_name])[0]
    if store.kind not in SWEEP_KINDS:
        raise ConfigError(f"store '{store.name}': a discovery sweep cannot classify {store.kind} stores")
    sample = sample_size(config, store, sample_rows)
    inventory = RefreshingInventory(config.state_url)
    with connect(config, store, progress=progress, inventory=inventory) as conn:
        conn.check()
        run = _Sweep(config, store, inventory, full=full, sample=sample, progress=progress)
        changed = {c.name: c.signature for c in conn.containers(sample) if not run.is_unchanged(c.name, c.signature)}
        for got in conn.sample_containers(list(changed), sample, run.counter):
            if got.error is not None:
                run.failed(got.container, got.error)
            else:
                run.record(got.container, changed[got.container], got.profiles, got.rows)
    current = set(run.seen)
    gone = sorted(inventory.containers(store.name) - current)
    if gone:
        inventory.forget(store.name, gone)
        progress(store.name, f"{len(gone)} tables/files no longer present: removed from the inventory")
    rows = [r for r in inventory.rows(store.name) if r["container"] in current]
    by_kind = Counter(r["kind"] for r in rows)
    seconds = time.perf_counter() - started
    noun = {"sql": "tables", "gmail": "mailboxes"}.get(store.kind, "files")
    result = {
        "store": store.name,
        "kind": store.kind,
        "containers": len(current),
        noun: len(current),
        "swept": run.swept,
        "unchanged": run.unchanged,
        "removed": len(gone),
        "failed": len(run.errors),
        "errors": run.errors,
        "columns": len(rows),
        "columns_swept": run.columns_swept,
        "rows_sampled": run.rows_sampled,
        "sample_rows": sample,
        "by_kind": dict(sorted(by_kind.items())),
        "seconds": round(seconds, 3),
        "rows_per_s": round(run.rows_sampled / seconds, 1) if seconds > 0 else 0.0,
        "containers_per_s": round(len(current) / seconds, 1) if seconds > 0 else 0.0,
        "full": bool(full),
    }
    progress(store.name, summary_line(result))
    return result


def sweep_stores(config: Config, stores: list[str] | None = None, *, progress: Progress = null_progress,
                 full: bool = False, sample_rows: int | None = None) -> list[dict]:
    """`sweep_store` for each selected store (all by default), in config order."""
    return [sweep_store(config, s.name, progress=progress, full=full, sample_rows=sample_rows)
            for s in config.select(stores)]


def summary_line(result: dict) -> str:
    """One line of counts for a store's sweep (CLI and task logs)."""
    line = (f"{result['containers']} containers: {result['swept']} swept, {result['unchanged']} unchanged"
            f"{', %d removed' % result['removed'] if result['removed'] else ''}"
            f"{', %d failed' % result['failed'] if result['failed'] else ''}; {result['columns']} columns; "
            f"{result['rows_sampled']} rows sampled in {result['seconds']:.2f} s ({result['rows_per_s']:.0f} rows/s)")
    return line
