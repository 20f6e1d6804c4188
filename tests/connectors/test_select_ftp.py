"""FtpConnector.select and the drop action against a real pyftpdlib server (connectors/fakes/ftp_server.py):
equals on CSV columns, FILE_TIME from MLSD/MDTM, whole files dropped, JSON-line dates, TXT text tests,
skipped files, and txt/jsonl rewrites that check the record they were planned on."""
from __future__ import annotations

import calendar
import datetime as dt
import json
import os
from pathlib import Path

import pytest

from connectors import open_connector
from connectors.base import DELETE, DROP, UPDATE, ExecAction
from connectors.ftp import FtpConnector
from pii.core.config import StoreConfig
from pii.core.errors import StoreError
from pii.core.selection import FILE_TIME, RecordFilter
from pii.core.subject import Subject, SubjectMatcher
from connectors.fakes.ftp_server import PASSWORD, PASSWORD_ENV, FtpServer

MATCHER = SubjectMatcher(Subject.build(emails=["nobody@x.org"]))

ORDERS = ("order_no,email,batch,signed_up,notes\r\n"
          "1,ann@x.org,B-7,2024-01-03,first order\r\n"
          "2,ben@x.org, B-8 ,2024-02-10,asked for a refund\r\n"
          "3,cat@x.org,B-8,2024-03-15,\r\n"
          "4,dot@x.org,b-8,not a date,wrong case\r\n").encode()
RETURNS = b"order_no\temail\tbatch\n9\teve@x.org\tB-8\n"
NO_BATCH = b"order_no,email\n5,fay@x.org\n"
EVENTS = (b'{"email": "ann@x.org", "at": "2023-12-30T10:00:00Z", "n": 1}\n'
          b'{"email": "ben@x.org", "at": "2024-02-01", "n": 2}\n'
          b"\n"
          b'{"email": "cat@x.org", "n": 3}\n'
          b'["not", "an", "object"]\n'
          b'{"email": "dot@x.org", "at": "05/06/2024", "n": 4}\n')
NOTES = (b"call log\n"
         b"customer is a minor, parent called\n"
         b"\n"
         b"nothing to see here\r\n"
         b"MINOR complaint about delivery")


@pytest.fixture
def server(tmp_path, monkeypatch):
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    with FtpServer(tmp_path / "home") as srv:
        yield srv


def connect(server: FtpServer, tmp_path: Path, messages: list | None = None, **options) -> FtpConnector:
    opts = {**server.store_options(path="/incoming"), **options}
    store = StoreConfig(name="partner_drop", kind="ftp", options=opts, base_dir=tmp_path)
    progress = (lambda _s, m: messages.append(m)) if messages is not None else (lambda _s, _m: None)
    return open_connector(store, progress=progress)


def put(server: FtpServer, remote: str, content: bytes, mtime: dt.datetime | None = None) -> None:
    path = server.put(remote, content)
    if mtime is not None:
        stamp = calendar.timegm(mtime.utctimetuple())
        os.utime(path, (stamp, stamp))


def apply(conn: FtpConnector, actions: list[ExecAction]) -> list[tuple]:
    calls: list[tuple] = []
    conn.apply(actions, lambda ids, rows, detail: calls.append((sorted(ids), rows, detail)), MATCHER)
    return calls


def rows(findings) -> list[tuple[str, int | None]]:
    return sorted((f.location["path"], f.location.get("row")) for f in findings)


def minor(text: str) -> bool:
    return "minor" in text.lower()


# --------------------------------------------------------------------------- equals on CSV columns
def test_when_equals_names_a_csv_column_then_exactly_the_rows_with_that_value_are_selected_with_their_records(
        server, tmp_path):
    put(server, "/incoming/orders.csv", ORDERS)
    put(server, "/incoming/2024/returns.tsv", RETURNS)
    put(server, "/incoming/no_batch.csv", NO_BATCH)
    put(server, "/outside.csv", ORDERS)  # not in the store's folder
    said: list[str] = []
    with connect(server, tmp_path, said) as conn:
        found = conn.select(RecordFilter(equals={"batch": ["B-8"]}, entity="EMAIL_ADDRESS"))
        skipped = list(conn.skipped)
    assert rows(found) == [("/incoming/2024/returns.tsv", 1), ("/incoming/orders.csv", 2),
                           ("/incoming/orders.csv", 3)]  # " B-8 " strips; "b-8" is another value
    by_row = {(f.location["path"], f.location["row"]): f for f in found}
    assert by_row[("/incoming/orders.csv", 2)].record == {
        "order_no": "2", "email": "ben@x.org", "batch": " B-8 ", "signed_up": "2024-02-10",
        "notes": "asked for a refund"}
    assert all(f.match == "identifier" and f.entities == ["EMAIL_ADDRESS"] and f.container == f.location["path"]
               for f in found)
    assert skipped == [("/incoming/no_batch.csv", "no column batch")]
    assert not any("ben@x.org" in m or "B-8" in m for m in said)  # counts, never values


