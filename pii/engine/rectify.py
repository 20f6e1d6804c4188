"""Rectification (GDPR Art. 16) through the erasure engine's own path: plan -> approval -> execute -> verify,
with the same ledger, locks, crash-safe resume and certificate (`RectifyTarget` is a `Target` of
`pii.engine.erasure.ErasureEngine`, as `pii.engine.flows.SelectionTarget` is).

- **Request.** A request of kind ``rectification`` for the subject's current identifiers; the new values
  are personal data: they are sealed with the request (`Ledger.seal_subject(..., extra={"rectify": ...})`)
  and shredded on completion. The stored plan names fields by kind only (``{"email": {"operator":
  "rectify", "kind": "email"}}``); the value written is computed when the plan is carried out
  (pii/core/rectify.py: in each field's own form).
- **Plan.** The subject is located as a DSAR finds them. Every record with an identifier field holding an
  old value of a kind being set is planned (action ``rectify``); a name-only (weak) record goes to review
  unless included; a mention of the old value in someone else's text goes to review unless
  ``include_mentions``; a store that cannot change a record in place (mail) lists it as
  "not changeable: review" and it is never called rectified.
- **Verify.** The subject is located again: no identifier field may still hold an old value of a kind set,
  and every record changed must be found, as changed, by a search for the new values (its post-change
  fingerprint, as the engine recorded it). Then the suppression list follows the person: an old e-mail or
  phone on the list puts the new one there with the same reason.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Callable, Mapping

from connectors.base import UPDATE as X_UPDATE, ExecAction
from pii.core.errors import LedgerError
from pii.core.findings import WEAK, Finding
from pii.core.plans import Plan, PlannedAction, actions_of, shown_container
from pii.core.policy import HOLD, REVIEW, RETAIN, Decision
from pii.core.rectify import (
    EMAIL, GIVEN, FAMILY, MENTION, NAME, PHONE, Changes, RectifySpec, check_changes, identifier_fields,
    mention_fields, new_subject, old_subject, updates_for,
)
from pii.core.subject import ENTITY_EMAIL, ENTITY_PERSON, ENTITY_PHONE, Subject, SubjectMatcher
from pii.engine.discover import locate_subject

RECTIFY = "rectify"
KIND = "rectification"
NOT_CHANGEABLE = "not changeable: review"
MENTION_REASON = "a mention in another record: listed for review (replaced only with --include-mentions)"
WEAK_REASON = "weak evidence only (a name, nothing corroborating it): a person must include it (--include-weak)"
_ENTITIES = {EMAIL: ENTITY_EMAIL, PHONE: ENTITY_PHONE, NAME: ENTITY_PERSON}


def _can_update(engine, store: str) -> bool:
    from connectors import connector_class

    return bool(getattr(connector_class(engine.config.stores[store].kind), "can_update", True))


class RectifyTarget:
    """One person's identifiers to correct, as the erasure engine plans, executes and verifies them."""

    kind = KIND

    def __init__(self, engine, subject: Subject, changes: Changes, *, include_mentions: bool = False):
        self.engine = engine
        self.subject = subject
        self.changes = changes
        self.include_mentions = include_mentions
        self.matcher = SubjectMatcher(subject)                 # screens stored locations (all identifiers)
        self.old_matcher = SubjectMatcher(old_subject(subject, changes))  # what is being corrected
        self.coverage: list[dict] | None = None
        self.last_check: dict | None = None

    @classmethod
    def from_request(cls, engine, request_id: str) -> "RectifyTarget":
        subject = engine.ledger.unseal_subject(request_id)
        extra = engine.ledger.unseal_extra(request_id).get("rectify")
        if not extra:
            raise LedgerError(f"request {request_id}: its new values are not in the request store")
        return cls(engine, subject, Changes.from_dict(extra["changes"]),
                   include_mentions=bool(extra.get("include_mentions")))

    def sealed(self) -> dict:
        return {"rectify": {"changes": self.changes.to_dict(), "include_mentions": self.include_mentions}}

    # ---- finding records
    def _fields(self, f: Finding) -> dict[str, str]:
        return identifier_fields(f.record, self.old_matcher, self.changes.kinds)

    def _mentions(self, f: Finding, skip=()) -> list[str]:
        return mention_fields(f.record, self.old_matcher, self.changes.kinds, skip=skip)

    def _relevant(self, f: Finding) -> bool:
        if not _can_update(self.engine, f.store):
            wanted = {_ENTITIES[k] for k in self.changes.kinds}
            return bool(wanted & set(f.entities))
        return bool(self._fields(f) or self._mentions(f))

    def locate(self, stores: list[str] | None) -> list[Finding]:
        """The subject's records that hold an old value being corrected (in a field or a text)."""
        result = locate_subject(self.engine.config, self.subject, stores=stores, progress=self.engine.progress)
        self.coverage = [c.to_dict() for c in result.coverages()]
        return [f for f in result.findings if self._relevant(f)]

    def decide(self, f: Finding, today: dt.date, include_weak: bool) -> Decision:
        hold = next((h for h in self.engine.policy.holds if h.applies(f, today)), None)
        if hold is not None:
            return Decision(HOLD, None, f"legal hold: {hold.reason}", until=hold.until)
        if not _can_update(self.engine, f.store):
            kind = self.engine.config.stores[f.store].kind
            return Decision(REVIEW, None, f"{NOT_CHANGEABLE} ({kind} cannot change a record in place)")
        fields = self._fields(f)
        mentions = self._mentions(f, skip=fields)
        if fields:
            ops = {c: RectifySpec(k) for c, k in fields.items()}
            if self.include_mentions:
                ops.update({c: RectifySpec(MENTION) for c in mentions})
            decision = Decision(RECTIFY, None, "rectify: " + ", ".join(sorted({_word(k) for k in fields.values()})),
                                field_ops=ops)
            if f.strength == WEAK and not include_weak:
                return Decision(REVIEW, None, WEAK_REASON, proposed=decision)
            return decision
        if mentions:
            decision = Decision(RECTIFY, None, "rectify: mentions of the old value replaced (asked for)",
                                field_ops={c: RectifySpec(MENTION) for c in mentions})
            if not self.include_mentions:
                return Decision(REVIEW, None, MENTION_REASON, proposed=decision)
            if f.strength == WEAK and not include_weak:
                return Decision(REVIEW, None, WEAK_REASON, proposed=decision)
            return decision
        return Decision(RETAIN, None, "nothing to rectify here")

    def exec_action(self, aid: str, a: PlannedAction, f: Finding) -> ExecAction | None:
        """The change itself, computed now from the sealed new values (the plan holds field kinds only)."""
        fields = {c: (spec or {}).get("kind") for c, spec in (a.fields or {}).items()}
        record = f.record or {}
        updates = updates_for(record, fields, self.changes, self.old_matcher, self.subject.region)
        return ExecAction(aid, f.container, f.location, X_UPDATE, updates, expected=record) if updates else None

    # ---- verification
    def verify_remaining(self, plan: dict, current: list[Finding], expected: set[str],
                         print_of: Callable[[Finding], str]) -> int:
        """Identifier fields still holding an old value, plus changed records a search for the new values does
        not find as they were changed. `expected`: the post-change fingerprints the engine recorded for the
        changes done; `print_of(finding)`: a finding's fingerprint in that form."""
        engine = self.engine
        today = engine.today or dt.date.today()
        left = sum(1 for f in current
                   if self.decide(f, today, plan.get("include_weak", False)).action == RECTIFY)
        missing = 0
        if expected:
            stores = sorted({a.store for a in actions_of(plan["actions"])})
            found = locate_subject(engine.config, new_subject(self.subject, self.changes), stores=stores,
                                   progress=engine.progress).findings
            missing = len(set(expected) - {print_of(f) for f in found})
        self.last_check = {"old_value_left": left, "new_value_missing": missing}
        return left + missing

    # ---- the rest of the Target protocol
    def check_holds(self) -> None:
        self.engine.check_holds(self.subject)

    def lock_names(self) -> list[str]:
        """The same person's lock as erasure takes (`SubjectTarget.lock_names`): one of them runs at a time."""
        s = self.subject
        pairs = [("email", e) for e in s.emails] + [("phone", p) for p in s.phones]
        pairs += [(f"id:{k}", v) for k, vs in s.ids.items() for v in vs] + [("name", n) for n in s.names]
        return [f"subject:{self.engine.ledger.hash_identifier(k, v, s.region)[:40]}" for k, v in pairs][:1]

    def lineage(self) -> list[str]:
        ledger = self.engine.ledger
        return [r for r in ledger.find_requests(self.subject) if ledger.get_request(r)["kind"] == KIND]

    def complete(self, request_id: str, actor: str) -> None:
        """Suppression follows the person: an old e-mail or phone on the list puts the new one there too."""
        ledger = self.engine.ledger
        region = self.subject.region
        for kind, old, new in ((EMAIL, self.subject.emails, self.changes.email),
                               (PHONE, self.subject.phones, self.changes.phone)):
            if not new or not old:
                continue
            probe = Subject(emails=old, region=region) if kind == EMAIL else Subject(phones=old, region=region)
            reasons = sorted({e["reason"] for e in ledger.suppression_entries(probe) if e["kind"] == kind})
            person = Subject.build(emails=[new], region=region) if kind == EMAIL else \
                Subject.build(phones=[new], region=region)
            for reason in reasons:
                ledger.suppress(person, reason, request_id, actor=actor)


