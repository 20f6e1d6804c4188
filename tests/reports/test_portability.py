"""The portability export (issue 14, item 6): `portable.zip` in the access package holds the data the person
provided (identifier-matched and linked records, never mentions in other people's records, name-only matches
or mail) as JSON + CSV + a JSON Schema per table or file; the schemas validate the JSON; the archive is
encrypted with the package key. Stores: SQLite, PostgreSQL, MariaDB (a real search), CSV exports (a real
search) and FTP-shaped findings (no server). All people are made up."""
from __future__ import annotations

import csv
import io
import json
import zipfile
from datetime import datetime, timezone
from pathlib import Path

import pytest
import yaml
from jsonschema import Draft202012Validator

from pii.core.config import load_config
from pii.core.findings import Finding
from pii.core.subject import Subject
from pii.engine.discover import locate_subject
from pii.reports.package import KEY_ENV, decrypt_package, generate_key, read_manifest, write_access_package
from pii.reports.portability import PORTABLE, build_portable, column_schema, is_portable
from pii.core.subject import SubjectMatcher
from tests import sql_world

WHEN = datetime(2026, 11, 21, 12, 0, 0, tzinfo=timezone.utc)
ALICE = "alice.smith@example.org"
# what the made-up other people in the stores are called or reached by: never in the export
OTHERS = ("bob.jones", "Bob", "malice.smith", "Alicia", "Carol", "Zo", "Siobh", "020 7946 0999", "C-20001",
          "colleague", "Forwarded", "Smithson", "full_name")


@pytest.fixture(autouse=True)
def _no_env_key(monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)


def archive(pkg: Path, key: str | None = None) -> dict[str, bytes]:
    """The files inside the package's portable.zip (decrypted first when the package is encrypted)."""
    if key is None:
        data = (pkg / PORTABLE).read_bytes()
    else:
        from cryptography.fernet import Fernet

        data = Fernet(key.encode()).decrypt((pkg / (PORTABLE + ".enc")).read_bytes())
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        assert zf.testzip() is None
        return {n: zf.read(n) for n in zf.namelist()}


def tables(files: dict[str, bytes]) -> dict[str, dict]:
    """container -> {"json": the .json document, "schema": its schema, "csv": rows as dicts, "entry": index entry}"""
    index = json.loads(files["index.json"])
    out = {}
    for e in index["tables"]:
        out[e["container"]] = {
            "json": json.loads(files[e["json"]]), "schema": json.loads(files[e["schema"]]),
            "csv": list(csv.DictReader(io.StringIO(files[e["csv"]].decode("utf-8-sig")))), "entry": e,
        }
    return out


def assert_valid(doc: dict, schema: dict) -> None:
    Draft202012Validator.check_schema(schema)
    errors = list(Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER).iter_errors(doc))
    assert not errors, [e.message for e in errors]


def assert_no_other_people(files: dict[str, bytes]) -> None:
    blob = b"".join(files.values()).decode("utf-8", "replace")
    for other in OTHERS:
        assert other not in blob, other


def write_config(tmp_path: Path, stores: dict, **top) -> Path:
    path = tmp_path / "stores.yaml"
    path.write_text(yaml.safe_dump({"ledger": f"sqlite:///{tmp_path / 'state.db'}", **top, "stores": stores}),
                    encoding="utf-8")
    return path


def access(tmp_path: Path, config_path: Path, subject: Subject, **kw) -> Path:
    config = load_config(config_path)
    found = locate_subject(config, subject, use_inventory=False).findings
    out = tmp_path / "pkg"
    kw.setdefault("redact", False)
    write_access_package(out, subject, found, generated_at=WHEN, portable=True, **kw)
    return out


