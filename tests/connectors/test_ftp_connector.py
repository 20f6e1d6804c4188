"""FtpConnector against a real pyftpdlib server (tests/ftp_server.py): listing, locate in CSV/TXT/JSONL,
unreachable and misconfigured stores, erasure through upload + verify + rename, interrupted uploads,
stray temp files, servers without MLSD or rename-over, FTPS, and a few-MB file streamed."""
from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import pytest

from connectors import open_connector
from connectors.base import DELETE, UPDATE, ExecAction
from connectors.csvfiles import CsvConnector
from connectors.ftp import HOST_TAG, FtpConnector
from pii.core.config import StoreConfig
from pii.core.errors import ConfigError, StoreError, StoreUnreachable
from pii.core.findings import WEAK
from pii.state.inventory import Inventory
from pii.core.policy import REDACTED, redact_fields
from pii.core.subject import Subject, SubjectMatcher
from connectors.fakes.ftp_server import PASSWORD, PASSWORD_ENV, FtpServer, self_signed_cert

MATCHER = SubjectMatcher(Subject.build(emails=["alice.smith@x.org"], names=["Alice Smith"],
                                       phones=["+44 7700 900123"]))

LEADS = ("\ufeffemail;name;phone;notes\r\n"
         "bob@x.org;Bob Jones;+44 7700 900999;met at the fair\r\n"
         "ALICE.SMITH@x.org;Alice Smith;07700 900123;prefers email\r\n"
         'carol@x.org;Carol;;"spoke with Alice Smith; she asked about alice.smith@x.org"\r\n'
         'dan@x.org;Dan;;"two\r\nlines"\r\n'
         "erin@x.org;Alice Smith;;\r\n").encode("utf-8")
CRM = b"customer_no\temail\tcomment\n17\tfrank@x.org\tnone\n18\talice.smith@x.org\t\n"
NOTES = (b"call log 2026-11\n"
         b"\n"
         b"rang +44 7700 900123 about the order\r\n"
         b"nothing about her here\n"
         b"Alice Smith phoned again")  # no final line ending
EVENTS = (b'{"email": "alice.smith@x.org", "event": "signup", "n": 1}\n'
          b'{"email":"bob@x.org","note":"forwarded to alice.smith@x.org by mistake","n":2}\n'
          b'{"contact": {"first_name": "Alice", "last_name": "Smith"}, "tags": ["x"]}\n'
          b'{"msg": "escaped \\u0061lice.smith\\u0040x.org"}\n'  # nothing of hers in the raw bytes
          b'{"email": "carol@x.org", "n": 5}\n'
          b"not json at all, Alice Smith\n"
          b'{"mobile": "07700 900123", "n": 7}\n')


# --------------------------------------------------------------------------- helpers
@pytest.fixture
def server(tmp_path, monkeypatch):
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    with FtpServer(tmp_path / "home") as srv:
        yield srv


def connect(server: FtpServer, tmp_path: Path, messages: list | None = None, inventory=None,
            **options) -> FtpConnector:
    opts = {**server.store_options(path="/incoming"), **options}
    store = StoreConfig(name="partner_drop", kind="ftp", options=opts, base_dir=tmp_path)
    progress = (lambda _s, m: messages.append(m)) if messages is not None else (lambda _s, _m: None)
    return open_connector(store, progress=progress, inventory=inventory)


def drop(server: FtpServer) -> None:
    server.put("/incoming/leads.csv", LEADS)
    server.put("/incoming/2026/q4/crm.tsv", CRM)
    server.put("/incoming/logs/notes.txt", NOTES)
    server.put("/incoming/events/2026/events.jsonl", EVENTS)


def plan(findings) -> list[ExecAction]:
    """What the default policy does: strong identifier rows deleted, text mentions redacted, weak left."""
    actions = []
    for i, f in enumerate(findings):
        if f.strength == WEAK:
            continue
        if f.match == "identifier":
            actions.append(ExecAction(f"a{i}", f.container, f.location, DELETE))
        else:
            record = f.record or {}
            updates = {k: v for k, v in redact_fields(record, MATCHER).items() if v != record.get(k)}
            actions.append(ExecAction(f"a{i}", f.container, f.location, UPDATE, updates))
    return actions


def apply(conn: FtpConnector, actions: list[ExecAction]) -> list[tuple]:
    calls: list[tuple] = []
    conn.apply(actions, lambda ids, rows, detail: calls.append((sorted(ids), rows, detail)), MATCHER)
    return calls


