"""CsvConnector.apply: erasure in a folder of CSV exports, one atomic rewrite per file, untouched bytes kept."""
from __future__ import annotations

import codecs
import os
import stat
import time
import tracemalloc
from pathlib import Path

import pytest

from connectors import fileformat
from connectors.base import DELETE, UPDATE, ExecAction
from connectors.csvfiles import CsvConnector
from connectors.fileformat import TMP_MARK
from pii.core.config import StoreConfig
from pii.core.errors import StoreError
from pii.core.policy import redact_fields
from pii.core.subject import Subject, SubjectMatcher

MATCHER = SubjectMatcher(Subject.build(emails=["alice.smith@x.org"]))


# --------------------------------------------------------------------------- helpers
def make_store(tmp_path: Path, files: dict[str, bytes], **options) -> tuple[CsvConnector, Path, list[str]]:
    folder = tmp_path / "exports"
    folder.mkdir(exist_ok=True)
    for name, content in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    messages: list[str] = []
    store = StoreConfig(name="exports", kind="csv", options={"path": str(folder), **options}, base_dir=tmp_path)
    return CsvConnector(store, progress=lambda _s, m: messages.append(m)), folder, messages


def delete(rel: str, row: int, action_id: str | None = None) -> ExecAction:
    return ExecAction(action_id or f"d{row}", rel, {"file": rel, "row": row}, DELETE)


def update(rel: str, row: int, updates: dict, action_id: str | None = None) -> ExecAction:
    return ExecAction(action_id or f"u{row}", rel, {"file": rel, "row": row}, UPDATE, updates)


def run(conn: CsvConnector, actions: list[ExecAction]) -> list[tuple[list[str], int, str | None]]:
    calls: list[tuple[list[str], int, str | None]] = []
    conn.apply(actions, lambda ids, rows, detail: calls.append((ids, rows, detail)), MATCHER)
    return calls


def temps(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if TMP_MARK in p.name)


# --------------------------------------------------------------------------- byte-exact rewrites
def test_when_the_middle_row_of_a_crlf_bom_file_is_deleted_then_every_other_byte_is_identical(tmp_path):
    header = b"\xef\xbb\xbfemail,name,notes\r\n"
    first = b'bob@x.org,"Bob Jones" ,  odd spacing \r\n'
    middle = b'alice.smith@x.org,Alice,"said ""hi"""\r\n'
    last = b'"carol@x.org",Carol,"a, b"'  # no final line ending
    conn, folder, messages = make_store(tmp_path, {"a.csv": header + first + middle + last})

    calls = run(conn, [delete("a.csv", 2, "act-1")])

    assert (folder / "a.csv").read_bytes() == header + first + last
    assert calls == [(["act-1"], 1, None)]
    assert messages[-1] == "a.csv: 1 rows deleted, 0 rows updated"
    assert temps(folder) == []


def test_when_a_record_with_a_quoted_newline_is_deleted_then_all_its_lines_go_and_the_rest_stay(tmp_path):
    header = b"email,notes\n"
    bob = b'bob@x.org,"line one\nline two, ""quoted""\r\nline three"\n'
    alice = b'alice.smith@x.org,"first\n\nsecond"\n'
    carol = b"carol@x.org,plain\n"
    conn, folder, _ = make_store(tmp_path, {"a.csv": header + bob + alice + carol})

    calls = run(conn, [delete("a.csv", 2)])

    assert (folder / "a.csv").read_bytes() == header + bob + carol
    assert calls == [(["d2"], 1, None)]
    assert [r["email"] for _, r in conn.iter_records("a.csv")] == ["bob@x.org", "carol@x.org"]


