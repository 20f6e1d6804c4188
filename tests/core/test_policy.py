"""Erasure policy: rules, defaults, weak evidence, exemptions, field operators, text redaction (pii/core/policy.py)."""
from __future__ import annotations

import datetime as dt
import hashlib
import hmac

import pytest
from presidio_anonymizer.operators import Decrypt

from pii.core.errors import ConfigError
from pii.core.findings import STRONG, WEAK, Finding
from pii.core.policy import (
    ACTIONS, OPERATORS, RULE_ACTIONS, RULE_KEYS, Decision, OperatorSpec, Policy, apply_field_ops, load_policy,
    parse_policy, redact_fields, redact_text,
)
from pii.core.subject import Subject, SubjectMatcher, TextMatch

TODAY = dt.date(2026, 11, 21)
HASH_KEY = "k" * 32
AES_KEY = "0123456789abcdef"  # 16 bytes: AES-128


def finding(store="crm", table=None, schema=None, file=None, path=None, match="identifier", strength=STRONG,
            container=None) -> Finding:
    if table is not None:
        loc = {"table": table, "key": {"id": 1}}
        if schema:
            loc["schema"] = schema
        default_container = f"{schema}.{table}" if schema else table
    elif file is not None:
        loc, default_container = {"file": file, "row": 3}, file
    else:
        loc, default_container = {"path": path or "/incoming/leads.csv", "row": 3}, path or "/incoming/leads.csv"
    return Finding(store=store, location=loc, entities=["EMAIL_ADDRESS"], match=match, strength=strength,
                   container=default_container if container is None else container)


def retain(**extra) -> dict:
    return {"action": "retain", "reason": "Invoices kept for tax",
            "legal_basis": "Legal obligation, Art. 6(1)(c)", **extra}


def spec(operator: str, **params) -> OperatorSpec:
    return OperatorSpec(operator, params, "test")


# --------------------------------------------------------------------------- default policy
@pytest.mark.parametrize("match, action", [
    ("identifier", "delete"),
    ("linked", "delete"),
    ("text", "redact"),
])
def test_when_no_policy_file_then_default_deletes_subject_rows_and_redacts_mentions(match, action):
    d = load_policy(None).decide(finding(table="members", match=match), TODAY)
    assert (d.action, d.rule_index, d.field_ops) == (action, None, {})
    assert d.reason.startswith("default policy")


@pytest.mark.parametrize("match, proposed", [
    ("identifier", "delete"),
    ("linked", "delete"),
    ("text", "redact"),
])
def test_when_finding_is_weak_then_action_is_review_with_the_proposed_action(match, proposed):
    d = Policy().decide(finding(table="members", match=match, strength=WEAK), TODAY)
    assert d.action == "review"
    assert d.rule_index is None and d.field_ops == {}
    assert d.proposed is not None and d.proposed.action == proposed


@pytest.mark.parametrize("rules, expected_action, expected_rule", [
    ([], "delete", None),
    ([{"action": "anonymise", "anonymise": {"email": "hash"}}], "anonymise", 0),
    ([retain()], "retain", 0),
])
def test_when_weak_finding_is_included_explicitly_then_rules_decide_as_for_strong(rules, expected_action,
                                                                                  expected_rule):
    policy = parse_policy({"rules": rules}, "p.yaml")
    weak = finding(table="members", strength=WEAK)
    assert policy.decide(weak, TODAY).action == "review"
    d = policy.decide(weak, TODAY, include_weak=True)
    assert (d.action, d.rule_index) == (expected_action, expected_rule)


# --------------------------------------------------------------------------- rule matching
GLOB_RULES = {"rules": [
    {"store": "crm", "container": "sales.pay*", **retain()},
    {"store": "crm", "container": "payments", "action": "anonymise", "anonymise": {"email": {"operator": "hash"}}},
    {"store": "exp*", "container": "*.csv", **retain(reason="Exports kept for audit")},
    {"container": "members", "match": ["linked"], "action": "anonymise", "anonymise": {"phone": "null"}},
    {"store": "partner_drop", "container": "leads.csv", "action": "redact"},
    {"store": "shop", "container": "Sales.Orders", "action": "redact"},
]}


