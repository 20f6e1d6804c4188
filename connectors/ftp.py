"""A folder on an FTP or FTPS server (store kind ``ftp``): partners' drops of CSV exports, text and JSON lines.

Store options: ``host``, ``port`` (21), ``user`` (anonymous when absent), ``password_env`` (the environment
variable holding the password; never the password itself), ``path`` (the remote folder, default "/"),
``tls`` (explicit FTPS: AUTH TLS, then PROT P for every data connection), ``tls_ca_file`` (a PEM bundle to
trust, e.g. a partner's self-signed certificate; default the system's), ``tls_verify`` (default true;
false accepts any certificate and is meant for tests only), ``passive`` (default true), ``timeout``
(seconds, default 30), ``pattern`` / ``skip_files`` (globs on the path relative to ``path``, matched
case-insensitively; default every file), and the CSV connector's ``encoding``, ``delimiter`` and
``text_columns``. Inside Airflow a store may name ``conn_id`` instead; outside Airflow that is a
configuration error.

What is read, by file name:
- ``.csv`` / ``.tsv``: exactly as the CSV connector reads a local export (connectors.fileformat: encoding
  and dialect detection, record numbering, column classification cached in the inventory under the
  remote path, prefilter, matching, records); it runs unchanged on a downloaded copy.
- ``.txt``: each line is a record (row = 1-based line number, blank lines counted), searched as free text;
  the finding's record is ``{"line": text}``.
- ``.jsonl`` / ``.ndjson``: each line is a record. String values are searched as free text; a value under
  a key that names an email, phone or name field (pii.core.classify.kind_from_name), or under a key given as
  an ``--id``, is compared whole, as identifier columns are. Records are flattened: nested keys read
  ``contact.email``, list items ``tags[0]``. A line that is not a JSON object or array is a text line.
- ``.pdf`` / ``.docx`` / ``.xlsx``: their text by page, paragraph/table cell, or sheet and cell
  (connectors/documents.py), searched as free text; locations add the place, e.g. ``{"path": p, "page": 2}``
  or ``{"path": p, "sheet": "Leads", "cell": "B3"}``. Files larger than ``max_document_mb`` (default 50)
  are not downloaded; encrypted or damaged ones are listed in coverage as not (fully) searched. PDF/DOCX
  findings are weak (review: they cannot be redacted in place); a ``delete`` of one, or a ``drop``, removes
  the whole file. XLSX cells are redacted in place (openpyxl, then the same upload and rename as for CSV)
  unless the workbook holds parts a rewrite would drop; then nothing is changed and the action reports why.
- anything else is not scanned; such files are announced through progress and listed in
  ``not_scanned`` as (remote path, reason) after each ``locate``.

Files are downloaded one at a time, streamed into a private temporary folder (never whole into memory),
scanned and deleted straight away. Locations are ``{"path": "/incoming/leads.csv", "row": n}``.

Local copies (a full plaintext copy of a remote file: everyone's rows) live in one private folder per store,
``<temp_dir>/lethe-ftp-<store>-<uid>`` (store option ``temp_dir``, relative to the configuration's folder;
default the system temp folder), mode 0700 and refused when it is a symlink, another user's or not a folder.
Each operation's copies sit in a sub-folder ``<host tag>-<pid>-<random>`` (0700; the files in it 0600),
removed when the operation ends, also on errors, and by `close`. A run killed outright (``kill -9``, power
loss) cannot remove its own: every run, before it downloads anything (and `check`), removes the sub-folders
of this host's runs whose process is gone (pii.core.host.process_gone), as stale erasure locks are broken;
a sub-folder of another host (a shared temp_dir) goes when nothing in it changed for a day. Only counts are
reported ("removed N stale FTP copies left by killed runs"), never names or contents.

Erasure (`apply`), per remote file: download, rewrite the copy locally (the CSV connector's rewrite for
CSV: untouched records keep their bytes; for lines: deleted lines go, updated lines are re-serialised),
upload it under a temp name in the same remote folder (``.<name>.lethe-tmp-<pid>-<host><random>``), check
the server holds as many bytes as were sent (SIZE) and that the original has not changed meanwhile
(SIZE and MDTM), then rename the temp file over the original (RNFR/RNTO), and only then call ``done``. A
dropped connection before the rename leaves the original as it was; the temp file is removed at once
when possible and otherwise by the next ``locate`` or ``apply`` (see `_clean_temps`).

Selection (`select`, for flows not about one person: see pii/core/selection.py): the same files and records as
`locate`; a JSON line's record is the parsed object there (top-level keys are its columns), FILE_TIME is a
file's modification time from MLSD/MDTM (UTC), and `whole_files` findings are ``{"path": remote}``, which a
``drop`` action removes with DELE (a file already gone counts as done). Row actions check the record they
were planned on (`ExecAction.expected`): a line that no longer holds it is left alone.

Servers that refuse to rename over an existing file (Windows/IIS-style 550) get a three-step swap: the
original is renamed aside to ``.<name>.lethe-old-...``, the temp file renamed into place, the old copy
deleted. Between the first two renames (one round trip) the original's name is briefly absent: a reader
listing the folder then misses the file. If the run dies inside that window, the next run renames the
old copy back (the erasure is then redone); if it dies after, the next run deletes the old copy, which
still holds the erased data.

Known limits: a concurrent writer is detected by comparing SIZE and MDTM (one-second resolution on
most servers) just before the rename, so a same-size change within that second goes unseen; there is
no server-side lock. Errors name the store and the remote path; passwords and values never appear.
"""
from __future__ import annotations

import calendar
import datetime as dt
import fnmatch
import ftplib
import json
import os
import posixpath
import re
import secrets
import shutil
import ssl
import stat as stat_mod
import tempfile
import threading
import time
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from connectors import documents as docs
from connectors.base import DELETE, DROP, UPDATE, Connector, Container, Done, ExecAction, Sampled, change_signature
from connectors.fileformat import (
    EXTRA_KEY, LINE_KEY, SAMPLE_ROWS, TMP_MARK, FileFormat, FilePlan, FilePlanOfActions, JsonLeaf, RowFilter,
    is_temp_name, json_leaves, line_terminator, split_line,
)
from pii.core import classify as cls
from pii.core.classify import free_text_profile, kind_from_name
from pii.core.coverage import Coverage
from pii.core.host import host_tag, run_gone
from pii.core.errors import ConfigError, LetheError, StoreError, StoreUnreachable
from pii.core.findings import STRONG, WEAK, Finding
from pii.core.inventory import EMAIL, FAMILY_NAME, FREE_TEXT, GIVEN_NAME, NAME, PHONE
from pii.core.policy import container_matches
from pii.core.printable import PlaceNames
from pii.core.selection import FILE_TIME, MESSAGE_DATE, RecordFilter, record_value
from pii.core.subject import ENTITY_EMAIL, ENTITY_ID, ENTITY_PERSON, ENTITY_PHONE, SubjectMatcher, entities_of

DEFAULT_PORT = 21
DEFAULT_TIMEOUT = 30.0
DEFAULT_PATTERNS = ("**/*",)
CSV_SUFFIXES = (".csv", ".tsv")
TEXT_SUFFIXES = (".txt",)
JSON_SUFFIXES = (".jsonl", ".ndjson")
CSV_KIND, TEXT_KIND, JSON_KIND = "csv", "text", "jsonl"
BLOCK = 256 * 1024  # bytes per read from the data connection / from the local copy when uploading
MAX_DEPTH = 64  # folder nesting followed when listing (guards against symlink loops)
IDLE_CHECK_SECONDS = 20.0  # a control connection idle this long is probed with NOOP before use
STALE_TMP_SECONDS = 3600  # a temp file this old is a crashed run's, whichever host wrote it
OLD_MARK = ".lethe-old-"
_REMOTE_TMP = re.compile(r"^\.(?P<name>.+)\.lethe-(?P<kind>tmp|old)-(?P<pid>\d+)-(?P<host>[0-9a-f]{8})[0-9a-f]{12}$")
_NOT_SUPPORTED = ("500", "502", "504")  # replies meaning "this server has no such command"


