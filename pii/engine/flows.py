"""The special flows: received in error, child-data purge, retention purge, unsubscribe.

Each flow turns a promise of a privacy policy into a `Selection` (which records, and what happens to
them) and runs it through the erasure engine's own path: plan -> approval -> execute -> verify, every step
in the ledger. A selection chooses records by source, date or age (`pii.core.selection.RecordFilter`, pushed
down by each connector's `select`), or by subject within a scope (unsubscribe: marketing lists only).

- The ledger request has the flow as its kind. Its identifiers are the subject's (when a flow is about
  one person) plus a *lineage* id (`lethe_flow`), so later runs of the same flow (the same retention rule)
  find the earlier plans: a record anonymised for statistics is recognised and never anonymised again.
- Everything personal a re-run needs (a sender's address, an import batch value, the identifiers to put
  on the suppression list) is sealed with the request (encrypted) and shredded on completion; the stored
  plan holds only counts, names and keyed hashes.
- Policy holds (`holds:` in the policy file), a retention rule's own `legal_hold`, and ledger holds on the
  subject are honoured: held records are listed in the plan, never touched.
- Text clues (a child's age in free text) are weak evidence: they go to review, never erased unless a
  person includes them (`include_weak`).
- Retention a store declares (stores.yaml `metadata: {retained: ...}`) does not stop these flows: data
  received in error has no legal basis, a child's data and an unsubscribed address must go as promised.
  Their erasing actions on a declared container are planned as usual and flagged (`conflict`) for the
  approver. A retention rule conflicts only when it keeps records for less than the declared period (a
  rule at least as long is how that period ends); its `override_retained` marks that as deliberate.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, Mapping

from pii.engine.stores import connect
from pii.core.config import Config
from pii.engine.discover import locate_subject
from pii.engine.harvest import harvest_identifiers
from pii.core.errors import ConfigError
from pii.core.findings import Finding, merge
from pii.core.policy import (
    ANONYMISE, DELETE, ERASING_ACTIONS, HOLD, REDACT, REVIEW, Decision, DeclaredRetention, OperatorSpec,
    container_matches, declared_for,
)
from pii.core.dates import parse_date, years_before
from pii.core.retention import Period
from pii.core.selection import MESSAGE_DATE, RecordFilter
from pii.core.subject import Subject, SubjectMatcher, normalise_email

RECEIVED_IN_ERROR, CHILD_PURGE, RETENTION, UNSUBSCRIBE = "received_in_error", "child_purge", "retention", "unsubscribe"
FLOWS = (RECEIVED_IN_ERROR, CHILD_PURGE, RETENTION, UNSUBSCRIBE)
LINEAGE_KEY = "lethe_flow"
DEFAULT_DOB_COLUMNS = ("date_of_birth", "dob", "birth_date", "birthdate", "born_on")
DEFAULT_CHILD_AGE = 13
DEFAULT_MAIL_LOOKBACK_DAYS = 90


@dataclass
class Selection:
    """What a flow acts on and what it does. `to_dict` is JSON and may hold personal values (a sender,
    a batch id): it is sealed in the ledger. `public` goes into the stored plan."""

    flow: str
    lineage: str                                   # non-personal, stable across runs of the same flow
    filters: dict[str, list[dict]] = field(default_factory=dict)   # store -> RecordFilter specs
    scope: dict[str, list[str]] = field(default_factory=dict)      # store -> container globs (subject flows)
    action: str = DELETE
    field_ops: dict[str, Any] = field(default_factory=dict)         # column -> operator spec (anonymise)
    reason: str = ""
    legal_basis: str | None = None
    legal_hold: str | None = None
    subject: dict | None = None
    suppress: str | None = None                    # suppression reason at completion, or None
    description: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in ("flow", "lineage", "filters", "scope", "action", "field_ops",
                                                "reason", "legal_basis", "legal_hold", "subject", "suppress",
                                                "description")}

    @classmethod
    def from_dict(cls, data: Mapping) -> "Selection":
        return cls(**{k: data.get(k) for k in ("flow", "lineage", "action", "reason", "legal_basis", "legal_hold",
                                               "subject", "suppress")},
                   filters=dict(data.get("filters") or {}), scope=dict(data.get("scope") or {}),
                   field_ops=dict(data.get("field_ops") or {}), description=dict(data.get("description") or {}))

    def stores(self) -> list[str]:
        return sorted(set(self.filters) | set(self.scope))

    def public(self) -> dict:
        """For the stored plan: no values (filters appear as `RecordFilter.describe`)."""
        return {
            "flow": self.flow,
            "action": self.action,
            "reason": self.reason,
            "legal_hold": self.legal_hold,
            "about_one_subject": self.subject is not None,
            "filters": {s: [RecordFilter.from_spec(f).describe() for f in fs] for s, fs in self.filters.items()},
            "scope": self.scope,
            "description": self.description,
        }

    def operator_specs(self) -> dict[str, OperatorSpec]:
        return {c: OperatorSpec.from_dict(s, f"{self.flow} {self.lineage}, column {c!r}")
                for c, s in self.field_ops.items()}


def _lineage(flow: str, key: str) -> str:
    """An opaque, stable id for "the same flow again" (a rule, an age threshold, a source): it is one of the
    request's identifiers, so it must not read like any text the plan holds."""
    import hashlib

    return "lf" + hashlib.sha256(f"{flow}\0{key}".encode("utf-8")).hexdigest()[:22]


