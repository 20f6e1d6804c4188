"""SqlConnector.select on SQLite, PostgreSQL (non-public schema) and MariaDB: the semantics of
pii/core/selection.py. No test prints or logs a stored value."""
from __future__ import annotations

import datetime as dt
import re

import pytest
import sqlalchemy as sa

from connectors.base import DELETE, ExecAction
from connectors.sql import SqlConnector
from pii.core.config import StoreConfig
from pii.state.inventory import Inventory
from pii.core.selection import FILE_TIME, MESSAGE_DATE, RecordFilter
from pii.core.subject import Subject, SubjectMatcher

D, T = dt.date, dt.datetime

# id, import_batch, priority, received_on, received_text, created_at, notes
INTAKE = [
    (1, "B1", 7, D(2024, 1, 5), "2024-01-05", T(2024, 1, 5, 23, 59), "Child aged 9 mentioned"),
    (2, "B1", 70, D(2024, 3, 1), "05/01/2024", T(2024, 1, 6, 0, 0), "adult only"),
    (3, "B2", 7, D(2023, 12, 31), "", T(2024, 1, 4, 12, 0), None),
    (4, " B1 ", 8, None, "n/a", None, "MINOR case: age 12"),
    (5, "b1", 9, D(2024, 6, 1), None, T(2024, 6, 1), "ok"),
    (6, "B3", None, D(2024, 1, 4), "2024-01-04T10:00:00", T(2024, 1, 5, 0, 0), "Minor: \u00c9lodie age 7"),
]
COLS = ("id", "import_batch", "priority", "received_on", "received_text", "created_at", "notes")
VALUES = {"B1", "B2", "B3", "b1", "Child aged", "adult only", "MINOR case", "lodie", "05/01/2024", "n/a"}


def _schema(url):
    return "crm" if url.startswith("postgresql") else None


def _world(url):
    """intake (keyed), intake_log (no primary key), contacts (no date column)."""
    schema = _schema(url)
    engine = sa.create_engine(url)
    if schema:
        with engine.begin() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
    md = sa.MetaData(schema=schema)
    intake = sa.Table(
        "intake", md, sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("import_batch", sa.String(20)), sa.Column("priority", sa.Integer),
        sa.Column("received_on", sa.Date), sa.Column("received_text", sa.String(30)),
        sa.Column("created_at", sa.DateTime), sa.Column("notes", sa.Text))
    log = sa.Table("intake_log", md, sa.Column("import_batch", sa.String(20)), sa.Column("received_on", sa.Date),
                   sa.Column("line", sa.String(40)))
    contacts = sa.Table("contacts", md, sa.Column("contact_id", sa.Integer, primary_key=True),
                        sa.Column("import_batch", sa.String(20)), sa.Column("email", sa.String(80)))
    md.create_all(engine)
    with engine.begin() as conn:
        conn.execute(intake.insert(), [dict(zip(COLS, r)) for r in INTAKE])
        conn.execute(log.insert(), [dict(import_batch="B1", received_on=D(2024, 1, 2), line="first"),
                                    dict(import_batch="B2", received_on=D(2024, 1, 3), line="second")])
        conn.execute(contacts.insert(), [dict(contact_id=1, import_batch="B1", email="x@example.org")])
    engine.dispose()


@pytest.fixture
def world(any_sql_url, tmp_path):
    _world(any_sql_url)
    messages: list[str] = []
    store = StoreConfig(name="crm", kind="sql", options={"url": any_sql_url}, base_dir=tmp_path)
    conn = SqlConnector(store, progress=lambda _s, m: messages.append(m))
    yield conn, messages, _schema(any_sql_url)
    conn.close()


def _ids(findings, table="intake"):
    return sorted(f.location["key"]["id"] for f in findings if f.location["table"] == table)


def _no_values_in(messages):
    text = "\n".join(messages)
    return not any(v in text for v in VALUES)


# --------------------------------------------------------------------------- equals
def test_when_equals_names_an_import_batch_then_exactly_its_rows_are_selected_with_spaces_stripped(world):
    conn, messages, schema = world
    found = conn.select(RecordFilter(containers=("intake",), equals={"import_batch": ["B1"]}))
    assert _ids(found) == [1, 2, 4]  # " B1 " stripped; "b1" differs (case-sensitive, on MariaDB too)
    assert {f.match for f in found} == {"identifier"}
    assert _no_values_in(messages)


def test_when_equals_names_a_column_in_other_case_then_it_is_found(world):
    conn, _, _ = world
    assert _ids(conn.select(RecordFilter(containers=("intake",), equals={"IMPORT_BATCH": ["B2", "B3"]}))) == [3, 6]


def test_when_equals_is_on_an_integer_column_then_numbers_compare_by_their_text(world):
    conn, _, _ = world
    assert _ids(conn.select(RecordFilter(containers=("intake",), equals={"priority": ["7"]}))) == [1, 3]
    assert _ids(conn.select(RecordFilter(containers=("intake",), equals={"priority": ["07", "x"]}))) == []


