"""The access package: manifest per CONTRACT, data files, redaction, HTML summary, encryption, safe writing."""
from __future__ import annotations

import csv
import io
import json
import re
import uuid
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest

from pii.core.errors import PackageError
from pii.core.findings import Finding
from pii.reports.package import (
    HTML_ROW_CAP,
    KEY_ENV,
    PackageResult,
    decrypt_package,
    generate_key,
    json_safe,
    read_manifest,
    safe_name,
    write_access_package,
)
from pii.core.subject import Subject

ALICE_EMAIL = "alice.smith@example.com"
BOB_EMAIL = "bob.jones@example.com"
BOB_PHONE = "+44 20 7946 0958"
WHEN = datetime(2026, 11, 21, 12, 0, 0, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def analyzer():
    from pii.core.detection import build_analyzer

    return build_analyzer()


@pytest.fixture(autouse=True)
def _no_env_key(monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)


@pytest.fixture
def subject():
    return Subject.build(emails=[ALICE_EMAIL], names=["Alice Smith"], phones=["07700 900123"],
                         ids={"customer_no": "C-10042"})


def member(member_id=3001, **extra):
    record = {"member_id": member_id, "email": ALICE_EMAIL, "name": "Alice Smith", **extra}
    return Finding("crm", {"table": "members", "key": {"member_id": member_id}}, ["EMAIL_ADDRESS", "PERSON"],
                   "identifier", container="sales.members", record=record)


def findings():
    return [
        member(),
        Finding("crm", {"table": "registrations", "key": {"reg_id": 17}}, [], "linked",
                container="sales.registrations", record={"reg_id": 17, "member_id": 3001, "event": "AGM"}),
        Finding("exports", {"file": "crm_export.csv", "row": 412}, ["PERSON", "PHONE_NUMBER"], "text",
                container="crm_export.csv", record={"row_no": 412, "notes": "Call Alice Smith back"}),
        Finding("partner_drop", {"path": "/incoming/leads.csv", "row": 3}, ["EMAIL_ADDRESS"], "identifier",
                container="/incoming/leads.csv", record={"email": ALICE_EMAIL}),
        Finding("support_mailbox", {"message_id": "18c2f"}, ["EMAIL_ADDRESS"], "identifier",
                container="INBOX", record={"from": ALICE_EMAIL, "subject": "Hello"}),
        Finding("crm", {"table": "people", "key": {"id": 9}}, ["PERSON"], "identifier", "weak",
                container="crm.people", record={"id": 9, "full_name": "Alice Smith"}),
    ]


def write(path, subject, fs=None, **kw):
    kw.setdefault("generated_at", WHEN)
    kw.setdefault("redact", False)
    return write_access_package(path, subject, findings() if fs is None else fs, **kw)


def read_csv(path: Path) -> list[dict]:
    return list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8-sig"))))


def all_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


# --------------------------------------------------------------------------- manifest
def test_when_package_written_then_manifest_has_contract_keys_and_finding_shapes(tmp_path, subject):
    fs = findings()
    result = write(tmp_path / "pkg", subject, fs)
    manifest = json.loads((tmp_path / "pkg" / "manifest.json").read_text())
    assert {"subject", "generated_at", "findings"} <= set(manifest)
    assert manifest["subject"] == {"email": [ALICE_EMAIL], "name": ["Alice Smith"], "phone": ["+447700900123"],
                                   "ids": {"customer_no": ["C-10042"]}}
    assert manifest["generated_at"] == "2026-11-21T12:00:00Z"
    assert manifest["findings"] == [f.to_manifest() for f in fs]
    for f in manifest["findings"]:
        assert {"store", "location", "entities", "match"} <= set(f)
        assert f["match"] in ("identifier", "text", "linked")
        assert isinstance(f["entities"], list)
    assert manifest["findings"][0]["location"] == {"table": "members", "key": {"member_id": 3001}}
    assert manifest["findings"][-1]["strength"] == "weak"
    assert isinstance(result, PackageResult)
    assert result.finding_count == len(fs) and result.record_count == len(fs) and not result.encrypted
    assert sorted(p.relative_to(tmp_path / "pkg").as_posix() for p in all_files(tmp_path / "pkg")) == result.files


@pytest.mark.parametrize(
    "given, expected",
    [
        (datetime(2026, 11, 21, 12, 0, 0), "2026-11-21T12:00:00Z"),  # naive: taken as UTC
        (datetime(2026, 11, 21, 13, 30, 5, 999, tzinfo=timezone(timedelta(hours=1))), "2026-11-21T12:30:05Z"),
        (datetime(2026, 11, 21, 12, 0, 0, tzinfo=timezone.utc), "2026-11-21T12:00:00Z"),
    ],
)
def test_when_generated_at_given_then_manifest_time_is_utc_with_z(tmp_path, subject, given, expected):
    write(tmp_path / "pkg", subject, generated_at=given)
    assert read_manifest(tmp_path / "pkg")["generated_at"] == expected


def test_when_generated_at_omitted_then_now_in_utc_seconds_with_z(tmp_path, subject):
    before = datetime.now(timezone.utc).replace(microsecond=0)
    write_access_package(tmp_path / "pkg", subject, findings(), redact=False)
    stamp = read_manifest(tmp_path / "pkg")["generated_at"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", stamp)
    assert datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc) >= before


def test_when_findings_repeat_a_location_then_manifest_has_one_finding_per_location(tmp_path, subject):
    dup = Finding("crm", {"table": "members", "key": {"member_id": 3001}}, ["PHONE_NUMBER"], "text",
                  container="sales.members", record={"x": 1})
    result = write(tmp_path / "pkg", subject, [member(), dup])
    manifest = read_manifest(tmp_path / "pkg")
    assert result.finding_count == 1
    assert len(manifest["findings"]) == 1
    assert manifest["findings"][0]["match"] == "identifier"
    assert manifest["findings"][0]["entities"] == ["EMAIL_ADDRESS", "PERSON", "PHONE_NUMBER"]


def test_when_package_written_then_manifest_lists_files_and_store_counts(tmp_path, subject):
    write(tmp_path / "pkg", subject, stores_metadata={"crm": {"purpose": "membership"}, "archive": {}})
    manifest = read_manifest(tmp_path / "pkg")
    for rel in manifest["files"]:
        assert (tmp_path / "pkg" / rel).is_file()
    crm = manifest["stores"]["crm"]
    assert crm["findings"] == 3 and crm["weak"] == 1
    assert crm["metadata"] == {"purpose": "membership"}
    assert crm["containers"]["sales.members"]["records"] == 1
    assert manifest["stores"]["archive"]["findings"] == 0


# --------------------------------------------------------------------------- data files
def test_when_package_written_then_csv_and_json_hold_each_containers_records(tmp_path, subject):
    extra = member(3002)
    write(tmp_path / "pkg", subject, findings() + [extra])
    data = tmp_path / "pkg" / "data"
    rows = read_csv(data / "crm" / "sales.members.csv")
    assert [r["member_id"] for r in rows] == ["3001", "3002"]
    assert rows[0]["email"] == ALICE_EMAIL
    assert json.loads(rows[1]["_location"]) == {"table": "members", "key": {"member_id": 3002}}
    assert rows[0]["_match"] == "identifier" and rows[0]["_strength"] == "strong"
    assert rows[0]["_entities"] == "EMAIL_ADDRESS;PERSON"
    doc = json.loads((data / "crm" / "sales.members.json").read_text())
    assert doc["store"] == "crm" and doc["container"] == "sales.members" and doc["count"] == 2
    assert [r["record"]["member_id"] for r in doc["records"]] == [3001, 3002]
    assert doc["records"][0]["location"] == {"table": "members", "key": {"member_id": 3001}}
    linked = json.loads((data / "crm" / "sales.registrations.json").read_text())
    assert linked["records"][0]["match"] == "linked" and linked["records"][0]["record"]["event"] == "AGM"
    assert read_csv(data / "exports" / "crm_export.csv")[0]["notes"] == "Call Alice Smith back"
    assert read_csv(data / "partner_drop" / "incoming_leads.csv")[0]["email"] == ALICE_EMAIL
    assert (data / "support_mailbox" / "INBOX.json").is_file()


def test_when_a_finding_has_no_record_then_it_is_listed_by_location_only(tmp_path, subject):
    bare = Finding("support_mailbox", {"message_id": "abc"}, ["EMAIL_ADDRESS"], "identifier", container="INBOX")
    result = write(tmp_path / "pkg", subject, [member(), bare])
    assert result.finding_count == 2 and result.record_count == 1
    doc = json.loads((tmp_path / "pkg" / "data" / "support_mailbox" / "INBOX.json").read_text())
    assert doc["records"] == [{"location": {"message_id": "abc"}, "match": "identifier", "strength": "strong",
                               "entities": ["EMAIL_ADDRESS"], "redacted": False, "record": None}]
    assert "listed by location only" in (tmp_path / "pkg" / "summary.html").read_text()


@pytest.mark.parametrize(
    "value, expected",
    [
        (datetime(2024, 1, 2, 3, 4, 5), "2024-01-02T03:04:05"),
        (datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone.utc), "2024-01-02T03:04:05+00:00"),
        (date(2024, 1, 2), "2024-01-02"),
        (Decimal("12.50"), "12.50"),
        (b"\x00\x01\xff", "base64:AAH/"),
        (memoryview(b"ab"), "base64:YWI="),
        (uuid.UUID(int=1), "00000000-0000-0000-0000-000000000001"),
        (float("nan"), None),
        ({"nested": Decimal("1.5"), 2: date(2020, 1, 1)}, {"nested": "1.5", "2": "2020-01-01"}),
        ((1, b"x"), [1, "base64:eA=="]),
    ],
)
def test_when_record_holds_non_json_values_then_data_files_serialise_them(tmp_path, subject, value, expected):
    assert json_safe(value) == expected
    write(tmp_path / "pkg", subject, [member(extra=value)])
    doc = json.loads((tmp_path / "pkg" / "data" / "crm" / "sales.members.json").read_text())
    assert doc["records"][0]["record"]["extra"] == expected
    cell = read_csv(tmp_path / "pkg" / "data" / "crm" / "sales.members.csv")[0]["extra"]
    if isinstance(expected, (dict, list)):
        assert json.loads(cell) == expected
    else:
        assert cell == ("" if expected is None else expected)


