"""CsvConnector.select and the drop action: the semantics of pii/core/selection.py on a folder of exports.
No test prints or logs a stored value."""
from __future__ import annotations

import datetime as dt
import os
import re
from pathlib import Path

import pytest

from connectors.base import DELETE, DROP, ExecAction
from connectors.csvfiles import CsvConnector
from connectors.fileformat import TMP_MARK
from pii.core.config import StoreConfig
from pii.core.errors import StoreError
from pii.state.inventory import Inventory
from pii.core.selection import FILE_TIME, MESSAGE_DATE, RecordFilter
from pii.core.subject import Subject, SubjectMatcher

D = dt.date
BATCH_A = ("id,import_batch,received,notes\r\n"
           "1,B1,2024-01-05,Child aged 9 mentioned\r\n"
           "2,B1,05/01/2024,adult only\r\n"
           "3,B2,,\r\n"
           "4, B1 ,n/a,MINOR case: age 12\r\n"
           "5,b1,2024-06-01,ok\r\n"
           '6,B3,2024-01-04T10:00:00,"Minor: \u00c9lodie age 7"\r\n').encode("utf-8")
BATCH_B = b"ID,Import_Batch,Received\n7,B2,2024-02-01\n"
OTHER = b"contact,email\nc1,x@example.org\n"
FILES = {"intake/batch_a.csv": BATCH_A, "intake/batch_b.csv": BATCH_B, "other.csv": OTHER}
VALUES = ("B1", "B2", "B3", "b1", "Child aged", "adult only", "MINOR case", "lodie", "05/01/2024", "n/a",
          "x@example.org")
MATCHER = SubjectMatcher(Subject.build(emails=["nobody@example.org"]))


def make_store(tmp_path: Path, files: dict[str, bytes] = FILES, **options):
    folder = tmp_path / "exports"
    folder.mkdir(exist_ok=True)
    for name, content in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    messages: list[str] = []
    inventory = options.pop("inventory", None)
    store = StoreConfig(name="exports", kind="csv", options={"path": str(folder), **options}, base_dir=tmp_path)
    conn = CsvConnector(store, progress=lambda _s, m: messages.append(m), inventory=inventory)
    return conn, folder, messages


def rows(findings, rel="intake/batch_a.csv"):
    return sorted(f.location["row"] for f in findings if f.location["file"] == rel)


def no_values_in(messages) -> bool:
    text = "\n".join(messages)
    return not any(v in text for v in VALUES)


def set_mtime(path: Path, when: dt.datetime) -> None:
    ts = when.replace(tzinfo=dt.timezone.utc).timestamp()
    os.utime(path, (ts, ts))


def run(conn, actions):
    calls = []
    conn.apply(actions, lambda ids, n, detail: calls.append((ids, n, detail)), MATCHER)
    return calls


def actions_for(findings, kind=DELETE):
    return [ExecAction(f"a{i}", f.container, f.location, kind, expected=f.record) for i, f in enumerate(findings)]


# --------------------------------------------------------------------------- equals
def test_when_equals_names_an_import_batch_then_exactly_its_records_are_selected(tmp_path):
    conn, _, messages = make_store(tmp_path)
    found = conn.select(RecordFilter(equals={"import_batch": ["B1"]}))
    assert rows(found) == [1, 2, 4]  # " B1 " stripped; "b1" differs
    assert rows(found, "intake/batch_b.csv") == []
    assert {f.match for f in found} == {"identifier"}
    assert conn.skipped == [("other.csv", "no column import_batch")]
    assert no_values_in(messages)


def test_when_a_record_is_selected_then_location_record_and_container_are_as_locate_gives_them(tmp_path):
    conn, _, _ = make_store(tmp_path)
    found = conn.select(RecordFilter(equals={"import_batch": ["B3"]}, entity="BATCH"))
    assert len(found) == 1
    f = found[0]
    assert f.location == {"file": "intake/batch_a.csv", "row": 6}
    assert f.container == "intake/batch_a.csv"
    assert f.entities == ["BATCH"]
    assert f.record == dict(conn.iter_records("intake/batch_a.csv"))[6]


def test_when_equals_names_a_column_in_other_case_then_each_files_header_is_matched(tmp_path):
    conn, _, _ = make_store(tmp_path)
    found = conn.select(RecordFilter(equals={"IMPORT_BATCH": ["B2"]}))
    assert rows(found) == [3]
    assert rows(found, "intake/batch_b.csv") == [1]


# --------------------------------------------------------------------------- dates in a column
def test_when_the_date_column_has_mixed_formats_then_each_is_parsed_and_unreadable_are_undated(tmp_path):
    conn, _, messages = make_store(tmp_path)
    found = conn.select(RecordFilter(date_column="received", before=D(2024, 1, 6)))
    assert rows(found) == [1, 2, 6]  # "05/01/2024" is 5 January
    assert rows(found, "intake/batch_b.csv") == []
    assert conn.undated == 2  # "" and "n/a"
    assert conn.skipped == [("other.csv", "no column received")]
    assert no_values_in(messages)