# ---------------------------------------------------------------------------- the target
class SelectionTarget:
    """A selection as the erasure engine plans, executes and verifies it (see pii.engine.erasure.SubjectTarget)."""

    def __init__(self, engine, selection: Selection, suppress_ids: dict | None = None):
        self.engine = engine
        self.selection = selection
        self.kind = selection.flow
        self.subject = Subject.from_dict(selection.subject) if selection.subject else None
        self.matcher = SubjectMatcher(self.subject or Subject())
        self.suppress_ids = suppress_ids
        self.report: dict[str, dict] = {}  # store -> counts and skipped containers of the last locate
        self.restricted: dict[str, str] = {}  # finding key -> hold reason (pii.engine.restriction), last locate

    @classmethod
    def from_request(cls, engine, request_id: str) -> "SelectionTarget":
        extra = engine.ledger.unseal_extra(request_id)
        if "selection" not in extra:
            from pii.core.errors import LedgerError

            raise LedgerError(f"request {request_id}: its selection is not in the request store")
        return cls(engine, Selection.from_dict(extra["selection"]), extra.get("suppress"))

    @property
    def request_subject(self) -> Subject:
        s = self.subject or Subject()
        ids = {k: tuple(v) for k, v in s.ids.items()}
        ids[LINEAGE_KEY] = (self.selection.lineage,)
        return Subject(emails=s.emails, phones=s.phones, names=s.names, ids=ids, region=s.region)

    # ---- finding records
    def locate(self, stores: list[str] | None) -> list[Finding]:
        sel = self.selection
        wanted = [s for s in sel.stores() if not stores or s in stores]
        config: Config = self.engine.config
        found: list[Finding] = []
        for name in wanted:
            if name not in sel.filters:
                continue
            store = config.stores[name]
            counts = {"selected": 0, "undated": 0, "skipped": []}
            with connect(config, store, progress=_without_skips(self.engine.progress)) as conn:
                for spec in sel.filters[name]:
                    conn.skipped, conn.undated = [], 0
                    got = conn.select(RecordFilter.from_spec(spec))
                    counts["selected"] += len(got)
                    counts["undated"] += conn.undated
                    counts["skipped"] += [list(x) for x in conn.skipped]
                    found.extend(got)
            self.report[name] = counts
            self.engine.progress(name, f"{counts['selected']} records selected ({sel.flow})")
        found = merge(found)
        if self.subject is not None:
            scoped = [s for s in wanted if s in sel.scope or s in sel.filters]
            own = locate_subject(config, self.subject, stores=scoped, progress=self.engine.progress).findings
            if sel.filters:
                keys = {f.key for f in found}
                own = [f for f in own if f.store not in sel.filters or f.key in keys]
            own = [f for f in own if f.store not in sel.scope
                   or any(container_matches(g, f) for g in sel.scope[f.store])]
            self._match_restricted(own)
            return own
        self._match_restricted(found)
        return found

    def _match_restricted(self, findings: list[Finding]) -> None:
        """Records of people whose processing is restricted (`lethe restrict`) are held by every flow but
        unsubscribe (the person's own objection to marketing): see pii.engine.restriction."""
        self.restricted = {}
        if self.selection.flow == UNSUBSCRIBE:
            return
        from pii.engine.restriction import RestrictedRecords

        today = getattr(self.engine, "today", None) or dt.date.today()
        people = RestrictedRecords(self.engine.ledger, today, self.engine.config.default_region)
        if not people:
            return
        self.restricted = people.held(findings)
        whole = [f for f in findings if f.record is None]  # a whole file: held when one of its rows is
        if whole:
            rows = [g for g in self.records_of(whole) if g.record is not None]
            held_rows = people.held(rows)
            for f in whole:
                reason = next((held_rows[g.key] for g in rows if g.key in held_rows
                               and (g.store, g.container) == (f.store, f.container)), None)
                if reason:
                    self.restricted[f.key] = reason

    def records_of(self, findings: list[Finding]) -> list[Finding]:
        """The findings with their records; a whole file selected as one finding is read record by record
        (for the identifiers to suppress)."""
        out = [f for f in findings if f.record is not None]
        files = {(f.store, f.container) for f in findings if f.record is None}
        config: Config = self.engine.config
        for store_name in sorted({s for s, _ in files}):
            with connect(config, store_name) as conn:
                for spec in self.selection.filters.get(store_name, []):
                    if not spec.get("whole_files"):
                        continue
                    flt = RecordFilter.from_spec({**spec, "whole_files": False})
                    out += [g for g in conn.select(flt) if (g.store, g.container) in files]
        return out

    def decide(self, f: Finding, today: dt.date, include_weak: bool) -> Decision:
        policy = self.engine.policy
        hold = next((h for h in policy.holds if h.applies(f, today)), None)
        if hold is not None:
            return Decision(HOLD, None, f"legal hold: {hold.reason}", until=hold.until)
        sel = self.selection
        if sel.legal_hold:
            return Decision(HOLD, None, f"legal hold: {sel.legal_hold}")
        if f.key in self.restricted:
            return Decision(HOLD, None, self.restricted[f.key])
        if sel.action == ANONYMISE:
            decision = Decision(ANONYMISE, None, sel.reason, sel.legal_basis, field_ops=sel.operator_specs())
        else:
            decision = Decision(DELETE, None, sel.reason, sel.legal_basis)
        if self.subject is not None and f.match == "text":
            # a mention of the person inside someone else's record: only their words go (as in erasure)
            decision = Decision(REDACT, None, f"{sel.reason}: the person's mentions in another record are redacted")
        self._flag_declared(decision, f, today)
        if (f.strength == "weak" or (f.match == "text" and self.subject is None)) and not include_weak:
            why = ("a clue in free text only (no date of birth): a person reviews it" if self.subject is None
                   else "weak evidence only: a person must include it explicitly")
            return Decision(REVIEW, None, why, proposed=decision)
        return self.engine._feasible(decision, f)

    def _flag_declared(self, decision: Decision, f: Finding, today: dt.date) -> None:
        """Mark an erasing decision on a container the store declares retained (see the module docstring):
        the flow's action stands, the plan shows the conflict."""
        declaration = declared_for(getattr(self.engine, "declared", ()), f)
        if declaration is None or decision.action not in ERASING_ACTIONS:
            return
        sel = self.selection
        if sel.flow == RETENTION:
            if not _shorter_than_declared(sel.description, declaration, today):
                return
            who = f"retention rule {sel.description.get('rule')} (kept {sel.description.get('period')})"
            decision.override_reason = sel.description.get("override_retained")
        else:
            who = {RECEIVED_IN_ERROR: "the received-in-error flow (no legal basis to hold it)",
                   CHILD_PURGE: "the child-data purge", UNSUBSCRIBE: "unsubscribe (the marketing lists)"
                   }.get(sel.flow, sel.flow)
        decision.conflict = declaration.conflict(who, decision.action)

    def check_holds(self) -> None:
        if self.subject is not None:
            self.engine.check_holds(self.subject)

    def lock_names(self) -> list[str]:
        return [f"flow:{self.selection.lineage[:80]}"]

    def lineage(self) -> list[str]:
        ledger = self.engine.ledger
        subject = Subject(ids={LINEAGE_KEY: (self.selection.lineage,)})
        return [r for r in ledger.find_requests(subject) if ledger.get_request(r)["kind"] == self.kind]

    def complete(self, request_id: str, actor: str) -> None:
        if not self.selection.suppress:
            return
        ids = dict(self.suppress_ids or {})
        if self.subject is not None:
            ids.setdefault("emails", [])
            ids["emails"] = sorted(set(ids["emails"]) | set(self.subject.emails))
            ids.setdefault("phones", [])
            ids["phones"] = sorted(set(ids["phones"]) | set(self.subject.phones))
        people = Subject(emails=tuple(ids.get("emails") or ()), phones=tuple(ids.get("phones") or ()),
                         region=self.engine.config.default_region)
        if not people.is_empty():
            keep = self.kind == UNSUBSCRIBE and keep_unsubscribed_addresses(self.engine.config)
            self.engine.ledger.suppress(people, self.selection.suppress, request_id, actor=actor, keep_addresses=keep)