def test_when_record_has_a_column_named_like_a_location_column_then_both_are_kept(tmp_path, subject):
    write(tmp_path / "pkg", subject, [member(_match="theirs")])
    row = read_csv(tmp_path / "pkg" / "data" / "crm" / "sales.members.csv")[0]
    assert row["_match"] == "theirs"
    assert row["__match"] == "identifier"


# --------------------------------------------------------------------------- redaction
def text_finding(text, **extra):
    return Finding("support", {"table": "tickets", "key": {"ticket_id": 5}}, ["EMAIL_ADDRESS"], "text",
                   container="support.tickets", record={"ticket_id": 5, "body": text, **extra})


def test_when_text_finding_mentions_others_then_their_identifiers_are_redacted_and_subjects_kept(
        tmp_path, subject, analyzer):
    body = (f"Bob Jones ({BOB_EMAIL}, {BOB_PHONE}) wrote that Alice Smith ({ALICE_EMAIL}) "
            "asked to cancel her membership.")
    write(tmp_path / "pkg", subject, [text_finding(body, author=BOB_EMAIL)], analyzer=analyzer, redact=True)
    doc = json.loads((tmp_path / "pkg" / "data" / "support" / "support.tickets.json").read_text())
    rec = doc["records"][0]["record"]
    assert ALICE_EMAIL in rec["body"] and "Alice Smith" in rec["body"]
    assert BOB_EMAIL not in rec["body"] and "<EMAIL_ADDRESS>" in rec["body"]
    assert "7946" not in rec["body"] and "<PHONE_NUMBER>" in rec["body"]
    assert "Bob Jones" not in rec["body"] and "<PERSON>" in rec["body"]
    assert rec["author"] == "<EMAIL_ADDRESS>"
    assert rec["ticket_id"] == 5
    assert doc["records"][0]["redacted"] is True
    for path in all_files(tmp_path / "pkg"):
        assert BOB_EMAIL.encode() not in path.read_bytes(), path


