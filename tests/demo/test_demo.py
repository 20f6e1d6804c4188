"""The embedded demo stores (pii/demo/world.py): deterministic, loadable, and truthful about where the demo
subject's data is. An independent reference scan (pii.core.subject + column names only, no connectors)
re-derives the expected findings from the written files, so a random fake person who happened to match
the subject, or a decoy that matched, would fail here before any end-to-end test."""
from __future__ import annotations

import csv
import io
import sqlite3
from pathlib import Path

import pytest

from pii.core.classify import kind_from_name
from pii.core.config import load_config
from pii.demo.world import DEMO_SUBJECT, DEMO_SUBJECT_IDS, EXPORT_FILES, DemoWorld, build_demo, location_key
from pii.core.inventory import EMAIL, FAMILY_NAME, FREE_TEXT, GIVEN_NAME, NAME, PHONE
from pii.core.subject import Subject, SubjectMatcher


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> DemoWorld:
    return build_demo(tmp_path_factory.mktemp("demo"))


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# --------------------------------------------------------------------------- shape
def test_when_demo_is_built_twice_then_every_file_is_byte_identical(tmp_path):
    a = build_demo(tmp_path / "a")
    b = build_demo(tmp_path / "b")
    ta, tb = _tree(tmp_path / "a"), _tree(tmp_path / "b")
    from pii.demo.flows import EXPORT_FILES as FLOW_FILES

    assert sorted(ta) == sorted(["stores.yaml", "data/crm.db"]
                                + [f"data/exports/{f}" for f in EXPORT_FILES + FLOW_FILES])
    assert ta == tb
    assert a.expected == b.expected and a.decoys == b.decoys


def test_when_demo_is_rebuilt_over_itself_then_it_is_identical_and_other_files_survive(tmp_path):
    build_demo(tmp_path)
    before = _tree(tmp_path)
    (tmp_path / "lethe_state.db").write_bytes(b"ledger")
    build_demo(tmp_path)
    after = _tree(tmp_path)
    assert after.pop("lethe_state.db") == b"ledger"
    assert after == before


def test_when_overwrite_is_false_and_demo_exists_then_build_refuses(tmp_path):
    build_demo(tmp_path)
    with pytest.raises(FileExistsError):
        build_demo(tmp_path, overwrite=False)


def test_when_demo_config_is_loaded_then_both_stores_resolve_with_metadata(world):
    cfg = load_config(world.config_path)
    assert set(cfg.stores) == {"crm", "exports"}
    crm, exports = cfg.stores["crm"], cfg.stores["exports"]
    assert crm.kind == "sql" and crm.get("url") == "sqlite:///data/crm.db"
    assert crm.string_list("reference_tables") == ["companies", "events"]
    assert exports.kind == "csv" and exports.resolve_path(exports.get("path")) == world.exports_dir.resolve()
    assert (cfg.base_dir / "data/crm.db").resolve() == world.crm_path.resolve()
    for store in (crm, exports):
        assert {"purpose", "legal_basis", "source", "recipients", "retention"} <= set(store.metadata)


def test_when_demo_subject_is_built_then_it_is_alice_smith(world):
    s = world.build_subject()
    assert world.subject == DEMO_SUBJECT
    assert s.emails == ("alice.smith@example.org",) and s.phones == ("+442079460123",)
    assert s.names == ("Alice Smith",)
    assert dict(world.build_subject(with_ids=True).ids) == {"customer_no": ("C-10042",)}


def test_when_crm_is_opened_then_it_has_real_foreign_keys_a_keyless_table_and_a_composite_key(world):
    con = sqlite3.connect(world.crm_path)
    try:
        fks = {t: {(r[2], r[3], r[4]) for r in con.execute(f"PRAGMA foreign_key_list({t})")}
               for t in ("members", "registrations", "payments", "support_tickets", "notes", "member_tags")}
        assert fks["members"] == {("companies", "company_id", "company_id")}
        assert fks["registrations"] == {("members", "member_id", "member_id"), ("events", "event_id", "event_id")}
        assert fks["payments"] == {("registrations", "reg_id", "reg_id")}
        assert fks["support_tickets"] == fks["notes"] == fks["member_tags"] == {("members", "member_id", "member_id")}
        assert con.execute("PRAGMA foreign_key_check").fetchall() == []
        pk = {t: [r[1] for r in sorted(con.execute(f"PRAGMA table_info({t})"), key=lambda r: r[5]) if r[5]]
              for t in ("newsletter", "member_tags", "members")}
        assert pk == {"newsletter": [], "member_tags": ["member_id", "tag"], "members": ["member_id"]}
        assert 200 <= con.execute("SELECT count(*) FROM members").fetchone()[0] <= 220
        assert con.execute("SELECT count(*) FROM support_tickets WHERE member_id IS NULL").fetchone()[0] > 0
    finally:
        con.close()


