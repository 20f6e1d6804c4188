"""PDF, DOCX and XLSX files (connectors/documents.py) in an FTP drop (a real pyftpdlib server), a local CSV-folder
store and Gmail attachments (the local Gmail-compatible endpoint): findings by page, paragraph/table cell and
sheet/cell, coverage of damaged, encrypted and too large documents, the access package holding the file,
whole-file deletes, XLSX cells redacted in place, PDF/DOCX left for review, and no identifier in progress."""
from __future__ import annotations

import io
import json
from pathlib import Path

import docx
import openpyxl
import pytest
from pypdf import PdfReader, PdfWriter

from connectors import documents as docs
from connectors import open_connector
from connectors.base import DELETE, DROP, UPDATE, ExecAction
from connectors.fakes.ftp_server import PASSWORD, PASSWORD_ENV, FtpServer
from connectors.fakes.gmail_server import FakeGmail, mail
from connectors.gmail import GmailConnector
from pii.core.config import StoreConfig
from pii.core.findings import STRONG, WEAK
from pii.core.policy import REDACTED, redact_fields
from pii.core.subject import Subject, SubjectMatcher
from pii.reports.package import build_package

EMAIL, PHONE, NAME = "alice.smith@x.org", "07700 900123", "Alice Smith"
SUBJECT = Subject.build(emails=[EMAIL], names=[NAME], phones=["+44 7700 900123"])
MATCHER = SubjectMatcher(SUBJECT)
SECRETS = ("alice", "900123", "7700900123")  # nothing of hers may be printed


# --------------------------------------------------------------------------- building real documents
def make_pdf(pages: list[list[str]], info: dict | None = None) -> bytes:
    """A minimal valid PDF written by hand: one page per list of lines (Helvetica, uncompressed stream)."""
    objs = [b"<< /Type /Catalog /Pages 2 0 R >>",
            f"<< /Type /Pages /Kids [{' '.join(f'{4 + 2 * i} 0 R' for i in range(len(pages)))}] "
            f"/Count {len(pages)} >>".encode(),
            b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>"]
    for i, lines in enumerate(pages):
        ops = ["BT /F1 11 Tf 50 780 Td 14 TL"]
        ops += [f"({line.replace(chr(92), chr(92) * 2).replace('(', '[').replace(')', ']')}) Tj T*" for line in lines]
        stream = "\n".join(ops + ["ET"]).encode("cp1252")
        objs.append(f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 842] /Resources << /Font << /F1 3 0 R >> >> "
                    f"/Contents {5 + 2 * i} 0 R >>".encode())
        objs.append(b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream")
    if info:
        objs.append(("<< " + " ".join(f"/{k} ({v})" for k, v in info.items()) + " >>").encode())
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for n, body in enumerate(objs, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % n + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objs) + 1)
    out += b"".join(b"%010d 00000 n \n" % off for off in offsets)
    info_ref = f" /Info {len(objs)} 0 R" if info else ""
    out += f"trailer\n<< /Size {len(objs) + 1} /Root 1 0 R{info_ref} >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)


REPORT_PDF = make_pdf([["Quarterly attendees", "Bob Jones bob@x.org", "Carol King +44 7700 900999"],
                       ["Follow-up", f"Call {NAME} on {PHONE} or write to {EMAIL}"],
                       ["Nothing about her"]], info={"Author": "Dan Brown"})


def encrypted_pdf() -> bytes:
    w = PdfWriter(clone_from=PdfReader(io.BytesIO(REPORT_PDF)))
    w.encrypt("secret-password", algorithm="RC4-128")
    buf = io.BytesIO()
    w.write(buf)
    return buf.getvalue()


def make_docx() -> bytes:
    d = docx.Document()
    d.core_properties.author = "Dan Brown"
    d.add_paragraph("Minutes of the meeting")
    d.add_paragraph("Bob Jones (bob@x.org) opened.")
    d.add_paragraph(f"{NAME} asked to be called back on {PHONE}.")
    t = d.add_table(rows=3, cols=2)
    for r, (name, mail_) in enumerate([("name", "email"), ("Bob", "bob@x.org"), ("Alice", EMAIL)]):
        t.cell(r, 0).text, t.cell(r, 1).text = name, mail_
    buf = io.BytesIO()
    d.save(buf)
    return buf.getvalue()