def lethe_temps(server: FtpServer) -> list[str]:
    return [p for p in server.files() if ".lethe-" in p]


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


# --------------------------------------------------------------------------- locate
def test_when_csv_exports_sit_in_nested_folders_then_findings_equal_the_csv_connectors_on_the_same_files(
        server, tmp_path):
    drop(server)
    local = tmp_path / "local"
    (local / "2026/q4").mkdir(parents=True)
    (local / "leads.csv").write_bytes(LEADS)
    (local / "2026/q4/crm.tsv").write_bytes(CRM)
    csv_conn = CsvConnector(StoreConfig(name="partner_drop", kind="csv", options={"path": str(local)},
                                        base_dir=tmp_path))
    matcher = SubjectMatcher(Subject.build(emails=["alice.smith@x.org"], names=["Alice Smith"],
                                           phones=["+44 7700 900123"], ids={"customer_no": "18"}))

    inventory = Inventory(f"sqlite:///{tmp_path / 'state.db'}")
    with connect(server, tmp_path, inventory=inventory) as conn:
        found = [f for f in conn.locate(matcher) if f.container.endswith((".csv", ".tsv"))]
        conn.locate(matcher)

    def shape(f, key, prefix):
        return (prefix + f.location[key], f.location["row"], f.entities, f.match, f.strength, f.record)

    expected = [shape(f, "file", "/incoming/") for f in csv_conn.locate(matcher)]
    assert sorted(shape(f, "path", "") for f in found) == sorted(expected)
    by_row = {(f.location["path"], f.location["row"]): f for f in found}
    assert set(by_row) == {("/incoming/leads.csv", 2), ("/incoming/leads.csv", 3), ("/incoming/leads.csv", 5),
                           ("/incoming/2026/q4/crm.tsv", 2)}
    assert by_row["/incoming/leads.csv", 2].record["email"] == "ALICE.SMITH@x.org"  # BOM gone, ';' split
    assert by_row["/incoming/leads.csv", 3].match == "text"
    assert by_row["/incoming/leads.csv", 3].record == {"notes": "spoke with Alice Smith; she asked about "
                                                                "alice.smith@x.org"}
    assert by_row["/incoming/leads.csv", 5].strength == WEAK  # only a name
    assert by_row["/incoming/2026/q4/crm.tsv", 2].container == "/incoming/2026/q4/crm.tsv"
    assert {r["container"] for r in inventory.rows("partner_drop")} == {"/incoming/leads.csv",
                                                                        "/incoming/2026/q4/crm.tsv"}
    assert (inventory.misses, inventory.hits) == (2, 2)  # classified once, then read from the cache


def test_when_text_and_json_lines_files_mention_the_subject_then_each_line_is_a_record(server, tmp_path):
    drop(server)
    with connect(server, tmp_path) as conn:
        found = {(f.location["path"], f.location["row"]): f for f in conn.locate(MATCHER)
                 if not f.container.endswith((".csv", ".tsv"))}

    notes, events = "/incoming/logs/notes.txt", "/incoming/events/2026/events.jsonl"
    assert sorted(found) == [(events, 1), (events, 2), (events, 3), (events, 4), (events, 6), (events, 7),
                             (notes, 3), (notes, 5)]  # line numbers count the blank line
    assert found[notes, 3].record == {"line": "rang +44 7700 900123 about the order"}
    assert (found[notes, 3].match, found[notes, 3].entities) == ("text", ["PHONE_NUMBER"])
    assert found[notes, 5].strength == WEAK
    signup = found[events, 1]
    assert (signup.match, signup.record) == ("identifier", {"email": "alice.smith@x.org", "event": "signup", "n": 1})
    forwarded = found[events, 2]
    assert (forwarded.match, forwarded.record) == ("text", {"note": "forwarded to alice.smith@x.org by mistake"})
    contact = found[events, 3]  # first and last name keys in one object: an identifier, but only a name
    assert (contact.match, contact.strength) == ("identifier", WEAK)
    assert contact.record == {"contact.first_name": "Alice", "contact.last_name": "Smith", "tags[0]": "x"}
    assert found[events, 4].entities == ["EMAIL_ADDRESS"]  # seen through the JSON escape
    assert found[events, 6].record == {"line": "not json at all, Alice Smith"}
    assert (found[events, 7].match, found[events, 7].entities) == ("identifier", ["PHONE_NUMBER"])


