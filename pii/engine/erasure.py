"""Erasure as a transaction: plan -> approval -> execute -> verify, each step recorded in the ledger.

- **Plan.** Locate the subject everywhere; the policy decides per finding (delete, anonymise, redact,
  retain, hold, or review for weak evidence). A container the store's stores.yaml metadata declares
  retained (`metadata: {retained: ...}`) is retained where no rule matches; a rule that erases it is
  carried out as written but flagged in the plan (`PlannedAction.conflict`) for the approver. Each planned location gets an `action_id` (a keyed hash of
  store + location) and a `fingerprint` (a keyed hash of what was seen there). The stored plan holds no
  personal values: personal locators are replaced by keyed hashes.
- **Approve.** A named person approves (or rejects) the stored plan; optionally not the requester.
- **Execute.** The subject is located again (the ledger never held the real locators). A current
  location whose `action_id` (or, for a CSV row that moved, whose fingerprint) is in the plan is carried
  out by its connector when its content is unchanged; a changed one is reported as drifted and left alone;
  a planned location that is gone counts as done (that is how a re-run after a crash finishes without
  repeating anything). Connectors commit per batch and report back; the ledger records each action.
  A worker killed mid-run leaves its locks behind; the next run on the same host breaks them at once
  when their owner's process is gone (the owner names its host and pid), otherwise they expire.
- **Verify.** Locate again: nothing erasable may remain. Then the subject's identifiers go onto the
  suppression list, the encrypted identifiers are shredded, and a certificate is written.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import uuid
from dataclasses import dataclass, field
from typing import Protocol

from pii.core.plans import Plan, PlannedAction, actions_of, shown_container
from pii.engine.stores import connect
from connectors.base import DELETE as X_DELETE, DROP as X_DROP, UPDATE as X_UPDATE, ExecAction, Progress, null_progress
from pii.core.config import Config
from pii.core.coverage import coverage_gaps
from pii.core.printable import looks_personal
from pii.engine.discover import locate_subject
from pii.core.errors import ConfigError, LedgerError, LetheError
from pii.core.findings import WEAK, Finding
from pii.core.host import current_user, node_id, process_gone
from pii.ledger import APPROVED, EXECUTED, EXECUTING, FAILED, PLANNED, VERIFIED, Ledger
from pii.core.policy import (
    ANONYMISE, DELETE, HOLD, REDACT, RETAIN, REVIEW, Decision, OperatorSpec, Policy, apply_field_ops,
    declared_retention, policy_for_config, redact_fields,
)
from pii.core.subject import Subject, SubjectMatcher

ERASING = (DELETE, ANONYMISE, REDACT)
DEFAULT_PLAN_TTL_HOURS = 72
LOCK_TTL_SECONDS = 15 * 60


class ErasureBlocked(LetheError):
    """The erasure cannot go ahead (a hold on the subject, a plan in the wrong state...)."""

    exit_code = 3


@dataclass
class ExecutionReport:
    plan_id: str
    state: str
    done: int = 0
    drifted: int = 0
    failed: int = 0
    rows: int = 0
    new_locations: int = 0
    refused: int = 0  # approved actions the current policy no longer allows: not carried out
    remaining: int | None = None
    details: list[str] = field(default_factory=list)
    not_verified: list[dict] = field(default_factory=list)  # places the verifying search could not read


class Target(Protocol):
    """What a plan is about, as the engine plans, executes and verifies it: `SubjectTarget` (one person,
    erasure) and `pii.engine.flows.SelectionTarget` (records a special flow selected) both are one."""

    kind: str                 # the request kind: "erasure" or the flow's name
    matcher: SubjectMatcher   # whose identifiers locations and place names are screened for

    def locate(self, stores: list[str] | None) -> list[Finding]:
        """The target's records in these stores (all when None), found afresh (plan, execute, verify)."""

    def decide(self, f: Finding, today: dt.date, include_weak: bool) -> Decision:
        """What happens to one record."""

    def check_holds(self) -> None:
        """Raise ErasureBlocked when a legal hold forbids changing the target."""

    def lock_names(self) -> list[str]:
        """Locks a run takes besides the plan's and the stores' (one subject, one flow lineage)."""

    def lineage(self) -> list[str]:
        """Request ids of earlier runs about the same target (resume, withdraw, changed-as-planned)."""

    def complete(self, request_id: str, actor: str) -> None:
        """What a verified plan finishes with (the suppression entries)."""


