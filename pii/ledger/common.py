"""What every ledger store shares: the plan, action and request states, the canonical form of identifiers,
fixed-width UTC timestamps and the checks on ids and datetimes."""
from __future__ import annotations

import calendar
import re
from datetime import date, datetime, timezone

from pii.core.errors import LedgerError
from pii.core.subject import DEFAULT_REGION, Subject, name_key, normalise_email, normalise_id, normalise_phone

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

STARTED, DONE, SKIPPED, ACTION_FAILED, DRIFTED = "started", "done", "skipped", "failed", "drifted"
ACTION_STATES = (STARTED, DONE, SKIPPED, ACTION_FAILED, DRIFTED)
ACTION_FINAL = (DONE, SKIPPED)  # never run again

REQUEST_STATUSES = ("open", "in_progress", "completed", "refused", "withdrawn")

_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:\-]{0,63}$")


# --------------------------------------------------------------------------- helpers
def iso(ts: datetime) -> str:
    """Fixed-width UTC text: compares in SQL like the instants it names, on every backend."""
    return ts.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def due_date(received: date, months: int = 1) -> date:
    """One calendar month after receipt (GDPR Art. 12(3)); the last day of a shorter month if needed."""
    index = received.month - 1 + months
    year, month = received.year + index // 12, index % 12 + 1
    return date(year, month, min(received.day, calendar.monthrange(year, month)[1]))


def identifier_kind(kind: str) -> str:
    """The kind of an identifier as the ledger spells it: email, phone, name or id:<key> (LedgerError if not)."""
    k = str(kind).strip()
    if k.lower().startswith("id:") and len(k) > 3:
        return "id:" + k[3:].strip().casefold()
    if k in ("email", "phone", "name"):
        return k
    raise LedgerError(f"unknown identifier kind {k[:40]!r}: use email, phone, name or id:<key>")


def canonical_identifier(kind: str, value, region: str = DEFAULT_REGION) -> str:
    """The form of an identifier that is hashed: two spellings of one identifier give one hash."""
    kind = identifier_kind(kind)
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
            out.add((identifier_kind("id:" + key), normalise_id(v)))
    return sorted(out)


def check_id(what: str, value) -> str:
    if not isinstance(value, str) or not _ID_RE.match(value):
        raise LedgerError(f"{what} must be 1-64 letters, digits, '.', '_', ':' or '-', starting with a letter or digit")
    return value


def aware(what: str, value) -> datetime:
    if not isinstance(value, datetime) or value.tzinfo is None or value.utcoffset() is None:
        raise LedgerError(f"{what} must be a timezone-aware datetime")
    return value