def make_xlsx() -> bytes:
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "Leads"
    ws.append(["name", "email", "phone", "notes"])
    ws.append(["Bob Jones", "bob@x.org", "+44 7700 900999", "met at the fair"])
    ws.append(["Carol King", EMAIL, 447700900123, "typed Alice's address by mistake"])  # a phone stored as a number
    other = wb.create_sheet("Other")
    other["A1"] = "no one here"
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


DAMAGED = b"%PDF-1.7 this is not a PDF at all " + EMAIL.encode()


def by_place(findings) -> dict:
    return {tuple(sorted((k, v) for k, v in f.location.items() if k not in ("path", "file"))): f for f in findings}


def no_identifier(lines) -> None:
    text = "\n".join(lines).lower()
    for secret in SECRETS:
        assert secret not in text, secret


# --------------------------------------------------------------------------- the pure part
def test_when_a_hand_written_pdf_is_read_then_pypdf_gives_its_pages_and_metadata():
    segs = list(docs.segments(REPORT_PDF, docs.PDF))
    assert [s.where for s in segs] == [{"metadata": "author"}, {"page": 1}, {"page": 2}, {"page": 3}]
    assert EMAIL in segs[2].text and EMAIL not in segs[1].text


@pytest.mark.parametrize("data,reason", [
    (DAMAGED, "cannot be read as a PDF"),
    (encrypted_pdf(), "encrypted: a password is needed"),
    (b"", "an empty file"),
])
def test_when_a_pdf_is_damaged_encrypted_or_empty_then_scan_reports_why_without_raising(data, reason):
    scanned = docs.scan(data, docs.PDF, MATCHER)
    assert scanned.hits == [] and scanned.error is not None and not scanned.error.partial
    assert reason in scanned.error.reason and "alice" not in scanned.error.reason.lower()


def test_when_a_document_is_larger_than_the_limit_then_it_is_not_read():
    scanned = docs.scan(REPORT_PDF, docs.PDF, MATCHER, limit=docs.max_bytes({"max_document_mb": 0.0005}))
    assert scanned.error.reason == "not scanned: larger than 0.0005 MB (max_document_mb)"
    assert scanned.places == 0


def test_when_a_docx_is_damaged_then_it_is_reported_and_an_xlsx_cell_holding_a_formula_is_never_rewritten(tmp_path):
    assert "cannot be read as a Word document" in docs.scan(make_docx()[:300], docs.DOCX, MATCHER).error.reason
    wb = openpyxl.Workbook()
    wb.active["A1"] = EMAIL
    wb.active["B1"] = "=A1"
    path = tmp_path / "f.xlsx"
    wb.save(path)
    changed, left = docs.redact_xlsx(path, [docs.CellChange("Sheet", "B1", EMAIL, REDACTED)])
    assert (changed, left) == (0, ["B1 holds a formula: not changed (review it)"])
    changed, left = docs.redact_xlsx(path, [docs.CellChange("Sheet", "A1", "someone else", REDACTED)])
    assert (changed, left) == (0, ["A1 changed since it was located: not changed"])
    assert openpyxl.load_workbook(path).active["A1"].value == EMAIL


# --------------------------------------------------------------------------- FTP drop
@pytest.fixture
def server(tmp_path, monkeypatch):
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    with FtpServer(tmp_path / "home") as srv:
        srv.put("/incoming/reports/q4.pdf", REPORT_PDF)
        srv.put("/incoming/minutes.docx", make_docx())
        srv.put("/incoming/leads.xlsx", make_xlsx())
        srv.put("/incoming/broken.pdf", DAMAGED)
        srv.put("/incoming/locked.pdf", encrypted_pdf())
        yield srv


def ftp(server: FtpServer, tmp_path: Path, messages: list, **options):
    store = StoreConfig(name="partner_drop", kind="ftp",
                        options={**server.store_options(path="/incoming"), **options}, base_dir=tmp_path)
    return open_connector(store, progress=lambda _s, m: messages.append(m))