def test_when_a_field_is_updated_in_a_semicolon_file_then_only_that_record_is_reserialised(tmp_path):
    header = b"name;email;notes\r\n"
    bob = b'Bob Jones;bob@x.org;"likes a, b; and c"\r\n'
    alice = b'"Alice";alice.smith@x.org;"called; twice"\r\n'
    carol = b"Carol ;  carol@x.org;ok\r\n"
    conn, folder, messages = make_store(tmp_path, {"a.csv": header + bob + alice + carol})

    calls = run(conn, [update("a.csv", 2, {"email": None, "notes": "[redacted]; see ticket"})])

    assert (folder / "a.csv").read_bytes() == header + bob + b'Alice;;"[redacted]; see ticket"\r\n' + carol
    assert calls == [(["u2"], 1, None)]
    assert messages[-1] == "a.csv: 0 rows deleted, 1 rows updated"


def test_when_the_last_record_has_no_line_ending_and_is_updated_then_it_still_has_none(tmp_path):
    conn, folder, _ = make_store(tmp_path, {"a.csv": b"email,name\nbob@x.org,Bob\nalice.smith@x.org,Alice"})

    run(conn, [update("a.csv", 2, {"Name": "multi\nline"})])  # column names compare case-insensitively

    assert (folder / "a.csv").read_bytes() == b'email,name\nbob@x.org,Bob\nalice.smith@x.org,"multi\nline"'


def test_when_a_cp1252_file_is_rewritten_then_it_stays_cp1252(tmp_path):
    content = "name,email\r\nZoë O’Brien,zoe@x.org\r\nAlice Smith,alice.smith@x.org\r\nRené,rene@x.org\r\n"
    conn, folder, _ = make_store(tmp_path, {"legacy.csv": content.encode("cp1252")})

    run(conn, [update("legacy.csv", 2, {"name": "Anonyme – café"}), delete("legacy.csv", 3)])

    expected = "name,email\r\nZoë O’Brien,zoe@x.org\r\nAnonyme – café,alice.smith@x.org\r\n".encode("cp1252")
    assert (folder / "legacy.csv").read_bytes() == expected


def test_when_a_new_value_cannot_be_encoded_in_the_files_encoding_then_store_error_and_file_unchanged(tmp_path):
    original = "name,email\r\nAlice Smith,alice.smith@x.org\r\nRené,rene@x.org\r\n".encode("cp1252")
    conn, folder, _ = make_store(tmp_path, {"legacy.csv": original})

    with pytest.raises(StoreError) as err:
        run(conn, [update("legacy.csv", 1, {"name": "名前"})])

    assert "legacy.csv" in str(err.value) and "cp1252" in str(err.value)
    assert "名前" not in str(err.value)
    assert (folder / "legacy.csv").read_bytes() == original
    assert temps(folder) == []


@pytest.mark.parametrize("bom, codec", [
    pytest.param(b"", "utf-8", id="utf8-without-bom-stays-without"),
    pytest.param(codecs.BOM_UTF8, "utf-8", id="utf8-bom"),
    pytest.param(codecs.BOM_UTF16_LE, "utf-16-le", id="utf16-le"),
    pytest.param(codecs.BOM_UTF16_BE, "utf-16-be", id="utf16-be"),
])
def test_when_a_file_is_rewritten_then_its_encoding_and_bom_are_kept(tmp_path, bom, codec):
    def encoded(*lines: str) -> bytes:
        return bom + "".join(lines).encode(codec)

    head, bob, alice = "email;name\r\n", "bob@x.org;Björn\r\n", "alice.smith@x.org;Alice\r\n"
    conn, folder, _ = make_store(tmp_path, {"a.csv": encoded(head, bob, alice)})

    run(conn, [delete("a.csv", 2)])

    assert (folder / "a.csv").read_bytes() == encoded(head, bob)


