"""Discovery sweep: sample every container (table, file, mailbox) of a store and record, per column, the
kinds of personal data it holds (entity types, confidence, sample size) in the inventory, so access and
erasure runs find the classification cached and the data map (pii.datamap) can be drawn from it.

Incremental by default: each container's *change signature* is kept in the state DB
(`pii.inventory.inventory_containers`) and a container whose signature (and the sample size) is the same
as at the last sweep is not sampled again ("unchanged"); ``full=True`` re-samples everything.

| kind  | container                 | change signature                                     | columns            |
|-------|---------------------------|------------------------------------------------------|--------------------|
| sql   | table (schema.table)      | column names and types, row count, max of a single   | the table's        |
|       |                           | numeric primary key                                  |                    |
| csv   | file (relative path)      | size and modification time                           | the header's       |
| ftp   | file (remote path)        | size and modification time (MLSD, else SIZE/MDTM)    | CSV/TSV: header;   |
|       |                           |                                                      | JSONL: top-level   |
|       |                           |                                                      | keys; TXT: "line"  |
| gmail | "messages"                | history id, message count, ids of the newest N       | from, to, cc,      |
|       |                           |                                                      | subject, body      |

Classification is the connectors' own (`SqlConnector.classify_tables`, the CSV connector's per-file
classification, on local copies for FTP); JSON lines, text lines and mail are classified here with the
same `pii.classify` rules and Presidio. Sample size: the ``sample_rows`` argument, else the store's
``sample_size``, else ``detection: {sample_rows: N}``, else what the connectors use (SQL 30 rows, files
50 records, mail 50 messages). Samples never leave this module: results, progress and the inventory hold
entity types and counts only.
"""
from __future__ import annotations

import email.utils
import hashlib
import json
import time
from collections import Counter
from typing import Any, Iterable

from connectors import open_connector
from connectors.base import Progress, null_progress
from pii import classify as cls
from pii.config import STORE_KINDS, Config, StoreConfig
from pii.detection import model_name
from pii.errors import ConfigError, StoreError, StoreUnreachable
from pii.inventory import EMAIL, FREE_TEXT, ColumnProfile, Inventory
from pii.subject import EMAIL_RE

SWEEP_KINDS = STORE_KINDS  # every store kind can be swept
DEFAULT_SAMPLE = {"sql": 30, "csv": 50, "ftp": 50, "gmail": 50}
MAX_SAMPLE = 100_000
MAIL_COLUMNS = ("from", "to", "cc", "subject", "body")
MAIL_HEADERS = ("from", "to", "cc")
LINE_COLUMN = "line"


class RefreshingInventory(Inventory):
    """An inventory that never answers from its cache but records what is classified now."""

    def get(self, store, container, signature):
        self.misses += 1
        return None


def sample_size(config: Config, store: StoreConfig, override: int | None = None) -> int:
    """Rows (records, messages) sampled per container: `override`, else the store's ``sample_size``,
    else ``detection: {sample_rows: N}``, else the connector's default."""
    for value, where in ((override, "sample_rows"), (store.get("sample_size"), f"store '{store.name}': sample_size"),
                         ((config.detection or {}).get("sample_rows"), "detection: sample_rows")):
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, str)) or not str(value).strip().isdigit() \
                or not 1 <= int(value) <= MAX_SAMPLE:
            raise ConfigError(f"{where} must be a whole number from 1 to {MAX_SAMPLE}")
        return int(value)
    return DEFAULT_SAMPLE.get(store.kind, 50)


def _digest(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, default=str, sort_keys=True).encode("utf-8")).hexdigest()[:40]


