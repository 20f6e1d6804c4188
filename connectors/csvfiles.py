"""A folder of CSV exports (store kind ``csv``).

Every file is streamed (never read whole into memory). Per file the connector works out how to read it
(encoding, delimiter, whether the first record is a header), classifies its columns from the header and a
small sample (cached in the inventory), then searches it through connectors/csvscan.py: blocks of raw
bytes holding none of the subject's tokens are only counted; the others are parsed and each record tested:
identifier columns are compared whole through `SubjectMatcher`, every other cell is searched inside. A
file that cannot be read or decoded is listed in `coverage` as not searched; one with an unterminated quote
as partly read. Reading, classifying, searching and rewriting one file is connectors/fileformat.py
(`FileFormat`, shared with the FTP connector); this module lists the folder and drives it.

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

Documents: when ``pattern`` lists them (e.g. ``**/*.pdf``), PDF, DOCX and XLSX files are searched by
connectors/documents.py (locations ``{"file": rel, "page": n}``, ``{"file": rel, "sheet": s, "cell": "B3"}``,
...; ``max_document_mb``, default 50); a ``delete`` of a place in one removes the whole file, XLSX cells are
redacted in place (atomically), PDF/DOCX are left for review. Sweeps do not classify them.

`select(RecordFilter)` (pii/core/selection.py) streams each file whose name matches, testing every record
against the filter; `FILE_TIME` is the file's modification time as a UTC date.
"""
from __future__ import annotations

import datetime as dt
import fnmatch
import itertools
import os
import stat as stat_mod
from pathlib import Path, PurePosixPath
from typing import ClassVar, Iterator

from connectors import documents as docs
from connectors.base import DELETE, DROP, UPDATE, Connector, Container, Done, ExecAction, Sampled, change_signature
from connectors.fileformat import (
    SAMPLE_ROWS, TMP_MARK, FileFormat, FilePlanOfActions, clean_stray_temps, fsync_dir, is_temp_name,
)
from pii.core.coverage import Coverage
from pii.core.errors import StoreError, StoreUnreachable
from pii.core.findings import Finding
from pii.core.inventory import FREE_TEXT, ColumnProfile
from pii.core.policy import container_matches
from pii.core.printable import PlaceNames
from pii.core.selection import FILE_TIME, MESSAGE_DATE, RecordFilter
from pii.core.subject import SubjectMatcher

DEFAULT_PATTERNS = ("**/*.csv", "**/*.tsv")


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


