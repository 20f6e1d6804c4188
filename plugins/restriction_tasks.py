"""The subject_restriction DAG's form and task body (issue 14, items 2 and 3): restrict processing of a person's
data, release it, or record an objection to a purpose, in the ledger, as `lethe restrict` / `lethe object`
do. No data changes, so no approval step: an objection to marketing is recorded here, and the person is taken
off the marketing lists by the consent_withdrawal DAG (which waits for an approval).

The identifiers come from the run conf (``emails``, ``phones``, ``ids``) or, so that they never enter Airflow's
metadata, from a request registered beforehand (``request_id``: `lethe register`). What the task returns
(XCom) is counts and dates only.
"""
from __future__ import annotations

import logging
from typing import Any, Mapping

from plugins.outcomes import lethe_outcomes
from plugins.runtime import actor_of, load_run_config

log = logging.getLogger("lethe.airflow")

ACTIONS = ("restrict", "release", "object")


def restriction_params() -> dict:
    """The trigger form: what to do, for which purpose, why, until when, and whom."""
    from airflow.sdk import Param

    from plugins.params import subject_params

    person = subject_params(erasure=False)
    return {
        "action": Param("restrict", type="string", enum=list(ACTIONS), title="Action",
                        description="restrict: hold the person's records from every flow; release: lift the "
                                    "restriction; object: record an objection to one purpose."),
        "purpose": Param(None, type=["null", "string"], enum=[None, "marketing", "profiling", "analytics"],
                         title="Purpose (objection)",
                         description="For action object: marketing, profiling or analytics. An objection to "
                                     "marketing is recorded here; run consent_withdrawal to take the person off "
                                     "the marketing lists."),
        "reason": Param(None, type=["null", "string"], maxLength=1000, title="Reason",
                        description="Why (kept sealed in the ledger; required to restrict or object, not "
                                    "given to release)."),
        "until": Param(None, type=["null", "string"], format="date", title="Restricted until",
                       description="The last day of the restriction (default: until released)."),
        "emails": person["emails"],
        "phones": person["phones"],
        "ids": person["ids"],
        "request_id": Param(None, type=["null", "string"], pattern=person["request_id"].schema.get("pattern"),
                            title="Request id",
                            description="A request registered beforehand (`lethe register`): its identifiers "
                                        "stay in Lethe's encrypted request store."),
        "config": person["config"],
    }


def _subject(params: Mapping[str, Any], ledger, region: str):
    from pii.core.errors import InvalidIdentifier, LedgerError
    from pii.engine.requests import has_identifiers, subject_from_conf

    request_id = params.get("request_id") or None
    if has_identifiers(params):
        if request_id:
            raise InvalidIdentifier("give the identifiers or a request_id, not both")
        return subject_from_conf(params, region)
    if not request_id:
        raise InvalidIdentifier("give the person's identifiers (emails, phones, ids) or the request_id of a "
                                "request registered beforehand")
    ledger.get_request(request_id)  # LedgerError for an unknown request
    if not ledger.is_sealed(request_id):
        raise LedgerError(f"request {request_id}: its identifiers are no longer in the request store")
    return ledger.unseal_subject(request_id)


def record(context: Mapping[str, Any]) -> dict:
    """Carry out the run's action in the ledger; returns the action, purpose, counts and end date."""
    import datetime as dt

    from pii.engine.restriction import purpose_of, require_matchable, until_of
    from pii.core.errors import ConfigError
    from pii.ledger import Ledger

    with lethe_outcomes():
        params = dict(context.get("params") or {})
        action = params.get("action") or "restrict"
        if action not in ACTIONS:
            raise ConfigError(f"unknown action {str(action)[:40]!r}: use one of {', '.join(ACTIONS)}")
        reason = (params.get("reason") or "").strip()
        if action == "release" and reason:
            raise ConfigError("release takes no reason (the reason given for the restriction is shredded)")
        if action != "release" and not reason:
            raise ConfigError(f"{action} needs a reason")
        if action != "object" and params.get("purpose"):
            raise ConfigError("a purpose goes with action object")
        if action != "restrict" and params.get("until"):
            raise ConfigError("until goes with action restrict")
        purpose = purpose_of(params.get("purpose")) if action == "object" else None
        config = load_run_config(params)
        ledger = Ledger(config.state_url)
        subject = _subject(params, ledger, config.default_region)
        require_matchable(subject)
        actor = actor_of(context)
        out: dict[str, Any] = {"action": action, "purpose": purpose}
        if action == "restrict":
            until = until_of(params.get("until"), ledger._now().date())
            out["identifiers"] = ledger.restrict(subject, reason, until=until, actor=actor)
            out["until"] = until.isoformat() if until else None
        elif action == "release":
            out["identifiers"] = ledger.release_restriction(subject, actor=actor)
        else:
            out["identifiers"] = ledger.object_to(subject, purpose, reason, actor=actor)
            if purpose == "marketing":
                out["next"] = "consent_withdrawal"
                log.info("objection to marketing recorded: trigger consent_withdrawal to take the person off "
                         "the marketing lists")
        out["recorded_on"] = dt.date.today().isoformat()
        log.info("%s%s: %d identifiers", action, f" ({purpose})" if purpose else "", out["identifiers"])
        return out