@pytest.mark.parametrize("f, action, rule", [
    (finding("crm", table="payments", schema="sales"), "retain", 0),         # first of two matching rules
    (finding("crm", table="payments"), "anonymise", 1),                      # no schema: rule 0's glob misses
    (finding("crm", table="PAYMENTS"), "anonymise", 1),                      # table names ignore case
    (finding("crm", table="payments", schema="billing"), "anonymise", 1),    # bare table name matches too
    (finding("crm", table="payment_runs"), "delete", None),                  # glob is not a prefix match
    (finding("exports", file="crm_export.csv"), "retain", 2),
    (finding("exports", file="2026/crm_export.csv"), "retain", 2),
    (finding("exports", file="crm_export.txt"), "delete", None),
    (finding("crm_exports", file="crm_export.csv"), "delete", None),         # store glob anchors at the start
    (finding("crm", table="members", match="linked"), "anonymise", 3),
    (finding("crm", table="members", match="identifier"), "delete", None),   # rule 3 is for linked only
    (finding("crm", table="members", match="text"), "redact", None),
    (finding("partner_drop", path="/incoming/leads.csv"), "redact", 4),      # file pattern on the last part
    (finding("partner_drop", path="/incoming/old/leads.csv.bak"), "delete", None),
    (finding("shop", table="orders", schema="sales"), "redact", 5),           # pattern case ignored as well
    (finding("shop", table="orders", schema="archive"), "delete", None),
])
def test_when_several_rules_could_match_then_the_first_matching_glob_wins(f, action, rule):
    d = parse_policy(GLOB_RULES, "p.yaml").decide(f, TODAY)
    assert (d.action, d.rule_index) == (action, rule)


def test_when_a_retain_rule_matches_then_decision_carries_reason_basis_and_field_ops():
    policy = parse_policy({"rules": [retain(until="2032-04-05", anonymise={"Email": {"operator": "hash"}})]}, "p")
    d = policy.decide(finding(table="payments"), TODAY)
    assert d.action == "retain"
    assert (d.reason, d.legal_basis, d.until) == ("Invoices kept for tax", "Legal obligation, Art. 6(1)(c)",
                                                  dt.date(2032, 4, 5))
    assert set(d.field_ops) == {"Email"} and d.field_ops["Email"].operator == "hash"


@pytest.mark.parametrize("today, action, rule", [
    (dt.date(2032, 4, 4), "retain", 0),
    (dt.date(2032, 4, 5), "retain", 0),      # the until-date itself is still covered
    (dt.date(2032, 4, 6), "anonymise", 1),   # expired: the next rule applies
])
def test_when_retain_until_has_passed_then_the_next_rule_applies(today, action, rule):
    policy = parse_policy({"rules": [
        retain(until=dt.date(2032, 4, 5)),
        {"action": "anonymise", "anonymise": {"email": "redact"}},
    ]}, "p.yaml")
    d = policy.decide(finding(table="payments"), today)
    assert (d.action, d.rule_index) == (action, rule)


@pytest.mark.parametrize("until, today, action", [
    ("2030-01-01", dt.date(2029, 12, 31), "retain"),
    ("2030-01-01", dt.date(2030, 1, 2), "delete"),   # expired and no other rule: the default
])
def test_when_only_rule_expires_then_the_default_decides(until, today, action):
    policy = parse_policy({"rules": [retain(until=until)]}, "p.yaml")
    assert policy.decide(finding(table="payments"), today).action == action