def test_when_identifier_finding_holds_other_peoples_data_then_it_is_not_redacted(tmp_path, subject, analyzer):
    own = member(emergency_contact=f"Bob Jones {BOB_EMAIL}")
    write(tmp_path / "pkg", subject, [own], analyzer=analyzer, redact=True)
    row = read_csv(tmp_path / "pkg" / "data" / "crm" / "sales.members.csv")[0]
    assert row["emergency_contact"] == f"Bob Jones {BOB_EMAIL}"


def test_when_redact_is_false_then_text_records_are_kept_verbatim(tmp_path, subject):
    body = f"Bob ({BOB_EMAIL}) mentioned {ALICE_EMAIL}"
    write(tmp_path / "pkg", subject, [text_finding(body)], redact=False)
    doc = json.loads((tmp_path / "pkg" / "data" / "support" / "support.tickets.json").read_text())
    assert doc["records"][0]["record"]["body"] == body
    assert doc["records"][0]["redacted"] is False
    assert read_manifest(tmp_path / "pkg")["redacted"] is False


# --------------------------------------------------------------------------- HTML summary
def test_when_a_value_holds_markup_then_the_summary_escapes_it(tmp_path, subject):
    write(tmp_path / "pkg", subject, [member(note="<script>alert('x')</script>")],
          stores_metadata={"crm": {"purpose": "<b>bold</b>"}})
    page = (tmp_path / "pkg" / "summary.html").read_text()
    assert "<script>" not in page and "<b>bold</b>" not in page
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page
    assert "&lt;b&gt;bold&lt;/b&gt;" in page


