"""A small CRM built with SQLAlchemy Core, identical on SQLite, PostgreSQL (in a non-public schema) and
MariaDB. The subject is Alice Smith; decoys are near misses that must never match."""
from __future__ import annotations

import datetime as dt

import sqlalchemy as sa

ALICE = dict(emails=["alice.smith@example.org"], names=["Alice Smith"], phones=["020 7946 0123"])


def build(url: str, schema: str | None = None) -> sa.Engine:
    engine = sa.create_engine(url)
    if schema:
        with engine.begin() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
    md = sa.MetaData(schema=schema)
    S = sa.String
    companies = sa.Table("companies", md, sa.Column("company_id", sa.Integer, primary_key=True),
                         sa.Column("name", S(100)))
    members = sa.Table(
        "members", md,
        sa.Column("member_id", sa.Integer, primary_key=True),
        sa.Column("first_name", S(50)), sa.Column("last_name", S(50)),
        sa.Column("email", S(120)), sa.Column("phone", S(40)),
        sa.Column("customer_no", S(20)),
        sa.Column("company_id", sa.Integer, sa.ForeignKey(companies.c.company_id)),
        sa.Column("referred_by", sa.Integer, sa.ForeignKey("members.member_id")),
    )
    orders = sa.Table("orders", md, sa.Column("order_id", sa.Integer, primary_key=True),
                      sa.Column("member_id", sa.Integer, sa.ForeignKey(members.c.member_id), index=True),
                      sa.Column("total", sa.Numeric(10, 2)), sa.Column("placed_at", sa.DateTime))
    items = sa.Table("order_items", md,
                     sa.Column("order_id", sa.Integer, sa.ForeignKey(orders.c.order_id), primary_key=True),
                     sa.Column("line_no", sa.Integer, primary_key=True), sa.Column("sku", S(20)))
    notes = sa.Table("notes", md, sa.Column("note_id", sa.Integer, primary_key=True),
                     sa.Column("member_id", sa.Integer, sa.ForeignKey(members.c.member_id)),
                     sa.Column("note", sa.Text))
    newsletter = sa.Table("newsletter", md, sa.Column("email", S(120)), sa.Column("source", S(40)))
    badges = sa.Table("badges", md, sa.Column("badge_id", sa.Integer, primary_key=True),
                      sa.Column("full_name", S(100)))
    md.create_all(engine)
    with engine.begin() as conn:
        conn.execute(companies.insert(), [{"company_id": 1, "name": "Acme Ltd"}, {"company_id": 2, "name": "Globex"}])
        conn.execute(members.insert(), [
            dict(member_id=1, first_name="Alice", last_name="Smith", email="Alice.Smith@Example.org ",
                 phone="+44 20 7946 0123", customer_no="C-10042", company_id=1, referred_by=None),
            dict(member_id=2, first_name="Bob", last_name="Jones", email="bob.jones@example.org",
                 phone="020 7946 0999", customer_no="C-20001", company_id=1, referred_by=1),
            dict(member_id=3, first_name="Alicia", last_name="Smith", email="malice.smith@example.org",
                 phone="020 7946 0124", customer_no="C-30003", company_id=2, referred_by=None),
            dict(member_id=4, first_name="Zoë", last_name="Müller", email="zoe@example.test",
                 phone="(020) 7946-0555", customer_no="C-40004", company_id=2, referred_by=None),
            dict(member_id=5, first_name="Carol", last_name="White", email="alice.smith@example.com",
                 phone=None, customer_no="C-50005", company_id=None, referred_by=None),
            dict(member_id=6, first_name="Siobhán", last_name="O’Brien", email=None,
                 phone=None, customer_no="ÉIRE-77", company_id=None, referred_by=None),
        ])
        conn.execute(orders.insert(), [
            dict(order_id=10, member_id=1, total=12.5, placed_at=dt.datetime(2026, 1, 2, 3, 4, 5)),
            dict(order_id=11, member_id=1, total=99, placed_at=dt.datetime(2026, 2, 2)),
            dict(order_id=12, member_id=2, total=5, placed_at=dt.datetime(2026, 3, 3)),
        ])
        conn.execute(items.insert(), [dict(order_id=10, line_no=1, sku="A"), dict(order_id=10, line_no=2, sku="B"),
                                      dict(order_id=11, line_no=1, sku="C"), dict(order_id=12, line_no=1, sku="D")])
        conn.execute(notes.insert(), [
            dict(note_id=100, member_id=2, note="Bob says his colleague called from 020 7946 0123 about a refund."),
            dict(note_id=101, member_id=3, note="Forwarded to ALICE.SMITH@example.org for approval."),
            dict(note_id=102, member_id=4, note="Met Alice Smithson at the fair; phone 020 7946 0124."),
            dict(note_id=103, member_id=2, note="Nothing about anyone in particular."),
            dict(note_id=104, member_id=2, note="Siobhan's account is éire-77."),
        ])
        conn.execute(newsletter.insert(), [dict(email="alice.smith@example.org", source="web"),
                                           dict(email="malice.smith@example.org", source="web")])
        conn.execute(badges.insert(), [dict(badge_id=7, full_name="SMITH, Alice"),
                                       dict(badge_id=8, full_name="Alicia Smith")])
    return engine


# (table, key) -> (match, strength) for ALICE with all three identifiers
EXPECTED_FULL = {
    ("members", (("member_id", 1),)): ("identifier", "strong"),
    ("orders", (("order_id", 10),)): ("linked", "strong"),
    ("orders", (("order_id", 11),)): ("linked", "strong"),
    ("order_items", (("line_no", 1), ("order_id", 10))): ("linked", "strong"),
    ("order_items", (("line_no", 2), ("order_id", 10))): ("linked", "strong"),
    ("order_items", (("line_no", 1), ("order_id", 11))): ("linked", "strong"),
    ("notes", (("note_id", 100),)): ("text", "strong"),
    ("notes", (("note_id", 101),)): ("text", "strong"),
    ("newsletter", (("email", "alice.smith@example.org"), ("source", "web"))): ("identifier", "strong"),
    ("badges", (("badge_id", 7),)): ("identifier", "weak"),
}