HOST_TAG = host_tag()  # in temp names: a pid is only checked on the host that wrote it
_ACTIVE: set[tuple[str, int, str]] = set()  # (host, port, remote temp path) this process is writing now
COPIES_PREFIX = "lethe-ftp-"  # <temp_dir>/lethe-ftp-<store>-<uid>: one private folder per store for local copies
STALE_COPY_SECONDS = 24 * 3600  # another host's copies folder untouched this long is a dead run's
_WORK_DIR = re.compile(r"^(?P<host>[0-9a-f]{8})-(?P<pid>\d+)-")  # a run's sub-folder: <host tag>-<pid>-<random>
_LIVE_WORK: set[str] = set()  # local copy folders this process is using now (never stale, whatever the pid)
_WORK_LOCK = threading.Lock()  # a folder is made and marked live while no other thread cleans


def file_kind(path: str) -> str | None:
    low = path.casefold()
    if low.endswith(CSV_SUFFIXES):
        return CSV_KIND
    if low.endswith(TEXT_SUFFIXES):
        return TEXT_KIND
    if low.endswith(JSON_SUFFIXES):
        return JSON_KIND
    return None


def glob_regex(pattern: str) -> re.Pattern:
    """A glob as pathlib reads it, on /-separated relative paths, case-insensitive: ``*`` and ``?`` stay
    within one folder, ``**/`` spans any number of folders (none included), ``[...]`` is a set."""
    out, i = [], 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        elif pattern[i] == "[" and "]" in pattern[i + 2:]:
            end = pattern.index("]", i + 2)
            body = pattern[i + 1:end]
            if body.startswith("!"):
                body = "^" + body[1:]
            out.append("[" + body.replace("\\", "\\\\") + "]")
            i = end + 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out) + r"\Z", re.IGNORECASE | re.DOTALL)


def _reply_code(exc: BaseException) -> str:
    text = str(exc)
    return text[:3] if text[:3].isdigit() else type(exc).__name__


def _modify_epoch(value: str | None) -> float | None:
    """Seconds since the epoch of an MLSD ``modify`` fact or MDTM reply (YYYYMMDDHHMMSS[.fff], UTC)."""
    if not value or len(value) < 14 or not value[:14].isdigit():
        return None
    try:
        return float(calendar.timegm(time.strptime(value[:14], "%Y%m%d%H%M%S")))
    except ValueError:
        return None


def _newest_mtime(folder: str) -> float:
    """The latest modification time of `folder` or anything in it (0 when it cannot be read)."""
    newest = 0.0
    for dirpath, _dirs, files in os.walk(folder):
        for path in [dirpath, *(os.path.join(dirpath, f) for f in files)]:
            try:
                newest = max(newest, os.lstat(path).st_mtime)
            except OSError:
                pass
    return newest


@dataclass(frozen=True)
class RemoteFile:
    path: str  # absolute remote path
    size: int | None = None
    modify: str | None = None  # MLSD modify fact, when the server gave one


class _ReusingFTP_TLS(ftplib.FTP_TLS):
    """FTP_TLS whose data connections resume the control connection's TLS session, as servers such as
    vsftpd (require_ssl_reuse) insist on."""

    def ntransfercmd(self, cmd, rest=None):
        conn, size = ftplib.FTP.ntransfercmd(self, cmd, rest)
        if self._prot_p:
            session = getattr(self.sock, "session", None)
            conn = self.context.wrap_socket(conn, server_hostname=self.host, session=session)
        return conn, size