def _shorter_than_declared(description: Mapping, declaration: DeclaredRetention, today: dt.date) -> bool:
    """Whether a retention rule (its period in the selection's description) keeps records for less time than
    the store declares: compared as lengths on the run date (the declaration's start, e.g. "after membership
    ends", is not known). A period that cannot be read counts as shorter: flagged rather than silent."""
    run_date = parse_date(description.get("run_date"), day_first=False) if description.get("run_date") else None
    day = run_date or today
    try:
        rule = Period.parse(description.get("period"), "retention rule")
        declared = Period.parse(declaration.period, "declared retention")
    except ConfigError:
        return True
    return rule.before(day) > declared.before(day)


def keep_unsubscribed_addresses(config: Config) -> bool:
    """`suppression: {keep_addresses: true}`: the controller keeps unsubscribed addresses themselves (a
    deliberate retention under legitimate interest, so no list ever mails them again); default: hashes only."""
    raw = config.raw.get("suppression") or {}
    if not isinstance(raw, Mapping):
        raise ConfigError("'suppression' must be a mapping (keep_addresses: true|false)")
    value = raw.get("keep_addresses", False)
    if not isinstance(value, bool):
        raise ConfigError("suppression.keep_addresses must be true or false")
    return value


def _without_skips(progress):
    """Per-table "skipped (no column x)" lines are noise on a whole-store selection: the plan report
    lists the skipped tables and files instead."""
    def say(store: str, message: str) -> None:
        if ": skipped (" not in message and "tables match the selection" not in message:
            progress(store, message)
    return say


