"""Requests as an orchestrator sees them: registering a subject-access or erasure request (the
identifiers kept only as keyed hashes plus the encrypted request store), picking a registered request up
again by its id, the access answer's request details, work files between steps, and due dates.

The CLI and the Airflow tasks share these, so no rule about requests lives only in a DAG. Nothing here
logs or returns a personal value except `Subject` objects and findings, which callers keep in memory or
in encrypted work files.
"""
from __future__ import annotations

import json
import os
import tempfile
from datetime import date, timedelta
from pathlib import Path
from typing import Any, Iterable, Mapping

from sqlalchemy import select

import pii.state.inventory  # noqa: F401 - its table must be declared before a Ledger makes the state engine
from pii.core.errors import InvalidIdentifier, LedgerError
from pii.core.findings import Finding
from pii.ledger import Ledger, due_date, ledger_requests
from pii.core.subject import DEFAULT_REGION, Subject

ACCESS, ERASURE = "access", "erasure"
# requests a person made about themselves: where stores.yaml requires it, their identity is verified first
SUBJECT_KINDS = (ACCESS, ERASURE, "rectification")
OUTPUT_ENV = "LETHE_OUTPUT_DIR"
OPEN_STATUSES = ("open", "in_progress")
DUE_SOON_DAYS = 7
IDENTIFIER_FIELDS = ("emails", "names", "phones", "ids")


# --------------------------------------------------------------------------- identifiers
def has_identifiers(conf: Mapping[str, Any]) -> bool:
    """Whether a run conf (or form) names any identifier at all."""
    return any(conf.get(k) for k in IDENTIFIER_FIELDS)


def subject_from_conf(conf: Mapping[str, Any], region: str = DEFAULT_REGION) -> Subject:
    """The subject a run conf names: ``emails``, ``names``, ``phones`` (lists or one string) and ``ids``
    (``{"customer_no": "123"}`` or a list of values per key). Errors name the kind and position only."""
    def strings(key: str) -> list[str]:
        value = conf.get(key) or []
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            raise InvalidIdentifier(f"'{key}' must be a list of strings")
        return list(value)

    ids = conf.get("ids") or {}
    if not isinstance(ids, Mapping):
        raise InvalidIdentifier("'ids' must be an object of KEY: value (or KEY: [values])")
    return Subject.build(emails=strings("emails"), names=strings("names"), phones=strings("phones"),
                         ids=ids, region=(conf.get("region") or region or DEFAULT_REGION).upper())


def parse_received(value: Any) -> date | None:
    if value in (None, ""):
        return None
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        raise InvalidIdentifier("received_at must be a date written YYYY-MM-DD") from None


# --------------------------------------------------------------------------- register / pick up
def register(ledger: Ledger, kind: str, subject: Subject, requester: str, *, received_at: date | None = None,
             request_id: str | None = None) -> str:
    """Create the request in the ledger (idempotent on `request_id`) and seal its identifiers in the
    encrypted request store, so later steps can run by id alone."""
    request_id = ledger.create_request(kind, subject, requester, received_at, request_id)
    ledger.seal_subject(request_id, subject)
    return request_id


def identity_required(config) -> bool:
    """stores.yaml's ``requests: {require_identity_verification: true}``: runs by request id wait for a
    verified identity (`lethe verify-identity`)."""
    settings = (getattr(config, "raw", None) or {}).get("requests") or {}
    return bool(settings.get("require_identity_verification"))


def check_identity(ledger: Ledger, config, request_id: str) -> None:
    """LedgerError (exit 3) when stores.yaml requires identity verification and the request (one a person
    made about themselves) has none recorded yet. Flow requests (retention, purges) have no requester."""
    if not identity_required(config):
        return
    if ledger.get_request(request_id)["kind"] in SUBJECT_KINDS:
        ledger.require_verified(request_id)


