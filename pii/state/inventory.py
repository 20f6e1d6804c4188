"""The PII inventory: per store / container (table or file) / column, what kind of data it holds.

Access requests reuse it so they do not pay for NER sampling each time; discovery sweeps refresh it.
An entry is valid while the container's signature (its columns and their types) is unchanged.

Discovery sweeps also keep, per container, a *change signature* (``inventory_containers``: for SQL the
columns, row count and highest numeric key; for files size and modification time; for a mailbox its
history id, message count and newest messages), so an incremental sweep re-samples only what changed.
Neither table holds a value: entity types, counts and signatures only.
"""
from __future__ import annotations

import json
from datetime import datetime, timezone

from sqlalchemy import Column, Float, Integer, String, Table, Text, delete, func, select

from pii.core.inventory import ColumnProfile
from pii.state.db import metadata, state_engine

inventory_columns = Table(
    "inventory_columns",
    metadata,
    Column("store", String(200), primary_key=True),
    Column("container", String(500), primary_key=True),
    Column("column_name", String(200), primary_key=True),
    Column("signature", String(64), nullable=False),
    Column("kind", String(40), nullable=False),
    Column("entities", Text, nullable=False),
    Column("confidence", Float, nullable=False),
    Column("sample_size", Integer, nullable=False),
    Column("updated_at", String(40), nullable=False),
)

inventory_containers = Table(
    "inventory_containers",
    metadata,
    Column("store", String(200), primary_key=True),
    Column("container", String(500), primary_key=True),
    Column("store_kind", String(20), nullable=False),
    Column("change_signature", String(64), nullable=False),
    Column("sample_rows", Integer, nullable=False),  # the sample size the container was swept with
    Column("column_count", Integer, nullable=False),
    Column("rows_sampled", Integer, nullable=False),
    Column("swept_at", String(40), nullable=False),
)

# How a column's sampled values are written (`pii.core.classify.column_forms`): lets the search planner compare
# a column's own form through its index. Kept apart so state databases made before it need no migration.
inventory_forms = Table(
    "inventory_forms",
    metadata,
    Column("store", String(200), primary_key=True),
    Column("container", String(500), primary_key=True),
    Column("column_name", String(200), primary_key=True),
    Column("forms", Text, nullable=False),
)

class Inventory:
    def __init__(self, url: str):
        self.url = url
        self.engine = state_engine(url)
        self.hits = 0
        self.misses = 0

    def get(self, store: str, container: str, signature: str) -> dict[str, ColumnProfile] | None:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(inventory_columns).where(
                    inventory_columns.c.store == store, inventory_columns.c.container == container
                )
            ).mappings().all()
            forms = dict(conn.execute(
                select(inventory_forms.c.column_name, inventory_forms.c.forms).where(
                    inventory_forms.c.store == store, inventory_forms.c.container == container)).all())
        if not rows or any(r["signature"] != signature for r in rows):
            self.misses += 1
            return None
        self.hits += 1
        return {
            r["column_name"]: ColumnProfile(r["kind"], json.loads(r["entities"]), r["confidence"], r["sample_size"],
                                            json.loads(forms.get(r["column_name"]) or "[]"))
            for r in rows
        }

    def put(self, store: str, container: str, signature: str, profiles: dict[str, ColumnProfile]) -> None:
        now = datetime.now(timezone.utc).isoformat(timespec="seconds")
        with self.engine.begin() as conn:
            for t in (inventory_columns, inventory_forms):
                conn.execute(delete(t).where(t.c.store == store, t.c.container == container))
            with_forms = [{"store": store, "container": container, "column_name": col, "forms": json.dumps(p.forms)}
                          for col, p in profiles.items() if p.forms]
            if with_forms:
                conn.execute(inventory_forms.insert(), with_forms)
            if profiles:
                conn.execute(inventory_columns.insert(), [
                    {"store": store, "container": container, "column_name": col, "signature": signature,
                     "kind": p.kind, "entities": json.dumps(sorted(p.entities)), "confidence": p.confidence,
                     "sample_size": p.sample_size, "updated_at": now}
                    for col, p in profiles.items()
                ])

    def rows(self, store: str | None = None) -> list[dict]:
        q = select(inventory_columns)
        if store:
            q = q.where(inventory_columns.c.store == store)
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(q.order_by(
                inventory_columns.c.store, inventory_columns.c.container, inventory_columns.c.column_name)).mappings()]


    # ---- discovery sweeps: per-container change signatures
    def sweep_states(self, store: str) -> dict[str, dict]:
        """container -> its last sweep (change_signature, sample_rows, column_count, rows_sampled, swept_at),
        with ``inventory_columns``: how many column rows the inventory holds for it now."""
        c = inventory_columns.c
        with self.engine.connect() as conn:
            states = {r["container"]: dict(r) for r in conn.execute(
                select(inventory_containers).where(inventory_containers.c.store == store)).mappings()}
            counts = dict(conn.execute(select(c.container, func.count()).where(c.store == store)
                                       .group_by(c.container)).all())
        for container, state in states.items():
            state["inventory_columns"] = counts.get(container, 0)
        return states

    def record_sweep(self, store: str, container: str, *, store_kind: str, change_signature: str,
                     sample_rows: int, column_count: int, rows_sampled: int) -> None:
        now = datetime.now(timezone.utc).isoformat(timespec="seconds")
        t = inventory_containers
        with self.engine.begin() as conn:
            conn.execute(delete(t).where(t.c.store == store, t.c.container == container))
            conn.execute(t.insert(), [{"store": store, "container": container, "store_kind": store_kind,
                                       "change_signature": change_signature, "sample_rows": sample_rows,
                                       "column_count": column_count, "rows_sampled": rows_sampled,
                                       "swept_at": now}])

    def containers(self, store: str) -> set[str]:
        """Containers of `store` the inventory knows (classified columns or a recorded sweep)."""
        with self.engine.connect() as conn:
            known = set(conn.execute(select(inventory_columns.c.container).distinct()
                                     .where(inventory_columns.c.store == store)).scalars())
            known |= set(conn.execute(select(inventory_containers.c.container)
                                      .where(inventory_containers.c.store == store)).scalars())
        return known

    def forget(self, store: str, containers) -> int:
        """Drop what the inventory holds about `containers` of `store` (tables or files that are gone)."""
        containers = list(containers)
        with self.engine.begin() as conn:
            for i in range(0, len(containers), 500):
                chunk = containers[i:i + 500]
                for t in (inventory_columns, inventory_containers, inventory_forms):
                    conn.execute(delete(t).where(t.c.store == store, t.c.container.in_(chunk)))
        return len(containers)

    def sweeps(self, store: str | None = None) -> list[dict]:
        q = select(inventory_containers)
        if store:
            q = q.where(inventory_containers.c.store == store)
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(q.order_by(
                inventory_containers.c.store, inventory_containers.c.container)).mappings()]