def test_when_containers_name_one_file_then_other_files_are_not_read(server, tmp_path):
    put(server, "/incoming/orders.csv", ORDERS)
    put(server, "/incoming/2024/returns.tsv", RETURNS)
    with connect(server, tmp_path) as conn:
        by_name = conn.select(RecordFilter(containers=("returns.tsv",), equals={"batch": "B-8"}))
        by_rel = conn.select(RecordFilter(containers=("2024/*.tsv",), equals={"batch": "B-8"}))
        by_remote = conn.select(RecordFilter(containers=("/incoming/orders.csv",), equals={"batch": "B-8"}))
        none = conn.select(RecordFilter(containers=("Orders.csv",), equals={"batch": "B-8"}))
    assert rows(by_name) == rows(by_rel) == [("/incoming/2024/returns.tsv", 1)]
    assert rows(by_remote) == [("/incoming/orders.csv", 2), ("/incoming/orders.csv", 3)]
    assert none == []  # file globs are case-sensitive, as pii.core.policy.container_matches says


def test_when_a_date_column_holds_unreadable_dates_then_they_are_not_selected_and_counted_undated(server, tmp_path):
    put(server, "/incoming/orders.csv", ORDERS)
    with connect(server, tmp_path) as conn:
        found = conn.select(RecordFilter(date_column="signed_up", before=dt.date(2024, 3, 15)))
        undated = conn.undated
        batch = conn.select(RecordFilter(equals={"batch": "B-8"}, date_column="signed_up",
                                         before=dt.date(2024, 3, 15)))
        undated_in_batch = conn.undated
    assert rows(found) == [("/incoming/orders.csv", 1), ("/incoming/orders.csv", 2)]  # 15 March: not before
    assert undated == 1
    assert rows(batch) == [("/incoming/orders.csv", 2)]
    assert undated_in_batch == 0  # the undated row is not in batch B-8: not counted


# --------------------------------------------------------------------------- FILE_TIME
def test_when_file_time_bounds_are_given_then_files_modified_strictly_inside_are_selected_record_by_record(
        server, tmp_path):
    put(server, "/incoming/old.csv", ORDERS, dt.datetime(2023, 6, 1, 23, 30))
    put(server, "/incoming/edge.csv", ORDERS, dt.datetime(2023, 12, 31, 12, 0))  # on the bound: not before it
    put(server, "/incoming/new.csv", ORDERS, dt.datetime(2024, 6, 1, 8, 0))
    put(server, "/incoming/notes.txt", NOTES, dt.datetime(2020, 1, 1, 0, 0, 30))
    with connect(server, tmp_path) as conn:
        found = conn.select(RecordFilter(date_column=FILE_TIME, before=dt.date(2023, 12, 31)))
        later = conn.select(RecordFilter(date_column=FILE_TIME, after=dt.date(2023, 12, 30)))
    assert rows(found) == [("/incoming/notes.txt", n) for n in (1, 2, 4, 5)] + [
        ("/incoming/old.csv", n) for n in (1, 2, 3, 4)]  # blank lines hold no record
    assert rows(later) == [("/incoming/edge.csv", n) for n in (1, 2, 3, 4)] + [
        ("/incoming/new.csv", n) for n in (1, 2, 3, 4)]
    assert found[-1].record["order_no"] == "4"


def test_when_the_server_has_no_mlsd_then_file_time_comes_from_mdtm(server, tmp_path):
    put(server, "/incoming/old.csv", ORDERS, dt.datetime(2023, 6, 1, 23, 30))
    put(server, "/incoming/new.csv", ORDERS, dt.datetime(2024, 6, 1, 8, 0))
    server.faults.no_mlsd = True
    with connect(server, tmp_path) as conn:
        found = conn.select(RecordFilter(date_column=FILE_TIME, before=dt.date(2024, 1, 1), whole_files=True))
    assert rows(found) == [("/incoming/old.csv", None)]
    assert "MDTM" in server.faults.commands