def pick_up(ledger: Ledger, kind: str, request_id: str, *, require_identity: bool = False) -> tuple[Subject, dict]:
    """A registered request's subject (from the request store) and ledger row; refuses another kind, a
    closed request and, with `require_identity`, a requester whose identity is not verified (exit 3)."""
    row = ledger.get_request(request_id)
    if row["kind"] != kind:
        raise LedgerError(f"request {request_id} is a {row['kind']} request, not {kind}")
    if row["status"] not in OPEN_STATUSES:
        raise LedgerError(f"request {request_id} is {row['status']}: register a new request")
    if require_identity:
        ledger.require_verified(request_id)
    return ledger.unseal_subject(request_id), row


def access_request_info(ledger: Ledger, subject: Subject, row: Mapping[str, Any] | None,
                        *, received_at: date | None = None, extra: Mapping[str, Any] | None = None) -> dict | None:
    """The manifest's ``request`` section of an access answer: received and due dates, and the subject's
    suppression entries (so whoever sends the answer knows an erasure happened)."""
    info: dict[str, Any] = {}
    if row is not None:
        info["request_id"] = row["request_id"]
        info["received_at"] = row["received_at"]
        info["due_by"] = row["due_at"]
    elif received_at is not None:
        info["received_at"] = received_at.isoformat()
        info["due_by"] = due_date(received_at).isoformat()
    suppression = ledger.suppression_entries(subject)
    if suppression:
        info["suppression"] = suppression
    for k, v in (extra or {}).items():
        if v is not None and v != "":
            info[k] = v
    return info or None


def complete(ledger: Ledger, request_id: str, actor: str, *, shred: bool = True) -> None:
    """Mark an access request answered and shred its sealed identifiers (the hashes stay)."""
    ledger.set_request_status(request_id, "completed", actor=actor)
    if shred:
        ledger.shred_subject(request_id, actor=actor)


# --------------------------------------------------------------------------- work files
def write_findings(path: Path, ledger: Ledger, findings: Iterable[Finding]) -> Path:
    """Findings (with their records) for a later step, encrypted with the ledger's request-store key
    (the same key that protects the identifiers themselves) and written atomically, mode 0600."""
    from pii.reports.package import json_safe

    data = [{"store": f.store, "location": f.location, "entities": list(f.entities), "match": f.match,
             "strength": f.strength, "container": f.container, "record": json_safe(f.record), "note": f.note}
            for f in findings]
    token = ledger._fernet().encrypt(json.dumps(data, ensure_ascii=False).encode("utf-8"))
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".enc")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(token)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_findings(path: Path, ledger: Ledger) -> list[Finding]:
    from cryptography.fernet import InvalidToken

    try:
        raw = ledger._fernet().decrypt(Path(path).read_bytes())
    except FileNotFoundError:
        raise LedgerError(f"work file {Path(path).name} is missing (cleaned up, or another worker's disk)") from None
    except InvalidToken:
        raise LedgerError(f"work file {Path(path).name} cannot be decrypted with this ledger's key") from None
    return [Finding(**item) for item in json.loads(raw)]


# --------------------------------------------------------------------------- outputs and notices
def output_root(config) -> Path:
    """Where answers, certificates and notices go: $LETHE_OUTPUT_DIR, else ``lethe_output/`` beside
    stores.yaml (a relative $LETHE_OUTPUT_DIR is read from there too)."""
    value = os.environ.get(OUTPUT_ENV)
    path = Path(os.path.expanduser(value)) if value else config.base_dir / "lethe_output"
    return path if path.is_absolute() else config.base_dir / path


def request_output_dir(config, kind: str, request_id: str) -> Path:
    """A request's own folder under `output_root` (``access/<id>/``, ``erasure/<id>/``, ...)."""
    import re

    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", str(request_id)).strip("._") or "_"
    return output_root(config) / kind / safe


