"""The erasure ledger: requests, plans, approvals, per-action progress, locks, the suppression list and an
append-only audit trail, kept in Lethe's state database (any SQLAlchemy URL: SQLite by default,
PostgreSQL when workers on several hosts share it).

Why it is shaped this way:

- Crash safety. Every write is committed before the call returns, and every state change is a
  compare-and-set (``UPDATE ... WHERE state = <expected>``), so a re-run after ``kill -9`` sees exactly
  which actions were done, and two workers can never both move the same plan or action.
- No personal values. Identifiers, the requester and personal parts of locations are stored only as
  keyed hashes (HMAC-SHA256). Free text (action details, reasons) is screened: e-mail addresses and
  phone numbers are masked, and a text that still names the subject is withheld. A plan that still
  holds one of the subject's identifiers is refused (pass locations through `Ledger.protect_location`).
- One key per ledger. It comes from ``LETHE_LEDGER_KEY``; a SQLite ledger without it gets a random key
  kept in ``ledger.key`` (mode 0600) beside the database. The ledger stores a check value of its key and
  refuses another key, because hashes made with a different key would silently never match.

Resuming after a crash: `claim_execution` takes the plan's lock (``plan:<id>``) and either starts the
plan or, when it is already ``executing`` and its previous owner's lock has expired, resumes it;
`pending_actions` then lists exactly the actions that are not done or skipped. A caller that knows a
lock's owner is gone (a crashed process on its own host) need not wait for the expiry: `break_lock`.
"""
from __future__ import annotations

import calendar
import csv
import hashlib
import hmac
import json
import logging
import os
import random
import re
import secrets
import tempfile
import time
import uuid
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

import phonenumbers
from sqlalchemy import DDL, Column, Index, Integer, String, Table, Text, event, insert, select, update
from sqlalchemy import delete as sql_delete
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError

from pii.errors import LedgerError
from pii.state import metadata, state_engine
from pii.subject import (
    DEFAULT_REGION,
    EMAIL_RE,
    Subject,
    fold,
    name_key,
    normalise_email,
    normalise_id,
    normalise_phone,
)

log = logging.getLogger(__name__)

KEY_ENV = "LETHE_LEDGER_KEY"
KEY_FILE = "ledger.key"
MIN_ENV_KEY_CHARS = 32
MIN_KEY_BYTES = 16

# --------------------------------------------------------------------------- states
PLANNED, APPROVED, REJECTED, EXPIRED = "planned", "approved", "rejected", "expired"
EXECUTING, EXECUTED, FAILED, VERIFIED = "executing", "executed", "failed", "verified"
PLAN_STATES = (PLANNED, APPROVED, REJECTED, EXPIRED, EXECUTING, EXECUTED, FAILED, VERIFIED)
# A failed plan may be executed again (its pending actions only) until it expires.
PLAN_TRANSITIONS: dict[str, frozenset[str]] = {
    PLANNED: frozenset({APPROVED, REJECTED, EXPIRED}),
    APPROVED: frozenset({EXECUTING, EXPIRED}),
    EXECUTING: frozenset({EXECUTED, FAILED}),
    FAILED: frozenset({EXECUTING, EXPIRED}),
    EXECUTED: frozenset({VERIFIED}),
}
_TIME_LIMITED = (APPROVED, EXECUTING)  # moves that are refused once the plan has expired

STARTED, DONE, SKIPPED, ACTION_FAILED, DRIFTED = "started", "done", "skipped", "failed", "drifted"
ACTION_STATES = (STARTED, DONE, SKIPPED, ACTION_FAILED, DRIFTED)
ACTION_FINAL = (DONE, SKIPPED)  # never run again

REQUEST_STATUSES = ("open", "in_progress", "completed", "refused", "withdrawn")

_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:\-]{0,63}$")
_KIND_RE = re.compile(r"^[a-z][a-z0-9_\-]{0,39}$")
_HMAC_RE = re.compile(r"^hmac:[0-9a-f]{64}$")
_WITHHELD = "[withheld: it named the subject]"
_DETAIL_LIMIT = 1000

# --------------------------------------------------------------------------- tables
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

LEDGER_TABLES = (ledger_meta, ledger_requests, ledger_request_identifiers, ledger_plans, ledger_plan_actions,
                 ledger_actions, ledger_locks, ledger_suppression, ledger_events, ledger_request_secrets,
                 ledger_holds, ledger_suppressed_addresses)

# The audit trail is append-only in the database too, not only in this API (SQLite and PostgreSQL).
for _ddl in (
    "CREATE TRIGGER IF NOT EXISTS ledger_events_no_update BEFORE UPDATE ON ledger_events "
    "BEGIN SELECT RAISE(ABORT, 'ledger_events is append-only'); END",
    "CREATE TRIGGER IF NOT EXISTS ledger_events_no_delete BEFORE DELETE ON ledger_events "
    "BEGIN SELECT RAISE(ABORT, 'ledger_events is append-only'); END",
):
    event.listen(ledger_events, "after_create", DDL(_ddl).execute_if(dialect="sqlite"))
for _ddl in (
    "CREATE OR REPLACE FUNCTION ledger_events_append_only() RETURNS trigger AS $$ "
    "BEGIN RAISE EXCEPTION 'ledger_events is append-only'; END; $$ LANGUAGE plpgsql",
    "CREATE TRIGGER ledger_events_no_change BEFORE UPDATE OR DELETE ON ledger_events "
    "FOR EACH ROW EXECUTE FUNCTION ledger_events_append_only()",
    "CREATE TRIGGER ledger_events_no_truncate BEFORE TRUNCATE ON ledger_events "
    "FOR EACH STATEMENT EXECUTE FUNCTION ledger_events_append_only()",
):
    event.listen(ledger_events, "after_create", DDL(_ddl).execute_if(dialect="postgresql"))

_ready_urls: set[str] = set()
_memory_keys: dict[str, bytes] = {}


def _ensure_tables(url: str, engine: Engine) -> None:
    """state_engine creates the tables declared when it first sees a URL; this module may be imported later."""
    if url in _ready_urls:
        return
    for attempt in range(3):
        try:
            metadata.create_all(engine, tables=list(LEDGER_TABLES))
            break
        except (OperationalError, ProgrammingError, IntegrityError):  # another process created them meanwhile
            if attempt == 2:
                raise
            time.sleep(0.2)
    _ready_urls.add(url)


# --------------------------------------------------------------------------- helpers
def _iso(ts: datetime) -> str:
    """Fixed-width UTC text: compares in SQL like the instants it names, on every backend."""
    return ts.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse_iso(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)


def due_date(received: date, months: int = 1) -> date:
    """One calendar month after receipt (GDPR Art. 12(3)); the last day of a shorter month if needed."""
    index = received.month - 1 + months
    year, month = received.year + index // 12, index % 12 + 1
    return date(year, month, min(received.day, calendar.monthrange(year, month)[1]))


def _kind(kind: str) -> str:
    k = str(kind).strip()
    if k.lower().startswith("id:") and len(k) > 3:
        return "id:" + k[3:].strip().casefold()
    if k in ("email", "phone", "name"):
        return k
    raise LedgerError(f"unknown identifier kind {k[:40]!r}: use email, phone, name or id:<key>")


def canonical_identifier(kind: str, value, region: str = DEFAULT_REGION) -> str:
    """The form of an identifier that is hashed: two spellings of one identifier give one hash."""
    kind = _kind(kind)
    text = "" if value is None else str(value)
    if kind == "email":
        return normalise_email(text) or text.strip().casefold()
    if kind == "phone":
        return normalise_phone(text, region) or text.strip()
    if kind == "name":
        key = name_key(text)
        return " ".join(sorted(key)) if key else text.strip().casefold()
    return normalise_id(text)