# ---------------------------------------------------------------------------- running a flow
def submit_selection(engine, selection: Selection, requester: str, *, received_at: dt.date | None = None,
                     include_weak: bool = False):
    """Plan a selection and store the plan awaiting approval (pii.core.plans.Plan with `request_id`)."""
    engine.policy.check_environment()
    lapse_flow_requests(engine)
    target = SelectionTarget(engine, selection)
    target.check_holds()
    plan = _plan_selection(engine, target, include_weak)
    to_delete = {a.action_id for a in plan.actions if a.action == DELETE}
    deleted = [f for f in plan.findings if engine.action_id(f.store, f.location) in to_delete]
    harvested = harvest_identifiers(target.records_of(deleted), engine.config) if selection.suppress else {}
    request_id = engine.ledger.create_request(selection.flow, target.request_subject, requester, received_at,
                                              due_in_days=selection.description.get("due_in_days"))
    engine.ledger.seal_subject(request_id, target.request_subject,
                               extra={"selection": selection.to_dict(), "suppress": harvested})
    return engine.store_plan(plan, request_id, requester)


def unfinished_plans(engine, selection: Selection) -> list[str]:
    """Plans of earlier runs of the same flow (same lineage) that were approved but did not finish (a
    crash, a store that went away): `--yes` resumes them before planning anew, so nothing is left half done."""
    from pii.ledger import APPROVED, EXECUTED, EXECUTING, FAILED, VERIFIED

    target = SelectionTarget(engine, selection)
    out = []
    for request_id in target.lineage():
        request = engine.ledger.get_request(request_id)
        for p in engine.ledger.plans_for(request_id):
            if p["state"] == FAILED and any(a["state"] == "drifted" for a in engine.ledger.actions(p["plan_id"])):
                continue  # the stores changed since: a new plan covers what is left
            if p["state"] in (APPROVED, EXECUTING, FAILED, EXECUTED) or (
                    p["state"] == VERIFIED and request["status"] != "completed"):
                out.append(p["plan_id"])
    return out