class SubjectTarget:
    """What an erasure request's plan is about: one subject, found wherever it is (`locate_subject`).

    The special flows (pii/engine/flows.py) plan over a `SelectionTarget` instead: records chosen by source, date
    or age. The engine plans, executes and verifies both the same way; a target says how to find the
    records, how to decide each one, which earlier plans share its lineage, and what completes it."""

    kind = "erasure"

    def __init__(self, engine: "ErasureEngine", subject: Subject,
                 found: tuple[list[Finding], list[dict]] | None = None):
        self.engine = engine
        self.subject = subject
        self.matcher = SubjectMatcher(subject)
        self.coverage: list[dict] | None = None  # per store, what the last `locate` searched
        self._found = found

    def locate(self, stores: list[str] | None) -> list[Finding]:
        """Every finding; `self.coverage` then holds what that search read (pii/core/coverage.py, per store).
        A target built with `found` (findings and coverage reports searched elsewhere, e.g. by Airflow's
        mapped tasks per store and group of tables) hands those out the first time instead of searching;
        verification searches again."""
        if self._found is not None:
            findings, self.coverage = self._found
            self._found = None
            return findings
        result = locate_subject(self.engine.config, self.subject, stores=stores, progress=self.engine.progress)
        self.coverage = [c.to_dict() for c in result.coverages()]
        return result.findings

    def decide(self, f: Finding, today: dt.date, include_weak: bool) -> Decision:
        return self.engine._feasible(self.engine.policy.decide(f, today, include_weak=include_weak,
                                                               declared=self.engine.declared), f)

    def check_holds(self) -> None:
        self.engine.check_holds(self.subject)

    def lock_names(self) -> list[str]:
        return [f"subject:{self.engine.ledger.hash_identifier(k, v, self.subject.region)[:40]}"
                for k, v in _subject_pairs(self.subject)][:1]

    def lineage(self) -> list[str]:
        """Request ids whose plans changed this target's records before (post-change fingerprints)."""
        ledger = self.engine.ledger
        return [r for r in ledger.find_requests(self.subject) if ledger.get_request(r)["kind"] == "erasure"]

    def complete(self, request_id: str, actor: str) -> None:
        self.engine.ledger.suppress(self.subject, "erasure", request_id, actor=actor)