class _Sweep:
    """One store's sweep: decides per container whether it changed, classifies, records, counts."""

    def __init__(self, config: Config, store: StoreConfig, conn, inventory: Inventory, *, full: bool,
                 sample: int, progress: Progress):
        self.config, self.store, self.conn, self.inventory = config, store, conn, inventory
        self.full, self.sample, self.progress = full, sample, progress
        self.states = inventory.sweep_states(store.name)
        self.seen: list[str] = []
        self.swept = self.unchanged = self.rows_sampled = self.columns_swept = 0
        self.errors: list[dict] = []
        self._counter = None

    def say(self, message: str) -> None:
        self.progress(self.store.name, message)

    def is_unchanged(self, container: str, signature: str | None) -> bool:
        """Whether `container` can be skipped: same change signature and sample size as last time, and the
        inventory still holds its columns."""
        self.seen.append(container)
        state = self.states.get(container)
        if (self.full or signature is None or state is None or state["change_signature"] != signature
                or state["sample_rows"] != self.sample or state["inventory_columns"] != state["column_count"]):
            return False
        self.unchanged += 1
        return True

    def record(self, container: str, signature: str | None, profiles: dict[str, ColumnProfile],
               rows: int, *, put: bool = False) -> None:
        if put:
            self.inventory.put(self.store.name, container, cls.signature(
                [cls.ColumnInfo(c, cls.STRING) for c in profiles]), profiles)
        self.swept += 1
        self.rows_sampled += rows
        self.columns_swept += len(profiles)
        if signature is not None:
            self.inventory.record_sweep(self.store.name, container, store_kind=self.store.kind,
                                        change_signature=signature, sample_rows=self.sample,
                                        column_count=len(profiles), rows_sampled=rows)
        self.say(f"{container}: {len(profiles)} columns classified from {rows} sampled rows")

    def failed(self, container: str, exc: StoreError) -> None:
        """A container that cannot be read (a malformed file): reported, the rest of the store still swept."""
        self.errors.append({"container": container, "reason": exc.reason})
        self.say(f"{container}: not classified ({exc.reason})")

    def counter(self):
        """Presidio's entity counter (pii.detection.entities_in) for the configured model, built once."""
        if self._counter is None:
            import functools

            from pii.detection import build_analyzer, entities_in

            self._counter = functools.partial(entities_in, build_analyzer(model_name(self.config.detection)))
        return self._counter


# --------------------------------------------------------------------------- entry points
def sweep_store(config: Config, store_name: str, *, progress: Progress = null_progress, full: bool = False,
                sample_rows: int | None = None) -> dict:
    """Sweep one store: re-classify its changed containers (all of them with `full`) into the inventory.

    Returns counts only: ``{"store", "kind", "containers", "tables"|"files"|"mailboxes", "swept",
    "unchanged", "removed", "failed", "errors", "columns", "columns_swept", "rows_sampled", "sample_rows",
    "by_kind", "seconds", "rows_per_s", "containers_per_s", "full"}``. ``columns`` and ``by_kind`` cover
    every current container of the store (swept now or unchanged); ``errors`` names containers that could
    not be read, with why (no values).
    """
    started = time.perf_counter()
    store = config.select([store_name])[0]
    if store.kind not in SWEEP_KINDS:
        raise ConfigError(f"store '{store.name}': a discovery sweep cannot classify {store.kind} stores")
    sample = sample_size(config, store, sample_rows)
    inventory = RefreshingInventory(config.state_url)
    with open_connector(store, config=config, progress=progress, inventory=inventory,
                        analyzer_model=model_name(config.detection)) as conn:
        conn.check()
        run = _Sweep(config, store, conn, inventory, full=full, sample=sample, progress=progress)
        {"sql": _sweep_sql, "csv": _sweep_csv, "ftp": _sweep_ftp, "gmail": _sweep_gmail}[store.kind](run)
    current = set(run.seen)
    gone = sorted(inventory.containers(store.name) - current)
    if gone:
        inventory.forget(store.name, gone)
        progress(store.name, f"{len(gone)} tables/files no longer present: removed from the inventory")
    rows = [r for r in inventory.rows(store.name) if r["container"] in current]
    by_kind = Counter(r["kind"] for r in rows)
    seconds = time.perf_counter() - started
    noun = {"sql": "tables", "gmail": "mailboxes"}.get(store.kind, "files")
    result = {
        "store": store.name,
        "kind": store.kind,
        "containers": len(current),
        noun: len(current),
        "swept": run.swept,
        "unchanged": run.unchanged,
        "removed": len(gone),
        "failed": len(run.errors),
        "errors": run.errors,
        "columns": len(rows),
        "columns_swept": run.columns_swept,
        "rows_sampled": run.rows_sampled,
        "sample_rows": sample,
        "by_kind": dict(sorted(by_kind.items())),
        "seconds": round(seconds, 3),
        "rows_per_s": round(run.rows_sampled / seconds, 1) if seconds > 0 else 0.0,
        "containers_per_s": round(len(current) / seconds, 1) if seconds > 0 else 0.0,
        "full": bool(full),
    }
    progress(store.name, summary_line(result))
    return result