def subject_identifiers(subject: Subject) -> list[tuple[str, str]]:
    """(kind, canonical value) of every identifier of a subject, without repeats."""
    out: set[tuple[str, str]] = set()
    for e in subject.emails:
        out.add(("email", canonical_identifier("email", e, subject.region)))
    for p in subject.phones:
        out.add(("phone", canonical_identifier("phone", p, subject.region)))
    for n in subject.names:
        out.add(("name", canonical_identifier("name", n, subject.region)))
    for key, values in subject.ids.items():
        for v in values:
            out.add((_kind("id:" + key), normalise_id(v)))
    return sorted(out)


def _check_id(what: str, value) -> str:
    if not isinstance(value, str) or not _ID_RE.match(value):
        raise LedgerError(f"{what} must be 1-64 letters, digits, '.', '_', ':' or '-', starting with a letter or digit")
    return value


def _aware(what: str, value) -> datetime:
    if not isinstance(value, datetime) or value.tzinfo is None or value.utcoffset() is None:
        raise LedgerError(f"{what} must be a timezone-aware datetime")
    return value


# --------------------------------------------------------------------------- the key
def _resolve_key(url: str, key: bytes | str | None) -> bytes:
    if key is not None:
        raw = key.encode("utf-8") if isinstance(key, str) else bytes(key)
        if len(raw) < MIN_KEY_BYTES:
            raise LedgerError(f"the ledger key must be at least {MIN_KEY_BYTES} bytes")
        return raw
    env = os.environ.get(KEY_ENV, "").strip()
    if env:
        if len(env) < MIN_ENV_KEY_CHARS:
            raise LedgerError(f"{KEY_ENV} must be at least {MIN_ENV_KEY_CHARS} characters "
                              f"(for example the output of: python -c 'import secrets; print(secrets.token_hex(32))')")
        return env.encode("utf-8")
    u = make_url(url)
    backend = u.get_backend_name()
    if backend != "sqlite":
        raise LedgerError(
            f"{KEY_ENV} is not set: a {backend} ledger is shared by several hosts, and every host must hash "
            f"identifiers with the same secret; set {KEY_ENV} to one value (32+ characters) on all of them")
    db = u.database or ""
    if not db or db == ":memory:" or db.startswith("file::memory:") or u.query.get("mode") == "memory":
        # An in-memory ledger dies with the process; so may its key.
        return _memory_keys.setdefault(url, secrets.token_hex(32).encode("ascii"))
    return _key_file(Path(db).resolve().parent / KEY_FILE)


def _key_file(path: Path) -> bytes:
    """Read `path`, creating it first (mode 0600, atomically: never half-written) if it does not exist."""
    for _ in range(3):
        try:
            text = path.read_text(encoding="ascii").strip()
        except FileNotFoundError:
            _create_key_file(path)
            continue
        except (OSError, UnicodeDecodeError) as exc:
            raise LedgerError(f"ledger key file {path} cannot be read: {exc.__class__.__name__}") from None
        if not text:
            raise LedgerError(f"ledger key file {path} is empty; restore it or set {KEY_ENV}")
        if os.name == "posix" and path.stat().st_mode & 0o077:
            log.warning("ledger key file %s is readable by other users; run chmod 600 on it", path)
        return text.encode("ascii")
    raise LedgerError(f"ledger key file {path} cannot be created")


def _create_key_file(path: Path) -> None:
    try:
        fd, tmp = tempfile.mkstemp(prefix=".ledger.key.", dir=path.parent)  # mkstemp makes it 0600
    except OSError as exc:
        raise LedgerError(f"ledger key file cannot be created in {path.parent}: {exc.__class__.__name__}") from None
    try:
        try:
            os.write(fd, (secrets.token_hex(32) + "\n").encode("ascii"))
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)  # fails if another process made it first: theirs wins
        except FileExistsError:
            pass
    finally:
        os.unlink(tmp)


# --------------------------------------------------------------------------- screening
# Strings Lethe itself makes (keyed hashes, fingerprints, ids): nothing personal can be inside them.
_OPAQUE_RE = re.compile(r"^(?:hmac:|act-|plan-|req-|expect:)?[0-9a-p]{32,}$")
class _Screen:
    """Recognises one subject's identifiers, known only as hashes, in values about to be stored."""

    def __init__(self, mac: Callable[[str, str], str], hashes: Iterable[tuple[str, str]], region: str):
        self._mac = mac
        self.hashes = set(hashes)
        kinds = {k for k, _ in self.hashes}
        self.emails, self.phones, self.names = "email" in kinds, "phone" in kinds, "name" in kinds
        self.id_kinds = sorted(k for k in kinds if k.startswith("id:"))
        self.region = region
        self._memo: dict = {}

    def _hit(self, kind: str, canonical: str) -> bool:
        return (kind, self._mac(kind, canonical)) in self.hashes

    def find(self, value) -> str | None:
        """The kind of the subject's identifier that `value` holds, whole or inside it; else None."""
        if value is None or isinstance(value, bool) or not self.hashes:
            return None
        if isinstance(value, str) and _OPAQUE_RE.match(value):
            return None  # a keyed hash or an id Lethe made: holds no identifier
        key = (type(value), value)
        if key not in self._memo:
            if len(self._memo) > 100_000:
                self._memo.clear()
            self._memo[key] = self._find(value)
        return self._memo[key]

    def _find(self, value) -> str | None:
        if isinstance(value, int):
            text = str(value)
        elif isinstance(value, str):
            text = value[:5000]
            found = self._find_in_text(text)
            if found:
                return found
        else:
            return None
        if self.id_kinds:
            parts = re.split(r"[\s,;()\[\]{}<>\"'=/|]+", text) + re.split(r"[^\w\-]+|_", text)
            candidates = {normalise_id(text)} | {normalise_id(t) for t in parts if t}
            for kind in self.id_kinds:
                if any(self._hit(kind, c) for c in candidates):
                    return kind
        return None

    def _find_in_text(self, text: str) -> str | None:
        if self.emails and "@" in text:
            for m in EMAIL_RE.finditer(text):
                local, _, domain = m.group(0).casefold().rpartition("@")
                # "/in/alice@example.org.csv" holds "alice@example.org": a local part may contain "/" and the
                # like, and a file suffix reads as one more domain label.
                locals_ = {local} | {local[i + 1:] for i, c in enumerate(local) if c in "/=|{}`'!#$%&*?^~"}
                domains = [domain]
                while "." in domains[-1].rsplit(".", 1)[0]:
                    domains.append(domains[-1].rsplit(".", 1)[0])
                if any(self._hit("email", f"{lp}@{d}") for lp in locals_ if lp for d in domains):
                    return "email"
        if self.phones and sum(c.isdigit() for c in text) >= 6:
            if len(text) <= 40:
                whole = normalise_phone(text, self.region)
                if whole and self._hit("phone", whole):
                    return "phone"
            for m in phonenumbers.PhoneNumberMatcher(text, self.region, leniency=phonenumbers.Leniency.POSSIBLE):
                if self._hit("phone", phonenumbers.format_number(m.number, phonenumbers.PhoneNumberFormat.E164)):
                    return "phone"
        if self.names:
            # Not name_tokens: its "Last, First" reordering would split the pair; windows are unordered anyway.
            toks = [t for t in (t.replace("'", "") for t in re.split(r"[^\w']+|_", fold(text))) if len(t) >= 2]
            for size in range(1, min(5, len(toks)) + 1):
                for i in range(len(toks) - size + 1):
                    if self._hit("name", " ".join(sorted(set(toks[i:i + size])))):
                        return "name"
        return None

    def check_json(self, obj, path: str, on_hit: Callable[[str, str], None]) -> None:
        if isinstance(obj, Mapping):
            for k, v in obj.items():
                kind = self.find(str(k))
                if kind:
                    on_hit(kind, f"{path} (a key)")
                self.check_json(v, f"{path}.{k}", on_hit)
        elif isinstance(obj, (list, tuple)):
            for i, v in enumerate(obj):
                self.check_json(v, f"{path}[{i}]", on_hit)
        else:
            kind = self.find(obj)
            if kind:
                on_hit(kind, path)


