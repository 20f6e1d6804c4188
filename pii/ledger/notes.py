"""Sealed notes: free text that people type (a requester's name, an approval's or a rejection's reason, a
legal hold's reason, an identity-verification note) may name a person, so the ledger keeps it the way it
keeps a request's identifiers: encrypted (Fernet, key derived from the ledger key) in `ledger_notes`, a
table rows can be deleted from (shredded), and referred to elsewhere by an opaque note id.

Append-only events never hold the text: they hold the note id and a keyed hash of the text
(``"hmac:<hex>"``, domain "note"), so the trail shows that a reason was given and can confirm a claimed
text later, and nothing readable remains once the note is shredded. A request's notes are shredded with its
identifiers; a hold's note when the hold is released.

Rows written before notes existed hold screened text in place of a note id: `read` returns it as it is."""
from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import Callable

from sqlalchemy import delete as sql_delete
from sqlalchemy import insert, select

from sqlalchemy.engine import Engine

from pii.core.errors import LedgerError
from pii.ledger.common import iso
from pii.ledger.schema import ledger_notes
from pii.ledger.screening import Mac

NOTE_LIMIT = 1000
NOTE_RE = re.compile(r"^note-[0-9a-f]{32}$")
SHREDDED = "[sealed note shredded]"


def note_text(text) -> str:
    """The text as it is sealed and hashed: trimmed, at most NOTE_LIMIT characters."""
    return str(text).strip()[:NOTE_LIMIT]


def note_hash(mac: Mac, text) -> str:
    """The keyed hash an event keeps of a note's text."""
    return "hmac:" + mac("note", note_text(text))


def is_note(value) -> bool:
    return isinstance(value, str) and bool(NOTE_RE.match(value))


class NoteStore:
    """Seals, reads and shreds notes. `fernet()` gives the request store's Fernet."""

    def __init__(self, engine: Engine, now: Callable[[], datetime], mac: Mac, fernet: Callable):
        self._engine = engine
        self._now = now
        self._mac = mac
        self._fernet = fernet

    def seal(self, conn, text, *, purpose: str, request_id: str | None = None) -> tuple[str, str]:
        """Seal `text` on the open connection `conn` (the caller's transaction commits it with the change it
        belongs to); returns (note id, keyed hash) for the row and the event."""
        body = note_text(text)
        if not body:
            raise LedgerError(f"an empty {purpose.replace('_', ' ')}")
        note_id = "note-" + uuid.uuid4().hex
        sealed = self._fernet().encrypt(body.encode("utf-8")).decode()
        conn.execute(insert(ledger_notes).values(note_id=note_id, request_id=request_id, purpose=purpose,
                                                 sealed=sealed, created_at=iso(self._now())))
        return note_id, note_hash(self._mac, body)

    def read(self, value) -> str | None:
        """The text of note `value`; SHREDDED when it was shredded; `value` itself when it is not a note id
        (text stored before notes existed); None for None."""
        if value is None or not is_note(value):
            return value
        with self._engine.connect() as conn:
            sealed = conn.execute(select(ledger_notes.c.sealed).where(ledger_notes.c.note_id == value)).scalar()
        if sealed is None:
            return SHREDDED
        try:
            return self._fernet().decrypt(sealed.encode()).decode("utf-8")
        except Exception:  # InvalidToken: sealed under another key
            raise LedgerError(f"note {value} cannot be read with this ledger's key") from None

    def request_note(self, request_id: str, purpose: str) -> str | None:
        """The text of the request's first note of `purpose` (the requester), None when there is none."""
        n = ledger_notes
        with self._engine.connect() as conn:
            note_id = conn.execute(select(n.c.note_id).where(n.c.request_id == request_id, n.c.purpose == purpose)
                                   .order_by(n.c.created_at, n.c.note_id).limit(1)).scalar()
        return None if note_id is None else self.read(note_id)

    def shred_request(self, conn, request_id: str) -> int:
        """Delete the request's notes on `conn`; returns how many."""
        return conn.execute(sql_delete(ledger_notes).where(ledger_notes.c.request_id == request_id)).rowcount or 0

    def shred(self, conn, note_ids) -> int:
        ids = [i for i in note_ids if is_note(i)]
        if not ids:
            return 0
        return conn.execute(sql_delete(ledger_notes).where(ledger_notes.c.note_id.in_(ids))).rowcount or 0

    def matches(self, value_hash: str, text) -> bool:
        """Whether `text` is the text whose keyed hash an event kept."""
        import hmac

        return hmac.compare_digest(str(value_hash or ""), note_hash(self._mac, text))