def apply(conn, actions) -> list[tuple]:
    calls: list[tuple] = []
    conn.apply(actions, lambda ids, rows, detail: calls.append((sorted(ids), rows, detail)), MATCHER)
    return calls


def test_when_documents_sit_in_an_ftp_drop_then_findings_name_page_paragraph_cell_and_sheet(server, tmp_path):
    messages: list[str] = []
    with ftp(server, tmp_path, messages) as conn:
        found = conn.locate(MATCHER)
        coverage = conn.coverage
        not_scanned = conn.not_scanned

    pdf = by_place([f for f in found if f.container == "/incoming/reports/q4.pdf"])
    assert list(pdf) == [(("page", 2),)]
    f = pdf[("page", 2),]
    assert f.location == {"path": "/incoming/reports/q4.pdf", "page": 2}
    assert (f.match, f.strength, f.entities) == ("text", WEAK, ["EMAIL_ADDRESS", "PERSON", "PHONE_NUMBER"])
    assert "cannot redact it in place" in f.note and "review" in f.note
    assert f.record["place"] == "page 2" and EMAIL in f.record["text"] and "Bob" not in f.record["text"]

    word = by_place([f for f in found if f.container == "/incoming/minutes.docx"])
    assert set(word) == {(("paragraph", 3),), (("docx_table", 1), ("table_column", 2), ("table_row", 3))}
    assert all(f.strength == WEAK for f in word.values())

    sheet = by_place([f for f in found if f.container == "/incoming/leads.xlsx"])
    assert set(sheet) == {(("cell", "B3"), ("sheet", "Leads")), (("cell", "C3"), ("sheet", "Leads"))}
    cell = sheet[("cell", "B3"), ("sheet", "Leads")]
    assert (cell.strength, cell.entities) == (STRONG, ["EMAIL_ADDRESS"])
    assert {k: v for k, v in cell.record.items() if k != docs.RAW_FILE} == {"sheet": "Leads", "cell": "B3",
                                                                             "value": EMAIL}
    assert sheet[("cell", "C3"), ("sheet", "Leads")].entities == ["PHONE_NUMBER"]  # a number, searched as text

    # the damaged and the encrypted PDF: listed as not searched, with why; the search went on
    skipped = {s["place"]: s["reason"] for s in coverage.skipped}
    assert set(skipped) == {"/incoming/broken.pdf", "/incoming/locked.pdf"}
    assert skipped["/incoming/broken.pdf"].startswith("cannot be read as a PDF")
    assert skipped["/incoming/locked.pdf"] == "encrypted: a password is needed to read it (not scanned)"
    assert dict(not_scanned) == skipped
    assert not coverage.complete
    searched = {s["place"]: s for s in coverage.searched}
    assert searched["/incoming/reports/q4.pdf"]["places"] == 4  # metadata + 3 pages
    assert coverage.methods()["document:xlsx"] == 1
    # the whole file rides on the first finding of each document, for the access package
    raw = [f.record[docs.RAW_FILE] for f in found if docs.RAW_FILE in f.record]
    assert len(raw) == 3 and {r["name"] for r in raw} == {"q4.pdf", "minutes.docx", "leads.xlsx"}
    no_identifier(messages)
    assert "/incoming/broken.pdf: not scanned, cannot be read as a PDF" in "\n".join(messages)


def test_when_a_document_is_larger_than_max_document_mb_then_it_is_not_downloaded(server, tmp_path):
    messages: list[str] = []
    with ftp(server, tmp_path, messages, max_document_mb=0.001) as conn:
        found = conn.locate(MATCHER)
        skipped = {s["place"]: s["reason"] for s in conn.coverage.skipped}
    assert found == []
    too_large = "not scanned: larger than 0.001 MB (max_document_mb)"
    assert {p: r for p, r in skipped.items() if r == too_large} == {
        p: too_large for p in ("/incoming/reports/q4.pdf", "/incoming/minutes.docx", "/incoming/leads.xlsx",
                               "/incoming/locked.pdf")}
    assert skipped["/incoming/broken.pdf"].startswith("cannot be read as a PDF")  # 51 bytes: read, and damaged
    assert f"/incoming/leads.xlsx: {too_large}" in messages


