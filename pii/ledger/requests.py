"""Requests and the request store: a request's kind, requester (hashed), identifiers (hashed), due date and
status; and its identifiers sealed (Fernet, with a key derived from the ledger key) so that its plan can run
by id, then shredded once the request is done."""
from __future__ import annotations

import json
import re
import uuid
from datetime import date, datetime, timedelta
from typing import Callable, Iterable, Mapping

from sqlalchemy import delete as sql_delete
from sqlalchemy import insert, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from pii.core.errors import LedgerError
from pii.ledger.audit import EventWriter
from pii.ledger.common import REQUEST_STATUSES, check_id, due_date, iso
from pii.ledger.notes import SHREDDED, NoteStore
from pii.ledger.schema import (
    ledger_events, ledger_request_identifiers, ledger_request_secrets, ledger_requests, request_row,
)
from pii.ledger.screening import Mac, Screen, actor_hash, check_actor_name, is_actor, safe_actor, scrub, subject_hashes
from pii.core.subject import DEFAULT_REGION, Subject

_KIND_RE = re.compile(r"^[a-z][a-z0-9_\-]{0,39}$")


class RequestStore:
    """Requests and their sealed identifiers. `fernet()` gives the request store's Fernet."""

    def __init__(self, engine: Engine, now: Callable[[], datetime], mac: Mac, fernet: Callable,
                 write_event: EventWriter, *, notes: NoteStore):
        self._notes = notes
        self._engine = engine
        self._now = now
        self._mac = mac
        self._fernet = fernet
        self._event = write_event

    # ---- reads the other stores share
    def request_row(self, request_id: str):
        return request_row(self._engine, request_id)

    def request_hashes(self, request_id: str) -> list[tuple[str, str]]:
        t = ledger_request_identifiers
        with self._engine.connect() as conn:
            return sorted((r.kind, r.hash) for r in conn.execute(
                select(t.c.kind, t.c.hash).where(t.c.request_id == request_id)))

    def screen_for_request(self, request_id: str | None) -> Screen:
        """The screen for the request's subject (one that recognises nothing when there is no request)."""
        if not request_id:
            return Screen(self._mac, (), DEFAULT_REGION)
        row = self.request_row(request_id)
        return Screen(self._mac, self.request_hashes(request_id), row["region"])

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
        check_actor_name(requester, "requester")
        hashes = subject_hashes(self._mac, subject)
        if request_id is None:
            request_id = "req-" + uuid.uuid4().hex
        else:
            check_id("request id", request_id)
            if Screen(self._mac, hashes, subject.region).find(request_id):
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
        requester_hash = actor_hash(self._mac, requester)
        try:
            with self._engine.begin() as conn:
                conn.execute(insert(ledger_requests).values(
                    request_id=request_id, kind=kind, requester_hash=requester_hash, region=subject.region,
                    received_at=received.isoformat(), due_at=due.isoformat(), status="open",
                    created_at=iso(now), updated_at=iso(now)))
                conn.execute(insert(ledger_request_identifiers),
                             [{"request_id": request_id, "kind": k, "hash": h} for k, h in hashes])
                # the requester's name as typed, sealed (shown to approvers; shredded with the identifiers)
                self._notes.seal(conn, requester, purpose="requester", request_id=request_id)
                self._event(conn, "request_created", request_id=request_id, actor=requester_hash, now=now,
                            details={"kind": kind, "identifiers": counts, "received_at": received.isoformat(),
                                     "due_at": due.isoformat()})
        except IntegrityError:
            row = self.request_row(request_id)
            if row["kind"] != kind or self.request_hashes(request_id) != hashes:
                raise LedgerError(
                    f"request {request_id} already exists with another kind or other identifiers") from None
            with self._engine.begin() as conn:
                self._event(conn, "request_repeated", request_id=request_id, actor=requester_hash, now=now,
                            details={"kind": kind})
        return request_id

    def get_request(self, request_id: str) -> dict:
        """The request's row, its identifiers as keyed hashes, and "requester": the requester's name from its
        sealed note (SHREDDED once the request's data is shredded; None for requests made before notes)."""
        row = dict(self.request_row(request_id))
        row["identifiers"] = [{"kind": k, "hash": h} for k, h in self.request_hashes(request_id)]
        requester = self._notes.request_note(request_id, "requester")
        if requester is None and self._shredded(request_id):
            requester = SHREDDED
        elif requester is not None and requester != SHREDDED:
            requester = scrub(requester, self.screen_for_request(request_id), 200)
        row["requester"] = requester
        return row

    def actor_of(self, request_id: str, actor, screen: Screen | None = None) -> str | None:
        """How an actor of the request's events is recorded: the requester (a name typed on the command line
        or a form) as their keyed hash, as the request records them; others (approvers, workers) by name
        unless the name is one of the subject's identifiers."""
        if actor is None:
            return None
        if is_actor(self._mac, self.request_row(request_id)["requester_hash"], str(actor)):
            return actor_hash(self._mac, str(actor))
        return safe_actor(self._mac, actor, screen or self.screen_for_request(request_id))

    def _shredded(self, request_id: str) -> bool:
        e = ledger_events
        with self._engine.connect() as conn:
            return conn.execute(select(e.c.event_id).where(e.c.request_id == request_id,
                                                           e.c.event == "identifiers_shredded").limit(1)).first() \
                is not None

    def requested_by(self, request_id: str, who: str) -> bool:
        """Whether `who` made the request (compared as keyed hashes)."""
        return is_actor(self._mac, self.request_row(request_id)["requester_hash"], who)

    def find_requests(self, subject: Subject) -> list[str]:
        """Ids of the requests that share at least one identifier with `subject`, oldest first."""
        hashes = subject_hashes(self._mac, subject)
        t, r = ledger_request_identifiers, ledger_requests
        found: set[str] = set()
        with self._engine.connect() as conn:
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
        with self._engine.connect() as conn:
            return list(conn.execute(select(r.c.request_id).where(r.c.kind.in_(list(kinds)), r.c.status == "open")
                                     .order_by(r.c.created_at, r.c.request_id)).scalars())

    def set_request_status(self, request_id: str, status: str, *, actor: str | None = None) -> None:
        if status not in REQUEST_STATUSES:
            raise LedgerError(f"request status must be one of {', '.join(REQUEST_STATUSES)}")
        row = self.request_row(request_id)
        actor = self.actor_of(request_id, actor)
        now = self._now()
        with self._engine.begin() as conn:
            conn.execute(update(ledger_requests).where(ledger_requests.c.request_id == request_id)
                         .values(status=status, updated_at=iso(now)))
            self._event(conn, "request_status", request_id=request_id, actor=actor, now=now,
                        details={"from": row["status"], "to": status})

    # ---- the request store (encrypted identifiers)
    def seal_subject(self, request_id: str, subject: Subject, extra: Mapping | None = None) -> None:
        """Keep the request's identifiers, encrypted, so its plan can later run by id. Idempotent.

        `extra` (JSON): what else a special flow needs to run again and that may be personal (a sender's
        address, an import batch, identifiers to suppress); sealed and shredded with the identifiers."""
        self.request_row(request_id)
        if set(subject_hashes(self._mac, subject)) != set(self.request_hashes(request_id)):
            raise LedgerError(f"request {request_id}: these are not the request's identifiers")
        payload = subject.to_dict()
        if extra is not None:
            payload["_extra"] = dict(extra)
        sealed = self._fernet().encrypt(json.dumps(payload, sort_keys=True).encode("utf-8")).decode()
        now = self._now()
        try:
            with self._engine.begin() as conn:
                conn.execute(insert(ledger_request_secrets).values(
                    request_id=request_id, sealed=sealed, created_at=iso(now)))
                self._event(conn, "identifiers_sealed", request_id=request_id, now=now, details={})
        except IntegrityError:
            pass  # sealed before

    def is_sealed(self, request_id: str) -> bool:
        """Whether the request store still holds the request's sealed identifiers (not yet shredded)."""
        with self._engine.connect() as conn:
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

        with self._engine.connect() as conn:
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
        """Delete the request's encrypted identifiers and its sealed notes (requester, reasons); hashes stay.
        True when there were identifiers."""
        with self._engine.begin() as conn:
            gone = conn.execute(sql_delete(ledger_request_secrets).where(
                ledger_request_secrets.c.request_id == request_id)).rowcount == 1
            notes = self._notes.shred_request(conn, request_id)
            if gone or notes:
                self._event(conn, "identifiers_shredded", request_id=request_id, actor=self.actor_of(request_id, actor),
                            details={"notes": notes} if notes else {})
        return gone