def test_when_files_cannot_be_read_as_csv_text_or_json_lines_then_they_are_listed_as_not_scanned(
        server, tmp_path):
    server.put("/incoming/leads.csv", LEADS)
    server.put("/incoming/scans/contract.pdf", b"%PDF-1.7 alice.smith@x.org")
    server.put("/incoming/README", b"alice.smith@x.org")
    server.put("/incoming/old/leads.csv.bak", b"email\nalice.smith@x.org\n")
    server.put("/outside.csv", b"email\nalice.smith@x.org\n")
    server.put("/incoming/locked/leads.csv", LEADS)
    server.faults.unlistable.add("/incoming/locked")
    vanishing = server.put("/incoming/vanishing.csv", LEADS)
    messages: list[str] = []

    def progress(message: str) -> None:
        messages.append(message)
        if " files under " in message:  # listed, not yet downloaded: a partner removes a file now
            vanishing.unlink()

    with connect(server, tmp_path, skip_files=["*.bak"]) as conn:
        conn.progress = lambda _s, m: progress(m)
        found = conn.locate(MATCHER)
        not_scanned = conn.not_scanned

    assert not_scanned == [("/incoming/locked/", "folder cannot be listed (listing refused by the server (550))"),
                           ("/incoming/README", "unsupported file type (no extension)"),
                           ("/incoming/scans/contract.pdf", "cannot be read as a PDF (PdfStreamError); damaged, or not a PDF")]
    assert "/incoming/vanishing.csv: deleted on the server while the folder was scanned, skipped" in messages
    assert "/incoming/scans/contract.pdf: not scanned, cannot be read as a PDF (PdfStreamError); damaged, or not a PDF" in messages
    assert {f.container for f in found} == {"/incoming/leads.csv"}
    assert not any("alice" in m.lower() for m in messages)  # counts and locations only


def test_when_the_server_has_no_mlsd_then_nested_files_are_listed_through_nlst(server, tmp_path):
    drop(server)
    server.faults.no_mlsd = True

    with connect(server, tmp_path) as conn:
        files = conn.files()
        found = conn.locate(MATCHER)

    assert files == ["/incoming/2026/q4/crm.tsv", "/incoming/events/2026/events.jsonl", "/incoming/leads.csv",
                     "/incoming/logs/notes.txt"]
    assert "MLSD" in server.faults.commands and "NLST" in server.faults.commands
    assert len(found) == 12


# --------------------------------------------------------------------------- reaching the store
def test_when_the_password_is_wrong_then_the_store_is_unreachable_and_no_password_is_shown(
        server, tmp_path, monkeypatch):
    monkeypatch.setenv(PASSWORD_ENV, "Wrong-Pw-7781")
    with connect(server, tmp_path) as conn, pytest.raises(StoreUnreachable) as err:
        conn.check()

    message = str(err.value)
    assert message == (f"store 'partner_drop' is unreachable: login refused by "
                       f"ftp://lethe@127.0.0.1:{server.port} (530)")
    assert "Wrong-Pw-7781" not in message and PASSWORD not in message


def test_when_the_folder_is_missing_or_nothing_listens_then_the_store_is_unreachable(server, tmp_path):
    with connect(server, tmp_path, path="/nope") as conn, pytest.raises(StoreUnreachable) as err:
        conn.check()
    assert "folder /nope does not exist" in str(err.value)

    server.stop()
    with connect(server, tmp_path) as conn, pytest.raises(StoreUnreachable) as err:
        conn.locate(MATCHER)
    assert f"cannot connect to ftp://lethe@127.0.0.1:{server.port} (ConnectionRefusedError)" in str(err.value)


def test_when_the_password_comes_from_the_environment_then_login_works_and_an_unset_variable_is_named(
        server, tmp_path, monkeypatch):
    server.put("/incoming/leads.csv", LEADS)
    with connect(server, tmp_path) as conn:
        conn.check()
        assert len(conn.locate(MATCHER)) == 3

    monkeypatch.delenv(PASSWORD_ENV)
    with connect(server, tmp_path) as conn, pytest.raises(ConfigError) as err:
        conn.check()
    assert PASSWORD_ENV in str(err.value)

    store = StoreConfig(name="drop", kind="ftp", options={"conn_id": "partner_ftp"}, base_dir=tmp_path)
    with pytest.raises(ConfigError, match="conn_id"):
        FtpConnector(store).check()


