"""The ledger's tables in Lethe's state database, the triggers that keep its audit trail append-only, their
creation on first use, and the two row lookups (a request, a plan) that several stores share."""
from __future__ import annotations

from sqlalchemy import DDL, Column, Index, Integer, String, Table, Text, event, select
from sqlalchemy.engine import Engine

from pii.core.errors import LedgerError
from pii.state.db import create_tables, metadata

ledger_meta = Table(
    "ledger_meta", metadata,
    Column("name", String(100), primary_key=True),
    Column("value", String(200), nullable=False),
)

ledger_requests = Table(
    "ledger_requests", metadata,
    Column("request_id", String(64), primary_key=True),
    Column("kind", String(40), nullable=False),
    Column("requester_hash", String(80), nullable=False),
    Column("region", String(8), nullable=False),
    Column("received_at", String(10), nullable=False),
    Column("due_at", String(10), nullable=False),
    Column("status", String(20), nullable=False),
    Column("created_at", String(32), nullable=False),
    Column("updated_at", String(32), nullable=False),
)

ledger_request_identifiers = Table(
    "ledger_request_identifiers", metadata,
    Column("request_id", String(64), primary_key=True),
    Column("kind", String(100), primary_key=True),
    Column("hash", String(64), primary_key=True),
    Index("ix_ledger_request_identifiers_hash", "kind", "hash"),
)

ledger_plans = Table(
    "ledger_plans", metadata,
    Column("plan_id", String(64), primary_key=True),
    Column("request_id", String(64), nullable=False, index=True),
    Column("state", String(20), nullable=False),
    Column("plan_json", Text, nullable=False),
    Column("digest", String(64), nullable=False),
    Column("action_count", Integer, nullable=False),
    Column("created_at", String(32), nullable=False),
    Column("expires_at", String(32), nullable=False),
    Column("updated_at", String(32), nullable=False),
    Column("decided_by", String(200)),
    Column("decided_at", String(32)),
    Column("decision_reason", String(1000)),
)

ledger_plan_actions = Table(
    "ledger_plan_actions", metadata,
    Column("plan_id", String(64), primary_key=True),
    Column("action_id", String(200), primary_key=True),
    Column("seq", Integer, nullable=False),
)

ledger_actions = Table(
    "ledger_actions", metadata,
    Column("plan_id", String(64), primary_key=True),
    Column("action_id", String(200), primary_key=True),
    Column("state", String(20), nullable=False),
    Column("rows", Integer),
    Column("detail", Text),
    Column("attempts", Integer, nullable=False),
    Column("started_at", String(32)),
    Column("finished_at", String(32)),
    Column("updated_at", String(32), nullable=False),
)

ledger_locks = Table(
    "ledger_locks", metadata,
    Column("name", String(200), primary_key=True),
    Column("owner", String(200), nullable=False),
    Column("acquired_at", String(32), nullable=False),
    Column("expires_at", String(32), nullable=False),
)

ledger_suppression = Table(
    "ledger_suppression", metadata,
    Column("kind", String(100), primary_key=True),
    Column("hash", String(64), primary_key=True),
    Column("reason", String(1000), nullable=False),
    Column("request_id", String(64)),
    Column("created_at", String(32), nullable=False),
)

# Addresses a controller chose to keep beside their suppression hashes (e.g. unsubscribed addresses, so a
# mailing tool can drop them from any list): a deliberate retention under legitimate interest, encrypted.
ledger_suppressed_addresses = Table(
    "ledger_suppressed_addresses", metadata,
    Column("hash", String(64), primary_key=True),
    Column("sealed", Text, nullable=False),
    Column("reason", String(1000), nullable=False),
    Column("created_at", String(32), nullable=False),
)

ledger_events = Table(
    "ledger_events", metadata,
    Column("event_id", Integer, primary_key=True, autoincrement=True),
    Column("ts", String(32), nullable=False),
    Column("request_id", String(64), index=True),
    Column("plan_id", String(64), index=True),
    Column("event", String(40), nullable=False),
    Column("actor", String(200)),
    Column("details", Text, nullable=False),
)

# The request store: a request's identifiers, encrypted with a key derived from the ledger key, so a plan
# can be executed by id (after a second person's approval, or by an Airflow task) without the identifiers
# passing through the command line or Airflow's metadata. Deleted (crypto-shredded) once a request is done.
ledger_request_secrets = Table(
    "ledger_request_secrets",
    metadata,
    Column("request_id", String(64), primary_key=True),
    Column("sealed", Text, nullable=False),
    Column("created_at", String(32), nullable=False),
)

# Legal holds on a subject (keyed hashes of identifiers): while one is active, no erasure of that subject runs.
ledger_holds = Table(
    "ledger_holds",
    metadata,
    Column("kind", String(100), primary_key=True),
    Column("hash", String(64), primary_key=True),
    Column("reason", String(1000), nullable=False),
    Column("created_at", String(32), nullable=False),
)

# The keyed hash chain over the audit events (issue 12): one row per event, its HMAC (ledger key) over the
# previous chained event's HMAC and the event's own fields; the head row (id 1) names the last chained event,
# so dropping events at the end shows too. Events older than `first_event_id` predate the chain.
ledger_event_chain = Table(
    "ledger_event_chain",
    metadata,
    Column("event_id", Integer, primary_key=True, autoincrement=False),
    Column("mac", String(64), nullable=False),
)
ledger_chain_head = Table(
    "ledger_chain_head",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("first_event_id", Integer, nullable=False),
    Column("event_id", Integer, nullable=False),
    Column("mac", String(64), nullable=False),
    Column("count", Integer, nullable=False),
)