def test_when_an_after_bound_is_given_then_it_is_strict(tmp_path):
    conn, _, _ = make_store(tmp_path)
    found = conn.select(RecordFilter(date_column="received", after=D(2024, 1, 4)))
    assert rows(found) == [1, 2, 5]
    assert rows(found, "intake/batch_b.csv") == [1]
    assert conn.undated == 2


def test_when_date_and_equals_are_combined_then_undated_counts_only_records_passing_the_rest(tmp_path):
    conn, _, _ = make_store(tmp_path)
    found = conn.select(RecordFilter(equals={"import_batch": ["B2"]}, date_column="received", before=D(2025, 1, 1)))
    assert rows(found) == [] and rows(found, "intake/batch_b.csv") == [1]
    assert conn.undated == 1  # row 3 of batch_a: B2 without a date


# --------------------------------------------------------------------------- text
def _age_test(value: str) -> bool:
    return re.search(r"\bage \d+", value.lower()) is not None


@pytest.mark.parametrize("inventory", [False, True], ids=["no-inventory", "inventory"])
def test_when_a_text_test_with_terms_is_given_then_free_text_records_passing_it_match_as_text(tmp_path, inventory):
    options = {"inventory": Inventory(f"sqlite:///{tmp_path / 'state.db'}")} if inventory else {}
    conn, _, messages = make_store(tmp_path, **options)
    found = conn.select(RecordFilter(text_terms=("minor", "age"), text_test=_age_test))
    assert rows(found) == [4, 6]  # "aged 9" holds a term but fails the test
    assert {f.match for f in found} == {"text"}
    assert all(set(f.record) == {"notes"} for f in found)
    assert sorted(conn.skipped) == [("intake/batch_b.csv", "no free-text column"), ("other.csv", "no free-text column")]
    assert no_values_in(messages)


def test_when_a_text_term_is_found_only_in_lower_case_then_capitals_in_the_record_still_match(tmp_path):
    conn, _, _ = make_store(tmp_path)
    assert rows(conn.select(RecordFilter(text_terms=("\u00e9lodie",), text_test=lambda v: True))) == [6]


# --------------------------------------------------------------------------- containers
@pytest.mark.parametrize("patterns, expected", [
    (("batch_a.csv",), {"intake/batch_a.csv"}),
    (("intake/*",), {"intake/batch_a.csv", "intake/batch_b.csv"}),
    (("batch_*.csv",), {"intake/batch_a.csv", "intake/batch_b.csv"}),
    (("Batch_A.csv",), set()),  # file names match case-sensitively
    (("*.tsv",), set()),
])
def test_when_container_globs_are_given_then_only_matching_files_are_read(tmp_path, patterns, expected):
    conn, _, _ = make_store(tmp_path)
    found = conn.select(RecordFilter(containers=patterns, equals={"import_batch": ["B1", "B2"]}))
    assert {f.location["file"] for f in found} == expected
    assert conn.skipped == []  # other.csv is not considered at all


def test_when_the_date_is_a_message_date_then_every_file_is_skipped(tmp_path):
    conn, _, _ = make_store(tmp_path)
    assert conn.select(RecordFilter(date_column=MESSAGE_DATE, before=D(2030, 1, 1))) == []
    assert sorted(c for c, _ in conn.skipped) == sorted(FILES)


# --------------------------------------------------------------------------- file time
def test_when_the_date_is_the_file_time_then_every_record_of_an_old_file_is_selected(tmp_path):
    conn, folder, _ = make_store(tmp_path)
    set_mtime(folder / "intake/batch_a.csv", dt.datetime(2020, 6, 1, 12))
    set_mtime(folder / "intake/batch_b.csv", dt.datetime(2024, 6, 1, 12))
    set_mtime(folder / "other.csv", dt.datetime(2024, 6, 1, 12))
    found = conn.select(RecordFilter(date_column=FILE_TIME, before=D(2021, 1, 1)))
    assert rows(found) == [1, 2, 3, 4, 5, 6]
    assert {f.location["file"] for f in found} == {"intake/batch_a.csv"}
    assert conn.undated == 0 and conn.skipped == []


@pytest.mark.parametrize("bound, selected", [
    (dict(after=D(2024, 1, 5)), False), (dict(after=D(2024, 1, 4)), True),
    (dict(before=D(2024, 1, 6)), True), (dict(before=D(2024, 1, 5)), False),
])
def test_when_the_file_time_is_late_in_a_utc_day_then_that_utc_day_is_its_date(tmp_path, bound, selected):
    conn, folder, _ = make_store(tmp_path, {"a.csv": b"x,y\n1,2\n"})
    set_mtime(folder / "a.csv", dt.datetime(2024, 1, 5, 23, 30))
    found = conn.select(RecordFilter(date_column=FILE_TIME, whole_files=True, **bound))
    assert [f.location for f in found] == ([{"file": "a.csv"}] if selected else [])


