"""The run service: how a request's plan goes from a dry run to a certificate, for the CLI and Airflow alike.

A run is about a subject (erasure: `SubjectRun`) or a selection (the special flows: `SelectionRun`). The
service's steps are the ones both front ends take:

- `dry_run`: the plan, stored nowhere;
- `store`: register the request, plan it and store the plan, awaiting approval;
- `close_if_empty`: a stored plan with nothing to change is approved and verified at once;
- `approve_and_run` / `run`: approve (the approver is recorded), then carry out and verify; `run` alone
  resumes a plan an earlier run left unfinished;
- `unfinished` / `withdraw`: plans of earlier runs of the same request that a crash left approved but not
  finished (to resume), and earlier requests that never got an approval (to withdraw, shredding their
  sealed data);
- `run_through`: `--yes`: withdraw, resume, plan, approve as the given approver, carry out, verify.

The CLI prints what happens (through `notify`); Airflow splits the same steps over tasks with a person's
approval between `store` and `run`. Nothing here prints or logs a personal value.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, replace
from typing import Callable, Protocol

from pii.engine.erasure import ErasureEngine, ExecutionReport, SubjectTarget
from pii.core.plans import Plan
from pii.core.findings import Finding
from pii.core.subject import Subject

Notify = Callable[..., None]


def _quiet(_event: str, **_details) -> None:
    return None


class RunSpec(Protocol):
    """What a run is about, and how its earlier runs are found."""

    #: after resuming an earlier run's plan, plan again (a selection may have gained records since);
    #: a subject's resumed plan already covers the request
    replan_after_resume: bool

    def preview(self, engine: ErasureEngine) -> Plan: ...

    def submit(self, engine: ErasureEngine, requester: str, received_at: dt.date | None) -> Plan: ...

    def lineage(self, engine: ErasureEngine) -> list[str]: ...

    def unfinished(self, engine: ErasureEngine) -> list[str]: ...

    def finished(self, engine: ErasureEngine) -> str | None:
        """A plan that already completed this run's request (re-running it then re-issues that plan's
        certificate when nothing new is found, instead of a new, empty one)."""

    def reusing(self, plan: Plan) -> "RunSpec":
        """The same run, planned from the search `plan` (a dry run) made instead of searching again."""

    @property
    def subject(self) -> Subject | None: ...


@dataclass
class SubjectRun:
    """An erasure request for one subject. `found`: findings and coverage from a search made elsewhere
    (the Airflow flow's mapped tasks); `request_id`: the request registered before planning."""

    person: Subject
    include_weak: bool = False
    stores: list[str] | None = None
    request_id: str | None = None
    found: tuple[list[Finding], list[dict]] | None = None
    replan_after_resume = False

    @property
    def subject(self) -> Subject:
        return self.person

    def preview(self, engine: ErasureEngine) -> Plan:
        return engine.build_plan(self.person, include_weak=self.include_weak, stores=self.stores, found=self.found)

    def submit(self, engine: ErasureEngine, requester: str, received_at: dt.date | None) -> Plan:
        return engine.submit(self.person, requester, received_at=received_at, include_weak=self.include_weak,
                             stores=self.stores, request_id=self.request_id, found=self.found)

    def lineage(self, engine: ErasureEngine) -> list[str]:
        return SubjectTarget(engine, self.person).lineage()

    def unfinished(self, engine: ErasureEngine) -> list[str]:
        plan_id = engine.open_plan_for(self.person)
        return [plan_id] if plan_id else []

    def finished(self, engine: ErasureEngine) -> str | None:
        return engine.finished_plan_for(self.person)

    def reusing(self, plan: Plan) -> "SubjectRun":
        return replace(self, found=(plan.findings, plan.data.get("coverage") or []))


@dataclass
class SelectionRun:
    """A special flow's run: the records a selection chose (received in error, child data, a retention
    rule, an unsubscribe)."""

    selection: object  # pii.engine.flows.Selection
    include_weak: bool = False
    replan_after_resume = True

    @property
    def subject(self) -> None:
        return None

    def preview(self, engine: ErasureEngine) -> Plan:
        from pii.engine.flows import preview_selection

        return preview_selection(engine, self.selection, include_weak=self.include_weak)

    def submit(self, engine: ErasureEngine, requester: str, received_at: dt.date | None) -> Plan:
        from pii.engine.flows import submit_selection

        return submit_selection(engine, self.selection, requester, received_at=received_at,
                                include_weak=self.include_weak)

    def lineage(self, engine: ErasureEngine) -> list[str]:
        from pii.engine.flows import SelectionTarget

        return SelectionTarget(engine, self.selection).lineage()

    def unfinished(self, engine: ErasureEngine) -> list[str]:
        from pii.engine.flows import unfinished_plans

        return unfinished_plans(engine, self.selection)

    def finished(self, engine: ErasureEngine) -> None:
        return None  # a flow's run is not a person's request: each run plans (an empty plan closes at once)

    def reusing(self, plan: Plan) -> "SelectionRun":
        return self  # never asked: a flow run has no finished request to compare with


@dataclass
class Outcome:
    """What `run_through` did: the plan it made (None when it only resumed), the reports of the plans it
    carried out (resumed ones first), whether the new plan was closed at once as empty, and how many
    earlier unapproved requests it withdrew."""

    plan: Plan | None
    reports: list[ExecutionReport]
    closed: str | None = None
    withdrawn: int = 0
    already: str | None = None  # the plan that had already completed the request (nothing new was found)

    @property
    def last(self) -> ExecutionReport | None:
        return self.reports[-1] if self.reports else None


class RunService:
    """The steps of a run over one engine (its config, ledger, policy and run date)."""

    def __init__(self, engine: ErasureEngine):
        self.engine = engine

    def dry_run(self, spec: RunSpec) -> Plan:
        return spec.preview(self.engine)

    def store(self, spec: RunSpec, requester: str, *, received_at: dt.date | None = None) -> Plan:
        return spec.submit(self.engine, requester, received_at)

    def close_if_empty(self, plan: Plan, approver: str) -> ExecutionReport | None:
        """A stored plan with nothing to carry out is approved and verified at once (nobody need be asked),
        so the ledger records the run as complete. Returns its report, or None when it has actions."""
        if plan.actions:
            return None
        self.engine.approve(plan.plan_id, approver)
        return self.engine.execute(plan.plan_id)

    def approve(self, plan_id: str, approver: str, *, require_distinct: bool = False,
                reason: str | None = None) -> None:
        """Approve a stored plan; where stores.yaml requires it, only once the requester's identity is
        verified (`lethe verify-identity`; LedgerError, exit 3, otherwise)."""
        from pii.engine.requests import check_identity

        check_identity(self.engine.ledger, self.engine.config, self.engine.ledger.get_plan(plan_id)["request_id"])
        self.engine.approve(plan_id, approver, require_distinct=require_distinct, reason=reason)

    def run(self, plan_id: str, *, subject: Subject | None = None, actor: str | None = None) -> ExecutionReport:
        """Carry out an approved plan (or resume one interrupted) and verify it."""
        return self.engine.execute(plan_id, subject=subject, actor=actor)

    def approve_and_run(self, plan_id: str, approver: str, *, subject: Subject | None = None,
                        require_distinct: bool = False) -> ExecutionReport:
        self.approve(plan_id, approver, require_distinct=require_distinct)
        return self.run(plan_id, subject=subject)

    def unfinished(self, spec: RunSpec) -> list[str]:
        return spec.unfinished(self.engine)

    def withdraw(self, spec: RunSpec, requester: str) -> int:
        """Withdraw `requester`'s earlier requests of this run whose plans were never approved (a run killed
        between planning and approval): their plans expire, their sealed data is shredded."""
        return self.engine.withdraw_unapproved(spec.lineage(self.engine), requester)

    def run_through(self, spec: RunSpec, requester: str, approver: str, *,
                    received_at: dt.date | None = None, notify: Notify = _quiet) -> Outcome:
        """`--yes`: withdraw earlier unapproved requests, resume unfinished plans, then (unless a resumed
        plan covers the request, or one failed) plan anew, close an empty plan, or approve as `approver`,
        carry out and verify. A resumed plan left unverified, or verified only where Lethe could search,
        stops the run there. `notify(event, **details)`: "withdrawn" (count), "resuming" (plan_id),
        "resumed" (report), "planned" (plan), "closed" (plan, state), "approved" (plan_id, approver), "already_done" (plan_id:
        the request was completed before and a search finds nothing new: that plan's report is re-issued)."""
        outcome = Outcome(plan=None, reports=[])
        resume = self.unfinished(spec)
        if spec.replan_after_resume or not resume:
            outcome.withdrawn = self.withdraw(spec, requester)
            if outcome.withdrawn:
                notify("withdrawn", count=outcome.withdrawn)
        for plan_id in resume:
            notify("resuming", plan_id=plan_id)
            report = self.run(plan_id, subject=spec.subject)
            outcome.reports.append(report)
            notify("resumed", report=report)
            if report.state != "verified" or report.not_verified:
                return outcome  # a resumed plan that did not fully verify is for a person to look at
        if resume and not spec.replan_after_resume:
            return outcome
        done = spec.finished(self.engine)
        if done:
            preview = self.dry_run(spec)
            if not preview.actions:  # e.g. a run killed after finishing, before printing
                outcome.already = done
                outcome.reports.append(self.engine.report_of(done))
                notify("already_done", plan_id=done)
                return outcome
            spec = spec.reusing(preview)  # new data: plan from the search just made, not a second one
        plan = outcome.plan = self.store(spec, requester, received_at=received_at)
        notify("planned", plan=plan)
        closed = self.close_if_empty(plan, approver)
        if closed:
            outcome.closed = closed.state
            outcome.reports.append(closed)
            notify("closed", plan=plan, state=closed.state, approver=approver)
            return outcome
        self.approve(plan.plan_id, approver)
        notify("approved", plan_id=plan.plan_id, approver=approver)
        outcome.reports.append(self.run(plan.plan_id, subject=spec.subject))
        return outcome
