"""CsvConnector: reading real-world CSV exports and finding one subject's records in them."""
from __future__ import annotations

from pathlib import Path

import pytest

from connectors.csvfiles import CsvConnector
from connectors.fileformat import FileFormat, FilePlan, RowFilter, match_row, sniff_dialect, unique_columns
from pii.core.classify import NUMBER, STRING
from pii.core.config import StoreConfig
from pii.core.errors import StoreError, StoreUnreachable
from pii.core.inventory import EMAIL, FREE_TEXT, NAME, PHONE, ColumnProfile
from pii.state.inventory import Inventory
from pii.core.subject import Subject, SubjectMatcher

ALICE = dict(emails=["alice.smith@x.org"], names=["Alice Smith"], phones=["+442079460123"])
EMAIL_E, PHONE_E, PERSON_E, ID_E = "EMAIL_ADDRESS", "PHONE_NUMBER", "PERSON", "ID"


# --------------------------------------------------------------------------- helpers
def make_store(tmp_path: Path, files: dict[str, bytes | str], **options) -> tuple[CsvConnector, list[str]]:
    """A folder of exports written byte for byte (str is written as UTF-8, line endings untouched)."""
    folder = tmp_path / "exports"
    folder.mkdir(exist_ok=True)
    for name, content in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    messages: list[str] = []
    inventory = options.pop("inventory", None)
    store = StoreConfig(name="exports", kind="csv", options={"path": str(folder), **options}, base_dir=tmp_path)
    conn = CsvConnector(store, progress=lambda _store, msg: messages.append(msg), inventory=inventory)
    return conn, messages


def locate(conn: CsvConnector, **subject):
    return conn.locate(SubjectMatcher(Subject.build(**subject)))


def summary(findings):
    return [(f.location["file"], f.location["row"], f.match, sorted(f.entities), f.strength) for f in findings]


# --------------------------------------------------------------------------- file formats
FORMATS = [
    pytest.param("\ufeffemail,name\nbob@x.org,Bob Jones\nalice.smith@x.org,Carol\n", "email", 2, id="utf8-bom"),
    pytest.param("email,name\r\nbob@x.org,Bob Jones\r\nalice.smith@x.org,Carol\r\n", "email", 2, id="crlf"),
    pytest.param('name;email;notes\r\nBob Jones;bob@x.org;"likes a, b; and c"\r\nCarol;ALICE.SMITH@X.ORG;ok\r\n',
                 "email", 2, id="semicolon"),
    pytest.param("name\temail\nBob Jones\tbob@x.org\nCarol\talice.smith@x.org\n", "email", 2, id="tab"),
    pytest.param("name|email\nBob Jones|bob@x.org\nCarol|alice.smith@x.org\n", "email", 2, id="pipe"),
    pytest.param('email,notes\n"bob@x.org","line one\nline two\nline three"\nalice.smith@x.org,hi\n',
                 "email", 2, id="quoted-newlines-count-records-not-lines"),
    pytest.param('email,notes\r\n"bob@x.org","said ""hi, there""\r\nand left"\r\n"alice.smith@x.org",x\r\n',
                 "email", 2, id="doubled-quotes-and-crlf-inside-quotes"),
    pytest.param("email\n\nbob@x.org\n\n\nalice.smith@x.org\n", "email", 2, id="blank-lines-hold-no-record"),
    pytest.param("email\nbob@x.org\nalice.smith@x.org", "email", 2, id="no-final-newline"),
    pytest.param("email;name\r\nbob@x.org;Bob\r\nalice.smith@x.org;Carol\r\n".encode("utf-16"), "email", 2,
                 id="utf16-with-bom"),
]


@pytest.mark.parametrize("content, column, row", FORMATS)
def test_when_a_file_has_a_common_export_format_then_the_subject_is_found_at_the_right_record(
        tmp_path, content, column, row):
    conn, _ = make_store(tmp_path, {"a.csv": content})
    findings = locate(conn, emails=["alice.smith@x.org"])
    assert [(f.location, f.match, f.entities) for f in findings] == [
        ({"file": "a.csv", "row": row}, "identifier", [EMAIL_E])]
    assert findings[0].record[column].casefold() == "alice.smith@x.org"