def lapse_flow_requests(engine, *, actor: str = "lethe: plan expired") -> int:
    """Plans of the special flows that passed their expiry without being carried out expire; a flow
    request left with nothing but expired plans is withdrawn and its sealed data shredded (a flow's run
    is not a person's request: the next scheduled run plans afresh). Returns how many were withdrawn."""
    from pii.ledger import EXPIRED

    engine.ledger.expire_overdue(actor=actor)
    withdrawn = 0
    for request_id in engine.ledger.open_requests(FLOWS):
        plans = engine.ledger.plans_for(request_id)
        if plans and all(p["state"] == EXPIRED for p in plans):
            engine.ledger.shred_subject(request_id, actor=actor)
            engine.ledger.set_request_status(request_id, "withdrawn", actor=actor)
            withdrawn += 1
    return withdrawn


def preview_selection(engine, selection: Selection, *, include_weak: bool = False):
    """The plan a selection would get, stored nowhere (dry run)."""
    return _plan_selection(engine, SelectionTarget(engine, selection), include_weak)


def _plan_selection(engine, target: SelectionTarget, include_weak: bool):
    """Find the selection's records and decide each, leaving out those earlier runs of the same flow
    already changed as planned; the plan records what was selected per store."""
    selection = target.selection
    earlier = engine._changed_as_planned(target)
    plan = engine.plan_target(target, include_weak=include_weak, stores=selection.stores(), skip_prints=earlier)
    plan.data["selection"] = selection.public()
    plan.data["selection_report"] = target.report
    plan.data["flow"] = selection.flow
    return plan


# ---------------------------------------------------------------------------- the flows' selections
@dataclass
class Source:
    """Where data received in error came from: one of `file` (a CSV export or an FTP drop path),
    `sender` / `message_id` (mail), or `column` + `value` (a SQL import batch, optionally in `table`)."""

    store: str
    file: str | None = None
    sender: str | None = None
    message_id: str | None = None
    column: str | None = None
    value: str | None = None
    table: str | None = None


