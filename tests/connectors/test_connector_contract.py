"""One contract every connector keeps (SQL, CSV, FTP, Gmail): the same scenario through each.

A store holds the subject's own record, another person's record that mentions the subject, and a
near-miss decoy. Every connector must: find exactly the first two (identifier, text) with locations in
the CONTRACT's shape, say nothing personal in its progress messages, erase the subject's record with a
delete action, be idempotent when the same actions run again, and name itself when unreachable.
"""
from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest

from connectors import open_connector
from connectors.base import DELETE, ExecAction
from pii.core.config import StoreConfig
from pii.core.errors import StoreUnreachable
from pii.core.subject import Subject, SubjectMatcher

SUBJECT = Subject.build(emails=["alice.smith@example.org"])
DECOY = Subject.build(emails=["malice.smith@example.org"])
ROWS = [  # (name, email, note)
    ("Alice Smith", "alice.smith@example.org", "Prefers e-mail."),
    ("Bob Jones", "bob.jones@example.net", "Forwarded to alice.smith@example.org for approval."),
    ("Mallory Smith", "malice.smith@example.org", "Unsubscribe request."),
]
LOCATION_KEYS = {"sql": {"table", "key"}, "csv": {"file", "row"}, "ftp": {"path", "row"}, "gmail": {"message_id"}}


@dataclass
class Store:
    config: StoreConfig
    unreachable: StoreConfig


def _csv_bytes() -> bytes:
    lines = ["name,email,notes"] + [",".join(r) for r in ROWS]
    return ("\n".join(lines) + "\n").encode()


def sql_store(tmp_path, monkeypatch, request) -> Store:
    db = tmp_path / "crm.db"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE people (id INTEGER PRIMARY KEY, name TEXT, email TEXT, notes TEXT)")
    con.executemany("INSERT INTO people (name, email, notes) VALUES (?, ?, ?)", ROWS)
    con.commit()
    con.close()
    return Store(StoreConfig("crm", "sql", {"url": f"sqlite:///{db}"}, tmp_path),
                 StoreConfig("crm", "sql", {"url": f"sqlite:///{tmp_path / 'nope.db'}"}, tmp_path))


def csv_store(tmp_path, monkeypatch, request) -> Store:
    folder = tmp_path / "exports"
    folder.mkdir()
    (folder / "people.csv").write_bytes(_csv_bytes())
    return Store(StoreConfig("exports", "csv", {"path": str(folder)}, tmp_path),
                 StoreConfig("exports", "csv", {"path": str(tmp_path / "missing")}, tmp_path))


def ftp_store(tmp_path, monkeypatch, request) -> Store:
    from connectors.fakes.ftp_server import PASSWORD, PASSWORD_ENV, FtpServer

    server = FtpServer(tmp_path / "ftp").start()
    request.addfinalizer(server.stop)
    server.put("/incoming/people.csv", _csv_bytes())
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    good = StoreConfig("drop", "ftp", server.store_options(path="/incoming"), tmp_path)
    bad = StoreConfig("drop", "ftp", {**server.store_options(path="/incoming"), "port": 1}, tmp_path)
    return Store(good, bad)


def gmail_store(tmp_path, monkeypatch, request) -> Store:
    from connectors.fakes.gmail_server import FakeGmail, mail

    fake = FakeGmail().start()
    request.addfinalizer(fake.stop)
    fake.add(mail(frm=f"{ROWS[0][0]} <{ROWS[0][1]}>", to="support@example.test", subject="hello", text=ROWS[0][2]))
    fake.add(mail(frm=f"{ROWS[1][0]} <{ROWS[1][1]}>", to="support@example.test", subject="fwd", text=ROWS[1][2]))
    fake.add(mail(frm=f"{ROWS[2][0]} <{ROWS[2][1]}>", to="support@example.test", subject="unsub", text=ROWS[2][2]))
    options = {"user_id": "support@example.test", "api_endpoint": fake.endpoint}
    return Store(StoreConfig("mailbox", "gmail", options, tmp_path),
                 StoreConfig("mailbox", "gmail", {**options, "api_endpoint": "http://127.0.0.1:1/"}, tmp_path))


FACTORIES: dict[str, Callable] = {"sql": sql_store, "csv": csv_store, "ftp": ftp_store, "gmail": gmail_store}


@pytest.fixture(params=sorted(FACTORIES))
def store(request, tmp_path, monkeypatch) -> Store:
    return FACTORIES[request.param](tmp_path, monkeypatch, request)


def _locate(config: StoreConfig, subject=SUBJECT, messages: list | None = None):
    progress = (lambda s, m: messages.append(m)) if messages is not None else (lambda s, m: None)
    with open_connector(config, progress=progress) as conn:
        return conn.locate(SubjectMatcher(subject))


def test_when_located_then_subject_record_and_mention_are_found_in_contract_shape(store):
    messages: list[str] = []
    findings = _locate(store.config, messages=messages)
    kind = store.config.kind
    assert sorted(f.match for f in findings) == ["identifier", "text"]
    for f in findings:
        assert f.store == store.config.name and f.strength == "strong"
        assert set(f.location) - {"schema", "part"} == LOCATION_KEYS[kind]
        assert f.entities == ["EMAIL_ADDRESS"] and f.record
    assert len({f.key for f in findings}) == len(findings)  # one finding per location
    text = " ".join(messages).lower()
    assert messages and "alice" not in text and "smith" not in text and "@" not in text


def test_when_decoy_is_searched_then_only_the_decoy_is_found(store):
    findings = _locate(store.config, DECOY)
    assert [f.match for f in findings] == ["identifier"]
    assert _locate(store.config, DECOY)[0].key != _locate(store.config)[0].key


def test_when_subject_record_is_deleted_then_it_is_gone_and_others_stay(store):
    findings = _locate(store.config)
    own = [f for f in findings if f.match == "identifier"]
    actions = [ExecAction(f"a{i}", f.container, f.location, DELETE, expected=f.record) for i, f in enumerate(own)]
    done: list = []
    with open_connector(store.config) as conn:
        conn.apply(actions, lambda ids, rows, detail: done.append((tuple(ids), rows)), SubjectMatcher(SUBJECT))
    assert sum(rows for _, rows in done) == 1 and {i for ids, _ in done for i in ids} == {"a0"}
    assert [f.match for f in _locate(store.config)] == ["text"]  # the mention in Bob's record remains
    assert [f.match for f in _locate(store.config, DECOY)] == ["identifier"]  # the decoy is untouched
    after_first = [(f.key, f.match) for f in _locate(store.config)]
    again: list = []
    with open_connector(store.config) as conn:  # the same actions again (stale locations): no further effect
        stale = [ExecAction("a0", f.container, f.location, DELETE, expected=f.record) for f in own]
        conn.apply(stale, lambda ids, rows, detail: again.append(rows), SubjectMatcher(SUBJECT))
    if store.config.kind != "gmail":  # Gmail's trash answers alike for a message already in Trash
        assert sum(again) == 0
    assert [(f.key, f.match) for f in _locate(store.config)] == after_first  # Bob's row was not hit instead
    assert [f.match for f in _locate(store.config, DECOY)] == ["identifier"]


def test_when_store_is_unreachable_then_the_error_names_it(store):
    with pytest.raises(StoreUnreachable) as err:
        _locate(store.unreachable)
    assert f"'{store.config.name}'" in str(err.value) and "alice" not in str(err.value).lower()