class ErasureEngine:
    """The library behind `lethe erase`/`approve`/`execute` and the Airflow erasure flow."""

    def __init__(self, config: Config, *, ledger: Ledger | None = None, policy: Policy | None = None,
                 progress: Progress = null_progress, today: dt.date | None = None):
        self.config = config
        self.ledger = ledger or Ledger(config.state_url)
        self.policy = policy or policy_for_config(config)
        self.declared = declared_retention(config)  # stores.yaml `metadata: {retained: ...}`, every target
        self.progress = progress
        self.today = today
        erasure = config.raw.get("erasure") or {}
        self.plan_ttl = dt.timedelta(hours=plan_ttl_hours(erasure))

    # ------------------------------------------------------------------ identities
    def action_id(self, store: str, location: dict) -> str:
        return "act-" + self.ledger.protect_value({"store": store, "location": location})[5:45]

    def fingerprint(self, finding: Finding) -> str:
        return self.ledger.protect_value({"record": finding.record})[5:]

    def _stored_container(self, container: str, matcher: SubjectMatcher) -> str:
        """A container as a plan stores it: named after the subject, a keyed hash (the rule for file names
        in locations)."""
        if isinstance(container, str) and looks_personal(container.replace("_", " "), matcher):
            return self.ledger.protect_value(container)
        return container

    def _stored_location(self, finding: Finding, matcher: SubjectMatcher) -> dict:
        """The location as the ledger may keep it: keys of key-less rows, keys that look personal and file
        names that mention the subject become keyed hashes."""
        loc = dict(finding.location)
        key = loc.get("key")
        if isinstance(key, dict):
            if finding.note and finding.note.startswith("no primary key"):
                loc["key"] = self.ledger.protect_value(key)
            else:
                loc["key"] = {k: (self.ledger.protect_value(v) if looks_personal(v, matcher) else v)
                              for k, v in key.items()}
        for k in ("file", "path", "message_id"):
            if isinstance(loc.get(k), str) and looks_personal(loc[k].replace("_", " "), matcher):
                loc[k] = self.ledger.protect_value(loc[k])
        return loc

    # ------------------------------------------------------------------ plan
    def build_plan(self, subject: Subject, *, include_weak: bool = False, stores: list[str] | None = None,
                   found: tuple[list[Finding], list[dict]] | None = None) -> Plan:
        """Locate the subject (or take `found`: findings and per-store coverage reports from a search made
        elsewhere) and decide every finding. Changes nothing and stores nothing."""
        return self.plan_target(SubjectTarget(self, subject, found), include_weak=include_weak, stores=stores)

    def plan_target(self, target: Target, *, include_weak: bool = False, stores: list[str] | None = None,
                    skip_prints: set[str] | None = None) -> Plan:
        """Find the target's records and decide each one. `skip_prints`: post-change fingerprints
        (`_letters`) of records already changed as planned by earlier plans of the same lineage."""
        matcher = target.matcher
        findings = target.locate(stores)
        today = self.today or dt.date.today()
        actions, review, held = [], [], []
        for f in findings:
            if skip_prints and _letters(self.fingerprint(f)) in skip_prints:
                continue
            decision = target.decide(f, today, include_weak)
            entry = PlannedAction.decided(
                decision=decision, action_id=self.action_id(f.store, f.location), store=f.store,
                container=self._stored_container(f.container, matcher), location=self._stored_location(f, matcher),
                match=f.match, strength=f.strength, entities=tuple(sorted(f.entities)),
                fingerprint=self.fingerprint(f)).to_dict()
            if decision.action == REVIEW:
                review.append(entry)
            elif decision.action == HOLD:
                held.append(entry)
            else:
                actions.append(entry)
        data = {
            "version": 1,
            "created_at": _now_iso(),
            "policy": self.policy.source,
            "stores": stores or list(self.config.stores),
            "include_weak": include_weak,
            "actions": actions,
            "review": review,
            "held": held,
            "out_of_scope": _out_of_scope(self.config),
        }
        coverage = getattr(target, "coverage", None)
        if coverage is not None:
            data["coverage"] = coverage
        return Plan(data, findings)

    def _feasible(self, decision: Decision, f: Finding) -> Decision:
        """A store that cannot change a record in place (mail) keeps it and says so, instead of failing
        at execution; a policy rule can still delete such records."""
        if decision.action in (REDACT, ANONYMISE) or (decision.action == RETAIN and decision.field_ops):
            from connectors import connector_class

            cls = connector_class(self.config.stores[f.store].kind)
            if decision.action == REDACT and getattr(cls, "can_redact", False):
                return decision  # mail: a redacted copy replaces the message (connectors/gmail.py)
            if not getattr(cls, "can_update", True):
                return Decision(RETAIN, decision.rule_index,
                                f"{self.config.stores[f.store].kind} cannot edit a record in place: kept and "
                                f"reported (a policy rule with action delete removes it); planned: {decision.action}",
                                decision.legal_basis, decision.until)
        return decision

    def submit(self, subject: Subject, requester: str, *, received_at: dt.date | None = None,
               include_weak: bool = False, stores: list[str] | None = None, request_id: str | None = None,
               found: tuple[list[Finding], list[dict]] | None = None) -> Plan:
        """Register the request (identifiers kept only as hashes plus an encrypted copy), build the plan
        and store it, awaiting approval. A subject under suppression for a hold is refused. `found`: see
        `build_plan`."""
        self.policy.check_environment()
        self.check_holds(subject)
        request_id = self.ledger.create_request("erasure", subject, requester, received_at, request_id)
        self.ledger.seal_subject(request_id, subject)
        return self.store_plan(self.build_plan(subject, include_weak=include_weak, stores=stores, found=found),
                               request_id, requester)

    def store_plan(self, plan: Plan, request_id: str, requester: str) -> Plan:
        """Store a built plan for its request, awaiting approval until the plan's time to live runs out."""
        expires = dt.datetime.now(dt.timezone.utc) + self.plan_ttl
        plan.data["expires_at"] = expires.isoformat(timespec="seconds")
        plan.plan_id = self.ledger.store_plan(request_id, plan.data, expires, actor=requester)
        plan.request_id = request_id
        return plan

    def supersede_unapproved(self, subject: Subject, requester: str) -> int:
        """Withdraw this requester's earlier erasure requests for the subject that never got an approved
        plan (e.g. a run killed while planning): their plans expire and their identifiers are shredded.
        Returns how many requests were withdrawn."""
        return self.withdraw_unapproved(SubjectTarget(self, subject).lineage(), requester)

    def withdraw_unapproved(self, request_ids: list[str], requester: str) -> int:
        """Of these requests, withdraw the open ones `requester` made whose plans were never approved:
        their plans expire and their sealed data is shredded. Returns how many were withdrawn."""
        withdrawn = 0
        for request_id in request_ids:
            if self.ledger.get_request(request_id)["status"] != "open":
                continue
            if not self.ledger.requested_by(request_id, requester):
                continue
            plans = self.ledger.plans_for(request_id)
            if any(p["state"] not in (PLANNED, "expired") for p in plans):
                continue
            for p in plans:
                if p["state"] == PLANNED:
                    self.ledger.transition(p["plan_id"], PLANNED, "expired", actor="lethe: superseded by a new run")
            self.ledger.shred_subject(request_id, actor=requester)
            self.ledger.set_request_status(request_id, "withdrawn", actor=requester)
            withdrawn += 1
        return withdrawn

    def check_holds(self, subject: Subject) -> None:
        """Refuse to erase a subject under a legal hold, saying why (the reason, never the identifier)."""
        holds = self.ledger.holds_on(subject)
        if holds:
            reasons = "; ".join(sorted({h["reason"] for h in holds}))
            raise ErasureBlocked(f"the subject is under a legal hold ({reasons}): nothing is erased "
                                 f"until it is released (lethe hold release)")

    def open_plan_for(self, subject: Subject) -> str | None:
        """An unfinished plan of an earlier erasure request for this subject (to resume after a crash):
        one not carried out yet, or verified but stopped before its request was completed (suppression,
        shredding of the request store)."""
        for request_id in reversed(self.ledger.find_requests(subject)):
            request = self.ledger.get_request(request_id)
            if request["kind"] != "erasure":
                continue
            for p in reversed(self.ledger.plans_for(request_id)):
                if p["state"] == FAILED and any(a["state"] == "drifted" for a in self.ledger.actions(p["plan_id"])):
                    # the stores changed since it was planned: resuming would drift again; a new plan is due
                    self.ledger.transition(p["plan_id"], FAILED, "expired", actor="lethe: superseded after drift")
                    continue
                if p["state"] in (APPROVED, EXECUTING, FAILED, EXECUTED):
                    return p["plan_id"]
                if p["state"] == VERIFIED and request["status"] != "completed":
                    return p["plan_id"]
        return None

    # ------------------------------------------------------------------ approval
    def approve(self, plan_id: str, approver: str, *, require_distinct: bool = False,
                reason: str | None = None) -> None:
        digest = self.ledger.verify_plan(plan_id)["digest"]
        self.ledger.approve(plan_id, approver, require_distinct_from_requester=require_distinct,
                            expected_digest=digest, reason=reason)

    def reject(self, plan_id: str, approver: str, reason: str) -> None:
        self.ledger.reject(plan_id, approver, reason)

    # ------------------------------------------------------------------ execute
    def execute(self, plan_id: str, *, subject: Subject | None = None, actor: str | None = None) -> ExecutionReport:
        """Carry out an approved plan (or resume one interrupted), then verify it. Idempotent."""
        actor = actor or current_user()
        row = self.ledger.verify_plan(plan_id)  # content, approval and events as the key made them
        request_id, plan = row["request_id"], row["plan"]
        if row["state"] == VERIFIED and (subject is None or plan.get("selection") or plan.get("rectify")) \
                and not self.ledger.is_sealed(request_id):
            return self._finish_completed(plan_id, request_id, actor)
        target = self.target_for(request_id, plan, subject)
        owner = _lock_owner(actor)
        lock_names = [f"plan:{plan_id}"] + self._lock_names(target, plan)
        if row["state"] in (EXECUTED, VERIFIED):
            self._break_dead_locks(lock_names, owner)  # a run killed right after executing left them
            return self._verify(plan_id, plan, target, actor)
        if row["state"] == PLANNED:
            raise ErasureBlocked(f"plan {plan_id} is awaiting approval: run `lethe approve {plan_id}`")
        target.check_holds()
        self._break_dead_locks(lock_names, owner)
        if not self.ledger.claim_execution(plan_id, owner, LOCK_TTL_SECONDS):
            raise ErasureBlocked(f"plan {plan_id} is being executed by another worker")
        locks: list[str] = []
        report = ExecutionReport(plan_id, EXECUTING)
        try:  # any failure, taking the locks included (another run holds them), leaves the plan failed
            locks = self._take_locks(target, plan, owner)
            self._carry_out(plan_id, plan, target, owner, report)
            ok = report.drifted == 0 and report.failed == 0
            self.ledger.finish_execution(plan_id, owner, success=ok)
        except BaseException:
            try:
                self.ledger.finish_execution(plan_id, owner, success=False)
            except LedgerError:
                pass
            raise
        finally:
            for name in locks:
                self.ledger.release_lock(name, owner)
        if report.drifted or report.failed:
            report.state = FAILED
            return report
        verified = self._verify(plan_id, plan, target, actor)
        verified.done, verified.rows, verified.details = report.done, report.rows, report.details
        verified.refused = report.refused
        return verified

    def finished_plan_for(self, subject: Subject) -> str | None:
        """The verified plan of this subject's latest erasure request, when that request is completed."""
        for request_id in reversed(self.ledger.find_requests(subject)):
            request = self.ledger.get_request(request_id)
            if request["kind"] != "erasure":
                continue
            if request["status"] != "completed":
                return None
            verified = [p["plan_id"] for p in self.ledger.plans_for(request_id) if p["state"] == VERIFIED]
            return verified[-1] if verified else None
        return None

    def report_of(self, plan_id: str) -> ExecutionReport:
        """A carried-out plan's report as the ledger recorded it (to re-issue its certificate)."""
        cert = self.certificate(plan_id)
        return ExecutionReport(plan_id, cert["state"], rows=cert["rows_affected"],
                               remaining=0 if cert["state"] == VERIFIED else None,
                               not_verified=list(cert["not_verified"]))

    def _finish_completed(self, plan_id: str, request_id: str, actor: str) -> ExecutionReport:
        """A verified plan whose request store is already shredded: the run that verified it completed it
        (suppression, then shredding) and was stopped before marking the request completed. Nothing is
        left to search with or to do but that last mark; the report is the verification on record."""
        if self.ledger.get_request(request_id)["status"] != "completed":
            self.ledger.set_request_status(request_id, "completed", actor=actor)
        report = self.report_of(plan_id)
        report.rows = 0  # this run changed nothing
        return report

    def target_for(self, request_id: str, plan: dict, subject: Subject | None = None) -> Target:
        """The target a stored plan is about: its subject, or (special flows) its selection, rebuilt from
        the request store (identifiers and selection values are kept there encrypted, never in the plan)."""
        if plan.get("selection"):
            from pii.engine.flows import SelectionTarget

            return SelectionTarget.from_request(self, request_id)
        if plan.get("rectify"):
            from pii.engine.rectify import RectifyTarget

            return RectifyTarget.from_request(self, request_id)
        if subject is None:
            subject = self.ledger.unseal_subject(request_id)
        return SubjectTarget(self, subject)

    def _lock_names(self, target, plan: dict) -> list[str]:
        names = target.lock_names()
        return names + [f"store:{s}" for s in sorted({a.store for a in actions_of(plan["actions"])})]

    def _break_dead_locks(self, names: list[str], owner: str) -> None:
        """Locks left by a worker of this host whose process is gone (killed, crashed) are broken now
        rather than after their TTL, so re-running the same command resumes at once."""
        for name in names:
            holder = self.ledger.lock_owner(name)
            if holder and holder != owner and _owner_gone(holder):
                self.ledger.break_lock(name, holder, actor=owner, reason="its process is gone")

    def _take_locks(self, target, plan: dict, owner: str) -> list[str]:
        names = self._lock_names(target, plan)
        taken = []
        for name in names:
            if not self.ledger.acquire_lock(name, owner, LOCK_TTL_SECONDS):
                for t in taken:
                    self.ledger.release_lock(t, owner)
                raise ErasureBlocked(f"another erasure holds the lock {name.split(':')[0]} "
                                     f"({'this subject' if name.startswith('subject:') else name.split(':', 1)[1]}); try later")
            taken.append(name)
        return taken

    def _carry_out(self, plan_id: str, plan: dict, target: Target, owner: str, report: ExecutionReport) -> None:
        matcher = target.matcher
        pending = set(self.ledger.pending_actions(plan_id))
        planned = {a.action_id: a for a in actions_of(plan["actions"]) if a.action_id in pending}
        if not planned:
            return
        stores = sorted({a.store for a in planned.values()})
        current = target.locate(stores)
        by_id = {self.action_id(f.store, f.location): f for f in current}
        by_print: dict[tuple, list[Finding]] = {}
        for f in current:
            by_print.setdefault((f.store, self._stored_container(f.container, target.matcher), self.fingerprint(f)),
                                []).append(f)
        planned_ids = {a["action_id"] for a in plan["actions"]}  # the stored form: only ids are needed
        report.new_locations = sum(1 for aid, f in by_id.items()
                                   if aid not in planned_ids and f.strength != WEAK)
        expected_after = {r["action_id"]: _expected_of(r["detail"]) for r in self.ledger.actions(plan_id)
                          if r["state"] == "started" and _expected_of(r["detail"])}
        todo: dict[str, list[ExecAction]] = {}
        post: dict[str, str] = {}
        today = self.today or dt.date.today()
        marks = _Marks()
        earlier: set[str] | None = None
        for aid, a in planned.items():
            f = by_id.get(aid)
            if f is not None and aid in expected_after and _letters(self.fingerprint(f)) == expected_after[aid]:
                # changed as planned by a run that stopped before recording it; the detail keeps the
                # post-change fingerprint, which verification and later requests look for
                marks.add("done", aid, f"{_EXPECT}{expected_after[aid]}; carried out by an interrupted run")
                report.done += 1
                continue
            if f is None:  # a CSV row renumbered by an edit elsewhere in its file: find it by content
                candidates = by_print.get((a.store, a.container, a.fingerprint), [])
                f = next((c for c in candidates if self.action_id(c.store, c.location) not in planned_ids), None)
            if f is None:
                marks.add("done" if a.action != RETAIN else "skipped", aid,
                          "not found any more (already carried out or gone)")
                report.done += 1
                continue
            if self.fingerprint(f) != a.fingerprint:
                marks.add("drifted", aid, "content changed since the plan was made: not touched; re-plan")
                report.drifted += 1
                continue
            allowed = self._still_allowed(a, target.decide(f, today, plan.get("include_weak", False)))
            if not allowed:
                marks.add("skipped", aid, "refused: the current policy no longer allows this action; re-plan")
                report.refused += 1
                continue
            if a.fields and a.action in (ANONYMISE, RETAIN):
                if earlier is None:
                    earlier = self._changed_as_planned(target, exclude=plan_id)
                now = _letters(self.fingerprint(f))
                if now in earlier:  # e.g. hashing a hash would change it again
                    marks.add("done", aid, f"{_EXPECT}{now}; already changed as planned by an earlier erasure")
                    report.done += 1
                    continue
            own = getattr(target, "exec_action", None)  # a target that computes its own changes (rectify)
            exec_action = own(aid, a, f) if own is not None else self._exec_action(aid, a, f, matcher)
            if exec_action is None:  # retained as it is, or nothing left to change
                marks.add("skipped", aid, f"retained: {a.reason}")
                report.done += 1
                continue
            todo.setdefault(a.store, []).append(exec_action)
            if exec_action.kind == X_UPDATE:
                post[aid] = _letters(self.ledger.protect_value({"record": {**(f.record or {}),
                                                                           **exec_action.updates}})[5:])
        marks.flush(self.ledger, plan_id, owner)
        if report.refused:
            report.details.append(f"{report.refused} action(s) refused: the current policy no longer allows them "
                                  f"(kept as they are; re-plan to act on the policy as it is now)")
        for store_name, actions in todo.items():
            self.ledger.mark_actions(plan_id, [x.action_id for x in actions], "started", actor=owner,
                                     details={aid: _EXPECT + fp for aid, fp in post.items()})

            def done(ids: list[str], rows: int, detail: str | None, _owner=owner) -> None:
                # a batch's row count is recorded on its first action
                notes = {aid: "; ".join(x for x in (_EXPECT + post[aid] if aid in post else None, detail) if x)
                         or None for aid in ids}
                self.ledger.mark_actions(plan_id, ids, "done", rows={aid: rows if i == 0 else 0
                                                                     for i, aid in enumerate(ids)},
                                         details=notes, actor=_owner)
                report.done += len(ids)
                report.rows += rows
                if detail:
                    report.details.append(f"{store_name}: {len(ids)} action(s): {detail}")

            store = self.config.stores[store_name]
            with connect(self.config, store, progress=self.progress) as conn:
                conn.apply(actions, done, matcher)

    @staticmethod
    def _still_allowed(a: PlannedAction, now: Decision) -> bool:
        """Whether the policy as it is now still allows the approved action on this record: the same action
        (and, for field operations, the same fields). A rule added since (a hold, a retention, a review)
        wins over the plan: the record is left as it is."""
        if now.action != a.action:
            return False
        fields = now.field_ops
        return not fields or set(fields) == set(a.fields or {})

    def _exec_action(self, aid: str, a: PlannedAction, f: Finding, matcher: SubjectMatcher) -> ExecAction | None:
        action = a.action
        ops = {col: OperatorSpec.from_dict(spec, f"plan action {aid}, column {col}")
               for col, spec in (a.fields or {}).items()}
        if action == DELETE:
            if f.record is None and "row" not in f.location and ("file" in f.location or "path" in f.location):
                return ExecAction(aid, f.container, f.location, X_DROP)  # a whole file (pii.core.selection)
            return ExecAction(aid, f.container, f.location, X_DELETE, expected=f.record)
        if action == REDACT:
            record = f.record or {}
            new = redact_fields(record, matcher)
            updates = {k: v for k, v in new.items() if v != record.get(k)}
            return ExecAction(aid, f.container, f.location, X_UPDATE, updates, expected=record) if updates else None
        if action in (ANONYMISE, RETAIN):
            if not ops:
                return None
            record = f.record or {}
            new = apply_field_ops(record, ops)
            updates = {k: v for k, v in new.items() if v != record.get(k)}
            return ExecAction(aid, f.container, f.location, X_UPDATE, updates, expected=record) if updates else None
        raise LetheError(f"plan action {aid}: unknown action {action!r}")

    # ------------------------------------------------------------------ verify
    def _verify(self, plan_id: str, plan: dict, target: Target, actor: str) -> ExecutionReport:
        """Locate again: what remains must be retained, held or weak-for-review; anything else counts."""
        report = ExecutionReport(plan_id, EXECUTED)
        current = target.locate(plan.get("stores"))
        gaps = coverage_gaps(getattr(target, "coverage", None))
        # stores the plan could not search at all (skipped by its search tasks) stay unverified
        covered = set(plan.get("stores") or [])
        gaps += [g for g in coverage_gaps(plan.get("coverage")) if g["store"] not in covered]
        report.not_verified = gaps
        today = self.today or dt.date.today()
        kept = {a.fingerprint for a in actions_of(plan["actions"]) if a.action == RETAIN}
        kept |= {a.fingerprint for a in actions_of(plan["held"])}
        own = getattr(target, "verify_remaining", None)  # a target with its own verification (rectify)
        if own is not None:  # it gets the post-change fingerprints of the changes done, and how to print a finding
            done = {_expected_of(r["detail"]) for r in self.ledger.actions(plan_id) if r["state"] == "done"}
            remaining = own(plan, current, done - {None}, lambda f: _letters(self.fingerprint(f)))
        else:
            changed_as_planned = self._changed_as_planned(target)
            remaining = 0
            for f in current:
                decision = target.decide(f, today, plan.get("include_weak", False))
                fp = self.fingerprint(f)
                if decision.action in (REVIEW, HOLD, RETAIN) or fp in kept or _letters(fp) in changed_as_planned:
                    continue
                remaining += 1
        report.remaining = remaining
        state = self.ledger.plan_state(plan_id)
        if state == EXECUTED:
            state = self.ledger.record_verification(plan_id, actor, remaining, gaps)
        report.state = state
        if state == VERIFIED:
            request_id = self.ledger.get_plan(plan_id)["request_id"]
            target.complete(request_id, actor)
            self.ledger.shred_subject(request_id, actor=actor)  # before "completed": see open_plan_for
            self.ledger.set_request_status(request_id, "completed", actor=actor)
        return report

    def _changed_as_planned(self, target, *, exclude: str | None = None) -> set[str]:
        """Post-change fingerprints (`_letters`) recorded by the update actions of this subject's erasure
        plans: a record in one of those states was already changed by Lethe as planned. A re-run after a
        crash that came after completion is a new request; it must not anonymise such a record again."""
        out: set[str] = set()
        for request_id in target.lineage():
            for p in self.ledger.plans_for(request_id):
                if p["plan_id"] != exclude:
                    out.update(_expected_of(r["detail"]) for r in self.ledger.actions(p["plan_id"]))
        out.discard(None)
        return out

    # ------------------------------------------------------------------ certificate
    def certificate(self, plan_id: str) -> dict:
        """What was done, verified and kept, with no personal values: for the requester and auditors."""
        row = self.ledger.get_plan(plan_id)
        plan = row["plan"]
        request = self.ledger.get_request(row["request_id"])
        states: dict[str, int] = {}
        rows = 0
        refused = 0
        state_of: dict[str, str | None] = {}
        for a in self.ledger.actions(plan_id):
            states[a["state"] or "not_started"] = states.get(a["state"] or "not_started", 0) + 1
            rows += a["rows"] or 0
            refused += (a["detail"] or "").startswith("refused:")
            state_of[a["action_id"]] = a["state"]
        verification = [e for e in self.ledger.audit_events(plan_id=plan_id)
                        if e["event"] in ("plan_verified", "verification_failed")]
        last = (json.loads(verification[-1]["details"]) if isinstance(verification[-1]["details"], str)
                else verification[-1]["details"]) if verification else {}
        # the last verifying search's gaps; before any verification, the planning search's
        not_verified = list((last or {}).get("not_verified") or ([] if verification else
                                                                  coverage_gaps(plan.get("coverage"))))
        cert = {
            "certificate": "Lethe erasure certificate",
            "flow": plan.get("flow") or "erasure",
            "selection": plan.get("selection"),
            "request_id": row["request_id"],
            "plan_id": plan_id,
            "received_at": request["received_at"],
            "due_at": request["due_at"],
            "state": row["state"],
            "approved_by": row.get("decided_by"),
            "approved_at": row.get("decided_at"),
            "issued_at": _now_iso(),
            "actions": states,
            "rows_affected": rows,
            "by_location": _done_by_location(Plan(plan), state_of),
            "retained": [{"store": a.store, "container": a.container, "reason": a.reason,
                          "legal_basis": a.legal_basis, "until": a.until}
                         for a in actions_of(plan["actions"]) if a.action == RETAIN],
            "held": [{"store": a.store, "container": a.container, "reason": a.reason, "until": a.until}
                     for a in actions_of(plan["held"])],
            "review_not_erased": len(plan["review"]),
            # erasing actions on containers stores.yaml declares retained, as the approver saw them
            "declared_retention_conflicts": _conflicts(Plan(plan)),
            # approved actions the policy no longer allowed when they were carried out: left as they are
            "refused_by_policy": refused,
            # verified: nothing erasable remains AND every place was searched; otherwise `not_verified` says where
            "verified": row["state"] == VERIFIED and not not_verified,
            "not_verified": not_verified,
            "coverage": [{k: c.get(k) for k in ("store", "complete", "searched", "excluded")}
                         for c in plan.get("coverage") or []],
            "verification": [json.loads(e["details"]) if isinstance(e["details"], str) else e["details"]
                             for e in verification],
            "out_of_scope": plan.get("out_of_scope", []),
            "suppression": "identifiers added as keyed hashes" if row["state"] == VERIFIED else "not yet",
        }
        if plan.get("rectify"):
            from pii.engine.rectify import certificate_part

            cert.update(certificate_part(self, plan_id, plan, cert))
        return cert


