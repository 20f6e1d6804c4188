"""Documents that are not plain text: PDF, DOCX and XLSX. Their text, where it sits, and the subject in it.

Pure (no store I/O): connectors hand a local file (an FTP download, a file of a CSV folder, a mail
attachment's bytes) and get back segments of text with their place in the document:

- PDF (pypdf): one segment per page, ``{"page": n}`` (1-based), plus the document's metadata (author,
  title, subject, keywords) as ``{"metadata": "author"}``. Pages are extracted one at a time.
- DOCX (python-docx): one segment per body paragraph, ``{"paragraph": n}`` (1-based, empty ones counted),
  per table cell ``{"docx_table": t, "table_row": r, "table_column": c}`` (1-based; a merged cell once),
  per section header/footer ``{"header": s}`` / ``{"footer": s}``, and the core properties (author, title,
  ...) as ``{"metadata": "author"}``.
- XLSX (openpyxl, read-only, cached values): one segment per non-empty cell, ``{"sheet": name, "cell":
  "B3"}``; numbers are searched as their text (a phone stored as a number is still found).

The keys never say ``row`` or ``table``: those mean a CSV record and a SQL table to the rest of Lethe.

Findings (`search`) are always match ``text``: a document is other content the subject is mentioned in,
never the subject's own record, so the default policy never deletes a whole document because of one
mention. PDF and DOCX cannot be redacted in place: their findings are weak (a person must review them)
with a note saying so; a policy rule (or a person including them) may delete the whole file, which a
connector carries out as the file's removal. XLSX cells can be redacted in place (`redact_xlsx`: temp
file beside it, fsync, rename), unless the workbook holds parts openpyxl would drop (charts, images,
pivot tables, macros, ...); then the connector leaves it alone and the finding stays for review.

Limits: a document larger than ``max_document_mb`` (default 50) is not read at all ("not scanned:
larger than N MB"); an encrypted PDF is read only when it opens with the empty password; a corrupt or
encrypted document raises `DocumentError` (reason without values); a document that fails part-way
yields what it read and then raises `DocumentError` with ``partial`` set. Nothing here downloads anything.
"""
from __future__ import annotations

import io
import logging
import os
import secrets
import stat as stat_mod
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from pii.core.findings import STRONG, WEAK, Finding
from pii.core.subject import ENTITY_PERSON, SubjectMatcher, TextMatch, entities_of

PDF, DOCX, XLSX = "pdf", "docx", "xlsx"
SUFFIXES = {".pdf": PDF, ".docx": DOCX, ".xlsx": XLSX}
LABELS = {PDF: "PDF", DOCX: "Word document (DOCX)", XLSX: "spreadsheet (XLSX)"}
DEFAULT_MAX_MB = 50.0
OPTION = "max_document_mb"
EXCERPT_MAX = 300  # characters of context kept around a mention in a finding's record
MAX_CELLS = 2_000_000  # cells read from one workbook (a bound on work, not on memory)
RAW_FILE = "_raw_file"  # record key a connector may put the whole file under (see `raw_file`)
TMP_MARK = ".lethe-tmp-"
# Parts of a workbook openpyxl does not write back: a rewrite would silently drop them.
XLSX_UNSAFE_PARTS = ("xl/drawings/", "xl/charts/", "xl/media/", "xl/pivotTables/", "xl/pivotCache/",
                     "xl/vbaProject.bin", "xl/embeddings/", "xl/externalLinks/", "xl/slicers/", "xl/timelines/",
                     "xl/ctrlProps/", "xl/activeX/", "customXml/")

REVIEW_NOTE = ("{label}: Lethe cannot redact it in place; a person must review it (a policy rule or a "
               "person including it can delete the whole file)")
XLSX_NOTE = "spreadsheet cell: redacted in place when the workbook can be rewritten safely, else left for review"

for _name in ("pypdf", "openpyxl"):  # their warnings name structures, but never let them reach our logs
    logging.getLogger(_name).setLevel(logging.ERROR)


