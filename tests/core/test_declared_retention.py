"""Declared retention (issue 13, item 2): a store's stores.yaml metadata may declare that a container is kept
for a period under a legal basis (`metadata: {retained: {CONTAINER: {period, legal_basis, reason}}}`). The
schema checks the declaration with one-line errors; the policy retains a declared container where no rule
matches, and a rule that erases it keeps its action but carries the conflict, which the plan shows."""
from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from pii.core.config import parse_config
from pii.core.errors import ConfigError
from pii.core.findings import Finding
from pii.core.plans import Plan, PlannedAction
from pii.core.policy import (
    ANONYMISE, DELETE, HOLD, REDACT, RETAIN, REVIEW, Decision, DeclaredRetention, declared_retention, parse_policy,
)

WHERE = Path("/etc/lethe/stores.yaml")
TODAY = dt.date(2026, 11, 22)
BASIS = "Legal obligation (UK GDPR Art. 6(1)(c)): tax and accounting records"
SQL = {"kind": "sql", "url": "sqlite:///crm.db"}


def config(retained, store=None, **more):
    raw = {**(store or SQL), "metadata": {"retention": "Membership records 6 years", "retained": retained}}
    return parse_config({"stores": {"crm": raw, **more}}, WHERE)


def finding(store="crm", match="identifier", strength="strong", **loc):
    loc = loc or {"table": "payments", "key": {"payment_id": 1}}
    container = loc.get("table") or loc.get("file") or loc.get("path") or ""
    return Finding(store=store, container=container, location=loc, match=match, entities=(), strength=strength)


PAYMENTS = {"payments": {"period": "6 years", "legal_basis": BASIS, "reason": "payment records kept for HMRC"}}


# ---------------------------------------------------------------------------- the schema
@pytest.mark.parametrize("retained, message", [
    ({"payments": {"period": "6 yeers", "legal_basis": BASIS}},
     "store 'crm': metadata.retained 'payments': 'period' must be a positive count with a unit"),
    ({"payments": {"period": "0y", "legal_basis": BASIS}}, "'period' must be a positive count with a unit"),
    ({"payments": {"period": 6, "legal_basis": BASIS}}, "'period' must be a positive count with a unit"),
    ({"payments": {"period": "6y"}}, "store 'crm': metadata.retained 'payments' needs 'legal_basis'"),
    ({"payments": {"legal_basis": BASIS}}, "metadata.retained 'payments' needs 'period'"),
    ({"payments": {"period": "6y", "legal_basis": "  "}}, "'legal_basis' must be a non-empty text"),
    ({"payments": {"period": "6y", "legal_basis": BASIS, "reson": "x"}},
     "metadata.retained 'payments': unknown key 'reson' (did you mean 'reason'?)"),
    ({"payments": {"period": "6y", "legal_bassis": BASIS}},
     "metadata.retained 'payments': unknown key 'legal_bassis' (did you mean 'legal_basis'?)"),
    ({"payments": {"period": "6y", "legal_basis": BASIS, "zzz": 1}},
     "unknown key 'zzz'; known keys: legal_basis, period, reason"),
    ({"payments": "6 years"}, "metadata.retained 'payments' must be a mapping with period, legal_basis"),
    (["payments"], "store 'crm': metadata.retained must map tables/files to {period, legal_basis, reason}"),
])
def test_when_a_declared_retention_is_wrong_then_one_line_names_the_store_container_and_key(retained, message):
    with pytest.raises(ConfigError) as err:
        config(retained)
    text = str(err.value)
    assert text.startswith(str(WHERE)) and message in text and "\n" not in text
    assert BASIS not in text  # values are not echoed


def test_when_declarations_are_valid_then_they_load_in_order_with_the_rest_of_the_metadata_untouched():
    cfg = config({**PAYMENTS, "sales.invoice*": {"period": "10y", "legal_basis": "Legal obligation"}},
                 exports={"kind": "csv", "path": "x", "metadata": {"retained": {
                     "ledger_*.csv": {"period": "90d", "legal_basis": "Contract"}}}})
    assert cfg.stores["crm"].metadata["retention"] == "Membership records 6 years"
    assert declared_retention(cfg) == [
        DeclaredRetention("crm", "payments", "6 years", BASIS, "payment records kept for HMRC"),
        DeclaredRetention("crm", "sales.invoice*", "10y", "Legal obligation", ""),
        DeclaredRetention("exports", "ledger_*.csv", "90d", "Contract", ""),
    ]