# ---------------------------------------------------------------------------- helpers
def plan_ttl_hours(erasure: dict) -> float:
    """`erasure: {plan_ttl_hours: H}`: a positive number of hours (ConfigError otherwise)."""
    import math

    raw = erasure.get("plan_ttl_hours", DEFAULT_PLAN_TTL_HOURS)
    try:
        hours = float(raw)
    except (TypeError, ValueError):
        raise ConfigError(f"erasure.plan_ttl_hours must be a number of hours, not {str(raw)[:40]!r}") from None
    if isinstance(raw, bool) or not math.isfinite(hours) or hours <= 0:
        raise ConfigError(f"erasure.plan_ttl_hours must be a positive number of hours (got {str(raw)[:40]})")
    return hours


def _done_by_location(plan: Plan, state_of: dict[str, str | None]) -> dict[str, dict[str, int]]:
    """store/container -> outcome -> locations, as carried out: an erasing action counts under its name
    only once done; one that drifted, failed, was refused or has not run counts as "<action> not done".
    Retained, held and review locations count as planned (nothing was to be done to them)."""
    out = plan.counts()
    for a in plan.actions:
        if a.action not in ERASING or state_of.get(a.action_id) == "done":
            continue
        per = out[f"{a.store}/{shown_container(a.container)}"]
        per[a.action] -= 1
        if not per[a.action]:
            del per[a.action]
        per[f"{a.action} not done"] = per.get(f"{a.action} not done", 0) + 1
    return out


