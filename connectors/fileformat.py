"""Files as Lethe reads, searches and rewrites them (CSV, TSV, JSON lines, text lines): one module shared by
the CSV connector (connectors/csvfiles.py, a local folder) and the FTP connector (connectors/ftp.py,
downloaded copies).

- layout: a file's text encoding (UTF-8 with or without a BOM, UTF-16/32 with a BOM, else the store's
  fallback encoding), its delimiter and whether its first record is a header (`FileFormat.layout`, cached
  per (file, mtime, size));
- reading: a file as (columns, extra key, numbered rows) (`FileFormat.open`), a row as a record
  (`FileFormat.record`), columns classified from a sample and cached in the inventory
  (`FileFormat.profiles`);
- searching: a file for one subject through the raw-bytes prefilter of connectors/csvscan.py
  (`FileFormat.scan_file`), with the per-record tests `FilePlan`, `RowFilter` and `match_row`;
- erasure: one file's actions by row (`FilePlanOfActions`) carried out in one atomic rewrite
  (`FileFormat.rewrite`: a temp file ``.<name>.lethe-tmp-<pid>-<host tag><random>`` beside the file,
  fsync, rename), and the temp files a crashed rewrite left (`is_temp_name`, `clean_stray_temps`);
- JSON lines and text lines: a line split from its terminator and parsed (`split_line`), a JSON object's
  scalars by flat name (`json_leaves`: ``a.b``, ``tags[0]``), whether a line still holds a located record
  (`same_line`), and their rewrite (`FileFormat.rewrite_lines`: deletes and updates by line, each JSON
  line written back in its own style, `dumps_like`).

Row numbers count data records as a CSV reader does: the header is excluded (a file without one counts
from its first line), a quoted newline does not start a new record, and blank lines are not counted.
Errors name the store and the file, never a value.
"""
from __future__ import annotations

import codecs
import csv
import errno
import functools
import io
import itertools
import json
import os
import re
import secrets
import stat as stat_mod
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import phonenumbers

from connectors import csvscan
from connectors.base import DELETE, Connector, ExecAction
from pii.core import classify as classify_mod
from pii.core.classify import NUMBER, STRING, ColumnInfo
from pii.core.coverage import Coverage
from pii.core.errors import ConfigError, StoreError
from pii.core.findings import STRONG, WEAK, Finding
from pii.core.host import host_tag, run_gone
from pii.core.inventory import (
    EMAIL, FAMILY_NAME, FREE_TEXT, GIVEN_NAME, NAME, OTHER, PHONE, ColumnProfile,
)
from pii.core.subject import EMAIL_FULL_RE  # the one email syntax
from pii.core.subject import ENTITY_EMAIL, ENTITY_ID, ENTITY_PERSON, ENTITY_PHONE, SubjectMatcher, entities_of, fold

DEFAULT_FALLBACK_ENCODING = "cp1252"
DELIMITERS = ",;\t|"
SNIFF_BYTES = 64 * 1024
SNIFF_RECORDS = 200
SAMPLE_ROWS = 50
EXTRA_KEY = "_extra"
# Exports hold long notes fields; the csv module's default limit (128 KiB) would reject them.
FIELD_SIZE_LIMIT = 64 * 1024 * 1024
PHONE_TAIL = 6  # trailing digits of a number that every written form keeps contiguous

_NON_DIGIT = re.compile(r"\D+")
_NOT_DIGIT_BYTES = bytes(b for b in range(128) if not chr(b).isdigit())
_THREE_LETTERS = re.compile(r"[^\W\d_].*?[^\W\d_].*?[^\W\d_]", re.S)  # letters for digits: 0800 123 FLOW
_NUMERIC = re.compile(r"^[+-]?(?:\d+(?:[.,]\d+)?|\.\d+)(?:[eE][+-]?\d+)?$")
_BOMS = ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"),
         (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))
# A BOM-detecting codec writes back with the byte order the file had (the BOM is written as U+FEFF).
_BOM_CODECS = ((codecs.BOM_UTF32_LE, "utf-32", "utf-32-le"), (codecs.BOM_UTF32_BE, "utf-32", "utf-32-be"),
               (codecs.BOM_UTF16_LE, "utf-16", "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16", "utf-16-be"),
               (codecs.BOM_UTF8, "utf-8-sig", "utf-8"))

# Erasure rewrites: `.<name>.lethe-tmp-<pid>-<random>` beside the file, renamed over it when complete.
LINE_KEY = "line"  # a text line's record key, and the update key that replaces the whole line
TMP_MARK = ".lethe-tmp-"
# `.<file>.lethe-tmp-<pid>-<host tag, 8 hex><random, 12 hex>`; names without the host tag (or the pid) are
# earlier versions' and are judged as this host's
_TMP_NAME = re.compile(r"^\..+" + re.escape(TMP_MARK)
                       + r"(?:(?P<pid>\d+)-)?(?:(?P<host>[0-9a-f]{8})(?=[0-9a-f]{12}$))?[0-9A-Za-z]+$")
STALE_TMP_SECONDS = 3600  # a temp file this old is a crashed run's, whoever wrote it
_ACTIVE_TMPS: set[str] = set()  # temp files this process is writing right now (never cleaned up)


# --------------------------------------------------------------------------- reading one file
class _LoneCR(Exception):
    """A file whose lines end in CR alone: read record by record instead of in blocks."""


@dataclass(frozen=True)
class Layout:
    """How to read one file: its text encoding and CSV dialect."""

    encoding: str
    delimiter: str
    skipinitialspace: bool = False
    fallback: bool = False  # True when the file is not UTF-8 and was read with the fallback encoding

    def reader(self, fh) -> Iterator[list[str]]:
        """RFC 4180 quoting ("..." with doubled quotes), lenient about stray quotes as exports are."""
        return csv.reader(fh, delimiter=self.delimiter, quotechar='"', doublequote=True,
                          skipinitialspace=self.skipinitialspace, strict=False)