def received_in_error(engine, source: Source, subject: Subject | None = None) -> Selection:
    config = engine.config
    if source.store not in config.stores:
        raise ConfigError(f"unknown store {source.store!r}; configured: {', '.join(config.stores)}")
    kind = config.stores[source.store].kind
    given = [k for k in ("file", "sender", "message_id", "column") if getattr(source, k)]
    if len(given) != 1:
        raise ConfigError("name exactly one source: a file (--file), a mail sender (--sender), a message "
                          "(--message-id) or an import batch (--batch COLUMN=VALUE)")
    allowed = {"csv": "file", "ftp": "file", "gmail": ("sender", "message_id"), "sql": "column"}[kind]
    if given[0] not in (allowed if isinstance(allowed, tuple) else (allowed,)):
        raise ConfigError(f"store '{source.store}' is a {kind} store: its sources are named with "
                          + {"csv": "--file", "ftp": "--file", "gmail": "--sender or --message-id",
                             "sql": "--batch COLUMN=VALUE [--table T]"}[kind])
    whole = subject is None
    if source.file:
        spec = RecordFilter(containers=[source.file], whole_files=whole).to_spec()
        what = f"file in {source.store}"
    elif source.sender:
        addr = normalise_email(source.sender)
        if not addr:
            raise ConfigError("--sender is not a valid e-mail address")
        spec = RecordFilter(mail_from=[addr]).to_spec()
        what = f"mail from one sender in {source.store}"
    elif source.message_id:
        spec = RecordFilter(message_ids=[source.message_id]).to_spec()
        what = f"one message in {source.store}"
    else:
        if source.value is None:
            raise ConfigError("an import batch needs COLUMN=VALUE")
        spec = RecordFilter(containers=[source.table or "*"], equals={source.column: [source.value]},
                           follow_links=True).to_spec()  # rows added about those people later go too
        what = f"import batch ({source.column}) in {source.store}"
    lineage = engine.ledger.protect_value({"store": source.store, "source": spec})[5:29]
    return Selection(
        flow=RECEIVED_IN_ERROR, lineage=_lineage(RECEIVED_IN_ERROR, lineage), filters={source.store: [spec]}, action=DELETE,
        reason="received in error (no legal basis to hold it)", suppress="received in error",
        subject=subject.to_dict() if subject else None,
        description={"source": what, "whole_source": whole})


def child_settings(config: Config) -> dict:
    raw = config.raw.get("child_purge") or {}
    if not isinstance(raw, Mapping):
        raise ConfigError("'child_purge' must be a mapping (threshold, dob_columns, stores, text_clues)")
    threshold = raw.get("threshold", DEFAULT_CHILD_AGE)
    if not isinstance(threshold, int) or isinstance(threshold, bool) or not 1 <= threshold <= 21:
        raise ConfigError("child_purge: 'threshold' must be an age in whole years, e.g. 13, 16 or 18")
    cols = raw.get("dob_columns", list(DEFAULT_DOB_COLUMNS))
    if isinstance(cols, str):
        cols = [cols]
    stores = raw.get("stores") or list(config.stores)
    unknown = [s for s in stores if s not in config.stores]
    if unknown:
        raise ConfigError(f"child_purge: unknown store(s) {', '.join(unknown)}")
    return {"threshold": threshold, "dob_columns": list(cols), "stores": list(stores),
            "text_clues": bool(raw.get("text_clues", True)),
            "min_score": float(raw.get("min_score", 0.5)),
            "mail_lookback_days": int(raw.get("mail_lookback_days", DEFAULT_MAIL_LOOKBACK_DAYS))}


def child_purge(engine, run_date: dt.date, *, threshold: int | None = None) -> Selection:
    """Records of people younger than the threshold on `run_date`: by date of birth (purged after
    approval) and, as review-only clues, by what their free text says about their age."""
    config = engine.config
    settings = child_settings(config)
    age = threshold or settings["threshold"]
    born_after = years_before(run_date, age)  # born after this day: younger than `age` on run_date
    filters: dict[str, list[dict]] = {}
    for name in settings["stores"]:
        kind = config.stores[name].kind
        specs = []
        if kind != "gmail":
            # born after `born_after` and not after the run date (a later "birth date" is no child's)
            specs += [RecordFilter(date_column=col, after=born_after, before=run_date + dt.timedelta(days=1),
                                  entity="DATE_OF_BIRTH", follow_links=True).to_spec()
                      for col in settings["dob_columns"]]
        if settings["text_clues"]:
            clue = {"threshold": age, "min_score": settings["min_score"]}
            extra = {}
            if kind == "gmail":
                extra = {"date_column": MESSAGE_DATE,
                         "after": run_date - dt.timedelta(days=settings["mail_lookback_days"] + 1)}
            specs.append(RecordFilter(**extra, text_clue=clue).to_spec())
        filters[name] = specs
    return Selection(
        flow=CHILD_PURGE, lineage=_lineage(CHILD_PURGE, str(age)), filters=filters, action=DELETE,
        reason=f"personal data of a child under {age}: deleted as the privacy policy promises",
        suppress=f"child under {age}",
        description={"threshold": age, "born_after": born_after.isoformat(), "run_date": run_date.isoformat()})