def test_when_a_row_is_selected_then_location_record_and_container_are_as_locate_gives_them(world, tmp_path):
    conn, _, schema = world
    found = conn.select(RecordFilter(containers=("intake",), equals={"import_batch": ["B1"]}, entity="BATCH"))
    first = next(f for f in found if f.location["key"] == {"id": 1})
    expected_loc = {"table": "intake", "key": {"id": 1}}
    if schema:
        expected_loc = {"schema": schema, **expected_loc}
    assert first.location == expected_loc
    assert first.container == (f"{schema}.intake" if schema else "intake")
    assert first.entities == ["BATCH"]
    assert set(first.record) == set(COLS)
    assert first.record["id"] == 1 and first.record["received_on"] == "2024-01-05"
    assert first.record["import_batch"] == "B1"


def test_when_the_table_has_no_primary_key_then_rows_are_located_by_all_columns(world):
    conn, _, _ = world
    found = conn.select(RecordFilter(containers=("intake_log",), equals={"import_batch": ["B1"]}))
    assert len(found) == 1
    assert found[0].location["key"] == {"import_batch": "B1", "received_on": "2024-01-02", "line": "first"}
    assert found[0].note


# --------------------------------------------------------------------------- dates
def test_when_date_bounds_are_on_a_date_column_then_they_are_strict_and_null_dates_are_undated(world):
    conn, messages, _ = world
    flt = RecordFilter(containers=("intake",), date_column="received_on", before=D(2024, 3, 1), after=D(2023, 12, 31))
    assert _ids(conn.select(flt)) == [1, 6]
    assert conn.undated == 1  # row 4: no date
    assert _no_values_in(messages)


def test_when_date_and_equals_are_combined_then_undated_counts_only_rows_passing_the_rest(world):
    conn, _, _ = world
    flt = RecordFilter(containers=("intake",), equals={"import_batch": ["B2", "B3"]}, date_column="received_on",
                       before=D(2024, 1, 5))
    assert _ids(conn.select(flt)) == [3, 6]
    assert conn.undated == 0


def test_when_date_bounds_are_on_a_datetime_column_then_the_day_decides(world):
    conn, _, _ = world
    after = conn.select(RecordFilter(containers=("intake",), date_column="created_at", after=D(2024, 1, 5)))
    assert _ids(after) == [2, 5]  # 2024-01-05 23:59 is on the 5th, not after it
    before = conn.select(RecordFilter(containers=("intake",), date_column="created_at", before=D(2024, 1, 6)))
    assert _ids(before) == [1, 3, 6]
    assert conn.undated == 1


def test_when_the_date_column_is_text_with_mixed_formats_then_each_is_parsed_and_unreadable_are_undated(world):
    conn, messages, _ = world
    flt = RecordFilter(containers=("intake",), date_column="received_text", before=D(2024, 1, 6))
    assert _ids(conn.select(flt)) == [1, 2, 6]  # "05/01/2024" is 5 January
    assert conn.undated == 3  # "", "n/a", NULL
    flt = RecordFilter(containers=("intake",), date_column="received_text", after=D(2024, 1, 4))
    assert _ids(conn.select(flt)) == [1, 2]
    assert conn.undated == 3  # reset per call, not accumulated
    assert _no_values_in(messages)


# --------------------------------------------------------------------------- text
def _age_test(value: str) -> bool:
    return re.search(r"\bage \d+", value.lower()) is not None


@pytest.mark.parametrize("inventory", [False, True], ids=["no-inventory", "inventory"])
def test_when_a_text_test_with_terms_is_given_then_free_text_rows_passing_it_match_as_text(world, tmp_path,
                                                                                           inventory):
    conn, messages, _ = world
    if inventory:
        conn.inventory = Inventory(f"sqlite:///{tmp_path / 'state.db'}")
    flt = RecordFilter(containers=("intake*",), text_terms=("minor", "age"), text_test=_age_test)
    found = conn.select(flt)
    assert _ids(found) == [4, 6]  # "aged 9" holds the term but fails the test
    assert {f.match for f in found} == {"text"}
    assert set(next(iter(found)).record) == {"notes"}
    assert ("intake_log", "no free-text column") in [(c.split(".")[-1], r) for c, r in conn.skipped]
    assert _no_values_in(messages)


def test_when_a_text_term_has_accented_capitals_then_the_prefilter_still_lets_the_row_through(world):
    conn, _, _ = world
    found = conn.select(RecordFilter(containers=("intake",), text_terms=("\u00e9lodie",), text_test=lambda v: True))
    assert _ids(found) == [6]


def test_when_a_text_test_rejects_everything_then_nothing_is_selected(world):
    conn, _, _ = world
    assert conn.select(RecordFilter(containers=("intake",), text_test=lambda v: False)) == []


# --------------------------------------------------------------------------- containers
@pytest.mark.parametrize("patterns, expected", [
    (("intake",), {"intake"}),
    (("INTAKE*",), {"intake", "intake_log"}),
    (("*",), {"intake", "intake_log", "contacts"}),
    (("contacts", "intake_l?g"), {"intake_log", "contacts"}),
    (("nothing*",), set()),
])
def test_when_container_globs_are_given_then_only_matching_tables_are_searched(world, patterns, expected):
    conn, _, _ = world
    found = conn.select(RecordFilter(containers=patterns, equals={"import_batch": ["B1"]}))
    assert {f.location["table"] for f in found} == expected