def test_when_store_metadata_given_then_summary_shows_it_and_says_not_stated_where_missing(tmp_path, subject):
    meta = {"crm": {"description": "Membership database", "purpose": "Running the membership",
                    "legal_basis": "Contract (Art. 6(1)(b))", "recipients": ["Mailing house", "Auditor"]}}
    write(tmp_path / "pkg", subject, stores_metadata=meta)
    page = (tmp_path / "pkg" / "summary.html").read_text()
    crm = page[page.index('id="store-crm"'):page.index('id="store-exports"')]
    for text in ("Membership database", "Running the membership", "Contract (Art. 6(1)(b))",
                 "Mailing house, Auditor"):
        assert text in crm
    assert crm.count("not stated") == 2  # source and retention
    exports = page[page.index('id="store-exports"'):]
    assert "not stated" in exports


def test_when_summary_written_then_it_names_subject_categories_counts_weak_note_and_rights(tmp_path, subject):
    write(tmp_path / "pkg", subject)
    page = (tmp_path / "pkg" / "summary.html").read_text()
    assert ALICE_EMAIL in page and "C-10042" in page and "2026-11-21T12:00:00Z" in page
    assert "email address" in page and "phone number" in page
    assert "needs review" in page and "name only" in page
    assert 'href="data/crm/sales.members.csv"' in page
    for right in ("rectification", "erasure", "restriction", "objection", "supervisory authority"):
        assert right in page
    assert "We found <strong>6</strong> records" in page


def test_when_a_container_has_more_rows_than_the_cap_then_summary_shows_cap_and_points_to_files(tmp_path, subject):
    many = [member(i) for i in range(1, HTML_ROW_CAP + 6)]
    write(tmp_path / "pkg", subject, many)
    page = (tmp_path / "pkg" / "summary.html").read_text()
    assert f"first {HTML_ROW_CAP} of {HTML_ROW_CAP + 5}" in page
    assert page.count("<tr class=\"strong\">") == HTML_ROW_CAP
    assert len(read_csv(tmp_path / "pkg" / "data" / "crm" / "sales.members.csv")) == HTML_ROW_CAP + 5


# --------------------------------------------------------------------------- encryption
def test_when_key_given_then_no_plaintext_reaches_disk(tmp_path, subject):
    key = generate_key()
    result = write(tmp_path / "pkg", subject, key=key)
    files = all_files(tmp_path / "pkg")
    assert result.encrypted
    assert sorted(p.name for p in files if not p.name.endswith(".enc")) == ["README.txt"]
    assert (tmp_path / "pkg" / "manifest.json.enc").is_file()
    assert (tmp_path / "pkg" / "summary.html.enc").is_file()
    assert (tmp_path / "pkg" / "data" / "crm" / "sales.members.csv.enc").is_file()
    for path in tmp_path.rglob("*"):  # also nothing left beside the package
        if path.is_file():
            data = path.read_bytes()
            for secret in (ALICE_EMAIL.encode(), b"Alice Smith", b"C-10042", b"+447700900123"):
                assert secret not in data, path
    readme = (tmp_path / "pkg" / "README.txt").read_text()
    assert "lethe decrypt-package" in readme and KEY_ENV in readme