def test_when_the_package_is_built_then_it_holds_each_document_whole_and_its_places_without_the_raw_copy(
        server, tmp_path):
    with ftp(server, tmp_path, []) as conn:
        found = conn.locate(MATCHER)
    files, n_findings, _records = build_package(SUBJECT, found, redact=False)
    originals = {k: v for k, v in files.items() if "_file/original." in k}
    assert sorted(originals.values(), key=len) == sorted([REPORT_PDF, server.read("/incoming/minutes.docx"),
                                                          server.read("/incoming/leads.xlsx")], key=len)
    assert {k.rsplit(".", 1)[1] for k in originals} == {"pdf", "docx", "xlsx"}
    manifest = json.loads(files["manifest.json"])
    assert set(originals) <= set(manifest["files"]) and n_findings == 5
    locations = [f["location"] for f in manifest["findings"]]
    assert {"path": "/incoming/reports/q4.pdf", "page": 2} in locations
    assert {"path": "/incoming/leads.xlsx", "sheet": "Leads", "cell": "B3"} in locations
    for name, data in files.items():
        if name.endswith((".csv", ".json")):
            assert b"base64" not in data and docs.RAW_FILE.encode() not in data


def test_when_policy_deletes_a_document_then_the_whole_file_goes_and_xlsx_cells_are_redacted_in_place(
        server, tmp_path):
    messages: list[str] = []
    word_before = server.read("/incoming/minutes.docx")
    with ftp(server, tmp_path, messages) as conn:
        found = conn.locate(MATCHER)
        pdf = [f for f in found if f.container == "/incoming/reports/q4.pdf"]
        word = [f for f in found if f.container == "/incoming/minutes.docx"]
        cells = [f for f in found if f.container == "/incoming/leads.xlsx"]
        actions = [ExecAction("del-pdf", f.container, f.location, DELETE, expected=f.record) for f in pdf]
        actions += [ExecAction(f"red-doc{i}", f.container, f.location, UPDATE,
                               {"text": redact_fields(f.record, MATCHER)["text"]}, expected=f.record)
                    for i, f in enumerate(word)]
        for i, f in enumerate(cells):
            new = {k: v for k, v in redact_fields({k: v for k, v in f.record.items() if k != docs.RAW_FILE},
                                                  MATCHER).items() if v != f.record.get(k)}
            actions.append(ExecAction(f"red-xl{i}", f.container, f.location, UPDATE, new, expected=f.record))
        calls = apply(conn, actions)
        again = conn.locate(MATCHER)

    assert "/incoming/reports/q4.pdf" not in server.files()  # a delete of a page removes the file
    assert ["del-pdf"] in [c[0] for c in calls]
    done = {tuple(c[0]): (c[1], c[2]) for c in calls}
    assert done[("red-doc0", "red-doc1")] == (0, "a Word document (DOCX) cannot be changed in place: left for "
                                                 "review (delete the file to erase it)")
    assert done[("red-xl0", "red-xl1")] == (2, None), done
    wb = openpyxl.load_workbook(io.BytesIO(server.read("/incoming/leads.xlsx")))
    assert (wb["Leads"]["B3"].value, wb["Leads"]["C3"].value) == (REDACTED, REDACTED)
    assert wb["Leads"]["B2"].value == "bob@x.org" and wb["Other"]["A1"].value == "no one here"
    assert server.read("/incoming/minutes.docx") == word_before  # never changed in place
    assert {f.container for f in again} == {"/incoming/minutes.docx"}  # only the DOCX, still for review
    assert not [p for p in server.files() if ".lethe-" in p]
    no_identifier(messages)


def test_when_a_drop_names_a_document_then_ftp_removes_it_and_a_second_run_counts_it_done(server, tmp_path):
    with ftp(server, tmp_path, []) as conn:
        first = apply(conn, [ExecAction("d1", "/incoming/locked.pdf", {"path": "/incoming/locked.pdf"}, DROP)])
        second = apply(conn, [ExecAction("d1", "/incoming/locked.pdf", {"path": "/incoming/locked.pdf"}, DROP)])
    assert (first, second) == ([(["d1"], 1, None)], [(["d1"], 0, None)])
    assert "/incoming/locked.pdf" not in server.files()