# --------------------------------------------------------------------------- SQL: SQLite, PostgreSQL, MariaDB
def test_when_portable_on_a_sql_store_then_own_and_linked_rows_are_exported_with_valid_schemas(any_sql_url, tmp_path):
    schema = "crm" if any_sql_url.startswith("postgresql") else None
    sql_world.build(any_sql_url, schema=schema).dispose()
    subject = Subject.build(**sql_world.ALICE)
    pkg = access(tmp_path, write_config(tmp_path, {"crm": {"kind": "sql", "url": any_sql_url}}), subject)
    files = archive(pkg)
    got = tables(files)
    prefix = f"{schema}." if schema else ""
    # identifier rows (members, newsletter) and linked rows (orders, order_items); not the notes that mention
    # her (other members' notes) nor the badge that matched on her name alone
    assert set(got) == {prefix + t for t in ("members", "newsletter", "orders", "order_items")}
    members = got[prefix + "members"]
    assert [r["member_id"] for r in members["json"]["records"]] == [1]
    assert members["json"]["records"][0]["email"].strip().lower() == ALICE
    assert sorted(r["order_id"] for r in got[prefix + "orders"]["json"]["records"]) == [10, 11]
    assert len(got[prefix + "order_items"]["json"]["records"]) == 3
    for t in got.values():  # the data dictionary validates the JSON; the CSV holds the same rows and columns
        assert_valid(t["json"], t["schema"])
        assert t["json"]["count"] == len(t["json"]["records"]) == len(t["csv"]) == t["entry"]["records"]
        assert list(t["csv"][0]) == t["schema"]["x-lethe-columns"]
    props = members["schema"]["$defs"]["record"]["properties"]
    assert props["member_id"]["type"] == "integer" and props["email"]["type"] == "string"
    assert set(members["schema"]["x-lethe-identifier-columns"]) == {"member_id", "email", "phone"}
    assert "email" in props["email"]["x-lethe-identifies"] and "phone" in props["phone"]["x-lethe-identifies"]
    assert props["last_name"]["x-lethe-identifier"] is False
    # a table without a primary key is located by all its columns: they are not called a key
    assert got[prefix + "newsletter"]["schema"]["x-lethe-identifier-columns"] == ["email"]
    orders = got[prefix + "orders"]["schema"]
    assert set(orders["x-lethe-identifier-columns"]) == {"order_id", "member_id"}  # the key, and her member row's
    assert_no_other_people(files)
    manifest = read_manifest(pkg)
    assert PORTABLE in manifest["files"]
    assert manifest["portability"]["file"] == PORTABLE and manifest["portability"]["records"] == 7
    assert manifest["portability"]["excluded"]["mentions_in_other_records"] == 2
    assert manifest["portability"]["excluded"]["weak"] == 1


# --------------------------------------------------------------------------- CSV exports
def test_when_portable_on_csv_exports_then_her_rows_are_in_and_mentions_and_name_only_rows_are_out(tmp_path):
    exports = tmp_path / "exports"
    exports.mkdir()
    (exports / "contacts.csv").write_text(
        "email,full_name,phone,joined,points\r\n"
        f"{ALICE},Alice Smith,020 7946 0123,2024-05-01,12\r\n"
        "bob.jones@example.org,Bob Jones,020 7946 0999,2023-01-02,3\r\n"
        "alicia@example.net,Alice Smith,,2022-02-02,1\r\n", encoding="utf-8")  # a namesake: a name alone
    (exports / "tickets.csv").write_text(
        "ticket,author,body\r\n"
        "1,bob.jones@example.org,Bob's colleague says write to alice.smith@example.org about the refund\r\n",
        encoding="utf-8")
    cfg = write_config(tmp_path, {"exports": {"kind": "csv", "path": str(exports)}})
    pkg = access(tmp_path, cfg, Subject.build(**sql_world.ALICE))
    files = archive(pkg)
    got = tables(files)
    assert set(got) == {"contacts.csv"}
    t = got["contacts.csv"]
    assert t["json"]["records"] == [{"email": ALICE, "full_name": "Alice Smith", "phone": "020 7946 0123",
                                     "joined": "2024-05-01", "points": "12"}]
    assert_valid(t["json"], t["schema"])
    props = t["schema"]["$defs"]["record"]["properties"]
    assert props["joined"]["format"] == "date" and props["email"]["format"] == "email"
    assert set(t["schema"]["x-lethe-identifier-columns"]) == {"email", "full_name", "phone"}
    assert t["csv"] == t["json"]["records"]
    blob = b"".join(files.values()).decode()
    for other in ("bob.jones", "Bob", "alicia@", "refund", "tickets"):
        assert other not in blob, other
    manifest = read_manifest(pkg)
    assert manifest["portability"]["excluded"] == {"mentions_in_other_records": 1, "weak": 1, "messages": 0,
                                                   "without_record": 0}


