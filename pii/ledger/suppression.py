"""The suppression list (keyed hashes of identifiers that must not be processed again, with the e-mail
addresses a controller chose to keep beside them, encrypted) and legal holds (while one is active on a
subject's identifiers, no erasure of that subject runs)."""
from __future__ import annotations

from datetime import datetime
from typing import Callable

from sqlalchemy import delete as sql_delete
from sqlalchemy import insert, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from pii.core.errors import LedgerError
from pii.ledger.audit import EventWriter
from pii.ledger.common import canonical_identifier, identifier_kind, iso, subject_identifiers
from pii.ledger.notes import SHREDDED, NoteStore
from pii.ledger.schema import ledger_holds, ledger_suppressed_addresses, ledger_suppression, request_row
from pii.ledger.screening import Mac, Screen, hash_identifier, safe_actor, scrub, subject_hashes
from pii.core.subject import DEFAULT_REGION, Subject


class SuppressionStore:
    """Suppression entries, kept addresses and legal holds. `fernet()` gives the request store's Fernet."""

    def __init__(self, engine: Engine, now: Callable[[], datetime], mac: Mac, fernet: Callable,
                 write_event: EventWriter, *, notes: NoteStore):
        self._notes = notes
        self._engine = engine
        self._now = now
        self._mac = mac
        self._fernet = fernet
        self._event = write_event

    # ---- legal holds on subjects
    def place_hold(self, subject: Subject, reason: str, *, actor: str | None = None) -> int:
        """Put the subject's identifiers under a legal hold; returns how many were new."""
        if not reason or not str(reason).strip():
            raise LedgerError("a legal hold needs a reason")
        hashes = subject_hashes(self._mac, subject)
        screen = Screen(self._mac, hashes, subject.region)
        h = ledger_holds
        now = self._now()
        with self._engine.begin() as conn:
            existing = {(r.kind, r.hash) for r in conn.execute(select(h.c.kind, h.c.hash).where(
                h.c.hash.in_([x for _, x in hashes])))}
            new = [(k, x) for k, x in hashes if (k, x) not in existing]
            details: dict = {"added": len(new)}
            if new:
                # the reason as typed may name people: sealed, the rows keep its note id (shredded on release)
                note_id, note_hash = self._notes.seal(conn, reason, purpose="hold_reason")
                conn.execute(insert(h), [{"kind": k, "hash": x, "reason": note_id, "created_at": iso(now)}
                                         for k, x in new])
                details.update(reason=note_id, reason_hash=note_hash)
            self._event(conn, "hold_placed", actor=safe_actor(self._mac, actor, screen), now=now, details=details)
        return len(new)

    def release_hold(self, subject: Subject, *, actor: str | None = None) -> int:
        """Lift the legal hold on the subject's identifiers; returns how many were released."""
        hashes = subject_hashes(self._mac, subject)
        screen = Screen(self._mac, hashes, subject.region)
        h = ledger_holds
        with self._engine.begin() as conn:
            released = 0
            notes: set[str] = set()
            for k, x in hashes:
                notes.update(conn.execute(select(h.c.reason).where(h.c.kind == k, h.c.hash == x)).scalars())
                released += conn.execute(sql_delete(h).where(h.c.kind == k, h.c.hash == x)).rowcount or 0
            still = set(conn.execute(select(h.c.reason).where(h.c.reason.in_(sorted(notes)))).scalars()) if notes \
                else set()
            self._notes.shred(conn, sorted(notes - still))
            self._event(conn, "hold_released", actor=safe_actor(self._mac, actor, screen),
                        details={"released": released})
        return released

    def holds_on(self, subject: Subject) -> list[dict]:
        """Active holds matching the subject's identifiers (a name alone never matches: names are shared)."""
        hashes = [(k, x) for k, x in subject_hashes(self._mac, subject) if k != "name"]
        h = ledger_holds
        with self._engine.connect() as conn:
            rows = conn.execute(select(h).where(h.c.hash.in_([x for _, x in hashes]))).mappings().all()
        wanted = set(hashes)
        screen = Screen(self._mac, subject_hashes(self._mac, subject), subject.region)
        return [{"kind": r["kind"], "reason": self._shown(self._notes.read(r["reason"]), screen),
                 "created_at": r["created_at"]} for r in rows if (r["kind"], r["hash"]) in wanted]

    @staticmethod
    def _shown(reason, screen: Screen):
        """A sealed reason as it is shown: screened (contacts masked, withheld when it names the subject)."""
        return reason if reason in (None, SHREDDED) else scrub(reason, screen)

    # ---- suppression
    def suppress(self, subject: Subject, reason: str, request_id: str | None = None, *,
                 actor: str | None = None, keep_addresses: bool = False) -> int:
        """Add keyed hashes of the subject's identifiers to the suppression list; returns how many were new.
        With `keep_addresses` the e-mail addresses themselves are kept too (encrypted) for mailing tools."""
        hashes = subject_hashes(self._mac, subject)
        if keep_addresses and subject.emails:
            self._keep_addresses(subject, reason)
        if request_id is not None:
            request_row(self._engine, request_id)
        screen = Screen(self._mac, hashes, subject.region)
        reason = scrub(reason or "", screen) or ""
        actor = safe_actor(self._mac, actor, screen)
        s = ledger_suppression
        for _ in range(3):
            now = self._now()
            try:
                with self._engine.begin() as conn:
                    existing = {(r.kind, r.hash) for r in conn.execute(
                        select(s.c.kind, s.c.hash).where(s.c.hash.in_([h for _, h in hashes])))}
                    new = [(k, h) for k, h in hashes if (k, h) not in existing]
                    if new:
                        conn.execute(insert(s), [{"kind": k, "hash": h, "reason": reason, "request_id": request_id,
                                                  "created_at": iso(now)} for k, h in new])
                    self._event(conn, "suppressed", request_id=request_id, actor=actor, now=now,
                                details={"added": len(new), "already": len(hashes) - len(new)})
                return len(new)
            except IntegrityError:
                continue
        raise LedgerError("the suppression list keeps being changed by another worker")

    def is_suppressed(self, kind: str, normalised_value, *, region: str = DEFAULT_REGION) -> bool:
        """Whether that identifier is on the suppression list (the value is normalised again: any spelling)."""
        kind = identifier_kind(kind)
        h = self._mac(kind, canonical_identifier(kind, normalised_value, region))
        s = ledger_suppression
        with self._engine.connect() as conn:
            return conn.execute(select(s.c.hash).where(s.c.kind == kind, s.c.hash == h)).first() is not None

    def is_subject_suppressed(self, subject: Subject) -> bool:
        """Whether any email, phone or id of the subject is suppressed. A name alone never counts: many
        people share one."""
        return any(self.is_suppressed(k, v, region=subject.region)
                   for k, v in subject_identifiers(subject) if k != "name")

    def suppression_entries(self, subject: Subject) -> list[dict]:
        """The suppression entries (kind, reason, date; no hash) that match the subject's identifiers."""
        hashes = subject_hashes(self._mac, subject)
        s = ledger_suppression
        with self._engine.connect() as conn:
            rows = conn.execute(select(s.c.kind, s.c.hash, s.c.reason, s.c.created_at)
                                .where(s.c.hash.in_([h for _, h in hashes]))).all()
        wanted = set(hashes)
        return [{"kind": r.kind, "reason": r.reason, "created_at": r.created_at}
                for r in rows if (r.kind, r.hash) in wanted and r.kind != "name"]

    def _keep_addresses(self, subject: Subject, reason: str) -> None:
        t = ledger_suppressed_addresses
        now = iso(self._now())
        with self._engine.begin() as conn:
            for e in subject.emails:
                h = hash_identifier(self._mac, "email", e, subject.region)
                if conn.execute(select(t.c.hash).where(t.c.hash == h)).first() is None:
                    sealed = self._fernet().encrypt(canonical_identifier("email", e).encode("utf-8")).decode()
                    conn.execute(insert(t).values(hash=h, sealed=sealed, reason=str(reason)[:1000], created_at=now))
            self._event(conn, "addresses_kept", now=self._now(), details={"count": len(subject.emails)})

    def kept_addresses(self) -> list[dict]:
        """The e-mail addresses kept with their suppression entries (decrypted): hash, address, reason, date."""
        t = ledger_suppressed_addresses
        with self._engine.connect() as conn:
            rows = conn.execute(select(t).order_by(t.c.created_at, t.c.hash)).mappings().all()
        f = self._fernet()
        return [{"hash": r["hash"], "email": f.decrypt(r["sealed"].encode()).decode("utf-8"), "reason": r["reason"],
                 "created_at": r["created_at"]} for r in rows]

    def export_suppression(self) -> list[dict]:
        s = ledger_suppression
        with self._engine.connect() as conn:
            return [dict(r) for r in conn.execute(select(s).order_by(s.c.created_at, s.c.kind, s.c.hash)).mappings()]