def _mask_contacts(text: str, region: str) -> str:
    """Any e-mail address or phone number, the subject's or anyone's, masked."""
    text = EMAIL_RE.sub("[email]", text)
    if sum(c.isdigit() for c in text) >= 6:
        spans = [(m.start, m.end) for m in
                 phonenumbers.PhoneNumberMatcher(text, region, leniency=phonenumbers.Leniency.POSSIBLE)]
        for start, end in reversed(spans):
            text = text[:start] + "[phone]" + text[end:]
    return text


# --------------------------------------------------------------------------- the ledger
class Ledger:
    """The erasure ledger on one state database. Safe to use from several threads, processes and hosts."""

    def __init__(self, url: str, *, key: bytes | str | None = None,
                 clock: Callable[[], datetime] | None = None):
        self.url = url
        self.engine = state_engine(url)
        self._clock = clock or (lambda: datetime.now(timezone.utc))
        _ensure_tables(url, self.engine)
        self._key = _resolve_key(url, key)
        self._check_key()

    # ---- keys and hashes
    def _check_key(self) -> None:
        check = hmac.new(self._key, b"lethe-ledger:key-check", hashlib.sha256).hexdigest()[:32]
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(ledger_meta).values(name="key_check", value=check))
        except IntegrityError:
            pass
        with self.engine.connect() as conn:
            stored = conn.execute(select(ledger_meta.c.value).where(ledger_meta.c.name == "key_check")).scalar_one()
        if not hmac.compare_digest(stored, check):
            raise LedgerError(f"this ledger's hashes were made with another key: set {KEY_ENV} (or restore "
                              f"{KEY_FILE}) to the key the ledger was created with")

    def _mac(self, domain: str, value: str) -> str:
        return hmac.new(self._key, f"lethe-ledger:v1:{domain}\x00{value}".encode("utf-8"), hashlib.sha256).hexdigest()

    def hash_identifier(self, kind: str, value, region: str = DEFAULT_REGION) -> str:
        """Keyed hash of an identifier (normalised first): what the ledger stores instead of the value.
        Build lock names such as ``"subject:" + hash_identifier("email", e)`` from it."""
        kind = _kind(kind)
        return self._mac(kind, canonical_identifier(kind, value, region))

    def _subject_hashes(self, subject: Subject) -> list[tuple[str, str]]:
        if not isinstance(subject, Subject) or subject.is_empty():
            raise LedgerError("a subject with at least one identifier is required")
        return sorted({(k, self._mac(k, v)) for k, v in subject_identifiers(subject)})

    def _actor_hash(self, who: str) -> str:
        return "hmac:" + self._mac("requester", str(who).strip().casefold())

    def protect_value(self, value) -> str | None:
        """``"hmac:<hex>"`` for a personal value: equal values give equal strings, so locations still compare."""
        if value is None or (isinstance(value, str) and _HMAC_RE.match(value)):
            return value
        return "hmac:" + self._mac("location", json.dumps(value, sort_keys=True, default=str, ensure_ascii=False))

    def protect_location(self, location: Mapping, personal_keys: Iterable[str]) -> dict:
        """A copy of `location` whose values under any of `personal_keys` (at any depth) are keyed hashes:
        e.g. ``protect_location({"table": "t", "key": {"email": "..."}}, {"email"})`` or ``{"file"}`` for a
        file named after the person. Idempotent."""
        keys = set(personal_keys)

        def walk(obj):
            if isinstance(obj, Mapping):
                return {k: (self.protect_value(v) if k in keys else walk(v)) for k, v in obj.items()}
            if isinstance(obj, (list, tuple)):
                return [walk(v) for v in obj]
            return obj

        return walk(location)

    # ---- small internals
    def _now(self) -> datetime:
        now = self._clock()
        return now if now.tzinfo else now.replace(tzinfo=timezone.utc)

    def _event(self, conn, name: str, *, request_id=None, plan_id=None, actor=None, details=None,
               now: datetime | None = None) -> None:
        conn.execute(insert(ledger_events).values(
            ts=_iso(now or self._now()), request_id=request_id, plan_id=plan_id, event=name,
            actor=None if actor is None else str(actor)[:200],
            details=json.dumps(details or {}, sort_keys=True, default=str)))

    def _request_row(self, request_id: str):
        with self.engine.connect() as conn:
            row = conn.execute(select(ledger_requests).where(
                ledger_requests.c.request_id == request_id)).mappings().first()
        if row is None:
            raise LedgerError(f"request {request_id} is not in the ledger")
        return row

    def _request_hashes(self, request_id: str) -> list[tuple[str, str]]:
        t = ledger_request_identifiers
        with self.engine.connect() as conn:
            return sorted((r.kind, r.hash) for r in conn.execute(
                select(t.c.kind, t.c.hash).where(t.c.request_id == request_id)))

    def _screen_for_request(self, request_id: str | None) -> _Screen:
        if not request_id:
            return _Screen(self._mac, (), DEFAULT_REGION)
        row = self._request_row(request_id)
        return _Screen(self._mac, self._request_hashes(request_id), row["region"])

    def _scrub(self, text, screen: _Screen, limit: int = _DETAIL_LIMIT) -> str | None:
        if text is None:
            return None
        masked = _mask_contacts(str(text)[:limit * 4], screen.region)
        if screen.find(masked):
            return _WITHHELD
        return masked[:limit]

    def _safe_actor(self, actor, screen: _Screen) -> str | None:
        """Approvers and workers are recorded by name, unless the name is one of the subject's identifiers."""
        if actor is None:
            return None
        actor = str(actor).strip()[:200]
        return self._actor_hash(actor) if screen.find(actor) else actor

    def _plan_row(self, plan_id: str):
        with self.engine.connect() as conn:
            row = conn.execute(select(ledger_plans).where(ledger_plans.c.plan_id == plan_id)).mappings().first()
        if row is None:
            raise LedgerError(f"plan {plan_id} is not in the ledger")
        return row

    # ---- requests
    def create_request(self, kind: str, subject: Subject, requester: str, received_at: date | None = None,
                       request_id: str | None = None, *, due_in_days: int | None = None) -> str:
        """Register a request; returns its id. Idempotent on `request_id`: a repeat with the same kind and
        identifiers returns the same id and changes nothing; with others it is refused."""
        kind = str(kind).strip().lower()
        if not _KIND_RE.match(kind):
            raise LedgerError("request kind must be a short lower-case word such as 'access' or 'erasure'")
        if not requester or not str(requester).strip():
            raise LedgerError("a request needs a requester")
        hashes = self._subject_hashes(subject)
        if request_id is None:
            request_id = "req-" + uuid.uuid4().hex
        else:
            _check_id("request id", request_id)
            if _Screen(self._mac, hashes, subject.region).find(request_id):
                raise LedgerError("the request id holds one of the subject's identifiers; use an opaque id")
        if received_at is None:
            received = self._now().date()
        elif isinstance(received_at, datetime):
            received = received_at.date()
        elif isinstance(received_at, date):
            received = received_at
        else:
            raise LedgerError("received_at must be a date")
        # one calendar month by default (UK GDPR Art. 12(3)); a flow may promise less (unsubscribe: days)
        due = received + timedelta(days=due_in_days) if due_in_days else due_date(received)
        now = self._now()
        counts: dict[str, int] = {}
        for k, _ in hashes:
            counts[k] = counts.get(k, 0) + 1
        requester_hash = self._actor_hash(requester)
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(ledger_requests).values(
                    request_id=request_id, kind=kind, requester_hash=requester_hash, region=subject.region,
                    received_at=received.isoformat(), due_at=due.isoformat(), status="open",
                    created_at=_iso(now), updated_at=_iso(now)))
                conn.execute(insert(ledger_request_identifiers),
                             [{"request_id": request_id, "kind": k, "hash": h} for k, h in hashes])
                self._event(conn, "request_created", request_id=request_id, actor=requester_hash, now=now,
                            details={"kind": kind, "identifiers": counts, "received_at": received.isoformat(),
                                     "due_at": due.isoformat()})
        except IntegrityError:
            row = self._request_row(request_id)
            if row["kind"] != kind or self._request_hashes(request_id) != hashes:
                raise LedgerError(
                    f"request {request_id} already exists with another kind or other identifiers") from None
            with self.engine.begin() as conn:
                self._event(conn, "request_repeated", request_id=request_id, actor=requester_hash, now=now,
                            details={"kind": kind})
        return request_id

    def get_request(self, request_id: str) -> dict:
        row = dict(self._request_row(request_id))
        row["identifiers"] = [{"kind": k, "hash": h} for k, h in self._request_hashes(request_id)]
        return row

    def requested_by(self, request_id: str, who: str) -> bool:
        """Whether `who` made the request (compared as keyed hashes)."""
        return hmac.compare_digest(self._request_row(request_id)["requester_hash"], self._actor_hash(who))

    def find_requests(self, subject: Subject) -> list[str]:
        """Ids of the requests that share at least one identifier with `subject`, oldest first."""
        hashes = self._subject_hashes(subject)
        t, r = ledger_request_identifiers, ledger_requests
        found: set[str] = set()
        with self.engine.connect() as conn:
            for k, h in hashes:
                found.update(conn.execute(select(t.c.request_id).where(t.c.kind == k, t.c.hash == h)).scalars())
            if not found:
                return []
            rows = conn.execute(select(r.c.request_id).where(r.c.request_id.in_(sorted(found)))
                                .order_by(r.c.created_at, r.c.request_id)).scalars()
            return list(rows)

    def open_requests(self, kinds: Iterable[str]) -> list[str]:
        """Ids of the open requests of these kinds, oldest first."""
        r = ledger_requests
        with self.engine.connect() as conn:
            return list(conn.execute(select(r.c.request_id).where(r.c.kind.in_(list(kinds)), r.c.status == "open")
                                     .order_by(r.c.created_at, r.c.request_id)).scalars())

    def set_request_status(self, request_id: str, status: str, *, actor: str | None = None) -> None:
        if status not in REQUEST_STATUSES:
            raise LedgerError(f"request status must be one of {', '.join(REQUEST_STATUSES)}")
        row = self._request_row(request_id)
        actor = self._safe_actor(actor, self._screen_for_request(request_id))
        now = self._now()
        with self.engine.begin() as conn:
            conn.execute(update(ledger_requests).where(ledger_requests.c.request_id == request_id)
                         .values(status=status, updated_at=_iso(now)))
            self._event(conn, "request_status", request_id=request_id, actor=actor, now=now,
                        details={"from": row["status"], "to": status})

    # ---- plans
    def store_plan(self, request_id: str, plan: dict, expires_at: datetime, *, plan_id: str | None = None,
                   actor: str | None = None) -> str:
        """Store a plan in state `planned`; returns its id. The plan must be JSON and must not hold any of the
        request's identifiers (protect personal locators with `protect_location`). Idempotent on `plan_id`."""
        self._request_row(request_id)
        _aware("expires_at", expires_at)
        if not isinstance(plan, Mapping) or not isinstance(plan.get("actions"), list):
            raise LedgerError(f"a plan for request {request_id} must be a dict with an 'actions' list")
        action_ids: list[str] = []
        seen: set[str] = set()
        for i, action in enumerate(plan["actions"]):
            aid = action.get("action_id") if isinstance(action, Mapping) else None
            if not isinstance(aid, str) or not aid or len(aid) > 200:
                raise LedgerError(
                    f"plan for request {request_id}: actions[{i}] needs an 'action_id' (1-200 characters)")
            if aid in seen:
                raise LedgerError(f"plan for request {request_id}: actions[{i}] repeats an action id")
            seen.add(aid)
            action_ids.append(aid)
        screen = self._screen_for_request(request_id)

        def refuse(kind: str, path: str) -> None:
            raise LedgerError(f"plan for request {request_id} holds the subject's {kind} at {path}; "
                              f"pass personal locators through Ledger.protect_location before storing the plan")

        screen.check_json(plan, "plan", refuse)
        try:
            text = json.dumps(plan, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise LedgerError(f"plan for request {request_id} is not JSON: {exc.__class__.__name__}") from None
        digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
        if plan_id is None:
            plan_id = "plan-" + uuid.uuid4().hex
        else:
            _check_id("plan id", plan_id)
        by_store: dict[str, int] = {}
        for action in plan["actions"]:
            store = action.get("store")
            if isinstance(store, str):
                by_store[store] = by_store.get(store, 0) + 1
        now = self._now()
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(ledger_plans).values(
                    plan_id=plan_id, request_id=request_id, state=PLANNED, plan_json=text, digest=digest,
                    action_count=len(action_ids), created_at=_iso(now), expires_at=_iso(expires_at),
                    updated_at=_iso(now)))
                if action_ids:
                    conn.execute(insert(ledger_plan_actions), [
                        {"plan_id": plan_id, "action_id": a, "seq": i} for i, a in enumerate(action_ids)])
                self._event(conn, "plan_stored", request_id=request_id, plan_id=plan_id, now=now,
                            actor=self._safe_actor(actor, screen),
                            details={"actions": len(action_ids), "by_store": by_store, "state": PLANNED,
                                     "expires_at": _iso(expires_at)})
        except IntegrityError:
            row = self._plan_row(plan_id)
            if row["request_id"] != request_id or row["digest"] != digest:
                raise LedgerError(f"plan {plan_id} already exists with other content") from None
        return plan_id

    def get_plan(self, plan_id: str) -> dict:
        row = dict(self._plan_row(plan_id))
        text = row.pop("plan_json")
        if hashlib.sha256(text.encode("utf-8")).hexdigest() != row["digest"]:
            raise LedgerError(f"plan {plan_id} does not match its digest: the stored plan was altered")
        row["plan"] = json.loads(text)
        return row

    def plan_state(self, plan_id: str) -> str:
        return self._plan_row(plan_id)["state"]

    def _move(self, plan_id: str, expected: Sequence[str], new: str, *, actor, values: dict | None = None,
              details: dict | None = None, digest: str | None = None) -> str:
        """Compare-and-set the plan's state from one of `expected` to `new`; returns the state it left.
        Refuses moves that are not transitions, and time-limited moves on an expired plan (which it marks
        expired)."""
        for e in expected:
            if new not in PLAN_TRANSITIONS.get(e, ()):
                raise LedgerError(f"plan {plan_id}: {e} -> {new} is not a valid transition")
        actor = self._safe_actor(actor, self._screen_for_request(self._plan_row(plan_id)["request_id"]))
        now = self._now()
        p = ledger_plans
        with self.engine.begin() as conn:
            for e in expected:
                stmt = update(p).where(p.c.plan_id == plan_id, p.c.state == e)
                if new in _TIME_LIMITED:
                    stmt = stmt.where(p.c.expires_at >= _iso(now))
                if digest is not None:
                    stmt = stmt.where(p.c.digest == digest)
                if conn.execute(stmt.values(state=new, updated_at=_iso(now), **(values or {}))).rowcount == 1:
                    request_id = conn.execute(select(p.c.request_id).where(p.c.plan_id == plan_id)).scalar_one()
                    self._event(conn, "plan_" + new, request_id=request_id, plan_id=plan_id, actor=actor, now=now,
                                details={"from": e, "to": new, **(details or {})})
                    return e
        row = self._plan_row(plan_id)
        if row["state"] in expected and new in _TIME_LIMITED and row["expires_at"] < _iso(now):
            self._expire(row, actor)
            raise LedgerError(f"plan {plan_id} expired at {row['expires_at']}: it can no longer move to {new}")
        if row["state"] in expected and digest is not None and row["digest"] != digest:
            raise LedgerError(f"plan {plan_id} is not the plan that was reviewed (digest differs)")
        raise LedgerError(f"plan {plan_id} is {row['state']}, not {' or '.join(expected)}: cannot move it to {new}")

    def _expire(self, row, actor) -> bool:
        if EXPIRED not in PLAN_TRANSITIONS.get(row["state"], ()):
            return False
        now = self._now()
        p = ledger_plans
        with self.engine.begin() as conn:
            moved = conn.execute(update(p).where(p.c.plan_id == row["plan_id"], p.c.state == row["state"])
                                 .values(state=EXPIRED, updated_at=_iso(now))).rowcount == 1
            if moved:
                self._event(conn, "plan_expired", request_id=row["request_id"], plan_id=row["plan_id"], actor=actor,
                            now=now, details={"from": row["state"], "to": EXPIRED})
        return moved

    def expire_overdue(self, *, actor: str | None = None) -> list[str]:
        """Mark every plan past its expiry that is still planned, approved or failed as expired."""
        p = ledger_plans
        with self.engine.connect() as conn:
            rows = conn.execute(select(p).where(p.c.state.in_([PLANNED, APPROVED, FAILED]),
                                                p.c.expires_at < _iso(self._now()))).mappings().all()
        return [r["plan_id"] for r in rows if self._expire(r, actor)]

    def approve(self, plan_id: str, approver: str, *, require_distinct_from_requester: bool = False,
                expected_digest: str | None = None) -> None:
        """planned -> approved. With `expected_digest` (from get_plan) the approval only holds for the plan
        the approver saw. A repeat by the same approver is a no-op."""
        if not approver or not str(approver).strip():
            raise LedgerError(f"plan {plan_id}: an approval needs an approver")
        row = self._plan_row(plan_id)
        screen = self._screen_for_request(row["request_id"])
        who = self._safe_actor(approver, screen)
        if require_distinct_from_requester:
            requester_hash = self._request_row(row["request_id"])["requester_hash"]
            if hmac.compare_digest(requester_hash, self._actor_hash(approver)):
                raise LedgerError(f"plan {plan_id}: the approver is the requester; a second person must approve")
        if row["state"] == APPROVED and row["decided_by"] == who:
            return
        self._move(plan_id, (PLANNED,), APPROVED, actor=who, digest=expected_digest,
                   values={"decided_by": who, "decided_at": _iso(self._now())})

    def reject(self, plan_id: str, approver: str, reason: str) -> None:
        """planned -> rejected; nothing in the plan will be carried out."""
        if not approver or not str(approver).strip():
            raise LedgerError(f"plan {plan_id}: a rejection needs an approver")
        row = self._plan_row(plan_id)
        screen = self._screen_for_request(row["request_id"])
        who = self._safe_actor(approver, screen)
        if row["state"] == REJECTED and row["decided_by"] == who:
            return
        self._move(plan_id, (PLANNED,), REJECTED, actor=who,
                   values={"decided_by": who, "decided_at": _iso(self._now()),
                           "decision_reason": self._scrub(reason, screen)})

    def start_execution(self, plan_id: str, actor: str) -> None:
        """approved (or failed, to retry its pending actions) -> executing. Only one worker wins."""
        self._move(plan_id, (APPROVED, FAILED), EXECUTING, actor=actor)

    def claim_execution(self, plan_id: str, owner: str, ttl_seconds: int) -> bool:
        """Take the plan's lock and start it, or resume it when it is `executing` and the worker that
        started it has lost its lock (crashed). False when another live worker holds it."""
        lock = f"plan:{plan_id}"
        if not self.acquire_lock(lock, owner, ttl_seconds):
            return False
        try:
            row = self._plan_row(plan_id)
            if row["state"] in (APPROVED, FAILED):
                self.start_execution(plan_id, owner)
            elif row["state"] == EXECUTING:
                pending = len(self.pending_actions(plan_id))
                with self.engine.begin() as conn:
                    self._event(conn, "plan_resumed", request_id=row["request_id"], plan_id=plan_id, actor=owner,
                                details={"state": EXECUTING, "pending": pending})
            else:
                raise LedgerError(f"plan {plan_id} is {row['state']}: there is nothing to execute")
        except BaseException:
            self.release_lock(lock, owner)
            raise
        return True

    def finish_execution(self, plan_id: str, actor: str, *, success: bool = True) -> None:
        """executing -> executed (every action done or skipped) or failed; releases `actor`'s plan lock."""
        if success:
            pending = self.pending_actions(plan_id)
            if pending:
                raise LedgerError(f"plan {plan_id}: {len(pending)} action(s) are not done or skipped; "
                                  f"it cannot be marked executed")
        counts = self._action_counts(plan_id)
        self._move(plan_id, (EXECUTING,), EXECUTED if success else FAILED, actor=actor, details={"actions": counts})
        try:
            self.release_lock(f"plan:{plan_id}", actor)
        except LedgerError:  # an actor that cannot own a lock holds none
            pass

    def record_verification(self, plan_id: str, actor: str, remaining: int, gaps: list[dict] | None = None) -> str:
        """After execution the subject is located again: `remaining` locations still found. Zero makes the
        plan verified; otherwise it stays executed and the shortfall is recorded. `gaps`: places the second
        search could not (fully) read (pii/coverage.py, names already withheld where personal); recorded with
        the event, so the certificate says what could not be verified. Returns the state."""
        if not isinstance(remaining, int) or remaining < 0:
            raise LedgerError(f"plan {plan_id}: remaining must be a count")
        extra = {"not_verified": list(gaps)} if gaps else {}
        if remaining == 0:
            self._move(plan_id, (EXECUTED,), VERIFIED, actor=actor, details={"remaining": 0, **extra})
            return VERIFIED
        row = self._plan_row(plan_id)
        if row["state"] != EXECUTED:
            raise LedgerError(f"plan {plan_id} is {row['state']}, not executed: it cannot be verified")
        with self.engine.begin() as conn:
            self._event(conn, "verification_failed", request_id=row["request_id"], plan_id=plan_id, actor=actor,
                        details={"remaining": remaining, "state": EXECUTED, **extra})
        return EXECUTED

    def transition(self, plan_id: str, expected: str, new: str, *, actor: str | None = None) -> None:
        """The bare compare-and-set for moves that need no approver: expected -> new. Approval and rejection
        go through `approve` / `reject`; `executed` through `finish_execution`."""
        if expected not in PLAN_STATES or new not in PLAN_STATES:
            raise LedgerError(f"plan {plan_id}: unknown state in {expected} -> {new}")
        if new in (APPROVED, REJECTED, EXECUTED):
            if new not in PLAN_TRANSITIONS.get(expected, ()):
                raise LedgerError(f"plan {plan_id}: {expected} -> {new} is not a valid transition")
            raise LedgerError(f"plan {plan_id}: use approve(), reject() or finish_execution() to move it to {new}")
        self._move(plan_id, (expected,), new, actor=actor)

    # ---- actions
    def _plan_has_action(self, plan_id: str, action_id: str) -> bool:
        t = ledger_plan_actions
        with self.engine.connect() as conn:
            found = conn.execute(select(t.c.seq).where(t.c.plan_id == plan_id, t.c.action_id == action_id)).first()
        return found is not None

    def action_state(self, plan_id: str, action_id: str) -> str | None:
        a = ledger_actions
        with self.engine.connect() as conn:
            return conn.execute(select(a.c.state).where(a.c.plan_id == plan_id, a.c.action_id == action_id)).scalar()

    def mark_action(self, plan_id: str, action_id: str, state: str, rows: int | None = None,
                    detail: str | None = None, *, actor: str | None = None) -> None:
        """Record an action's progress (committed on return). `started` before touching the store, then
        `done` / `skipped` / `failed` / `drifted`. Done and skipped actions are final: marking them again
        with another state raises, so nothing is carried out twice."""
        if state not in ACTION_STATES:
            raise LedgerError(f"plan {plan_id}, action {action_id}: state must be one of {', '.join(ACTION_STATES)}")
        if rows is not None and (not isinstance(rows, int) or isinstance(rows, bool) or rows < 0):
            raise LedgerError(f"plan {plan_id}, action {action_id}: rows must be a count")
        plan = self._plan_row(plan_id)
        if not self._plan_has_action(plan_id, action_id):
            raise LedgerError(f"plan {plan_id} has no action with that id")
        if plan["state"] != EXECUTING:
            raise LedgerError(f"plan {plan_id} is {plan['state']}: actions move only while it is executing")
        screen = self._screen_for_request(plan["request_id"])
        detail = self._scrub(detail, screen)
        actor = self._safe_actor(actor, screen)
        a = ledger_actions
        for attempt in range(100):
            if attempt:  # lost a race with another worker: back off a little, then look again
                time.sleep(random.uniform(0, 0.002 * min(attempt, 20)))
            now = self._now()
            with self.engine.connect() as conn:
                cur = conn.execute(select(a.c.state, a.c.attempts).where(
                    a.c.plan_id == plan_id, a.c.action_id == action_id)).first()
            prev = cur.state if cur else None
            if prev in ACTION_FINAL:
                if prev == state:
                    return
                raise LedgerError(f"plan {plan_id}, action {action_id} is already {prev}: it cannot become {state}")
            values = {"state": state, "rows": rows, "detail": detail, "updated_at": _iso(now)}
            if state == STARTED:
                values["started_at"] = _iso(now)
            else:
                values["finished_at"] = _iso(now)
            try:
                with self.engine.begin() as conn:
                    if cur is None:
                        conn.execute(insert(a).values(plan_id=plan_id, action_id=action_id,
                                                      attempts=1 if state == STARTED else 0, **values))
                    else:
                        values["attempts"] = cur.attempts + (1 if state == STARTED else 0)
                        res = conn.execute(update(a).where(a.c.plan_id == plan_id, a.c.action_id == action_id,
                                                           a.c.state == prev, a.c.attempts == cur.attempts)
                                           .values(**values))
                        if res.rowcount != 1:
                            continue  # another worker moved it: look again
                    self._event(conn, "action_" + state, request_id=plan["request_id"], plan_id=plan_id, actor=actor,
                                now=now, details={"action_id": action_id, "from": prev, "to": state, "rows": rows})
                return
            except IntegrityError:
                continue
        raise LedgerError(f"plan {plan_id}, action {action_id} keeps being changed by another worker")

    def mark_actions(self, plan_id: str, action_ids: Sequence[str], state: str, *,
                     rows: Mapping[str, int] | None = None, details: Mapping[str, str | None] | None = None,
                     actor: str | None = None) -> None:
        """`mark_action` for many actions in one transaction with one audit event (large erasures).
        The same rules: done and skipped are final; the plan must be executing."""
        ids = list(dict.fromkeys(action_ids))
        if not ids:
            return
        if state not in ACTION_STATES:
            raise LedgerError(f"plan {plan_id}: state must be one of {', '.join(ACTION_STATES)}")
        rows = dict(rows or {})
        if any(not isinstance(v, int) or isinstance(v, bool) or v < 0 for v in rows.values()):
            raise LedgerError(f"plan {plan_id}: rows must be counts")
        plan = self._plan_row(plan_id)
        if plan["state"] != EXECUTING:
            raise LedgerError(f"plan {plan_id} is {plan['state']}: actions move only while it is executing")
        screen = self._screen_for_request(plan["request_id"])
        actor = self._safe_actor(actor, screen)
        scrubbed: dict[str | None, str | None] = {None: None}
        clean = {}
        for aid in ids:
            d = (details or {}).get(aid)
            if d not in scrubbed:
                scrubbed[d] = d if _OPAQUE_RE.match(d.split(";", 1)[0]) and ";" not in d else self._scrub(d, screen)
            clean[aid] = scrubbed[d]
        a, pa = ledger_actions, ledger_plan_actions
        now = self._now()
        stamp = "started_at" if state == STARTED else "finished_at"
        with self.engine.begin() as conn:
            known: set[str] = set()
            current: dict[str, tuple[str, int]] = {}
            for i in range(0, len(ids), 500):
                chunk = ids[i:i + 500]
                known.update(conn.execute(select(pa.c.action_id).where(
                    pa.c.plan_id == plan_id, pa.c.action_id.in_(chunk))).scalars())
                for r in conn.execute(select(a.c.action_id, a.c.state, a.c.attempts).where(
                        a.c.plan_id == plan_id, a.c.action_id.in_(chunk))):
                    current[r.action_id] = (r.state, r.attempts)
            if len(known) != len(ids):
                raise LedgerError(f"plan {plan_id} has no action with {len(ids) - len(known)} of those ids")
            new_rows, changed = [], []
            for aid in ids:
                prev = current.get(aid)
                if prev is not None and prev[0] in ACTION_FINAL:
                    if prev[0] == state:
                        continue
                    raise LedgerError(f"plan {plan_id}, action {aid} is already {prev[0]}: it cannot become {state}")
                values = {"state": state, "rows": rows.get(aid), "detail": clean[aid], "updated_at": _iso(now),
                          stamp: _iso(now)}
                if prev is None:
                    new_rows.append({"plan_id": plan_id, "action_id": aid,
                                     "attempts": 1 if state == STARTED else 0, **values})
                else:
                    changed.append({"b_action_id": aid, "b_prev": prev[0],
                                    "attempts": prev[1] + (1 if state == STARTED else 0), **values})
            if new_rows:
                conn.execute(insert(a), new_rows)
            if changed:
                from sqlalchemy import bindparam

                conn.execute(update(a).where(a.c.plan_id == plan_id, a.c.action_id == bindparam("b_action_id"),
                                             a.c.state == bindparam("b_prev")), changed)
            self._event(conn, "actions_" + state, request_id=plan["request_id"], plan_id=plan_id, actor=actor,
                        now=now, details={"to": state, "count": len(new_rows) + len(changed),
                                          "rows": sum(v for v in rows.values()),
                                          "action_ids": [r["action_id"] for r in new_rows]
                                          + [r["b_action_id"] for r in changed]})

    def pending_actions(self, plan_id: str, action_ids: Iterable[str] | None = None) -> list[str]:
        """The actions (of `action_ids`, default every action of the plan in plan order) not done or skipped."""
        a, pa = ledger_actions, ledger_plan_actions
        with self.engine.connect() as conn:
            if action_ids is None:
                action_ids = list(conn.execute(select(pa.c.action_id).where(pa.c.plan_id == plan_id)
                                               .order_by(pa.c.seq)).scalars())
            finished = set(conn.execute(select(a.c.action_id).where(
                a.c.plan_id == plan_id, a.c.state.in_(ACTION_FINAL))).scalars())
        return [aid for aid in action_ids if aid not in finished]

    def actions(self, plan_id: str) -> list[dict]:
        """Progress of every action of the plan, in plan order (state None: never started)."""
        a, pa = ledger_actions, ledger_plan_actions
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(pa.c.action_id, a.c.state, a.c.rows, a.c.detail, a.c.attempts, a.c.started_at,
                       a.c.finished_at, a.c.updated_at)
                .select_from(pa.outerjoin(a, (a.c.plan_id == pa.c.plan_id) & (a.c.action_id == pa.c.action_id)))
                .where(pa.c.plan_id == plan_id).order_by(pa.c.seq)).mappings().all()
        return [dict(r) for r in rows]

    def _action_counts(self, plan_id: str) -> dict[str, int]:
        counts: dict[str, int] = {}
        for r in self.actions(plan_id):
            key = r["state"] or "not_started"
            counts[key] = counts.get(key, 0) + 1
        return counts

    # ---- locks
    @staticmethod
    def _check_lock_args(name: str, owner: str) -> None:
        for what, value in (("lock name", name), ("lock owner", owner)):
            if not isinstance(value, str) or not value.strip() or len(value) > 200:
                raise LedgerError(f"{what} must be 1-200 characters")
            if EMAIL_RE.search(value):
                raise LedgerError(f"{what} must not hold an e-mail address; use Ledger.hash_identifier")

    def acquire_lock(self, name: str, owner: str, ttl_seconds: int) -> bool:
        """True when `owner` now holds lock `name` for `ttl_seconds` (a free lock, an expired one taken over,
        or its own lock renewed); False when another owner holds it."""
        self._check_lock_args(name, owner)
        if not isinstance(ttl_seconds, (int, float)) or ttl_seconds <= 0:
            raise LedgerError(f"lock {name}: ttl_seconds must be positive")
        lk = ledger_locks
        for _ in range(5):
            now = self._now()
            expires = _iso(now + timedelta(seconds=ttl_seconds))
            try:
                with self.engine.begin() as conn:
                    conn.execute(insert(lk).values(name=name, owner=owner, acquired_at=_iso(now), expires_at=expires))
                    self._event(conn, "lock_acquired", actor=owner, now=now, details={"lock": name, "ttl": ttl_seconds})
                return True
            except IntegrityError:
                pass
            with self.engine.connect() as conn:
                cur = conn.execute(select(lk.c.owner, lk.c.expires_at).where(lk.c.name == name)).first()
            if cur is None:
                continue  # released meanwhile: try to insert again
            if cur.owner == owner:
                how, cond = "lock_renewed", (lk.c.owner == owner)
            elif cur.expires_at < _iso(now):
                how, cond = "lock_taken_over", ((lk.c.owner == cur.owner) & (lk.c.expires_at == cur.expires_at)
                                                & (lk.c.expires_at < _iso(now)))
            else:
                return False
            with self.engine.begin() as conn:
                res = conn.execute(update(lk).where(lk.c.name == name, cond)
                                   .values(owner=owner, acquired_at=_iso(now), expires_at=expires))
                if res.rowcount == 1:
                    self._event(conn, how, actor=owner, now=now, details={"lock": name, "ttl": ttl_seconds})
                    return True
            return False  # someone else took it over or renewed it first
        return False

    def release_lock(self, name: str, owner: str) -> bool:
        """Release `name` if `owner` holds it; True when it did."""
        self._check_lock_args(name, owner)
        lk = ledger_locks
        with self.engine.begin() as conn:
            released = conn.execute(sql_delete(lk).where(lk.c.name == name, lk.c.owner == owner)).rowcount == 1
            if released:
                self._event(conn, "lock_released", actor=owner, details={"lock": name})
        return released

    def lock_owner(self, name: str) -> str | None:
        """Who holds lock `name` (expired or not); None when nobody does."""
        lk = ledger_locks
        with self.engine.connect() as conn:
            return conn.execute(select(lk.c.owner).where(lk.c.name == name)).scalar()

    def break_lock(self, name: str, owner: str, *, actor: str, reason: str) -> bool:
        """Remove lock `name` if `owner` still holds it, on behalf of `actor` who knows that owner is gone
        (a crashed process): compare-and-set on the owner, recorded in the audit trail. True when it did."""
        self._check_lock_args(name, owner)
        self._check_lock_args(name, actor)
        lk = ledger_locks
        with self.engine.begin() as conn:
            broken = conn.execute(sql_delete(lk).where(lk.c.name == name, lk.c.owner == owner)).rowcount == 1
            if broken:
                self._event(conn, "lock_broken", actor=actor,
                            details={"lock": name, "owner": owner, "reason": str(reason)[:200]})
        return broken

    # ---- request store (encrypted identifiers)
    def _fernet(self):
        import base64

        from cryptography.fernet import Fernet

        derived = hmac.new(self._key, b"lethe-ledger:v1:request-store", hashlib.sha256).digest()
        return Fernet(base64.urlsafe_b64encode(derived))

    def seal_subject(self, request_id: str, subject: Subject, extra: Mapping | None = None) -> None:
        """Keep the request's identifiers, encrypted, so its plan can later run by id. Idempotent.

        `extra` (JSON): what else a special flow needs to run again and that may be personal (a sender's
        address, an import batch, identifiers to suppress); sealed and shredded with the identifiers."""
        self._request_row(request_id)
        if set(self._subject_hashes(subject)) != set(self._request_hashes(request_id)):
            raise LedgerError(f"request {request_id}: these are not the request's identifiers")
        payload = subject.to_dict()
        if extra is not None:
            payload["_extra"] = dict(extra)
        sealed = self._fernet().encrypt(json.dumps(payload, sort_keys=True).encode("utf-8")).decode()
        now = self._now()
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(ledger_request_secrets).values(
                    request_id=request_id, sealed=sealed, created_at=_iso(now)))
                self._event(conn, "identifiers_sealed", request_id=request_id, now=now, details={})
        except IntegrityError:
            pass  # sealed before

    def is_sealed(self, request_id: str) -> bool:
        """Whether the request store still holds the request's sealed identifiers (not yet shredded)."""
        with self.engine.connect() as conn:
            return conn.execute(select(ledger_request_secrets.c.request_id).where(
                ledger_request_secrets.c.request_id == request_id)).first() is not None

    def unseal_subject(self, request_id: str) -> Subject:
        """The request's identifiers from the request store (LedgerError when shredded or never sealed)."""
        data = self._unseal(request_id)
        data.pop("_extra", None)
        return Subject.from_dict(data)

    def unseal_extra(self, request_id: str) -> dict:
        """The `extra` sealed with the request's identifiers ({} when none)."""
        return dict(self._unseal(request_id).get("_extra") or {})

    def _unseal(self, request_id: str) -> dict:
        from cryptography.fernet import InvalidToken

        with self.engine.connect() as conn:
            sealed = conn.execute(select(ledger_request_secrets.c.sealed).where(
                ledger_request_secrets.c.request_id == request_id)).scalar()
        if sealed is None:
            raise LedgerError(f"request {request_id}: its identifiers are not in the request store "
                              f"(never stored, or shredded after completion); give them again")
        try:
            data = json.loads(self._fernet().decrypt(sealed.encode()))
        except InvalidToken:
            raise LedgerError(f"request {request_id}: the request store cannot be decrypted with this key") from None
        return data

    def shred_subject(self, request_id: str, *, actor: str | None = None) -> bool:
        """Delete the request's encrypted identifiers (hashes stay). True when there were any."""
        with self.engine.begin() as conn:
            gone = conn.execute(sql_delete(ledger_request_secrets).where(
                ledger_request_secrets.c.request_id == request_id)).rowcount == 1
            if gone:
                self._event(conn, "identifiers_shredded", request_id=request_id, actor=actor, details={})
        return gone

    def plans_for(self, request_id: str) -> list[dict]:
        """The request's plans (id, state, created_at, expires_at), oldest first."""
        p = ledger_plans
        with self.engine.connect() as conn:
            rows = conn.execute(select(p.c.plan_id, p.c.state, p.c.created_at, p.c.expires_at, p.c.decided_by)
                                .where(p.c.request_id == request_id).order_by(p.c.created_at, p.c.plan_id))
            return [dict(r._mapping) for r in rows]

    # ---- legal holds on subjects
    def place_hold(self, subject: Subject, reason: str, *, actor: str | None = None) -> int:
        """Put the subject's identifiers under a legal hold; returns how many were new."""
        if not reason or not str(reason).strip():
            raise LedgerError("a legal hold needs a reason")
        hashes = self._subject_hashes(subject)
        screen = _Screen(self._mac, hashes, subject.region)
        reason = self._scrub(reason, screen) or ""
        h = ledger_holds
        now = self._now()
        with self.engine.begin() as conn:
            existing = {(r.kind, r.hash) for r in conn.execute(select(h.c.kind, h.c.hash).where(
                h.c.hash.in_([x for _, x in hashes])))}
            new = [(k, x) for k, x in hashes if (k, x) not in existing]
            if new:
                conn.execute(insert(h), [{"kind": k, "hash": x, "reason": reason, "created_at": _iso(now)}
                                         for k, x in new])
            self._event(conn, "hold_placed", actor=self._safe_actor(actor, screen), now=now,
                        details={"added": len(new)})
        return len(new)

    def release_hold(self, subject: Subject, *, actor: str | None = None) -> int:
        """Lift the legal hold on the subject's identifiers; returns how many were released."""
        hashes = self._subject_hashes(subject)
        screen = _Screen(self._mac, hashes, subject.region)
        h = ledger_holds
        with self.engine.begin() as conn:
            released = 0
            for k, x in hashes:
                released += conn.execute(sql_delete(h).where(h.c.kind == k, h.c.hash == x)).rowcount or 0
            self._event(conn, "hold_released", actor=self._safe_actor(actor, screen), details={"released": released})
        return released

    def holds_on(self, subject: Subject) -> list[dict]:
        """Active holds matching the subject's identifiers (a name alone never matches: names are shared)."""
        hashes = [(k, x) for k, x in self._subject_hashes(subject) if k != "name"]
        h = ledger_holds
        with self.engine.connect() as conn:
            rows = conn.execute(select(h).where(h.c.hash.in_([x for _, x in hashes]))).mappings().all()
        wanted = set(hashes)
        return [{"kind": r["kind"], "reason": r["reason"], "created_at": r["created_at"]}
                for r in rows if (r["kind"], r["hash"]) in wanted]

    # ---- suppression
    def suppress(self, subject: Subject, reason: str, request_id: str | None = None, *,
                 actor: str | None = None, keep_addresses: bool = False) -> int:
        """Add keyed hashes of the subject's identifiers to the suppression list; returns how many were new.
        With `keep_addresses` the e-mail addresses themselves are kept too (encrypted) for mailing tools."""
        hashes = self._subject_hashes(subject)
        if keep_addresses and subject.emails:
            self._keep_addresses(subject, reason)
        if request_id is not None:
            self._request_row(request_id)
        screen = _Screen(self._mac, hashes, subject.region)
        reason = self._scrub(reason or "", screen) or ""
        actor = self._safe_actor(actor, screen)
        s = ledger_suppression
        for _ in range(3):
            now = self._now()
            try:
                with self.engine.begin() as conn:
                    existing = {(r.kind, r.hash) for r in conn.execute(
                        select(s.c.kind, s.c.hash).where(s.c.hash.in_([h for _, h in hashes])))}
                    new = [(k, h) for k, h in hashes if (k, h) not in existing]
                    if new:
                        conn.execute(insert(s), [{"kind": k, "hash": h, "reason": reason, "request_id": request_id,
                                                  "created_at": _iso(now)} for k, h in new])
                    self._event(conn, "suppressed", request_id=request_id, actor=actor, now=now,
                                details={"added": len(new), "already": len(hashes) - len(new)})
                return len(new)
            except IntegrityError:
                continue
        raise LedgerError("the suppression list keeps being changed by another worker")

    def is_suppressed(self, kind: str, normalised_value, *, region: str = DEFAULT_REGION) -> bool:
        """Whether that identifier is on the suppression list (the value is normalised again: any spelling)."""
        kind = _kind(kind)
        h = self._mac(kind, canonical_identifier(kind, normalised_value, region))
        s = ledger_suppression
        with self.engine.connect() as conn:
            return conn.execute(select(s.c.hash).where(s.c.kind == kind, s.c.hash == h)).first() is not None

    def is_subject_suppressed(self, subject: Subject) -> bool:
        """Whether any email, phone or id of the subject is suppressed. A name alone never counts: many
        people share one."""
        return any(self.is_suppressed(k, v, region=subject.region)
                   for k, v in subject_identifiers(subject) if k != "name")

    def suppression_entries(self, subject: Subject) -> list[dict]:
        """The suppression entries (kind, reason, date; no hash) that match the subject's identifiers."""
        hashes = self._subject_hashes(subject)
        s = ledger_suppression
        with self.engine.connect() as conn:
            rows = conn.execute(select(s.c.kind, s.c.hash, s.c.reason, s.c.created_at)
                                .where(s.c.hash.in_([h for _, h in hashes]))).all()
        wanted = set(hashes)
        return [{"kind": r.kind, "reason": r.reason, "created_at": r.created_at}
                for r in rows if (r.kind, r.hash) in wanted and r.kind != "name"]

    def _keep_addresses(self, subject: Subject, reason: str) -> None:
        t = ledger_suppressed_addresses
        now = _iso(self._now())
        with self.engine.begin() as conn:
            for e in subject.emails:
                h = self.hash_identifier("email", e, subject.region)
                if conn.execute(select(t.c.hash).where(t.c.hash == h)).first() is None:
                    sealed = self._fernet().encrypt(canonical_identifier("email", e).encode("utf-8")).decode()
                    conn.execute(insert(t).values(hash=h, sealed=sealed, reason=str(reason)[:1000], created_at=now))
            self._event(conn, "addresses_kept", now=self._now(), details={"count": len(subject.emails)})

    def kept_addresses(self) -> list[dict]:
        """The e-mail addresses kept with their suppression entries (decrypted): hash, address, reason, date."""
        t = ledger_suppressed_addresses
        with self.engine.connect() as conn:
            rows = conn.execute(select(t).order_by(t.c.created_at, t.c.hash)).mappings().all()
        f = self._fernet()
        return [{"hash": r["hash"], "email": f.decrypt(r["sealed"].encode()).decode("utf-8"), "reason": r["reason"],
                 "created_at": r["created_at"]} for r in rows]

    def export_suppression(self) -> list[dict]:
        s = ledger_suppression
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(select(s).order_by(s.c.created_at, s.c.kind, s.c.hash)).mappings()]

    # ---- audit
    def audit_events(self, request_id: str | None = None, plan_id: str | None = None) -> list[dict]:
        e = ledger_events
        q = select(e).order_by(e.c.event_id)
        if request_id is not None:
            q = q.where(e.c.request_id == request_id)
        if plan_id is not None:
            q = q.where(e.c.plan_id == plan_id)
        with self.engine.connect() as conn:
            rows = conn.execute(q).mappings().all()
        return [{**r, "details": json.loads(r["details"])} for r in rows]

    def export_audit(self, path: str | os.PathLike, fmt: str = "csv", *, request_id: str | None = None,
                     plan_id: str | None = None) -> int:
        """Write the audit events (CSV: details as a JSON column; or JSON: a list); returns how many."""
        if fmt not in ("csv", "json"):
            raise LedgerError("audit export format must be csv or json")
        events = self.audit_events(request_id=request_id, plan_id=plan_id)
        target = Path(path)
        fd, tmp = tempfile.mkstemp(prefix=".audit.", dir=target.parent or ".")
        try:
            with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
                if fmt == "json":
                    json.dump(events, fh, indent=1, sort_keys=True)
                else:
                    fields = ["event_id", "ts", "request_id", "plan_id", "event", "actor", "details"]
                    writer = csv.DictWriter(fh, fieldnames=fields)
                    writer.writeheader()
                    for ev in events:
                        writer.writerow({**ev, "details": json.dumps(ev["details"], sort_keys=True)})
            os.replace(tmp, target)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        return len(events)