class DocumentError(Exception):
    """A document that cannot be read (or read only in part: `partial`). The reason never holds a value."""

    def __init__(self, reason: str, *, partial: bool = False):
        super().__init__(reason)
        self.reason = reason
        self.partial = partial


@dataclass
class Segment:
    where: dict  # the place in the document, e.g. {"page": 3} or {"sheet": "Leads", "cell": "B3"}
    text: str


@dataclass
class Hit:
    """One place of a document that mentions the subject: where, what kinds, and the lines about them."""

    where: dict
    entities: list[str]
    strong: bool
    excerpt: str
    value: str | None = None  # XLSX: the whole cell text (what a redaction rewrites)


def document_kind(name: str) -> str | None:
    """PDF, DOCX or XLSX by the file name's extension (case-insensitive), else None."""
    low = str(name).casefold()
    for suffix, kind in SUFFIXES.items():
        if low.endswith(suffix):
            return kind
    return None


def max_bytes(store) -> int:
    """The store's ``max_document_mb`` (default 50) in bytes; a wrong value falls back to the default."""
    value = store.get(OPTION, DEFAULT_MAX_MB) if store is not None else DEFAULT_MAX_MB
    try:
        mb = float(value)
    except (TypeError, ValueError):
        mb = DEFAULT_MAX_MB
    if isinstance(value, bool) or mb <= 0:
        mb = DEFAULT_MAX_MB
    return max(1, round(mb * 1024 * 1024))


def too_large_reason(limit: int) -> str:
    mb = limit / (1024 * 1024)
    return f"not scanned: larger than {mb:.3g} MB (max_document_mb)"


def where_label(where: dict) -> str:
    """A place in words: "page 3", "sheet 'Leads' cell B3", "table 1 row 2 column 3" (no values)."""
    if "page" in where:
        return f"page {where['page']}"
    if "sheet" in where:
        return f"sheet '{where['sheet']}' cell {where['cell']}"
    if "docx_table" in where:
        return f"table {where['docx_table']} row {where['table_row']} column {where['table_column']}"
    if "paragraph" in where:
        return f"paragraph {where['paragraph']}"
    if "header" in where:
        return f"header of section {where['header']}"
    if "footer" in where:
        return f"footer of section {where['footer']}"
    if "metadata" in where:
        return f"document property {where['metadata']}"
    return ", ".join(f"{k} {v}" for k, v in where.items())


# --------------------------------------------------------------------------- extraction
def segments(source: str | os.PathLike | bytes, kind: str, *, limit: int | None = None) -> Iterator[Segment]:
    """The text of a document, place by place. `source`: a local path or the file's bytes. Raises
    DocumentError (before the first segment: not read; after: `partial`)."""
    size = len(source) if isinstance(source, (bytes, bytearray)) else _size(source)
    if limit is not None and size > limit:
        raise DocumentError(too_large_reason(limit))
    if size == 0:
        raise DocumentError(f"an empty file, not a {LABELS[kind]}")
    reader = {PDF: _pdf_segments, DOCX: _docx_segments, XLSX: _xlsx_segments}[kind]
    produced = 0
    try:
        for seg in reader(source):
            produced += 1
            yield seg
    except DocumentError as exc:
        if produced and not exc.partial:
            raise DocumentError(f"read in part: {exc.reason}", partial=True) from None
        raise
    except (MemoryError, RecursionError, GeneratorExit):
        raise
    except Exception as exc:  # noqa: BLE001 - any parser failure on a malformed file
        reason = f"cannot be read as a {LABELS[kind]} ({type(exc).__name__})"
        if produced:
            raise DocumentError(f"read in part: {reason}", partial=True) from None
        raise DocumentError(f"{reason}; damaged, or not really a {LABELS[kind]}") from None


def _size(path) -> int:
    try:
        return os.stat(path).st_size
    except OSError as exc:
        raise DocumentError(f"cannot be read ({exc.strerror})") from None


def _stream(source):
    return io.BytesIO(bytes(source)) if isinstance(source, (bytes, bytearray)) else open(source, "rb")