def retention_selection(engine, rule, run_date: dt.date) -> Selection:
    config = engine.config
    from dataclasses import replace

    from pii.core.selection import FILE_TIME

    recent = None
    if rule.by_last_contact:  # people with a later contact in other stores are kept (pii.engine.lastcontact)
        from pii.engine.lastcontact import recent_contacts

        recent = recent_contacts(engine, rule, run_date)
    flt = replace(rule.record_filter(run_date, recent),
                  whole_files=(rule.date == FILE_TIME and rule.action == DELETE),
                  follow_links=rule.include_linked or (rule.by_last_contact and rule.action == DELETE))
    spec = flt.to_spec()
    stores = [s for s in config.stores if rule.covers_store(s)]
    return Selection(
        flow=RETENTION, lineage=_lineage(RETENTION, rule.name), filters={s: [spec] for s in stores},
        action=rule.action, field_ops={c: o.to_dict() for c, o in rule.anonymise.items()},
        reason=f"retention rule {rule.name}: {rule.category} kept {rule.period} after "
               f"{'the last contact' if rule.by_last_contact else rule.date.lstrip('@')}",
        legal_basis=rule.legal_basis, legal_hold=rule.legal_hold,
        description={"rule": rule.name, "category": rule.category, "period": str(rule.period),
                     "cutoff": flt.before.isoformat(), "run_date": run_date.isoformat(),
                     **({"override_retained": rule.override_retained} if rule.override_retained else {})})


def marketing_scope(config: Config) -> dict[str, list[str]]:
    """Stores (and containers) marked as marketing lists: `marketing: true` or `marketing: [globs]` on a
    store, or the top-level `marketing_lists: {store: [globs]}`."""
    scope: dict[str, list[str]] = {}
    top = config.raw.get("marketing_lists") or {}
    if not isinstance(top, Mapping):
        raise ConfigError("'marketing_lists' must map store names to table/file globs")
    for name, globs in top.items():
        if name not in config.stores:
            raise ConfigError(f"marketing_lists: unknown store {name!r}")
        scope[name] = [globs] if isinstance(globs, str) else list(globs or ["*"])
    for name, store in config.stores.items():
        mark = store.options.get("marketing", store.metadata.get("marketing"))
        if mark is True:
            scope.setdefault(name, ["*"])
        elif isinstance(mark, (str, list)):
            scope.setdefault(name, [mark] if isinstance(mark, str) else list(mark))
    if not scope:
        raise ConfigError("no store is marked as a marketing list: add `marketing: true` (or a list of "
                          "tables/files) to those stores, or `marketing_lists:` to the config")
    return scope


def unsubscribe_days(config: Config) -> int | None:
    """`unsubscribe: {within_days: N}`: the period the privacy policy promises for taking someone off the
    marketing lists (the request's due date); default: one calendar month, as any request."""
    raw = config.raw.get("unsubscribe") or {}
    if not isinstance(raw, Mapping):
        raise ConfigError("'unsubscribe' must be a mapping (within_days: N)")
    days = raw.get("within_days")
    if days is not None and (not isinstance(days, int) or isinstance(days, bool) or not 1 <= days <= 366):
        raise ConfigError("unsubscribe.within_days must be a whole number of days from 1 to 366")
    return days


def unsubscribe(engine, subject: Subject) -> Selection:
    return Selection(
        flow=UNSUBSCRIBE, lineage=_lineage(UNSUBSCRIBE, "marketing"), scope=marketing_scope(engine.config), action=DELETE,
        reason="consent withdrawn / unsubscribed: removed from the marketing lists",
        suppress="unsubscribed: never mail again", subject=subject.to_dict(),
        description={"scope": "marketing lists", "due_in_days": unsubscribe_days(engine.config)})


def run_date_of(value: str | dt.date | None) -> dt.date:
    if value is None:
        return dt.date.today()
    if isinstance(value, dt.date):
        return value
    d = parse_date(value, day_first=False)
    if d is None:
        raise ConfigError("the run date must be written YYYY-MM-DD")
    return d
