"""Column classification from names and sampled values."""
from __future__ import annotations

import pytest

from pii.core.classify import ColumnInfo, classify, kind_from_name, signature


@pytest.mark.parametrize("column, kind", [
    ("email", "email"), ("EmailAddress", "email"), ("contact_email", "email"), ("e_mail", "email"),
    ("phone", "phone"), ("mobile_phone", "phone"), ("tel", "phone"), ("phone_type", None),
    ("first_name", "given_name"), ("FirstName", "given_name"), ("forename", "given_name"),
    ("surname", "family_name"), ("last_name", "family_name"),
    ("name", "name"), ("full_name", "name"), ("customer_name", "name"),
    ("product_name", "other"), ("company_name", "other"), ("user_name", "other"),
    ("notes", "free_text"), ("comment", "free_text"), ("ticket_body", "free_text"),
    ("amount", None), ("created_at", None),
])
def test_when_column_has_a_telling_name_then_kind_follows(column, kind):
    assert kind_from_name(column) == kind


@pytest.mark.parametrize("values, kind", [
    (["a@x.org", "b@y.com", "c@z.net", None], "email"),
    (["+44 20 7946 0123", "020 7946 0999", "07700 900123"], "phone"),
    (["2021-04-09", "2022-11-30", "2023-01-02"], "other"),          # dates are not phones
    (["C-00050017", "C-00050018", "C-00050019"], "other"),          # nor customer numbers
    (["ORD-00000001", "SKU-0000001", "ORD-00000003"], "other"),
    (["Spoke to the customer about a late delivery today.", "Refund issued after a long call with them."],
     "free_text"),
    (["red", "green", "blue"], "other"),
])
def test_when_column_name_says_nothing_then_values_decide(values, kind):
    profile = classify([ColumnInfo("col_x")], {"col_x": values})["col_x"]
    assert profile.kind == kind
    assert profile.sample_size == len([v for v in values if v])


def test_when_column_is_numeric_then_it_is_never_an_identifier_column():
    assert classify([ColumnInfo("phone", "number")], {"phone": [1, 2]})["phone"].kind == "other"


def test_when_text_columns_forced_then_they_are_free_text():
    assert classify([ColumnInfo("misc")], {"misc": ["x"]}, text_columns=["MISC"])["misc"].kind == "free_text"


def test_when_undecided_values_look_like_names_to_ner_then_column_is_a_name_column():
    counter = lambda values: {"PERSON": len(list(values))}  # noqa: E731 - a stand-in for Presidio's counts
    profile = classify([ColumnInfo("attendee")], {"attendee": ["Ann Lee", "Raj Patel"]}, entity_counter=counter)
    assert profile["attendee"].kind == "name" and profile["attendee"].entities == ["PERSON"]


def test_when_columns_change_then_signature_changes():
    a = signature([ColumnInfo("email"), ColumnInfo("name")])
    assert a == signature([ColumnInfo("email"), ColumnInfo("name")])
    assert a != signature([ColumnInfo("email"), ColumnInfo("name", "number")])
    assert a != signature([ColumnInfo("email")])


@pytest.mark.parametrize("table, column, kind", [
    ("companies", "name", "other"), ("events", "name", "other"), ("products", "name", "other"),
    ("members", "name", "name"), ("event_badges", "name", "name"), ("crm.companies", "name", "other"),
    ("companies", "contact_name", "name"), (None, "name", "name"),
])
def test_when_a_table_names_things_then_its_bare_name_column_is_not_a_person(table, column, kind):
    from pii.core.classify import ColumnInfo, classify

    assert classify([ColumnInfo(column)], {}, container=table)[column].kind == kind