def sweep_stores(config: Config, stores: list[str] | None = None, *, progress: Progress = null_progress,
                 full: bool = False, sample_rows: int | None = None) -> list[dict]:
    """`sweep_store` for each selected store (all by default), in config order."""
    return [sweep_store(config, s.name, progress=progress, full=full, sample_rows=sample_rows)
            for s in config.select(stores)]


def summary_line(result: dict) -> str:
    """One line of counts for a store's sweep (CLI and task logs)."""
    line = (f"{result['containers']} containers: {result['swept']} swept, {result['unchanged']} unchanged"
            f"{', %d removed' % result['removed'] if result['removed'] else ''}"
            f"{', %d failed' % result['failed'] if result['failed'] else ''}; {result['columns']} columns; "
            f"{result['rows_sampled']} rows sampled in {result['seconds']:.2f} s ({result['rows_per_s']:.0f} rows/s)")
    return line


# --------------------------------------------------------------------------- SQL
def _sweep_sql(run: _Sweep) -> None:
    import sqlalchemy as sa

    from connectors.sql import _column_type, _short_reason

    conn = run.conn
    conn.sample_size = run.sample
    changed = []
    cached = _cached_profiles(run.inventory, run.store.name)
    try:
        tables = conn.tables()
        with conn.engine.connect() as db:
            for info in tables:
                columns = [cls.ColumnInfo(c.name, _column_type(c)) for c in info.table.columns]
                count = db.execute(sa.select(sa.func.count()).select_from(info.table)).scalar()
                top = None
                if len(info.pk) == 1 and _column_type(info.table.c[info.pk[0]]) == cls.NUMBER:
                    top = db.execute(sa.select(sa.func.max(info.table.c[info.pk[0]]))).scalar()
                signature = _digest("sql", cls.signature(columns), count, None if top is None else str(top))
                if run.is_unchanged(info.container, signature):
                    info.profiles = cached.get(info.container) or {}  # classify_tables leaves these alone
                    continue
                info.profiles = {}
                strings = any(c.type == cls.STRING for c in columns)
                changed.append((info, signature, min(count or 0, run.sample) if strings else 0))
        conn.classify_tables()
    except sa.exc.SQLAlchemyError as exc:
        raise StoreError(run.store.name, "discovery sweep", _short_reason(exc)) from None
    for info, signature, rows in changed:
        run.record(info.container, signature, dict(info.profiles), rows)


def _cached_profiles(inventory: Inventory, store: str) -> dict[str, dict[str, ColumnProfile]]:
    out: dict[str, dict[str, ColumnProfile]] = {}
    for r in inventory.rows(store):
        out.setdefault(r["container"], {})[r["column_name"]] = ColumnProfile(
            r["kind"], json.loads(r["entities"]), r["confidence"], r["sample_size"])
    return out


# --------------------------------------------------------------------------- CSV
def _sweep_csv(run: _Sweep) -> None:
    conn = run.conn
    for rel in conn.files():
        try:
            stat = conn._path(rel).stat()
        except OSError:
            continue  # removed since it was listed
        signature = _digest("file", stat.st_size, stat.st_mtime_ns)
        if run.is_unchanged(rel, signature):
            continue
        try:
            profiles, rows = _classify_csv_file(conn, rel, run.sample)
        except StoreError as exc:
            run.failed(rel, exc)
            continue
        run.record(rel, signature, profiles, rows)