def test_when_encrypted_package_decrypted_then_it_matches_the_plain_package(tmp_path, subject):
    key = generate_key()
    write(tmp_path / "plain", subject)
    write(tmp_path / "enc", subject, key=key)
    result = decrypt_package(tmp_path / "enc", tmp_path / "out", key=key)
    plain = {p.relative_to(tmp_path / "plain").as_posix(): p.read_bytes() for p in all_files(tmp_path / "plain")}
    out = {p.relative_to(tmp_path / "out").as_posix(): p.read_bytes() for p in all_files(tmp_path / "out")}
    assert set(out) == set(plain)
    for rel in plain:
        if rel != "README.txt":
            assert out[rel] == plain[rel], rel
    assert result.finding_count == 6
    assert read_manifest(tmp_path / "enc", key=key) == read_manifest(tmp_path / "out")


def test_when_key_comes_from_environment_then_package_is_encrypted_with_it(tmp_path, subject, monkeypatch):
    key = generate_key()
    monkeypatch.setenv(KEY_ENV, key)
    result = write(tmp_path / "pkg", subject)
    assert result.encrypted and (tmp_path / "pkg" / "manifest.json.enc").is_file()
    assert not (tmp_path / "pkg" / "manifest.json").exists()
    assert read_manifest(tmp_path / "pkg")["generated_at"] == "2026-11-21T12:00:00Z"


def test_when_wrong_key_used_to_decrypt_then_clear_error_and_nothing_written(tmp_path, subject):
    write(tmp_path / "enc", subject, key=generate_key())
    with pytest.raises(PackageError, match="wrong key") as err:
        decrypt_package(tmp_path / "enc", tmp_path / "out", key=generate_key())
    assert ALICE_EMAIL not in str(err.value)
    assert not (tmp_path / "out").exists()
    with pytest.raises(PackageError, match="wrong key"):
        read_manifest(tmp_path / "enc", key=generate_key())


@pytest.mark.parametrize("bad", ["not-a-key", "", "  ", "é" * 44, b"short", b""])
def test_when_key_is_invalid_then_package_error_names_the_variable(tmp_path, subject, bad):
    with pytest.raises(PackageError, match=f"{KEY_ENV} is not a valid Fernet key"):
        write(tmp_path / "pkg", subject, key=bad)
    assert not (tmp_path / "pkg").exists()


def test_when_environment_key_is_invalid_then_package_error_and_nothing_written(tmp_path, subject, monkeypatch):
    monkeypatch.setenv(KEY_ENV, "definitely-not-fernet")
    with pytest.raises(PackageError, match=f"{KEY_ENV} is not a valid Fernet key"):
        write(tmp_path / "pkg", subject)
    assert list(tmp_path.iterdir()) == []


def test_when_environment_key_is_empty_then_package_is_plain(tmp_path, subject, monkeypatch):
    monkeypatch.setenv(KEY_ENV, "")
    result = write(tmp_path / "pkg", subject)
    assert not result.encrypted and (tmp_path / "pkg" / "manifest.json").is_file()


def test_when_decrypting_without_key_or_a_plain_package_then_package_error(tmp_path, subject):
    write(tmp_path / "plain", subject)
    with pytest.raises(PackageError, match="give the key"):
        decrypt_package(tmp_path / "plain", tmp_path / "out")
    with pytest.raises(PackageError, match="does not hold an encrypted"):
        decrypt_package(tmp_path / "plain", tmp_path / "out", key=generate_key())


def test_when_key_generated_then_it_is_a_fernet_key():
    from cryptography.fernet import Fernet

    key = generate_key()
    assert isinstance(key, str) and key != generate_key()
    assert Fernet(key.encode()).decrypt(Fernet(key.encode()).encrypt(b"x")) == b"x"


# --------------------------------------------------------------------------- names and folders
@pytest.mark.parametrize(
    "container",
    ["../../escape", "..", "../", "/etc/passwd", "sub/dir/file.csv", "a\\..\\..\\b", ".hidden", "CON", "x" * 300],
)
def test_when_container_name_is_hostile_then_files_stay_inside_the_package(tmp_path, subject, container):
    out = tmp_path / "a" / "pkg"
    f = Finding("csv", {"file": container, "row": 1}, ["EMAIL_ADDRESS"], "identifier", container=container,
                record={"email": ALICE_EMAIL})
    result = write(out, subject, [f])
    outside = [p for p in tmp_path.rglob("*") if p.is_file() and out not in p.parents]
    assert outside == []
    data_files = [p for p in all_files(out) if "data" in p.relative_to(out).parts]
    assert len(data_files) == 2
    for p in data_files:
        assert p.resolve().parent == (out / "data" / "csv").resolve()
        assert not p.name.startswith(".") and len(p.name) < 130
    assert all(".." not in rel.split("/") for rel in result.files)