# --------------------------------------------------------------------------- numbering equals locate's
# Each file as segments: ("keep", text) holds no data record (header, blank lines); ("rec", text) is one.
TRICKY = [
    pytest.param("utf-8", [("keep", "\ufeffemail,notes\r\n"), ("rec", "bob@x.org,hi\r\n"), ("keep", "\r\n"),
                           ("rec", 'alice.smith@x.org,"two\r\nlines"\r\n'), ("keep", "\r\n\r\n"),
                           ("rec", "carol@x.org,end\r\n")], id="crlf-bom-blank-lines"),
    pytest.param("utf-8", [("keep", "\n\nemail,notes\n"), ("rec", 'bob@x.org,"a\n\nb"\n'), ("keep", "\n"),
                           ("rec", 'x@x.org,"say ""hi""\nthen, go"\n'), ("rec", "carol@x.org,z")],
                 id="blank-lines-before-header-and-inside-quotes-no-final-newline"),
    pytest.param("utf-8", [("keep", "id,height,notes\n"), ("rec", '1,5\'10",tall\n'),
                           ("rec", '2,6\'1",she said "bye\n'), ("rec", '3,5\'2",short\n'), ("rec", "4,5,x\n")],
                 id="stray-quotes-inside-unquoted-fields"),
    pytest.param("utf-8", [("keep", "a,b\r"), ("rec", "1,2\r"), ("keep", "\r"), ("rec", '3,"x\ry"\r'),
                           ("rec", "5,6\r")], id="old-mac-cr-line-endings"),
    pytest.param("utf-16", [("keep", "email\tnote\r\n"), ("rec", "bob@x.org\t\"tab\there\"\r\n"),
                            ("keep", "\r\n"), ("rec", "alice.smith@x.org\tok\r\n")], id="utf16-tsv"),
    pytest.param("cp1252", [("keep", "name;note\n"), ("rec", 'Zoë;"é\n’"\n'), ("keep", "\n"),
                            ("rec", "René;x\n")], id="cp1252-semicolon"),
]


@pytest.mark.parametrize("encoding, segments", TRICKY)
def test_when_any_single_record_is_deleted_then_exactly_its_segment_goes_as_locate_numbers_it(
        tmp_path, encoding, segments):
    def encoded(segs) -> bytes:
        return "".join(text for _, text in segs).encode(encoding)

    records = [i for i, (kind, _) in enumerate(segments) if kind == "rec"]
    conn, folder, _ = make_store(tmp_path, {"a.csv": encoded(segments)})
    before = list(conn.iter_records("a.csv"))
    assert [n for n, _ in before] == list(range(1, len(records) + 1))  # locate counts the records we cut

    for n, seg in enumerate(records, 1):
        (folder / "a.csv").write_bytes(encoded(segments))
        calls = run(conn, [delete("a.csv", n)])
        assert calls == [([f"d{n}"], 1, None)]
        assert (folder / "a.csv").read_bytes() == encoded(segments[:seg] + segments[seg + 1:]), f"row {n}"
        after = [r for _, r in conn.iter_records("a.csv")]
        assert after == [r for m, r in before if m != n]


def test_when_every_data_record_is_deleted_then_the_file_keeps_its_header(tmp_path):
    conn, folder, _ = make_store(tmp_path, {"a.csv": b"\xef\xbb\xbfemail\r\nbob@x.org\r\n\r\nalice.smith@x.org\r\n"})

    calls = run(conn, [delete("a.csv", 1, "a"), delete("a.csv", 2, "b")])

    assert (folder / "a.csv").read_bytes() == b"\xef\xbb\xbfemail\r\n\r\n"
    assert calls == [(["a", "b"], 2, None)]
    assert list(conn.iter_records("a.csv")) == []


# --------------------------------------------------------------------------- errors and idempotence
def test_when_an_update_names_an_unknown_column_then_store_error_names_store_file_and_column(tmp_path):
    original = b"email,name\nalice.smith@x.org,Alice\n"
    conn, folder, _ = make_store(tmp_path, {"a.csv": original})
    calls: list = []

    with pytest.raises(StoreError) as err:
        conn.apply([update("a.csv", 1, {"phone": "+44 20 7946 0123"})], lambda *a: calls.append(a), MATCHER)

    message = str(err.value)
    assert "exports" in message and "a.csv" in message and "phone" in message
    assert "7946" not in message
    assert calls == []
    assert (folder / "a.csv").read_bytes() == original
    assert temps(folder) == []