def _word(kind: str) -> str:
    return {GIVEN: "name (given)", FAMILY: "name (family)"}.get(kind, kind)


# ---------------------------------------------------------------------------- planning
def build_plan(engine, target: RectifyTarget, *, include_weak: bool = False, stores: list[str] | None = None) -> Plan:
    """Locate and decide (stores nothing, changes nothing)."""
    plan = engine.plan_target(target, include_weak=include_weak, stores=stores)
    plan.data["flow"] = KIND
    plan.data["rectify"] = {"fields": list(target.changes.kinds), "include_mentions": target.include_mentions,
                            **summary(plan.data)}
    return plan


def summary(data: Mapping) -> dict:
    """What a plan would change, by field kind, and what it leaves for review: counts only."""
    fields: dict[str, int] = {}
    for a in actions_of(data.get("actions") or []):
        if a.action == RECTIFY:
            for spec in (a.fields or {}).values():
                k = (spec or {}).get("kind")
                fields[k] = fields.get(k, 0) + 1
    review = actions_of(data.get("review") or [])
    return {"field_counts": fields,
            "not_changeable": sum(1 for a in review if a.reason.startswith(NOT_CHANGEABLE)),
            "mentions_for_review": sum(1 for a in review if a.reason == MENTION_REASON),
            "weak_for_review": sum(1 for a in review if a.reason == WEAK_REASON)}


