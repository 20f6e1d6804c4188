"""The SQL connector on SQLite, PostgreSQL (non-public schema) and MariaDB."""
from __future__ import annotations

import pytest

from connectors.sql import SqlConnector
from pii.core.config import StoreConfig
from pii.core.errors import StoreUnreachable
from pii.state.inventory import Inventory
from pii.core.subject import Subject, SubjectMatcher
from tests import sql_world


def _store(url, tmp_path, **extra):
    return StoreConfig(name="crm", kind="sql", options={"url": url, **extra}, base_dir=tmp_path)


def _locate(url, tmp_path, subject_kwargs, inventory=None, **extra):
    with SqlConnector(_store(url, tmp_path, **extra), inventory=inventory) as conn:
        return conn.locate(SubjectMatcher(Subject.build(**subject_kwargs)))


def _by_location(findings):
    return {(f.location["table"], tuple(sorted(f.location["key"].items()))): (f.match, f.strength)
            for f in findings}


def _world(url):
    schema = "crm" if url.startswith("postgresql") else None
    sql_world.build(url, schema=schema).dispose()
    return schema


def test_when_subject_has_email_phone_and_name_then_direct_linked_and_text_rows_are_found(any_sql_url, tmp_path):
    schema = _world(any_sql_url)
    findings = _locate(any_sql_url, tmp_path, sql_world.ALICE)
    assert _by_location(findings) == sql_world.EXPECTED_FULL
    for f in findings:
        assert f.location.get("schema") == schema


def test_when_row_points_to_company_then_company_is_not_reported(any_sql_url, tmp_path):
    _world(any_sql_url)
    tables = {f.location["table"] for f in _locate(any_sql_url, tmp_path, sql_world.ALICE)}
    assert "companies" not in tables


def test_when_companies_marked_personal_then_the_pointed_row_is_linked(sqlite_url, tmp_path):
    _world(sqlite_url)
    found = _by_location(_locate(sqlite_url, tmp_path, sql_world.ALICE, personal_tables=["companies"]))
    assert found[("companies", (("company_id", 1),))] == ("linked", "strong")
    assert ("companies", (("company_id", 2),)) not in found


@pytest.mark.parametrize("subject, expected_tables", [
    (dict(emails=["ALICE.SMITH@example.org"]), {"members", "newsletter", "notes", "orders", "order_items"}),
    (dict(phones=["+442079460123"]), {"members", "notes", "orders", "order_items"}),
    (dict(ids=["customer_no=c-10042"]), {"members", "orders", "order_items"}),
])
def test_when_one_identifier_given_then_rows_holding_it_and_their_links_are_found(
        sqlite_url, tmp_path, subject, expected_tables):
    _world(sqlite_url)
    findings = _locate(sqlite_url, tmp_path, subject)
    assert {f.location["table"] for f in findings} == expected_tables
    assert all(f.strength == "strong" for f in findings)


def test_when_only_a_name_is_given_then_name_matches_are_weak(any_sql_url, tmp_path):
    _world(any_sql_url)
    found = _by_location(_locate(any_sql_url, tmp_path, dict(names=["alice smith"])))
    assert found[("members", (("member_id", 1),))] == ("identifier", "weak")
    assert found[("badges", (("badge_id", 7),))] == ("identifier", "weak")
    assert found[("orders", (("order_id", 10),))] == ("linked", "weak")
    assert ("badges", (("badge_id", 8),)) not in found  # Alicia


@pytest.mark.parametrize("subject", [
    dict(emails=["malice.smith@example.org"]),
    dict(phones=["020 7946 0124"]),
    dict(names=["Alicia Smith"]),
])
def test_when_decoy_identifier_given_then_alice_rows_are_not_found(any_sql_url, tmp_path, subject):
    _world(any_sql_url)
    found = _by_location(_locate(any_sql_url, tmp_path, subject))
    assert ("members", (("member_id", 1),)) not in found
    assert found, "the decoy itself exists and must be found"


def test_when_name_has_accents_then_folded_name_matches(any_sql_url, tmp_path):
    _world(any_sql_url)
    found = _by_location(_locate(any_sql_url, tmp_path, dict(names=["Zoe Muller"])))
    assert found.get(("members", (("member_id", 4),))) == ("identifier", "weak")


@pytest.mark.parametrize("subject, expected", [
    (dict(names=["siobhan o'brien"]), {("members", (("member_id", 6),)): ("identifier", "weak")}),
    (dict(ids=["customer_no=ÉIRE-77"]), {("members", (("member_id", 6),)): ("identifier", "strong"),
                                         ("notes", (("note_id", 104),)): ("text", "strong")}),
])
def test_when_name_has_apostrophe_or_id_has_accents_then_they_match(any_sql_url, tmp_path, subject, expected):
    _world(any_sql_url)
    assert _by_location(_locate(any_sql_url, tmp_path, subject)) == expected