def test_when_a_row_lies_beyond_the_end_of_the_file_then_the_action_affects_no_rows(tmp_path):
    original = b"email\nbob@x.org\n\nalice.smith@x.org\n"
    conn, folder, messages = make_store(tmp_path, {"a.csv": original})
    os.utime(folder / "a.csv", ns=(1_000_000_000, 1_000_000_000))

    calls = run(conn, [delete("a.csv", 3), update("a.csv", 7, {"email": None})])

    assert calls == [(["d3", "u7"], 0, None)]
    assert messages[-1] == "a.csv: 0 rows deleted, 0 rows updated"
    assert (folder / "a.csv").read_bytes() == original
    assert (folder / "a.csv").stat().st_mtime_ns == 1_000_000_000  # not rewritten at all
    assert temps(folder) == []


def test_when_the_file_is_gone_then_its_actions_affect_no_rows(tmp_path):
    conn, _, _ = make_store(tmp_path, {"other.csv": b"email\nbob@x.org\n"})

    assert run(conn, [delete("gone.csv", 1)]) == [(["d1"], 0, None)]


def test_when_an_update_sets_values_already_there_then_no_row_counts_as_changed(tmp_path):
    original = b'email,name\n"alice.smith@x.org",Alice\n'
    conn, folder, _ = make_store(tmp_path, {"a.csv": original})

    assert run(conn, [update("a.csv", 1, {"name": "Alice"})]) == [(["u1"], 0, None)]
    assert (folder / "a.csv").read_bytes() == original  # not even re-quoted


def test_when_several_files_have_actions_then_each_gets_one_rewrite_and_one_done_call(tmp_path):
    conn, folder, messages = make_store(tmp_path, {
        "a.csv": b"email,name\nalice.smith@x.org,Alice\nbob@x.org,Bob\n",
        "sub/b.csv": b"email\r\nx@x.org\r\nalice.smith@x.org\r\n",
    })

    calls = run(conn, [delete("a.csv", 1, "1"), update("sub/b.csv", 2, {"email": "gone"}, "2"),
                       update("a.csv", 1, {"name": "ignored: row deleted"}, "3")])

    assert calls == [(["1", "3"], 1, None), (["2"], 1, None)]
    assert (folder / "a.csv").read_bytes() == b"email,name\nbob@x.org,Bob\n"
    assert (folder / "sub/b.csv").read_bytes() == b"email\r\nx@x.org\r\ngone\r\n"
    assert messages[-2:] == ["a.csv: 1 rows deleted, 0 rows updated", "sub/b.csv: 0 rows deleted, 1 rows updated"]


# --------------------------------------------------------------------------- atomicity
def test_when_the_rename_fails_then_the_original_is_unchanged_and_no_temp_is_left(tmp_path, monkeypatch):
    original = b"email\r\nbob@x.org\r\nalice.smith@x.org\r\n"
    conn, folder, _ = make_store(tmp_path, {"a.csv": original})

    def crash(src, dst):
        assert Path(src).parent == Path(dst).parent and Path(src).name.startswith(".a.csv" + TMP_MARK)
        assert Path(src).read_bytes() == b"email\r\nbob@x.org\r\n"  # complete before the rename
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", crash)
    calls: list = []
    with pytest.raises(StoreError) as err:
        conn.apply([delete("a.csv", 2)], lambda *a: calls.append(a), MATCHER)

    assert "a.csv" in str(err.value)
    assert calls == []
    assert (folder / "a.csv").read_bytes() == original
    assert temps(folder) == []