# --------------------------------------------------------------------------- whole files and drop
def test_when_whole_files_are_selected_by_file_time_and_dropped_then_they_are_gone_and_others_byte_identical(
        server, tmp_path):
    put(server, "/incoming/2022/old.csv", ORDERS, dt.datetime(2022, 5, 1))
    put(server, "/incoming/old_notes.txt", NOTES, dt.datetime(2022, 7, 1))
    put(server, "/incoming/orders.csv", ORDERS, dt.datetime(2024, 5, 1))
    put(server, "/incoming/events.jsonl", EVENTS, dt.datetime(2024, 5, 2))
    put(server, "/incoming/old.pdf", b"%PDF-1.4", dt.datetime(2022, 5, 1))
    before = {p: server.read(p) for p in server.files()}
    with connect(server, tmp_path) as conn:
        found = conn.select(RecordFilter(date_column=FILE_TIME, before=dt.date(2023, 1, 1), whole_files=True))
        skipped = list(conn.skipped)
        # by its time alone a file is selected unread, whatever its type (an old recording, a PDF)
        assert [(f.location, f.record) for f in found] == [({"path": "/incoming/2022/old.csv"}, None),
                                                           ({"path": "/incoming/old.pdf"}, None),
                                                           ({"path": "/incoming/old_notes.txt"}, None)]
        actions = [ExecAction(f"d{i}", f.container, f.location, DROP) for i, f in enumerate(found)]
        first = apply(conn, actions)
        again = apply(conn, actions)  # idempotent: gone is done
    assert first == [(["d0"], 1, None), (["d1"], 1, None), (["d2"], 1, None)]
    assert again == [(["d0"], 0, None), (["d1"], 0, None), (["d2"], 0, None)]
    assert server.files() == ["/incoming/events.jsonl", "/incoming/orders.csv"]
    assert all(server.read(p) == before[p] for p in server.files())
    assert not skipped
    assert not [p for p in server.files() if ".lethe-" in p]


def test_when_whole_files_are_selected_by_a_record_condition_then_one_finding_per_file(server, tmp_path):
    put(server, "/incoming/orders.csv", ORDERS)
    put(server, "/incoming/other.csv", ORDERS.replace(b"B-8", b"B-9"))
    with connect(server, tmp_path) as conn:
        found = conn.select(RecordFilter(equals={"batch": "B-8"}, whole_files=True))
    assert [(f.location, f.record, f.match) for f in found] == [({"path": "/incoming/orders.csv"}, None,
                                                                 "identifier")]


def test_when_a_drop_names_a_path_outside_the_store_folder_or_a_row_then_nothing_is_removed(server, tmp_path):
    put(server, "/incoming/orders.csv", ORDERS)
    put(server, "/outside.csv", ORDERS)
    with connect(server, tmp_path) as conn:
        with pytest.raises(StoreError, match="outside the store's folder"):
            apply(conn, [ExecAction("d1", "/outside.csv", {"path": "/outside.csv"}, DROP)])
        with pytest.raises(StoreError, match="not a plain absolute remote path"):
            apply(conn, [ExecAction("d2", "/incoming/../outside.csv", {"path": "/incoming/../outside.csv"}, DROP)])
        with pytest.raises(StoreError, match="names no row"):
            apply(conn, [ExecAction("d3", "/incoming/orders.csv", {"path": "/incoming/orders.csv", "row": 1}, DROP)])
    assert server.files() == ["/incoming/orders.csv", "/outside.csv"]


# --------------------------------------------------------------------------- JSON lines and text lines
def test_when_a_jsonl_date_field_is_bounded_then_objects_inside_are_selected_and_others_counted(server, tmp_path):
    put(server, "/incoming/events.jsonl", EVENTS)
    put(server, "/incoming/other.jsonl", b'{"email": "x@x.org"}\n')
    with connect(server, tmp_path) as conn:
        found = conn.select(RecordFilter(date_column="at", after=dt.date(2023, 12, 31), before=dt.date(2024, 12, 31)))
        undated, skipped = conn.undated, list(conn.skipped)
    assert rows(found) == [("/incoming/events.jsonl", 2), ("/incoming/events.jsonl", 6)]  # 05/06/2024 day first
    assert found[0].record == {"email": "ben@x.org", "at": "2024-02-01", "n": 2}  # the parsed object
    assert undated == 2  # line 4 has no "at", line 5 is no object
    assert skipped == [("/incoming/other.jsonl", "no column at")]


def test_when_a_txt_file_gets_a_text_test_then_matching_lines_are_text_findings_and_columns_skip_it(
        server, tmp_path):
    put(server, "/incoming/notes.txt", NOTES)
    with connect(server, tmp_path) as conn:
        found = conn.select(RecordFilter(text_test=minor, text_terms=("minor",)))
        skipped_none = list(conn.skipped)
        by_column = conn.select(RecordFilter(equals={"batch": "B-8"}))
        skipped = list(conn.skipped)
    assert [(f.location, f.record, f.match) for f in found] == [
        ({"path": "/incoming/notes.txt", "row": 2}, {"line": "customer is a minor, parent called"}, "text"),
        ({"path": "/incoming/notes.txt", "row": 5}, {"line": "MINOR complaint about delivery"}, "text")]
    assert skipped_none == []
    assert by_column == [] and skipped == [("/incoming/notes.txt", "no column batch (a text file's records are lines)")]


