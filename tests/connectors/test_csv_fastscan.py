"""The CSV connector's raw-text prefilter (connectors/csvscan.py) against the csv module's own reading:
same records found at the same row numbers, whatever the quoting, line endings or block boundaries; and
the awkward files (no header row, an unterminated quote, an email in a code column) read honestly."""
from __future__ import annotations

import random
from pathlib import Path

import pytest

from connectors import csvscan
from connectors.csvfiles import CsvConnector
from connectors.fileformat import FilePlan, RowFilter
from pii.core.config import StoreConfig
from pii.core.subject import Subject, SubjectMatcher

SUBJECT = dict(emails=["nora.quill@x.org"], names=["Nora Quill"], phones=["+447700900456"], region="GB")
TOKENS = ["nora.quill@x.org", "NORA.QUILL@X.ORG", "07700 900456", "+44 7700 900 456", "Nora Quill",
          "Quill, Nora", "Zoë Quill"]
DECOYS = ["nora.quill@x.org.uk", "07700 900457", "Nora Quillan", "Norah Quill", "quill pen"]


def store(tmp_path: Path, files: dict[str, str | bytes], **options) -> tuple[CsvConnector, list[str]]:
    folder = tmp_path / "exports"
    folder.mkdir(exist_ok=True)
    for name, content in files.items():
        (folder / name).write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    messages: list[str] = []
    cfg = StoreConfig(name="exports", kind="csv", options={"path": str(folder), **options}, base_dir=tmp_path)
    return CsvConnector(cfg, progress=lambda _s, m: messages.append(m)), messages


def slow_reference(conn: CsvConnector, rel: str, matcher: SubjectMatcher) -> list[tuple]:
    """What the record-by-record path (the csv module over the whole file) finds."""
    out = []
    with conn.fileformat.open(rel) as (columns, extra_key, rows):
        rows = list(rows)
        profiles = conn.fileformat.profiles(rel, columns, [r for _, r in rows[:50]])
        plan = FilePlan.build(columns, profiles, matcher, extra_key)
        candidate = RowFilter(matcher, plan)
        for n, row in rows:
            if candidate(row):
                f = conn.fileformat.finding(rel, n, row, plan, matcher)
                if f is not None:
                    out.append((f.location["row"], f.match, tuple(f.entities), tuple(sorted(f.record.items()))))
    return out


def fast(conn: CsvConnector, matcher: SubjectMatcher) -> list[tuple]:
    found = conn.locate(matcher)
    return [(f.location["row"], f.match, tuple(f.entities), tuple(sorted(f.record.items()))) for f in found]


def random_field(rng: random.Random) -> str:
    words = ["alpha", "beta", "x,y", 'say "hi"', "line\nbreak", "crlf\r\ninside", "", " ", "12", "5\" screen",
             "café", "naïve", "O'Brien"]
    parts = [rng.choice(words) for _ in range(rng.randint(0, 3))]
    if rng.random() < 0.08:
        parts.append(rng.choice(TOKENS))
    if rng.random() < 0.05:
        parts.append(rng.choice(DECOYS))
    return " ".join(parts)


def encode_field(value: str, rng: random.Random) -> str:
    needs = any(c in value for c in ',"\r\n') or rng.random() < 0.2
    if needs:
        return '"' + value.replace('"', '""') + '"'
    return value


def random_csv(rng: random.Random, rows: int) -> str:
    eol = rng.choice(["\n", "\r\n"])
    lines = ["email,name,notes,code" + eol]
    for _ in range(rows):
        if rng.random() < 0.05:
            lines.append(eol)  # a blank line: no record
            continue
        values = [rng.choice(["bob@y.org", "nora.quill@x.org", "carol@z.org"]) if rng.random() < 0.9 else "",
                  rng.choice(["Bob Jones", "Nora Quill", "Carol King", "Zoë Quill"]),
                  random_field(rng), rng.choice(["A-1", "B-2", "nora.quill@x.org", "x"])]
        lines.append(",".join(encode_field(v, rng) for v in values) + eol)
    return "".join(lines)


@pytest.mark.parametrize("seed", range(12))
def test_when_blocks_are_tiny_then_the_fast_scan_finds_what_the_csv_reader_finds_row_for_row(tmp_path, seed,
                                                                                             monkeypatch):
    rng = random.Random(seed)
    text = random_csv(rng, 300)
    conn, _ = store(tmp_path, {"f.csv": text})
    matcher = SubjectMatcher(Subject.build(**SUBJECT))
    expected = slow_reference(conn, "f.csv", matcher)
    monkeypatch.setattr(csvscan, "BLOCK_CHARS", rng.choice([1, 7, 64, 333]))
    got = fast(conn, matcher)
    assert got == expected
    assert len(expected) > 5  # the generator planted the subject: the comparison is not vacuous
    assert conn.coverage.complete