def test_when_the_process_dies_mid_write_then_the_original_is_whole_and_the_next_locate_cleans_up(
        tmp_path, monkeypatch):
    original = b"email\nbob@x.org\nalice.smith@x.org\ncarol@x.org\n"
    conn, folder, _ = make_store(tmp_path, {"a.csv": original})
    real = fileformat.FileFormat._updated_record

    def die(*args, **kwargs):
        raise SystemExit("killed")  # not an OSError: stands in for a crash between writes

    monkeypatch.setattr(fileformat.FileFormat, "_updated_record", die)
    with pytest.raises(SystemExit):
        run(conn, [delete("a.csv", 1), update("a.csv", 2, {"email": None})])
    monkeypatch.setattr(fileformat.FileFormat, "_updated_record", real)

    assert (folder / "a.csv").read_bytes() == original
    assert temps(folder) == []


def test_when_a_crashed_run_left_temp_files_then_locate_and_apply_remove_them_and_never_scan_them(tmp_path):
    crash_body = b"email\nalice.smith@x.org\n"
    conn, folder, messages = make_store(tmp_path, {
        "a.csv": b"email\nbob@x.org\n",
        f".a.csv{TMP_MARK}9f3a": crash_body,  # no pid in the name
        f"sub/.b.csv{TMP_MARK}999999999-0a1b": crash_body,  # its process is gone
        "sub/b.csv": b"email\nx@x.org\n",
    }, pattern=["**/*", "**/.*"])
    live = folder / f".a.csv{TMP_MARK}1-77aa"  # pid 1 is alive: another process's rewrite in progress
    live.write_bytes(crash_body)

    assert conn.files() == ["a.csv", "sub/b.csv"]
    assert conn.locate(MATCHER) == []
    assert temps(folder) == [live.name]
    assert "2 stray temp files from an interrupted erasure removed" in messages

    old = time.time() - 2 * fileformat.STALE_TMP_SECONDS
    os.utime(live, (old, old))
    (folder / f".a.csv{TMP_MARK}abc").write_bytes(crash_body)
    run(conn, [delete("a.csv", 5)])
    assert temps(folder) == []


def test_when_a_temp_file_names_another_host_then_only_its_age_makes_it_stray(tmp_path, monkeypatch):
    """A shared folder (NFS, SMB) seen by several hosts: a pid means nothing on another host, so another
    host's temp is left alone until it is older than STALE_TMP_SECONDS; this host's dead run's goes now."""
    from pii.core.host import host_tag

    other = "0" * 8 if host_tag() != "0" * 8 else "1" * 8
    body = b"email\nalice.smith@x.org\n"
    conn, folder, messages = make_store(tmp_path, {
        "a.csv": b"email\nbob@x.org\nalice.smith@x.org\n",
        f".a.csv{TMP_MARK}999999999-{host_tag()}{'a' * 12}": body,  # this host, process gone
        f".a.csv{TMP_MARK}999999999-{other}{'b' * 12}": body,  # another host's rewrite, maybe running
    }, pattern=["**/*", "**/.*"])
    (found,) = conn.locate(MATCHER)  # the temps are never scanned
    assert temps(folder) == [f".a.csv{TMP_MARK}999999999-{other}{'b' * 12}"]
    old = time.time() - 2 * fileformat.STALE_TMP_SECONDS
    os.utime(folder / temps(folder)[0], (old, old))
    assert conn.remove_stray_temps() == 1 and temps(folder) == []

    names: list[str] = []
    real = os.replace
    monkeypatch.setattr(os, "replace", lambda src, dst: (names.append(Path(src).name), real(src, dst)))
    run(conn, [delete("a.csv", found.location["row"])])
    assert (folder / "a.csv").read_bytes() == b"email\nbob@x.org\n"
    assert names and names[0].startswith(f".a.csv{TMP_MARK}{os.getpid()}-{host_tag()}")  # its own temp: tagged


def test_when_a_file_is_rewritten_then_its_permission_bits_are_kept(tmp_path):
    conn, folder, _ = make_store(tmp_path, {"a.csv": b"email\nbob@x.org\nalice.smith@x.org\n"})
    os.chmod(folder / "a.csv", 0o640)

    run(conn, [delete("a.csv", 2)])

    assert stat.S_IMODE((folder / "a.csv").stat().st_mode) == 0o640