# --------------------------------------------------------------------------- validation errors
@pytest.mark.parametrize("rule, missing", [
    ({"action": "retain", "legal_basis": "Art. 6(1)(c)"}, "reason"),
    ({"action": "retain", "reason": "tax"}, "legal_basis"),
    ({"action": "retain"}, "reason and legal_basis"),
    ({"action": "retain", "reason": "tax", "legal_basis": "   "}, "legal_basis"),
])
def test_when_retain_lacks_reason_or_legal_basis_then_config_error_names_rule_and_key(rule, missing):
    with pytest.raises(ConfigError) as err:
        parse_policy({"rules": [{"action": "delete"}, rule]}, "/etc/lethe/policy.yaml")
    msg = str(err.value)
    assert "/etc/lethe/policy.yaml" in msg and "rules[1]" in msg and missing in msg


@pytest.mark.parametrize("action", ["erase", "Delete", None, 3, "review"])
def test_when_action_is_unknown_then_config_error_lists_the_actions(action):
    rule = {"store": "crm"} if action is None else {"action": action}
    with pytest.raises(ConfigError) as err:
        parse_policy({"rules": [rule]}, "policy.yaml")
    msg = str(err.value)
    assert "policy.yaml" in msg and "rules[0]" in msg
    assert all(a in msg for a in RULE_ACTIONS)


@pytest.mark.parametrize("key", ["table", "columns", "legal-basis", "Action"])
def test_when_rule_has_unknown_key_then_config_error_names_rule_index_and_key(key):
    rules = [{"action": "delete"}, {"action": "delete"}, {"action": "delete", key: "x"}]
    with pytest.raises(ConfigError) as err:
        parse_policy({"rules": rules}, "policy.yaml")
    msg = str(err.value)
    assert "policy.yaml" in msg and "rules[2]" in msg and repr(key) in msg
    assert all(k in msg for k in RULE_KEYS)


@pytest.mark.parametrize("operator", ["sha256", "Hash", "fake", "keep"])
def test_when_operator_is_unknown_then_config_error_lists_known_operators(operator):
    with pytest.raises(ConfigError) as err:
        parse_policy({"rules": [{"action": "anonymise", "anonymise": {"email": {"operator": operator}}}]}, "p.yaml")
    msg = str(err.value)
    assert "p.yaml" in msg and "rules[0]" in msg and "'email'" in msg and repr(operator) in msg
    assert all(name in msg for name in ("replace", "redact", "mask", "hash", "encrypt", "null"))


@pytest.mark.parametrize("ops, fragment", [
    ({"phone": {"operator": "mask", "chars_to_mask": -1}}, "chars_to_mask"),
    ({"phone": {"operator": "mask", "chars_to_mask": "6"}}, "chars_to_mask"),
    ({"phone": {"operator": "mask", "from_end": "yes"}}, "from_end"),
    ({"phone": {"operator": "mask", "masking_char": "**"}}, "masking_char"),
    ({"phone": {"operator": "mask", "colour": "red"}}, "'colour'"),
    ({"name": {"operator": "replace", "new_value": 7}}, "new_value"),
    ({"name": {"operator": "redact", "new_value": "x"}}, "'new_value'"),
    ({"email": {"operator": "hash", "key_env": "not a name"}}, "key_env"),
    ({"email": {"operator": "hash", "salt": "x"}}, "'salt'"),
    ({"email": {"mask": 3}}, "operator"),
    ({"email": "hash", "EMAIL": "mask"}, "twice"),
])
def test_when_operator_config_is_invalid_then_config_error_names_rule_and_parameter(ops, fragment):
    with pytest.raises(ConfigError) as err:
        parse_policy({"rules": [{"action": "delete"}, {"action": "anonymise", "anonymise": ops}]}, "p.yaml")
    msg = str(err.value)
    assert "p.yaml" in msg and "rules[1]" in msg and fragment in msg