def _classify_csv_file(conn, rel: str, sample_rows: int | None = None) -> tuple[dict[str, ColumnProfile], int]:
    """The CSV connector's classification of one file from its first records (as `locate` samples them),
    stored in the connector's inventory. Returns (profiles, records sampled)."""
    if sample_rows is None:
        from connectors.csvfiles import SAMPLE_ROWS as sample_rows
    with conn._open(rel) as (columns, _extra_key, rows):
        sample = []
        for _n, row in rows:
            sample.append(row)
            if len(sample) >= sample_rows:
                break
        return conn._profiles(rel, columns, sample), len(sample)


# --------------------------------------------------------------------------- FTP
def _sweep_ftp(run: _Sweep) -> None:
    from connectors.ftp import CSV_KIND, JSON_KIND, file_kind

    conn = run.conn
    root = conn._root_path()
    files, _temps = conn._listing(root)
    wanted = conn._select(root, files)
    skipped = [f for f in wanted if not file_kind(f.path)]
    if skipped:
        run.say(f"{len(skipped)} files of types Lethe cannot read are not classified")
    todo = []
    for f in wanted:
        kind = file_kind(f.path)
        if not kind:
            continue
        size, modify = f.size, f.modify
        if size is None or modify is None:  # no MLSD facts: ask the server for this one file
            with conn._remote(f"file {f.path}", "reading"):
                stat = conn._stat(f.path)
            if stat is None:
                continue  # deleted since it was listed
            size, modify = stat
        signature = _digest("file", size, modify) if modify else None  # no time known: always re-sweep
        if not run.is_unchanged(f.path, signature):
            todo.append((f.path, kind, signature))
    if not todo:
        return
    with conn._workspace() as work:
        for remote, kind, signature in todo:
            try:
                with conn._copy(remote, work):
                    if kind == CSV_KIND:
                        profiles, rows = _classify_csv_file(conn._csv, remote, run.sample)
                        run.record(remote, signature, profiles, rows)
                    else:
                        profiles, rows = _classify_lines(run, conn, remote, kind == JSON_KIND)
                        run.record(remote, signature, profiles, rows, put=True)
            except StoreUnreachable:
                raise
            except StoreError as exc:
                run.failed(remote, exc)


def _classify_lines(run: _Sweep, conn, remote: str, json_lines: bool) -> tuple[dict[str, ColumnProfile], int]:
    """A TXT file as one free-text ``line`` column; JSON lines by their top-level keys (a nested value as
    the text of its leaves), lines that are not JSON objects as free-text ``line``. From the first
    `run.sample` non-blank lines."""
    from connectors.ftp import json_leaves, split_line

    samples: dict[str, list] = {}
    numeric: dict[str, bool] = {}
    lines: list[str] = []
    rows = 0
    for _n, line in conn._lines(remote):
        text, doc = split_line(line, json_lines)
        if not text.strip():
            continue
        rows += 1
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
        if rows >= run.sample:
            break
    profiles: dict[str, ColumnProfile] = {}
    if samples:
        infos = [cls.ColumnInfo(k, cls.NUMBER if numeric.get(k) else cls.STRING) for k in samples]
        profiles.update(cls.classify(infos, samples, entity_counter=run.counter(),
                                     text_columns=run.store.string_list("text_columns")))
    if lines or not json_lines:
        profiles[LINE_COLUMN if LINE_COLUMN not in profiles else "_" + LINE_COLUMN] = \
            free_text_profile(lines, run.counter())
    return profiles, rows