@pytest.mark.parametrize("content, name", [
    pytest.param("Zoë O’Brien,zoe@x.org\r\n", "Zoë O’Brien", id="cp1252-curly-apostrophe"),
    pytest.param("Zoë Müller,zoe@x.org\r\n", "Zoë Müller", id="cp1252-accents"),
])
def test_when_a_file_is_not_utf8_then_it_is_read_as_cp1252_and_noted(tmp_path, content, name):
    conn, messages = make_store(tmp_path, {"legacy.csv": ("name,email\r\n" + content).encode("cp1252")})
    findings = locate(conn, names=[name.replace("ë", "e").replace("ü", "u")])
    assert summary(findings) == [("legacy.csv", 1, "identifier", [PERSON_E], "weak")]
    assert findings[0].record["name"] == name  # decoded as cp1252, not latin-1 (’ is 0x92)
    assert "legacy.csv: not valid UTF-8, read as cp1252" in messages


def test_when_a_file_decodes_in_no_known_encoding_then_it_is_listed_not_searched_without_values(tmp_path):
    # 0x81 is invalid in UTF-8 and undefined in cp1252
    conn, messages = make_store(tmp_path, {"bad.csv": b"email\nalice.smith\x81@x.org\n"})
    assert locate(conn, emails=["alice.smith@x.org"]) == []
    (skipped,) = conn.coverage.skipped
    assert skipped["place"] == "bad.csv" and "neither UTF-8 nor" in skipped["reason"]
    assert not conn.coverage.complete
    assert "alice" not in str(conn.coverage.to_dict()) and not any("alice" in m for m in messages)


@pytest.mark.parametrize("sample, expected", [
    ("a,b,c\n1,2,3\n", (",", False)),
    ("a;b;c\n1;2,5;3\n", (";", False)),
    ("a\tb\n1\t2\n", ("\t", False)),
    ("a|b\n1|2\n", ("|", False)),
    ('"x, y";z\n"1, 2";3\n"4, 5";6\n', (";", False)),
    ("id;name, title;email\n1;Bob, Mr;b@x.org\n", (";", False)),
    ('a, "b", c\n1, "x, y", 3\n', (",", True)),
    ("only\nvalue\n", (",", False)),
    ('id,height,notes\n' + '1,5\'10",he said "hi and left\n' * 2000, (",", False)),
])
def test_when_sniffing_a_sample_then_the_delimiter_reads_records_as_wide_as_the_header(sample, expected):
    assert sniff_dialect(sample) == expected


def test_when_the_delimiter_is_configured_then_it_overrides_sniffing(tmp_path):
    conn, _ = make_store(tmp_path, {"a.csv": "email;name,x\nalice.smith@x.org;Carol,y\n"}, delimiter=";")
    findings = locate(conn, emails=["alice.smith@x.org"])
    assert [f.record for f in findings] == [{"email": "alice.smith@x.org", "name,x": "Carol,y"}]


# --------------------------------------------------------------------------- identifiers
PHONE_VALUES = [
    ("020 7946 0123", True), ("+44 20 7946 0123", True), ("(020) 7946-0123", True), ("0044 20 7946 0123", True),
    ("+44 (0)20 7946 0123", True), ("02079460123", True), ("０２０ ７９４６ ０１２３", True),
    ("020 7946 0124", False), ("020 7946 012", False), ("+1 207 946 0123", False), ("", False),
]


@pytest.mark.parametrize("value, matches", PHONE_VALUES)
def test_when_a_phone_column_holds_a_format_of_the_number_then_it_matches_and_near_misses_do_not(
        tmp_path, value, matches):
    conn, _ = make_store(tmp_path, {"a.csv": f"customer,phone\nCarol,{value}\n"})
    findings = locate(conn, phones=["+442079460123"])
    assert summary(findings) == ([("a.csv", 1, "identifier", [PHONE_E], "strong")] if matches else [])


@pytest.mark.parametrize("value, matches", [
    ("alice.smith@x.org", True), ("ALICE.Smith@X.ORG", True), (" alice.smith@x.org ", True),
    ("mailto:alice.smith@x.org", True),
    ("malice.smith@x.org", False), ("alice.smith@x.org.uk", False), ("alice.smith@x.or", False),
    ("alice_smith@x.org", False),
])
def test_when_an_email_column_holds_a_case_variant_or_decoy_then_only_the_subject_matches(tmp_path, value, matches):
    conn, _ = make_store(tmp_path, {"a.csv": f"email,plan\n{value},gold\n"})
    findings = locate(conn, emails=["alice.smith@x.org"])
    assert summary(findings) == ([("a.csv", 1, "identifier", [EMAIL_E], "strong")] if matches else [])