def _conflicts(plan: Plan) -> list[dict]:
    """store/container/action -> the declared retention it contradicted and any stated override."""
    grouped: dict[tuple, int] = {}
    for a in plan.conflicts():
        key = (a.store, a.container, a.action, a.conflict, a.override_reason)
        grouped[key] = grouped.get(key, 0) + 1
    return [{"store": s, "container": c, "action": act, "locations": n, "conflict": text, "override": why}
            for (s, c, act, text, why), n in sorted(grouped.items(), key=lambda kv: tuple(map(str, kv[0])))]


class _Marks:
    """Action outcomes decided before any store is touched, written to the ledger in a few batches."""

    def __init__(self):
        self.by: dict[tuple[str, str], list[str]] = {}

    def add(self, state: str, action_id: str, detail: str) -> None:
        self.by.setdefault((state, detail), []).append(action_id)

    def flush(self, ledger: Ledger, plan_id: str, actor: str) -> None:
        for (state, detail), ids in self.by.items():
            ledger.mark_actions(plan_id, ids, state, rows={aid: 0 for aid in ids},
                                details={aid: detail for aid in ids}, actor=actor)
        self.by.clear()


def _lock_owner(actor: str) -> str:
    """`<actor>:<node>:<pid>:<random>`: unique per run, and tells a later run whether its process lives."""
    who = str(actor)[:160].replace("@", " at ")  # lock names and owners may not look like e-mail addresses
    return f"{who}:{node_id()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _owner_gone(owner: str) -> bool:
    """True only when `owner` (made by `_lock_owner`) is a process of this node that no longer exists."""
    parts = owner.rsplit(":", 3)
    if len(parts) != 4 or not parts[2].isdigit() or parts[1] != node_id():
        return False
    pid = int(parts[2])
    return pid != os.getpid() and process_gone(pid)