# --------------------------------------------------------------------------- end to end with locate
def test_when_a_subject_is_located_and_erased_then_a_second_locate_finds_nothing_and_others_stay(tmp_path):
    crm = (b"\xef\xbb\xbfcustomer_no;email;name;notes\r\n"
           b"1;bob@x.org;Bob Jones;\"asked about alice.smith@x.org's order\"\r\n"
           b"2;alice.smith@x.org;Alice Smith;vip\r\n"
           b"3;carol@x.org;Carol King;\"line one\r\nline two\"\r\n")
    leads = (b"email,source\n"
             b"dave@x.org,web\n"
             b"\n"
             b"ALICE.SMITH@X.ORG,fair\n"
             b"erin@x.org,\"referred by \"\"Erin\"\"\"\n")
    conn, folder, _ = make_store(tmp_path, {"crm.csv": crm, "leads.csv": leads})
    others = {rel: [r for _, r in conn.iter_records(rel) if "alice" not in r["email"].lower()]
              for rel in ("crm.csv", "leads.csv")}

    findings = conn.locate(MATCHER)
    assert sorted((f.location["file"], f.location["row"], f.match) for f in findings) == [
        ("crm.csv", 1, "text"), ("crm.csv", 2, "identifier"), ("leads.csv", 2, "identifier")]
    actions = [ExecAction(f"a{i}", f.container, f.location, DELETE) if f.match == "identifier"
               else ExecAction(f"a{i}", f.container, f.location, UPDATE, redact_fields(f.record, MATCHER))
               for i, f in enumerate(findings)]
    calls = run(conn, actions)

    assert sorted(rows for _, rows, _ in calls) == [1, 2]
    assert conn.locate(MATCHER) == []
    assert (folder / "crm.csv").read_bytes() == (
        b"\xef\xbb\xbfcustomer_no;email;name;notes\r\n"
        b"1;bob@x.org;Bob Jones;asked about [redacted]'s order\r\n"  # re-serialised: quotes not needed
        b"3;carol@x.org;Carol King;\"line one\r\nline two\"\r\n")
    assert (folder / "leads.csv").read_bytes() == (
        b"email,source\ndave@x.org,web\n\nerin@x.org,\"referred by \"\"Erin\"\"\"\n")
    assert [r for _, r in conn.iter_records("leads.csv")] == others["leads.csv"]
    assert [r["customer_no"] for _, r in conn.iter_records("crm.csv")] == ["1", "3"]
    assert [r for _, r in conn.iter_records("crm.csv")][1] == others["crm.csv"][1]


# --------------------------------------------------------------------------- large files
def test_when_a_200k_row_file_is_erased_then_it_streams_fast_with_flat_memory(tmp_path):
    rows = 200_000
    lines = [f'{i},person{i}@x.org,"Name {i}","note {i}, with a comma"\r\n' for i in range(1, rows + 1)]
    content = ("id,email,name,notes\r\n" + "".join(lines)).encode()
    conn, folder, _ = make_store(tmp_path, {"big.csv": content})
    targets = [1, 100_000, rows - 1]

    started = time.perf_counter()
    calls = run(conn, [delete("big.csv", n) for n in targets] + [update("big.csv", rows, {"notes": None})])
    elapsed = time.perf_counter() - started
    print(f"\n200k-row erasure: {elapsed:.2f}s, {rows / elapsed:,.0f} rows/s")

    assert calls[0][1] == 4
    expected = lines[:]
    expected[rows - 1] = f'{rows},person{rows}@x.org,Name {rows},\r\n'
    for n in sorted(targets, reverse=True):
        del expected[n - 1]
    assert (folder / "big.csv").read_bytes() == ("id,email,name,notes\r\n" + "".join(expected)).encode()

    tracemalloc.start()
    try:
        run(conn, [delete("big.csv", rows - 4)])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < len(content) // 4, f"peak {peak} bytes for a {len(content)}-byte file"
