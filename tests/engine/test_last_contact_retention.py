"""Retention by last contact end to end (issue 15.1): `lethe retention` with a `last_contact:` rule deletes
(or anonymises) the people whose latest contact is over the period old, with the rows linked to them, and
keeps everyone with a later contact (in the database, in a CSV export, or nowhere dated at all), on SQLite,
PostgreSQL and MariaDB."""
from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa
import yaml

from tests.cli_support import run
from tests.connectors.test_last_contact import _build

RULE = {"name": "customers", "store": "crm", "match": ["customers"], "where": {"segment": "retail"},
        "last_contact": {"dates": ["last_login", "orders.ordered_at", "tickets.opened_at"],
                         "elsewhere": [{"store": "exports", "match": ["*.csv"], "date": "sent_at"}]},
        "period": "5y", "category": "Customers", "legal_basis": "storage limitation"}


def _world(url, tmp_path, rule):
    _build(url)
    exports = tmp_path / "exports"
    exports.mkdir()
    (exports / "newsletter.csv").write_text("email,sent_at\nelsewhere@example.test,2025-03-01\n"
                                            "old.order@example.test,2019-01-01\n")
    config = {"ledger": f"sqlite:///{tmp_path / 'state.db'}",
              "stores": {"crm": {"kind": "sql", "url": url}, "exports": {"kind": "csv", "path": str(exports)}},
              "retention": [rule]}
    path = tmp_path / "stores.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _rows(url):
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        people = {r.id: r for r in conn.execute(sa.text("SELECT * FROM customers"))}
        orders = sorted(r[0] for r in conn.execute(sa.text("SELECT id FROM orders")))
        tickets = sorted(r[0] for r in conn.execute(sa.text("SELECT id FROM tickets")))
    engine.dispose()
    return people, orders, tickets


def test_when_people_have_not_been_in_contact_for_the_period_then_they_and_their_rows_go(any_sql_url, tmp_path):
    config = _world(any_sql_url, tmp_path, RULE)
    code, out, err = run("--config", config, "retention", "--list")
    assert "by last contact (last_login, orders.ordered_at, tickets.opened_at, exports)" in out
    code, out, err = run("--config", config, "-q", "retention", "--date", "2026-12-03", "--yes")
    assert code == 0, out + err
    assert "kept 5y after the last contact" in out and "verified" in out
    people, orders, tickets = _rows(any_sql_url)
    assert sorted(people) == [2, 3, 4, 5, 7, 9]  # 1, 6, 8 expired; 5 kept by the CSV export
    assert orders == [11, 12] and tickets == [20]  # their orders and tickets went with them
    assert "@example.test" not in out + err
    code, out, err = run("--config", config, "-q", "retention", "--date", "2026-12-03", "--yes")
    assert code == 0 and "nothing to change" in out  # a second run finds nothing


def test_when_the_rule_anonymises_then_the_expired_people_stay_as_statistics(sqlite_url, tmp_path):
    rule = {**RULE, "action": "anonymise", "anonymise": {"email": "null", "phone": "null"}}
    rule["last_contact"] = {"dates": ["last_login", "orders.ordered_at"]}
    config = _world(sqlite_url, tmp_path, rule)
    code, out, err = run("--config", config, "-q", "retention", "--date", "2026-12-03", "--yes")
    assert code == 0, out + err
    people, orders, _ = _rows(sqlite_url)
    assert sorted(people) == list(range(1, 10))  # nobody deleted
    anonymised = sorted(i for i, r in people.items() if r.email is None)
    assert anonymised == [1, 5, 6, 8]  # 3 has only a ticket, not counted here (undated); 5: no CSV source
    assert people[2].email == "recent.order@example.test" and orders == [10, 11, 12, 13]
    assert dt.date.fromisoformat(str(people[1].last_login)[:10]) == dt.date(2019, 1, 1)


@pytest.mark.parametrize("change, message", [
    ({"last_contact": {"dates": ["loose.seen_at"]}}, "loose has no foreign key to customers"),
])
def test_when_a_contact_table_is_not_linked_then_the_plan_says_so_and_deletes_nobody(sqlite_url, tmp_path,
                                                                                       change, message):
    config = _world(sqlite_url, tmp_path, {**RULE, **change})
    code, out, err = run("--config", config, "-q", "retention", "--date", "2026-12-03", "--dry-run")
    assert code == 0, out + err
    assert "0 records selected" in out and "1 tables/files without the named columns" in out
    assert sorted(_rows(sqlite_url)[0]) == list(range(1, 10))
