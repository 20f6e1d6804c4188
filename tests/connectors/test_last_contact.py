"""Retention by last contact in the SQL connector (issue 15.1): a person's clock is their latest contact
date over their own columns and the rows that reference them (one grouped query per linked table; text
dates read in Python), on SQLite, PostgreSQL and MariaDB."""
from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from connectors.sql import SqlConnector
from pii.core.config import StoreConfig
from pii.core.selection import RecordFilter

T = dt.datetime
CUTOFF = dt.date(2021, 12, 3)  # run 2026-12-03, kept 5y after the last contact
DATES = ("last_login", "orders.ordered_at", "tickets.opened_at")


def _build(url: str) -> None:
    engine = sa.create_engine(url)
    md = sa.MetaData()
    customers = sa.Table("customers", md, sa.Column("id", sa.Integer, primary_key=True),
                         sa.Column("email", sa.String(120)), sa.Column("phone", sa.String(40)),
                         sa.Column("segment", sa.String(20)), sa.Column("last_login", sa.DateTime))
    orders = sa.Table("orders", md, sa.Column("id", sa.Integer, primary_key=True),
                      sa.Column("customer_id", sa.Integer, sa.ForeignKey(customers.c.id), index=True),
                      sa.Column("ordered_at", sa.DateTime))
    tickets = sa.Table("tickets", md, sa.Column("id", sa.Integer, primary_key=True),
                       sa.Column("customer_id", sa.Integer, sa.ForeignKey(customers.c.id)),
                       sa.Column("opened_at", sa.String(40)))  # dates as text, in more than one form
    sa.Table("loose", md, sa.Column("id", sa.Integer, primary_key=True), sa.Column("seen_at", sa.DateTime))
    md.create_all(engine)
    people = [  # id, email, phone, segment, last_login
        (1, "old.order@example.test", None, "retail", T(2019, 1, 1)),    # order 2020: expired
        (2, "recent.order@example.test", None, "retail", T(2019, 1, 1)),  # order 2024: kept
        (3, "ticket.only@example.test", None, "retail", None),            # ticket 2023 (text): kept
        (4, "never@example.test", None, "retail", None),                  # no contact at all: undated
        (5, "elsewhere@example.test", "020 7946 0555", "retail", T(2018, 1, 1)),  # contact in another store
        (6, "ancient@example.test", None, "retail", T(2015, 1, 1)),       # ticket 2016, order 2014: expired
        (7, "edge.kept@example.test", None, "retail", T(2021, 12, 3)),    # the cutoff day itself: kept
        (8, "edge.gone@example.test", None, "retail", T(2021, 12, 2, 23, 59)),  # the day before: expired
        (9, "staff@example.test", None, "staff", T(2010, 1, 1)),          # not in the `where`
    ]
    with engine.begin() as conn:
        conn.execute(customers.insert(), [dict(zip(("id", "email", "phone", "segment", "last_login"), p))
                                          for p in people])
        conn.execute(orders.insert(), [dict(id=10, customer_id=1, ordered_at=T(2020, 6, 1)),
                                       dict(id=11, customer_id=2, ordered_at=T(2024, 2, 1)),
                                       dict(id=12, customer_id=2, ordered_at=T(2017, 2, 1)),
                                       dict(id=13, customer_id=6, ordered_at=T(2014, 5, 5))])
        conn.execute(tickets.insert(), [dict(id=20, customer_id=3, opened_at="2023-05-03T10:00:00"),
                                        dict(id=21, customer_id=6, opened_at="1 January 2016"),
                                        dict(id=22, customer_id=1, opened_at="not a date")])
    engine.dispose()


@pytest.fixture
def crm(any_sql_url, tmp_path):
    _build(any_sql_url)
    messages: list[str] = []
    conn = SqlConnector(StoreConfig(name="crm", kind="sql", options={"url": any_sql_url}, base_dir=tmp_path),
                        progress=lambda _s, m: messages.append(m))
    yield conn, messages
    conn.close()


def _people(found):
    return sorted(f.location["key"]["id"] for f in found if f.location["table"] == "customers")


def test_when_the_latest_contact_is_before_the_cutoff_then_the_person_and_their_rows_are_selected(crm):
    conn, messages = crm
    flt = RecordFilter(containers=("customers",), equals={"segment": ["retail"]}, last_contact=DATES,
                       before=CUTOFF, recent={"emails": ["elsewhere@example.test"]}, follow_links=True)
    found = conn.select(flt)
    assert _people(found) == [1, 6, 8]
    linked = sorted((f.location["table"], f.location["key"]["id"]) for f in found if f.match == "linked")
    assert linked == [("orders", 10), ("orders", 13), ("tickets", 21), ("tickets", 22)]
    assert conn.undated == 1  # person 4: no contact date anywhere, kept
    assert any("1 people kept for a later contact in another store" in m for m in messages)
    assert not any("@example.test" in m for m in messages)


def test_when_the_contact_elsewhere_is_a_phone_then_the_person_is_kept_too(crm):
    conn, _ = crm
    flt = RecordFilter(containers=("customers",), last_contact=DATES, before=CUTOFF,
                       recent={"phones": ["+442079460555"]})
    assert _people(conn.select(flt)) == [1, 6, 8, 9]


def test_when_only_the_person_table_dates_count_then_linked_contacts_do_not_save_anyone(crm):
    conn, _ = crm
    found = conn.select(RecordFilter(containers=("customers",), last_contact=("customers.last_login",),
                                     before=CUTOFF))
    assert _people(found) == [1, 2, 5, 6, 8, 9]
    assert conn.undated == 2


@pytest.mark.parametrize("dates, reason", [
    (("loose.seen_at",), "loose has no foreign key to customers"),
    (("nowhere.at",), "no table nowhere"),
    (("orders.missing",), "no column missing in orders"),
    (("missing",), "no contact-date column missing"),
])
def test_when_a_contact_date_cannot_be_read_then_the_table_is_skipped_with_the_reason(crm, dates, reason):
    conn, _ = crm
    found = conn.select(RecordFilter(containers=("customers",), last_contact=dates, before=CUTOFF))
    assert found == [] and len(conn.skipped) == 1 and conn.skipped[0][0] == "customers"
    assert conn.skipped[0][1].startswith(reason)


def test_when_a_last_contact_filter_is_malformed_then_it_is_refused():
    with pytest.raises(ValueError):
        RecordFilter(containers=("customers",), last_contact=DATES)  # no cutoff
    with pytest.raises(ValueError):
        RecordFilter(containers=("customers",), last_contact=DATES, before=CUTOFF, date_column="x")
