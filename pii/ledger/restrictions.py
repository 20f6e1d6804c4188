"""Restriction of processing and objections (issue 14, items 2 and 3), kept like legal holds: keyed hashes of
the person's identifiers only, the reason sealed as a note (shredded on release), an audit event per change.

- A *restriction* (purpose ``RESTRICTION``) holds the person's records from every flow that would change or
  use them (retention purges, the child-data purge, data received in error, the mailing export) until it is
  released or its ``until`` date has passed. Access and an explicit erasure request still run.
- An *objection* names a purpose (``marketing``, ``profiling``, ``analytics``): the person's identifiers go on
  that purpose's list, which `lethe restriction check --purpose P` answers.

A name alone is never stored or matched (many people share one): a restriction needs an email, a phone
or an id."""
from __future__ import annotations

from datetime import date, datetime
from typing import Callable

from sqlalchemy import delete as sql_delete
from sqlalchemy import insert, select
from sqlalchemy.engine import Engine

from pii.core.errors import LedgerError
from pii.core.subject import Subject
from pii.ledger.audit import EventWriter
from pii.ledger.common import iso
from pii.ledger.notes import SHREDDED, NoteStore
from pii.ledger.schema import ledger_restrictions
from pii.ledger.screening import Mac, Screen, safe_actor, scrub, subject_hashes

RESTRICTION = "restriction"
PURPOSES = ("marketing", "profiling", "analytics")
# How the exported keyed hashes are made (`lethe suppression export` and `lethe restriction export` print it).
HASH_RECIPE = ("HMAC-SHA256 with the ledger key over 'lethe-ledger:v1:<kind>\\0<normalised value>': emails "
               "trimmed and lower-cased, phones E.164, ids 'id:<key>' with the value trimmed and case-folded")


def check_purpose(purpose: str) -> str:
    p = str(purpose or "").strip().lower()
    if p not in PURPOSES:
        raise LedgerError(f"unknown purpose {str(purpose)[:40]!r}: use one of {', '.join(PURPOSES)}")
    return p


def _in_force(until: str | None, today: date) -> bool:
    """A restriction with an end date holds through that day and lapses the day after."""
    return until is None or today.isoformat() <= until