def plan_lines(data: Mapping) -> list[str]:
    """What the CLI prints besides `Plan.lines`: fields by kind, review items; no values."""
    r = data.get("rectify") or summary(data)
    counts = r.get("field_counts") or {}
    out = ["rectification of: " + ", ".join(r.get("fields") or []),
           "  identifier fields to rectify: " + (", ".join(f"{n} {_word(k)}" for k, n in sorted(counts.items()))
                                                  or "none")]
    if r.get("mentions_for_review"):
        out.append(f"  {r['mentions_for_review']} mention(s) in other people's records: listed for review, "
                   "not changed (--include-mentions replaces them)")
    if r.get("weak_for_review"):
        out.append(f"  {r['weak_for_review']} weak (name-only) record(s): review, not changed unless included "
                   "(--include-weak)")
    if r.get("not_changeable"):
        out.append(f"  {r['not_changeable']} record(s) {NOT_CHANGEABLE} (mail cannot be changed in place: the "
                   "person's messages stay as they are)")
    return out


def register(engine, subject: Subject, changes: Changes, requester: str, *, received_at: dt.date | None = None,
             include_mentions: bool = False, request_id: str | None = None) -> str:
    """Register the request and seal its identifiers and new values; returns the request id."""
    check_changes(subject, changes)
    engine.check_holds(subject)
    request_id = engine.ledger.create_request(KIND, subject, requester, received_at, request_id)
    target = RectifyTarget(engine, subject, changes, include_mentions=include_mentions)
    engine.ledger.seal_subject(request_id, subject, extra=target.sealed())
    return request_id


def plan_request(engine, request_id: str, requester: str, *, include_weak: bool = False,
                 stores: list[str] | None = None) -> Plan:
    """Plan a registered request (identifiers and new values from the request store) and store the plan."""
    target = RectifyTarget.from_request(engine, request_id)
    target.check_holds()
    return engine.store_plan(build_plan(engine, target, include_weak=include_weak, stores=stores),
                             request_id, requester)