def test_when_a_csv_gets_a_text_test_then_only_free_text_columns_are_tested(server, tmp_path):
    content = ("id,email,comment\n"
               + "".join(f"{i},p{i}@x.org,an ordinary remark about order {i} and its delivery\n" for i in range(1, 8))
               + "8,minor@x.org,all fine here\n"
               + "9,q@x.org,the account holder is a minor\n").encode()
    put(server, "/incoming/support.csv", content)
    with connect(server, tmp_path) as conn:
        found = conn.select(RecordFilter(text_test=minor))
    assert rows(found) == [("/incoming/support.csv", 9)]  # the address column is not free text
    assert found[0].match == "text"
    assert found[0].record == {"comment": "the account holder is a minor"}  # the free text that passed


def test_when_the_filter_names_mail_senders_or_ids_then_every_file_is_skipped(server, tmp_path):
    put(server, "/incoming/orders.csv", ORDERS)
    put(server, "/incoming/notes.txt", NOTES)
    with connect(server, tmp_path) as conn:
        found = conn.select(RecordFilter(mail_from=("ann@x.org",)))
        skipped = list(conn.skipped)
    reason = "the filter names mail senders or message ids, and a file holds no mail"
    assert found == [] and skipped == [("/incoming/notes.txt", reason), ("/incoming/orders.csv", reason)]


# --------------------------------------------------------------------------- expected records on line rewrites
def test_when_a_txt_or_jsonl_line_changed_since_it_was_selected_then_the_rewrite_leaves_it_alone(server, tmp_path):
    put(server, "/incoming/notes.txt", NOTES)
    put(server, "/incoming/events.jsonl", EVENTS)
    with connect(server, tmp_path) as conn:
        notes = conn.select(RecordFilter(containers=("notes.txt",), text_test=minor))
        events = conn.select(RecordFilter(containers=("*.jsonl",), date_column="at", before=dt.date(2024, 3, 1)))
        assert rows(events) == [("/incoming/events.jsonl", 1), ("/incoming/events.jsonl", 2)]
        # meanwhile someone inserts a line at the top of each file: every row number now points one line up
        put(server, "/incoming/notes.txt", b"new first line, a minor too\n" + NOTES)
        put(server, "/incoming/events.jsonl", b'{"email": "new@x.org", "at": "2024-01-01", "n": 0}\n' + EVENTS)
        changed = {p: server.read(p) for p in server.files()}
        stale = ([ExecAction(f"n{i}", f.container, f.location, DELETE, expected=f.record) for i, f in enumerate(notes)]
                 + [ExecAction(f"e{i}", f.container, f.location, UPDATE, {"email": "[redacted]"}, expected=f.record)
                    for i, f in enumerate(events)])
        calls = apply(conn, stale)
        assert calls == [(["e0", "e1"], 0, None), (["n0", "n1"], 0, None)]
        assert {p: server.read(p) for p in server.files()} == changed  # nothing touched
        # the records as they are now are carried out: the check passes for the located line
        fresh = conn.select(RecordFilter(containers=("*.jsonl",), date_column="at", before=dt.date(2024, 3, 1)))
        calls = apply(conn, [ExecAction(f"f{i}", f.container, f.location, UPDATE, {"email": "[redacted]"},
                                        expected=f.record) for i, f in enumerate(fresh)])
    assert calls == [(["f0", "f1", "f2"], 3, None)]
    lines = server.read("/incoming/events.jsonl").decode().splitlines()
    assert [json.loads(line).get("email") for line in lines[:3]] == ["[redacted]"] * 3
    assert lines[3:] == EVENTS.decode().splitlines()[2:]


def test_when_a_located_jsonl_record_is_flat_then_the_expected_check_reads_nested_fields(server, tmp_path):
    events = (b'{"contact": {"email": "ann@x.org"}, "n": 1}\n'
              b'{"contact": {"email": "ben@x.org"}, "n": 2}\n')
    put(server, "/incoming/events.jsonl", events)
    with connect(server, tmp_path) as conn:
        wrong = ExecAction("a1", "/incoming/events.jsonl", {"path": "/incoming/events.jsonl", "row": 1}, DELETE,
                           expected={"contact.email": "ben@x.org", "n": 2})
        right = ExecAction("a2", "/incoming/events.jsonl", {"path": "/incoming/events.jsonl", "row": 2}, DELETE,
                           expected={"contact.email": "ben@x.org", "n": 2})
        assert apply(conn, [wrong]) == [(["a1"], 0, None)]
        assert apply(conn, [right]) == [(["a2"], 1, None)]
    assert server.read("/incoming/events.jsonl") == events.splitlines(keepends=True)[0]
