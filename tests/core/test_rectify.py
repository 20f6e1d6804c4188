"""Rectification, the pure part: parsing --set, refusing bad changes, finding fields, writing new values in
each field's own form (pii/core/rectify.py)."""
from __future__ import annotations

import pytest

from pii.core.errors import InvalidIdentifier
from pii.core.rectify import (
    Changes, check_changes, email_in_form_of, field_specs, identifier_fields, mention_fields, name_in_form_of,
    new_subject, old_subject, parse_changes, phone_in_form_of, replace_mentions, split_name, updates_for,
)
from pii.core.subject import Subject, SubjectMatcher

ALICE = Subject.build(emails=["alice.smith@example.org"], phones=["020 7946 0123"], names=["Alice Smith"])
ALL = parse_changes(["email=Alice.Jones@Example.org", "phone=020 7946 0777", "name=Alice Jones"], "GB")
OLD = SubjectMatcher(old_subject(ALICE, ALL))


@pytest.mark.parametrize("old, new", [
    ("+442079460123", "+442079460777"),          # E.164 stays E.164
    ("+44 20 7946 0123", "+44 20 7946 0777"),    # spaced international
    ("020 7946 0123", "020 7946 0777"),          # national
    ("02079460123", "02079460777"),              # national without spaces
    ("0044 20 7946 0123", "0044 20 7946 0777"),  # 00 international
    ("(020) 7946-0123", "(020) 7946-0777"),      # area code in brackets, dash
])
def test_when_a_phone_is_rewritten_then_it_keeps_the_old_ones_form(old, new):
    assert phone_in_form_of(old, "+442079460777", "GB") == new


def test_when_the_new_phone_is_foreign_then_a_national_field_gets_the_international_form():
    assert phone_in_form_of("020 7946 0123", "+33612345678", "GB") == "+33 6 12 34 56 78"


@pytest.mark.parametrize("old, new", [
    ("alice.smith@example.org", "alice.jones@example.org"),
    ("ALICE.SMITH@EXAMPLE.ORG", "ALICE.JONES@EXAMPLE.ORG"),
    ("Alice.Smith@Example.org", "Alice.Jones@Example.org"),
])
def test_when_an_email_is_rewritten_then_a_lower_case_field_stays_lower_case(old, new):
    assert email_in_form_of(old, "Alice.Jones@Example.org") == new


@pytest.mark.parametrize("old, new", [
    ("Smith, Alice", "Jones, Alice"),
    ("SMITH, Alice", "JONES, Alice"),
    ("Alice Smith", "Alice Jones"),
    ("alice smith", "alice jones"),
])
def test_when_a_name_is_rewritten_then_order_and_capitals_follow_the_old_one(old, new):
    assert name_in_form_of(old, "Alice Jones") == new


def test_when_a_new_name_is_written_last_comma_first_then_it_splits_the_same():
    assert split_name("Jones, Alice") == split_name("Alice Jones") == ("Alice", "Jones")


def test_when_a_record_holds_the_old_values_then_each_identifier_field_gets_its_own_form():
    record = {"id": 1, "first_name": "Alice", "last_name": "Smith", "email": "alice.smith@example.org",
              "phone": "+442079460123", "full_name": "Smith, Alice", "notes": "call 020 7946 0123"}
    fields = identifier_fields(record, OLD, ALL.kinds)
    assert fields == {"email": "email", "phone": "phone", "full_name": "name", "first_name": "given_name",
                      "last_name": "family_name"}
    assert mention_fields(record, OLD, ALL.kinds, skip=fields) == ["notes"]
    updates = updates_for(record, fields, ALL, OLD, "GB")
    assert updates == {"email": "alice.jones@example.org", "phone": "+442079460777", "full_name": "Jones, Alice",
                       "last_name": "Jones"}  # first_name is unchanged: not rewritten


def test_when_another_persons_values_are_in_a_record_then_no_field_is_planned():
    bob = {"email": "bob@example.org", "phone": "020 7946 0999", "first_name": "Bob", "last_name": "Smith",
           "decoy": "malice.smith@example.org"}
    assert identifier_fields(bob, OLD, ALL.kinds) == {}


def test_when_a_field_changed_since_the_plan_then_it_is_not_rewritten():
    record = {"email": "someone.else@example.org", "phone": "020 7946 0123"}
    assert updates_for(record, {"email": "email", "phone": "phone"}, ALL, OLD, "GB") == {"phone": "020 7946 0777"}


def test_when_mentions_are_replaced_then_each_keeps_the_form_it_was_written_in():
    text = "Ask alice.smith@example.org or ring +44 20 7946 0123 (not 020 7946 0124), Alice Smith said."
    assert replace_mentions(text, OLD, ALL, "GB") == \
        "Ask alice.jones@example.org or ring +44 20 7946 0777 (not 020 7946 0124), Alice Jones said."


def test_when_only_some_kinds_are_set_then_only_those_fields_are_planned():
    only_phone = parse_changes(["phone=+33612345678"], "GB")
    matcher = SubjectMatcher(old_subject(ALICE, only_phone))
    record = {"email": "alice.smith@example.org", "phone": "020 7946 0123"}
    assert identifier_fields(record, matcher, only_phone.kinds) == {"phone": "phone"}
    after = new_subject(ALICE, only_phone)
    assert after.emails == ALICE.emails and after.phones == ("+33612345678",)


def test_the_stored_fields_name_kinds_only():
    assert field_specs({"email": "email", "last_name": "family_name"}) == {
        "email": {"operator": "rectify", "kind": "email"}, "last_name": {"operator": "rectify", "kind": "family_name"}}


@pytest.mark.parametrize("items, message", [
    (["mail=x@example.org"], "unknown field"),
    (["email"], "FIELD=VALUE"),
    (["email=not-an-address"], "the new email is not a valid email address"),
    (["phone=12"], "the new phone is not a valid phone number"),
    (["name=J"], "the new name has no word"),
    (["email=a@example.org", "email=b@example.org"], "given twice"),
    ([], "at least one --set"),
])
def test_when_set_is_bad_then_a_one_line_error_without_the_value(items, message):
    with pytest.raises(InvalidIdentifier) as e:
        parse_changes(items, "GB")
    assert message in str(e.value) and "\n" not in str(e.value)
    assert "not-an-address" not in str(e.value)


@pytest.mark.parametrize("items, subject, message", [
    (["email=ALICE.SMITH@example.org"], ALICE, "the same as the current one"),
    (["phone=+44 20 7946 0123"], ALICE, "the same as the current one"),
    (["name=Smith, Alice"], ALICE, "the same as the current one"),
    (["phone=020 7946 0777"], Subject.build(emails=["alice.smith@example.org"]), "needs the current phone"),
    (["email=a@example.org"], Subject(), "at least one identifier"),
])
def test_when_a_change_cannot_be_carried_out_then_it_is_refused(items, subject, message):
    with pytest.raises(InvalidIdentifier, match=message):
        check_changes(subject, parse_changes(items, "GB"))


def test_changes_round_trip_through_their_sealed_form():
    assert Changes.from_dict(ALL.to_dict()) == ALL and ALL.phone == "+442079460777"