def test_when_text_match_then_record_holds_only_the_mentioning_column(sqlite_url, tmp_path):
    _world(sqlite_url)
    findings = _locate(sqlite_url, tmp_path, sql_world.ALICE)
    text = [f for f in findings if f.match == "text"]
    assert text and all(set(f.record) == {"note"} for f in text)
    member = next(f for f in findings if f.location["table"] == "members")
    assert member.record["customer_no"] == "C-10042"


def test_when_table_has_no_primary_key_then_located_by_all_columns_with_a_note(sqlite_url, tmp_path):
    _world(sqlite_url)
    f = next(f for f in _locate(sqlite_url, tmp_path, sql_world.ALICE) if f.location["table"] == "newsletter")
    assert set(f.location["key"]) == {"email", "source"}
    assert "no primary key" in f.note


def test_when_bob_was_referred_by_alice_then_bob_is_not_linked(sqlite_url, tmp_path):
    _world(sqlite_url)
    found = _by_location(_locate(sqlite_url, tmp_path, sql_world.ALICE))
    assert ("members", (("member_id", 2),)) not in found


def test_when_link_excluded_then_orders_are_not_followed(sqlite_url, tmp_path):
    _world(sqlite_url)
    found = _by_location(_locate(sqlite_url, tmp_path, sql_world.ALICE, link_exclude=["orders.member_id"]))
    assert not any(t in ("orders", "order_items") for t, _ in found)


def test_when_table_skipped_then_it_is_not_searched(sqlite_url, tmp_path):
    _world(sqlite_url)
    found = _by_location(_locate(sqlite_url, tmp_path, sql_world.ALICE, skip_tables=["notes"]))
    assert not any(t == "notes" for t, _ in found)
    assert ("members", (("member_id", 1),)) in found


def test_when_located_twice_then_second_run_uses_the_inventory(sqlite_url, tmp_path):
    _world(sqlite_url)
    inv = Inventory(f"sqlite:///{tmp_path / 'state.db'}")
    first = _locate(sqlite_url, tmp_path, sql_world.ALICE, inventory=inv)
    assert inv.hits == 0 and inv.misses > 0
    second = _locate(sqlite_url, tmp_path, sql_world.ALICE, inventory=inv)
    assert inv.hits == inv.misses
    assert _by_location(first) == _by_location(second)
    kinds = {(r["container"], r["column_name"]): r["kind"] for r in inv.rows("crm")}
    assert kinds[("members", "email")] == "email" and kinds[("notes", "note")] == "free_text"


@pytest.mark.parametrize("url, reason", [
    ("sqlite:///does/not/exist.db", "does not exist"),
    ("postgresql+psycopg://nobody@127.0.0.1:1/nothing", "cannot connect"),
])
def test_when_store_is_unreachable_then_error_names_the_store(tmp_path, url, reason):
    with pytest.raises(StoreUnreachable) as err:
        _locate(url, tmp_path, sql_world.ALICE)
    assert "'crm'" in str(err.value) and reason in str(err.value)


def test_when_table_name_is_hostile_then_it_is_quoted(sqlite_url, tmp_path):
    import sqlalchemy as sa
    engine = sa.create_engine(sqlite_url)
    md = sa.MetaData()
    t = sa.Table('we"ird; DROP TABLE x', md, sa.Column("id", sa.Integer, primary_key=True),
                 sa.Column("email", sa.String(80)))
    md.create_all(engine)
    with engine.begin() as conn:
        conn.execute(t.insert(), [{"id": 1, "email": "alice.smith@example.org"}])
    found = _locate(sqlite_url, tmp_path, dict(emails=["alice.smith@example.org"]))
    assert [f.location for f in found] == [{"table": 'we"ird; DROP TABLE x', "key": {"id": 1}}]


@pytest.mark.parametrize("url, expected", [
    ("postgresql://u@h/db", "postgresql+psycopg://u@h/db"),
    ("postgres://u@h/db", "postgresql+psycopg://u@h/db"),
    ("mysql://root@h/db", "mysql+pymysql://root@h/db"),
    ("mariadb://root@h/db", "mariadb+pymysql://root@h/db"),
    ("postgresql+psycopg2://u@h/db", "postgresql+psycopg2://u@h/db"),
    ("sqlite:///x.db", "sqlite:///x.db"),
])
def test_when_url_names_no_driver_then_the_installed_driver_is_used(url, expected):
    from connectors.sql import with_default_driver
    assert with_default_driver(url) == expected


def test_when_mariadb_url_has_no_driver_then_it_still_connects(mariadb_url, tmp_path):
    _world(mariadb_url)
    plain = mariadb_url.replace("mysql+pymysql://", "mariadb://")
    assert _by_location(_locate(plain, tmp_path, dict(emails=["alice.smith@example.org"])))
