"""A person confirms the requester's identity, as an Airflow Human-in-the-loop task (issue 14).

Where stores.yaml says ``requests: {require_identity_verification: true}``, the subject-access and
erasure DAGs wait after registering the request: `IdentityCheckOperator` shows the request (id, kind,
received and due dates; no personal values), asks **how** the identity was checked (a short method word
such as ``document``, ``email-link`` or ``in-person``) and an optional **Note**, and offers
**Identity verified** or **Not verified**:

- Identity verified: ``Ledger.verify_identity(request_id, method, <the responding user>, note)`` (the note
  sealed); the run goes on.
- Not verified, or no answer before the timeout: the task fails; nothing is searched or changed and the
  request stays open (verify it later with ``lethe verify-identity`` and run the DAG again by request id).

When verification is not required, or the request was verified already (e.g. with ``lethe
verify-identity`` before the run), the task succeeds at once without asking anybody. Who may answer and
how long it waits: the same ``LETHE_APPROVERS`` and ``LETHE_APPROVAL_TIMEOUT_HOURS`` as approvals.
"""
from __future__ import annotations

from typing import Any

from airflow.providers.standard.operators.hitl import HITLOperator
from airflow.sdk import Param
from airflow.sdk.definitions.param import ParamsDict

from plugins.approval import TIMEOUT_ACTOR, approval_timeout, approvers_from_env
from plugins.outcomes import lethe_outcomes

CONFIRMED, NOT_CONFIRMED = "Identity verified", "Not verified"


def identity_params(params: Any) -> ParamsDict:
    """The DAG's params with the form's own fields (Method, Note) added as the task's (see
    plugins.approval.with_reason for why they are added here)."""
    merged = params if isinstance(params, ParamsDict) else ParamsDict(dict(params or {}))
    merged["method"] = Param(None, type=["null", "string"], maxLength=40, source="task", title="Method",
                             description="How the identity was checked: one short word, e.g. document, "
                                         "email-link, in-person, video-call.")
    merged["note"] = Param(None, type=["null", "string"], maxLength=500, source="task", title="Note",
                           description="Optional; sealed in the ledger (no personal details needed).")
    return merged


def identity_body(request_id: str, row: dict, terms: dict) -> str:
    """The form's text: the request's id, kind and dates, nothing personal."""
    due = terms["due"] + (f" (extended from {terms['first_due']})" if terms.get("extended_to") else "")
    return "\n".join([
        f"## Confirm the requester's identity: request `{request_id}`",
        "",
        "stores.yaml requires the requester's identity to be verified before Lethe searches or changes "
        "anything for this request.",
        "",
        "| | |", "|---|---|",
        f"| kind | {row['kind']} |",
        f"| received | {row['received_at']} |",
        f"| due | {due} |",
        f"| identity | {terms['identity']} |",
        "",
        f"Check the requester's identity as your procedure says, then choose **{CONFIRMED}** and say how "
        f"(Method). **{NOT_CONFIRMED}** stops this run; the request stays open.",
    ])


class IdentityCheckOperator(HITLOperator):
    """Wait for a person to confirm the requester's identity when stores.yaml requires it (see the module
    docstring)."""

    template_fields = (*HITLOperator.template_fields, "request_id")

    def __init__(self, *, request_id: Any, **kwargs) -> None:
        kwargs.setdefault("subject", "Lethe: confirm the requester's identity")
        kwargs.setdefault("assigned_users", approvers_from_env())
        kwargs.setdefault("response_timeout", approval_timeout())
        kwargs["params"] = identity_params(kwargs.get("params"))
        super().__init__(options=[CONFIRMED, NOT_CONFIRMED], defaults=[NOT_CONFIRMED], multiple=False, **kwargs)
        self.request_id = request_id

    def _ledger(self, context):
        from pii.ledger import Ledger
        from plugins.runtime import load_run_config

        config = load_run_config(context["params"])
        return config, Ledger(config.state_url)

    def execute(self, context):
        with lethe_outcomes():
            from pii.engine.requests import SUBJECT_KINDS, identity_required

            config, ledger = self._ledger(context)
            row = ledger.get_request(self.request_id)
            if not identity_required(config) or row["kind"] not in SUBJECT_KINDS:
                self.log.info("request %s: identity verification not required", self.request_id)
                return {"request_id": self.request_id, "identity": "not required"}
            terms = ledger.request_terms(self.request_id)
            if terms["identity"] == "verified":
                self.log.info("request %s: identity verified already (%s)", self.request_id,
                              terms["identity_method"])
                return {"request_id": self.request_id, "identity": "verified", "method": terms["identity_method"]}
            self.body = identity_body(self.request_id, row, terms)
        return super().execute(context)

    def execute_complete(self, context, event: dict[str, Any]) -> dict[str, Any]:
        from airflow.providers.standard.exceptions import HITLTimeoutError

        timed_out = bool(event.get("timedout"))
        try:
            response = super().execute_complete(context=context, event=event)
        except HITLTimeoutError:
            response = {"chosen_options": [NOT_CONFIRMED], "params_input": {}, "responded_by_user": None}
            timed_out = True
        chosen = (response["chosen_options"] or [NOT_CONFIRMED])[0]
        user = response.get("responded_by_user") or {}
        who = str(user.get("name") or user.get("id") or "").strip() or TIMEOUT_ACTOR
        given = response.get("params_input") or {}
        with lethe_outcomes():
            from pii.core.errors import LedgerError

            if chosen != CONFIRMED or timed_out:
                raise LedgerError(f"request {self.request_id}: the requester's identity was not verified "
                                  f"({'no answer before the timeout' if timed_out else 'answered by ' + who}); "
                                  f"nothing was searched or changed, the request stays open")
            _config, ledger = self._ledger(context)
            method = "-".join(str(given.get("method") or "").lower().split()) or "not-stated"
            ledger.verify_identity(self.request_id, method, who, given.get("note") or None)
            self.log.info("request %s: identity verified by %s (%s)", self.request_id, who, method)
        return {"request_id": self.request_id, "identity": "verified", "method": method, "verified_by": who}