# --------------------------------------------------------------------------- erasure
def test_when_the_subject_is_erased_then_other_rows_stay_byte_identical_and_a_second_erase_changes_nothing(
        server, tmp_path):
    drop(server)
    messages: list[str] = []
    with connect(server, tmp_path, messages) as conn:
        actions = plan(conn.locate(MATCHER))
        calls = apply(conn, actions)

    assert server.read("/incoming/leads.csv") == (
        "\ufeffemail;name;phone;notes\r\n"
        "bob@x.org;Bob Jones;+44 7700 900999;met at the fair\r\n"
        f'carol@x.org;Carol;;"spoke with {REDACTED}; she asked about {REDACTED}"\r\n'
        'dan@x.org;Dan;;"two\r\nlines"\r\n'
        "erin@x.org;Alice Smith;;\r\n").encode("utf-8")  # the weak, name-only row waits for review
    assert server.read("/incoming/2026/q4/crm.tsv") == b"customer_no\temail\tcomment\n17\tfrank@x.org\tnone\n"
    assert server.read("/incoming/logs/notes.txt") == (
        f"call log 2026-11\n\nrang {REDACTED} about the order\r\nnothing about her here\n"
        "Alice Smith phoned again").encode()
    lines = server.read("/incoming/events/2026/events.jsonl").split(b"\n")
    assert lines[0] == b'{"email":"bob@x.org","note":"forwarded to [redacted] by mistake","n":2}'  # compact kept
    old = EVENTS.split(b"\n")
    assert lines[1:] == [old[2], b'{"msg": "escaped [redacted]"}', old[4], old[5], b""]
    assert sorted(c[1] for c in calls) == [1, 1, 2, 4]  # rows changed: tsv, txt, csv, jsonl
    assert sorted(i for c in calls for i in c[0]) == sorted(a.action_id for a in actions)
    assert lethe_temps(server) == []
    assert not any("alice" in m.lower() or "@" in m for m in messages)

    before = {p: server.read(p) for p in server.files()}
    stored = server.faults.commands.count("STOR")
    with connect(server, tmp_path) as conn:
        again = [f for f in conn.locate(MATCHER) if f.strength != WEAK]
        assert again == []
        assert apply(conn, plan(again)) == []
        # a stale plan re-applied: rows past the end of a file affect nothing
        assert apply(conn, [ExecAction("late", "/incoming/2026/q4/crm.tsv",
                                       {"path": "/incoming/2026/q4/crm.tsv", "row": 2}, DELETE)]) \
            == [(["late"], 0, None)]
    assert {p: server.read(p) for p in server.files()} == before
    assert server.faults.commands.count("STOR") == stored


def test_when_the_server_refuses_to_rename_over_a_file_then_the_original_is_swapped_out_and_deleted(
        server, tmp_path):
    server.put("/incoming/leads.csv", LEADS)
    server.faults.refuse_rename_over = True

    with connect(server, tmp_path) as conn:
        calls = apply(conn, [ExecAction("a1", "/incoming/leads.csv", {"path": "/incoming/leads.csv", "row": 2},
                                        DELETE)])

    assert calls == [(["a1"], 1, None)]
    assert b"ALICE" not in server.read("/incoming/leads.csv")
    assert server.read("/incoming/leads.csv").startswith(LEADS.split(b"\r\n")[0] + b"\r\nbob@x.org")
    assert server.faults.commands.count("RNTO") == 3  # refused, original aside, new one in
    assert lethe_temps(server) == []


def test_when_the_connection_drops_mid_upload_then_the_original_is_intact_and_a_rerun_completes(
        server, tmp_path, monkeypatch):
    filler = "".join(f"user{i}@x.org;User {i};;note {i}\r\n" for i in range(40_000)).encode()
    original = LEADS + filler  # ~1.2 MB: the drop comes long before the end
    server.put("/incoming/leads.csv", original)
    server.faults.drop_upload_after = 256 * 1024
    action = ExecAction("a1", "/incoming/leads.csv", {"path": "/incoming/leads.csv", "row": 2}, DELETE)

    with connect(server, tmp_path) as conn:
        monkeypatch.setattr(conn, "_discard", lambda tmp: None)  # as if the process died: no clean-up
        calls: list = []
        with pytest.raises(StoreError) as err:
            conn.apply([action], lambda *a: calls.append(a), MATCHER)
        assert calls == []
        assert server.read("/incoming/leads.csv") == original
        assert len(lethe_temps(server)) == 1  # the partial upload
        assert str(err.value).startswith("store 'partner_drop', file /incoming/leads.csv: uploading the rewritten "
                                          "file failed (")
        assert PASSWORD not in str(err.value)

        server.faults.drop_upload_after = None
        assert apply(conn, [action]) == [(["a1"], 1, None)]

    assert server.read("/incoming/leads.csv") == original.replace(LEADS.split(b"\r\n")[2] + b"\r\n", b"", 1)
    assert lethe_temps(server) == []


