"""Record filters (pii/core/selection.py) serialise themselves: a plan's selection is sealed as JSON and rebuilt
to resume or verify, so `from_spec(to_spec())` must give the same filter, child text clues included."""
from __future__ import annotations

import datetime as dt
import json

import pytest

from pii.core.selection import FILE_TIME, MESSAGE_DATE, RecordFilter


@pytest.mark.parametrize("flt", [
    RecordFilter(),
    RecordFilter(containers=("crm.enquiries", "exports/*.csv"), equals={"import_batch": ["B-7", 7]}),
    RecordFilter(date_column="created_at", before=dt.date(2024, 11, 22), follow_links=True),
    RecordFilter(date_column=FILE_TIME, before=dt.date(2026, 8, 24), whole_files=True),
    RecordFilter(date_column=MESSAGE_DATE, after=dt.date(2026, 1, 1), mail_from=("cv-desk@recruit.example.net",)),
    RecordFilter(message_ids=("18c2f0a1",), entity="DATE_OF_BIRTH"),
    RecordFilter(date_column="born", after=dt.date(2013, 11, 22), before=dt.date(2026, 11, 23),
                 entity="DATE_OF_BIRTH", follow_links=True),
])
def test_when_a_filter_is_written_as_json_and_read_back_then_it_is_the_same_filter(flt):
    spec = flt.to_spec()
    assert json.loads(json.dumps(spec)) == spec  # plain JSON: no dates, tuples or functions
    assert RecordFilter.from_spec(json.loads(json.dumps(spec))) == flt


def test_when_only_defaults_are_set_then_the_spec_is_empty_and_means_every_container():
    assert RecordFilter().to_spec() == {}
    assert RecordFilter.from_spec({}).containers == ("*",)


def test_when_a_child_text_clue_is_written_and_read_back_then_it_tests_text_the_same_way():
    flt = RecordFilter(text_clue={"threshold": 13, "min_score": 0.5})
    assert flt.entity == "CHILD_AGE" and flt.text_terms and flt.text_test is not None
    spec = flt.to_spec()
    assert spec == {"text_clue": {"threshold": 13, "min_score": 0.5}}  # the function is implied, not stored
    back = RecordFilter.from_spec(json.loads(json.dumps(spec)))
    for text in ("hi im 11 and i want to win", "I am 14 and I want to win", "Invoice 12 for room 12",
                 "My son (9) entered the competition"):
        assert back.text_ok(text) == flt.text_ok(text)
    assert back.text_ok("hi im 11 and i want to win") and not back.text_ok("I am 14 and I want to win")
    assert not RecordFilter.from_spec({"text_clue": {"threshold": 10}}).text_ok("hi im 11 and i want to win")


def test_when_a_filter_holds_a_bare_function_or_a_spec_an_unknown_key_then_it_is_refused():
    with pytest.raises(ValueError, match="cannot be serialised"):
        RecordFilter(text_test=lambda s: True).to_spec()
    with pytest.raises(ValueError, match="unknown record filter field.*skip_tabels"):
        RecordFilter.from_spec({"containers": ["*"], "skip_tabels": ["x"]})
    with pytest.raises(ValueError, match="date bound needs date_column"):
        RecordFilter.from_spec({"before": "2026-01-01"})