def _pdf_segments(source) -> Iterator[Segment]:
    from pypdf import PdfReader
    from pypdf.errors import FileNotDecryptedError, PdfReadError

    with _stream(source) as fh:
        try:
            reader = PdfReader(fh, strict=False)
        except PdfReadError as exc:
            raise DocumentError(f"cannot be read as a PDF ({type(exc).__name__}); damaged, or not a PDF") from None
        if reader.is_encrypted:
            try:
                opened = reader.decrypt("")
            except Exception:  # noqa: BLE001 - unsupported encryption, missing crypto support
                opened = 0
            if not opened:
                raise DocumentError("encrypted: a password is needed to read it (not scanned)")
        try:
            meta = reader.metadata or {}
        except (FileNotDecryptedError, PdfReadError):
            meta = {}
        for key, name in (("/Author", "author"), ("/Title", "title"), ("/Subject", "subject"),
                          ("/Keywords", "keywords"), ("/Creator", "creator")):
            value = meta.get(key) if hasattr(meta, "get") else None
            if isinstance(value, str) and value.strip():
                yield Segment({"metadata": name}, str(value))
        try:
            pages = len(reader.pages)
        except FileNotDecryptedError:
            raise DocumentError("encrypted: a password is needed to read it (not scanned)") from None
        for i in range(pages):
            text = reader.pages[i].extract_text() or ""
            yield Segment({"page": i + 1}, text)


def _docx_segments(source) -> Iterator[Segment]:
    import docx
    from docx.opc.exceptions import PackageNotFoundError

    with _stream(source) as fh:
        try:
            document = docx.Document(fh)
        except (PackageNotFoundError, zipfile.BadZipFile, KeyError, ValueError) as exc:
            raise DocumentError(f"cannot be read as a Word document (DOCX) ({type(exc).__name__}); damaged, "
                                "encrypted, or not a DOCX") from None
    props = document.core_properties
    for name in ("author", "title", "subject", "keywords", "comments", "last_modified_by"):
        value = getattr(props, name, None)
        if isinstance(value, str) and value.strip():
            yield Segment({"metadata": name}, value)
    for n, paragraph in enumerate(document.paragraphs, 1):
        if paragraph.text:
            yield Segment({"paragraph": n}, paragraph.text)
    for t, table in enumerate(document.tables, 1):
        seen: set[int] = set()
        alive: list = []  # the cells' XML elements, kept so that their ids stay theirs
        for r, row in enumerate(table.rows, 1):
            for c, cell in enumerate(row.cells, 1):
                if id(cell._tc) in seen:  # a merged cell appears once per grid position it spans
                    continue
                seen.add(id(cell._tc))
                alive.append(cell._tc)
                if cell.text:
                    yield Segment({"docx_table": t, "table_row": r, "table_column": c}, cell.text)
    for s, section in enumerate(document.sections, 1):
        for part, key in ((section.header, "header"), (section.footer, "footer")):
            try:
                if part.is_linked_to_previous:
                    continue
                text = "\n".join(p.text for p in part.paragraphs if p.text)
            except Exception:  # noqa: BLE001 - a broken header part: the body is still read
                continue
            if text:
                yield Segment({key: s}, text)


def _xlsx_segments(source) -> Iterator[Segment]:
    import openpyxl
    from openpyxl.utils.exceptions import InvalidFileException

    fh = _stream(source)
    try:
        try:
            wb = openpyxl.load_workbook(fh, read_only=True, data_only=True)
        except (InvalidFileException, zipfile.BadZipFile, KeyError, ValueError, OSError) as exc:
            raise DocumentError(f"cannot be read as a spreadsheet (XLSX) ({type(exc).__name__}); damaged, "
                                "encrypted, or not an XLSX") from None
        try:
            cells = 0
            for ws in wb.worksheets:
                for row in ws.iter_rows():
                    for cell in row:
                        value = getattr(cell, "value", None)
                        if value is None or isinstance(value, bool):
                            continue
                        cells += 1
                        if cells > MAX_CELLS:
                            raise DocumentError(f"read in part: more than {MAX_CELLS} cells", partial=True)
                        text = _cell_text(value)
                        if text:
                            yield Segment({"sheet": ws.title, "cell": cell.coordinate}, text)
        finally:
            wb.close()
    finally:
        fh.close()


