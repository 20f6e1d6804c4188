"""Typed planned actions (pii/core/plans.py): the stored form is written and read in one place, a decision's
fields land where the executor looks for them, and a Plan reads its lists as typed actions."""
from __future__ import annotations

import datetime as dt
import json

from pii.core.plans import Plan, PlannedAction, shown_container
from pii.core.policy import ANONYMISE, DELETE, RETAIN, REVIEW, Decision, OperatorSpec

WHERE = dict(action_id="a1", store="crm", container="members", location={"table": "members", "key": {"id": 7}},
             match="identifier", strength="strong", entities=("EMAIL_ADDRESS",), fingerprint="fp1")


def test_when_a_decision_is_planned_then_its_stored_form_reads_back_the_same():
    d = Decision(RETAIN, 2, "invoices kept for tax", "legal obligation", dt.date(2031, 1, 1),
                 {"email": OperatorSpec("hash")})
    a = PlannedAction.decided(decision=d, **WHERE)
    stored = a.to_dict()
    assert json.loads(json.dumps(stored)) == stored
    assert stored["rule"] == 2 and stored["until"] == "2031-01-01" and stored["legal_basis"] == "legal obligation"
    assert stored["fields"] == {"email": OperatorSpec("hash").to_dict()}
    assert PlannedAction.from_dict(stored) == a
    assert "proposed" not in stored  # absent fields are left out, as plans stored before this type have them


def test_when_a_weak_location_is_for_review_then_the_proposed_action_and_its_fields_are_kept():
    d = Decision(REVIEW, None, "a name alone", proposed=Decision(ANONYMISE, 0, "anonymise",
                                                                  field_ops={"name": OperatorSpec("redact")}))
    a = PlannedAction.decided(decision=d, **WHERE)
    assert a.action == REVIEW and a.proposed == ANONYMISE and set(a.fields) == {"name"} and a.rule is None


def test_when_a_plan_is_read_then_its_lists_are_typed_actions_and_counts_follow_them():
    delete = PlannedAction.decided(decision=Decision(DELETE, None, "default"), **WHERE).to_dict()
    named = {**delete, "action_id": "a2", "container": "hmac:0123456789abcdef"}
    held = {**delete, "action_id": "a3", "action": "hold", "reason": "litigation"}
    plan = Plan({"actions": [delete, named], "review": [], "held": [held]})
    assert [a.action_id for a in plan.actions] == ["a1", "a2"] and plan.held[0].reason == "litigation"
    assert plan.counts() == {"crm/members": {"delete": 1, "hold": 1},
                             f"crm/{shown_container('hmac:0123456789abcdef')}": {"delete": 1}}
    assert plan.lines()[0].startswith("plan: 2 delete, 0 anonymise, 0 redact, 0 retain, 1 hold, 0 review")
    assert "0123456789abcdef" not in "\n".join(plan.lines())  # a container named after the subject is withheld