def test_when_nothing_of_the_subject_is_in_a_block_then_it_is_counted_not_parsed(tmp_path, monkeypatch):
    body = "".join(f'x{i}@y.org,"note\nover two lines {i}"\n' for i in range(2000))
    text = "email,notes\n" + body + "nora.quill@x.org,hello\n"
    conn, _ = store(tmp_path, {"f.csv": text})
    parsed: list[int] = []
    real = csvscan.parse_rows
    monkeypatch.setattr(csvscan, "BLOCK_CHARS", 4096)
    monkeypatch.setattr(csvscan, "parse_rows", lambda t, *a: (parsed.append(len(t)), real(t, *a))[1])
    found = conn.locate(SubjectMatcher(Subject.build(**SUBJECT)))
    assert [(f.location["row"], f.match) for f in found] == [(2001, "identifier")]
    assert sum(parsed) < len(text) / 4  # most blocks were only counted


def test_when_a_file_has_no_header_row_then_columns_are_positional_and_rows_count_from_the_first_line(tmp_path):
    conn, _ = store(tmp_path, {"f.csv": "nora.quill@x.org,Nora Quill\nbob@y.org,Bob\n"})
    found = conn.locate(SubjectMatcher(Subject.build(**SUBJECT)))
    assert [(f.location["row"], f.match) for f in found] == [(1, "identifier")]
    assert set(found[0].record) == {"col_1", "col_2"}
    assert [n for n, _ in conn.iter_records("f.csv")] == [1, 2]  # erasure numbers them the same way


def test_when_the_header_option_says_true_then_a_first_line_with_an_email_is_the_header(tmp_path):
    conn, _ = store(tmp_path, {"f.csv": "nora.quill@x.org,x\nbob@y.org,Bob\n"}, header=True)
    assert conn.locate(SubjectMatcher(Subject.build(**SUBJECT))) == []


def test_when_a_quote_never_closes_then_the_rest_is_read_line_by_line_and_the_file_is_partly_read(tmp_path):
    lines = ["email,notes", "bob@y.org,fine", 'carol@z.org,"opens and never closes',
             "dan@y.org,more", "nora.quill@x.org,swallowed by the open quote", "eve@y.org,last"]
    conn, messages = store(tmp_path, {"f.csv": "\n".join(lines) + "\n"})
    found = conn.locate(SubjectMatcher(Subject.build(**SUBJECT)))
    assert [(f.location["row"], f.match) for f in found] == [(4, "identifier")]
    assert not conn.coverage.complete
    (partial,) = conn.coverage.partial
    assert partial["place"] == "f.csv" and partial["from_line"] == 3
    assert "never closes" in partial["reason"]


def test_when_an_email_sits_in_a_column_sampled_as_codes_then_it_is_found(tmp_path):
    rows = [f"C-{i:04d},ref-{i}" for i in range(200)] + ["C-9999,nora.quill@x.org"]
    conn, _ = store(tmp_path, {"f.csv": "code,reference\n" + "\n".join(rows) + "\n"})
    found = conn.locate(SubjectMatcher(Subject.build(**SUBJECT)))
    assert [(f.location["row"], f.match) for f in found] == [(201, "identifier")]


def test_when_a_phone_hides_in_a_code_column_text_then_it_is_found_as_text(tmp_path):
    rows = [f"C-{i:04d},ref-{i}" for i in range(100)] + ['C-9999,"ring 07700 900 456 after six"']
    conn, _ = store(tmp_path, {"f.csv": "code,reference\n" + "\n".join(rows) + "\n"})
    found = conn.locate(SubjectMatcher(Subject.build(**SUBJECT)))
    assert [(f.location["row"], f.match, f.entities) for f in found] == [(101, "text", ["PHONE_NUMBER"])]


def test_when_a_file_cannot_be_decoded_then_it_is_listed_not_searched_and_the_others_are(tmp_path):
    conn, messages = store(tmp_path, {"bad.csv": b"email\n\x81\x8d\x8f\x90\x9d\xff\xfe\n",
                                      "good.csv": "email\nnora.quill@x.org\n"}, encoding="ascii")
    found = conn.locate(SubjectMatcher(Subject.build(**SUBJECT)))
    assert [f.location["file"] for f in found] == ["good.csv"]
    assert [s["place"] for s in conn.coverage.skipped] == ["bad.csv"]
    assert not conn.coverage.complete