# Sealed notes (pii/ledger/notes.py): free text people type (requester, reasons), encrypted, shreddable.
ledger_notes = Table(
    "ledger_notes",
    metadata,
    Column("note_id", String(64), primary_key=True),
    Column("request_id", String(64), index=True),
    Column("purpose", String(40), nullable=False),
    Column("sealed", Text, nullable=False),
    Column("created_at", String(32), nullable=False),
)

# A request's terms beside its row (issue 14): an extended due date (calendar months, at most two) and the
# requester's identity verification (method, who, when; the note sealed in ledger_notes).
ledger_request_terms = Table(
    "ledger_request_terms",
    metadata,
    Column("request_id", String(64), primary_key=True),
    Column("extension_months", Integer, nullable=False),
    Column("extended_to", String(10)),
    Column("identity", String(20), nullable=False),
    Column("identity_method", String(40)),
    Column("identity_by", String(200)),
    Column("identity_at", String(32)),
    Column("updated_at", String(32), nullable=False),
)

# Restrictions of processing and objections (issue 14; pii/ledger/restrictions.py): keyed hashes of a subject's
# identifiers per purpose ("restriction" holds every flow; "marketing", "profiling", "analytics" are objections),
# the reason a sealed note id, an optional last day (YYYY-MM-DD) after which a restriction lapses.
ledger_restrictions = Table(
    "ledger_restrictions",
    metadata,
    Column("kind", String(100), primary_key=True),
    Column("hash", String(64), primary_key=True),
    Column("purpose", String(40), primary_key=True),
    Column("reason", String(1000), nullable=False),
    Column("since", String(32), nullable=False),
    Column("until", String(10)),
    Column("created_at", String(32), nullable=False),
)

LEDGER_TABLES = (ledger_meta, ledger_requests, ledger_request_identifiers, ledger_plans, ledger_plan_actions,
                 ledger_actions, ledger_locks, ledger_suppression, ledger_events, ledger_request_secrets,
                 ledger_holds, ledger_suppressed_addresses, ledger_event_chain, ledger_chain_head, ledger_notes,
                 ledger_request_terms, ledger_restrictions)

# The audit trail is append-only in the database too, not only in this API (SQLite and PostgreSQL).
for _ddl in (
    "CREATE TRIGGER IF NOT EXISTS ledger_events_no_update BEFORE UPDATE ON ledger_events "
    "BEGIN SELECT RAISE(ABORT, 'ledger_events is append-only'); END",
    "CREATE TRIGGER IF NOT EXISTS ledger_events_no_delete BEFORE DELETE ON ledger_events "
    "BEGIN SELECT RAISE(ABORT, 'ledger_events is append-only'); END",
):
    event.listen(ledger_events, "after_create", DDL(_ddl).execute_if(dialect="sqlite"))
    event.listen(ledger_event_chain, "after_create", DDL(_ddl.replace("ledger_events", "ledger_event_chain")
                                                        ).execute_if(dialect="sqlite"))
for _ddl in (
    "CREATE OR REPLACE FUNCTION ledger_events_append_only() RETURNS trigger AS $$ "
    "BEGIN RAISE EXCEPTION 'ledger_events is append-only'; END; $$ LANGUAGE plpgsql",
    "CREATE TRIGGER ledger_events_no_change BEFORE UPDATE OR DELETE ON ledger_events "
    "FOR EACH ROW EXECUTE FUNCTION ledger_events_append_only()",
    "CREATE TRIGGER ledger_events_no_truncate BEFORE TRUNCATE ON ledger_events "
    "FOR EACH STATEMENT EXECUTE FUNCTION ledger_events_append_only()",
):
    event.listen(ledger_events, "after_create", DDL(_ddl).execute_if(dialect="postgresql"))
    event.listen(ledger_event_chain, "after_create", DDL(
        _ddl.replace("ON ledger_events", "ON ledger_event_chain").replace("ledger_events_no_", "ledger_event_chain_no_")
    ).execute_if(dialect="postgresql"))

_ready_urls: set[str] = set()


def ensure_tables(url: str, engine: Engine) -> None:
    """state_engine creates the tables declared when it first sees a URL; this module may be imported later."""
    if url in _ready_urls:
        return
    create_tables(engine, tables=list(LEDGER_TABLES))
    _ready_urls.add(url)


def request_row(engine: Engine, request_id: str):
    """The request's row (LedgerError when it is not in the ledger)."""
    with engine.connect() as conn:
        row = conn.execute(select(ledger_requests).where(
            ledger_requests.c.request_id == request_id)).mappings().first()
    if row is None:
        raise LedgerError(f"request {request_id} is not in the ledger")
    return row


def plan_row(engine: Engine, plan_id: str):
    """The plan's row (LedgerError when it is not in the ledger)."""
    with engine.connect() as conn:
        row = conn.execute(select(ledger_plans).where(ledger_plans.c.plan_id == plan_id)).mappings().first()
    if row is None:
        raise LedgerError(f"plan {plan_id} is not in the ledger")
    return row