@pytest.mark.parametrize("header, row, matches", [
    ("name", "Alice Smith", True), ("name", "\"Smith, Alice\"", True), ("name", "ALICE  SMITH", True),
    ("full_name", "alice smith", True), ("name", "Alicia Smith", False), ("name", "Alice Smithson", False),
    ("name", "Alice", False),
    ("first_name,last_name", "Alice,Smith", True), ("FirstName,Surname", "ALICE,smith", True),
    ("first_name,last_name", "Alicia,Smith", False), ("first_name,last_name", "Alice,Jones", False),
])
def test_when_a_name_column_holds_the_name_then_it_matches_weakly_and_other_names_do_not(
        tmp_path, header, row, matches):
    conn, _ = make_store(tmp_path, {"a.csv": f"{header},plan\n{row},gold\n"})
    findings = locate(conn, names=["Alice Smith"])
    assert summary(findings) == ([("a.csv", 1, "identifier", [PERSON_E], "weak")] if matches else [])


@pytest.mark.parametrize("subject, entities, strength", [
    (dict(names=["Alice Smith"]), [PERSON_E], "weak"),
    (dict(names=["Alice Smith"], emails=["alice.smith@x.org"]), [EMAIL_E, PERSON_E], "strong"),
    (dict(names=["Alice Smith"], phones=["+442079460123"]), [PERSON_E, PHONE_E], "strong"),
])
def test_when_a_row_matches_then_it_is_weak_only_if_a_name_is_all_the_evidence(tmp_path, subject, entities, strength):
    conn, _ = make_store(tmp_path, {"a.csv": "name,email,phone\nAlice Smith,alice.smith@x.org,020 7946 0123\n"})
    assert summary(locate(conn, **subject)) == [("a.csv", 1, "identifier", entities, strength)]


@pytest.mark.parametrize("header, value, matches", [
    ("customer_no", "123", True), ("Customer_No", "123", True), ("customer_no", " 123 ", True),
    ("customer_no", "1234", False), ("customer_no", "0123", False), ("order_no", "123", False),
])
def test_when_an_id_column_is_named_by_the_id_key_then_a_short_id_matches_exactly(tmp_path, header, value, matches):
    conn, _ = make_store(tmp_path, {"a.csv": f"{header},email\n999,bob@x.org\n{value},carol@x.org\n"})
    findings = locate(conn, ids=["customer_no=123"])
    assert summary(findings) == ([("a.csv", 2, "identifier", [ID_E], "strong")] if matches else [])
    if matches:
        assert findings[0].record == {header: value, "email": "carol@x.org"}


# --------------------------------------------------------------------------- free text
@pytest.mark.parametrize("notes, subject, entities, strength", [
    ("Called Alice Smith back on 020 7946 0123", ALICE, [PERSON_E, PHONE_E], "strong"),
    ("Forwarded to ALICE.SMITH@x.org for review", ALICE, [EMAIL_E], "strong"),
    ("Spoke with Smith, Alice about her refund", dict(names=["Alice Smith"]), [PERSON_E], "weak"),
    ("Ticket raised for customer CUST-99812", dict(ids=["customer_no=CUST-99812"]), [ID_E], "strong"),
])
def test_when_another_persons_notes_mention_the_subject_then_a_text_match_keeps_only_the_notes(
        tmp_path, notes, subject, entities, strength):
    conn, _ = make_store(tmp_path, {"a.csv": f'email,name,notes\nbob@x.org,Bob Jones,"{notes}"\n'})
    findings = locate(conn, **subject)
    assert summary(findings) == [("a.csv", 1, "text", entities, strength)]
    assert findings[0].record == {"notes": notes}  # Bob's email and name stay out of the package


@pytest.mark.parametrize("notes", [
    "Spoke with Alicia Smith about malice.smith@x.org",
    "Phone 020 7946 0124 rang out",
    "Customer CUST-998120 closed",
])
def test_when_notes_hold_only_near_misses_then_nothing_matches(tmp_path, notes):
    conn, _ = make_store(tmp_path, {"a.csv": f"email,notes\nbob@x.org,{notes}\n"})
    assert locate(conn, **ALICE, ids=["customer_no=CUST-99812"]) == []


def test_when_a_row_matches_by_identifier_and_text_then_one_identifier_finding_merges_the_evidence(tmp_path):
    conn, _ = make_store(tmp_path, {"a.csv": "email,notes\nalice.smith@x.org,Alice Smith called from 020 7946 0123\n"})
    findings = locate(conn, **ALICE)
    assert summary(findings) == [("a.csv", 1, "identifier", [EMAIL_E, PERSON_E, PHONE_E], "strong")]
    assert findings[0].record == {"email": "alice.smith@x.org", "notes": "Alice Smith called from 020 7946 0123"}