def test_when_a_file_is_named_after_the_subject_then_progress_and_coverage_withhold_its_name(tmp_path):
    conn, messages = store(tmp_path, {"nora.quill@x.org.csv": "email\nnora.quill@x.org\n"})
    found = conn.locate(SubjectMatcher(Subject.build(**SUBJECT)))
    assert len(found) == 1
    assert not any("nora" in m.lower() for m in messages)
    assert all("nora" not in s["place"].lower() for s in conn.coverage.searched)


def test_when_an_access_package_holds_a_person_named_file_then_its_file_names_do_not_name_them(tmp_path):
    from pii.reports.package import write_access_package

    conn, _ = store(tmp_path, {"nora.quill@x.org.csv": "email\nnora.quill@x.org\n"})
    subject = Subject.build(**SUBJECT)
    found = conn.locate(SubjectMatcher(subject))
    pkg = write_access_package(tmp_path / "pkg", subject, found)
    assert pkg.files and not any("nora" in f.lower() for f in pkg.files)
    manifest = (tmp_path / "pkg" / "manifest.json").read_text()
    assert "nora.quill@x.org.csv" in manifest  # the person's own answer still says where it was found


def test_when_skip_files_leaves_a_file_out_then_coverage_lists_it_as_excluded_and_it_is_not_read(tmp_path):
    conn, _ = store(tmp_path, {"keep.csv": "email\nbob@y.org\n", "old.csv": "email\nnora.quill@x.org\n"},
                    skip_files=["old.csv"])
    assert conn.locate(SubjectMatcher(Subject.build(**SUBJECT))) == []
    assert conn.coverage.excluded == [{"place": "old.csv", "reason": "listed under skip_files"}]
    assert [s["place"] for s in conn.coverage.searched] == ["keep.csv"] and conn.coverage.complete


@pytest.mark.parametrize("seed", [11, 12, 13])
def test_when_text_is_accent_heavy_then_the_ascii_prefilter_passes_every_block_the_exact_fold_passes(seed):
    """RawNeedles.hit takes the NFKD/ASCII path for ASCII tokens: it must pass every block `hit_exact` (fold
    run by run) passes, on random text built from accented, decomposed, ß, ligature, apostrophe and
    other-script pieces with the tokens planted in such forms."""
    import unicodedata

    rnd = random.Random(seed)
    matcher = SubjectMatcher(Subject.build(names=["Zoe Strauss"], emails=["zoe.o'neil@x.org"],
                                           phones=["07700 900456"], region="GB"))
    needles = csvscan.RawNeedles(matcher)
    pieces = ["Zoë", "STRAUß", "Strau\u0308ss", "zoe.o\u2019neil@x.org", "ZOE.O'NEIL@X.ORG", "0770\u00a0090\u00a00456",
              "\ufb01ne", "Ørsted", "Сергей", "café", "x", ",", "\n", "\"", "07700 900 456", "Strauss", "ŉ",
              "\u0667\u0667\u0660\u0660", "Stra", "uss", "\u00e9", "\ufffd"]
    passed = exact_passed = 0
    for _ in range(400):
        text = "".join(rnd.choice(pieces) + rnd.choice(["", " ", "-"]) for _ in range(rnd.randint(1, 12)))
        if rnd.random() < 0.3:
            text = unicodedata.normalize("NFD", text)
        block = text.encode()
        exact = needles.hit_exact(block)
        exact_passed += exact
        passed += needles.hit(block)
        assert needles.hit(block) or not exact, "the fast path dropped a block the exact fold keeps"
    assert 0 < exact_passed <= passed < 400  # both outcomes occur, so the check above bites


def test_when_any_character_folds_to_other_ascii_than_nfkd_gives_then_it_is_a_listed_special():
    """The fast path rewrites only `fold_specials()` before NFKD: no character of the Basic Multilingual
    Plane may differ without being listed; and the non-ASCII digit test knows every decimal digit (it
    reads planes 0 and 1 only)."""
    import unicodedata

    from pii.core.subject import fold

    listed = dict(csvscan.fold_specials())
    for code in range(0x80, 0x10000):
        if 0xD800 <= code < 0xE000:
            continue
        ch = chr(code)
        want = "".join(c for c in fold(ch) if c.isascii())
        got = unicodedata.normalize("NFKD", listed.get(ch, ch)).encode("ascii", "ignore").decode().lower()
        assert got == want, hex(code)
    assert not [c for c in range(0x20000, 0x110000) if unicodedata.category(chr(c)) == "Nd"]
    assert csvscan._non_ascii_digit_re().search("total \u0663\u0664".encode())  # Arabic-Indic digits