def test_when_a_glob_names_schema_and_table_then_it_matches_the_qualified_name(world):
    conn, _, schema = world
    qualified = f"{schema}.intake" if schema else "intake"
    assert _ids(conn.select(RecordFilter(containers=(qualified,), equals={"import_batch": ["B2"]}))) == [3]


def test_when_a_table_lacks_the_date_column_then_it_is_skipped_with_the_reason(world):
    conn, messages, _ = world
    found = conn.select(RecordFilter(date_column="received_on", before=D(2030, 1, 1)))
    assert {f.location["table"] for f in found} == {"intake", "intake_log"}
    assert [(c.split(".")[-1], r) for c, r in conn.skipped] == [("contacts", "no column received_on")]
    assert _no_values_in(messages)


@pytest.mark.parametrize("special", [FILE_TIME, MESSAGE_DATE])
def test_when_the_date_is_a_file_or_message_time_then_every_table_is_skipped(world, special):
    conn, _, _ = world
    assert conn.select(RecordFilter(date_column=special, before=D(2030, 1, 1))) == []
    assert sorted(c.split(".")[-1] for c, _ in conn.skipped) == ["contacts", "intake", "intake_log"]
    assert all(r for _, r in conn.skipped)


# --------------------------------------------------------------------------- erasure of a selection
def test_when_selected_findings_are_deleted_then_exactly_those_rows_are_gone(world, any_sql_url):
    conn, _, schema = world
    found = conn.select(RecordFilter(containers=("intake", "intake_log"), equals={"import_batch": ["B1"]}))
    actions = [ExecAction(f"a{i}", f.container, f.location, DELETE, expected=f.record) for i, f in enumerate(found)]
    calls = []
    conn.apply(actions, lambda ids, rows, detail: calls.append((ids, rows, detail)),
               SubjectMatcher(Subject.build(emails=["nobody@example.org"])))
    assert sum(rows for _, rows, _ in calls) == 4
    assert sorted(aid for ids, _, _ in calls for aid in ids) == sorted(a.action_id for a in actions)
    engine = sa.create_engine(any_sql_url)
    md = sa.MetaData(schema=schema)
    with engine.connect() as db:
        intake = sa.Table("intake", md, autoload_with=db)
        log = sa.Table("intake_log", md, autoload_with=db)
        left = sorted(db.execute(sa.select(intake.c.id)).scalars())
        log_left = sorted(db.execute(sa.select(log.c.line)).scalars())
    engine.dispose()
    assert left == [3, 5, 6]
    assert log_left == ["second"]
    # a second run finds nothing left to select
    assert conn.select(RecordFilter(containers=("intake", "intake_log"), equals={"import_batch": ["B1"]})) == []


def test_when_follow_links_is_asked_then_rows_referencing_selected_rows_are_selected_as_linked(any_sql_url, tmp_path):
    schema = _schema(any_sql_url)
    engine = sa.create_engine(any_sql_url)
    if schema:
        with engine.begin() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
    md = sa.MetaData(schema=schema)
    kids = sa.Table("kids", md, sa.Column("kid_id", sa.Integer, primary_key=True, autoincrement=False),
                    sa.Column("dob", sa.Date))
    visits = sa.Table("visits", md, sa.Column("visit_id", sa.Integer, primary_key=True, autoincrement=False),
                      sa.Column("kid_id", sa.Integer, sa.ForeignKey(kids.c.kid_id)))
    notes = sa.Table("visit_notes", md, sa.Column("note_id", sa.Integer, primary_key=True, autoincrement=False),
                     sa.Column("visit_id", sa.Integer, sa.ForeignKey(visits.c.visit_id)))
    md.create_all(engine)
    with engine.begin() as conn:
        conn.execute(kids.insert(), [{"kid_id": 1, "dob": D(2018, 1, 1)}, {"kid_id": 2, "dob": D(1990, 1, 1)}])
        conn.execute(visits.insert(), [{"visit_id": 10, "kid_id": 1}, {"visit_id": 20, "kid_id": 2}])
        conn.execute(notes.insert(), [{"note_id": 100, "visit_id": 10}, {"note_id": 200, "visit_id": 20}])
    engine.dispose()
    store = StoreConfig(name="crm", kind="sql", options={"url": any_sql_url}, base_dir=tmp_path)
    flt = dict(containers=("kids",), date_column="dob", after=D(2013, 1, 1))
    with SqlConnector(store) as conn:
        plain = conn.select(RecordFilter(**flt))
        linked = conn.select(RecordFilter(**flt, follow_links=True))
    assert [(f.location["table"], f.match) for f in plain] == [("kids", "identifier")]
    got = sorted((f.location["table"], list(f.location["key"].values())[0], f.match) for f in linked)
    assert got == [("kids", 1, "identifier"), ("visit_notes", 100, "linked"), ("visits", 10, "linked")]