@pytest.mark.parametrize("options", [{}, {"text_columns": ["misc"]}])
def test_when_a_column_is_unclassified_or_listed_in_text_columns_then_it_is_searched_inside(tmp_path, options):
    # every cell is searched (issue 10): text_columns only fixes the column's kind in the inventory
    conn, _ = make_store(tmp_path, {"a.csv": "email,misc\nbob@x.org,met Alice Smith\n"}, **options)
    findings = locate(conn, names=["Alice Smith"])
    assert summary(findings) == [("a.csv", 1, "text", [PERSON_E], "weak")]


# --------------------------------------------------------------------------- odd shapes
def test_when_header_names_repeat_then_they_are_numbered_and_each_is_checked(tmp_path):
    conn, _ = make_store(tmp_path, {"a.csv": "email,email,name\nbob@x.org,alice.smith@x.org,Carol\n"})
    findings = locate(conn, emails=["alice.smith@x.org"])
    assert [f.record for f in findings] == [{"email": "bob@x.org", "email_2": "alice.smith@x.org", "name": "Carol"}]


@pytest.mark.parametrize("header, expected", [
    (["a", "a", "A", "a_2"], ["a", "a_2", "A_3", "a_2_2"]),
    ([" email ", "", "x"], ["email", "column_2", "x"]),
])
def test_when_header_names_are_blank_or_repeat_then_unique_names_are_made(header, expected):
    assert unique_columns(header) == expected


def test_when_a_row_is_short_then_it_is_padded_and_when_long_extras_are_kept_and_searched(tmp_path):
    conn, _ = make_store(tmp_path, {"a.csv": "email,name\nalice.smith@x.org\nbob@x.org,Bob,alice.smith@x.org\n"})
    findings = locate(conn, emails=["alice.smith@x.org"])
    assert [(f.location["row"], f.match, f.record) for f in findings] == [
        (1, "identifier", {"email": "alice.smith@x.org", "name": ""}),
        (2, "text", {"_extra": ["alice.smith@x.org"]}),
    ]


@pytest.mark.parametrize("content", ["", "email,name\n", "\n\n"])
def test_when_a_file_is_empty_or_header_only_then_it_yields_nothing_without_error(tmp_path, content):
    conn, messages = make_store(tmp_path, {"a.csv": content})
    assert locate(conn, **ALICE) == []
    assert messages == ["a.csv: 0 rows scanned, 0 matched"]


@pytest.mark.parametrize("header, value, subject", [
    pytest.param("name", "Pat O'Brien", dict(names=["Pat O'Brien"]), id="apostrophe-name"),
    pytest.param("notes", "met Pat O'Brien", dict(names=["Pat O'Brien"]), id="apostrophe-name-in-text"),
    pytest.param("phone", "0800 123 FLOW", dict(phones=["+448001233569"]), id="letters-for-digits"),
    pytest.param("phone", "02982 15 123456", dict(phones=["+5492982123456"], region="AR"),
                 id="carrier-code-inside-number"),
    pytest.param("email", "ALICE.SMITH@X.ORG", dict(emails=["alice.smith@x.org"]), id="email-case"),
    pytest.param("name", "Zoë Müller", dict(names=["zoe muller"]), id="accents"),
])
def test_when_a_row_matches_in_detail_then_the_prefilter_lets_it_through(tmp_path, header, value, subject):
    conn, _ = make_store(tmp_path, {"a.csv": f"{header},other\n\"{value}\",x\n"})
    findings = locate(conn, **subject)
    assert len(findings) == 1
    matcher = SubjectMatcher(Subject.build(**subject))
    kind = {"name": NAME, "notes": FREE_TEXT, "phone": PHONE, "email": EMAIL}[header]
    plan = FilePlan.build([header, "other"], {header: ColumnProfile(kind)}, matcher, "_extra")
    assert match_row(matcher, plan, [value, "x"])[0]
    assert RowFilter(matcher, plan)([value, "x"])


# --------------------------------------------------------------------------- folder, files, records
def test_when_the_folder_is_missing_then_check_and_locate_raise_store_unreachable(tmp_path):
    store = StoreConfig(name="exports", kind="csv", options={"path": "nowhere"}, base_dir=tmp_path)
    conn = CsvConnector(store)
    with pytest.raises(StoreUnreachable) as err:
        conn.check()
    assert err.value.store == "exports" and "does not exist" in str(err.value)
    assert str(tmp_path / "nowhere") in str(err.value)  # relative path resolved against base_dir
    with pytest.raises(StoreUnreachable):
        locate(conn, **ALICE)