# --------------------------------------------------------------------------- a real FTP drop
def test_when_portable_on_an_ftp_drop_then_her_rows_are_in_and_other_peoples_rows_are_out(tmp_path, monkeypatch):
    from connectors.fakes.ftp_server import PASSWORD, PASSWORD_ENV, FtpServer

    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    with FtpServer(tmp_path / "home") as srv:
        srv.put("/incoming/leads.csv", (
            "email;name;phone;notes\r\n"
            "bob.jones@example.org;Bob Jones;020 7946 0999;met at the fair\r\n"
            f"{ALICE.upper()};Alice Smith;020 7946 0123;prefers email\r\n"
            f'carol@example.net;Carol White;;"spoke with Alice Smith; she asked about {ALICE}"\r\n').encode())
        srv.put("/incoming/events.jsonl", (
            f'{{"email": "{ALICE}", "event": "signup", "n": 1}}\n'
            f'{{"email": "bob.jones@example.org", "note": "forwarded to {ALICE} by mistake", "n": 2}}\n').encode())
        cfg = write_config(tmp_path, {"partner_drop": {"kind": "ftp", **srv.store_options(path="/incoming")}})
        pkg = access(tmp_path, cfg, Subject.build(**sql_world.ALICE))
    files = archive(pkg)
    got = tables(files)
    assert set(got) == {"/incoming/leads.csv", "/incoming/events.jsonl"}
    leads = got["/incoming/leads.csv"]
    assert leads["json"]["records"] == [{"email": ALICE.upper(), "name": "Alice Smith", "phone": "020 7946 0123",
                                         "notes": "prefers email"}]
    assert set(leads["schema"]["x-lethe-identifier-columns"]) == {"email", "name", "phone"}
    assert len(got["/incoming/events.jsonl"]["json"]["records"]) == 1
    for t in got.values():
        assert_valid(t["json"], t["schema"])
        assert len(t["csv"]) == len(t["json"]["records"])
    assert_no_other_people(files)
    assert "fair" not in b"".join(files.values()).decode() and "mistake" not in b"".join(files.values()).decode()
    assert read_manifest(pkg)["portability"]["excluded"]["mentions_in_other_records"] == 2


# --------------------------------------------------------------------------- FTP-shaped, mail and odd findings
def _subject():
    return Subject.build(emails=[ALICE], names=["Alice Smith"], ids={"customer_no": "C-10042"})


def _ftp_findings():
    return [
        Finding("partner_drop", {"path": "/incoming/leads.csv", "row": 3}, ["EMAIL_ADDRESS"], "identifier",
                container="/incoming/leads.csv",
                record={"email": ALICE, "customer_no": "C-10042", "score": 4.5, "vip": True, "tags": ["a"]}),
        Finding("partner_drop", {"path": "/incoming/leads.csv", "row": 4}, ["EMAIL_ADDRESS"], "identifier",
                container="/incoming/leads.csv", record={"email": ALICE, "customer_no": "C-10042", "score": 3,
                                                         "vip": None}),
        Finding("partner_drop", {"path": "/incoming/calls.txt", "row": 9}, ["PERSON"], "text",
                container="/incoming/calls.txt", record={"line": "Bob Jones rang about Alice Smith"}),
        Finding("support", {"message_id": "18c2f"}, ["EMAIL_ADDRESS"], "identifier", container="INBOX",
                record={"from": ALICE, "to": "bob.jones@example.org", "body_text": "Hi Bob", "_raw_eml": "eA=="}),
        Finding("partner_drop", {"path": "/incoming/whole.csv"}, ["EMAIL_ADDRESS"], "identifier",
                container="/incoming/whole.csv", record=None),
    ]