def unique_columns(header: list[str]) -> list[str]:
    """Header names made usable as keys: trimmed, blanks named by position, duplicates numbered
    (``name``, ``name_2``). Unique case-insensitively, as the inventory's key may be."""
    seen: set[str] = set()
    out: list[str] = []
    for i, raw in enumerate(header, 1):
        base = raw.strip() or f"column_{i}"
        name, n = base, 2
        while name.casefold() in seen:
            name, n = f"{base}_{n}", n + 1
        seen.add(name.casefold())
        out.append(name)
    return out


_PHONE_LIKE = re.compile(r"^\+?[\d\s().\-/]+$")


def looks_like_data(row: list[str]) -> bool:
    """Whether a file's first record is data rather than a header: it holds an email address or a phone-like
    number (seven digits or more), which no column name is."""
    for cell in row:
        v = cell.strip()
        if not v:
            continue
        if EMAIL_FULL_RE.match(v):
            return True
        if _PHONE_LIKE.match(v) and sum(c.isdigit() for c in v) >= 7:
            return True
    return False


def positional_columns(width: int) -> list[str]:
    """Column names of a file without a header row: ``col_1`` .. ``col_n``."""
    return [f"col_{i}" for i in range(1, width + 1)]


def extra_key_for(columns: list[str]) -> str:
    """The record key for fields past the header (``_extra``, numbered when a column already has that name)."""
    taken = {c.casefold() for c in columns}
    key, n = EXTRA_KEY, 2
    while key.casefold() in taken:
        key, n = f"{EXTRA_KEY}_{n}", n + 1
    return key


def _decodes(path: Path, encoding: str) -> bool:
    """Whether the whole file decodes strictly, checked in chunks so memory stays flat."""
    decoder = codecs.getincrementaldecoder(encoding)("strict")
    try:
        with open(path, "rb") as fh:
            while chunk := fh.read(1 << 20):
                decoder.decode(chunk)
            decoder.decode(b"", final=True)
    except UnicodeError:
        return False
    return True


def sniff_dialect(sample: str, *, tsv: bool = False, truncated: bool = False) -> tuple[str, bool]:
    """(delimiter, skipinitialspace) that reads `sample`, which starts at the header, most consistently.

    Each candidate is tried with a real CSV parse of the first records (so quoted delimiters and
    newlines count right, and time stays linear, unlike csv.Sniffer's regexes on quote-heavy text): the
    header must split into two or more fields; most records as wide as the header wins, then the wider
    header. A sample cut short drops its last, possibly partial, record."""
    best_key, best = None, ("\t" if tsv else ",", False)
    for delimiter in DELIMITERS:
        for skip in (False, True):
            reader = csv.reader(io.StringIO(sample, newline=""), delimiter=delimiter, quotechar='"',
                                doublequote=True, skipinitialspace=skip, strict=False)
            try:
                rows = [r for r in itertools.islice(reader, SNIFF_RECORDS) if r]
            except csv.Error:
                continue
            if truncated and len(rows) > 1:
                rows.pop()
            if not rows or len(rows[0]) < 2:
                continue
            width, data = len(rows[0]), rows[1:]
            consistent = sum(len(r) == width for r in data) / len(data) if data else 1.0
            key = (consistent, width, not skip)
            if best_key is None or key > best_key:
                best_key, best = key, (delimiter, skip)
    return best



# --------------------------------------------------------------------------- what to test per file
@dataclass
class FilePlan:
    """Column positions by role, for one file and one subject."""

    columns: list[str]
    extra_key: str
    emails: list[int] = field(default_factory=list)
    phones: list[int] = field(default_factory=list)
    names: list[int] = field(default_factory=list)
    given: list[int] = field(default_factory=list)
    family: list[int] = field(default_factory=list)
    texts: list[int] = field(default_factory=list)
    others: list[int] = field(default_factory=list)  # unclassified text: an exact email still counts
    ids: list[tuple[int, frozenset[str]]] = field(default_factory=list)

    @classmethod
    def build(cls, columns: list[str], profiles: dict[str, ColumnProfile], matcher: SubjectMatcher,
              extra_key: str) -> "FilePlan":
        """The plan for a file's `columns` classified as `profiles`, for the matcher's subject (its ids
        compared under the columns they are keyed by)."""
        plan = cls(columns, extra_key)
        roles = {EMAIL: plan.emails, PHONE: plan.phones, NAME: plan.names, GIVEN_NAME: plan.given,
                 FAMILY_NAME: plan.family, FREE_TEXT: plan.texts, OTHER: plan.others}
        id_keys = set(matcher.id_keys)
        for i, col in enumerate(columns):
            profile = profiles.get(col) or ColumnProfile()
            roles.get(profile.kind, plan.others).append(i)
            if col.casefold() in id_keys:
                plan.ids.append((i, frozenset(matcher.id_values(col))))
        return plan


class RowFilter:
    """Cheap test per raw record: False means no detailed test on it can succeed.

    Each check is implied by the detailed one it stands for: a matching email, or an id of five or more
    characters found in text, is a substring of the case-folded record; a matching name's tokens are
    substrings of the folded record (apostrophes dropped, as name keys drop them); a matching phone
    keeps its last six digits together in the record's digits, whatever the format (unless letters stand
    for digits, which only phone columns are checked for). Id columns are compared exactly, as
    short ids would pass a substring test on most records."""

    def __init__(self, matcher: SubjectMatcher, plan: FilePlan):
        self.needles = matcher.email_tokens + tuple(v.casefold() for v in matcher.text_id_values)
        self.names = [toks for toks in matcher.name_token_sets if toks]
        self.phone_tails = tuple(sorted({d[-PHONE_TAIL:].encode() for d in matcher.phone_digit_tokens}))
        self.phone_cols = plan.phones if self.phone_tails else []
        self.id_cols = plan.ids

    def __call__(self, row: list[str]) -> bool:
        for i, values in self.id_cols:
            if row[i].strip().casefold() in values:  # normalise_id, inlined
                return True
        line = "\x1f".join(row)
        ascii_only = line.isascii()
        low = line.lower() if ascii_only else line.casefold()
        for needle in self.needles:
            if needle in low:
                return True
        if self.phone_tails:
            if ascii_only:
                digits = line.encode("ascii").translate(None, _NOT_DIGIT_BYTES)
            else:
                digits = _NON_DIGIT.sub("", line)
                if not digits.isascii():  # other scripts' digits, as phonenumbers reads them
                    digits = phonenumbers.normalize_digits_only(digits)
                digits = digits.encode("ascii")
            for tail in self.phone_tails:
                if tail in digits:
                    return True
            for i in self.phone_cols:
                if _THREE_LETTERS.search(row[i]):
                    return True
        if self.names:
            if ascii_only:
                folded = low
            else:  # fold only the fields that need it: `fold` is char-wise, so this equals fold(line)
                folded = "\x1f".join(fold(f) for f in row)
            if "'" in folded:
                folded = folded.replace("'", "")
            for tokens in self.names:
                for token in tokens:
                    if token not in folded:
                        break
                else:
                    return True
        return False


