"""A folder of CSV exports (store kind ``csv``).

Every file is streamed (never read whole into memory). Per file the connector works out how to read it
(encoding, delimiter, whether the first record is a header), classifies its columns from the header and a
small sample (cached in the inventory), then searches it through connectors/csvscan.py: blocks of raw
bytes holding none of the subject's tokens are only counted; the others are parsed and each record tested:
identifier columns are compared whole through `SubjectMatcher`, every other cell is searched inside. A
file that cannot be read or decoded is listed in `coverage` as not searched; one with an unterminated quote
as partly read.

Store options: ``path`` (the folder, required), ``encoding`` (used when a file is not UTF-8; default
cp1252), ``delimiter`` (skip sniffing), ``pattern`` (glob or list of globs, matched case-insensitively;
default ``**/*.csv`` and ``**/*.tsv``), ``skip_files`` (globs on the relative path or file name),
``text_columns`` (columns to classify as free text whatever their name) and ``header`` (auto, true, false).

Row numbers count data records as a CSV reader does: the header is excluded (a file without one counts
from its first line), a quoted newline does not
start a new record, and blank lines (which hold no record) are not counted.

Erasure (`apply`) rewrites each file once, atomically (temp file in the same folder, fsync, rename), and
keeps every untouched record byte for byte: raw records are cut out of the text by the same CSV reader
that numbers them, so numbering and rewriting can never disagree. A `drop` action removes a whole file
(selected with `RecordFilter.whole_files`); it is refused while another run's rewrite of it is under way.

`select(RecordFilter)` (pii/selection.py) streams each file whose name matches, testing every record
against the filter; `FILE_TIME` is the file's modification time as a UTC date.
"""
from __future__ import annotations

import codecs
import csv
import datetime as dt
import errno
import fnmatch
import functools
import io
import itertools
import os
import re
import secrets
import stat as stat_mod
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import ClassVar, Iterator

import phonenumbers

from connectors import csvscan
from connectors.base import DELETE, DROP, Connector, Container, Done, ExecAction, Sampled, change_signature
from pii import classify as classify_mod
from pii.classify import NUMBER, STRING, ColumnInfo
from pii.coverage import Coverage
from pii.errors import ConfigError, StoreError, StoreUnreachable
from pii.findings import STRONG, WEAK, Finding
from pii.host import host_tag, process_gone
from pii.inventory import (
    EMAIL, FAMILY_NAME, FREE_TEXT, GIVEN_NAME, NAME, OTHER, PHONE, ColumnProfile,
)
from pii.policy import container_matches
from pii.printable import PlaceNames
from pii.selection import FILE_TIME, MESSAGE_DATE, RecordFilter
from pii.subject import EMAIL_FULL_RE  # the one email syntax
from pii.subject import (
    ENTITY_EMAIL, ENTITY_ID, ENTITY_PERSON, ENTITY_PHONE, SubjectMatcher, entities_of, fold,
)

DEFAULT_PATTERNS = ("**/*.csv", "**/*.tsv")
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


def _extra_key(columns: list[str]) -> str:
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


def _case_insensitive(pattern: str) -> str:
    """Glob `pattern` with every letter outside [...] widened to both cases (pathlib has no flag in 3.11)."""
    out, depth = [], 0
    for ch in pattern:
        if ch == "[":
            depth += 1
        elif ch == "]" and depth:
            depth -= 1
        out.append(f"[{ch.lower()}{ch.upper()}]" if ch.isalpha() and not depth and ch.lower() != ch.upper()
                   else ch)
    return "".join(out)


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
    """Whether a file name is one of `apply`'s temp files (never scanned, removed when stray)."""
    return name.startswith(".") and TMP_MARK in name and _TMP_NAME.match(name) is not None


def _temp_is_dead_runs(name: str) -> bool:
    """Whether a temp file's writer is certainly gone: the name carries this host's tag (or none: an
    earlier version's) and its pid is this process (a rewrite no longer being written: the caller skips
    active ones) or no longer runs. Another host's temp is judged by its age only."""
    m = _TMP_NAME.match(name)
    if m.group("host") is not None and m.group("host") != host_tag():
        return False
    if m.group("pid") is None:
        return True
    pid = int(m.group("pid"))
    return pid == os.getpid() or process_gone(pid)


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


def _fsync_dir(folder: Path) -> None:
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


