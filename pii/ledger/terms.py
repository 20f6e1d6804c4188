"""A request's terms (issue 14): its due date extended, and its requester's identity verified.

- **Extensions** (UK GDPR Art. 12(3)): the first due date may be moved by calendar months, at most two
  beyond the first, and only while the first due date has not passed; the reason is sealed (a note) and
  the audit trail keeps its keyed hash. The new date is `extended_to`; the request row keeps the first.
- **Identity**: `unverified` until someone records how the requester's identity was checked (a method,
  who checked it, when, and an optional note, sealed). Where stores.yaml says
  `requests: {require_identity_verification: true}`, runs by request id refuse until it is `verified`.
"""
from __future__ import annotations

import re
from datetime import date, datetime
from typing import Callable

from sqlalchemy import insert, select, update
from sqlalchemy.engine import Engine

from pii.core.errors import LedgerError, RequestTermsRefused
from pii.ledger.audit import EventWriter
from pii.ledger.common import due_date, iso
from pii.ledger.notes import NoteStore
from pii.ledger.requests import RequestStore
from pii.ledger.schema import ledger_request_terms
from pii.ledger.screening import check_actor_name

UNVERIFIED, VERIFIED = "unverified", "verified"
MAX_EXTENSION_MONTHS = 2
_METHOD_RE = re.compile(r"^[a-z][a-z0-9_\-]{0,39}$")
CLOSED = ("completed", "rejected", "withdrawn")


class TermsStore:
    """Extensions and identity verification of requests."""

    def __init__(self, engine: Engine, now: Callable[[], datetime], write_event: EventWriter, *,
                 requests: RequestStore, notes: NoteStore):
        self._engine = engine
        self._now = now
        self._event = write_event
        self._requests = requests
        self._notes = notes

    def request_terms(self, request_id: str) -> dict:
        """{"due": the date that counts (extended or first), "first_due", "extended_to" (None when not
        extended), "extension_months", "identity" (unverified/verified), "identity_method", "identity_by",
        "identity_at"}."""
        row = self._requests.request_row(request_id)
        return self._terms(row, self._row(request_id))

    def terms_of(self, rows) -> dict[str, dict]:
        """request_terms for many request rows at once (one query)."""
        rows = list(rows)
        t = ledger_request_terms
        with self._engine.connect() as conn:
            found = {r["request_id"]: r for r in conn.execute(select(t).where(
                t.c.request_id.in_([r["request_id"] for r in rows]))).mappings()} if rows else {}
        return {r["request_id"]: self._terms(r, found.get(r["request_id"])) for r in rows}

    @staticmethod
    def _terms(row, terms) -> dict:
        extended = terms["extended_to"] if terms else None
        return {"due": extended or row["due_at"], "first_due": row["due_at"], "extended_to": extended,
                "extension_months": terms["extension_months"] if terms else 0,
                "identity": terms["identity"] if terms else UNVERIFIED,
                "identity_method": terms["identity_method"] if terms else None,
                "identity_by": terms["identity_by"] if terms else None,
                "identity_at": terms["identity_at"] if terms else None}

    def _row(self, request_id: str):
        t = ledger_request_terms
        with self._engine.connect() as conn:
            return conn.execute(select(t).where(t.c.request_id == request_id)).mappings().first()

    def _upsert(self, conn, request_id: str, values: dict) -> None:
        t = ledger_request_terms
        now = iso(self._now())
        if conn.execute(update(t).where(t.c.request_id == request_id).values(updated_at=now, **values)).rowcount:
            return
        base = {"extension_months": 0, "extended_to": None, "identity": UNVERIFIED, "identity_method": None,
                "identity_by": None, "identity_at": None}
        conn.execute(insert(t).values(request_id=request_id, updated_at=now, **{**base, **values}))

    def extend_request(self, request_id: str, months: int, reason: str, *, actor: str | None = None,
                       today: date | None = None) -> date:
        """Move the request's due date by `months` calendar months (1 or 2; at most two beyond the first in
        all) before the first due date passes; returns the new date. RequestTermsRefused otherwise."""
        if months not in (1, 2):
            raise RequestTermsRefused("an extension is 1 or 2 months (--by 1m or --by 2m)")
        if not reason or not str(reason).strip():
            raise RequestTermsRefused("an extension needs a reason (it goes into the notice to the person)")
        row = self._requests.request_row(request_id)
        if row["status"] in CLOSED:
            raise RequestTermsRefused(f"request {request_id} is {row['status']}: nothing to extend")
        today = today or self._now().date()
        first = date.fromisoformat(row["due_at"])
        if today > first:
            raise RequestTermsRefused(f"request {request_id}: its first due date {first.isoformat()} has passed; "
                                      f"an extension must be made (and the person told) before it")
        terms = self.request_terms(request_id)
        total = terms["extension_months"] + months
        if total > MAX_EXTENSION_MONTHS:
            raise RequestTermsRefused(
                f"request {request_id} is already extended by {terms['extension_months']} month(s) to "
                f"{terms['extended_to']}: at most {MAX_EXTENSION_MONTHS} months beyond the first due date")
        new_due = due_date(first, total)
        with self._engine.begin() as conn:
            note_id, note_hash = self._notes.seal(conn, reason, purpose="extension_reason", request_id=request_id)
            self._upsert(conn, request_id, {"extension_months": total, "extended_to": new_due.isoformat()})
            self._event(conn, "request_extended", request_id=request_id,
                        actor=self._requests.actor_of(request_id, actor),
                        details={"months": months, "total_months": total, "first_due": first.isoformat(),
                                 "extended_to": new_due.isoformat(), "reason": note_id, "reason_hash": note_hash})
        return new_due

    def verify_identity(self, request_id: str, method: str, by: str, note: str | None = None) -> None:
        """Record that the requester's identity was verified: how (a short word such as `document`,
        `email-link`, `in-person`), by whom and, optionally, a note (sealed)."""
        method = str(method or "").strip().lower()
        if not _METHOD_RE.match(method):
            raise RequestTermsRefused("the method is a short lower-case word such as 'document', 'email-link' "
                                      "or 'in-person'")
        if not by or not str(by).strip():
            raise RequestTermsRefused("say who verified the identity (--by WHO)")
        check_actor_name(by, "verifier")
        row = self._requests.request_row(request_id)
        if row["status"] in CLOSED:
            raise RequestTermsRefused(f"request {request_id} is {row['status']}: nothing to verify")
        who = self._requests.actor_of(request_id, by)
        now = self._now()
        with self._engine.begin() as conn:
            details: dict = {"method": method}
            if note is not None and str(note).strip():
                note_id, note_hash = self._notes.seal(conn, note, purpose="identity_note", request_id=request_id)
                details.update(note=note_id, note_hash=note_hash)
            self._upsert(conn, request_id, {"identity": VERIFIED, "identity_method": method, "identity_by": who,
                                            "identity_at": iso(now)})
            self._event(conn, "identity_verified", request_id=request_id, actor=who, now=now, details=details)

    def require_verified(self, request_id: str) -> None:
        """LedgerError (exit 3) unless the request's requester identity was verified."""
        if self.request_terms(request_id)["identity"] != VERIFIED:
            raise LedgerError(f"request {request_id}: the requester's identity is not verified, and stores.yaml "
                              f"requires it (lethe verify-identity {request_id} --method M --by WHO)")