def certificate_part(engine, plan_id: str, plan: dict, cert: dict) -> dict:
    """What a rectification certificate says besides the engine's: by field kind, never a value."""
    r = plan.get("rectify") or {}
    done = {a["action_id"] for a in engine.ledger.actions(plan_id) if a["state"] == "done"}
    rectified: dict[str, int] = {}
    for a in actions_of(plan["actions"]):
        if a.action == RECTIFY and a.action_id in done:
            for spec in (a.fields or {}).values():
                k = (spec or {}).get("kind")
                rectified[k] = rectified.get(k, 0) + 1
    grouped: dict[tuple, int] = {}
    for a in actions_of(plan["review"]):
        if a.reason.startswith(NOT_CHANGEABLE):
            grouped[(a.store, a.container)] = grouped.get((a.store, a.container), 0) + 1
    not_changeable = [{"store": st, "container": c, "locations": n, "state": NOT_CHANGEABLE}
                      for (st, c), n in sorted(grouped.items())]
    verified = cert["state"] == "verified"
    by_location = {k: dict(v) for k, v in cert["by_location"].items()}
    for a in actions_of(plan["actions"]):  # a rectify action counts as such only once done
        if a.action == RECTIFY and a.action_id not in done:
            per = by_location[f"{a.store}/{shown_container(a.container)}"]
            per[RECTIFY] -= 1
            if not per[RECTIFY]:
                del per[RECTIFY]
            per[f"{RECTIFY} not done"] = per.get(f"{RECTIFY} not done", 0) + 1
    return {
        "by_location": by_location,
        "certificate": "Lethe rectification certificate",
        "flow": KIND,
        "rectification": {"fields": r.get("fields") or [], "fields_rectified": rectified,
                          "not_changeable": not_changeable,
                          "mentions_for_review": r.get("mentions_for_review", 0),
                          "weak_for_review": r.get("weak_for_review", 0)},
        "suppression": "followed the person (new identifiers added where the old were listed)" if verified
        else "not yet",
    }


# ---------------------------------------------------------------------------- the run spec (RunService)
@dataclass
class RectifyRun:
    """A rectification request for one subject, as `pii.engine.runs.RunService` runs it."""

    person: Subject
    changes: Changes
    include_weak: bool = False
    include_mentions: bool = False
    stores: list[str] | None = None
    request_id: str | None = None
    replan_after_resume = False

    @property
    def subject(self) -> Subject:
        return self.person

    def target(self, engine) -> RectifyTarget:
        return RectifyTarget(engine, self.person, self.changes, include_mentions=self.include_mentions)

    def preview(self, engine) -> Plan:
        check_changes(self.person, self.changes)
        return build_plan(engine, self.target(engine), include_weak=self.include_weak, stores=self.stores)

    def submit(self, engine, requester: str, received_at: dt.date | None) -> Plan:
        request_id = register(engine, self.person, self.changes, requester, received_at=received_at,
                              include_mentions=self.include_mentions, request_id=self.request_id)
        return plan_request(engine, request_id, requester, include_weak=self.include_weak, stores=self.stores)

    def lineage(self, engine) -> list[str]:
        return self.target(engine).lineage()

    def unfinished(self, engine) -> list[str]:
        """An approved plan of an earlier rectification of this subject that did not finish (a crash)."""
        from pii.ledger import APPROVED, EXECUTED, EXECUTING, FAILED, VERIFIED

        ledger = engine.ledger
        for request_id in reversed(self.lineage(engine)):
            request = ledger.get_request(request_id)
            for p in reversed(ledger.plans_for(request_id)):
                if p["state"] == FAILED and any(a["state"] == "drifted" for a in ledger.actions(p["plan_id"])):
                    ledger.transition(p["plan_id"], FAILED, "expired", actor="lethe: superseded after drift")
                    continue
                if p["state"] in (APPROVED, EXECUTING, FAILED, EXECUTED) or (
                        p["state"] == VERIFIED and request["status"] != "completed"):
                    return [p["plan_id"]]
        return []

    def finished(self, engine) -> str | None:
        from pii.ledger import VERIFIED

        ledger = engine.ledger
        for request_id in reversed(self.lineage(engine)):
            if ledger.get_request(request_id)["status"] != "completed":
                return None
            verified = [p["plan_id"] for p in ledger.plans_for(request_id) if p["state"] == VERIFIED]
            return verified[-1] if verified else None
        return None

    def reusing(self, plan: Plan) -> "RectifyRun":
        return self