def test_when_findings_come_from_an_ftp_drop_then_rows_are_typed_and_mail_text_and_bare_locations_are_left_out(
        tmp_path):
    write_access_package(tmp_path / "pkg", _subject(), _ftp_findings(), generated_at=WHEN, redact=False,
                         portable=True)
    files = archive(tmp_path / "pkg")
    got = tables(files)
    assert set(got) == {"/incoming/leads.csv"}
    t = got["/incoming/leads.csv"]
    assert t["entry"]["json"] == "partner_drop/incoming_leads.json"
    assert_valid(t["json"], t["schema"])
    props = t["schema"]["$defs"]["record"]["properties"]
    assert props["score"]["type"] == "number"  # 4.5 and 3: numbers
    assert props["vip"]["type"] == ["boolean", "null"] and props["tags"]["type"] == "array"
    assert t["schema"]["$defs"]["record"]["required"] == ["email", "customer_no", "score", "vip"]
    assert props["customer_no"]["x-lethe-identifies"] == ["id"]
    assert t["csv"][0]["vip"] == "true" and t["csv"][0]["tags"] == '["a"]' and t["csv"][1]["vip"] == ""
    assert_no_other_people(files)
    assert not any("eml" in n or "INBOX" in n for n in files)
    manifest = read_manifest(tmp_path / "pkg")
    assert manifest["portability"]["excluded"] == {"mentions_in_other_records": 1, "weak": 0, "messages": 1,
                                                   "without_record": 1}


def test_when_the_json_is_changed_then_its_schema_refuses_it():
    """The schema is a real check: another column, a wrong type, a dropped record or another store fail."""
    data, entry = build_portable(_subject(), _ftp_findings(), stamp="2026-11-21T12:00:00Z")
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        doc = json.loads(zf.read(entry["tables"][0]["json"]))
        schema = json.loads(zf.read(entry["tables"][0]["schema"]))
    assert_valid(doc, schema)
    validator = Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
    bad = [json.loads(json.dumps(doc)) for _ in range(5)]
    bad[0]["records"][0]["other_person"] = "x"
    bad[1]["records"][0]["score"] = "high"
    bad[2]["records"].pop()
    bad[3]["store"] = "elsewhere"
    bad[4]["records"][0]["email"] = "not an address"
    for b in bad:
        assert list(validator.iter_errors(b)), b


@pytest.mark.parametrize("values, expected", [
    ([1, 2], {"type": "integer"}),
    ([1, 2.5], {"type": "number"}),
    (["2026-01-02", None], {"type": ["string", "null"], "format": "date"}),
    (["2026-01-02T03:04:05Z", "2026-01-02T03:04:05+01:00"], {"type": "string", "format": "date-time"}),
    (["2026-01-02T03:04:05"], {"type": "string"}),  # no offset: not an RFC 3339 date-time
    (["base64:AAE="], {"type": "string", "contentEncoding": "base64"}),
    ([None], {"type": "null"}),
    ([{"a": 1}], {"type": "object"}),
])
def test_when_a_columns_values_are_given_then_its_type_is_inferred(values, expected):
    got = column_schema("c", values, matcher=SubjectMatcher(_subject()), is_key=False)
    assert {k: v for k, v in got.items() if k in ("type", "format", "contentEncoding")} == expected
    assert got["x-lethe-identifier"] is False