def match_row(matcher: SubjectMatcher, plan: FilePlan, row: list[str]) -> tuple[set[str], bool, list[int]]:
    """(entities, identifier evidence?, positions of text fields that mention the subject) for one
    record padded to the header's width; positions past the header are extra fields."""
    entities: set[str] = set()
    identifier = False
    for i in plan.emails:
        if matcher.email_matches(row[i]):
            entities.add(ENTITY_EMAIL)
            identifier = True
    others_text: list[int] = []
    for i in plan.others:  # unclassified columns (codes, references, ...): a whole identifier, or inside
        if "@" in row[i] and matcher.email_matches(row[i]):
            entities.add(ENTITY_EMAIL)
            identifier = True
        elif row[i].strip() and matcher.phone_matches(row[i]) and sum(c.isdigit() for c in row[i]) >= 7:
            entities.add(ENTITY_PHONE)
            identifier = True
        elif matcher.could_mention(row[i]):
            others_text.append(i)
    for i in plan.phones:
        if row[i].strip() and matcher.phone_matches(row[i]):
            entities.add(ENTITY_PHONE)
            identifier = True
    names = [row[i] for i in plan.names + plan.given + plan.family]
    names += [f"{row[g]} {row[f]}" for g in plan.given for f in plan.family]
    if any(matcher.name_matches(v) for v in names if v.strip()):
        entities.add(ENTITY_PERSON)
        identifier = True
    for i, _values in plan.ids:
        if matcher.id_matches(plan.columns[i], row[i]):
            entities.add(ENTITY_ID)
            identifier = True
    texts: list[int] = []
    for i in plan.texts + others_text + list(range(len(plan.columns), len(row))):
        found = matcher.find_in_text(row[i])
        if found:
            entities.update(entities_of(found))
            texts.append(i)
    return entities, identifier, texts


# --------------------------------------------------------------------------- erasure helpers
def is_temp_name(name: str) -> bool:
    """Whether a file name is one of `FileFormat.rewrite`'s temp files (never scanned, removed when stray)."""
    return name.startswith(".") and TMP_MARK in name and _TMP_NAME.match(name) is not None


def _temp_is_dead_runs(name: str) -> bool:
    """Whether a temp file's writer is certainly gone: the name carries this host's tag (or none: an
    earlier version's) and its pid is this process (a rewrite no longer being written: the caller skips
    active ones) or no longer runs. Another host's temp is judged by its age only."""
    m = _TMP_NAME.match(name)
    tag = m.group("host") or host_tag()  # no tag: an earlier version's, written on this host
    if m.group("pid") is None:
        return tag == host_tag()
    return bool(run_gone(tag, int(m.group("pid"))))


def _private_opener(path, flags: int) -> int:
    """`open(..., opener=)` creating a temp file 0600: it holds everyone's records until it is renamed (a
    rewrite then gives it the original's mode)."""
    return os.open(path, flags, 0o600)


def write_codec(encoding: str, head: bytes) -> tuple[str, bool]:
    """(codec to write text with, whether to start with a BOM) for a file read with `encoding` whose
    first bytes are `head`: the file's own encoding and byte order."""
    try:
        encoding = codecs.lookup(encoding).name
    except LookupError:
        pass
    for bom, reader_encoding, codec in _BOM_CODECS:
        if encoding == reader_encoding and head.startswith(bom):
            return codec, True
    if encoding == "utf-8-sig":  # UTF-8 without a BOM stays without
        return "utf-8", False
    return encoding, False


def line_terminator(raw: str) -> str:
    """The line ending `raw` ends with: CRLF, LF, CR, or "" when it has none."""
    if raw.endswith("\r\n"):
        return "\r\n"
    if raw.endswith(("\n", "\r")):
        return raw[-1]
    return ""


def fsync_dir(folder: Path) -> None:
    """Make a rename in `folder` durable. Filesystems (and Windows) that cannot sync a folder are skipped."""
    if os.name != "posix":
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EBADF):
            raise
    finally:
        os.close(fd)


def _same_record(columns: list[str], row: list[str], expected: dict) -> bool:
    """Whether `row` still holds the located record: every expected column has the same text."""
    for i, col in enumerate(columns):
        if col in expected:
            want = expected[col]
            if (row[i] if i < len(row) else "") != ("" if want is None else str(want)):
                return False
    return True


class FilePlanOfActions:
    """One file's actions by data-record number: deletes, and merged updates (later actions win)."""

    def __init__(self, store: str, rel: str, actions: list[ExecAction]):
        self.deletes: set[int] = set()
        self.updates: dict[int, dict[str, object]] = {}
        self.expected: dict[int, dict] = {}  # row -> the record as located: checked before any change
        for a in actions:
            row = a.location.get("row") if isinstance(a.location, dict) else None
            if isinstance(row, bool) or not isinstance(row, int) or row < 1:
                raise StoreError(store, f"file {rel}", f"action {a.action_id} has no valid row number")
            if a.expected:
                self.expected[row] = a.expected
            if a.kind == DELETE:
                self.deletes.add(row)
            else:
                self.updates.setdefault(row, {}).update(a.updates)
        self.last = max(self.deletes | set(self.updates), default=0)


