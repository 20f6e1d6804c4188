"""Retention rules by last contact (issue 15.1): `last_contact:` in a rule, checked with one-line errors,
and the filter it gives (the cutoff, the contact dates, the people with a later contact elsewhere)."""
from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from pii.core.config import StoreConfig
from pii.core.errors import ConfigError
from pii.core.retention import LAST_CONTACT, parse_schedule
from pii.core.selection import RecordFilter

STORES = {name: StoreConfig(name=name, kind=kind, options={}, base_dir=Path("."))
          for name, kind in (("crm", "sql"), ("exports", "csv"), ("mail", "gmail"))}
RULE = {"name": "customers", "store": "crm", "match": ["customers"], "period": "5y", "category": "Customers",
        "last_contact": {"dates": ["last_login", "orders.ordered_at"],
                         "elsewhere": [{"store": "exports", "match": "*.csv", "date": "sent_at"}, {"store": "mail"}]}}


def test_when_a_rule_keeps_data_after_the_last_contact_then_its_filter_is_the_per_person_clock():
    rule = parse_schedule([RULE], "x", STORES).rules[0]
    assert rule.by_last_contact and rule.date == LAST_CONTACT
    assert rule.contact_dates == ("last_login", "orders.ordered_at")
    assert rule.elsewhere == ({"store": "exports", "match": ["*.csv"], "date": "sent_at"},
                              {"store": "mail", "match": ["*"], "date": "@message_date"})
    flt = rule.record_filter(dt.date(2026, 12, 3), {"emails": ["b@x.test", "a@x.test"]})
    assert (flt.before, flt.last_contact, flt.follow_links) == (dt.date(2021, 12, 3), rule.contact_dates, True)
    assert flt.recent == {"emails": ["a@x.test", "b@x.test"], "phones": []}
    assert RecordFilter.from_spec(flt.to_spec()) == flt
    assert "a@x.test" not in str(flt.describe()) and flt.describe()["recent_elsewhere"] == 2


@pytest.mark.parametrize("change, message", [
    ({"date": "created"}, "give 'date' or 'last_contact', not both"),
    ({"last_contact": {"dates": []}}, "'dates' must list contact-date columns"),
    ({"last_contact": {"dates": ["a b"]}}, "'dates' must list contact-date columns"),
    ({"last_contact": {"dates": ["x"], "since": 1}}, "unknown key(s) since"),
    ({"last_contact": ["x"]}, "last_contact must be a mapping"),
    ({"last_contact": {"dates": ["x"], "elsewhere": "exports"}}, "'elsewhere' must be a list"),
    ({"last_contact": {"dates": ["x"], "elsewhere": [{"store": "nope"}]}}, "'store' must name a configured store"),
    ({"last_contact": {"dates": ["x"], "elsewhere": [{"store": "exports"}]}}, "'date' is required"),
    ({"last_contact": {"dates": ["x"], "elsewhere": [{"store": "mail", "label": "x"}]}}, "unknown key(s) label"),
    ({"store": "exports"}, "the person table must be in a SQL store"),
    ({"include_linked": True}, "leave out 'include_linked'"),
])
def test_when_last_contact_is_malformed_then_the_error_names_the_rule_and_the_key(change, message):
    with pytest.raises(ConfigError) as err:
        parse_schedule([{**RULE, **change}], "stores.yaml: retention", STORES)
    assert message in str(err.value) and "rule 'customers'" in str(err.value)


def test_when_a_last_contact_rule_has_no_match_then_it_is_refused():
    rule = {k: v for k, v in RULE.items() if k != "match"}
    with pytest.raises(ConfigError, match="'match' must name the person table"):
        parse_schedule([rule], "x", STORES)