# --------------------------------------------------------------------------- the connector
class FtpConnector(Connector):
    """A remote folder on an FTP/FTPS server; locations are ``{"path": <remote path>, "row": n}``."""

    kind = "ftp"

    def __init__(self, store, **kwargs):
        super().__init__(store, **kwargs)
        self._copies: dict[str, Path] = {}  # remote path -> its downloaded copy, while it exists
        self._work: set[Path] = set()  # this connector's local copy folders, while they exist
        # CSV/TSV files read, classified, searched and rewritten as the CSV connector's, on the local copies:
        # ``rel`` is the remote path (locations, containers, inventory keys, messages)
        self.fileformat = FileFormat(self, self._local_copy, location_key="path")
        self._shown = PlaceNames(None, "file")  # place names as printed: set per subject by locate/apply
        self._ftp: ftplib.FTP | None = None
        self._last_use = 0.0
        self._mlsd: bool | None = None  # None until tried; False on servers without MLSD
        self._unlisted: list[tuple[str, str]] = []  # sub-folders the last listing could not read
        self.not_scanned: list[tuple[str, str]] = []

    # ---- configuration
    def _host(self) -> str:
        host = self.store.get("host")
        if not host:
            if self.store.get("conn_id"):
                raise ConfigError(
                    f"store '{self.name}' names conn_id; Airflow connections are resolved by Lethe's Airflow "
                    "hook, outside Airflow give 'host', 'user' and 'password_env'")
            raise ConfigError(f"store '{self.name}' (ftp) needs 'host'")
        return str(host)

    def _port(self) -> int:
        value = self.store.get("port", DEFAULT_PORT)
        try:
            port = int(value)
        except (TypeError, ValueError):
            port = 0
        if isinstance(value, bool) or not 0 < port < 65536:
            raise ConfigError(f"store '{self.name}': 'port' must be a number from 1 to 65535")
        return port

    def _user(self) -> str:
        return str(self.store.get("user") or "anonymous")

    def _timeout(self) -> float:
        value = self.store.get("timeout", DEFAULT_TIMEOUT)
        try:
            timeout = float(value)
        except (TypeError, ValueError):
            timeout = 0.0
        if isinstance(value, bool) or timeout <= 0:
            raise ConfigError(f"store '{self.name}': 'timeout' must be a positive number of seconds")
        return timeout

    def _flag(self, key: str, default: bool) -> bool:
        value = self.store.get(key, default)
        if not isinstance(value, bool):
            raise ConfigError(f"store '{self.name}': '{key}' must be true or false")
        return value

    def _folder(self) -> str:
        path = str(self.store.get("path") or "/")
        if any(c in path for c in "\r\n\0"):
            raise ConfigError(f"store '{self.name}': 'path' holds a line break")
        return path

    def _where(self) -> str:
        scheme = "ftps" if self._flag("tls", False) else "ftp"
        return f"{scheme}://{self._user()}@{self._host()}:{self._port()}"

    def _ssl_context(self) -> ssl.SSLContext:
        if not self._flag("tls_verify", True):
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            return context
        ca_file = self.store.get("tls_ca_file")
        if ca_file:
            path = self.store.resolve_path(ca_file)
            if not path.is_file():
                raise ConfigError(f"store '{self.name}': tls_ca_file {path} does not exist")
            return ssl.create_default_context(cafile=str(path))
        return ssl.create_default_context()

    # ---- connection
    def _connect(self) -> ftplib.FTP:
        host, port, user, where = self._host(), self._port(), self._user(), self._where()
        password = self.store.secret("password") or ""  # ConfigError naming the variable when unset
        timeout, tls, passive = self._timeout(), self._flag("tls", False), self._flag("passive", True)
        ftp = _ReusingFTP_TLS(context=self._ssl_context(), timeout=timeout) if tls else ftplib.FTP(timeout=timeout)
        step = "connect to"
        try:
            ftp.connect(host, port)
            if tls:
                step = "negotiate TLS with"
                ftp.auth()
            step = "log in to"
            ftp.login(user, password)
            if tls:
                step = "protect the data connections (PROT P) of"
                ftp.prot_p()
            ftp.set_pasv(passive)
            ftp.voidcmd("TYPE I")
        except ssl.SSLCertVerificationError as exc:
            self._close_quietly(ftp)
            reason = exc.verify_message or "not trusted"
            raise StoreUnreachable(self.name, f"the TLS certificate of {where} is not accepted ({reason}); "
                                              "set tls_ca_file to trust it") from None
        except ftplib.error_perm as exc:
            self._close_quietly(ftp)
            code = _reply_code(exc)
            if step == "log in to":
                raise StoreUnreachable(self.name, f"login refused by {where} ({code})") from None
            if step == "negotiate TLS with":
                raise StoreUnreachable(self.name, f"{where} does not offer TLS (AUTH TLS refused, {code})") from None
            raise StoreUnreachable(self.name, f"cannot {step} {where} ({code})") from None
        except (ftplib.Error, OSError, EOFError) as exc:
            self._close_quietly(ftp)
            raise StoreUnreachable(self.name, f"cannot {step} {where} ({_reply_code(exc)})") from None
        return ftp

    @staticmethod
    def _close_quietly(ftp: ftplib.FTP | None) -> None:
        if ftp is None:
            return
        try:
            ftp.close()
        except Exception:  # noqa: BLE001 - closing a broken connection may fail in any way
            pass

    def _session(self) -> ftplib.FTP:
        """The open control connection, probed when idle for a while and re-opened when it was lost."""
        if self._ftp is not None and time.monotonic() - self._last_use > IDLE_CHECK_SECONDS:
            try:
                self._ftp.voidcmd("NOOP")
            except (ftplib.Error, OSError, EOFError):
                self._drop()
        if self._ftp is None:
            self._ftp = self._connect()
        self._last_use = time.monotonic()
        return self._ftp

    def _drop(self) -> None:
        self._close_quietly(self._ftp)
        self._ftp = None

    def close(self) -> None:
        try:
            if self._ftp is not None:
                try:
                    self._ftp.quit()
                except Exception:  # noqa: BLE001
                    pass
                self._drop()
        finally:
            for work in list(self._work):  # e.g. a sweep's generator abandoned mid-way
                self._remove_work(work)

    @contextmanager
    def _remote(self, place: str, doing: str):
        """FTP failures as StoreError naming the store and the place (never a server's reply text)."""
        try:
            yield
        except LetheError:
            raise
        except ftplib.error_perm as exc:
            raise StoreError(self.name, place, f"{doing} refused by the server ({_reply_code(exc)})") from None
        except (ftplib.Error, OSError, EOFError) as exc:
            self._drop()  # the session may be mid-reply: never reuse it
            raise StoreError(self.name, place, f"{doing} failed ({_reply_code(exc)})") from None

    def _root_path(self) -> str:
        """The store's folder as an absolute remote path (StoreUnreachable when it is missing)."""
        ftp = self._session()
        folder = self._folder()
        try:
            ftp.cwd(folder)
            root = ftp.pwd()
        except ftplib.error_perm:
            raise StoreUnreachable(self.name, f"folder {folder} does not exist on {self._where()} "
                                              "(or may not be entered)") from None
        except (ftplib.Error, OSError, EOFError) as exc:
            self._drop()
            raise StoreUnreachable(self.name, f"connection to {self._where()} lost ({_reply_code(exc)})") from None
        return posixpath.normpath(root) if root.startswith("/") else "/" + root.strip("/")

    # ---- Connector
    def check(self) -> None:
        self._root_path()
        root = self._copies_root()
        with _WORK_LOCK:
            self._clean_stale_copies(root)

    # ---- discovery
    def containers(self, rows: int | None = None) -> list[Container]:
        """Every file of a kind Lethe reads (CSV/TSV, JSON lines, text), signed by size and modification
        time (MLSD facts, else SIZE/MDTM per file; no time known: no signature, always sampled)."""
        root = self._root_path()
        files, _temps = self._listing(root)
        wanted = self._select(root, files)
        skipped = [f for f in wanted if not file_kind(f.path)]
        if skipped:
            self.say(f"{len(skipped)} files of types Lethe cannot read are not classified")
        out: list[Container] = []
        for f in wanted:
            if not file_kind(f.path):
                continue
            size, modify = f.size, f.modify
            if size is None or modify is None:  # no MLSD facts: ask the server for this one file
                with self._remote(f"file {f.path}", "reading"):
                    stat = self._stat(f.path)
                if stat is None:
                    continue  # deleted since it was listed
                size, modify = stat
            out.append(Container(f.path, change_signature("file", size, modify) if modify else None))
        return out

    def sample_containers(self, names, rows, counter) -> Iterator[Sampled]:
        """Each file copied to a local work folder and classified there: CSV/TSV by the CSV connector's
        rules, JSON lines by their top-level keys, text as one free-text ``line`` column."""
        if not names:
            return
        with self._workspace() as work:
            for remote in names:
                kind = file_kind(remote)
                try:
                    with self._copy(remote, work):
                        if kind == CSV_KIND:
                            profiles, n = self.fileformat.classify_file(remote, rows)
                        else:
                            profiles, n = self._classify_lines(remote, kind == JSON_KIND, rows, counter)
                            self.keep_profiles(remote, profiles)
                except StoreUnreachable:
                    raise
                except StoreError as exc:
                    yield Sampled(remote, error=exc.reason)
                    continue
                yield Sampled(remote, profiles, n)

    def _classify_lines(self, remote: str, json_lines: bool, rows: int, counter) -> tuple[dict, int]:
        """JSON lines by their top-level keys (a nested value as the text of its leaves), lines that are not
        JSON objects as free-text ``line``; a text file as one ``line`` column. From the first `rows`
        non-blank lines."""
        samples: dict[str, list] = {}
        numeric: dict[str, bool] = {}
        lines: list[str] = []
        n = 0
        for _n, line in self._lines(remote):
            text, doc = split_line(line, json_lines)
            if not text.strip():
                continue
            n += 1
            if isinstance(doc, dict):
                for key, value in doc.items():
                    key = str(key)
                    if isinstance(value, (dict, list)):
                        value = " ".join(str(leaf.value) for leaf in json_leaves(value)
                                         if leaf.value is not None and not isinstance(leaf.value, bool))
                        numeric[key] = False
                    elif value is not None:
                        numeric[key] = numeric.get(key, True) and isinstance(value, (int, float)) \
                            and not isinstance(value, bool)
                    samples.setdefault(key, []).append(value)
            else:
                lines.append(text)
            if n >= rows:
                break
        profiles: dict = {}
        if samples:
            infos = [cls.ColumnInfo(k, cls.NUMBER if numeric.get(k) else cls.STRING) for k in samples]
            profiles.update(cls.classify(infos, samples, entity_counter=counter(),
                                         text_columns=self.store.string_list("text_columns")))
        if lines or not json_lines:
            profiles[LINE_KEY if LINE_KEY not in profiles else "_" + LINE_KEY] = free_text_profile(lines, counter())
        return profiles, n

    def locate(self, matcher: SubjectMatcher) -> list[Finding]:
        shown = self._shown = PlaceNames(matcher, "file")
        root = self._root_path()
        files, temps = self._listing(root)
        if self._clean_temps(temps):  # an original was put back: list again so that it is scanned
            files = self._listing(root)[0]
        self.coverage = Coverage(self.name, self.kind)
        self.not_scanned = [(shown(p), r) for p, r in self._unlisted]
        wanted = self._select(root, files)
        limit = docs.max_bytes(self.store)
        scan = []
        for f in wanted:
            if docs.document_kind(f.path) and f.size is not None and f.size > limit:
                reason = docs.too_large_reason(limit)
                self.not_scanned.append((shown(f.path), reason))
                self.say(f"{shown(f.path)}: {reason}")
            elif file_kind(f.path) or docs.document_kind(f.path):
                scan.append(f)
        for f in wanted:
            if not file_kind(f.path) and not docs.document_kind(f.path):
                suffix = posixpath.splitext(f.path)[1]
                if suffix and not suffix.isprintable():
                    suffix = ""
                reason = f"unsupported file type ({suffix})" if suffix else "unsupported file type (no extension)"
                self.not_scanned.append((shown(f.path), reason))
                self.say(f"{shown(f.path)}: not scanned, {reason}")
        for place, reason in self.not_scanned:
            self.coverage.add_skipped(place, reason)
        self.say(f"{len(files)} files under {root}: {len(scan)} to scan, {len(self.not_scanned)} not scanned")
        findings: list[Finding] = []
        with self._workspace() as work:
            for f in scan:
                try:
                    with self._copy(f.path, work):
                        findings.extend(self._scan(f.path, matcher))
                except StoreError as exc:
                    with self._remote(f"file {shown(f.path)}", "reading"):
                        if self._stat(f.path) is not None:
                            self.coverage.add_skipped(shown(f.path), exc.reason)
                            self.say(f"{shown(f.path)}: not searched ({exc.reason})")
                            continue
                    self.say(f"{shown(f.path)}: deleted on the server while the folder was scanned, skipped")
        return findings

    def files(self) -> list[str]:
        """Remote paths this store scans (pattern and skip_files applied, any file type), sorted."""
        root = self._root_path()
        return [f.path for f in self._select(root, self._listing(root)[0])]

    def file_days(self) -> list[tuple[str, dt.date | None]]:
        """(path relative to the store's folder, modification day in UTC or None) of every file this store
        covers (pattern and skip_files applied, any type): what an inactivity rule reads an account's last
        activity from. Listings and MLSD facts only (MDTM where a listing gives no time); no file is read."""
        self.check()
        root = self._root_path()
        out = []
        for f in self._select(root, self._listing(root)[0]):
            rel = posixpath.relpath(f.path, root) if root not in ("", "/") else f.path.lstrip("/")
            out.append((rel, self._file_day(f)))
        return out

    # ---- selection
    def select(self, flt: RecordFilter) -> list[Finding]:
        """Records (or, with `flt.whole_files`, files) the filter selects; see pii/core/selection.py. Files are
        chosen by the store's pattern/skip_files and then by `flt.containers` (the remote path, the path
        relative to the store's folder, or for a pattern without "/" the file name). CSV/TSV records are the
        CSV connector's (for a text test, the free-text values that passed, as its select and `locate` record
        a text match); a TXT line is ``{"line": text}`` (no columns: only a text test applies); a JSON line
        is the parsed object (top-level keys are its columns; a line that is no object is a text line).
        FILE_TIME is the file's modification time (MLSD ``modify`` or MDTM, UTC): a file outside the bounds
        is not downloaded, and with `whole_files` and no other record condition a file is selected by its
        time alone, unread."""
        self.skipped = []
        self.undated = 0
        root = self._root_path()
        files, temps = self._listing(root)
        if self._clean_temps(temps):
            files = self._listing(root)[0]
        self.skipped.extend(self._unlisted)
        chosen = [f for f in self._select(root, files) if self._in_containers(flt, root, f.path)]
        needed = flt.columns_needed()
        findings: list[Finding] = []
        read = 0
        with self._workspace() as work:
            by_time_only = (flt.whole_files and not needed and flt.text_test is None and flt.date_column == FILE_TIME
                            and not (flt.mail_from or flt.message_ids))
            for f in chosen:
                kind = file_kind(f.path)
                if kind is None and not by_time_only:  # an unreadable file (audio, PDF) goes by its time only
                    suffix = posixpath.splitext(f.path)[1]
                    self._skip(f.path, "a document (PDF, DOCX, XLSX): selected only as a whole file, by its time"
                               if docs.document_kind(f.path) else f"unsupported file type ({suffix or 'no extension'})")
                    continue
                if flt.mail_from or flt.message_ids:
                    self._skip(f.path, "the filter names mail senders or message ids, and a file holds no mail")
                    continue
                if flt.date_column == MESSAGE_DATE:
                    self._skip(f.path, "no message date: a file holds no mail")
                    continue
                if kind == TEXT_KIND and needed:
                    self._skip(f.path, f"no column {needed[0]} (a text file's records are lines)")
                    continue
                if flt.date_column == FILE_TIME:
                    day = self._file_day(f)
                    if day is None:
                        self.undated += 1
                        self.say(f"{f.path}: no modification time, not selected")
                        continue
                    if not flt.date_ok(day):
                        continue
                    if flt.whole_files and not needed and flt.text_test is None:
                        findings.append(self._selected(flt, f.path, None, None))
                        continue
                try:
                    with self._copy(f.path, work):
                        read += 1
                        findings.extend(self._select_file(f.path, kind, flt, needed))
                except StoreError:
                    with self._remote(f"file {f.path}", "reading"):
                        if self._stat(f.path) is not None:
                            raise
                    self.say(f"{f.path}: deleted on the server while the folder was read, skipped")
        self.say(f"{len(chosen)} files considered, {read} read, {len(findings)} "
                 f"{'files' if flt.whole_files else 'records'} selected, {len(self.skipped)} skipped, "
                 f"{self.undated} undated")
        return findings

    def _skip(self, remote: str, reason: str) -> None:
        self.skipped.append((remote, reason))
        self.say(f"{remote}: skipped ({reason})")

    def _in_containers(self, flt: RecordFilter, root: str, remote: str) -> bool:
        probe = Finding(store=self.name, location={"path": remote}, container=posixpath.relpath(remote, root))
        return any(container_matches(p, probe) for p in flt.containers)

    def _file_day(self, f: RemoteFile) -> dt.date | None:
        """The file's modification day (UTC): the listing's MLSD modify fact, else MDTM."""
        epoch = _modify_epoch(f.modify)
        if epoch is None:
            with self._remote(f"file {f.path}", "reading the modification time"):
                stat = self._stat(f.path)
            epoch = _modify_epoch(stat[1]) if stat else None
        if epoch is None:
            return None
        return dt.datetime.fromtimestamp(epoch, dt.timezone.utc).date()

    def _selected(self, flt: RecordFilter, remote: str, n: int | None, record: dict | None) -> Finding:
        location = {"path": remote} if n is None else {"path": remote, "row": n}
        return Finding(store=self.name, location=location, entities=[flt.entity] if flt.entity else [],
                       match="text" if flt.text_test is not None else "identifier", strength=STRONG,
                       container=remote, record=record)

    def _select_file(self, remote: str, kind: str, flt: RecordFilter, needed: list[str]) -> list[Finding]:
        """Findings from one downloaded file: one per selected record, or one for the file (whole_files)."""
        if kind == CSV_KIND:
            with self.fileformat.open(remote) as (columns, extra_key, rows):
                records = self._csv_records(remote, flt, needed, columns, extra_key, rows)
                if records is None:
                    return []
                return self._pick(remote, kind, flt, needed, records, set())
        seen_columns: set[str] = set()
        with closing(self._line_records(remote, kind == JSON_KIND, seen_columns)) as records:
            return self._pick(remote, kind, flt, needed, records, seen_columns)

    def _pick(self, remote: str, kind: str, flt: RecordFilter, needed: list[str], records,
              seen_columns: set[str]) -> list[Finding]:
        undated = n_read = 0
        found: list[Finding] = []
        for n, record, texts in records:
            n_read = n
            if not flt.equals_ok(record):
                continue
            in_range = True
            if flt.date_column and flt.date_column != FILE_TIME:
                in_range = flt.date_ok(record_value(record, flt.date_column))
                if in_range is False:
                    continue
            if flt.text_test is not None:
                passing = [(key, value, extra) for key, value, extra in texts() if flt.text_ok(value)]
                if not passing:
                    continue
                if kind == CSV_KIND:  # as the CSV connector records a text match: the free text that passed
                    record = {}
                    for key, value, extra in passing:
                        if extra:
                            record.setdefault(key, []).append(value)
                        else:
                            record[key] = value
            if in_range is None:  # an otherwise selected record without a readable date
                undated += 1
                continue
            if flt.whole_files:
                found = [self._selected(flt, remote, None, None)]
                break
            found.append(self._selected(flt, remote, n, record))
        if kind == JSON_KIND and not found:
            missing = [c for c in needed if c.casefold() not in seen_columns]
            if missing:  # no line has the column: the file lacks it, as a CSV without that header would
                self._skip(remote, f"no column {missing[0]}")
                return []
        self.undated += undated
        if flt.whole_files:
            self.say(f"{remote}: {'selected' if found else 'not selected'} ({n_read} records read)")
        else:
            self.say(f"{remote}: {n_read} records read, {len(found)} selected")
        return found

    def _csv_records(self, remote: str, flt: RecordFilter, needed: list[str], columns: list[str], extra_key: str,
                     rows):
        """(row, record, free-text values) of an open CSV copy, numbered as `locate` numbers them; None (and
        the file in `skipped`) when it lacks a column the filter names or has no free text for its text test."""
        folded = {c.casefold() for c in columns}
        missing = [c for c in needed if c.casefold() not in folded]
        if missing:
            self._skip(remote, f"no column {missing[0]}")
            return None
        sample: list[tuple[int, list[str]]] = []
        text_at: list[int] = []
        if flt.text_test is not None:
            for item in rows:
                sample.append(item)
                if len(sample) >= SAMPLE_ROWS:
                    break
            profiles = self.fileformat.profiles(remote, columns, [r for _, r in sample])
            text_at = [i for i, c in enumerate(columns)
                       if profiles.get(c) is not None and profiles[c].kind == FREE_TEXT]
            if not text_at:
                self._skip(remote, "no free-text column")
                return None

        def generate():
            for source in (sample, rows):
                for n, row in source:
                    yield (n, self.fileformat.record(columns, extra_key, row),
                           lambda row=row: [(columns[i], row[i], False) for i in text_at]
                           + [(extra_key, v, True) for v in row[len(columns):]])
        return generate()

    def _line_records(self, remote: str, json_lines: bool, seen_columns: set[str]):
        """(line number, record, free-text values) of a TXT or JSONL copy; blank lines hold no record."""
        for n, line in self._lines(remote):
            text, doc = split_line(line, json_lines)
            if not text.strip():
                continue
            if isinstance(doc, dict):
                seen_columns.update(str(k).casefold() for k in doc)

                def texts(text=text, doc=doc):
                    out = [(LINE_KEY, text, False)]
                    if "\\" in text:  # JSON escapes hide text from a test on the raw line
                        out += [(leaf.name, leaf.value, False) for leaf in json_leaves(doc)
                                if isinstance(leaf.value, str)]
                    return out
                yield n, doc, texts
            else:
                yield n, {LINE_KEY: text}, (lambda text=text: [(LINE_KEY, text, False)])

    # ---- listing
    def _listing(self, root: str) -> tuple[list[RemoteFile], list[RemoteFile]]:
        """(files, Lethe temp files) anywhere under `root`, each sorted by path. Sub-folders that cannot
        be listed go to `_unlisted` (reported as not scanned); the root itself must list."""
        self._unlisted: list[tuple[str, str]] = []
        files: list[RemoteFile] = []
        temps: list[RemoteFile] = []
        stack: list[tuple[str, int]] = [(root, 0)]
        seen: set[str] = set()
        while stack:
            folder, depth = stack.pop()
            if folder in seen:
                continue
            seen.add(folder)
            try:
                entries = self._list_folder(folder)
            except StoreError as exc:
                if folder == root:
                    raise
                self._unlisted.append((folder + "/", f"folder cannot be listed ({exc.reason})"))
                self.say(f"{folder}/: not scanned, folder cannot be listed ({exc.reason})")
                continue
            for name, is_dir, facts in entries:
                path = posixpath.join(folder, name)
                if is_dir:
                    if depth + 1 < MAX_DEPTH:
                        stack.append((path, depth + 1))
                    continue
                size = facts.get("size")
                entry = RemoteFile(path, int(size) if size and size.isdigit() else None, facts.get("modify"))
                if _REMOTE_TMP.match(name) or is_temp_name(name):
                    temps.append(entry)
                else:
                    files.append(entry)
        return sorted(files, key=lambda f: f.path), sorted(temps, key=lambda f: f.path)

    def _list_folder(self, folder: str) -> list[tuple[str, bool, dict]]:
        """(name, is a folder, MLSD facts) for each entry of one remote folder."""
        place = f"folder {folder}"
        ftp = self._session()
        if self._mlsd is not False:
            with self._remote(place, "listing"):
                try:
                    entries = self._mlsd_entries(ftp, folder)
                except ftplib.error_perm as exc:
                    if _reply_code(exc) not in _NOT_SUPPORTED:
                        raise
                    self._mlsd = False
                else:
                    self._mlsd = True
                    out = []
                    for name, facts, broken in entries:
                        kind = facts.get("type", "").casefold()
                        name = posixpath.basename(name.rstrip("/"))
                        if broken and kind == "file":
                            shown = self._shown(posixpath.join(folder, name))
                            reason = ("its name holds a line break, which an FTP listing cannot carry: not "
                                      "searched (rename it on the server)")
                            self._unlisted.append((shown + "\u2026", reason))
                            self.say(f"{shown}\u2026: not scanned, {reason}")
                            continue
                        if kind in ("file", "dir") and name not in (".", "..", ""):
                            out.append((name, kind == "dir", facts))  # cdir/pdir/links are not followed
                    return out
        # servers without MLSD: NLST for names, CWD to tell folders from files
        with self._remote(place, "listing"):
            try:
                names = ftp.nlst(folder)
            except ftplib.error_perm as exc:
                if _reply_code(exc) in ("450", "550"):  # some servers answer an empty folder so
                    ftp.cwd(folder)  # ...but a missing folder stays an error
                    return []
                raise
            out = []
            for raw in sorted(set(names)):
                name = posixpath.basename(raw.rstrip("/"))
                if name in (".", "..", ""):
                    continue
                path = posixpath.join(folder, name)
                try:
                    ftp.cwd(path)
                    is_dir = True
                except ftplib.error_perm:
                    is_dir = False
                out.append((name, is_dir, {}))
            return out

    @staticmethod
    def _mlsd_entries(ftp: ftplib.FTP, folder: str) -> list[tuple[str, dict, bool]]:
        """(name, facts, name broken by a line break) per MLSD entry. A name holding a line break arrives as
        two lines; the second has no facts and marks the entry before it as broken (ftplib's own `mlsd`
        would read it as a garbled entry). Names that are not UTF-8 are decoded with replacement marks."""
        raw: list[bytes] = []
        ftp.retrbinary(f"MLSD {folder}", raw.append)
        entries: list[tuple[str, dict, bool]] = []
        for line in b"".join(raw).decode(ftp.encoding or "utf-8", "replace").replace("\r\n", "\n").split("\n"):
            if not line:
                continue
            facts_text, sep, name = line.partition(" ")
            if not sep or not facts_text.endswith(";") or "=" not in facts_text:
                if entries:
                    entries[-1] = (entries[-1][0], entries[-1][1], True)
                continue
            facts = {}
            for fact in facts_text[:-1].split(";"):
                key, _, value = fact.partition("=")
                facts[key.lower()] = value
            entries.append((name, facts, False))
        return entries

    def _select(self, root: str, files: list[RemoteFile]) -> list[RemoteFile]:
        patterns = [glob_regex(p) for p in (self.store.string_list("pattern") or DEFAULT_PATTERNS)]
        skip = [s.casefold() for s in self.store.string_list("skip_files")]
        out = []
        for f in files:
            rel = posixpath.relpath(f.path, root)
            if not any(p.match(rel) for p in patterns):
                continue
            low = rel.casefold()
            if any(fnmatch.fnmatchcase(low, s) or fnmatch.fnmatchcase(low.rsplit("/", 1)[-1], s) for s in skip):
                continue
            out.append(f)
        return out

    # ---- local copies
    def _copies_root(self) -> Path:
        """This store's private folder for local copies (created 0700): ``<temp_dir>/lethe-ftp-<store>-<uid>``.
        A StoreError when the name is taken by a symlink, a file or another user's folder."""
        raw = self.store.get("temp_dir")
        base = self.store.resolve_path(str(raw)) if raw else Path(tempfile.gettempdir())
        if not base.is_dir():
            raise ConfigError(f"store '{self.name}': temp_dir {base} is not an existing folder")
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", self.name)[:64]
        uid = os.getuid() if hasattr(os, "getuid") else 0
        root = base / f"{COPIES_PREFIX}{safe}-{uid}"
        place = f"folder {root}"
        try:
            os.mkdir(root, 0o700)
        except FileExistsError:
            pass
        except OSError as exc:
            raise StoreError(self.name, place, f"cannot be created for local copies ({exc.strerror})") from None
        try:
            st = os.lstat(root)
            if not stat_mod.S_ISDIR(st.st_mode) or (hasattr(os, "getuid") and st.st_uid != uid):
                raise StoreError(self.name, place, "is not a folder of this user; remove it or set temp_dir")
            if stat_mod.S_IMODE(st.st_mode) != 0o700:
                os.chmod(root, 0o700)
        except OSError as exc:
            raise StoreError(self.name, place, f"cannot be made private ({exc.strerror})") from None
        return root

    def _clean_stale_copies(self, root: Path) -> int:
        """Remove the copy folders under `root` that runs no longer alive left (killed: no chance to clean
        up): this host's whose pid is gone (or is this process's own pid but not in use by it: a dead run's
        pid reused), another host's when untouched for STALE_COPY_SECONDS. Returns how many copies went."""
        removed = 0
        now = time.time()
        try:
            entries = sorted(os.scandir(root), key=lambda e: e.name)
        except FileNotFoundError:
            return 0
        except OSError as exc:
            raise StoreError(self.name, f"folder {root}", f"cannot be listed ({exc.strerror})") from None
        for entry in entries:
            m = _WORK_DIR.match(entry.name)
            if m is None or entry.path in _LIVE_WORK or not entry.is_dir(follow_symlinks=False):
                continue
            stale = run_gone(m.group("host"), int(m.group("pid")))
            if stale is None:  # another host's: judged by its age
                stale = now - _newest_mtime(entry.path) > STALE_COPY_SECONDS
            if not stale:
                continue
            copies = sum(len(files) for _d, _s, files in os.walk(entry.path))
            shutil.rmtree(entry.path, ignore_errors=True)
            if os.path.lexists(entry.path):
                raise StoreError(self.name, f"folder {root}", "a killed run's local copies cannot be removed")
            removed += copies
        if removed:
            self.say(f"removed {removed} stale FTP copies left by killed runs")
        return removed

    @contextmanager
    def _workspace(self) -> Iterator[Path]:
        """A private (0700) local folder for downloaded copies, removed with everything in it; stale ones
        killed runs left are removed first."""
        root = self._copies_root()
        with _WORK_LOCK:
            self._clean_stale_copies(root)
            work = Path(tempfile.mkdtemp(prefix=f"{HOST_TAG}-{os.getpid()}-", dir=root))
            _LIVE_WORK.add(str(work))
        self._work.add(work)
        try:
            yield work
        finally:
            self._remove_work(work)

    def _remove_work(self, work: Path) -> None:
        shutil.rmtree(work, ignore_errors=True)
        self._work.discard(work)
        _LIVE_WORK.discard(str(work))

    @contextmanager
    def _copy(self, remote: str, work: Path) -> Iterator[Path]:
        """Download `remote` into `work` (streamed to disk), register it with the CSV reader, delete after."""
        fd, name = tempfile.mkstemp(dir=work, suffix=".copy")
        local = Path(name)
        try:
            with os.fdopen(fd, "wb") as fh, self._remote(f"file {remote}", "download"):
                self._session().retrbinary(f"RETR {remote}", fh.write, blocksize=BLOCK)
            self._copies[remote] = local
            yield local
        finally:
            self._copies.pop(remote, None)
            self.fileformat.forget_layouts()  # keyed by (path, mtime, size): never reuse one for another copy
            try:
                local.unlink()
            except FileNotFoundError:
                pass

    def _local_copy(self, remote: str) -> Path:
        """The downloaded copy of `remote` (while `_copy` holds it): the file `self.fileformat` reads."""
        try:
            return self._copies[remote]
        except KeyError:
            raise StoreError(self.name, f"file {remote}", "has no local copy") from None

    # ---- scanning
    def _scan(self, remote: str, matcher: SubjectMatcher) -> list[Finding]:
        kind = file_kind(remote)
        if kind is None and docs.document_kind(remote):
            return self._scan_document(remote, matcher)
        if kind == CSV_KIND:
            return self.fileformat.scan_file(remote, matcher, self.coverage, self._shown)
        return self._scan_lines(remote, matcher, kind == JSON_KIND)

    def _scan_document(self, remote: str, matcher: SubjectMatcher) -> list[Finding]:
        """A PDF, DOCX or XLSX copy searched by connectors/documents.py; a bad document goes to coverage."""
        kind = docs.document_kind(remote)
        local = self._copies[remote]
        place = self._shown(remote)
        scanned = docs.scan(local, kind, matcher, limit=docs.max_bytes(self.store))
        docs.record_coverage(self.coverage, place, kind, scanned)
        if scanned.error is not None and not scanned.error.partial:
            self.not_scanned.append((place, scanned.error.reason))
            self.say(f"{place}: not scanned, {scanned.error.reason}")
            return []
        if scanned.error is not None:
            self.say(f"{place}: {scanned.error.reason}")
        found = docs.findings(self.name, {"path": remote}, remote, kind, scanned.hits)
        if found:
            found[0].record[docs.RAW_FILE] = docs.raw_file(posixpath.basename(remote), local.read_bytes())
        self.say(f"{place}: {scanned.places} places read, {len(found)} matched")
        return found

    def _lines(self, remote: str) -> Iterator[tuple[int, str]]:
        """(line number, line with its ending) of a downloaded copy, decoded as the CSV connector would."""
        encoding, fallback = self.fileformat.text_encoding(remote)
        if fallback:
            self.say(f"{self._shown(remote)}: not valid UTF-8, read as {encoding}")
        with open(self._copies[remote], encoding=encoding, newline="") as fh:
            n = 0
            try:
                for n, line in enumerate(fh, 1):
                    yield n, line
            except UnicodeDecodeError:
                raise StoreError(self.name, f"file {self._shown(remote)}",
                                 f"cannot be decoded near line {n + 1}") from None

    def _scan_lines(self, remote: str, matcher: SubjectMatcher, json_lines: bool) -> list[Finding]:
        candidate = RowFilter(matcher, FilePlan([LINE_KEY], EXTRA_KEY))
        by_key = bool(matcher.id_keys)  # ids under a JSON key compare whole, whatever their length
        findings: list[Finding] = []
        n = 0
        for n, line in self._lines(remote):
            text = line[:len(line) - len(line_terminator(line))]
            if not text.strip():
                continue
            if json_lines:
                # JSON escapes (\u00e9, \/) hide text from a test on the raw line: parse those lines
                if "\\" not in text and not by_key and not candidate([text]):
                    continue
                finding = self._json_finding(remote, n, text, matcher)
            else:
                if not candidate([text]):
                    continue
                finding = self._text_finding(remote, n, text, matcher)
            if finding is not None:
                findings.append(finding)
        self.coverage.add_searched(self._shown(remote), lines=n)
        self.say(f"{self._shown(remote)}: {n} lines scanned, {len(findings)} matched")
        return findings

    def _finding(self, remote: str, n: int, entities: set[str], identifier: bool, record: dict) -> Finding:
        return Finding(store=self.name, location={"path": remote, "row": n}, entities=sorted(entities),
                       match="identifier" if identifier else "text",
                       strength=WEAK if entities <= {ENTITY_PERSON} else STRONG, container=remote, record=record)

    def _text_finding(self, remote: str, n: int, text: str, matcher: SubjectMatcher) -> Finding | None:
        found = matcher.find_in_text(text)
        if not found:
            return None
        return self._finding(remote, n, set(entities_of(found)), False, {LINE_KEY: text})

    def _json_finding(self, remote: str, n: int, text: str, matcher: SubjectMatcher) -> Finding | None:
        try:
            doc = json.loads(text)
        except ValueError:
            doc = None
        if not isinstance(doc, (dict, list)):
            return self._text_finding(remote, n, text, matcher)
        leaves = json_leaves(doc)
        entities: set[str] = set()
        identifier = False
        mentions: list[JsonLeaf] = []
        given: list[JsonLeaf] = []
        family: list[JsonLeaf] = []
        for leaf in leaves:
            value = leaf.value
            if value is None or isinstance(value, bool) or not isinstance(value, (str, int, float)):
                continue
            kind = kind_from_name(leaf.key) if leaf.key else None
            hit = None
            if leaf.key and matcher.id_matches(leaf.key, value):
                hit = ENTITY_ID
            elif kind == EMAIL and matcher.email_matches(value):
                hit = ENTITY_EMAIL
            elif kind == PHONE and matcher.phone_matches(value):
                hit = ENTITY_PHONE
            elif kind in (NAME, GIVEN_NAME, FAMILY_NAME) and isinstance(value, str) and matcher.name_matches(value):
                hit = ENTITY_PERSON
            elif isinstance(value, str) and "@" in value and matcher.email_matches(value):
                hit = ENTITY_EMAIL
            if kind == GIVEN_NAME and isinstance(value, str):
                given.append(leaf)
            elif kind == FAMILY_NAME and isinstance(value, str):
                family.append(leaf)
            if hit:
                entities.add(hit)
                identifier = True
                continue
            if isinstance(value, str):
                found = matcher.find_in_text(value)
                if found:
                    entities.update(entities_of(found))
                    mentions.append(leaf)
        for g in given:  # first and last name in the same object
            for f in family:
                if g.parent is f.parent and matcher.name_matches(f"{g.value} {f.value}"):
                    entities.add(ENTITY_PERSON)
                    identifier = True
        if not entities:
            return None
        if identifier:
            record = {leaf.name: leaf.value for leaf in leaves}
        else:  # only the values that mention the subject: other people's fields stay out of the package
            record = {leaf.name: leaf.value for leaf in mentions}
        return self._finding(remote, n, entities, identifier, record)

    # ---- stray temp files
    def _stale(self, temp: RemoteFile, m: re.Match) -> bool:
        """Whether a temp file is a dead run's: this host's and its process is gone (or it is this process's
        and no longer being written), or older than STALE_TMP_SECONDS, whoever wrote it."""
        if (self._host(), self._port(), temp.path) in _ACTIVE:
            return False
        if run_gone(m.group("host"), int(m.group("pid"))):
            return True
        modify = temp.modify
        if modify is None:
            try:
                reply = self._session().sendcmd(f"MDTM {temp.path}")
                modify = reply[4:].strip() if reply.startswith("213") else None
            except ftplib.error_perm:
                modify = None
        written = _modify_epoch(modify)
        return written is not None and time.time() - written > STALE_TMP_SECONDS

    def _clean_temps(self, temps: list[RemoteFile]) -> int:
        """Undo what crashed runs left: a moved-aside original whose name is free again is renamed back
        (restoring the pre-erasure file; the erasure is redone later), one whose replacement is in place is
        deleted; partial or unused uploads are deleted. Files being written by live runs are left alone.
        Returns how many originals were restored."""
        ours = [(t, m) for t in temps if (m := _REMOTE_TMP.match(posixpath.basename(t.path)))]
        restored = removed = 0
        for temp, m in sorted(ours, key=lambda tm: tm[1].group("kind") != "old"):  # old copies first
            original = posixpath.join(posixpath.dirname(temp.path), m.group("name"))
            with self._remote(f"file {original}", "removing a stray temp file"):
                if not self._stale(temp, m):
                    continue
                ftp = self._session()
                try:
                    if m.group("kind") == "old" and self._stat(original) is None:
                        ftp.rename(temp.path, original)
                        restored += 1
                    else:
                        ftp.delete(temp.path)
                        removed += 1
                except ftplib.error_perm as exc:
                    if _reply_code(exc) != "550" or self._stat(temp.path) is not None:
                        raise
                    # gone already: another run cleaned it up first
        if restored:
            self.say(f"{restored} files restored from an erasure interrupted mid-swap")
        if removed:
            self.say(f"{removed} stray temp files from an interrupted erasure removed")
        return restored

    def _stat(self, remote: str) -> tuple[int, str | None] | None:
        """(size, MDTM) of a remote file in binary mode; None when there is no such file."""
        ftp = self._session()
        ftp.voidcmd("TYPE I")  # listings switch to ASCII, where some servers refuse SIZE
        try:
            size = ftp.size(remote)
        except ftplib.error_perm as exc:
            if _reply_code(exc) in _NOT_SUPPORTED:
                size = self._mlst_size(remote)
            elif _reply_code(exc) in ("550", "450"):
                return None
            else:
                raise
        if size is None:
            raise StoreError(self.name, f"file {remote}", "the server reports no file sizes (SIZE, MLST), so an "
                             "upload cannot be verified; nothing is changed")
        try:
            reply = ftp.sendcmd(f"MDTM {remote}")
            modify = reply[4:].strip() if reply.startswith("213") else None
        except ftplib.error_perm:
            modify = None
        return size, modify

    def _mlst_size(self, remote: str) -> int | None:
        try:
            reply = self._session().sendcmd(f"MLST {remote}")
        except ftplib.error_perm:
            return None
        for line in reply.splitlines()[1:]:
            for fact in line.strip().split(";"):
                key, _, value = fact.partition("=")
                if key.strip().casefold() == "size" and value.isdigit():
                    return int(value)
        return None

    # ---- erasure
    def apply(self, actions: list[ExecAction], done: Done, matcher: SubjectMatcher) -> None:
        """Per remote file, one rewrite carrying out all its actions, uploaded beside it and renamed over
        it; `done` once per file after the rename. Idempotent as the CSV connector's apply is: a row past
        the end affects nothing, and a file whose rows are all gone is left alone. A row whose located
        record (`ExecAction.expected`) is no longer there is left alone too. A `drop` action (location
        ``{"path": remote}``, no row) deletes the whole file (DELE); a file already gone counts as done."""
        root = self._root_path()
        shown = self._shown = PlaceNames(matcher, "file")
        by_file: dict[str, list[ExecAction]] = {}
        for a in actions:
            remote = a.container or (a.location.get("path") if isinstance(a.location, dict) else None)
            if not remote or (isinstance(a.location, dict) and a.location.get("path", remote) != remote):
                raise StoreError(self.name, f"action {a.action_id}", "names no remote path, or two different ones")
            by_file.setdefault(remote, []).append(a)
        for remote, file_actions in by_file.items():
            if docs.document_kind(remote):  # a delete of a place in a document removes the whole file
                file_actions[:] = [ExecAction(a.action_id, a.container, {"path": remote}, DROP)
                                   if a.kind == DELETE else a for a in file_actions]
            self._check_target(root, remote, drop=all(a.kind == DROP for a in file_actions))
            for a in file_actions:
                if a.kind == DROP and a.location.get("row") is not None:
                    raise StoreError(self.name, f"action {a.action_id}", "a drop removes a whole file; it names no row")
        temps: list[RemoteFile] = []
        for folder in sorted({posixpath.dirname(r) for r in by_file}):  # stray temps beside those files
            for name, is_dir, facts in self._list_folder_quiet(folder):
                if not is_dir and _REMOTE_TMP.match(name):
                    temps.append(RemoteFile(posixpath.join(folder, name), None, facts.get("modify")))
        self._clean_temps(temps)
        with self._workspace() as work:
            for remote in sorted(by_file):
                file_actions = by_file[remote]
                if any(a.kind == DROP for a in file_actions):  # the file goes: its row actions go with it
                    removed = self._drop_file(remote)
                    self.say(f"{shown(remote)}: file removed" if removed
                             else f"{shown(remote)}: already gone, nothing to remove")
                    done([a.action_id for a in file_actions], 1 if removed else 0, None)
                    continue
                if docs.document_kind(remote):  # the verification finds what is left
                    ids, changed, detail = self._redact_document(remote, file_actions, work)
                    self.say(f"{shown(remote)}: {changed} cells redacted, {len(file_actions) - len(ids)} actions "
                             f"not carried out" + (f" ({detail})" if detail else ""))
                    done([a.action_id for a in file_actions], changed, detail)  # rows: what really changed
                    continue
                todo = FilePlanOfActions(self.name, remote, file_actions)
                deleted, updated = self._erase_file(remote, todo, work)
                self.say(f"{shown(remote)}: {deleted} rows deleted, {updated} rows updated")
                if shown.personal(remote):
                    self._unname(remote, shown)
                done([a.action_id for a in file_actions], deleted + updated, None)

    def _unname(self, remote: str, shown: PlaceNames) -> None:
        """A remote file named after the subject: renamed on the server (``renamed-<hash>`` with the same
        extension, in the same folder), so its name no longer names them and other people's records stay."""
        import hashlib

        folder, name = posixpath.split(remote)
        suffix = posixpath.splitext(name)[1]
        target = posixpath.join(folder, "renamed-" + hashlib.sha256(remote.encode("utf-8")).hexdigest()[:12] + suffix)
        with self._remote(f"file {shown(remote)}", "renaming"):
            if self._stat(remote) is None:
                return
            self._session().rename(remote, target)
        self.say(f"{shown(remote)}: renamed to {posixpath.basename(target)} (its name named the subject)")

    def _drop_file(self, remote: str) -> bool:
        """Delete one remote file (DELE); False when it is gone already (idempotent)."""
        place = f"file {remote}"
        folder, name = posixpath.split(remote)
        with self._remote(place, "removing the file"):
            try:
                self._session().delete(remote)
                return True
            except ftplib.error_perm as exc:
                if _reply_code(exc) not in ("550", "450"):
                    raise
                if any(entry == name and not is_dir for entry, is_dir, _f in self._list_folder_quiet(folder)):
                    raise  # still there: the server refuses to delete it
                return False

    def _list_folder_quiet(self, folder: str) -> list[tuple[str, bool, dict]]:
        try:
            return self._list_folder(folder)
        except StoreError:
            return []  # the folder itself may be gone: the file's own check reports that

    def _check_target(self, root: str, remote: str, *, drop: bool = False) -> None:
        place = f"file {remote}"
        norm = posixpath.normpath(remote)
        if not remote.startswith("/") or norm != remote or any(c in remote for c in "\r\n\0"):
            raise StoreError(self.name, place, "is not a plain absolute remote path")
        if not (root == "/" or norm.startswith(root.rstrip("/") + "/")):
            raise StoreError(self.name, place, "lies outside the store's folder")
        if _REMOTE_TMP.match(posixpath.basename(norm)) or is_temp_name(posixpath.basename(norm)):
            raise StoreError(self.name, place, "is one of Lethe's temp files")
        if file_kind(norm) is None and docs.document_kind(norm) is None and not drop:
            # a whole file (e.g. a recording) may go; only text (and XLSX cells) is rewritten
            raise StoreError(self.name, place, "is not a file type Lethe can rewrite")

    def _redact_document(self, remote: str, actions: list[ExecAction], work: Path
                         ) -> tuple[list[str], int, str | None]:
        """Updates of XLSX cells, carried out on a local copy (connectors/documents.py `redact_xlsx`) that is
        uploaded and renamed over the original as a CSV rewrite is. PDF/DOCX cannot be changed in place:
        nothing is done and the detail says so (their findings stay for review). (ids of the actions done, cells
        changed, detail). Every action is still reported done with the rows changed: the verification finds what
        is left (and the plan is then not verified), never claimed as redacted."""
        kind = docs.document_kind(remote)
        label = docs.LABELS[kind]
        if kind != docs.XLSX:
            return [], 0, f"a {label} cannot be changed in place: left for review (delete the file to erase it)"
        pairs = [(a, docs.CellChange(str(a.location.get("sheet")), str(a.location.get("cell")),
                                     str((a.expected or {}).get("value")), str(a.updates["value"])))
                 for a in actions if a.kind == UPDATE and "value" in a.updates and "cell" in a.location]
        nothing = [a.action_id for a in actions if all(a is not p[0] for p in pairs)]  # no value to change
        if not pairs:
            return nothing, 0, None
        place = f"file {remote}"
        with self._remote(place, "reading"):
            before = self._stat(remote)
        if before is None:
            return [a.action_id for a in actions], 0, "no longer exists"
        changes = [c for _a, c in pairs]
        with self._copy(remote, work) as local:
            if local.stat().st_size != before[0]:
                raise StoreError(self.name, place, "changed while it was being read; try again")
            try:
                changed, left = docs.redact_xlsx(local, changes)
            except docs.DocumentError as exc:
                return nothing, 0, f"not changed: {exc.reason}; left for review"
            if changed:
                self._upload_and_replace(remote, local, before)
        return nothing + [a.action_id for a, c in pairs if c.done], changed, ("; ".join(left) if left else None)

    def _erase_file(self, remote: str, todo: FilePlanOfActions, work: Path) -> tuple[int, int]:
        place = f"file {remote}"
        with self._remote(place, "reading"):
            before = self._stat(remote)
        if before is None:
            self.say(f"{remote}: no longer exists, nothing to erase")
            return 0, 0
        if not todo.last:
            return 0, 0
        with self._copy(remote, work) as local:
            if local.stat().st_size != before[0]:
                raise StoreError(self.name, place, "changed while it was being read; try again")
            if file_kind(remote) == CSV_KIND:
                deleted, updated = self.fileformat.rewrite(remote, todo)
            else:
                deleted, updated = self.fileformat.rewrite_lines(remote, todo, file_kind(remote) == JSON_KIND)
            if not (deleted or updated):  # the rows are gone already: leave the remote file alone
                return 0, 0
            self._upload_and_replace(remote, local, before)
        return deleted, updated

    def _upload_and_replace(self, remote: str, local: Path, before: tuple[int, str | None]) -> None:
        place = f"file {remote}"
        folder, name = posixpath.split(remote)
        token = f"{os.getpid()}-{HOST_TAG}{secrets.token_hex(6)}"
        tmp = posixpath.join(folder, f".{name}{TMP_MARK}{token}")
        old = posixpath.join(folder, f".{name}{OLD_MARK}{token}")
        keys = [(self._host(), self._port(), tmp), (self._host(), self._port(), old)]
        _ACTIVE.update(keys)
        size = local.stat().st_size
        try:
            with self._remote(place, "uploading the rewritten file"):
                with open(local, "rb") as fh:
                    self._session().storbinary(f"STOR {tmp}", fh, blocksize=BLOCK)
            with self._remote(place, "verifying the upload"):
                stored = self._stat(tmp)
            if stored is None or stored[0] != size:
                got = "none" if stored is None else stored[0]
                raise StoreError(self.name, place, f"the upload is incomplete ({got} of {size} bytes on the server); "
                                 "the original is unchanged")
            with self._remote(place, "checking the original"):
                now = self._stat(remote)
            if now != before:
                raise StoreError(self.name, place, "changed while it was being rewritten; try again")
            self._replace(remote, tmp, old)
        except BaseException:
            self._discard(tmp)
            raise
        finally:
            _ACTIVE.difference_update(keys)

    def _replace(self, remote: str, tmp: str, old: str) -> None:
        place = f"file {remote}"
        ftp = self._session()
        with self._remote(place, "renaming the rewritten file into place"):
            try:
                ftp.rename(tmp, remote)
                return
            except ftplib.error_perm as exc:
                if _reply_code(exc) != "550" or self._stat(remote) is None:
                    raise
            # the server will not rename over an existing file: swap in three steps (see the module doc)
            ftp.rename(remote, old)
            try:
                ftp.rename(tmp, remote)
            except BaseException:
                try:
                    ftp.rename(old, remote)
                except Exception:  # noqa: BLE001 - the next run restores it (_clean_temps)
                    pass
                raise
        with self._remote(place, "deleting the moved-aside original (the next run will)"):
            ftp.delete(old)

    def _discard(self, tmp: str) -> None:
        """Best effort: remove our temp upload after a failure, on a fresh connection if the old one broke.
        What stays behind is removed by the next locate or apply."""
        for _attempt in range(2):
            try:
                self._session().delete(tmp)
                return
            except ftplib.error_perm:
                return  # not there (never created) or not ours to delete
            except (LetheError, ftplib.Error, OSError, EOFError):
                self._drop()