def test_when_the_server_keeps_fewer_bytes_than_were_sent_then_the_original_is_not_replaced(server, tmp_path):
    server.put("/incoming/leads.csv", LEADS)
    server.faults.truncate_upload_at = 40

    with connect(server, tmp_path) as conn, pytest.raises(StoreError) as err:
        apply(conn, [ExecAction("a1", "/incoming/leads.csv", {"path": "/incoming/leads.csv", "row": 2}, DELETE)])

    new_size = len(LEADS) - len(b"ALICE.SMITH@x.org;Alice Smith;07700 900123;prefers email\r\n")
    assert f"the upload is incomplete (40 of {new_size} bytes on the server)" in str(err.value)
    assert server.read("/incoming/leads.csv") == LEADS
    assert lethe_temps(server) == []


def test_when_the_original_changes_during_the_erasure_then_the_newer_file_is_kept(server, tmp_path, monkeypatch):
    server.put("/incoming/leads.csv", LEADS)
    newer = LEADS + b"zoe@x.org;Zoe;;\r\n"
    with connect(server, tmp_path) as conn:
        real = conn.fileformat.rewrite

        def rewrite_while_a_partner_uploads(rel, todo):
            server.put("/incoming/leads.csv", newer)
            return real(rel, todo)

        monkeypatch.setattr(conn.fileformat, "rewrite", rewrite_while_a_partner_uploads)
        with pytest.raises(StoreError, match="changed while it was being rewritten"):
            apply(conn, [ExecAction("a1", "/incoming/leads.csv", {"path": "/incoming/leads.csv", "row": 2},
                                    DELETE)])

    assert server.read("/incoming/leads.csv") == newer
    assert lethe_temps(server) == []


def test_when_a_crashed_run_left_temp_files_then_the_next_locate_cleans_up_and_spares_live_runs(
        server, tmp_path):
    server.put("/incoming/leads.csv", LEADS)
    server.put("/incoming/kept.csv", b"email\r\nbob@x.org\r\n")
    dead = dead_pid()

    def name(original: str, kind: str, pid: int, host: str) -> str:
        return f"/incoming/.{original}.lethe-{kind}-{pid}-{host}{secrets.token_hex(6)}"

    partial = server.put(name("leads.csv", "tmp", dead, HOST_TAG), LEADS[:30])
    restore = name("gone.csv", "old", dead, HOST_TAG)  # a swap died after moving gone.csv aside
    server.put(restore, b"email\r\nalice.smith@x.org\r\ncarol@x.org\r\n")
    leftover = server.put(name("kept.csv", "old", dead, HOST_TAG), b"email\r\nalice.smith@x.org\r\n")
    live = server.put(name("leads.csv", "tmp", 4242, "0badc0de"), LEADS)  # another host, just now
    ancient = server.put(name("leads.csv", "tmp", 4242, "0badc0de"), LEADS)
    os.utime(ancient, (time.time() - 7200, time.time() - 7200))
    messages: list[str] = []

    with connect(server, tmp_path, messages) as conn:
        found = conn.locate(MATCHER)

    assert not partial.exists() and not leftover.exists() and not ancient.exists()
    assert live.exists()
    assert server.read("/incoming/gone.csv") == b"email\r\nalice.smith@x.org\r\ncarol@x.org\r\n"
    assert sorted({f.container for f in found}) == ["/incoming/gone.csv", "/incoming/leads.csv"]
    assert "1 files restored from an erasure interrupted mid-swap" in messages
    assert "3 stray temp files from an interrupted erasure removed" in messages