def test_when_exports_are_read_then_each_file_has_its_dialect_and_encoding(world):
    raw = (world.exports_dir / "crm_export.csv").read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf") and b"\r\n" in raw
    text = raw.decode("utf-8-sig")
    records = list(csv.reader(io.StringIO(text, newline="")))
    assert 290 <= len(records) - 1 <= 320
    assert any("\n" in field for rec in records for field in rec)  # a quoted newline inside a record
    assert text.count("\r\n") == len(records)                     # every record ends with CRLF...
    assert text.count("\n") > len(records)                          # ...so lines outnumber records

    marketing = (world.exports_dir / "marketing_list.csv").read_text("utf-8")
    assert marketing.splitlines()[0] == "Email;First Name;Last Name;Phone;Consent"

    legacy = (world.exports_dir / "legacy_contacts.csv").read_bytes()
    with pytest.raises(UnicodeDecodeError):
        legacy.decode("utf-8")
    assert "Müller, Zoë" in legacy.decode("cp1252")


def test_when_expected_findings_are_listed_then_every_match_kind_and_strength_occurs(world):
    assert world.expected
    assert {e.match for e in world.expected} == {"identifier", "text", "linked"}
    assert {e.strength for e in world.expected} == {"strong", "weak"}
    assert {e.store for e in world.expected} == {"crm", "exports"}
    assert len({e.key for e in world.expected}) == len(world.expected)  # one finding per location
    assert set(world.reasons) == {e.key for e in world.expected}
    tables = {e.location["table"] for e in world.expected if e.store == "crm"}
    assert {"members", "registrations", "payments", "member_tags", "newsletter", "support_tickets", "notes"} == tables
    files = {e.location["file"] for e in world.expected if e.store == "exports"}
    assert files == set(EXPORT_FILES)
    weak = [e for e in world.expected if e.strength == "weak"]
    assert [(e.location["file"], e.match) for e in weak] == [("event_badges.csv", "identifier")]
    assert not ({e.key for e in world.expected} & {d.key for d in world.decoys})


@pytest.mark.parametrize("needle", [
    "malice.smith@example.org", "alice.smith@example.com", "Alicia Smith", "020 7946 0124", "Alice Smithson",
])
def test_when_decoys_are_listed_then_each_near_miss_really_is_in_the_data(world, needle):
    hits = [d for d in world.decoys if needle.casefold() in _row_text(world, d.store, d.location).casefold()]
    assert hits, f"no decoy row holds {needle!r}"
    assert {d.store for d in world.decoys} == {"crm", "exports"}


# --------------------------------------------------------------------------- reference scan
def _row_text(world: DemoWorld, store: str, location: dict) -> str:
    rows = _all_rows(world)
    where = location["table"] if store == "crm" else location["file"]
    key = location_key(store, location)
    return " | ".join(str(v) for v in rows[where][key].values())


def _read_csv(path: Path) -> list[dict]:
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = raw.decode("cp1252")
    delimiter = ";" if ";" in text.splitlines()[0] else ","
    return list(csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter))


_ROWS_CACHE: dict[Path, dict[str, dict[tuple, dict]]] = {}