def free_text_profile(values: Iterable, counter) -> ColumnProfile:
    """A column known to hold free text (a text file's lines, a mail's subject or body): the entity types
    Presidio finds in any sampled value (e-mail addresses by pattern too). Confidence 1.0: the kind comes
    from what the column is, not from the sample."""
    texts = [str(v) for v in values if v is not None and str(v).strip()]
    entities: set[str] = set()
    if any(EMAIL_RE.search(t) for t in texts):
        entities.add("EMAIL_ADDRESS")
    if texts and counter is not None:
        entities |= {e for e, c in counter(texts).items() if c}
    return ColumnProfile(FREE_TEXT, sorted(entities), 1.0, len(texts))


# --------------------------------------------------------------------------- Gmail
def _sweep_gmail(run: _Sweep) -> None:
    from connectors.gmail import CONTAINER, LIST_PAGE_SIZE, _b64url_decode, _Gone, parse_message

    conn = run.conn
    try:
        profile = conn._execute(conn._client().users().getProfile(userId=conn.user_id), "mailbox profile")
    except _Gone:
        raise StoreUnreachable(run.store.name, "the mailbox (user_id) was not found") from None
    ids: list[str] = []
    token = None
    while len(ids) < run.sample:  # Gmail lists the newest messages first
        kwargs = {"userId": conn.user_id, "maxResults": min(LIST_PAGE_SIZE, run.sample - len(ids)),
                  "includeSpamTrash": False, "fields": "messages(id),nextPageToken"}
        if token:
            kwargs["pageToken"] = token
        try:
            page = conn._execute(conn._messages.list(**kwargs), "message list")
        except _Gone:
            raise StoreUnreachable(run.store.name, "the mailbox (user_id) was not found") from None
        ids.extend(m["id"] for m in page.get("messages") or [])
        token = page.get("nextPageToken")
        if not token:
            break
    ids = ids[:run.sample]
    signature = _digest("gmail", profile.get("historyId"), profile.get("messagesTotal"), ids)
    if run.is_unchanged(CONTAINER, signature):
        return
    values: dict[str, list[str]] = {c: [] for c in MAIL_COLUMNS}
    names: dict[str, list[str]] = {h: [] for h in MAIL_HEADERS}
    fetched = 0
    for i in range(0, len(ids), conn.batch_size):
        chunk = ids[i:i + conn.batch_size]
        got = conn._run_batch([(mid, lambda mid=mid: conn._messages.get(userId=conn.user_id, id=mid, format="raw"))
                               for mid in chunk], "message fetch")
        for mid in chunk:
            resource = got.get(mid)
            if resource is _Gone or not resource or "raw" not in resource:
                continue  # deleted since it was listed
            try:
                parsed = parse_message(_b64url_decode(resource["raw"]), conn.max_attachment_bytes)
            except Exception:  # noqa: BLE001 - one unparseable message must not stop the sweep
                continue
            fetched += 1
            for h in MAIL_HEADERS:
                if parsed.headers.get(h):
                    values[h].append(parsed.headers[h])
                    shown = [n for n, _a in email.utils.getaddresses([parsed.headers[h]]) if n]
                    if shown:
                        names[h].append(" ".join(shown))
            values["subject"].append(parsed.headers.get("subject") or "")
            values["body"].append(parsed.body_text)
    counter = run.counter()
    profiles: dict[str, ColumnProfile] = {}
    for h in MAIL_HEADERS:
        present = values[h]
        with_address = sum(1 for v in present if any("@" in a for _n, a in email.utils.getaddresses([v])))
        entities = {"EMAIL_ADDRESS"} if with_address else set()
        if names[h] and counter is not None:
            counts = counter(names[h])
            entities |= {e for e, c in counts.items() if c / len(present) >= 0.3}
        confidence = round(with_address / len(present), 3) if present else 0.0
        profiles[h] = ColumnProfile(EMAIL, sorted(entities), confidence, len(present))
    profiles["subject"] = free_text_profile(values["subject"], counter)
    profiles["body"] = free_text_profile(values["body"], counter)
    run.record(CONTAINER, signature, profiles, fetched, put=True)