# --------------------------------------------------------------------------- one store's files
class FileFormat:
    """One store's delimited files: layout, reading, classification, search and atomic rewrite.

    `owner` is the connector the files belong to; its `store` (options ``encoding``, ``delimiter``,
    ``header`` and ``text_columns``), `name` (in errors), `inventory`, `analyzer_model` and `say` (progress)
    are read at each use. A file is named by ``rel``, the name that findings, errors, messages and inventory
    keys carry (a path relative to the CSV connector's folder, a remote path for FTP); `local_path(rel)` is
    the local file read and rewritten under that name (for FTP a downloaded copy), raising StoreError when
    there is none. `location_key` names the file in findings' locations (``{location_key: rel, "row": n}``).
    """

    def __init__(self, owner: Connector, local_path: Callable[[str], Path], *, location_key: str = "file"):
        self.owner = owner
        self.local_path = local_path
        self.location_key = location_key
        self._layouts: dict[tuple, Layout] = {}  # per (file, mtime, size): files may change
        self._entity_counter = None

    @property
    def name(self) -> str:
        """The store's name, as errors and findings give it."""
        return self.owner.name

    @property
    def store(self):
        """The store's configuration (pii.core.config.StoreConfig)."""
        return self.owner.store

    def say(self, message: str) -> None:
        """Progress through the owner (never personal data)."""
        self.owner.say(message)

    def forget_layouts(self) -> None:
        """Drop every cached layout (keyed by name, mtime and size): for a caller whose names stand for a
        new local file each time (FTP's downloaded copies), so a layout is never reused for another copy."""
        self._layouts.clear()

    # ---- layout
    def _fallback_encoding(self) -> str:
        encoding = self.store.get("encoding") or DEFAULT_FALLBACK_ENCODING
        try:
            return codecs.lookup(encoding).name
        except LookupError:
            raise ConfigError(f"store '{self.name}': unknown encoding {encoding!r}") from None

    def _forced_delimiter(self) -> str | None:
        value = self.store.get("delimiter")
        if value in (None, ""):
            return None
        value = {"\\t": "\t", "tab": "\t"}.get(value, value)
        if not isinstance(value, str) or len(value) != 1:
            raise ConfigError(f"store '{self.name}': 'delimiter' must be a single character")
        return value

    def text_encoding(self, rel: str) -> tuple[str, bool]:
        """(encoding, whether it is the fallback) that decodes the whole file: UTF-8 (BOM or not),
        UTF-16/32 with a BOM, else the store's fallback encoding (cp1252 by default)."""
        path = self.local_path(rel)
        try:
            with open(path, "rb") as fh:
                head = fh.read(4)
            encoding = next((enc for bom, enc in _BOMS if head.startswith(bom)), "utf-8-sig")
            if _decodes(path, encoding):
                return encoding, False
            encoding = self._fallback_encoding()
            if _decodes(path, encoding):
                return encoding, True
        except OSError as exc:
            raise StoreError(self.name, f"file {rel}", f"cannot be read ({exc.strerror})") from None
        raise StoreError(self.name, f"file {rel}", f"is neither UTF-8 nor {encoding}; set the store's 'encoding'")

    def layout(self, rel: str) -> Layout:
        """Encoding and dialect of one file: UTF-8 (BOM or not), UTF-16/32 with a BOM, else the store's
        fallback encoding (cp1252 by default); the delimiter is sniffed unless configured."""
        path = self.local_path(rel)
        try:
            stat = path.stat()
            key = (rel, stat.st_mtime_ns, stat.st_size)
            if key in self._layouts:
                return self._layouts[key]
            encoding, fallback = self.text_encoding(rel)
            with open(path, encoding=encoding, newline="") as fh:
                sample = fh.read(SNIFF_BYTES)
                truncated = bool(fh.read(1))
        except OSError as exc:
            raise StoreError(self.name, f"file {rel}", f"cannot be read ({exc.strerror})") from None
        forced = self._forced_delimiter()
        if forced:
            delimiter, skip = forced, False
        else:
            delimiter, skip = sniff_dialect(sample, tsv=rel.casefold().endswith(".tsv"), truncated=truncated)
        if fallback:
            self.say(f"{rel}: not valid UTF-8, read as {encoding}")
        layout = Layout(encoding, delimiter, skip, fallback)
        self._layouts[key] = layout
        return layout

    @contextmanager
    def open(self, rel: str):
        """(columns, extra key, iterator of (row number, fields padded to the header's width)), numbered as
        `scan_file` numbers them: a context manager, the file is closed on exit."""
        csv.field_size_limit(max(csv.field_size_limit(), FIELD_SIZE_LIMIT))
        layout = self.layout(rel)
        path = self.local_path(rel)
        try:
            fh = open(path, encoding=layout.encoding, newline="")
        except OSError as exc:
            raise StoreError(self.name, f"file {rel}", f"cannot be read ({exc.strerror})") from None
        with fh:
            reader = layout.reader(fh)
            header = self._header(reader, rel)
            if self.headerless(header):
                columns = positional_columns(len(header))
                rows = itertools.chain([(1, list(header))], self._rows(reader, rel, len(columns), start=1))
                yield columns, extra_key_for(columns), rows
            else:
                columns = unique_columns(header)
                yield columns, extra_key_for(columns), self._rows(reader, rel, len(columns))

    def headerless(self, first: list[str]) -> bool:
        """Whether a file's first record is data: the store's ``header`` option (``auto``, the default:
        an email or phone number in the first record means there is no header; ``false``: never a header;
        ``true``: always one)."""
        mode = self.store.get("header", "auto")
        if mode in (True, "true", "yes"):
            return False
        if mode in (False, "false", "no"):
            return bool(first)
        if mode != "auto":
            raise ConfigError(f"store '{self.name}': 'header' must be auto, true or false")
        return looks_like_data(first)

    def _rows(self, reader, rel: str, width: int, start: int = 0) -> Iterator[tuple[int, list[str]]]:
        n = start
        with self.read_errors(rel, reader):
            for row in reader:
                if not row:  # a blank line holds no record
                    continue
                n += 1
                if len(row) < width:
                    row += [""] * (width - len(row))
                yield n, row

    def _header(self, reader, rel: str) -> list[str]:
        with self.read_errors(rel, reader):
            for row in reader:
                if row:
                    return row
        return []

    @contextmanager
    def read_errors(self, rel: str, reader=None, *, line=None):
        """Reading errors as StoreError naming the file and line (`line()`, else the reader's), never the
        content."""
        where = line or (lambda: reader.line_num)
        try:
            yield
        except csv.Error:
            raise StoreError(self.name, f"file {rel}", f"is not valid CSV near line {where()}") from None
        except UnicodeDecodeError:
            raise StoreError(self.name, f"file {rel}", f"cannot be decoded near line {where()}") from None
        except OSError as exc:
            raise StoreError(self.name, f"file {rel}", f"cannot be read ({exc.strerror})") from None

    # ---- classification
    def profiles(self, rel: str, columns: list[str], sample: list[list[str]]) -> dict[str, ColumnProfile]:
        """Column kinds from the inventory when its signature still holds, else classified and stored."""
        samples = {col: [row[i] for row in sample] for i, col in enumerate(columns)}
        infos = [ColumnInfo(col, self.column_type(col, samples[col])) for col in columns]
        signature = classify_mod.signature(infos)
        forced = self.store.string_list("text_columns")
        inventory = self.owner.inventory
        profiles = inventory.get(self.name, rel, signature) if inventory is not None else None
        if profiles is None:
            profiles = classify_mod.classify(infos, samples, entity_counter=self._counter(),
                                             text_columns=forced)
            if inventory is not None:
                inventory.put(self.name, rel, signature, profiles)
        forced_keys = {c.casefold() for c in forced}
        for col in columns:  # the store's text_columns apply even to a profile cached before they were set
            if col.casefold() in forced_keys and profiles.get(col, ColumnProfile()).kind != FREE_TEXT:
                profiles[col] = ColumnProfile(FREE_TEXT, [], 1.0, len(sample))
        return profiles

    @staticmethod
    def column_type(column: str, values: list[str]) -> str:
        """NUMBER for a column whose sampled values are all plain numbers, so it is never read as text;
        a named column, or digit runs long enough to be phone numbers, stay STRING."""
        present = [v.strip() for v in values if v.strip()]
        if not present or classify_mod.kind_from_name(column) is not None:
            return STRING
        for v in present:
            if not _NUMERIC.match(v) or ("." not in v and "," not in v and sum(c.isdigit() for c in v) >= 7):
                return STRING
        return NUMBER

    def _counter(self):
        """Presidio's entity counter for the owner's analyzer model, built once; None without a model."""
        if not self.owner.analyzer_model:
            return None
        if self._entity_counter is None:
            from pii.core import detection

            analyzer = detection.build_analyzer(self.owner.analyzer_model)
            self._entity_counter = functools.partial(detection.entities_in, analyzer)
        return self._entity_counter

    def classify_file(self, rel: str, rows: int = SAMPLE_ROWS) -> tuple[dict[str, ColumnProfile], int]:
        """One file's columns classified from its first `rows` records (as `locate` samples them), stored
        in the inventory. Returns (profiles, records sampled)."""
        with self.open(rel) as (columns, _extra_key, records):
            sample = []
            for _n, row in records:
                sample.append(row)
                if len(sample) >= rows:
                    break
            return self.profiles(rel, columns, sample), len(sample)

    # ---- scanning
    def scan_file(self, rel: str, matcher: SubjectMatcher, coverage: Coverage, shown: Callable[[str], str]
                  ) -> list[Finding]:
        """One file's records about the subject, through the raw-bytes prefilter of connectors/csvscan.py:
        only blocks holding one of the subject's tokens are parsed. Records the file in `coverage` (searched,
        or read in part from an unterminated quote on) under `shown(rel)`, the name as printed (a
        pii.core.printable.PlaceNames withholds names that name the subject)."""
        csv.field_size_limit(max(csv.field_size_limit(), FIELD_SIZE_LIMIT))
        layout = self.layout(rel)
        path = self.local_path(rel)
        place = shown(rel)
        utf8 = layout.encoding in ("utf-8", "utf-8-sig")
        try:
            fh = open(path, "rb") if utf8 else open(path, encoding=layout.encoding, newline="")
        except OSError as exc:
            raise StoreError(self.name, f"file {place}", f"cannot be read ({exc.strerror})") from None
        with fh:
            if utf8:
                if fh.read(3) != codecs.BOM_UTF8:
                    fh.seek(0)
                source = fh
            else:
                source = csvscan.Utf8Reader(fh)
            try:
                findings, n, unterminated = self._scan_blocks(rel, layout, source, matcher, place)
            except _LoneCR:
                findings, n, unterminated = self._scan_records(rel, matcher, coverage, shown), None, None
        if unterminated is not None:
            reason = (f"a quoted field opened at line {unterminated.line} never closes: from there each line "
                      f"was read as one record (rows from {unterminated.row}); fix the file and search again")
            coverage.add_partial(place, reason, from_line=unterminated.line)
            self.say(f"{place}: {reason}")
        elif n is not None:
            coverage.add_searched(place, rows=n)
            self.say(f"{place}: {n} rows scanned, {len(findings)} matched")
        return findings

    def _scan_blocks(self, rel: str, layout: Layout, source, matcher: SubjectMatcher, place: str
                     ) -> tuple[list[Finding], int, "csvscan.Unterminated | None"]:
        """(findings, records, where a quote was left open or None) of a UTF-8 byte stream, block by block;
        `place` is the file's name as printed (in read errors)."""
        findings: list[Finding] = []
        n = lines = width = 0
        plan = candidate = needles = None
        unterminated = None
        delimiter, skip = layout.delimiter, layout.skipinitialspace

        def test(row: list[str]) -> None:
            if len(row) < width:
                row += [""] * (width - len(row))
            if candidate(row):
                finding = self.finding(rel, n, row, plan, matcher)
                if finding is not None:
                    findings.append(finding)

        with self.read_errors(place, line=lambda: lines + 1):
            blocks = csvscan.BlockReader(source, delimiter, skip)
            for block, deq, open_at_end in blocks.blocks():
                tail = b""
                if open_at_end:  # a quoted field never closes: the rest is read line by line
                    cut = blocks.open_field_start(block)
                    block, tail = block[:cut], block[cut:]
                    deq = blocks.dequoted(block)[0]
                if plan is None:  # the first block: header, sample, plan; every record tested
                    if csvscan.lone_cr(block):
                        raise _LoneCR()
                    text = block.decode("utf-8")
                    data = [r for r in csvscan.parse_rows(text, delimiter, skip) if r]
                    if not data and not tail:
                        lines += csvscan.physical_lines(block)
                        continue
                    header = data[0] if data else next(
                        (r for r in csvscan.line_rows(tail.decode("utf-8"), delimiter, skip) if r), [])
                    if self.headerless(header):
                        columns = positional_columns(len(header))
                    else:
                        columns = unique_columns(header)
                        data = data[1:]
                        if not data and tail:  # the header is the line where the open quote is
                            tail = tail.split(b"\n", 1)[1] if b"\n" in tail else b""
                            lines += 1
                    width = len(columns)
                    sample = [r + [""] * (width - len(r)) for r in data[:SAMPLE_ROWS]]
                    profiles = self.profiles(rel, columns, sample)
                    plan = FilePlan.build(columns, profiles, matcher, extra_key_for(columns))
                    candidate = RowFilter(matcher, plan)
                    needles = csvscan.RawNeedles(matcher, [v for _i, vals in plan.ids for v in vals])
                    for row in data:
                        n += 1
                        test(row)
                elif needles and needles.hit(block):
                    for row in csvscan.parse_rows(block.decode("utf-8"), delimiter, skip):
                        if row:
                            n += 1
                            test(row)
                elif (records := csvscan.count_records(deq)) is not None:
                    n += records  # nothing of the subject in this block: count its records, parse nothing
                else:
                    n += sum(1 for row in csvscan.parse_rows(block.decode("utf-8"), delimiter, skip) if row)
                lines += csvscan.physical_lines(block)
                if tail:
                    unterminated = csvscan.Unterminated(lines + 1, n + 1)
                    for row in csvscan.line_rows(tail.decode("utf-8"), delimiter, skip):
                        if row:
                            n += 1
                            test(row)
                    lines += csvscan.physical_lines(tail)
        return findings, n, unterminated

    def _scan_records(self, rel: str, matcher: SubjectMatcher, coverage: Coverage, shown: Callable[[str], str]
                      ) -> list[Finding]:
        """Record by record through the csv module (files whose lines end in CR alone)."""
        findings: list[Finding] = []
        scanned = 0
        with self.open(rel) as (columns, extra_key, rows):
            sample: list[tuple[int, list[str]]] = list(itertools.islice(rows, SAMPLE_ROWS))
            profiles = self.profiles(rel, columns, [r for _, r in sample])
            plan = FilePlan.build(columns, profiles, matcher, extra_key)
            candidate = RowFilter(matcher, plan)
            for source in (sample, rows):
                for n, row in source:
                    scanned = n
                    if candidate(row):
                        finding = self.finding(rel, n, row, plan, matcher)
                        if finding is not None:
                            findings.append(finding)
        coverage.add_searched(shown(rel), rows=scanned)
        self.say(f"{shown(rel)}: {scanned} rows scanned, {len(findings)} matched")
        return findings

    def finding(self, rel: str, n: int, row: list[str], plan: FilePlan, matcher: SubjectMatcher
                ) -> Finding | None:
        """The finding for record `n` of a file (`row` padded to the header's width), None when it is not
        about the subject. Its record is the whole row for an identifier match, else only the text fields
        that mention the subject."""
        entities, identifier, texts = match_row(matcher, plan, row)
        if not entities:
            return None
        if identifier:
            record = self.record(plan.columns, plan.extra_key, row)
        else:  # only the text that mentions the subject: other people's fields stay out of the package
            record = {}
            for i in texts:
                if i < len(plan.columns):
                    record[plan.columns[i]] = row[i]
                else:
                    record.setdefault(plan.extra_key, []).append(row[i])
        return Finding(
            store=self.name, location={self.location_key: rel, "row": n}, entities=sorted(entities),
            match="identifier" if identifier else "text",
            strength=WEAK if entities <= {ENTITY_PERSON} else STRONG,
            container=rel, record=record,
        )

    @staticmethod
    def record(columns: list[str], extra_key: str, row: list[str]) -> dict:
        """A row as {column: value}; fields past the header as a list under `extra_key`."""
        record = dict(zip(columns, row))
        if len(row) > len(columns):
            record[extra_key] = row[len(columns):]
        return record

    # ---- erasure
    # ---- rewriting text and JSON lines (FTP drops: .txt, .jsonl)
    def rewrite_lines(self, remote: str, todo: FilePlanOfActions, json_lines: bool) -> tuple[int, int]:
        """Delete and update lines of a text or JSON-lines file in place (temp beside it, then rename):
        a line that no longer holds the located record is left alone. Returns (deleted, updated)."""
        local = self.local_path(remote)
        encoding, _fallback = self.text_encoding(remote)
        with open(local, "rb") as fh:
            codec, bom = write_codec(encoding, fh.read(4))
        tmp = local.with_name(local.name + ".new")
        deleted = updated = 0
        with open(local, encoding=encoding, newline="") as src, \
                open(tmp, "w", encoding=codec, errors="strict", newline="", opener=_private_opener) as out:
            if bom:
                out.write("\ufeff")
            n = 0
            for line in src:
                n += 1
                if n in todo.expected and not same_line(line, todo.expected[n], json_lines):
                    pass  # not the record that was located (moved or changed): untouched
                elif n in todo.deletes:
                    deleted += 1
                    line = ""
                elif n in todo.updates:
                    new = self._updated_line(remote, n, line, todo.updates[n], json_lines, codec)
                    if new is not None:
                        updated += 1
                        line = new
                out.write(line)
                if n >= todo.last:
                    break
            while chunk := src.read(1 << 20):  # past the last target: copy as it is
                out.write(chunk)
        os.replace(tmp, local)
        return deleted, updated

    def _updated_line(self, remote: str, n: int, line: str, changes: dict, json_lines: bool, codec: str
                      ) -> str | None:
        place = f"file {remote}"
        term = line_terminator(line)
        text, doc = split_line(line, json_lines)
        if isinstance(doc, (dict, list)):
            leaves = {leaf.name: leaf for leaf in json_leaves(doc)}
            for key, value in changes.items():
                leaf = leaves.get(str(key))
                if leaf is None:
                    raise StoreError(self.name, place, f"row {n} has no field {str(key)!r}")
                leaf.parent[leaf.index] = value
            try:
                new = dumps_like(doc, text)
            except (TypeError, ValueError):
                raise StoreError(self.name, place, f"row {n}: a new value cannot be written as JSON") from None
        else:
            unknown = [str(k) for k in changes if k != LINE_KEY]
            if unknown:
                raise StoreError(self.name, place, f"row {n} is a text line: only {LINE_KEY!r} can be updated, "
                                 f"not {unknown[0]!r}")
            value = changes.get(LINE_KEY)
            new = "" if value is None else str(value).replace("\r", " ").replace("\n", " ")
        if new == text:
            return None
        try:
            new.encode(codec)
        except UnicodeError:
            raise StoreError(self.name, place, f"row {n}: a new value cannot be written in the file's "
                             f"encoding ({codec})") from None
        return new + term

    def rewrite(self, rel: str, todo: FilePlanOfActions) -> tuple[int, int]:
        """(rows deleted, rows updated) in one file, rewritten atomically; nothing written when no record
        changes. The new text goes to a temp file beside it (`TMP_MARK`, this process's pid and host tag),
        is fsynced and renamed over the file, which must not have changed meanwhile. Untouched records keep
        their bytes; a record whose located values (`todo.expected`) are no longer there is left alone; a
        row past the end affects nothing; a file whose every record is deleted keeps its header."""
        path = self.local_path(rel)
        place = f"file {rel}"
        try:
            before = path.stat()
        except FileNotFoundError:
            self.say(f"{rel}: no longer exists, nothing to erase")
            return 0, 0
        except OSError as exc:
            raise StoreError(self.name, place, f"cannot be read ({exc.strerror})") from None
        if not todo.last:
            return 0, 0
        csv.field_size_limit(max(csv.field_size_limit(), FIELD_SIZE_LIMIT))
        layout = self.layout(rel)
        tmp = path.with_name(f".{path.name}{TMP_MARK}{os.getpid()}-{host_tag()}{secrets.token_hex(6)}")
        deleted = updated = 0
        codec = layout.encoding
        try:
            with open(path, "rb") as raw_in:
                head = raw_in.read(4)
            codec, bom = write_codec(layout.encoding, head)
            with open(path, encoding=layout.encoding, newline="") as src:
                lines: list[str] = []
                tap = lines.append

                def tapped():
                    for line in src:
                        tap(line)
                        yield line

                reader = layout.reader(tapped())
                with self.read_errors(rel, reader):
                    header = next((r for r in reader if r), [])
                no_header = self.headerless(header)
                columns = positional_columns(len(header)) if no_header else unique_columns(header)
                targets = self._resolve_updates(rel, columns, todo.updates)
                _ACTIVE_TMPS.add(str(tmp))
                with open(tmp, "x", encoding=codec, errors="strict", newline="", opener=_private_opener) as out:
                    if bom:
                        out.write("\ufeff")
                    first = [(header, "".join(lines))] if no_header else []
                    if not no_header:
                        out.write("".join(lines))  # blank lines before the header, then the header
                    lines.clear()
                    n = 0

                    def records():
                        yield from first  # a file without a header: its first line is record 1
                        for row in reader:
                            raw = lines[0] if len(lines) == 1 else "".join(lines)
                            lines.clear()
                            yield row, raw

                    with self.read_errors(rel, reader):
                        for row, raw in records():
                            if row:
                                n += 1
                                if n in todo.expected and not _same_record(columns, row, todo.expected[n]):
                                    pass  # not the record that was located (moved or changed): untouched
                                elif n in todo.deletes:
                                    deleted += 1
                                    raw = ""
                                elif n in targets:
                                    new = self._updated_record(rel, n, layout, codec, len(columns), row,
                                                               targets[n], raw)
                                    if new is not None:
                                        updated += 1
                                        raw = new
                            if raw:
                                out.write(raw)
                            if n >= todo.last:
                                break
                        while chunk := src.read(1 << 20):  # past the last target: copy as it is
                            out.write(chunk)
                    out.flush()
                    if deleted or updated:
                        os.fsync(out.fileno())
            if not (deleted or updated):  # nothing to change (rows already gone): leave the file alone
                os.unlink(tmp)
                return 0, 0
            os.chmod(tmp, stat_mod.S_IMODE(before.st_mode))
            now = path.stat()
            if (now.st_mtime_ns, now.st_size, now.st_ino) != (before.st_mtime_ns, before.st_size, before.st_ino):
                raise StoreError(self.name, place, "changed while it was being rewritten; try again")
            os.replace(tmp, path)
            fsync_dir(path.parent)
        except BaseException as exc:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            if isinstance(exc, UnicodeError):
                raise StoreError(self.name, place, f"cannot be written back as {codec}") from None
            if isinstance(exc, OSError):
                raise StoreError(self.name, place,
                                 f"cannot be rewritten ({exc.strerror or type(exc).__name__})") from None
            raise
        finally:
            _ACTIVE_TMPS.discard(str(tmp))
        return deleted, updated

    def _resolve_updates(self, rel: str, columns: list[str], updates: dict[int, dict[str, object]]
                         ) -> dict[int, list[tuple[int | None, object]]]:
        """Per row, (column position or None for the extra fields, new value); unknown names are an error."""
        extra_key = extra_key_for(columns)
        exact = {c: i for i, c in enumerate(columns)}
        folded = {c.casefold(): i for i, c in enumerate(columns)}
        out: dict[int, list[tuple[int | None, object]]] = {}
        for row, changes in updates.items():
            resolved: list[tuple[int | None, object]] = []
            for col, value in changes.items():
                key = str(col)
                if key in exact:
                    resolved.append((exact[key], value))
                elif key.casefold() in folded:
                    resolved.append((folded[key.casefold()], value))
                elif key.casefold() == extra_key.casefold():
                    resolved.append((None, value))
                else:
                    raise StoreError(self.name, f"file {rel}", f"has no column {key!r}")
            out[row] = resolved
        return out

    def _updated_record(self, rel: str, n: int, layout: Layout, codec: str, width: int, row: list[str],
                        changes: list[tuple[int | None, object]], raw: str) -> str | None:
        """The record re-serialised with `changes`, ending as it ended; None when nothing changes."""
        new = list(row)
        for i, value in changes:
            if i is None:  # the fields past the header: None drops them, a list as long replaces them
                if value is None:
                    extras = []
                elif isinstance(value, (list, tuple)) and len(value) == max(len(row) - width, 0):
                    extras = ["" if v is None else str(v) for v in value]
                else:
                    raise StoreError(self.name, f"file {rel}", f"row {n}: the fields past the header can only be "
                                     "cleared (None) or replaced one for one (a list as long)")
                new = (new + [""] * (width - len(new)))[:width] + extras
                continue
            if len(new) <= i:
                new += [""] * (i + 1 - len(new))
            new[i] = "" if value is None else str(value)
        size = max(len(new), len(row))
        if new + [""] * (size - len(new)) == row + [""] * (size - len(row)):
            return None
        buf = io.StringIO()
        csv.writer(buf, delimiter=layout.delimiter, quotechar='"', doublequote=True,
                   quoting=csv.QUOTE_MINIMAL, lineterminator="\r\n").writerow(new)
        text = buf.getvalue()[:-2] + line_terminator(raw)
        try:
            text.encode(codec)
        except UnicodeError:
            raise StoreError(self.name, f"file {rel}",
                             f"row {n}: a new value cannot be written in the file's encoding ({codec})") from None
        return text