def _cell_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, (int, float)):
        return str(value)
    return ""  # dates, times, errors: no identifier lives there


# --------------------------------------------------------------------------- search
def excerpt(text: str, spans: list[TextMatch]) -> str:
    """The lines of `text` holding a span, each narrowed to EXCERPT_MAX characters around it."""
    out: list[str] = []
    starts = [0]
    for i, ch in enumerate(text):
        if ch == "\n":
            starts.append(i + 1)
    for span in spans:
        line_start = max(s for s in starts if s <= span.start)
        line_end = text.find("\n", span.start)
        line_end = len(text) if line_end < 0 else line_end
        if line_end - line_start > EXCERPT_MAX:
            half = (EXCERPT_MAX - (span.end - span.start)) // 2
            line_start = max(line_start, span.start - max(half, 0))
            line_end = min(line_end, span.end + max(half, 0))
        piece = text[line_start:line_end].strip()
        if piece and piece not in out:
            out.append(piece)
    return "\n".join(out)


def search(segs, matcher: SubjectMatcher) -> list[Hit]:
    """Every segment that mentions the subject (SubjectMatcher.find_in_text, as free text is searched
    everywhere). For a cell, a value that is the subject's identifier whole counts the same."""
    hits: list[Hit] = []
    for seg in segs:
        text = seg.text
        if not text or not matcher.could_mention(text):
            continue
        spans = matcher.find_in_text(text)
        if not spans:
            continue
        hits.append(Hit(seg.where, entities_of(spans), any(s.strong for s in spans), excerpt(text, spans),
                        value=text if "sheet" in seg.where else None))
    return hits


def findings(store: str, location: dict, container: str, kind: str, hits: list[Hit]) -> list[Finding]:
    """One text finding per place: `location` (the file's, e.g. {"path": remote}) plus the place in the
    document. PDF/DOCX: weak, with a note (review). XLSX: strong unless only a name; the record is
    {"sheet", "cell", "value"}, which a redaction rewrites."""
    out: list[Finding] = []
    for h in hits:
        entities = set(h.entities)
        if kind == XLSX:
            strength = WEAK if entities <= {ENTITY_PERSON} else STRONG
            record = {**h.where, "value": h.value}
            note = XLSX_NOTE
        else:
            strength = WEAK
            record = {"place": where_label(h.where), "text": h.excerpt}
            note = REVIEW_NOTE.format(label=LABELS[kind])
        out.append(Finding(store=store, location={**location, **h.where}, entities=sorted(entities),
                           match="text", strength=strength, container=container, record=record, note=note))
    return out


def raw_file(name: str, data: bytes) -> dict:
    """The whole file as a finding's record may carry it under RAW_FILE for the access package."""
    import base64

    return {"name": name, "base64": base64.b64encode(data).decode("ascii")}


def is_document_location(location: dict) -> bool:
    """Whether a location names a place inside a document (what `findings` makes)."""
    return any(k in location for k in ("page", "paragraph", "docx_table", "header", "footer", "metadata", "sheet"))


# --------------------------------------------------------------------------- XLSX redaction in place
def xlsx_rewritable(path: str | os.PathLike) -> str | None:
    """None when openpyxl can rewrite the workbook without losing parts; else why not (no values)."""
    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
    except (zipfile.BadZipFile, OSError) as exc:
        return f"cannot be opened as a workbook ({type(exc).__name__})"
    for n in names:
        if any(n.startswith(p) or n == p for p in XLSX_UNSAFE_PARTS):
            return "holds charts, images, pivot tables, macros or other parts a rewrite would drop"
    return None