def test_which_findings_are_portable():
    fs = _ftp_findings()
    assert [is_portable(f) for f in fs] == [True, True, False, False, False]
    weak = Finding("crm", {"table": "badges", "key": {"id": 1}}, ["PERSON"], "identifier", "weak", record={"n": 1})
    linked = Finding("crm", {"table": "orders", "key": {"id": 1}}, [], "linked", record={"id": 1})
    assert not is_portable(weak) and is_portable(linked)


# --------------------------------------------------------------------------- package integration
def test_when_a_package_key_is_set_then_the_archive_is_encrypted_and_decrypts_back(tmp_path, monkeypatch):
    key = generate_key()
    monkeypatch.setenv(KEY_ENV, key)
    result = write_access_package(tmp_path / "pkg", _subject(), _ftp_findings(), generated_at=WHEN, redact=False,
                                  portable=True)
    assert result.encrypted and "portable.zip.enc" in result.files and "portable.zip" not in result.files
    assert not (tmp_path / "pkg" / PORTABLE).exists()
    raw = (tmp_path / "pkg" / "portable.zip.enc").read_bytes()
    assert not raw.startswith(b"PK") and ALICE.encode() not in raw and b"C-10042" not in raw
    assert "portable.zip" in (tmp_path / "pkg" / "README.txt").read_text()
    files = archive(tmp_path / "pkg", key)
    assert "/incoming/leads.csv" in tables(files)
    plain = decrypt_package(tmp_path / "pkg", tmp_path / "plain")
    assert "portable.zip" in plain.files
    assert archive(tmp_path / "plain") == files
    assert PORTABLE in read_manifest(tmp_path / "pkg", key)["files"]


def test_when_portable_is_not_asked_then_there_is_no_archive(tmp_path):
    result = write_access_package(tmp_path / "pkg", _subject(), _ftp_findings(), generated_at=WHEN, redact=False)
    assert PORTABLE not in result.files and not (tmp_path / "pkg" / PORTABLE).exists()
    manifest = read_manifest(tmp_path / "pkg")
    assert "portability" not in manifest and PORTABLE not in manifest["files"]
    assert "portable.zip" not in (tmp_path / "pkg" / "summary.html").read_text()


def test_when_portable_then_summary_and_readme_describe_the_archive(tmp_path):
    write_access_package(tmp_path / "pkg", _subject(), _ftp_findings(), generated_at=WHEN, redact=False,
                         portable=True)
    page = (tmp_path / "pkg" / "summary.html").read_text()
    assert "Your data in a portable form" in page and "portable.zip" in page and "/incoming/leads.csv" in page
    assert "portable.zip" in (tmp_path / "pkg" / "README.txt").read_text()
    files = archive(tmp_path / "pkg")
    assert {"README.txt", "index.json"} <= set(files)
    index = json.loads(files["index.json"])
    assert index["generated_at"] == "2026-11-21T12:00:00Z" and index["format"] == "lethe-portable/1"


def test_when_the_same_package_is_written_twice_then_the_archive_is_byte_identical(tmp_path):
    a, _ = build_portable(_subject(), _ftp_findings(), stamp="2026-11-21T12:00:00Z")
    b, _ = build_portable(_subject(), _ftp_findings(), stamp="2026-11-21T12:00:00Z")
    assert a == b


def test_when_a_file_is_named_after_her_then_the_archive_path_does_not_name_her(tmp_path):
    f = Finding("exports", {"file": "alice_smith.csv", "row": 1}, ["EMAIL_ADDRESS"], "identifier",
                container="alice_smith.csv", record={"email": ALICE})
    data, entry = build_portable(_subject(), [f], stamp="2026-11-21T12:00:00Z")
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        names = zf.namelist()
    assert not any("alice" in n.lower() for n in names), names
    assert entry["tables"][0]["container"] == "alice_smith.csv"