# --------------------------------------------------------------------------- stray temp files
def clean_stray_temps(folder: Path, store: str) -> int:
    """Delete temp files that a crashed rewrite left anywhere under `folder`; returns how many. A temp file
    is stray when the process that wrote it is gone (its name carries this host's tag: a pid only means
    something on its own host), or it is older than an hour, whoever wrote it; temps this process is
    writing are left alone. A temp that cannot be removed is a StoreError naming `store` and the folder."""
    removed = 0
    now = time.time()
    for dirpath, _dirs, names in os.walk(folder):
        for name in names:
            if not is_temp_name(name):
                continue
            path = os.path.join(dirpath, name)
            if path in _ACTIVE_TMPS:
                continue
            try:
                age = now - os.stat(path).st_mtime
                stale = _temp_is_dead_runs(name) or age > STALE_TMP_SECONDS
                if stale:
                    os.unlink(path)
                    removed += 1
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise StoreError(store, f"folder {folder}",
                                 f"a stray temp file cannot be removed ({exc.strerror})") from None
    return removed


# --------------------------------------------------------------------------- JSON lines and text lines
@dataclass
class JsonLeaf:
    """One scalar inside a JSON line: its flat name, the key it sits under, and where to write it."""

    name: str
    key: str | None
    value: object
    parent: object
    index: object


