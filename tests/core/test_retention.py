"""Retention rules, record-selection dates and the statistics operators: small pure tables."""
from __future__ import annotations

import datetime as dt

import pytest

from pii.core.errors import ConfigError
from pii.core.policy import OperatorSpec
from pii.core.retention import Period, parse_schedule
from pii.core.dates import age_on, parse_date, years_before
from pii.core.selection import RecordFilter

D = dt.date
STORES = {"crm": None, "exports": None}


def rule(**kw):
    base = {"name": "r", "store": "crm", "match": "t", "date": "d", "period": "2y", "category": "C"}
    return {**base, **kw}


@pytest.mark.parametrize("period, day, expected", [
    ("2y", D(2026, 11, 22), D(2024, 11, 22)),
    ("1m", D(2026, 3, 31), D(2026, 2, 28)),
    ("1y", D(2024, 2, 29), D(2023, 2, 28)),
    ("3m", D(2026, 1, 15), D(2025, 10, 15)),
    ("90d", D(2026, 11, 22), D(2026, 8, 24)),
    ("6w", D(2026, 11, 22), D(2026, 10, 11)),
    ("5 years", D(2026, 11, 22), D(2021, 11, 22)),
])
def test_when_a_period_is_taken_from_a_day_then_calendar_months_and_years_count(period, day, expected):
    assert Period.parse(period, "x").before(day) == expected


@pytest.mark.parametrize("bad", ["0d", "-1y", "2 decades", "", None, True, "y2"])
def test_when_a_period_is_malformed_then_config_error(bad):
    with pytest.raises(ConfigError, match="period"):
        Period.parse(bad, "x")


def test_when_a_record_is_dated_exactly_at_the_cutoff_then_it_has_not_expired():
    r = parse_schedule([rule()], "src", STORES).rules[0]
    flt = r.record_filter(D(2026, 11, 22))
    assert flt.before == D(2024, 11, 22)
    assert flt.date_ok("2024-11-22") is False and flt.date_ok("2024-11-21") is True
    assert flt.date_ok("n/a") is None and flt.date_ok(None) is None


@pytest.mark.parametrize("raw, message", [
    ([rule(colour="red")], "unknown key"),
    ([rule(), rule()], "used twice"),
    ([rule(name="bad name!")], "'name'"),
    ([rule(store="nowhere")], "names no configured store"),
    ([rule(period="forever")], "period"),
    ([rule(category="")], "category"),
    ([rule(action="shred")], "delete or anonymise"),
    ([rule(action="anonymise")], "needs 'anonymise:'"),
    ([rule(anonymise={"email": "null"})], "only to action anonymise"),
    ([rule(action="anonymise", anonymise={"email": "explode"})], "unknown operator"),
    ([rule(date="file_time", action="anonymise", anonymise={"email": "null"})], "anonymise needs records"),
    ([rule(include_linked="yes")], "include_linked"),
    ([rule(action="anonymise", anonymise={"email": "null"}, include_linked=True)], "goes with action delete"),
    ([rule(legal_hold="")], "legal_hold"),
    ({"name": "r"}, "a list of rules"),
])
def test_when_a_retention_rule_is_wrong_then_the_error_names_the_rule_and_the_problem(raw, message):
    with pytest.raises(ConfigError, match=message):
        parse_schedule(raw, "retention.yaml", STORES)


def test_when_rules_cover_containers_then_globs_match_tables_and_files():
    s = parse_schedule([rule(name="a", match=["enquir*"]), rule(name="b", store="exports", match="visitors.csv"),
                        rule(name="c", store="*", match="*.wav", date="file_time")], "src", STORES)
    assert [r.name for r in s.for_container("crm", "Enquiries")] == ["a"]
    assert [r.name for r in s.for_container("exports", "visitors.csv")] == ["b"]
    assert [r.name for r in s.for_container("exports", "recordings/call.wav")] == ["c"]
    assert s.for_container("crm", "members") == []
    assert s.rules[2].date == "@file_time"


@pytest.mark.parametrize("value, expected", [
    ("2024-05-01", D(2024, 5, 1)), ("2024-05-01T10:00:00Z", D(2024, 5, 1)), ("2024-05-01 10:00", D(2024, 5, 1)),
    ("2024/05/01", D(2024, 5, 1)), ("01/05/2024", D(2024, 5, 1)), ("31/12/2024", D(2024, 12, 31)),
    ("12/31/2024", D(2024, 12, 31)), ("01.05.2024", D(2024, 5, 1)), ("20240501", D(2024, 5, 1)),
    (dt.datetime(2024, 5, 1, 23, 59), D(2024, 5, 1)), (D(2024, 5, 1), D(2024, 5, 1)),
    ("", None), ("n/a", None), ("2024-02-30", None), (None, None), (True, None), ("yesterday", None),
])
def test_when_dates_are_written_many_ways_then_parse_date_reads_them_day_first(value, expected):
    assert parse_date(value) == expected


@pytest.mark.parametrize("born, today, age", [
    (D(2013, 11, 22), D(2026, 11, 22), 13), (D(2013, 11, 23), D(2026, 11, 22), 12),
    (D(2012, 2, 29), D(2025, 2, 28), 12), (D(2012, 2, 29), D(2025, 3, 1), 13),
])
def test_when_age_is_computed_then_birthdays_count_on_the_day(born, today, age):
    assert age_on(born, today) == age


def test_when_a_threshold_is_applied_then_born_after_the_cutoff_means_younger():
    cutoff = years_before(D(2026, 11, 22), 13)
    flt = RecordFilter(date_column="dob", after=cutoff, before=D(2026, 11, 23))
    assert flt.date_ok("2013-11-22") is False  # 13 today: not under 13
    assert flt.date_ok("2013-11-23") is True
    assert flt.date_ok("2030-01-01") is False  # not born yet: no child's record


@pytest.mark.parametrize("operator, value, expected", [
    ("generalise_date", "1984-06-02", "1984"),
    ({"operator": "generalise_date", "to": "month"}, "02/06/1984", "1984-06"),
    ("generalise_date", D(1984, 6, 2), D(1984, 1, 1)),
    ("generalise_date", "not a date", ""),
    ("postcode_district", "sw1a 1aa", "SW1A"),
    ("postcode_district", "M1 1AE", "M1"),
    ("postcode_district", "LS1", "LS1"),
    ("postcode_district", "12 High Street", ""),
    ("postcode_district", None, None),
])
def test_when_statistics_operators_run_then_values_are_generalised(operator, value, expected):
    assert OperatorSpec.from_dict(operator, "test").apply(value) == expected