def test_when_periods_are_read_then_declarations_and_retention_rules_share_one_parser():
    from pii.core.retention import Period

    for text in ("6 years", "6y", "90 days", "3 Months", "6w"):
        config({"payments": {"period": text, "legal_basis": BASIS}})  # accepted by the schema
        Period.parse(text, "rule")                                      # and by the retention schedule
    for text in ("6", "six years", "0d", "-1y", "6 decades"):
        with pytest.raises(ConfigError):
            config({"payments": {"period": text, "legal_basis": BASIS}})
        with pytest.raises(ConfigError):
            Period.parse(text, "rule")


# ---------------------------------------------------------------------------- decisions
def test_when_no_rule_matches_a_declared_container_then_it_is_retained_with_the_declarations_reason_and_basis():
    declared = declared_retention(config(PAYMENTS))
    for match in ("identifier", "linked", "text"):
        d = parse_policy({"rules": []}).decide(finding(match=match), TODAY, declared=declared)
        assert d.action == RETAIN and d.legal_basis == BASIS and d.rule_index is None
        assert "payment records kept for HMRC" in d.reason and "6 years" in d.reason
        assert d.until is None and d.conflict is None  # the period's start is not known: no made-up date
    # other tables and other stores keep the default
    assert parse_policy({"rules": []}).decide(finding(table="members"), TODAY, declared=declared).action == DELETE
    assert parse_policy({"rules": []}).decide(finding(store="crm2"), TODAY, declared=declared).action == DELETE
    # and without declarations nothing changes
    assert parse_policy({"rules": []}).decide(finding(), TODAY).action == DELETE


@pytest.mark.parametrize("pattern, loc, covered", [
    ("pay*", {"table": "payments"}, True),
    ("sales.payments", {"table": "payments", "schema": "sales"}, True),
    ("sales.payments", {"table": "payments", "schema": "billing"}, False),
    ("PAYMENTS", {"table": "payments"}, True),                        # SQL names ignore case
    ("ledger_*.csv", {"file": "2026/ledger_q1.csv", "row": 3}, True),  # file name, as rules match it
    ("/incoming/records/*", {"path": "/incoming/records/a.csv", "row": 1}, True),
    ("/incoming/records/*", {"path": "/incoming/leads.csv", "row": 1}, False),
    ("*", {"message_id": "18c2f"}, True),                              # a whole mailbox
])
def test_when_a_declaration_names_containers_then_it_matches_them_as_policy_rules_do(pattern, loc, covered):
    declared = [DeclaredRetention("crm", pattern, "6y", BASIS)]
    d = parse_policy({"rules": []}).decide(finding(**loc), TODAY, declared=declared)
    assert (d.action == RETAIN) is covered


def test_when_a_rule_decides_a_declared_container_then_its_action_stands_and_an_erasing_one_is_flagged():
    declared = declared_retention(config(PAYMENTS))
    rules = [{"container": "payments", "action": "retain", "reason": "own reason", "legal_basis": "own basis",
              "match": ["identifier"]},
             {"container": "payments", "action": "anonymise", "anonymise": {"email": "null"}, "match": ["linked"]},
             {"container": "payments", "action": "redact", "match": ["text"]}]
    policy = parse_policy({"rules": rules})
    kept = policy.decide(finding(), TODAY, declared=declared)
    assert (kept.action, kept.reason, kept.legal_basis, kept.conflict) == (RETAIN, "own reason", "own basis", None)
    for match, action, index in (("linked", ANONYMISE, 1), ("text", REDACT, 2)):
        d = policy.decide(finding(match=match), TODAY, declared=declared)
        assert d.action == action and d.rule_index == index and d.override_reason is None
        assert d.conflict == f"crm/payments is declared kept 6 years ({BASIS}); policy rules[{index}] says {action}"


def test_when_a_catch_all_delete_rule_covers_a_declared_container_then_it_deletes_but_is_flagged():
    declared = declared_retention(config(PAYMENTS))
    d = parse_policy({"rules": [{"action": "delete"}]}).decide(finding(), TODAY, declared=declared)
    assert d.action == DELETE and "crm/payments is declared kept 6 years" in d.conflict


def test_when_a_rule_overrides_the_declaration_deliberately_then_the_override_reason_is_carried():
    declared = declared_retention(config(PAYMENTS))
    policy = parse_policy({"rules": [{"container": "payments", "action": "delete",
                                      "override_retained": "the accountant confirmed these are duplicates"}]})
    d = policy.decide(finding(), TODAY, declared=declared)
    assert d.action == DELETE and d.conflict and d.override_reason == "the accountant confirmed these are duplicates"
    # the override key on a rule about an undeclared container changes nothing
    assert policy.decide(finding(table="members"), TODAY, declared=declared).conflict is None