def json_leaves(doc) -> list[JsonLeaf]:
    """Scalars of a JSON object or array in document order, named ``a.b`` / ``a[0]`` (the first of two
    leaves with the same flat name wins). Iterative: deep nesting cannot exhaust the stack."""
    leaves: list[JsonLeaf] = []
    seen: set[str] = set()
    stack = [_children(doc, "", None)]
    while stack:
        try:
            name, key, parent, index, value = next(stack[-1])
        except StopIteration:
            stack.pop()
            continue
        if isinstance(value, (dict, list)):
            stack.append(_children(value, name, key))
        elif name not in seen:
            seen.add(name)
            leaves.append(JsonLeaf(name, key, value, parent, index))
    return leaves


def _children(node, prefix: str, key: str | None):
    if isinstance(node, dict):
        for k, v in node.items():
            yield (f"{prefix}.{k}" if prefix else str(k)), str(k), node, k, v
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield f"{prefix}[{i}]", key, node, i, v


def split_line(line: str, json_lines: bool) -> tuple[str, object]:
    """A line's text without its terminator and, in a JSON-lines file, its parsed value (None when the
    line is not JSON): how every reader of TXT and JSONL lines sees a line."""
    text = line[:len(line) - len(line_terminator(line))]
    doc = None
    if json_lines:
        try:
            doc = json.loads(text)
        except ValueError:
            doc = None
    return text, doc