@pytest.mark.parametrize("data, fragment", [
    ({"rules": [{"action": "anonymise"}]}, "needs 'anonymise:'"),
    ({"rules": [{"action": "delete", "anonymise": {"email": "hash"}}]}, "only to actions anonymise and retain"),
    ({"rules": [{"action": "delete", "match": ["fuzzy"]}]}, "identifier, text, linked"),
    ({"rules": [{"action": "delete", "until": "next year"}]}, "YYYY-MM-DD"),
    ({"rules": [{"action": "delete", "store": ""}]}, "'store'"),
    ({"rules": [{"action": "delete", "container": ["a"]}]}, "'container'"),
    ({"rules": {"action": "delete"}}, "'rules' must be a list"),
    ({"rules": ["delete"]}, "rules[0]: a rule must be a mapping"),
    ({"rule": []}, "unknown top-level key 'rule'"),
    (["delete"], "top level must be a mapping"),
])
def test_when_policy_structure_is_invalid_then_config_error_says_where(data, fragment):
    with pytest.raises(ConfigError) as err:
        parse_policy(data, "p.yaml")
    assert "p.yaml" in str(err.value) and fragment in str(err.value)


def test_when_registries_are_listed_then_review_and_hold_are_decision_only_and_eight_operators_exist():
    assert set(ACTIONS) - set(RULE_ACTIONS) == {"review", "hold"}
    assert set(OPERATORS) == {"replace", "redact", "mask", "hash", "encrypt", "null", "generalise_date",
                              "postcode_district"}


# --------------------------------------------------------------------------- operators
@pytest.mark.parametrize("op, value, expected", [
    (spec("mask", chars_to_mask=6, from_end=True, masking_char="*"), "07700900123", "07700******"),
    (spec("mask", chars_to_mask=3), "secret", "***ret"),
    (spec("mask", chars_to_mask=20, from_end=True, masking_char="#"), "abc", "###"),
    (spec("mask"), "abcd", "****"),                                          # default: the whole value
    (spec("mask", chars_to_mask=2, from_end=True), 123456, "1234**"),        # non-text values as text
    (spec("replace", new_value="<erased>"), "Alice Smith", "<erased>"),
    (spec("replace"), "Alice Smith", "<erased>"),
    (spec("replace", new_value=""), "Alice Smith", ""),
    (spec("redact"), "Called about her divorce", ""),
    (spec("null"), "alice@example.org", None),
    (spec("null"), 0, None),
])
def test_when_operator_is_applied_then_value_changes_as_configured(op, value, expected):
    assert op.apply(value) == expected


@pytest.mark.parametrize("operator", sorted(OPERATORS))
def test_when_value_is_none_then_every_operator_returns_none(operator, monkeypatch):
    monkeypatch.delenv("LETHE_HASH_KEY", raising=False)  # no secret is needed for a missing value
    monkeypatch.delenv("LETHE_ENCRYPT_KEY", raising=False)
    assert spec(operator).apply(None) is None


@pytest.mark.parametrize("value", ["alice.smith@example.org", "+442079460123", 10042, "é"])
def test_when_hash_key_is_set_then_hash_is_hmac_sha256_hex_stable_and_key_dependent(value, monkeypatch):
    monkeypatch.setenv("LETHE_HASH_KEY", HASH_KEY)
    first, again = spec("hash").apply(value), spec("hash").apply(value)
    expected = hmac.new(HASH_KEY.encode(), str(value).encode("utf-8"), hashlib.sha256).hexdigest()
    assert first == again == expected and len(first) == 64
    monkeypatch.setenv("LETHE_HASH_KEY", "another key")
    assert spec("hash").apply(value) != first


def test_when_hash_names_its_own_key_variable_then_that_variable_is_used(monkeypatch):
    monkeypatch.delenv("LETHE_HASH_KEY", raising=False)
    monkeypatch.setenv("CRM_HASH_KEY", HASH_KEY)
    assert spec("hash", key_env="CRM_HASH_KEY").apply("x") == hmac.new(HASH_KEY.encode(), b"x", "sha256").hexdigest()