def test_when_the_path_is_a_file_then_check_raises_store_unreachable(tmp_path):
    (tmp_path / "file.csv").write_text("email\n")
    conn = CsvConnector(StoreConfig(name="exports", kind="csv", options={"path": "file.csv"}, base_dir=tmp_path))
    with pytest.raises(StoreUnreachable):
        conn.check()


@pytest.mark.parametrize("options, expected", [
    ({}, ["A.CSV", "b.tsv", "sub/deeper/c.csv", "sub/old_d.csv"]),
    ({"skip_files": ["old_*"]}, ["A.CSV", "b.tsv", "sub/deeper/c.csv"]),
    ({"skip_files": ["sub/*"]}, ["A.CSV", "b.tsv"]),
    ({"pattern": "*.csv"}, ["A.CSV"]),
    ({"pattern": ["**/*.txt"]}, ["notes.txt"]),
])
def test_when_listing_files_then_patterns_recurse_ignore_case_and_skip_files_apply(tmp_path, options, expected):
    files = {name: "email\n" for name in ["A.CSV", "b.tsv", "sub/deeper/c.csv", "sub/old_d.csv", "notes.txt"]}
    conn, _ = make_store(tmp_path, files, **options)
    assert conn.files() == expected


def test_when_files_are_nested_then_locations_use_the_relative_posix_path(tmp_path):
    conn, messages = make_store(tmp_path, {"2024/q1/crm.csv": "email\nbob@x.org\nalice.smith@x.org\n"})
    findings = locate(conn, **ALICE)
    assert [(f.location, f.container) for f in findings] == [({"file": "2024/q1/crm.csv", "row": 2}, "2024/q1/crm.csv")]
    assert messages == ["2024/q1/crm.csv: 2 rows scanned, 1 matched"]
    assert not any("alice" in m.casefold() for m in messages)


def test_when_iterating_records_then_numbering_matches_locate(tmp_path):
    conn, _ = make_store(tmp_path, {"a.csv": 'email,notes\r\nbob@x.org,"two\r\nlines"\r\n\r\nalice.smith@x.org,x\r\n'})
    records = list(conn.iter_records("a.csv"))
    assert records == [(1, {"email": "bob@x.org", "notes": "two\r\nlines"}),
                       (2, {"email": "alice.smith@x.org", "notes": "x"})]
    assert [f.location["row"] for f in locate(conn, **ALICE)] == [2]


def test_when_a_relative_path_leaves_the_folder_then_iter_records_refuses(tmp_path):
    (tmp_path / "secret.csv").write_text("email\nx@y.org\n")
    conn, _ = make_store(tmp_path, {"a.csv": "email\n"})
    with pytest.raises(StoreError):
        list(conn.iter_records("../secret.csv"))


@pytest.mark.parametrize("column, values, expected", [
    ("amount", ["12", "3.50", "-4", ""], NUMBER),
    ("contact", ["07700900123", "07700900124"], STRING),  # digit runs that may be phones
    ("phone", ["12", "13"], STRING),  # a named column keeps its name's meaning
    ("code", ["12", "AB"], STRING),
    ("empty", ["", " "], STRING),
])
def test_when_sampled_values_are_all_plain_numbers_then_the_column_is_typed_number(column, values, expected):
    assert FileFormat.column_type(column, values) == expected


# --------------------------------------------------------------------------- inventory cache
def test_when_locating_twice_then_the_second_run_uses_the_inventory_cache(tmp_path):
    inventory = Inventory(f"sqlite:///{tmp_path}/state.db")
    conn, _ = make_store(tmp_path, {"a.csv": "email,notes\nalice.smith@x.org,hello\n"}, inventory=inventory)
    first = locate(conn, **ALICE)
    assert (inventory.hits, inventory.misses) == (0, 1)
    second = locate(conn, **ALICE)
    assert (inventory.hits, inventory.misses) == (1, 1)
    assert summary(first) == summary(second) == [("a.csv", 1, "identifier", [EMAIL_E], "strong")]
    kinds = {r["column_name"]: r["kind"] for r in inventory.rows("exports")}
    assert kinds == {"email": EMAIL, "notes": FREE_TEXT}
    assert {r["container"] for r in inventory.rows("exports")} == {"a.csv"}

    (tmp_path / "exports" / "a.csv").write_text("email,notes,phone\nalice.smith@x.org,hello,1\n")
    locate(conn, **ALICE)  # a changed header is a new signature: classified again
    assert (inventory.hits, inventory.misses) == (1, 2)