# --------------------------------------------------------------------------- the connector
class CsvConnector(Connector):
    """A folder of CSV (and TSV) exports; locations are ``{"file": <relative path>, "row": n}``."""

    kind = "csv"
    location_key: ClassVar[str] = "file"  # findings' location: {location_key: rel, "row": n}

    def __init__(self, store, **kwargs):
        super().__init__(store, **kwargs)
        self._entity_counter = None
        self._layouts: dict[tuple, Layout] = {}  # per (file, mtime, size): files may change
        self.shown = PlaceNames(None, "file")  # place names as printed: set per subject by locate/apply

    # ---- configuration
    @property
    def folder(self) -> Path:
        return self.store.resolve_path(self.store.get("path"))

    def _patterns(self) -> list[str]:
        if not self.store.get("pattern"):
            return list(DEFAULT_PATTERNS)
        return self.store.string_list("pattern")

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

    # ---- Connector
    def check(self) -> None:
        folder = self.folder
        if not folder.is_dir():
            raise StoreUnreachable(self.name, f"folder {folder} does not exist")
        try:
            next(folder.iterdir(), None)
        except OSError as exc:
            raise StoreUnreachable(self.name, f"folder {folder} cannot be read ({exc.strerror})") from None

    def files(self) -> list[str]:
        """Relative POSIX paths of the files this store scans, sorted."""
        return self._listing()[0]

    def _listing(self) -> tuple[list[str], list[str]]:
        """(files to scan, files the patterns match but ``skip_files`` leaves out), relative paths, sorted:
        one walk of the folder for both."""
        self.check()
        folder = self.folder
        skip = [s.casefold() for s in self.store.string_list("skip_files")]
        found: set[str] = set()
        excluded: set[str] = set()
        for pattern in self._patterns():
            for path in folder.glob(_case_insensitive(pattern)):
                if not path.is_file():
                    continue
                rel = path.relative_to(folder).as_posix()
                if is_temp_name(path.name):
                    continue
                low = rel.casefold()
                if any(fnmatch.fnmatchcase(low, s) or fnmatch.fnmatchcase(low.rsplit("/", 1)[-1], s)
                       for s in skip):
                    excluded.add(rel)
                    continue
                found.add(rel)
        return sorted(found), sorted(excluded)

    def locate(self, matcher: SubjectMatcher) -> list[Finding]:
        """Every record about the subject in every file. A file that cannot be read or decoded is listed in
        `self.coverage` as not searched (with why) and the search goes on; files left out by ``skip_files``
        are listed as excluded. Names that name the subject are withheld in progress and coverage."""
        findings: list[Finding] = []
        self.coverage = Coverage(self.name, self.kind)
        self.shown = PlaceNames(matcher, "file")
        self.remove_stray_temps()
        files, excluded = self._listing()
        for rel in excluded:
            self.coverage.add_excluded(self.shown(rel), "listed under skip_files")
        for rel in files:
            try:
                findings.extend(self._scan_file(rel, matcher))
            except StoreError as exc:
                self.coverage.add_skipped(self.shown(rel), exc.reason)
                self.say(f"{self.shown(rel)}: not searched ({exc.reason})")
        return findings

    def iter_records(self, relpath: str) -> Iterator[tuple[int, dict]]:
        """(row number, {column: value}) for every record of one file, numbered as `locate` numbers them."""
        with self._open(relpath) as (columns, extra_key, rows):
            for n, row in rows:
                yield n, self._record(columns, extra_key, row)

    # ---- selection (pii/selection.py)
    def select(self, flt: RecordFilter) -> list[Finding]:
        """Records (or, with `flt.whole_files`, files) the filter selects, file by file, streamed."""
        self.skipped, self.undated = [], 0
        findings: list[Finding] = []
        for rel in self.files():
            probe = Finding(store=self.name, location={self.location_key: rel}, container=rel)
            if not any(container_matches(p, probe) for p in flt.containers):
                continue
            findings.extend(self._select_file(rel, flt))
        return findings

    def _skip(self, rel: str, reason: str) -> list[Finding]:
        self.skipped.append((rel, reason))
        self.say(f"{rel}: skipped ({reason})")
        return []

    def _select_file(self, rel: str, flt: RecordFilter) -> list[Finding]:
        if flt.mail_from or flt.message_ids:
            return self._skip(rel, "the filter names mail senders or message ids, and a file holds no mail")
        if flt.date_column == MESSAGE_DATE:
            return self._skip(rel, "no message date: a file holds no mail")
        entities = [flt.entity] if flt.entity else []
        match = "text" if flt.text_test is not None else "identifier"
        file_ok: bool | None = True
        if flt.date_column == FILE_TIME:
            try:
                mtime = self._path(rel).stat().st_mtime
            except OSError as exc:
                raise StoreError(self.name, f"file {rel}", f"cannot be read ({exc.strerror})") from None
            file_ok = flt.date_ok(dt.datetime.fromtimestamp(mtime, dt.timezone.utc).date())
            if not file_ok:
                self.say(f"{rel}: modified outside the date range")
                return []
            if flt.whole_files and not flt.equals and flt.text_test is None:  # the file time alone decides
                self.say(f"{rel}: selected as a file")
                return [Finding(store=self.name, location={self.location_key: rel}, entities=list(entities),
                                match=match, container=rel, record=None)]
        findings: list[Finding] = []
        undated = read = 0
        with self._open(rel) as (columns, extra_key, rows):
            index = {c: i for i, c in enumerate(columns)}
            folded = {c.casefold(): i for i, c in enumerate(columns)}

            def position(name: str) -> int | None:
                return index.get(name, folded.get(name.casefold()))

            missing = [c for c in flt.columns_needed() if position(c) is None]
            if missing:
                return self._skip(rel, f"no column {missing[0]}")
            equals = [(position(c), accepted) for c, accepted in flt.equals.items()]
            date_at = position(flt.date_column) if flt.date_column and flt.date_column != FILE_TIME else None
            texts: list[int] = []
            if flt.text_test is not None:
                sample: list[tuple[int, list[str]]] = list(itertools.islice(rows, SAMPLE_ROWS))
                profiles = self._profiles(rel, columns, [r for _, r in sample])
                texts = [i for i, c in enumerate(columns) if profiles.get(c, ColumnProfile()).kind == FREE_TEXT]
                if not texts:
                    return self._skip(rel, "no free-text column")
                rows = itertools.chain(sample, rows)
            for n, row in rows:
                read = n
                if any(row[i].strip() not in accepted for i, accepted in equals):
                    continue
                in_range = flt.date_ok(row[date_at]) if date_at is not None else True
                if in_range is False:
                    continue
                passing: list[int] = []
                if flt.text_test is not None:
                    passing = [i for i in texts + list(range(len(columns), len(row))) if flt.text_ok(row[i])]
                    if not passing:
                        continue
                if in_range is None:
                    undated += 1
                    continue
                if flt.whole_files:  # one selected record selects the file: no need to read on
                    self.say(f"{rel}: selected as a file")
                    return [Finding(store=self.name, location={self.location_key: rel}, entities=list(entities),
                                    match=match, container=rel, record=None)]
                if flt.text_test is not None:  # as locate records a text match: the free text that passed
                    record: dict = {}
                    for i in passing:
                        if i < len(columns):
                            record[columns[i]] = row[i]
                        else:
                            record.setdefault(extra_key, []).append(row[i])
                else:
                    record = self._record(columns, extra_key, row)
                findings.append(Finding(store=self.name, location={self.location_key: rel, "row": n},
                                        entities=list(entities), match=match, container=rel, record=record))
        self.undated += undated
        self.say(f"{rel}: {read} rows read, {len(findings)} selected"
                 + (f", {undated} without a readable date" if undated else ""))
        return findings

    # ---- erasure
    def apply(self, actions: list[ExecAction], done: Done, matcher: SubjectMatcher) -> None:
        """Per file, one atomic rewrite carrying out all its actions; `done` once per file after the rename.

        A row number past the end of the file (already deleted) affects nothing; a file whose every data
        record is deleted keeps its header. Untouched records keep their bytes (line endings, quoting,
        spacing); updated records are re-serialised with the file's delimiter and line ending.

        A `drop` action (location {"file": rel}, no row) removes the whole file instead; a file already
        gone counts as done with 0 rows."""
        self.check()
        self.shown = PlaceNames(matcher, "file")
        self.remove_stray_temps()
        by_file: dict[str, list[ExecAction]] = {}
        for a in actions:
            rel = a.container or (a.location.get("file") if isinstance(a.location, dict) else None)
            if not rel or (isinstance(a.location, dict) and a.location.get("file", rel) != rel):
                raise StoreError(self.name, f"action {a.action_id}", "names no file, or two different files")
            by_file.setdefault(rel, []).append(a)
        for rel in sorted(by_file):
            file_actions = by_file[rel]
            if any(a.kind == DROP for a in file_actions):  # the file goes: its row actions go with it
                dropped = self._drop(rel, file_actions)
                done([a.action_id for a in file_actions], dropped, None)
                continue
            deleted, updated = self._rewrite(rel, FilePlanOfActions(self.name, rel, file_actions))
            self.say(f"{self.shown(rel)}: {deleted} rows deleted, {updated} rows updated")
            if self.shown.personal(rel):
                self._unname(rel)
            done([a.action_id for a in file_actions], deleted + updated, None)

    def _unname(self, rel: str) -> None:
        """A file named after the subject: its name is personal data too. Removed when no record is left in
        it, else renamed (``renamed-<hash>.csv`` in the same folder, atomically) so other people's records
        stay where they were."""
        path = self._path(rel)
        if not path.exists():
            return
        if not any(True for _ in self.iter_records(rel)):
            path.unlink()
            _fsync_dir(path.parent)
            self.say(f"{self.shown(rel)}: no record left, file removed (its name named the subject)")
            return
        import hashlib

        stem = "renamed-" + hashlib.sha256(rel.encode("utf-8")).hexdigest()[:12]
        target, n = path.with_name(stem + path.suffix), 2
        while target.exists():
            target, n = path.with_name(f"{stem}-{n}{path.suffix}"), n + 1
        os.rename(path, target)
        _fsync_dir(path.parent)
        self.say(f"{self.shown(rel)}: renamed to {target.name} (its name named the subject)")

    def _drop(self, rel: str, actions: list[ExecAction]) -> int:
        """Remove one whole file; returns its record count (at least 1), or 0 when it is gone already.

        Refused while another run's rewrite of the file is in progress (its temp file would be renamed
        over the path again), and when the file changes while its records are being counted."""
        for a in actions:
            if a.kind == DROP and isinstance(a.location, dict) and a.location.get("row") is not None:
                raise StoreError(self.name, f"action {a.action_id}", "a drop names a whole file, not a row")
        path = self._path(rel)
        place = f"file {rel}"
        try:
            before = path.stat()
        except FileNotFoundError:
            self.say(f"{rel}: no longer exists, nothing to drop")
            return 0
        except OSError as exc:
            raise StoreError(self.name, place, f"cannot be read ({exc.strerror})") from None
        if not stat_mod.S_ISREG(before.st_mode):
            raise StoreError(self.name, place, "is not a regular file")
        prefix = f".{path.name}{TMP_MARK}"
        try:
            busy = [n for n in os.listdir(path.parent) if n.startswith(prefix) and is_temp_name(n)]
        except OSError as exc:
            raise StoreError(self.name, place, f"its folder cannot be read ({exc.strerror})") from None
        if busy:  # stray temps were removed at the start of apply: these belong to a live rewrite
            raise StoreError(self.name, place, "is being rewritten by another run; try again")
        try:
            with self._open(rel) as (_columns, _extra, rows):
                records = sum(1 for _ in rows)
        except StoreError:  # not readable as CSV: it is dropped all the same, as one unit
            records = 0
        try:
            now = path.stat()
            if (now.st_mtime_ns, now.st_size, now.st_ino) != (before.st_mtime_ns, before.st_size, before.st_ino):
                raise StoreError(self.name, place, "changed while it was being dropped; try again")
            os.unlink(path)
            _fsync_dir(path.parent)
        except FileNotFoundError:
            self.say(f"{rel}: no longer exists, nothing to drop")
            return 0
        except OSError as exc:
            raise StoreError(self.name, place, f"cannot be removed ({exc.strerror or type(exc).__name__})") from None
        self.say(f"{rel}: file dropped ({records} rows)")
        return max(records, 1)

    def remove_stray_temps(self) -> int:
        """Delete temp files that a crashed rewrite left in the folder; returns how many. A temp file is
        stray when the process that wrote it is gone (its name carries this host's tag: a pid only means
        something on its own host), or it is older than an hour, whoever wrote it."""
        folder = self.folder
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
                    raise StoreError(self.name, f"folder {folder}",
                                     f"a stray temp file cannot be removed ({exc.strerror})") from None
        if removed:
            self.say(f"{removed} stray temp files from an interrupted erasure removed")
        return removed

    def _rewrite(self, rel: str, todo: "FilePlanOfActions") -> tuple[int, int]:
        """(rows deleted, rows updated) in one file, rewritten atomically; nothing written when no record
        changes."""
        path = self._path(rel)
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
                with self._read_errors(rel, reader):
                    header = next((r for r in reader if r), [])
                no_header = self.headerless(header)
                columns = positional_columns(len(header)) if no_header else unique_columns(header)
                targets = self._resolve_updates(rel, columns, todo.updates)
                _ACTIVE_TMPS.add(str(tmp))
                with open(tmp, "x", encoding=codec, errors="strict", newline="") as out:
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

                    with self._read_errors(rel, reader):
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
            _fsync_dir(path.parent)
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
        extra_key = _extra_key(columns)
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

    # ---- scanning
    def _scan_file(self, rel: str, matcher: SubjectMatcher) -> list[Finding]:
        """One file's records about the subject, through the raw-bytes prefilter of connectors/csvscan.py:
        only blocks holding one of the subject's tokens are parsed. Records the file's coverage (read in part
        from an unterminated quote on)."""
        csv.field_size_limit(max(csv.field_size_limit(), FIELD_SIZE_LIMIT))
        layout = self.layout(rel)
        path = self._path(rel)
        shown = self.shown(rel)
        utf8 = layout.encoding in ("utf-8", "utf-8-sig")
        try:
            fh = open(path, "rb") if utf8 else open(path, encoding=layout.encoding, newline="")
        except OSError as exc:
            raise StoreError(self.name, f"file {shown}", f"cannot be read ({exc.strerror})") from None
        with fh:
            if utf8:
                if fh.read(3) != codecs.BOM_UTF8:
                    fh.seek(0)
                source = fh
            else:
                source = csvscan.Utf8Reader(fh)
            try:
                findings, n, unterminated = self._scan_blocks(rel, layout, source, matcher)
            except _LoneCR:
                findings, n, unterminated = self._scan_records(rel, matcher), None, None
        if unterminated is not None:
            reason = (f"a quoted field opened at line {unterminated.line} never closes: from there each line "
                      f"was read as one record (rows from {unterminated.row}); fix the file and search again")
            self.coverage.add_partial(shown, reason, from_line=unterminated.line)
            self.say(f"{shown}: {reason}")
        elif n is not None:
            self.coverage.add_searched(shown, rows=n)
            self.say(f"{shown}: {n} rows scanned, {len(findings)} matched")
        return findings

    def _scan_blocks(self, rel: str, layout: Layout, source, matcher: SubjectMatcher
                     ) -> tuple[list[Finding], int, "csvscan.Unterminated | None"]:
        shown = self.shown(rel)
        findings: list[Finding] = []
        n = lines = width = 0
        plan = candidate = needles = None
        unterminated = None
        delimiter, skip = layout.delimiter, layout.skipinitialspace

        def test(row: list[str]) -> None:
            if len(row) < width:
                row += [""] * (width - len(row))
            if candidate(row):
                finding = self._finding(rel, n, row, plan, matcher)
                if finding is not None:
                    findings.append(finding)

        with self._read_errors(shown, line=lambda: lines + 1):
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
                    profiles = self._profiles(rel, columns, sample)
                    plan = FilePlan.build(columns, profiles, matcher, _extra_key(columns))
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

    def _scan_records(self, rel: str, matcher: SubjectMatcher) -> list[Finding]:
        """Record by record through the csv module (files whose lines end in CR alone)."""
        findings: list[Finding] = []
        scanned = 0
        with self._open(rel) as (columns, extra_key, rows):
            sample: list[tuple[int, list[str]]] = list(itertools.islice(rows, SAMPLE_ROWS))
            profiles = self._profiles(rel, columns, [r for _, r in sample])
            plan = FilePlan.build(columns, profiles, matcher, extra_key)
            candidate = RowFilter(matcher, plan)
            for source in (sample, rows):
                for n, row in source:
                    scanned = n
                    if candidate(row):
                        finding = self._finding(rel, n, row, plan, matcher)
                        if finding is not None:
                            findings.append(finding)
        self.coverage.add_searched(self.shown(rel), rows=scanned)
        self.say(f"{self.shown(rel)}: {scanned} rows scanned, {len(findings)} matched")
        return findings

    def _finding(self, rel: str, n: int, row: list[str], plan: FilePlan, matcher: SubjectMatcher
                 ) -> Finding | None:
        entities, identifier, texts = match_row(matcher, plan, row)
        if not entities:
            return None
        if identifier:
            record = self._record(plan.columns, plan.extra_key, row)
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
    def _record(columns: list[str], extra_key: str, row: list[str]) -> dict:
        record = dict(zip(columns, row))
        if len(row) > len(columns):
            record[extra_key] = row[len(columns):]
        return record

    # ---- discovery
    def containers(self, rows: int | None = None) -> list[Container]:
        """Every file the store scans, signed by its size and modification time."""
        out: list[Container] = []
        for rel in self.files():
            try:
                stat = self._path(rel).stat()
            except OSError:
                continue  # removed since it was listed
            out.append(Container(rel, change_signature("file", stat.st_size, stat.st_mtime_ns)))
        return out

    def sample_containers(self, names, rows, counter) -> Iterator[Sampled]:
        for rel in names:
            try:
                profiles, n = self.classify_file(rel, rows)
            except StoreError as exc:  # a malformed file: reported, the rest still swept
                yield Sampled(rel, error=exc.reason)
                continue
            yield Sampled(rel, profiles, n)

    def classify_file(self, rel: str, rows: int = SAMPLE_ROWS) -> tuple[dict[str, ColumnProfile], int]:
        """One file's columns classified from its first `rows` records (as `locate` samples them), stored
        in the inventory. Returns (profiles, records sampled)."""
        with self._open(rel) as (columns, _extra_key, records):
            sample = []
            for _n, row in records:
                sample.append(row)
                if len(sample) >= rows:
                    break
            return self._profiles(rel, columns, sample), len(sample)

    # ---- classification
    def _profiles(self, rel: str, columns: list[str], sample: list[list[str]]) -> dict[str, ColumnProfile]:
        """Column kinds from the inventory when its signature still holds, else classified and stored."""
        samples = {col: [row[i] for row in sample] for i, col in enumerate(columns)}
        infos = [ColumnInfo(col, self._column_type(col, samples[col])) for col in columns]
        signature = classify_mod.signature(infos)
        forced = self.store.string_list("text_columns")
        profiles = self.inventory.get(self.name, rel, signature) if self.inventory is not None else None
        if profiles is None:
            profiles = classify_mod.classify(infos, samples, entity_counter=self._counter(),
                                             text_columns=forced)
            if self.inventory is not None:
                self.inventory.put(self.name, rel, signature, profiles)
        forced_keys = {c.casefold() for c in forced}
        for col in columns:  # the store's text_columns apply even to a profile cached before they were set
            if col.casefold() in forced_keys and profiles.get(col, ColumnProfile()).kind != FREE_TEXT:
                profiles[col] = ColumnProfile(FREE_TEXT, [], 1.0, len(sample))
        return profiles

    @staticmethod
    def _column_type(column: str, values: list[str]) -> str:
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
        if not self.analyzer_model:
            return None
        if self._entity_counter is None:
            from pii import detection

            analyzer = detection.build_analyzer(self.analyzer_model)
            self._entity_counter = functools.partial(detection.entities_in, analyzer)
        return self._entity_counter

    # ---- files
    def _path(self, rel: str) -> Path:
        """The local file that `rel` names. Every read and rewrite goes through here, so a subclass
        that works on local copies of remote files (connectors.ftp) overrides only this."""
        folder = self.folder
        path = folder / PurePosixPath(rel)
        try:
            path.resolve().relative_to(folder.resolve())
        except ValueError:
            raise StoreError(self.name, f"file {rel}", "lies outside the store's folder") from None
        return path

    def text_encoding(self, rel: str) -> tuple[str, bool]:
        """(encoding, whether it is the fallback) that decodes the whole file: UTF-8 (BOM or not),
        UTF-16/32 with a BOM, else the store's fallback encoding (cp1252 by default)."""
        path = self._path(rel)
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
        path = self._path(rel)
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
    def _open(self, rel: str):
        """(columns, extra key, iterator of (row number, fields padded to the header's width))."""
        csv.field_size_limit(max(csv.field_size_limit(), FIELD_SIZE_LIMIT))
        layout = self.layout(rel)
        path = self._path(rel)
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
                yield columns, _extra_key(columns), rows
            else:
                columns = unique_columns(header)
                yield columns, _extra_key(columns), self._rows(reader, rel, len(columns))

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
        with self._read_errors(rel, reader):
            for row in reader:
                if not row:  # a blank line holds no record
                    continue
                n += 1
                if len(row) < width:
                    row += [""] * (width - len(row))
                yield n, row

    def _header(self, reader, rel: str) -> list[str]:
        with self._read_errors(rel, reader):
            for row in reader:
                if row:
                    return row
        return []

    @contextmanager
    def _read_errors(self, rel: str, reader=None, *, line=None):
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