def test_when_whole_files_with_only_the_file_time_then_even_a_header_only_file_is_selected(tmp_path):
    conn, folder, _ = make_store(tmp_path, {"old/empty.csv": b"a,b\n", "old/full.csv": b"a,b\n1,2\n",
                                            "new.csv": b"a,b\n1,2\n"})
    for name in ("old/empty.csv", "old/full.csv"):
        set_mtime(folder / name, dt.datetime(2019, 1, 1))
    found = conn.select(RecordFilter(date_column=FILE_TIME, before=D(2020, 1, 1), whole_files=True))
    assert sorted(f.location["file"] for f in found) == ["old/empty.csv", "old/full.csv"]
    assert all(f.record is None and "row" not in f.location and f.container == f.location["file"] for f in found)


# --------------------------------------------------------------------------- whole files and drop
def test_when_whole_files_then_one_finding_per_file_with_a_selected_record(tmp_path):
    conn, _, messages = make_store(tmp_path)
    found = conn.select(RecordFilter(equals={"import_batch": ["B1"]}, whole_files=True))
    assert [(f.location, f.record, f.container, f.match) for f in found] == [
        ({"file": "intake/batch_a.csv"}, None, "intake/batch_a.csv", "identifier")]
    assert no_values_in(messages)


def test_when_a_selected_file_is_dropped_then_it_is_gone_and_other_files_are_byte_identical(tmp_path):
    conn, folder, messages = make_store(tmp_path)
    found = conn.select(RecordFilter(containers=("intake/*",), equals={"import_batch": ["B1"]}, whole_files=True))
    calls = run(conn, actions_for(found, DROP))
    assert calls == [(["a0"], 6, None)]
    assert not (folder / "intake/batch_a.csv").exists()
    assert (folder / "intake/batch_b.csv").read_bytes() == BATCH_B
    assert (folder / "other.csv").read_bytes() == OTHER
    assert not [p for p in folder.rglob("*") if TMP_MARK in p.name]
    assert no_values_in(messages)


def test_when_a_dropped_file_is_already_gone_then_the_action_is_done_with_no_rows(tmp_path):
    conn, folder, _ = make_store(tmp_path)
    action = ExecAction("d1", "intake/batch_a.csv", {"file": "intake/batch_a.csv"}, DROP)
    assert run(conn, [action]) == [(["d1"], 6, None)]
    assert run(conn, [action]) == [(["d1"], 0, None)]
    assert (folder / "intake/batch_b.csv").read_bytes() == BATCH_B


def test_when_a_file_without_records_is_dropped_then_it_counts_as_one(tmp_path):
    conn, folder, _ = make_store(tmp_path, {"empty.csv": b"a,b\n"})
    assert run(conn, [ExecAction("d1", "empty.csv", {"file": "empty.csv"}, DROP)]) == [(["d1"], 1, None)]
    assert not (folder / "empty.csv").exists()


def test_when_a_drop_and_row_actions_name_one_file_then_the_file_is_dropped_once_for_all(tmp_path):
    conn, folder, _ = make_store(tmp_path)
    rel = "intake/batch_a.csv"
    actions = [ExecAction("r2", rel, {"file": rel, "row": 2}, DELETE),
               ExecAction("d1", rel, {"file": rel}, DROP)]
    assert run(conn, actions) == [(["r2", "d1"], 6, None)]
    assert not (folder / rel).exists()


def test_when_another_run_is_rewriting_the_file_then_the_drop_is_refused_and_the_file_stays(tmp_path):
    conn, folder, _ = make_store(tmp_path)
    live = folder / "intake" / f".batch_a.csv{TMP_MARK}{os.getppid()}-abc123"  # a live process's fresh temp
    live.write_bytes(b"partial")
    with pytest.raises(StoreError, match="another run"):
        run(conn, [ExecAction("d1", "intake/batch_a.csv", {"file": "intake/batch_a.csv"}, DROP)])
    assert (folder / "intake/batch_a.csv").read_bytes() == BATCH_A


def test_when_a_drop_names_a_row_then_it_is_refused(tmp_path):
    conn, folder, _ = make_store(tmp_path)
    with pytest.raises(StoreError, match="whole file"):
        run(conn, [ExecAction("d1", "other.csv", {"file": "other.csv", "row": 1}, DROP)])
    assert (folder / "other.csv").read_bytes() == OTHER


# --------------------------------------------------------------------------- erasure of selected records
def test_when_selected_records_are_deleted_then_exactly_those_lines_are_gone(tmp_path):
    conn, folder, _ = make_store(tmp_path)
    found = conn.select(RecordFilter(equals={"import_batch": ["B1"]}))
    calls = run(conn, actions_for(found))
    assert calls == [(["a0", "a1", "a2"], 3, None)]
    lines = BATCH_A.decode("utf-8").splitlines(keepends=True)
    expected = "".join(line for i, line in enumerate(lines) if i not in (1, 2, 4)).encode("utf-8")
    assert (folder / "intake/batch_a.csv").read_bytes() == expected
    assert (folder / "intake/batch_b.csv").read_bytes() == BATCH_B
    assert conn.select(RecordFilter(equals={"import_batch": ["B1"]})) == []