@pytest.mark.parametrize("operator, env", [("hash", "LETHE_HASH_KEY"), ("encrypt", "LETHE_ENCRYPT_KEY")])
@pytest.mark.parametrize("unset", ["missing", "empty"])
def test_when_secret_env_is_unset_then_error_names_variable_file_and_rule_not_value(operator, env, unset,
                                                                                       monkeypatch):
    if unset == "missing":
        monkeypatch.delenv(env, raising=False)
    else:
        monkeypatch.setenv(env, "")
    policy = parse_policy({"rules": [{"action": "delete"}, {"action": "anonymise",
                                                             "anonymise": {"email": operator}}]}, "pol.yaml")
    op = policy.rules[1].field_ops["email"]
    for call in (lambda: op.apply("alice.smith@example.org"), policy.check_environment):
        with pytest.raises(ConfigError) as err:
            call()
        msg = str(err.value)
        assert env in msg and "pol.yaml" in msg and "rules[1]" in msg and "'email'" in msg
        assert "alice" not in msg
    assert policy.required_env() == [env]


@pytest.mark.parametrize("value", ["alice.smith@example.org", "4111 1111 1111 1111", "é-ü"])
def test_when_encrypt_key_is_set_then_ciphertext_differs_and_decrypts_back(value, monkeypatch):
    monkeypatch.setenv("LETHE_ENCRYPT_KEY", AES_KEY)
    first, second = spec("encrypt").apply(value), spec("encrypt").apply(value)
    assert value not in first and first != value
    assert len(first) == len(second)
    assert Decrypt().operate(first, {"key": AES_KEY}) == value
    assert Decrypt().operate(second, {"key": AES_KEY}) == value


@pytest.mark.parametrize("key", ["short", "x" * 17, "y" * 33])
def test_when_encrypt_key_has_wrong_length_then_error_names_variable_not_key(key, monkeypatch):
    monkeypatch.setenv("LETHE_ENCRYPT_KEY", key)
    with pytest.raises(ConfigError) as err:
        spec("encrypt").apply("4111 1111 1111 1111")
    assert "LETHE_ENCRYPT_KEY" in str(err.value) and "16, 24 or 32 bytes" in str(err.value)
    assert key not in str(err.value) and "4111" not in str(err.value)


# --------------------------------------------------------------------------- apply_field_ops
@pytest.mark.parametrize("record, ops, expected", [
    ({"Email": "a@b.test", "Phone": "07700900123", "amount": 12},
     {"email": spec("replace", new_value="<erased>"), "PHONE": spec("mask", chars_to_mask=4, from_end=True)},
     {"Email": "<erased>", "Phone": "0770090****", "amount": 12}),
    ({"email": "a@b.test"}, {"notes": spec("redact"), "card": spec("null")}, {"email": "a@b.test"}),
    ({"email": None, "notes": "x"}, {"email": spec("replace"), "notes": spec("null")}, {"email": None, "notes": None}),
    ({}, {"email": spec("null")}, {}),
])
def test_when_field_ops_are_applied_then_only_present_columns_change_case_insensitively(record, ops, expected):
    before = dict(record)
    assert apply_field_ops(record, ops) == expected
    assert record == before  # a new record: the input is untouched


# --------------------------------------------------------------------------- text redaction
ALICE = Subject.build(emails=["alice.smith@example.org"], names=["Alice Smith"], phones=["020 7946 0123"],
                      ids={"customer_no": "C-10042"})


@pytest.mark.parametrize("text, expected", [
    ("Spoke to alice.smith@example.org about Bob's order",
     "Spoke to [redacted] about Bob's order"),
    ("Bob Jones called; his sister Alice Smith is on 020 7946 0123.",
     "Bob Jones called; his sister [redacted] is on [redacted]."),
    ("Ref C-10042: refund for Smith, Alice (ALICE.SMITH@EXAMPLE.ORG), Bob Jones approved",
     "Ref [redacted]: refund for [redacted] ([redacted]), Bob Jones approved"),
    ("Alicia Smithson and bob@example.org, 020 7946 0999", "Alicia Smithson and bob@example.org, 020 7946 0999"),
    ("", ""),
])
def test_when_text_mentions_the_subject_then_only_their_spans_are_redacted(text, expected):
    assert redact_text(text, SubjectMatcher(ALICE)) == expected