def test_when_an_xlsx_holds_a_chart_then_it_is_not_rewritten_and_the_action_says_why(server, tmp_path):
    from openpyxl.chart import BarChart, Reference

    wb = openpyxl.load_workbook(io.BytesIO(make_xlsx()))
    chart = BarChart()
    chart.add_data(Reference(wb["Leads"], min_col=3, min_row=1, max_row=3))
    wb["Leads"].add_chart(chart, "F2")
    buf = io.BytesIO()
    wb.save(buf)
    server.put("/incoming/leads.xlsx", buf.getvalue())
    with ftp(server, tmp_path, []) as conn:
        cell = next(f for f in conn.locate(MATCHER) if f.location.get("cell") == "B3")
        calls = apply(conn, [ExecAction("x", cell.container, cell.location, UPDATE, {"value": REDACTED},
                                        expected=cell.record)])
    assert calls == [(["x"], 0, "not changed: holds charts, images, pivot tables, macros or other parts a rewrite "
                                "would drop; left for review")]
    assert server.read("/incoming/leads.xlsx") == buf.getvalue()


# --------------------------------------------------------------------------- local CSV-folder store
def test_when_a_csv_store_lists_documents_then_they_are_searched_and_by_default_they_are_not_listed(tmp_path):
    folder = tmp_path / "exports"
    (folder / "sub").mkdir(parents=True)
    (folder / "people.csv").write_text(f"email,name\n{EMAIL},{NAME}\nbob@x.org,Bob\n")
    (folder / "sub" / "q4.pdf").write_bytes(REPORT_PDF)
    (folder / "leads.xlsx").write_bytes(make_xlsx())
    (folder / "broken.docx").write_bytes(b"PK\x03\x04 not a zip")
    messages: list[str] = []

    def store(**options):
        return open_connector(StoreConfig(name="exports", kind="csv", options={"path": str(folder), **options},
                                          base_dir=tmp_path), progress=lambda _s, m: messages.append(m))

    with store() as conn:
        assert {f.container for f in conn.locate(MATCHER)} == {"people.csv"}
        assert conn.coverage.complete
    with store(pattern=["**/*.csv", "**/*.pdf", "**/*.docx", "**/*.xlsx"]) as conn:
        found = conn.locate(MATCHER)
        skipped = {s["place"]: s["reason"] for s in conn.coverage.skipped}
        assert {f.container for f in found} == {"people.csv", "sub/q4.pdf", "leads.xlsx"}
        assert {"file": "sub/q4.pdf", "page": 2} in [f.location for f in found]
        assert list(skipped) == ["broken.docx"] and "cannot be read as a Word document" in skipped["broken.docx"]
        cell = next(f for f in found if f.location.get("cell") == "B3")
        calls: list = []
        conn.apply([ExecAction("x", "leads.xlsx", cell.location, UPDATE, {"value": REDACTED}, expected=cell.record),
                    ExecAction("p", "sub/q4.pdf", {"file": "sub/q4.pdf", "page": 2}, DELETE)],
                   lambda ids, rows, detail: calls.append((ids, rows, detail)), MATCHER)
    assert not (folder / "sub" / "q4.pdf").exists()
    assert openpyxl.load_workbook(folder / "leads.xlsx")["Leads"]["B3"].value == REDACTED
    assert [c[1] for c in calls] == [1, 1]
    assert not [p for p in folder.rglob("*") if ".lethe-" in p.name]
    no_identifier(messages)