@dataclass
class CellChange:
    sheet: str
    cell: str
    expected: str  # the cell's text as located
    new: str
    done: bool = False  # set by `redact_xlsx` once the change is written


def redact_xlsx(path: str | os.PathLike, changes: list[CellChange]) -> tuple[int, list[str]]:
    """Set the given cells, atomically (temp file beside it, fsync, rename over it, folder fsynced).
    A cell whose text is no longer `expected`, or that holds a formula, is left alone. Returns (cells
    changed, reasons for cells left alone, without values); each written change has `done` set. Raises
    DocumentError when the workbook cannot be rewritten safely (nothing changed then)."""
    import openpyxl

    path = Path(path)
    why = xlsx_rewritable(path)
    if why:
        raise DocumentError(why)
    before = path.stat()
    try:
        with open(path, "rb") as fh:  # a file object: openpyxl refuses names without .xlsx (an FTP copy)
            wb = openpyxl.load_workbook(io.BytesIO(fh.read()))  # formulas kept as formulas
    except Exception as exc:  # noqa: BLE001
        raise DocumentError(f"cannot be read as a spreadsheet (XLSX) ({type(exc).__name__})") from None
    changed, left = 0, []
    for ch in changes:
        if ch.sheet not in wb.sheetnames:
            left.append(f"sheet of {ch.cell} no longer exists")
            continue
        cell = wb[ch.sheet][ch.cell]
        value = cell.value
        if isinstance(value, str) and value.startswith("="):
            left.append(f"{ch.cell} holds a formula: not changed (review it)")
            continue
        if _cell_text(value) != ch.expected:
            left.append(f"{ch.cell} changed since it was located: not changed")
            continue
        cell.value = ch.new
        changed += 1
        ch.done = True
    if not changed:
        wb.close()
        return 0, left
    from pii.core.host import host_tag

    # the name connectors/fileformat.py's stray-temp cleaning knows: .<file>.lethe-tmp-<pid>-<host><random>
    tmp = path.with_name(f".{path.name}{TMP_MARK}{os.getpid()}-{host_tag()}{secrets.token_hex(6)}")
    try:
        buf = io.BytesIO()
        wb.save(buf)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(buf.getvalue())
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, stat_mod.S_IMODE(before.st_mode))
        now = path.stat()
        if (now.st_mtime_ns, now.st_size, now.st_ino) != (before.st_mtime_ns, before.st_size, before.st_ino):
            raise DocumentError("changed while it was being rewritten; try again")
        os.replace(tmp, path)
        try:
            dfd = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
        except OSError:
            pass
    except BaseException:
        for ch in changes:
            ch.done = False
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    finally:
        wb.close()
    return changed, left


# --------------------------------------------------------------------------- one document, searched
@dataclass
class Scanned:
    """What searching one document gave: the hits, how many places were read, and the error (if any)."""

    hits: list[Hit] = field(default_factory=list)
    places: int = 0
    error: DocumentError | None = None


def scan(source: str | os.PathLike | bytes, kind: str, matcher: SubjectMatcher, *, limit: int | None = None
         ) -> Scanned:
    """Search one document for the subject; never raises for a bad document (see `Scanned.error`)."""
    out = Scanned()

    def counted():
        for seg in segments(source, kind, limit=limit):
            out.places += 1
            yield seg

    gen = counted()
    try:
        while True:  # search segment by segment, so that hits before a failure are kept
            try:
                seg = next(gen)
            except StopIteration:
                break
            out.hits.extend(search([seg], matcher))
    except DocumentError as exc:
        out.error = exc
    return out


def record_coverage(coverage, place: str, kind: str, scanned: Scanned) -> None:
    """Enter one document in a pii.core.coverage.Coverage: searched, partly read or skipped, with why."""
    if scanned.error is None:
        coverage.add_searched(place, how={f"document:{kind}": 1}, places=scanned.places)
    elif scanned.error.partial:
        coverage.add_partial(place, scanned.error.reason)
    else:
        coverage.add_skipped(place, scanned.error.reason)