@pytest.mark.parametrize("rule, message", [
    ({"action": "retain", "reason": "r", "legal_basis": "b", "override_retained": "x"},
     "'override_retained' goes with actions delete, anonymise, redact, not retain"),
    ({"action": "delete", "override_retained": " "}, "'override_retained' must be a non-empty text"),
    ({"action": "delete", "overide_retained": "x"}, "unknown key 'overide_retained'"),
])
def test_when_an_override_is_written_wrong_then_the_policy_is_refused(rule, message):
    with pytest.raises(ConfigError) as err:
        parse_policy({"rules": [rule]}, "p.yaml")
    assert message in str(err.value) and "rules[0]" in str(err.value)


def test_when_a_rule_has_expired_or_a_hold_applies_or_evidence_is_weak_then_the_declaration_fits_in_order():
    declared = declared_retention(config(PAYMENTS))
    expired = parse_policy({"rules": [{"container": "payments", "action": "delete", "until": "2026-01-01"}]})
    assert expired.decide(finding(), TODAY, declared=declared).action == RETAIN  # the rule no longer applies
    held = parse_policy({"holds": [{"container": "payments", "reason": "litigation"}],
                         "rules": [{"action": "delete"}]})
    assert held.decide(finding(), TODAY, declared=declared).action == HOLD  # a hold first, no conflict
    weak = parse_policy({"rules": []}).decide(finding(strength="weak"), TODAY, declared=declared)
    assert weak.action == REVIEW and weak.proposed.action == RETAIN
    weak_delete = parse_policy({"rules": [{"action": "delete"}]}).decide(finding(strength="weak"), TODAY,
                                                                          declared=declared)
    assert weak_delete.action == REVIEW and weak_delete.proposed.conflict


# ---------------------------------------------------------------------------- the plan
WHERE_A = dict(store="crm", container="payments", location={"table": "payments", "key": {"payment_id": 1}},
               match="linked", strength="strong", entities=(), fingerprint="fp")


def _action(aid, decision):
    return PlannedAction.decided(decision=decision, action_id=aid, **WHERE_A).to_dict()


def test_when_a_conflict_is_planned_then_its_stored_form_reads_back_and_decisions_round_trip():
    d = Decision(DELETE, 0, "rule", conflict="crm/payments is declared kept 6y (b); policy rules[0] says delete",
                 override_reason="duplicates")
    assert Decision.from_dict(json.loads(json.dumps(d.to_dict()))) == d
    stored = _action("a1", d)
    assert stored["conflict"] == d.conflict and stored["override_reason"] == "duplicates"
    assert PlannedAction.from_dict(json.loads(json.dumps(stored))).conflict == d.conflict
    plain = _action("a2", Decision(DELETE, None, "default"))
    assert "conflict" not in plain and "override_reason" not in plain  # absent where there is none


def test_when_a_plan_holds_a_conflict_then_its_lines_flag_it_for_the_approver():
    conflict = f"crm/payments is declared kept 6 years ({BASIS}); policy rules[0] says delete"
    plan = Plan({"actions": [_action(f"a{i}", Decision(DELETE, 0, "rule", conflict=conflict)) for i in range(3)],
                 "review": [], "held": []})
    text = "\n".join(plan.lines())
    assert "  ! 3 action(s) conflict with retention declared in stores.yaml" in text
    assert "  crm/payments: 3 delete  ! conflicts with declared retention" in text
    assert f"  ! delete 3 in crm/payments conflicts with declared retention: {conflict}" in text


def test_when_a_conflict_is_overridden_then_the_lines_say_so_without_the_warning():
    conflict = "crm/payments is declared kept 6 years (b); policy rules[0] says delete"
    plan = Plan({"actions": [_action("a1", Decision(DELETE, 0, "rule", conflict=conflict,
                                                    override_reason="duplicates, confirmed"))],
                 "review": [], "held": []})
    text = "\n".join(plan.lines())
    assert "!" not in text
    assert "crm/payments: 1 delete  (overrides declared retention)" in text
    assert f"delete 1 in crm/payments overrides declared retention: {conflict}; override: duplicates, confirmed" in text


def test_when_a_declared_container_is_retained_then_the_lines_give_the_declarations_reason_and_basis():
    declared = declared_retention(config(PAYMENTS))
    d = parse_policy({"rules": []}).decide(finding(), TODAY, declared=declared)
    text = "\n".join(Plan({"actions": [_action("a1", d)], "review": [], "held": []}).lines())
    assert ("retain 1 in crm/payments: payment records kept for HMRC (declared in stores.yaml: kept 6 years); "
            f"legal basis: {BASIS}") in text
    assert "!" not in text