def _subject_pairs(subject: Subject) -> list[tuple[str, str]]:
    pairs = [("email", e) for e in subject.emails] + [("phone", p) for p in subject.phones]
    pairs += [(f"id:{k}", v) for k, vs in subject.ids.items() for v in vs]
    return pairs + [("name", n) for n in subject.names]


def _out_of_scope(config: Config) -> list[dict]:
    raw = config.raw.get("out_of_scope") or []
    if isinstance(raw, dict):
        raw = [{"name": k, **(v or {})} for k, v in raw.items()]
    return [{"name": str(s.get("name")), "route": s.get("route"), "contact": s.get("contact")}
            for s in raw if isinstance(s, dict)]


_EXPECT = "expect:"
_HEX_TO_LETTERS = str.maketrans("0123456789", "ghijklmnop")


def _letters(fingerprint: str) -> str:
    """A fingerprint written without digits (ledger details mask digit runs as possible phone numbers)."""
    return fingerprint[:40].translate(_HEX_TO_LETTERS)


def _expected_of(detail: str | None) -> str | None:
    """The post-change fingerprint an update action recorded in its detail, if any."""
    if not detail or not detail.startswith(_EXPECT):
        return None
    return detail[len(_EXPECT):].split(";", 1)[0]


def _now_iso() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")