def same_line(line: str, expected: dict, json_lines: bool) -> bool:
    """Whether a line still holds the record that was located there: a text line its ``{"line": text}``;
    a JSON line every expected field with the same value, whether the record was given flat (``a.b``,
    ``tags[0]``, as `locate` gives it) or as the parsed object's top-level keys (as `select` gives it)."""
    text, doc = split_line(line, json_lines)
    if not isinstance(doc, (dict, list)):
        return set(expected) == {LINE_KEY} and expected[LINE_KEY] == text
    leaves = {leaf.name: leaf.value for leaf in json_leaves(doc)}
    for key, want in expected.items():
        if isinstance(doc, dict) and key in doc and _same_value(doc[key], want):
            continue
        if key in leaves and _same_value(leaves[key], want):
            continue
        return False
    return True


def _same_value(have, want) -> bool:
    """JSON equality that keeps types apart (true is not 1, 1 is not "1")."""
    if type(have) is not type(want) and not (isinstance(have, (int, float)) and isinstance(want, (int, float))
                                             and not isinstance(have, bool) and not isinstance(want, bool)):
        return False
    return have == want


def dumps_like(doc, original: str) -> str:
    """`doc` serialised on one line in the style of the line it came from (separators, ASCII escapes)
    when json.dumps reproduces that line; else compact or spaced as the line looks, ASCII when it was."""
    ascii_only = original.isascii()
    try:
        before = json.loads(original)
    except ValueError:
        before = None
    for separators in ((", ", ": "), (",", ":")):
        for ensure_ascii in (ascii_only, not ascii_only):
            if before is not None and json.dumps(before, separators=separators, ensure_ascii=ensure_ascii) == original:
                return json.dumps(doc, separators=separators, ensure_ascii=ensure_ascii)
    return json.dumps(doc, separators=_guess_separators(original), ensure_ascii=ascii_only)


def _guess_separators(text: str) -> tuple[str, str]:
    """json.dumps's spaced separators when a ':' or ',' outside strings is followed by a space; else compact."""
    in_string = escaped = False
    prev = ""
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
            continue
        if ch == '"':
            in_string = True
        elif ch == " " and prev in (":", ","):
            return ", ", ": "
        prev = ch
    return ",", ":"
