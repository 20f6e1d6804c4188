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

How it is built: `Ledger` is a thin facade; every method hands over to one of these stores, which get
what they share (the engine, the clock, the keyed MAC, the event writer) from it and never import it:

- `requests.RequestStore`: requests, their status, and the request store (sealing, unsealing, shredding);
- `plans.PlanStore`: plans, their states and transitions, approval, execution (claim, finish), verification;
- `actions.ActionStore`: per-action progress of an executing plan;
- `locks.LockStore`: named locks with an owner and an expiry;
- `suppression.SuppressionStore`: the suppression list, kept addresses and legal holds;
- `audit.AuditLog`: the one event writer, reading and exporting the audit trail.

Beside them: `schema` (the tables, the append-only triggers, creation on first use), `common` (states,
canonical identifiers, timestamps), `keys` (the ledger key) and `screening` (keyed hashes and the screen
that keeps the subject's identifiers out of what is stored).
"""
from __future__ import annotations

import os
from datetime import date, datetime, timezone
from typing import Callable, Iterable, Mapping, Sequence

from pii.core.errors import LedgerTampered
from pii.ledger import screening
from pii.ledger.screening import safe_actor, scrub
from pii.ledger.actions import ActionStore
from pii.ledger.audit import AuditLog
from pii.ledger.common import (
    ACTION_FAILED,
    ACTION_FINAL,
    ACTION_STATES,
    APPROVED,
    DONE,
    DRIFTED,
    EXECUTED,
    EXECUTING,
    EXPIRED,
    FAILED,
    PLAN_STATES,
    PLAN_TRANSITIONS,
    PLANNED,
    REJECTED,
    REQUEST_STATUSES,
    SKIPPED,
    STARTED,
    VERIFIED,
    canonical_identifier,
    due_date,
    subject_identifiers,
)
from pii.ledger.keys import (
    KEY_ENV,
    KEY_FILE,
    MIN_ENV_KEY_CHARS,
    MIN_KEY_BYTES,
    check_key,
    keyed_mac,
    request_store_fernet,
    resolve_key,
)
from pii.ledger.locks import LockStore
from pii.ledger.notes import NoteStore
from pii.ledger.plans import PlanStore
from pii.ledger.requests import RequestStore
from pii.ledger.schema import (
    LEDGER_TABLES,
    ensure_tables,
    ledger_actions,
    ledger_events,
    ledger_holds,
    ledger_locks,
    ledger_meta,
    ledger_plan_actions,
    ledger_plans,
    ledger_request_identifiers,
    ledger_request_secrets,
    ledger_requests,
    ledger_suppressed_addresses,
    ledger_suppression,
)
from pii.ledger.restrictions import RestrictionStore
from pii.ledger.suppression import SuppressionStore
from pii.ledger.terms import TermsStore
from pii.state.db import state_engine
from pii.core.subject import DEFAULT_REGION, Subject

__all__ = [
    "Ledger", "due_date", "canonical_identifier", "subject_identifiers",
    "KEY_ENV", "KEY_FILE", "MIN_ENV_KEY_CHARS", "MIN_KEY_BYTES",
    "PLANNED", "APPROVED", "REJECTED", "EXPIRED", "EXECUTING", "EXECUTED", "FAILED", "VERIFIED",
    "PLAN_STATES", "PLAN_TRANSITIONS",
    "STARTED", "DONE", "SKIPPED", "ACTION_FAILED", "DRIFTED", "ACTION_STATES", "ACTION_FINAL",
    "REQUEST_STATUSES", "LEDGER_TABLES",
    "ledger_meta", "ledger_requests", "ledger_request_identifiers", "ledger_plans", "ledger_plan_actions",
    "ledger_actions", "ledger_locks", "ledger_suppression", "ledger_suppressed_addresses", "ledger_events",
    "ledger_request_secrets", "ledger_holds",
]


class Ledger:
    """The erasure ledger on one state database. Safe to use from several threads, processes and hosts.

    A facade: each method below is the method of the same name of one store (see the module docstring)."""

    def __init__(self, url: str, *, key: bytes | str | None = None,
                 clock: Callable[[], datetime] | None = None):
        self.url = url
        self.engine = state_engine(url)
        self._clock = clock or (lambda: datetime.now(timezone.utc))
        ensure_tables(url, self.engine)
        self._key = resolve_key(url, key)
        check_key(self.engine, self._key)
        self._audit = AuditLog(self.engine, self._now, self._mac)
        event = self._audit.write_event
        self._notes = NoteStore(self.engine, self._now, self._mac, self._fernet)
        self._requests = RequestStore(self.engine, self._now, self._mac, self._fernet, event, notes=self._notes)
        self._locks = LockStore(self.engine, self._now, event)
        self._actions = ActionStore(self.engine, self._now, self._mac, event, self._requests.screen_for_request)
        self._plans = PlanStore(self.engine, self._now, self._mac, event,
                                requests=self._requests, actions=self._actions, locks=self._locks, notes=self._notes)
        self._terms = TermsStore(self.engine, self._now, event, requests=self._requests, notes=self._notes)
        self._suppression = SuppressionStore(self.engine, self._now, self._mac, self._fernet, event,
                                             notes=self._notes)
        self._restrictions = RestrictionStore(self.engine, self._now, self._mac, event, notes=self._notes)

    # ---- what the stores share (and pii.engine.requests uses `_fernet`, the tests `_now`)
    def _now(self) -> datetime:
        now = self._clock()
        return now if now.tzinfo else now.replace(tzinfo=timezone.utc)

    def _mac(self, domain: str, value: str) -> str:
        return keyed_mac(self._key, domain, value)

    def _fernet(self):
        return request_store_fernet(self._key)

    # ---- keys and hashes
    def hash_identifier(self, kind: str, value, region: str = DEFAULT_REGION) -> str:
        """Keyed hash of an identifier (normalised first): what the ledger stores instead of the value.
        Build lock names such as ``"subject:" + hash_identifier("email", e)`` from it."""
        return screening.hash_identifier(self._mac, kind, value, region)

    def protect_value(self, value) -> str | None:
        """``"hmac:<hex>"`` for a personal value: equal values give equal strings, so locations still compare."""
        return screening.protect_value(self._mac, value)

    def protect_location(self, location: Mapping, personal_keys: Iterable[str]) -> dict:
        """A copy of `location` whose values under any of `personal_keys` (at any depth) are keyed hashes:
        e.g. ``protect_location({"table": "t", "key": {"email": "..."}}, {"email"})`` or ``{"file"}`` for a
        file named after the person. Idempotent."""
        return screening.protect_location(self._mac, location, personal_keys)

    # ---- requests: RequestStore
    def create_request(self, kind: str, subject: Subject, requester: str, received_at: date | None = None,
                       request_id: str | None = None, *, due_in_days: int | None = None) -> str:
        return self._requests.create_request(kind, subject, requester, received_at, request_id,
                                             due_in_days=due_in_days)

    def get_request(self, request_id: str) -> dict:
        return self._requests.get_request(request_id)

    # ---- request terms: TermsStore (extensions, identity verification)
    def request_terms(self, request_id: str) -> dict:
        return self._terms.request_terms(request_id)

    def terms_of(self, rows) -> dict[str, dict]:
        return self._terms.terms_of(rows)

    def extend_request(self, request_id: str, months: int, reason: str, *, actor: str | None = None,
                       today: date | None = None) -> date:
        return self._terms.extend_request(request_id, months, reason, actor=actor, today=today)

    def verify_identity(self, request_id: str, method: str, by: str, note: str | None = None) -> None:
        return self._terms.verify_identity(request_id, method, by, note)

    def require_verified(self, request_id: str) -> None:
        return self._terms.require_verified(request_id)

    def requested_by(self, request_id: str, who: str) -> bool:
        return self._requests.requested_by(request_id, who)

    def find_requests(self, subject: Subject) -> list[str]:
        return self._requests.find_requests(subject)

    def open_requests(self, kinds: Iterable[str]) -> list[str]:
        return self._requests.open_requests(kinds)

    def set_request_status(self, request_id: str, status: str, *, actor: str | None = None) -> None:
        return self._requests.set_request_status(request_id, status, actor=actor)

    # ---- the request store (encrypted identifiers): RequestStore
    def seal_subject(self, request_id: str, subject: Subject, extra: Mapping | None = None) -> None:
        return self._requests.seal_subject(request_id, subject, extra)

    def is_sealed(self, request_id: str) -> bool:
        return self._requests.is_sealed(request_id)

    def unseal_subject(self, request_id: str) -> Subject:
        return self._requests.unseal_subject(request_id)

    def unseal_extra(self, request_id: str) -> dict:
        return self._requests.unseal_extra(request_id)

    def shred_subject(self, request_id: str, *, actor: str | None = None) -> bool:
        return self._requests.shred_subject(request_id, actor=actor)

    # ---- plans: PlanStore
    def store_plan(self, request_id: str, plan: dict, expires_at: datetime, *, plan_id: str | None = None,
                   actor: str | None = None) -> str:
        return self._plans.store_plan(request_id, plan, expires_at, plan_id=plan_id, actor=actor)

    def get_plan(self, plan_id: str) -> dict:
        return self._plans.get_plan(plan_id)

    def plan_state(self, plan_id: str) -> str:
        return self._plans.plan_state(plan_id)

    def plans_for(self, request_id: str) -> list[dict]:
        return self._plans.plans_for(request_id)

    def expire_overdue(self, *, actor: str | None = None) -> list[str]:
        return self._plans.expire_overdue(actor=actor)

    def verify_plan(self, plan_id: str) -> dict:
        """Refuse (LedgerTampered) a plan that was changed without the ledger key: its content against its
        keyed digest, its approval's signature (once past approval), and each of its audit events against
        its link in the keyed chain. `approve` and `execute` call it before anything changes. Returns the
        plan as `get_plan` does (checked, so callers need not read it again)."""
        row = self._plans.get_plan(plan_id)
        self._plans.check_approval(plan_id)
        bad = self._audit.verify_events([e["event_id"] for e in self._audit.audit_events(plan_id=plan_id)])
        if bad is not None:
            raise LedgerTampered(f"plan {plan_id}: audit event {bad} does not fit the ledger's keyed chain (written or "
                                 f"changed without the key; `lethe audit --verify` walks the whole chain)")
        return row

    def verify_chain(self) -> dict:
        return self._audit.verify_chain()

    def approve(self, plan_id: str, approver: str, *, require_distinct_from_requester: bool = False,
                expected_digest: str | None = None, reason: str | None = None) -> None:
        return self._plans.approve(plan_id, approver, require_distinct_from_requester=require_distinct_from_requester,
                                   expected_digest=expected_digest, reason=reason)

    def reject(self, plan_id: str, approver: str, reason: str) -> None:
        return self._plans.reject(plan_id, approver, reason)

    def start_execution(self, plan_id: str, actor: str) -> None:
        return self._plans.start_execution(plan_id, actor)

    def claim_execution(self, plan_id: str, owner: str, ttl_seconds: int) -> bool:
        return self._plans.claim_execution(plan_id, owner, ttl_seconds)

    def finish_execution(self, plan_id: str, actor: str, *, success: bool = True) -> None:
        return self._plans.finish_execution(plan_id, actor, success=success)

    def record_verification(self, plan_id: str, actor: str, remaining: int, gaps: list[dict] | None = None) -> str:
        return self._plans.record_verification(plan_id, actor, remaining, gaps)

    def transition(self, plan_id: str, expected: str, new: str, *, actor: str | None = None) -> None:
        return self._plans.transition(plan_id, expected, new, actor=actor)

    # ---- actions: ActionStore
    def action_state(self, plan_id: str, action_id: str) -> str | None:
        return self._actions.action_state(plan_id, action_id)

    def mark_action(self, plan_id: str, action_id: str, state: str, rows: int | None = None,
                    detail: str | None = None, *, actor: str | None = None) -> None:
        return self._actions.mark_action(plan_id, action_id, state, rows, detail, actor=actor)

    def mark_actions(self, plan_id: str, action_ids: Sequence[str], state: str, *,
                     rows: Mapping[str, int] | None = None, details: Mapping[str, str | None] | None = None,
                     actor: str | None = None) -> None:
        return self._actions.mark_actions(plan_id, action_ids, state, rows=rows, details=details, actor=actor)

    def pending_actions(self, plan_id: str, action_ids: Iterable[str] | None = None) -> list[str]:
        return self._actions.pending_actions(plan_id, action_ids)

    def actions(self, plan_id: str) -> list[dict]:
        return self._actions.actions(plan_id)

    # ---- locks: LockStore
    def acquire_lock(self, name: str, owner: str, ttl_seconds: int) -> bool:
        return self._locks.acquire_lock(name, owner, ttl_seconds)

    def release_lock(self, name: str, owner: str) -> bool:
        return self._locks.release_lock(name, owner)

    def lock_owner(self, name: str) -> str | None:
        return self._locks.lock_owner(name)

    def break_lock(self, name: str, owner: str, *, actor: str, reason: str) -> bool:
        return self._locks.break_lock(name, owner, actor=actor, reason=reason)

    # ---- legal holds: SuppressionStore
    def place_hold(self, subject: Subject, reason: str, *, actor: str | None = None) -> int:
        return self._suppression.place_hold(subject, reason, actor=actor)

    def release_hold(self, subject: Subject, *, actor: str | None = None) -> int:
        return self._suppression.release_hold(subject, actor=actor)

    def holds_on(self, subject: Subject) -> list[dict]:
        return self._suppression.holds_on(subject)

    # ---- restriction of processing and objections: RestrictionStore
    def restrict(self, subject: Subject, reason: str, *, until: date | None = None, actor: str | None = None) -> int:
        return self._restrictions.restrict(subject, reason, until=until, actor=actor)

    def object_to(self, subject: Subject, purpose: str, reason: str, *, actor: str | None = None) -> int:
        return self._restrictions.object_to(subject, purpose, reason, actor=actor)

    def release_restriction(self, subject: Subject, *, purpose: str = "restriction", actor: str | None = None) -> int:
        return self._restrictions.release_restriction(subject, purpose=purpose, actor=actor)

    def restrictions_on(self, subject: Subject, *, today: date | None = None) -> list[dict]:
        return self._restrictions.restrictions_on(subject, today=today)

    def is_restricted(self, subject: Subject, *, purpose: str | None = None, today: date | None = None) -> bool:
        return self._restrictions.is_restricted(subject, purpose=purpose, today=today)

    def restricted_hashes(self, *, today: date | None = None, purposes=("restriction",)) -> dict:
        return self._restrictions.restricted_hashes(today=today, purposes=purposes)

    def export_restrictions(self, *, today: date | None = None) -> list[dict]:
        return self._restrictions.export_restrictions(today=today)

    # ---- suppression: SuppressionStore
    def suppress(self, subject: Subject, reason: str, request_id: str | None = None, *,
                 actor: str | None = None, keep_addresses: bool = False) -> int:
        return self._suppression.suppress(subject, reason, request_id, actor=actor, keep_addresses=keep_addresses)

    def is_suppressed(self, kind: str, normalised_value, *, region: str = DEFAULT_REGION) -> bool:
        return self._suppression.is_suppressed(kind, normalised_value, region=region)

    def is_subject_suppressed(self, subject: Subject) -> bool:
        return self._suppression.is_subject_suppressed(subject)

    def suppression_entries(self, subject: Subject) -> list[dict]:
        return self._suppression.suppression_entries(subject)

    def kept_addresses(self) -> list[dict]:
        return self._suppression.kept_addresses()

    def export_suppression(self) -> list[dict]:
        return self._suppression.export_suppression()

    # ---- audit: AuditLog
    def audit_events(self, request_id: str | None = None, plan_id: str | None = None) -> list[dict]:
        return self._audit.audit_events(request_id, plan_id)

    def export_audit(self, path: str | os.PathLike, fmt: str = "csv", *, request_id: str | None = None,
                     plan_id: str | None = None) -> int:
        return self._audit.export_audit(path, fmt, request_id=request_id, plan_id=plan_id)

    def reason_matches(self, reason_hash: str, text: str) -> bool:
        """Whether `text` is the text whose keyed hash an event kept ("reason_hash"): an auditor can confirm a
        reason someone claims was given, after the sealed note itself was shredded."""
        return self._notes.matches(reason_hash, text)

    def record_download(self, request_id: str, actor: str, what: str) -> None:
        """Record that `actor` downloaded `what` (a file name Lethe made, e.g. the access package) of a
        request: an audit event "package_downloaded" (the actor screened like approvers)."""
        self.get_request(request_id)  # LedgerError for an unknown request
        screen = self._requests.screen_for_request(request_id)
        with self.engine.begin() as conn:
            self._audit.write_event(conn, "package_downloaded", request_id=request_id,
                                    actor=safe_actor(self._mac, actor, screen),
                                    details={"file": scrub(what, screen, 200)})


def _share_docstrings() -> None:
    """The facade's methods carry the docstrings of the store methods they hand over to (help(Ledger.approve))."""
    stores = (RequestStore, PlanStore, ActionStore, LockStore, SuppressionStore, AuditLog, TermsStore,
              RestrictionStore)
    for name, method in vars(Ledger).items():
        if callable(method) and not name.startswith("_") and method.__doc__ is None:
            method.__doc__ = next((getattr(s, name).__doc__ for s in stores if hasattr(s, name)), None)


_share_docstrings()