# --------------------------------------------------------------------------- Gmail attachments
def test_when_mail_carries_pdf_docx_and_xlsx_attachments_then_they_are_searched_by_place(tmp_path):
    user = "support@example.test"
    with FakeGmail() as gmail:
        mid = gmail.add(mail(frm="hr@example.test", to=user, subject="Papers", text="See attached.",
                             attachments=[("q4.pdf", "application/pdf", REPORT_PDF),
                                          ("leads.xlsx", "application/vnd.openxmlformats-officedocument"
                                                         ".spreadsheetml.sheet", make_xlsx()),
                                          ("minutes.docx", "application/octet-stream", make_docx())]))
        broken = gmail.add(mail(frm="hr@example.test", to=user, subject="Scan", text=f"About {EMAIL}",
                                attachments=[("locked.pdf", "application/pdf", encrypted_pdf())]))
        said: list[str] = []
        conn = GmailConnector(StoreConfig(name="mailbox", kind="gmail", options={
            "user_id": user, "api_endpoint": gmail.endpoint}, base_dir=tmp_path), sleep=lambda s: None,
            progress=lambda _s, m: said.append(m))
        found = {f.location["message_id"]: f for f in conn.locate(MATCHER)}
    f = found[mid]
    assert (f.match, f.strength) == ("text", STRONG)
    lines = f.record["body_text"].splitlines()
    assert f"[q4.pdf, page 2] Call {NAME} on {PHONE} or write to {EMAIL}" in lines
    assert f"[leads.xlsx, sheet 'Leads' cell B3] {EMAIL}" in lines
    assert any(line.startswith("[minutes.docx, table 1 row 3 column 2]") for line in lines)
    atts = {a["filename"]: a for a in f.record["attachments"]}
    assert atts["q4.pdf"]["scanned"] and atts["q4.pdf"]["found_at"] == ["page 2"]
    assert atts["leads.xlsx"]["found_at"] == ["sheet 'Leads' cell B3", "sheet 'Leads' cell C3"]
    assert not any("Bob" in line for line in lines)
    att = found[broken].record["attachments"][0]
    assert att["scanned"] is False and att["reason"] == ("application/pdf: encrypted: a password is needed to read "
                                                         "it (not scanned)")
    partial = {p["place"]: p["reason"] for p in conn.coverage.partial}
    assert partial == {f"message {broken}": "1 attachment(s) not scanned (application/pdf)"}
    no_identifier(said)


def test_when_a_workbook_is_read_only_in_part_then_coverage_says_partly_read_and_the_hits_before_count(
        tmp_path, monkeypatch):
    from pii.core.coverage import Coverage

    monkeypatch.setattr(docs, "MAX_CELLS", 10)  # the leads sheet's 11th cell stops the read
    scanned = docs.scan(make_xlsx(), docs.XLSX, MATCHER)
    assert scanned.error.partial and scanned.error.reason == "read in part: more than 10 cells"
    assert [h.where for h in scanned.hits] == [{"sheet": "Leads", "cell": "B3"}]
    coverage = Coverage("s", "csv")
    docs.record_coverage(coverage, "leads.xlsx", docs.XLSX, scanned)
    assert coverage.partial == [{"place": "leads.xlsx", "reason": "read in part: more than 10 cells"}]
    assert not coverage.complete


def test_when_a_retention_filter_selects_documents_by_time_then_a_drop_removes_each_whole_file(server, tmp_path):
    import datetime as dt

    from pii.core.selection import FILE_TIME, RecordFilter

    pdfs = ["/incoming/broken.pdf", "/incoming/locked.pdf", "/incoming/reports/q4.pdf"]
    by_time = RecordFilter(containers=("*.pdf",), date_column=FILE_TIME, whole_files=True,
                           before=dt.date.today() + dt.timedelta(days=2))
    by_text = RecordFilter(containers=("*.pdf", "*.xlsx"), text_terms=("smith",), text_test=lambda t: True)
    with ftp(server, tmp_path, []) as conn:
        chosen = conn.select(by_time)
        assert sorted(f.location["path"] for f in chosen) == pdfs
        assert all(f.record is None and "row" not in f.location for f in chosen)
        assert conn.select(by_text) == []
        assert {r for _p, r in conn.skipped} == {"a document (PDF, DOCX, XLSX): selected only as a whole file, "
                                                 "by its time"}
        calls = apply(conn, [ExecAction(f"d{i}", f.container, f.location, DROP) for i, f in enumerate(chosen)])
    assert [c[1] for c in calls] == [1, 1, 1]
    assert not [p for p in server.files() if p.endswith(".pdf")] and "/incoming/leads.xlsx" in server.files()