class RestrictionStore:
    """Restrictions and objections on subjects (see the module docstring)."""

    def __init__(self, engine: Engine, now: Callable[[], datetime], mac: Mac, write_event: EventWriter, *,
                 notes: NoteStore):
        self._engine = engine
        self._now = now
        self._mac = mac
        self._event = write_event
        self._notes = notes

    def _hashes(self, subject: Subject) -> list[tuple[str, str]]:
        hashes = [(k, x) for k, x in subject_hashes(self._mac, subject) if k != "name"]
        if not hashes:
            raise LedgerError("a name alone cannot be matched (many people share one): give an email, a phone or an id")
        return hashes

    def _today(self, today: date | None) -> date:
        return today or self._now().date()

    def _put(self, subject: Subject, purpose: str, reason: str, until: date | None, actor: str | None,
             event: str) -> int:
        if not reason or not str(reason).strip():
            raise LedgerError(f"a{'n objection' if purpose != RESTRICTION else ' restriction'} needs a reason")
        hashes = self._hashes(subject)
        screen = Screen(self._mac, subject_hashes(self._mac, subject), subject.region)
        r = ledger_restrictions
        now = self._now()
        with self._engine.begin() as conn:
            old = conn.execute(select(r.c.kind, r.c.hash, r.c.reason, r.c.since).where(
                r.c.purpose == purpose, r.c.hash.in_([x for _, x in hashes]))).all()
            wanted = set(hashes)
            old = [o for o in old if (o.kind, o.hash) in wanted]
            since = {(o.kind, o.hash): o.since for o in old}
            notes = {o.reason for o in old}
            for o in old:  # replaced: the new reason and end date stand, the first date stays
                conn.execute(sql_delete(r).where(r.c.kind == o.kind, r.c.hash == o.hash, r.c.purpose == purpose))
            note_id, note_hash = self._notes.seal(conn, reason, purpose=f"{purpose}_reason"[:40])
            conn.execute(insert(r), [{"kind": k, "hash": x, "purpose": purpose, "reason": note_id,
                                      "since": since.get((k, x), iso(now)),
                                      "until": until.isoformat() if until else None, "created_at": iso(now)}
                                     for k, x in hashes])
            self._shred_unused(conn, notes)
            details = {"purpose": purpose, "added": len(hashes) - len(old), "renewed": len(old),
                       "reason": note_id, "reason_hash": note_hash}
            if until:
                details["until"] = until.isoformat()
            self._event(conn, event, actor=safe_actor(self._mac, actor, screen), now=now, details=details)
        return len(hashes) - len(old)

    def _shred_unused(self, conn, notes: set[str]) -> None:
        r = ledger_restrictions
        if not notes:
            return
        still = set(conn.execute(select(r.c.reason).where(r.c.reason.in_(sorted(notes)))).scalars())
        self._notes.shred(conn, sorted(notes - still))

    def restrict(self, subject: Subject, reason: str, *, until: date | None = None, actor: str | None = None) -> int:
        """Restrict processing of the subject's data (until `until`, inclusive, or until released); returns
        how many identifiers were new (a repeated restriction renews reason and end date)."""
        if until is not None and until < self._now().date():
            raise LedgerError("the restriction's end date has already passed")
        return self._put(subject, RESTRICTION, reason, until, actor, "restricted")

    def object_to(self, subject: Subject, purpose: str, reason: str, *, actor: str | None = None) -> int:
        """Record the subject's objection to processing for `purpose`; returns how many identifiers were new."""
        return self._put(subject, check_purpose(purpose), reason, None, actor, "objected")

    def release_restriction(self, subject: Subject, *, purpose: str = RESTRICTION, actor: str | None = None) -> int:
        """Lift the subject's restriction (or their objection for `purpose`) and shred its reason; returns how
        many identifiers were released."""
        if purpose != RESTRICTION:
            purpose = check_purpose(purpose)
        hashes = self._hashes(subject)
        screen = Screen(self._mac, subject_hashes(self._mac, subject), subject.region)
        r = ledger_restrictions
        with self._engine.begin() as conn:
            released, notes = 0, set()
            for k, x in hashes:
                where = (r.c.kind == k, r.c.hash == x, r.c.purpose == purpose)
                notes.update(conn.execute(select(r.c.reason).where(*where)).scalars())
                released += conn.execute(sql_delete(r).where(*where)).rowcount or 0
            self._shred_unused(conn, notes)
            self._event(conn, "restriction_released" if purpose == RESTRICTION else "objection_withdrawn",
                        actor=safe_actor(self._mac, actor, screen),
                        details={"purpose": purpose, "released": released})
        return released

    def restrictions_on(self, subject: Subject, *, today: date | None = None) -> list[dict]:
        """The subject's restrictions and objections in force: kind, purpose, reason (screened), since, until."""
        hashes = self._hashes(subject)
        day = self._today(today)
        r = ledger_restrictions
        with self._engine.connect() as conn:
            rows = conn.execute(select(r).where(r.c.hash.in_([x for _, x in hashes]))).mappings().all()
        wanted = set(hashes)
        screen = Screen(self._mac, subject_hashes(self._mac, subject), subject.region)
        out = []
        for row in rows:
            if (row["kind"], row["hash"]) not in wanted or not _in_force(row["until"], day):
                continue
            reason = self._notes.read(row["reason"])
            out.append({"kind": row["kind"], "purpose": row["purpose"], "since": row["since"], "until": row["until"],
                        "reason": reason if reason == SHREDDED else scrub(reason, screen)})
        return sorted(out, key=lambda x: (x["purpose"], x["kind"]))

    def is_restricted(self, subject: Subject, *, purpose: str | None = None, today: date | None = None) -> bool:
        """Whether processing of the subject is restricted (in force today) or, with `purpose`, objected to
        for that purpose (a restriction covers every purpose)."""
        wanted = {RESTRICTION} | ({check_purpose(purpose)} if purpose else set())
        return any(x["purpose"] in wanted for x in self.restrictions_on(subject, today=today))

    def restricted_hashes(self, *, today: date | None = None, purposes=(RESTRICTION,)) -> dict[tuple[str, str], dict]:
        """(kind, keyed hash) -> {purpose, since, until} of every entry in force for `purposes`: what the
        flows match records against."""
        day = self._today(today)
        r = ledger_restrictions
        with self._engine.connect() as conn:
            rows = conn.execute(select(r.c.kind, r.c.hash, r.c.purpose, r.c.since, r.c.until).where(
                r.c.purpose.in_(list(purposes)))).all()
        return {(x.kind, x.hash): {"purpose": x.purpose, "since": x.since, "until": x.until}
                for x in rows if _in_force(x.until, day)}

    def export_restrictions(self, *, today: date | None = None) -> list[dict]:
        """Every entry in force: kind, keyed hash, purpose, since, until (never the reason)."""
        day = self._today(today)
        r = ledger_restrictions
        with self._engine.connect() as conn:
            rows = conn.execute(select(r.c.kind, r.c.hash, r.c.purpose, r.c.since, r.c.until)
                                .order_by(r.c.since, r.c.purpose, r.c.kind, r.c.hash)).mappings().all()
        return [dict(x) for x in rows if _in_force(x["until"], day)]
