"""Named locks with an owner and an expiry (a plan's ``plan:<id>``, a subject's, a store's): acquired, renewed,
taken over once expired, released, or broken by someone who knows the owner is gone; each move audited."""
from __future__ import annotations

from datetime import datetime, timedelta
from typing import Callable

from sqlalchemy import delete as sql_delete
from sqlalchemy import insert, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from pii.core.errors import LedgerError
from pii.ledger.audit import EventWriter
from pii.ledger.common import iso
from pii.ledger.schema import ledger_locks
from pii.core.subject import EMAIL_RE


def check_lock_args(name: str, owner: str) -> None:
    for what, value in (("lock name", name), ("lock owner", owner)):
        if not isinstance(value, str) or not value.strip() or len(value) > 200:
            raise LedgerError(f"{what} must be 1-200 characters")
        if EMAIL_RE.search(value):
            raise LedgerError(f"{what} must not hold an e-mail address; use Ledger.hash_identifier")


class LockStore:
    """The ledger's locks: compare-and-set on the owner (and the expiry), so two owners never hold one."""

    def __init__(self, engine: Engine, now: Callable[[], datetime], write_event: EventWriter):
        self._engine = engine
        self._now = now
        self._event = write_event

    def acquire_lock(self, name: str, owner: str, ttl_seconds: int) -> bool:
        """True when `owner` now holds lock `name` for `ttl_seconds` (a free lock, an expired one taken over,
        or its own lock renewed); False when another owner holds it."""
        check_lock_args(name, owner)
        if not isinstance(ttl_seconds, (int, float)) or ttl_seconds <= 0:
            raise LedgerError(f"lock {name}: ttl_seconds must be positive")
        lk = ledger_locks
        for _ in range(5):
            now = self._now()
            expires = iso(now + timedelta(seconds=ttl_seconds))
            try:
                with self._engine.begin() as conn:
                    conn.execute(insert(lk).values(name=name, owner=owner, acquired_at=iso(now), expires_at=expires))
                    self._event(conn, "lock_acquired", actor=owner, now=now, details={"lock": name, "ttl": ttl_seconds})
                return True
            except IntegrityError:
                pass
            with self._engine.connect() as conn:
                cur = conn.execute(select(lk.c.owner, lk.c.expires_at).where(lk.c.name == name)).first()
            if cur is None:
                continue  # released meanwhile: try to insert again
            if cur.owner == owner:
                how, cond = "lock_renewed", (lk.c.owner == owner)
            elif cur.expires_at < iso(now):
                how, cond = "lock_taken_over", ((lk.c.owner == cur.owner) & (lk.c.expires_at == cur.expires_at)
                                                & (lk.c.expires_at < iso(now)))
            else:
                return False
            with self._engine.begin() as conn:
                res = conn.execute(update(lk).where(lk.c.name == name, cond)
                                   .values(owner=owner, acquired_at=iso(now), expires_at=expires))
                if res.rowcount == 1:
                    self._event(conn, how, actor=owner, now=now, details={"lock": name, "ttl": ttl_seconds})
                    return True
            return False  # someone else took it over or renewed it first
        return False

    def release_lock(self, name: str, owner: str) -> bool:
        """Release `name` if `owner` holds it; True when it did."""
        check_lock_args(name, owner)
        lk = ledger_locks
        with self._engine.begin() as conn:
            released = conn.execute(sql_delete(lk).where(lk.c.name == name, lk.c.owner == owner)).rowcount == 1
            if released:
                self._event(conn, "lock_released", actor=owner, details={"lock": name})
        return released

    def lock_owner(self, name: str) -> str | None:
        """Who holds lock `name` (expired or not); None when nobody does."""
        lk = ledger_locks
        with self._engine.connect() as conn:
            return conn.execute(select(lk.c.owner).where(lk.c.name == name)).scalar()

    def break_lock(self, name: str, owner: str, *, actor: str, reason: str) -> bool:
        """Remove lock `name` if `owner` still holds it, on behalf of `actor` who knows that owner is gone
        (a crashed process): compare-and-set on the owner, recorded in the audit trail. True when it did."""
        check_lock_args(name, owner)
        check_lock_args(name, actor)
        lk = ledger_locks
        with self._engine.begin() as conn:
            broken = conn.execute(sql_delete(lk).where(lk.c.name == name, lk.c.owner == owner)).rowcount == 1
            if broken:
                self._event(conn, "lock_broken", actor=actor,
                            details={"lock": name, "owner": owner, "reason": str(reason)[:200]})
        return broken