class SpanMatcher:
    def __init__(self, *spans):
        self.spans = spans

    def find_in_text(self, text):
        return [TextMatch(s, e, "ID", True) for s, e in self.spans]


@pytest.mark.parametrize("spans, expected", [
    ([(0, 5), (3, 8)], "[redacted]89abc"),               # overlapping: one redaction
    ([(6, 10), (0, 2)], "[redacted]2345[redacted]abc"),  # unordered spans, right to left
    ([(0, 3), (3, 5)], "[redacted]56789abc"),            # touching spans merge too
    ([(2, 4), (2, 4)], "01[redacted]456789abc"),         # duplicates
    ([(5, 5)], "0123456789abc"),                          # empty span: nothing to remove
])
def test_when_spans_overlap_or_are_unordered_then_redaction_merges_them(spans, expected):
    assert redact_text("0123456789abc", SpanMatcher(*spans)) == expected


def test_when_record_mentions_the_subject_then_redact_fields_changes_only_text_fields():
    record = {"id": 7, "note": "call Alice Smith", "author": "Bob Jones", "amount": None}
    assert redact_fields(record, SubjectMatcher(ALICE)) == {"id": 7, "note": "call [redacted]",
                                                            "author": "Bob Jones", "amount": None}


# --------------------------------------------------------------------------- files
EXAMPLE = """\
rules:
  - store: crm
    container: payments
    action: retain
    reason: "Invoices kept for tax"
    legal_basis: "Legal obligation, Art. 6(1)(c); HMRC 6 years"
    until: 2032-04-05
    anonymise:
      email: {operator: hash}
      phone: {operator: mask, chars_to_mask: 6, from_end: true, masking_char: "*"}
      name: {operator: replace, new_value: "<erased>"}
      notes: {operator: redact}
      card: {operator: encrypt}
    match: [identifier, linked]
  - store: "*"
    container: "*.csv"
    action: anonymise
    anonymise:
      Email: null           # YAML null: the null operator
      Phone: {operator: null}
"""


@pytest.mark.parametrize("f, action, rule", [
    (finding("crm", table="payments"), "retain", 0),
    (finding("crm", table="payments", match="text"), "redact", None),
    (finding("exports", file="crm_export.csv"), "anonymise", 1),
    (finding("crm", table="members"), "delete", None),
])
def test_when_policy_file_is_loaded_then_its_rules_decide(tmp_path, f, action, rule):
    (tmp_path / "policy.yaml").write_text(EXAMPLE, encoding="utf-8")
    policy = load_policy("policy.yaml", base_dir=tmp_path)  # relative to stores.yaml's folder
    assert policy.source == str(tmp_path / "policy.yaml")
    d = policy.decide(f, TODAY)
    assert (d.action, d.rule_index) == (action, rule)


def test_when_example_policy_is_applied_then_retained_row_has_its_fields_anonymised(tmp_path, monkeypatch):
    monkeypatch.setenv("LETHE_HASH_KEY", HASH_KEY)
    monkeypatch.setenv("LETHE_ENCRYPT_KEY", AES_KEY)
    path = tmp_path / "policy.yaml"
    path.write_text(EXAMPLE, encoding="utf-8")
    d = load_policy(path).decide(finding("crm", table="payments"), TODAY)
    row = {"invoice": 17, "EMAIL": "alice.smith@example.org", "phone": "07700900123", "Name": "Alice Smith",
           "notes": "VIP", "card": "4111111111111111", "total": 42.5}
    out = apply_field_ops(row, d.field_ops)
    assert out["invoice"] == 17 and out["total"] == 42.5
    assert out["EMAIL"] == hmac.new(HASH_KEY.encode(), b"alice.smith@example.org", "sha256").hexdigest()
    assert out["phone"] == "07700******" and out["Name"] == "<erased>" and out["notes"] == ""
    assert Decrypt().operate(out["card"], {"key": AES_KEY}) == "4111111111111111"
    assert Decision.from_dict(d.to_dict()) == d  # a stored plan rebuilds the same decision


