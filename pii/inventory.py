"""The PII inventory: per store / container (table or file) / column, what kind of data it holds.

Access requests reuse it so they do not pay for NER sampling each time; discovery sweeps refresh it.
An entry is valid while the container's signature (its columns and their types) is unchanged.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone

from sqlalchemy import Column, Float, Integer, String, Table, Text, delete, select

from pii.state import metadata, state_engine

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

# Column kinds. Identifier kinds are compared whole; free_text is searched inside.
EMAIL, PHONE, NAME, GIVEN_NAME, FAMILY_NAME, FREE_TEXT, OTHER = (
    "email", "phone", "name", "given_name", "family_name", "free_text", "other")
IDENTIFIER_KINDS = (EMAIL, PHONE, NAME, GIVEN_NAME, FAMILY_NAME)


@dataclass
class ColumnProfile:
    kind: str = OTHER
    entities: list[str] = field(default_factory=list)
    confidence: float = 0.0
    sample_size: int = 0


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
        if not rows or any(r["signature"] != signature for r in rows):
            self.misses += 1
            return None
        self.hits += 1
        return {
            r["column_name"]: ColumnProfile(r["kind"], json.loads(r["entities"]), r["confidence"], r["sample_size"])
            for r in rows
        }

    def put(self, store: str, container: str, signature: str, profiles: dict[str, ColumnProfile]) -> None:
        now = datetime.now(timezone.utc).isoformat(timespec="seconds")
        with self.engine.begin() as conn:
            conn.execute(delete(inventory_columns).where(
                inventory_columns.c.store == store, inventory_columns.c.container == container))
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


def profile_dict(p: ColumnProfile) -> dict:
    return asdict(p)