def extend_with_notice(ledger: Ledger, config, request_id: str, months: int, reason: str, *,
                       actor: str | None = None, today: date | None = None) -> tuple[date, Path]:
    """Extend the request (`Ledger.extend_request`: the rules and their refusals) and write the notice to
    the person beside the request's output: ``<kind>/<id>/extension-notice-<n>.txt`` (mode 0600), saying
    why and by when they will have their answer. Returns the new due date and the notice's path."""
    new_due = ledger.extend_request(request_id, months, reason, actor=actor, today=today)
    row = ledger.get_request(request_id)
    terms = ledger.request_terms(request_id)
    folder = request_output_dir(config, row["kind"], request_id)
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = folder / f"extension-notice-{terms['extension_months']}.txt"
    what = {"access": "your request for a copy of your personal data",
            "erasure": "your request to erase your personal data",
            "rectification": "your request to correct your personal data"}.get(row["kind"], "your request")
    text = (f"Reference: {request_id}\n\n"
            f"We received {what} on {row['received_at']}. We were due to answer by {terms['first_due']}.\n"
            f"We need more time to answer it fully, for this reason:\n\n    {str(reason).strip()}\n\n"
            f"We will answer by {new_due.isoformat()} at the latest "
            f"({terms['extension_months']} month(s) beyond the first date, as the law allows).\n"
            f"If you are unhappy with this, you may complain to {_authority(config)}.\n")
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=".txt")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return new_due, path


def _authority(config) -> str:
    """The supervisory authority as stores.yaml's ``controller: {supervisory_authority: ...}`` names it."""
    sa = ((getattr(config, "raw", None) or {}).get("controller") or {}).get("supervisory_authority") or {}
    name = sa.get("name") or "the supervisory authority"
    where = ", ".join(str(sa[k]) for k in ("url", "email", "phone", "address") if sa.get(k))
    return f"{name} ({where})" if where else name


# --------------------------------------------------------------------------- due dates
def list_requests(ledger: Ledger, *, include_closed: bool = False, today: date | None = None) -> list[dict]:
    """Requests (open or in progress; all with `include_closed`), soonest due first: request_id, kind,
    status, received, due (the extended date once extended), first_due, extended_to, identity,
    days_left and overdue. Ids, kinds, dates and states only."""
    today = today or date.today()
    r = ledger_requests
    stmt = select(r.c.request_id, r.c.kind, r.c.status, r.c.received_at, r.c.due_at)
    if not include_closed:
        stmt = stmt.where(r.c.status.in_(OPEN_STATUSES))
    with ledger.engine.connect() as conn:
        rows = [dict(row._mapping) for row in conn.execute(stmt)]
    terms = ledger.terms_of(rows)
    out = []
    for row in rows:
        t = terms[row["request_id"]]
        due = date.fromisoformat(t["due"])
        is_open = row["status"] in OPEN_STATUSES
        out.append({"request_id": row["request_id"], "kind": row["kind"], "status": row["status"],
                    "received": row["received_at"], "due": t["due"], "first_due": t["first_due"],
                    "extended_to": t["extended_to"], "identity": t["identity"],
                    "days_left": (due - today).days if is_open else None, "overdue": is_open and due < today,
                    # the names due_report's readers know
                    "received_at": row["received_at"], "due_at": t["due"]})
    return sorted(out, key=lambda x: (x["due"], x["request_id"]))


def open_requests(ledger: Ledger) -> list[dict]:
    """Requests not yet answered (open or in progress), as list_requests gives them."""
    return list_requests(ledger)


def due_report(ledger: Ledger, today: date | None = None, within_days: int = DUE_SOON_DAYS) -> dict:
    """Open requests split into overdue (due date passed; an extended request by its extended date) and
    due soon (within `within_days`). Ids, kinds and dates only."""
    today = today or date.today()
    horizon = today + timedelta(days=within_days)
    keys = ("request_id", "kind", "status", "received_at", "due_at")
    rows = [{k: r[k] for k in keys} for r in list_requests(ledger, today=today)]
    overdue = [r for r in rows if date.fromisoformat(r["due_at"]) < today]
    soon = [r for r in rows if today <= date.fromisoformat(r["due_at"]) <= horizon]
    return {"today": today.isoformat(), "open": len(rows), "overdue": overdue, "due_soon": soon,
            "within_days": within_days}