def test_when_yaml_null_names_the_operator_then_it_is_the_null_operator(tmp_path):
    path = tmp_path / "policy.yaml"
    path.write_text(EXAMPLE, encoding="utf-8")
    d = load_policy(path).decide(finding("exports", file="crm_export.csv"), TODAY)
    assert {c: s.operator for c, s in d.field_ops.items()} == {"Email": "null", "Phone": "null"}
    assert apply_field_ops({"email": "a@b.test", "phone": "1", "x": "y"}, d.field_ops) == \
        {"email": None, "phone": None, "x": "y"}


@pytest.mark.parametrize("content, fragment", [
    ("rules:\n  - action: delete\n   store: crm\n", "not valid YAML at line"),
    ("rules:\n  - action: wipe\n", "rules[0]"),
    ("", "top level must be a mapping"),
])
def test_when_policy_file_is_invalid_then_config_error_names_the_file(tmp_path, content, fragment):
    path = tmp_path / "bad_policy.yaml"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_policy(path)
    assert str(path) in str(err.value) and fragment in str(err.value)


def test_when_policy_file_is_missing_then_config_error_names_it(tmp_path):
    with pytest.raises(ConfigError, match="policy file .*nowhere.yaml does not exist"):
        load_policy("nowhere.yaml", base_dir=tmp_path)


def test_when_policy_file_has_empty_rules_then_the_default_applies(tmp_path):
    path = tmp_path / "policy.yaml"
    path.write_text("rules: []\n", encoding="utf-8")
    policy = load_policy(path)
    assert policy.rules == []
    assert policy.decide(finding(table="members", match="text"), TODAY).action == "redact"


# --------------------------------------------------------------------------- legal holds
def _finding(store="crm", table="payments", match="identifier", strength="strong"):
    from pii.core.findings import Finding
    return Finding(store=store, location={"table": table, "key": {"id": 1}}, entities=["EMAIL_ADDRESS"],
                   match=match, strength=strength, container=table)


@pytest.mark.parametrize("holds, finding_kwargs, today, expected", [
    ([{"store": "crm", "container": "payments", "reason": "litigation 2026-17"}], {}, "2026-11-22", "hold"),
    ([{"store": "crm", "reason": "regulator inquiry"}], {"table": "members"}, "2026-11-22", "hold"),
    ([{"store": "crm", "container": "payments", "reason": "x"}], {"table": "members"}, "2026-11-22", "delete"),
    ([{"store": "other", "reason": "x"}], {}, "2026-11-22", "delete"),
    ([{"reason": "x", "until": "2026-01-01"}], {}, "2026-11-22", "delete"),
    ([{"reason": "x", "until": "2026-12-31"}], {"strength": "weak"}, "2026-11-22", "hold"),
])
def test_when_a_legal_hold_covers_a_finding_then_it_is_held_before_any_rule(holds, finding_kwargs, today, expected):
    import datetime as dt

    from pii.core.policy import parse_policy
    policy = parse_policy({"holds": holds, "rules": [{"action": "delete"}]}, "p.yaml")
    decision = policy.decide(_finding(**finding_kwargs), today=dt.date.fromisoformat(today))
    assert decision.action == expected
    if expected == "hold":
        assert decision.reason.startswith("legal hold: ")


@pytest.mark.parametrize("holds, message", [
    ([{"store": "crm"}], "needs a 'reason'"),
    ([{"reason": "x", "table": "t"}], "unknown key 'table'"),
    ([{"reason": "x", "until": "soon"}], "'until' must be a date"),
    ({"reason": "x"}, "'holds' must be a list"),
])
def test_when_a_hold_is_malformed_then_config_error_names_it(holds, message):
    from pii.core.errors import ConfigError
    from pii.core.policy import parse_policy
    with pytest.raises(ConfigError, match=message):
        parse_policy({"holds": holds}, "p.yaml")