# --------------------------------------------------------------------------- the connector
class CsvConnector(Connector):
    """A folder of CSV (and TSV) exports; locations are ``{"file": <relative path>, "row": n}``."""

    kind = "csv"
    location_key: ClassVar[str] = "file"  # findings' location: {location_key: rel, "row": n}

    def __init__(self, store, **kwargs):
        super().__init__(store, **kwargs)
        # reading, classification, search and rewrite of each file (connectors/fileformat.py)
        self.fileformat = FileFormat(self, self._path, location_key=self.location_key)
        self.shown = PlaceNames(None, "file")  # place names as printed: set per subject by locate/apply

    # ---- configuration
    @property
    def folder(self) -> Path:
        return self.store.resolve_path(self.store.get("path"))

    def _patterns(self) -> list[str]:
        if not self.store.get("pattern"):
            return list(DEFAULT_PATTERNS)
        return self.store.string_list("pattern")

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
            if docs.document_kind(rel):
                findings.extend(self._scan_document(rel, matcher))
                continue
            try:
                findings.extend(self.fileformat.scan_file(rel, matcher, self.coverage, self.shown))
            except StoreError as exc:
                self.coverage.add_skipped(self.shown(rel), exc.reason)
                self.say(f"{self.shown(rel)}: not searched ({exc.reason})")
        return findings

    def _scan_document(self, rel: str, matcher: SubjectMatcher) -> list[Finding]:
        """A PDF, DOCX or XLSX file searched by connectors/documents.py; a bad one goes to coverage."""
        kind = docs.document_kind(rel)
        place = self.shown(rel)
        try:
            path = self._path(rel)
        except StoreError as exc:
            self.coverage.add_skipped(place, exc.reason)
            return []
        scanned = docs.scan(path, kind, matcher, limit=docs.max_bytes(self.store))
        docs.record_coverage(self.coverage, place, kind, scanned)
        if scanned.error is not None and not scanned.error.partial:
            self.say(f"{place}: not scanned, {scanned.error.reason}")
            return []
        if scanned.error is not None:
            self.say(f"{place}: {scanned.error.reason}")
        found = docs.findings(self.name, {self.location_key: rel}, rel, kind, scanned.hits)
        if found:
            try:
                found[0].record[docs.RAW_FILE] = docs.raw_file(path.name, path.read_bytes())
            except OSError:
                pass
        self.say(f"{place}: {scanned.places} places read, {len(found)} matched")
        return found

    def iter_records(self, relpath: str) -> Iterator[tuple[int, dict]]:
        """(row number, {column: value}) for every record of one file, numbered as `locate` numbers them."""
        with self.fileformat.open(relpath) as (columns, extra_key, rows):
            for n, row in rows:
                yield n, self.fileformat.record(columns, extra_key, row)

    # ---- selection (pii/core/selection.py)
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
        if docs.document_kind(rel) and not (flt.whole_files and flt.date_column == FILE_TIME and not flt.equals
                                             and flt.text_test is None):
            return self._skip(rel, "a document (PDF, DOCX, XLSX): selected only as a whole file, by its time")
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
        with self.fileformat.open(rel) as (columns, extra_key, rows):
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
                profiles = self.fileformat.profiles(rel, columns, [r for _, r in sample])
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
                    record = self.fileformat.record(columns, extra_key, row)
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
            if docs.document_kind(rel):  # a delete of a place in a document removes the whole file
                file_actions = [ExecAction(a.action_id, a.container, {self.location_key: rel}, DROP)
                                if a.kind == DELETE else a for a in file_actions]
                if not any(a.kind == DROP for a in file_actions):  # the verification finds what is left
                    ids, changed, detail = self._redact_document(rel, file_actions)
                    self.say(f"{self.shown(rel)}: {changed} cells redacted, {len(file_actions) - len(ids)} actions "
                             f"not carried out" + (f" ({detail})" if detail else ""))
                    done([a.action_id for a in file_actions], changed, detail)  # rows: what really changed
                    continue
            if any(a.kind == DROP for a in file_actions):  # the file goes: its row actions go with it
                dropped = self._drop(rel, file_actions)
                done([a.action_id for a in file_actions], dropped, None)
                continue
            deleted, updated = self._rewrite(rel, FilePlanOfActions(self.name, rel, file_actions))
            self.say(f"{self.shown(rel)}: {deleted} rows deleted, {updated} rows updated")
            if self.shown.personal(rel):
                self._unname(rel)
            done([a.action_id for a in file_actions], deleted + updated, None)

    def _redact_document(self, rel: str, actions: list[ExecAction]) -> tuple[list[str], int, str | None]:
        """Updates of XLSX cells, in place and atomically (connectors/documents.py `redact_xlsx`); PDF/DOCX
        cannot be changed in place: nothing is done and the detail says so. (ids of the actions done, cells
        changed, detail). Every action is still reported done with the rows changed: the verification finds what
        is left (and the plan is then not verified), never claimed as redacted."""
        kind = docs.document_kind(rel)
        if kind != docs.XLSX:
            return [], 0, (f"a {docs.LABELS[kind]} cannot be changed in place: left for review (delete the file "
                           "to erase it)")
        pairs = [(a, docs.CellChange(str(a.location.get("sheet")), str(a.location.get("cell")),
                                     str((a.expected or {}).get("value")), str(a.updates["value"])))
                 for a in actions if a.kind == UPDATE and "value" in a.updates and "cell" in a.location]
        nothing = [a.action_id for a in actions if all(a is not p[0] for p in pairs)]  # no value to change
        path = self._path(rel)
        if not pairs or not path.exists():
            return [a.action_id for a in actions], 0, None
        try:
            changed, left = docs.redact_xlsx(path, [c for _a, c in pairs])
        except docs.DocumentError as exc:
            return nothing, 0, f"not changed: {exc.reason}; left for review"
        return nothing + [a.action_id for a, c in pairs if c.done], changed, ("; ".join(left) if left else None)

    def _unname(self, rel: str) -> None:
        """A file named after the subject: its name is personal data too. Removed when no record is left in
        it, else renamed (``renamed-<hash>.csv`` in the same folder, atomically) so other people's records
        stay where they were."""
        path = self._path(rel)
        if not path.exists():
            return
        if not any(True for _ in self.iter_records(rel)):
            path.unlink()
            fsync_dir(path.parent)
            self.say(f"{self.shown(rel)}: no record left, file removed (its name named the subject)")
            return
        import hashlib

        stem = "renamed-" + hashlib.sha256(rel.encode("utf-8")).hexdigest()[:12]
        target, n = path.with_name(stem + path.suffix), 2
        while target.exists():
            target, n = path.with_name(f"{stem}-{n}{path.suffix}"), n + 1
        os.rename(path, target)
        fsync_dir(path.parent)
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
        records = 0  # a document (PDF, DOCX, XLSX) goes as one unit
        try:
            if not docs.document_kind(rel):
                with self.fileformat.open(rel) as (_columns, _extra, rows):
                    records = sum(1 for _ in rows)
        except StoreError:  # not readable as CSV: it is dropped all the same, as one unit
            records = 0
        try:
            now = path.stat()
            if (now.st_mtime_ns, now.st_size, now.st_ino) != (before.st_mtime_ns, before.st_size, before.st_ino):
                raise StoreError(self.name, place, "changed while it was being dropped; try again")
            os.unlink(path)
            fsync_dir(path.parent)
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
        removed = clean_stray_temps(self.folder, self.name)
        if removed:
            self.say(f"{removed} stray temp files from an interrupted erasure removed")
        return removed

    def _rewrite(self, rel: str, todo: FilePlanOfActions) -> tuple[int, int]:
        """(rows deleted, rows updated) in one file, rewritten atomically (`FileFormat.rewrite`). `apply`'s one
        call per file: the crash tests (tests/crash_child.py) wrap it to kill a run right after a rewrite."""
        return self.fileformat.rewrite(rel, todo)

    # ---- discovery
    def containers(self, rows: int | None = None) -> list[Container]:
        """Every file the store scans, signed by its size and modification time."""
        out: list[Container] = []
        for rel in self.files():
            if docs.document_kind(rel):  # searched by locate, not classified by sweeps
                continue
            try:
                stat = self._path(rel).stat()
            except OSError:
                continue  # removed since it was listed
            out.append(Container(rel, change_signature("file", stat.st_size, stat.st_mtime_ns)))
        return out

    def sample_containers(self, names, rows, counter) -> Iterator[Sampled]:
        for rel in names:
            try:
                profiles, n = self.fileformat.classify_file(rel, rows)
            except StoreError as exc:  # a malformed file: reported, the rest still swept
                yield Sampled(rel, error=exc.reason)
                continue
            yield Sampled(rel, profiles, n)

    # ---- files
    def _path(self, rel: str) -> Path:
        """The local file that `rel` names, inside the store's folder: every read and rewrite of
        `self.fileformat` goes through here."""
        folder = self.folder
        path = folder / PurePosixPath(rel)
        try:
            path.resolve().relative_to(folder.resolve())
        except ValueError:
            raise StoreError(self.name, f"file {rel}", "lies outside the store's folder") from None
        return path