def test_when_container_names_collide_after_cleaning_then_file_names_are_unique(tmp_path, subject):
    fs = [Finding("csv", {"file": name, "row": 1}, [], "identifier", container=name, record={"n": i})
          for i, name in enumerate(["a/b.csv", "a_b.csv", "A_B", "a?b"])]
    write(tmp_path / "pkg", subject, fs)
    csvs = sorted(p.name for p in (tmp_path / "pkg" / "data" / "csv").glob("*.csv"))
    assert len(csvs) == 4 and len({n.casefold() for n in csvs}) == 4
    values = sorted(read_csv(tmp_path / "pkg" / "data" / "csv" / n)[0]["n"] for n in csvs)
    assert values == ["0", "1", "2", "3"]


def test_when_safe_name_given_unsafe_text_then_only_safe_characters_remain():
    taken: set[str] = set()
    assert safe_name("sales.members", taken) == "sales.members"
    assert safe_name("sub/dir/file.csv", taken) == "sub_dir_file"
    assert safe_name("../..", taken) == "_"
    assert safe_name("SALES.members", taken) == "SALES.members-2"


def test_when_out_dir_is_non_empty_and_not_a_package_then_refused_and_untouched(tmp_path, subject):
    out = tmp_path / "pkg"
    out.mkdir()
    (out / "thesis.docx").write_text("precious")
    with pytest.raises(PackageError, match="not empty"):
        write(out, subject)
    assert [p.name for p in out.iterdir()] == ["thesis.docx"]
    assert (out / "thesis.docx").read_text() == "precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pkg"]


def test_when_out_dir_holds_a_previous_package_then_it_is_replaced(tmp_path, subject):
    out = tmp_path / "pkg"
    write(out, subject)
    (out / "stale.txt").write_text("old")
    write(out, subject, [member()], key=generate_key())
    names = {p.relative_to(out).as_posix() for p in all_files(out)}
    assert "stale.txt" not in names and "manifest.json" not in names
    assert "manifest.json.enc" in names
    assert "data/exports/crm_export.csv" not in names
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pkg"]  # no temp or backup folders left


def test_when_out_dir_exists_empty_then_package_is_written_there(tmp_path, subject):
    out = tmp_path / "pkg"
    out.mkdir()
    write(out, subject)
    assert (out / "manifest.json").is_file() and (out / "summary.html").is_file()


def test_when_out_dir_is_a_file_then_refused(tmp_path, subject):
    (tmp_path / "pkg").write_text("x")
    with pytest.raises(PackageError, match="not a folder"):
        write(tmp_path / "pkg", subject)


def test_when_folder_holds_no_package_then_read_manifest_fails_clearly(tmp_path):
    with pytest.raises(PackageError, match="does not hold a Lethe access package"):
        read_manifest(tmp_path)


def test_when_a_record_carries_a_whole_message_then_it_is_written_as_eml_not_as_a_column(tmp_path):
    import base64 as b64

    from pii.core.findings import Finding
    from pii.reports.package import write_access_package
    from pii.core.subject import Subject

    raw = b"From: alice.smith@example.org\r\nSubject: hi\r\n\r\nhello\r\n"
    f = Finding(store="mail", location={"message_id": "18c2f00"}, entities=["EMAIL_ADDRESS"], match="identifier",
                container="support@example.test",
                record={"message_id": "18c2f00", "subject": "hi", "_raw_eml": b64.b64encode(raw).decode()})
    res = write_access_package(tmp_path / "pkg", Subject.build(emails=["alice.smith@example.org"]), [f],
                               redact=False, key=None)
    emls = list((tmp_path / "pkg").rglob("*.eml"))
    assert [e.read_bytes() for e in emls] == [raw]
    assert "18c2f00.eml" in emls[0].name
    csv_text = next((tmp_path / "pkg" / "data").rglob("*.csv")).read_text()
    assert "_raw_eml" not in csv_text and "hi" in csv_text
    assert any(p.endswith(".eml") for p in res.files)
