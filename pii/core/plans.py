"""Plans and their planned actions, typed.

A plan is stored in the ledger as JSON (no personal values: personal locators are keyed hashes); `Plan`
wraps that JSON with, in memory only, the findings it was built from. Each planned location is a
`PlannedAction`: where (store, container, location), what was seen (match, strength, entities, a keyed
fingerprint), and what the policy decided (action, reason, rule, legal basis, until, the fields to
anonymise, what a weak location would get if included) and, where that decision erases a container the
store's stores.yaml metadata declares retained, the `conflict` (which declaration: store/container, period,
legal basis) and the rule's `override_reason` when the contradiction is deliberate. `PlannedAction.to_dict`
is the stored form (so the plan's digest covers a conflict too) and `from_dict` reads it back, so the keys
are written in one place. `Plan.lines` is what the CLI and the approval show: a conflict is marked with "!".
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pii.core.coverage import coverage_gaps, summary_lines
from pii.core.findings import Finding
from pii.core.policy import ANONYMISE, DELETE, HOLD, REDACT, RETAIN, REVIEW, Decision


def shown_container(container: str) -> str:
    """How a stored container prints: one named after the subject is kept as a keyed hash, shown withheld."""
    if isinstance(container, str) and container.startswith("hmac:"):
        return f"<named after the subject, withheld: {container[5:13]}>"
    return container


@dataclass(frozen=True)
class PlannedAction:
    action_id: str            # keyed hash of store + location
    store: str
    container: str            # as stored: a name, or "hmac:..." when named after the subject
    location: dict            # as stored: personal locators replaced by keyed hashes
    match: str
    strength: str
    entities: tuple[str, ...]
    fingerprint: str          # keyed hash of what was seen there
    action: str               # delete, anonymise, redact, retain, hold, review
    reason: str
    rule: int | None = None   # index of the policy rule that decided it
    legal_basis: str | None = None
    until: str | None = None  # ISO date a retention runs to
    fields: dict[str, dict] | None = None  # column -> OperatorSpec.to_dict() (anonymise, retain with fields)
    proposed: str | None = None  # for review: the action it would get if included
    conflict: str | None = None  # the declared retention this action contradicts (pii.core.policy.DeclaredRetention)
    override_reason: str | None = None  # the rule's `override_retained`: the contradiction is deliberate

    @classmethod
    def decided(cls, *, decision: Decision, **where: Any) -> "PlannedAction":
        """A location (the `where` fields) with the policy's decision on it."""
        ops = decision.field_ops
        if decision.proposed is not None and decision.proposed.field_ops:
            ops = decision.proposed.field_ops
        flagged = decision.proposed if decision.proposed is not None and decision.proposed.conflict else decision
        return cls(**where, action=decision.action, reason=decision.reason, rule=decision.rule_index,
                   legal_basis=decision.legal_basis or None,
                   until=decision.until.isoformat() if decision.until else None,
                   fields={c: spec.to_dict() for c, spec in ops.items()} if ops else None,
                   proposed=decision.proposed.action if decision.proposed is not None else None,
                   conflict=flagged.conflict or None, override_reason=flagged.override_reason or None)

    def to_dict(self) -> dict:
        out: dict[str, Any] = {"action_id": self.action_id, "store": self.store, "container": self.container,
                               "location": self.location, "match": self.match, "strength": self.strength,
                               "entities": list(self.entities), "fingerprint": self.fingerprint,
                               "action": self.action, "reason": self.reason}
        for name in ("rule", "legal_basis", "until", "fields", "proposed", "conflict", "override_reason"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        return out

    @classmethod
    def from_dict(cls, data: dict) -> "PlannedAction":
        return cls(action_id=data["action_id"], store=data["store"], container=data["container"],
                   location=data["location"], match=data["match"], strength=data["strength"],
                   entities=tuple(data.get("entities") or ()), fingerprint=data["fingerprint"],
                   action=data["action"], reason=data.get("reason") or "", rule=data.get("rule"),
                   legal_basis=data.get("legal_basis"), until=data.get("until"), fields=data.get("fields"),
                   proposed=data.get("proposed"), conflict=data.get("conflict"),
                   override_reason=data.get("override_reason"))


def actions_of(stored: list[dict]) -> list[PlannedAction]:
    return [PlannedAction.from_dict(a) for a in stored]


@dataclass
class Plan:
    """A plan as stored in the ledger (JSON, no personal values) plus, in memory only, the findings."""

    data: dict
    findings: list[Finding] = field(default_factory=list, repr=False)
    plan_id: str | None = None
    request_id: str | None = None

    @property
    def actions(self) -> list[PlannedAction]:
        """What approval lets happen (delete, anonymise, redact, and what is retained as planned)."""
        return actions_of(self.data["actions"])

    @property
    def review(self) -> list[PlannedAction]:
        """Locations a person must review (weak evidence, text clues): not changed unless included."""
        return actions_of(self.data["review"])

    @property
    def held(self) -> list[PlannedAction]:
        """Locations under a hold: never changed by this plan."""
        return actions_of(self.data["held"])

    def everything(self) -> list[PlannedAction]:
        return self.actions + self.review + self.held

    def counts(self) -> dict[str, dict[str, int]]:
        """store/container -> action -> locations."""
        out: dict[str, dict[str, int]] = {}
        for a in self.everything():
            per = out.setdefault(f"{a.store}/{shown_container(a.container)}", {})
            per[a.action] = per.get(a.action, 0) + 1
        return out

    def conflicts(self) -> list[PlannedAction]:
        """Actions that erase what the store declares retained (stores.yaml metadata `retained:`), overridden
        deliberately or not."""
        return [a for a in self.actions if a.conflict]

    def lines(self) -> list[str]:
        """Human-readable plan, no personal values: what would happen where, and why."""
        out = []
        totals: dict[str, int] = {}
        for a in self.everything():
            totals[a.action] = totals.get(a.action, 0) + 1
        shown = (DELETE, ANONYMISE, REDACT, RETAIN, HOLD, REVIEW) + ((RECTIFY,) if RECTIFY in totals else ())
        summary = ", ".join(f"{totals.get(k, 0)} {k}" for k in shown)
        out.append(f"plan: {summary}")
        conflicts = self.conflicts()
        unexplained = [a for a in conflicts if not a.override_reason]
        if unexplained:
            out.append(f"  ! {len(unexplained)} action(s) conflict with retention declared in stores.yaml (see "
                       "below): approve only if erasing them is intended")
        flagged: dict[str, str] = {}
        for a in conflicts:
            where = f"{a.store}/{shown_container(a.container)}"
            if not a.override_reason or where not in flagged:
                flagged[where] = ("  ! conflicts with declared retention" if not a.override_reason
                                  else "  (overrides declared retention)")
        for where, per in sorted(self.counts().items()):
            out.append(f"  {where}: " + ", ".join(f"{n} {k}" for k, n in sorted(per.items())) + flagged.get(where, ""))
        reasons: dict[tuple, int] = {}
        for a in self.actions + self.held:
            if a.action in (RETAIN, HOLD, ANONYMISE):
                key = (a.action, a.store, a.container, a.reason or "", a.legal_basis or "", a.until or "",
                       ",".join(sorted(a.fields or {})))
                reasons[key] = reasons.get(key, 0) + 1
        for (action, store, container, reason, basis, until, fields), n in sorted(reasons.items()):
            extra = f"; legal basis: {basis}" if basis else ""
            extra += f"; until {until}" if until else ""
            extra += f"; fields anonymised: {fields}" if fields else ""
            out.append(f"  {action} {n} in {store}/{shown_container(container)}: {reason}{extra}")
        grouped: dict[tuple, int] = {}
        for a in conflicts:
            key = (a.action, a.store, a.container, a.conflict, a.override_reason or "")
            grouped[key] = grouped.get(key, 0) + 1
        for (action, store, container, conflict, override), n in sorted(grouped.items()):
            where = f"{store}/{shown_container(container)}"
            if override:
                out.append(f"  {action} {n} in {where} overrides declared retention: {conflict}; "
                           f"override: {override}")
            else:
                out.append(f"  ! {action} {n} in {where} conflicts with declared retention: {conflict}")
        review = self.data["review"]
        if review and self.data.get("flow") == "rectification":
            out.append(f"  {len(review)} locations need a person's review (mentions in other records, weak, or not "
                       "changeable in place); not changed unless included")
        elif review:
            what = ("locations where only free text suggests it (no date of birth)" if self.data.get("flow")
                    else "weak (name-only) locations")
            out.append(f"  {len(review)} {what} need a person's review; "
                       "not erased unless included (--include-weak)")
        for s in self.data.get("out_of_scope", []):
            out.append(f"  out of scope: {s['name']}: {s.get('route') or 'no erasure route given'}")
        gaps = coverage_gaps(self.data.get("coverage"))
        if gaps:
            out.append(f"  WARNING: {len(gaps)} place(s) could not be fully searched: what they hold is not in "
                       "this plan, and the certificate will not call those stores verified")
        out.extend(summary_lines(self.data.get("coverage") or [], indent="  "))
        return out


# --------------------------------------------------------------------------- the per-store table
ACTION_ORDER = ("delete", "anonymise", "redact", "retain", "hold", "review", "rectify")
RECTIFY = "rectify"  # rectification (pii/engine/rectify.py): fields rewritten with the person's new values
ENTITY_WORDS = {"EMAIL_ADDRESS": "email", "PHONE_NUMBER": "phone", "PERSON": "name", "ID": "id",
                "CHILD_AGE": "child's age in text", "DATE_OF_BIRTH": "date of birth"}


def entity_words(entities) -> str:
    """Entity kinds as people read them ("email, phone")."""
    return ", ".join(ENTITY_WORDS.get(e, e.lower().replace("_", " ")) for e in entities) or "none named"


def fields_touched(action: str, entities, fields: dict | None) -> str:
    """What an action changes in its record, in words ("whole record", "the subject's email inside the text")."""
    ops = ", ".join(f"{col} ({(spec or {}).get('operator', 'null')})" for col, spec in sorted((fields or {}).items()))
    if action == "delete":
        return "whole record"
    if action == "anonymise":
        return ops or "named fields"
    if action == "redact":
        return f"the subject's {entity_words(entities)} inside the text"
    if action == "retain":
        return f"kept; anonymised: {ops}" if ops else "none (kept as it is)"
    if action == "hold":
        return "none (held)"
    if action == RECTIFY:
        return "rectified: " + ", ".join(f"{col} ({(spec or {}).get('kind')})" for col, spec in sorted((fields or {}).items()))
    return "none until a person includes it"


def action_conflict(action: PlannedAction, raw: dict) -> str | None:
    """The action's conflict with declared retention, as text (None when there is none)."""
    text = getattr(action, "conflict", None) or raw.get("conflict")
    return str(text) if text else None


def store_tables(data: dict) -> dict[str, list[dict]]:
    """A stored plan's actions (actions, held, review) grouped per store, then per (container, action,
    fields touched, reason, legal basis, until, conflict) with a count, in action order: the table the
    approval and the console show. Containers named after the subject are withheld (`shown_container`);
    stores with nothing to change map to an empty list."""
    grouped: dict[str, dict[tuple, int]] = {}
    for part in ("actions", "held", "review"):
        for raw in data.get(part) or []:
            a = PlannedAction.from_dict(raw)
            key = (shown_container(a.container),
                   ACTION_ORDER.index(a.action) if a.action in ACTION_ORDER else 99, a.action,
                   fields_touched(a.action, a.entities, a.fields), a.reason or "", a.legal_basis or "",
                   a.until or "", action_conflict(a, raw) or "")
            per = grouped.setdefault(a.store, {})
            per[key] = per.get(key, 0) + 1
    def rows(per: dict[tuple, int]) -> list[dict]:
        return [{"container": c, "action": act, "count": n, "fields": touched, "reason": reason,
                 "legal_basis": basis, "until": until, "conflict": conflict}
                for (c, _o, act, touched, reason, basis, until, conflict), n in sorted(per.items())]

    return {store: rows(grouped.get(store, {})) for store in dict.fromkeys([*(data.get("stores") or []), *grouped])}