# --------------------------------------------------------------------------- FTPS and size
def test_when_the_server_requires_tls_then_an_untrusted_certificate_is_refused_and_a_trusted_one_works(
        tmp_path, monkeypatch):
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    cert, key = self_signed_cert(tmp_path / "tls")
    with FtpServer(tmp_path / "home", tls_cert=(cert, key)) as tls_server:
        tls_server.put("/incoming/leads.csv", LEADS)
        with connect(tls_server, tmp_path, tls=True) as conn, pytest.raises(StoreUnreachable) as err:
            conn.check()
        assert "TLS certificate" in str(err.value) and "tls_ca_file" in str(err.value)
        with connect(tls_server, tmp_path) as conn, pytest.raises(StoreUnreachable):  # plain FTP refused
            conn.check()

        with connect(tls_server, tmp_path, tls=True, tls_ca_file=str(cert)) as conn:
            found = conn.locate(MATCHER)
            assert len(found) == 3
            apply(conn, [ExecAction("a1", "/incoming/leads.csv", {"path": "/incoming/leads.csv", "row": 2},
                                    DELETE)])
        assert b"ALICE" not in tls_server.read("/incoming/leads.csv")


def test_when_a_file_of_several_megabytes_is_scanned_then_it_streams_in_flat_memory(server, tmp_path, capsys):
    rows = [f"user{i}@example.org;Person Number{i};+44 7700 8{i:05d};ordered item {i} and asked about "
            "delivery slots\r\n" for i in range(70_000)]
    rows.insert(35_000, "alice.smith@x.org;Alice Smith;;\r\n")
    body = ("email;name;phone;notes\r\n" + "".join(rows)).encode()
    server.put("/incoming/big.csv", body)
    server.put("/incoming/big.jsonl", "".join(
        json.dumps({"email": f"user{i}@example.org", "note": f"ordered item {i}"}) + "\n"
        for i in range(60_000)).encode() + b'{"email": "alice.smith@x.org"}\n')
    csv_mb, jsonl_mb = len(body) / 1e6, server.home.joinpath("incoming/big.jsonl").stat().st_size / 1e6

    with connect(server, tmp_path) as conn:
        start = time.perf_counter()
        found = conn.locate(MATCHER)
        seconds = time.perf_counter() - start
        tracemalloc.start()
        try:
            conn.locate(MATCHER)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    assert sorted((f.container, f.location["row"]) for f in found) == [("/incoming/big.csv", 35_001),
                                                                       ("/incoming/big.jsonl", 60_001)]
    assert peak < 4_000_000, peak  # the files are 7.5 and 3.5 MB; the peak does not grow with them
    with capsys.disabled():
        print(f"\n[ftp scan] {csv_mb + jsonl_mb:.1f} MB (CSV {csv_mb:.1f}, JSONL {jsonl_mb:.1f}) in {seconds:.2f} s: "
              f"{(csv_mb + jsonl_mb) / seconds:.1f} MB/s, peak traced memory {peak / 1e6:.2f} MB")


def test_when_a_remote_name_holds_a_line_break_then_it_is_reported_not_searched_and_the_rest_is(server, tmp_path):
    server.put("/incoming/leads.csv", LEADS)
    (server.home / "incoming" / "odd\nname.csv").write_bytes(b"email\nalice.smith@x.org\n")
    messages: list[str] = []
    with connect(server, tmp_path, messages) as conn:
        found = conn.locate(MATCHER)
        assert {f.container for f in found} == {"/incoming/leads.csv"}
        (gap,) = conn.coverage.skipped
        assert gap["place"].startswith("/incoming/odd") and "line break" in gap["reason"]
        assert not conn.coverage.complete


def test_when_a_remote_file_is_named_after_the_subject_then_its_name_is_withheld(server, tmp_path):
    server.put("/incoming/alice.smith@x.org.csv", b"email\nalice.smith@x.org\n")
    messages: list[str] = []
    with connect(server, tmp_path, messages) as conn:
        found = conn.locate(MATCHER)
        assert len(found) == 1
        assert not any("alice" in m.lower() for m in messages)
        assert "alice" not in json.dumps(conn.coverage.to_dict()).lower()
        apply(conn, plan(found))  # erased: the record goes, and the file no longer bears the name
        assert not any("alice" in m.lower() for m in messages)
    names = [p for p in server.files() if p.startswith("incoming/") or p.startswith("/incoming/")]
    assert names and all("alice" not in p for p in names) and any("renamed-" in p for p in names), names