def _all_rows(world: DemoWorld) -> dict[str, dict[tuple, dict]]:
    """table or file -> location key -> row (read once per built world)."""
    if world.root in _ROWS_CACHE:
        return _ROWS_CACHE[world.root]
    out: dict[str, dict[tuple, dict]] = _ROWS_CACHE.setdefault(world.root, {})
    con = sqlite3.connect(world.crm_path)
    con.row_factory = sqlite3.Row
    try:
        for (table,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"):
            info = con.execute(f"PRAGMA table_info({table})").fetchall()
            pk = [r[1] for r in sorted(info, key=lambda r: r[5]) if r[5]] or [r[1] for r in info]
            out[table] = {}
            for row in con.execute(f"SELECT * FROM {table}"):
                row = dict(row)
                loc = {"table": table, "key": {c: row[c] for c in pk}}
                out[table][location_key("crm", loc)] = row
    finally:
        con.close()
    for name in EXPORT_FILES:
        out[name] = {location_key("exports", {"file": name, "row": n}): row
                     for n, row in enumerate(_read_csv(world.exports_dir / name), 1)}
    return out


def _evidence(m: SubjectMatcher, row: dict) -> tuple[str | None, bool]:
    """(match kind from this row alone, strong?) judged by column names and the subject matcher."""
    kinds = {c: kind_from_name(c) for c in row}
    strong = weak = False
    for c, v in row.items():
        k = kinds[c]
        if (k == EMAIL and m.email_matches(v)) or (k == PHONE and m.phone_matches(v)) or m.id_matches(c, v):
            strong = True
        elif k == NAME and m.name_matches(v):
            weak = True
    given = [c for c in row if kinds[c] == GIVEN_NAME]
    family = [c for c in row if kinds[c] == FAMILY_NAME]
    if given and family and m.name_matches(f"{row[given[0]] or ''} {row[family[0]] or ''}"):
        weak = True
    if strong or weak:
        return "identifier", strong
    found = [t for c, v in row.items() if kinds[c] == FREE_TEXT and v for t in m.find_in_text(str(v))]
    if found:
        return "text", any(t.strong for t in found)
    return None, False


def _reference_scan(world: DemoWorld, subject: Subject) -> dict[tuple, tuple[str, str]]:
    m = SubjectMatcher(subject)
    rows = _all_rows(world)
    reference = set(load_config(world.config_path).stores["crm"].string_list("reference_tables"))
    found: dict[tuple, tuple[str, bool]] = {}
    by_table: dict[str, list[tuple[tuple, dict, bool]]] = {}
    for where, table_rows in rows.items():
        for key, row in table_rows.items():
            match, strong = _evidence(m, row)
            if match:
                found[key] = (match, strong)
                by_table.setdefault(where, []).append((key, row, strong))
    # linked: rows referencing a matched row, transitively (never the rows a matched row points to)
    con = sqlite3.connect(world.crm_path)
    fks = {t: [(r[2], r[3], r[4]) for r in con.execute(f"PRAGMA foreign_key_list({t})")]
           for t in rows if not t.endswith(".csv")}
    con.close()
    frontier = [(t, row, strong) for t, items in by_table.items() if not t.endswith(".csv") and t not in reference
                for _, row, strong in items]
    while frontier:
        parent, prow, strong = frontier.pop()
        for child, links in fks.items():
            for target, col, tcol in links:
                if target != parent:
                    continue
                for key, row in rows[child].items():
                    if row[col] is not None and row[col] == prow[tcol] and key not in found:
                        found[key] = ("linked", strong)
                        frontier.append((child, row, strong))
    return {k: (match, "strong" if strong else "weak") for k, (match, strong) in found.items()}


@pytest.mark.parametrize("with_ids", [False, True], ids=["without-id", "with-customer-no"])
def test_when_data_is_scanned_independently_then_exactly_the_expected_findings_appear(world, with_ids):
    subject = world.build_subject(with_ids=with_ids)
    scanned = _reference_scan(world, subject)
    expected = {e.key: (e.match, e.strength) for e in world.expected}
    assert scanned == expected
    assert not set(scanned) & {d.key for d in world.decoys}
    if with_ids:
        assert dict(subject.ids) == {k: (v,) for k, v in DEMO_SUBJECT_IDS.items()}


def test_when_expected_rows_are_read_then_each_holds_what_its_reason_says(world):
    for e in world.expected:
        text = _row_text(world, e.store, e.location)
        low = text.casefold()
        if e.match == "identifier" and e.strength == "strong":
            assert "alice.smith@example.org" in low or "7946" in low
        elif e.match == "text":
            assert "alice.smith@example.org" in low or "020 7946 0123" in low
        elif e.match == "linked":
            assert "alice" not in low and "7946 0123" not in low
