"""SQL stores (SQLite, PostgreSQL, MariaDB/MySQL) through SQLAlchemy.

How a subject is located, without ever scanning a table in Python:
1. Reflect the schema; classify columns (cached in the inventory, with their sampled written forms) and
   reflect the database's own facts: types, declared lengths, CHECK/ENUM domains, indexes, collations.
2. Per table, the search planner (connectors/sql_search.py) picks for every text column the cheapest
   correct predicate: a domain or length that rules the column out, an index (lower(email), citext,
   pg_trgm, FULLTEXT, a loose scan of distinct values), or else containment in one OR'ed scan query per
   table. Tables are searched concurrently (``search_workers``); the database returns candidates only and
   Python confirms each with the subject matcher. `self.coverage` records what was searched and how, and
   what could not be (a binary column, a table that cannot be read).
3. From every row where an identifier matched, follow foreign keys backwards (rows that reference it:
   registrations, orders, their items...) transitively, with a cycle guard, in batched `IN` queries: those rows are `linked`.
   Rows a matched row merely points to (events, products, companies) are shared reference data and are
   not reported, unless stores.yaml lists their table under `personal_tables`.

`select(RecordFilter)` (pii/core/selection.py) chooses rows by other conditions: `equals` as `trim(col) IN`
(converted values for typed columns), date bounds in the WHERE clause on DATE/DATETIME columns and parsed
in Python for text columns, text terms as `lower(col) LIKE` prefilters on free-text columns; every
fetched row is confirmed in Python.
"""
from __future__ import annotations

import base64
import datetime as dt
import decimal
import functools
import json
import re
import time
import uuid
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator

import sqlalchemy as sa
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError
from sqlalchemy.sql import sqltypes

from connectors import sql_search as search
from connectors.base import DELETE, UPDATE, Connector, Container, Done, ExecAction, Sampled, change_signature
from connectors.sql_search import MAX_DISTINCT, Planner, reflect_facts
from pii.core.coverage import Coverage
from pii.core import classify as cls
from pii.core.config import resolve_sqlite_url
from pii.core.errors import ConfigError, StoreError, StoreUnreachable
from pii.core.findings import STRONG, WEAK, Finding, merge
from pii.core.inventory import EMAIL, FAMILY_NAME, FREE_TEXT, GIVEN_NAME, NAME, PHONE, ColumnProfile
from pii.core.policy import container_matches
from pii.core.printable import PlaceNames
from pii.core.dates import parse_date
from pii.core.selection import FILE_TIME, MESSAGE_DATE, RecordFilter
from pii.core.subject import (
    ENTITY_EMAIL, ENTITY_ID, ENTITY_PERSON, ENTITY_PHONE, Subject, SubjectMatcher, entities_of, fold,
)

SYSTEM_SCHEMAS = {"information_schema", "pg_catalog", "pg_toast", "mysql", "performance_schema", "sys"}
IN_CHUNK = 500
_STRIPPED = "anonymised in place instead of deleted: rows that stay still reference it"
MAX_LINK_DEPTH = 12
SAMPLE_SIZE = 30
DEFAULT_SEARCH_WORKERS = 4


_APOSTROPHES = "'\u2019\u02bc"
_DROP_APOSTROPHES = {ord(c): None for c in _APOSTROPHES}


def _sqlite_fold(value):
    if value is None:
        return None
    folded = fold(str(value))
    return folded.replace("'", "") if folded.isascii() else folded.translate(_DROP_APOSTROPHES)


def jsonable(value: Any) -> Any:
    """A JSON-friendly form of a database value (for locators and records)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, decimal.Decimal):
        return int(value) if value == value.to_integral_value() else str(value)
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, (bytes, bytearray, memoryview)):
        return "base64:" + base64.b64encode(bytes(value)).decode()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    return str(value)


@dataclass
class TableInfo:
    table: sa.Table
    schema: str | None  # as reported in locations (None for the default schema)
    pk: list[str]
    profiles: dict[str, ColumnProfile] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.table.name

    @property
    def container(self) -> str:
        return f"{self.schema}.{self.name}" if self.schema else self.name

    def location(self, row: dict) -> tuple[dict, str | None]:
        if self.pk:
            key = {c: jsonable(row[c]) for c in self.pk}
            note = None
        else:
            key = {c.name: jsonable(row[c.name]) for c in self.table.columns}
            note = "no primary key: located by all column values"
        loc = {"table": self.name, "key": key}
        if self.schema:
            loc = {"schema": self.schema, **loc}
        return loc, note

    def columns_of(self, *kinds: str) -> list[str]:
        return [c for c, p in self.profiles.items() if p.kind in kinds]


@dataclass
class _Hit:
    """Evidence for one row: entities seen, whether any is strong, how it matched."""
    info: TableInfo
    row: dict
    match: str
    entities: set[str]
    strong: bool
    text_columns: list[str] = field(default_factory=list)


class SqlConnector(Connector):
    kind = "sql"

    def __init__(self, store, **kwargs):
        super().__init__(store, **kwargs)
        self._engine: Engine | None = None
        self._tables: list[TableInfo] | None = None
        self.only_tables: list[str] | None = None  # locate() searches only these tables (links reach all)
        self._facts: dict | None = None
        self._excluded: list[str] = []
        self.sample_size = int(store.get("sample_size", SAMPLE_SIZE))

    # ------------------------------------------------------------------ connection
    def url(self) -> str:
        if self.store.get("conn_id") and not (self.store.get("url") or self.store.get("url_env")):
            raise ConfigError(
                f"store '{self.name}' names conn_id; Airflow connections are resolved by Lethe's Airflow hook, "
                "outside Airflow give 'url' or 'url_env'"
            )
        url = self.store.secret("url")
        if not url:
            raise ConfigError(f"store '{self.name}' (sql) has an empty url")
        return with_default_driver(resolve_sqlite_url(str(url), self.store.base_dir))

    def _safe_url(self) -> str:
        try:
            return make_url(self.url()).render_as_string(hide_password=True)
        except Exception:
            return "<unparseable url>"

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            url = self.url()
            try:
                engine = sa.create_engine(url, pool_pre_ping=True)
            except (ArgumentError, NoSuchModuleError) as exc:
                raise ConfigError(f"store '{self.name}': url is not a usable SQLAlchemy URL "
                                  f"({exc.__class__.__name__})") from None
            except ModuleNotFoundError as exc:
                raise ConfigError(f"store '{self.name}': database driver '{exc.name}' is not installed") from None
            if engine.dialect.name == "sqlite":
                sa.event.listen(engine, "connect", _register_sqlite_functions)
            self._engine = engine
        return self._engine

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def check(self) -> None:
        if self.dialect == "sqlite":
            path = make_url(self.url()).database
            if path and path != ":memory:":
                from pathlib import Path
                if not Path(path).exists():
                    raise StoreUnreachable(self.name, f"SQLite file {path} does not exist")
        try:
            with self.engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
        except SQLAlchemyError as exc:
            reason = _safe_reason(exc)
            raise StoreUnreachable(self.name, f"cannot connect to {self._safe_url()} ({reason})") from None

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    # ------------------------------------------------------------------ schema
    def schemas(self) -> list[str | None]:
        configured = self.store.string_list("schemas")
        if configured:
            return list(configured)
        if self.dialect == "postgresql":
            names = sa.inspect(self.engine).get_schema_names()
            return [s for s in names if s not in SYSTEM_SCHEMAS and not s.startswith("pg_")]
        return [None]

    def table_groups(self, size: int) -> list[list[str]]:
        """The store's tables (containers, in table order) in groups of at most `size`, for searching a big
        store in parallel: each group's search follows foreign keys into every table, so the union of the
        groups' findings is the whole store's."""
        names = [t.container for t in self.tables()]
        return [names[i:i + size] for i in range(0, len(names), max(1, size))]

    def tables(self) -> list[TableInfo]:
        if self._tables is not None:
            return self._tables
        skip = {s.casefold() for s in self.store.string_list("skip_tables")}
        default_schema = "public" if self.dialect == "postgresql" else None
        md = sa.MetaData()
        infos: list[TableInfo] = []
        excluded: list[str] = []
        try:
            for schema in self.schemas():
                md.reflect(bind=self.engine, schema=schema, resolve_fks=False)
            for table in md.sorted_tables:
                shown = table.schema if table.schema and table.schema != default_schema else None
                qualified = f"{shown}.{table.name}" if shown else table.name
                if table.name.casefold() in skip or qualified.casefold() in skip:
                    excluded.append(qualified)
                    continue
                infos.append(TableInfo(table, shown, [c.name for c in table.primary_key.columns]))
        except SQLAlchemyError as exc:
            raise StoreError(self.name, "schema reflection", _safe_reason(exc)) from None
        self._tables = infos
        self._excluded = excluded
        return infos

    def _table_key(self, schema: str | None, name: str) -> tuple[str | None, str]:
        default_schema = "public" if self.dialect == "postgresql" else None
        return (schema if schema and schema != default_schema else None, name)

    # ------------------------------------------------------------------ classification
    def classify_tables(self, infos: list[TableInfo] | None = None) -> None:
        """Classify the columns of `infos` (default: every table), from the inventory when cached."""
        text_cols = self.store.string_list("text_columns")
        counter = None
        for info in (self.tables() if infos is None else infos):
            if info.profiles:
                continue
            columns = [cls.ColumnInfo(c.name, _column_type(c)) for c in info.table.columns]
            sig = cls.signature(columns)
            cached = self.inventory.get(self.name, info.container, sig) if self.inventory else None
            if cached is not None:
                info.profiles = cached
                continue
            string_cols = [c for c in info.table.columns if _column_type(c) == cls.STRING]
            samples: dict[str, list] = {}
            unreadable = False
            if string_cols:
                try:
                    with self.engine.connect() as conn:
                        rows = conn.execute(sa.select(*string_cols).limit(self.sample_size)).all()
                except SQLAlchemyError:  # e.g. no SELECT permission: classified by names; the search reports it
                    rows, unreadable = [], True
                for i, c in enumerate(string_cols):
                    samples[c.name] = [r[i] for r in rows]
            if counter is None and self.analyzer_model:
                from pii.core.detection import build_analyzer, entities_in
                counter = functools.partial(entities_in, build_analyzer(self.analyzer_model))
            forced = [t.split(".")[-1] for t in text_cols
                      if "." not in t or t.rsplit(".", 1)[0] in (info.name, info.container)]
            info.profiles = cls.classify(columns, samples, entity_counter=counter, text_columns=forced,
                                         container=info.name)
            if self.inventory is not None and not unreadable:
                self.inventory.put(self.name, info.container, sig, info.profiles)

    # ------------------------------------------------------------------ discovery
    def containers(self, rows: int | None = None) -> list[Container]:
        """Every table, signed by its column names and types, row count and (for a single numeric primary
        key) the largest key: new, removed or retyped columns and added or deleted rows change it."""
        out: list[Container] = []
        self._row_counts: dict[str, int] = {}
        try:
            with self.engine.connect() as db:
                for info in self.tables():
                    columns = [cls.ColumnInfo(c.name, _column_type(c)) for c in info.table.columns]
                    count = db.execute(sa.select(sa.func.count()).select_from(info.table)).scalar()
                    top = None
                    if len(info.pk) == 1 and _column_type(info.table.c[info.pk[0]]) == cls.NUMBER:
                        top = db.execute(sa.select(sa.func.max(info.table.c[info.pk[0]]))).scalar()
                    strings = any(c.type == cls.STRING for c in columns)
                    self._row_counts[info.container] = (count or 0) if strings else 0
                    out.append(Container(info.container, change_signature(
                        "sql", cls.signature(columns), count, None if top is None else str(top))))
        except SQLAlchemyError as exc:
            raise StoreError(self.name, "discovery sweep", _safe_reason(exc)) from None
        return out

    def sample_containers(self, names, rows, counter) -> Iterator[Sampled]:
        """`classify_tables` over the named tables, `rows` rows each (the connector's own analyzer)."""
        self.sample_size = rows
        wanted = set(names)
        infos = [i for i in self.tables() if i.container in wanted]
        for info in infos:
            info.profiles = {}
        try:
            self.classify_tables(infos)
        except SQLAlchemyError as exc:
            raise StoreError(self.name, "discovery sweep", _safe_reason(exc)) from None
        counts = getattr(self, "_row_counts", {})
        for info in infos:
            yield Sampled(info.container, dict(info.profiles), min(counts.get(info.container, rows), rows))

    # ------------------------------------------------------------------ locate
    def locate(self, matcher: SubjectMatcher) -> list[Finding]:
        """Every row about the subject: each table searched with the planner's predicates
        (connectors/sql_search.py), tables concurrently (``search_workers``, default 4), candidates confirmed
        in Python, then foreign keys followed. `self.coverage` says what was searched and how."""
        self.check()
        shown = PlaceNames(matcher, "table")
        self.coverage = Coverage(self.name, self.kind)
        tables = self.tables()
        for place in self._excluded:  # filled by tables()
            self.coverage.add_excluded(shown(place), "listed under skip_tables")
        if self.only_tables is not None:  # one group of a big store (Airflow maps groups over workers)
            wanted = set(self.only_tables)
            tables = [t for t in tables if t.container in wanted]
        self.say(f"{len(tables)} tables")
        self.classify_tables()
        search_options = self.store.get("search")
        strict = isinstance(search_options, dict) and bool(search_options.get("strict", False))
        planner = Planner(self.dialect, matcher, strict=strict)
        try:
            facts = self.column_facts()
        except SQLAlchemyError as exc:
            raise StoreError(self.name, "index reflection", _safe_reason(exc)) from None
        hits: list[_Hit] = []
        started = time.perf_counter()
        workers = max(1, min(self.search_workers, len(tables) or 1))
        outcomes: dict[str, tuple[list[_Hit], dict] | BaseException] = {}
        if workers == 1:
            for info in tables:
                outcomes[info.container] = self._search_guarded(info, planner, facts[info.container], matcher)
        else:
            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="lethe-sql") as pool:
                futures = {pool.submit(self._search_guarded, info, planner, facts[info.container], matcher): info
                           for info in tables}
                for fut in as_completed(futures):
                    outcomes[futures[fut].container] = fut.result()
        for info in tables:  # in table order, so findings and coverage read the same on every run
            out = outcomes[info.container]
            if isinstance(out, StoreUnreachable):
                raise out
            if isinstance(out, _TableFailed):
                self.coverage.add_skipped(shown(info.container), out.reason)
                self.say(f"{shown(info.container)}: not searched ({out.reason})")
                continue
            found, stats = out
            self.coverage.add_searched(shown(info.container), how=stats["how"], **({"assumes": stats["assumes"]}
                                                                               if stats["assumes"] else {}))
            for col, reason in stats["skipped"].items():
                self.coverage.add_skipped(f"{shown(info.container)}.{col}", reason)
            if found or stats["candidates"]:
                self.say(f"{shown(info.container)}: {len(found)} matching rows of {stats['candidates']} candidates "
                         f"({_how_text(stats['how'])})")
            hits.extend(found)
        self.say(f"{len(tables)} tables searched in {time.perf_counter() - started:.2f}s "
                 f"({_how_text(self.coverage.methods())})")
        try:
            linked = self._follow_links(hits)
        except SQLAlchemyError as exc:
            raise StoreError(self.name, "subject search (foreign keys)", _safe_reason(exc)) from None
        if linked:
            self.say(f"{len(linked)} rows linked through foreign keys")
        reference = {t.casefold() for t in self.store.string_list("reference_tables")}
        findings = []
        for hit in hits + linked:
            if hit.match == "linked" and (hit.info.name.casefold() in reference
                                          or hit.info.container.casefold() in reference):
                continue
            loc, note = hit.info.location(hit.row)
            if hit.match == "text":
                record = {c: jsonable(hit.row[c]) for c in hit.text_columns}
            else:
                record = {k: jsonable(v) for k, v in hit.row.items()}
            findings.append(Finding(
                store=self.name, location=loc, entities=sorted(hit.entities), match=hit.match,
                strength=STRONG if hit.strong else WEAK, container=hit.info.container, record=record, note=note,
            ))
        return merge(findings)

    @property
    def search_workers(self) -> int:
        value = self.store.get("search_workers", DEFAULT_SEARCH_WORKERS)
        if isinstance(value, bool) or not str(value).strip().isdigit() or not 1 <= int(value) <= 64:
            raise ConfigError(f"store '{self.name}': search_workers must be a whole number from 1 to 64")
        return int(value)

    def column_facts(self) -> dict[str, dict]:
        """Per table, per column: type, declared length and values, collation and usable indexes."""
        if self._facts is None:
            with self.engine.connect() as conn:
                self._facts = reflect_facts(conn, self.dialect, self.tables())
        return self._facts

    def search_plan(self, info: TableInfo, matcher: SubjectMatcher, *, strict: bool = False):
        """The planner's search of one table (what the EXPLAIN tests in tests/connectors/test_sql_search.py inspect)."""
        self.classify_tables([info])
        facts = self.column_facts()[info.container]
        planner = Planner(self.dialect, matcher, strict=strict)
        with self.engine.connect() as conn:
            return planner.plan(info.table, info.profiles, facts,
                                distinct=lambda col: self._distinct_values(conn, info, col))

    def _search_guarded(self, info, planner, facts, matcher):
        try:
            return self._search_table(info, planner, facts, matcher)
        except SQLAlchemyError as exc:
            if not self._still_reachable():
                return StoreUnreachable(self.name, f"connection to {self._safe_url()} lost ({_safe_reason(exc)})")
            return _TableFailed(f"cannot be read ({_safe_reason(exc)})")

    def _still_reachable(self) -> bool:
        try:
            with self.engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
            return True
        except SQLAlchemyError:
            return False

    def _search_table(self, info: TableInfo, planner: Planner, facts, matcher: SubjectMatcher
                      ) -> tuple[list[_Hit], dict]:
        hits: list[_Hit] = []
        seen: set = set()
        candidates = 0
        with self.engine.connect() as conn:
            ts = planner.plan(info.table, info.profiles, facts,
                              distinct=lambda col: self._distinct_values(conn, info, col))
            for q in ts.queries:
                result = conn.execution_options(stream_results=True, yield_per=IN_CHUNK).execute(
                    sa.select(info.table).where(q.where))
                for row in result.mappings():
                    row = dict(row)
                    rid = _row_identity(info, row)
                    if rid in seen:
                        continue
                    seen.add(rid)
                    candidates += 1
                    hit = self._confirm(info, row, matcher, facts)
                    if hit is not None:
                        hits.append(hit)
        how: dict[str, int] = {}
        for method in ts.methods.values():
            how[method] = how.get(method, 0) + 1
        return hits, {"how": how, "assumes": dict(ts.assumes), "skipped": dict(ts.skipped),
                      "candidates": candidates, "queries": len(ts.queries)}

    def _distinct_values(self, conn, info: TableInfo, column: str) -> list | None:
        """Every distinct value of an indexed column, read through its index (a loose index scan: one index
        probe per value), or None when there are more than MAX_DISTINCT."""
        t = info.table
        col = t.c[column]
        if self.dialect in ("mysql", "mariadb"):
            q = sa.select(col).distinct().where(col.is_not(None)).limit(MAX_DISTINCT + 1)
            values = list(conn.execute(q).scalars())
        else:
            name = _quote(self.engine, column)
            table = _quoted_table(self.engine, t)
            q = sa.text(
                f"WITH RECURSIVE d(v) AS (SELECT min({name}) FROM {table} UNION ALL "
                f"SELECT (SELECT min({name}) FROM {table} WHERE {name} > d.v) FROM d WHERE d.v IS NOT NULL) "
                f"SELECT v FROM d WHERE v IS NOT NULL LIMIT {MAX_DISTINCT + 1}")
            values = list(conn.execute(q).scalars())
        return None if len(values) > MAX_DISTINCT else values

    def _confirm(self, info: TableInfo, row: dict, matcher: SubjectMatcher, facts: dict | None = None
                 ) -> _Hit | None:
        """Python's exact check of a candidate row: identifier columns compared whole, every other text
        column (free text, codes, JSON, unclassified) searched inside."""
        facts = facts or {}
        ident: set[str] = set()
        text_ents: set[str] = set()
        text_cols: list[str] = []
        id_keys = set(matcher.id_keys)
        for col in info.table.columns:
            c = col.name
            value = row.get(c)
            if value is None:
                continue
            if c.casefold() in id_keys:
                if matcher.id_matches(c, jsonable(value)):
                    ident.add(ENTITY_ID)
                continue
            f = facts.get(c)
            tclass = f.type_class if f is not None else search.type_class(col, self.dialect)
            if tclass in (search.BINARY, search.NONTEXT):
                continue
            kind = info.profiles.get(c, ColumnProfile()).kind
            if tclass == search.JSON or not isinstance(value, str) and isinstance(value, (dict, list)):
                found = _text_entities(matcher, _json_texts(value))
                if found:
                    text_ents |= found
                    text_cols.append(c)
                continue
            text = value if isinstance(value, str) else str(jsonable(value))
            if kind == EMAIL:
                if matcher.email_matches(text):
                    ident.add(ENTITY_EMAIL)
            elif kind == PHONE:
                if matcher.phone_matches(text):
                    ident.add(ENTITY_PHONE)
            elif kind == NAME:
                if matcher.name_matches(text):
                    ident.add(ENTITY_PERSON)
            elif kind in (GIVEN_NAME, FAMILY_NAME):
                pass
            else:
                if kind != FREE_TEXT and matcher.email_matches(text):
                    ident.add(ENTITY_EMAIL)  # a code-like column holding exactly the address
                    continue
                found = _text_entities(matcher, _maybe_json_texts(text))
                if found:
                    text_ents |= found
                    text_cols.append(c)
        given, family = info.columns_of(GIVEN_NAME), info.columns_of(FAMILY_NAME)
        if given and family and row.get(given[0]) and row.get(family[0]):
            if matcher.name_matches(f"{row[given[0]]} {row[family[0]]}"):
                ident.add(ENTITY_PERSON)
        for c in given[1:] + family[1:] + (given[:1] if not family else []) + (family[:1] if not given else []):
            if row.get(c) and matcher.name_matches(str(row[c])):
                ident.add(ENTITY_PERSON)
        if ident:
            entities = ident | text_ents
            return _Hit(info, row, "identifier", entities, bool(entities - {ENTITY_PERSON}), text_cols)
        if text_ents:
            return _Hit(info, row, "text", text_ents, bool(text_ents - {ENTITY_PERSON}), text_cols)
        return None
    # ---- foreign keys
    def _follow_links(self, seeds: list[_Hit]) -> list[_Hit]:
        tables = self.tables()
        by_key = {self._table_key(i.table.schema, i.name): i for i in tables}
        personal = {t.casefold() for t in self.store.string_list("personal_tables")}
        reference = {t.casefold() for t in self.store.string_list("reference_tables")}
        excluded = {t.casefold() for t in self.store.string_list("link_exclude")}
        # edges: parent -> [(child, child_cols, parent_cols)] and, for personal tables, child -> parent
        children: dict[tuple, list] = {}
        parents: dict[tuple, list] = {}
        for child in tables:
            for fk in child.table.foreign_key_constraints:
                ref = fk.referred_table
                pkey = self._table_key(ref.schema, ref.name)
                if pkey not in by_key:
                    continue
                ccols = [c.name for c in fk.columns]
                pcols = [e.column.name for e in fk.elements]
                ckey = self._table_key(child.table.schema, child.name)
                if ckey == pkey:
                    continue  # a self-reference (referred_by, manager_id) points at another person
                if any(f"{child.container}.{c}".casefold() in excluded for c in ccols):
                    continue
                children.setdefault(pkey, []).append((ckey, ccols, pcols))
                parent = by_key[pkey]
                if parent.name.casefold() in personal or parent.container.casefold() in personal:
                    parents.setdefault(ckey, []).append((pkey, pcols, ccols))

        def row_id(info: TableInfo, row: dict) -> tuple:
            loc, _ = info.location(row)
            return (info.container, repr(sorted(loc["key"].items())))

        by_rid: dict[tuple, _Hit] = {}
        for h in seeds:
            rid = row_id(h.info, h.row)
            if rid in by_rid:
                by_rid[rid].strong = by_rid[rid].strong or h.strong
            else:
                by_rid[rid] = h
        # only rows that are the subject's (an identifier matched) spread linkage: a row that merely mentions
        # them in text belongs to someone else, and so do the rows that reference it
        frontier = [(h.info, h.row, h.strong) for h in seeds if h.match == "identifier"]
        linked: list[_Hit] = []
        for _depth in range(MAX_LINK_DEPTH):
            if not frontier:
                break
            grouped: dict[tuple, list[tuple[dict, bool]]] = {}
            for info, row, strong in frontier:
                if info.name.casefold() in reference or info.container.casefold() in reference:
                    continue  # shared reference rows never spread linkage
                grouped.setdefault(self._table_key(info.table.schema, info.name), []).append((row, strong))
            frontier = []
            for tkey, rows in grouped.items():
                for target_key, target_cols, source_cols in children.get(tkey, []) + parents.get(tkey, []):
                    target = by_key[target_key]
                    values: dict[tuple, bool] = {}
                    for row, strong in rows:
                        v = tuple(row[c] for c in source_cols)
                        if any(x is None for x in v):
                            continue
                        values[v] = values.get(v, False) or strong
                    for row, strong in self._rows_where(target, target_cols, values):
                        rid = row_id(target, row)
                        known = by_rid.get(rid)
                        if known is not None:
                            if known.strong or not strong:
                                continue  # visited already with at least this strength (cycle guard)
                            known.strong = True  # corroborated through a strong link: spread it again
                        else:
                            known = by_rid[rid] = _Hit(target, row, "linked", set(), strong)
                            linked.append(known)
                        frontier.append((target, row, strong))
        return linked

    def _rows_where(self, info: TableInfo, cols: list[str], values: dict[tuple, bool]) -> Iterator[tuple[dict, bool]]:
        """Rows of `info` whose `cols` equal one of `values` (batched IN lists), each with the strength
        of the value that reached it."""
        keys = list(values)
        t = info.table
        with self.engine.connect() as conn:
            for i in range(0, len(keys), IN_CHUNK):
                chunk = keys[i:i + IN_CHUNK]
                if len(cols) == 1:
                    cond = t.c[cols[0]].in_([k[0] for k in chunk])
                else:
                    cond = sa.or_(*[sa.and_(*[t.c[c] == v for c, v in zip(cols, k)]) for k in chunk])
                for row in conn.execute(sa.select(t).where(cond)).mappings():
                    row = dict(row)
                    yield row, values.get(tuple(row[c] for c in cols), False)

    # ------------------------------------------------------------------ selection (pii/core/selection.py)
    def select(self, flt: RecordFilter) -> list[Finding]:
        """Rows the filter selects, table by table: conditions pushed into the WHERE clause where the
        column's type allows it, then confirmed row by row in Python (the semantics are RecordFilter's).
        Rows without a readable date that pass every other condition are counted in `undated`."""
        self.check()
        self.skipped, self.undated = [], 0
        tables = [i for i in self.tables() if self._table_selected(i, flt.containers)]
        self.say(f"{len(tables)} tables match the selection")
        findings: list[Finding] = []
        self._seeds: list[_Hit] = []
        try:
            if flt.text_test is not None and tables:
                self.classify_tables(tables)
            for info in tables:
                reason = self._select_skip_reason(info, flt)
                if reason:
                    self.skipped.append((info.container, reason))
                    self.say(f"{info.container}: skipped ({reason})")
                    continue
                if flt.last_contact:
                    found, undated = self._select_last_contact(info, flt)
                else:
                    found, undated = self._select_table(info, flt)
                self.undated += undated
                self.say(f"{info.container}: {len(found)} rows selected"
                         + (f", {undated} without a readable date" if undated else ""))
                findings.extend(found)
            if flt.follow_links and self._seeds:
                linked = self._follow_links(self._seeds)
                reference = {t.casefold() for t in self.store.string_list("reference_tables")}
                for hit in linked:
                    if hit.info.name.casefold() in reference or hit.info.container.casefold() in reference:
                        continue
                    loc, note = hit.info.location(hit.row)
                    findings.append(Finding(store=self.name, location=loc, entities=[], match="linked",
                                            strength=STRONG, container=hit.info.container,
                                            record={k: jsonable(v) for k, v in hit.row.items()}, note=note))
                self.say(f"{len(linked)} rows linked to them through foreign keys")
        except SQLAlchemyError as exc:
            raise StoreError(self.name, "record selection", _safe_reason(exc)) from None
        return merge(findings)

    def _table_selected(self, info: TableInfo, patterns: Iterable[str]) -> bool:
        loc: dict = {"table": info.name}
        if info.schema:
            loc = {"schema": info.schema, **loc}
        probe = Finding(store=self.name, location=loc, container=info.container)
        return any(container_matches(p, probe) for p in patterns)

    @staticmethod
    def _select_skip_reason(info: TableInfo, flt: RecordFilter) -> str | None:
        if flt.mail_from or flt.message_ids:
            return "the filter names mail senders or message ids, and a table holds no mail"
        if flt.date_column == FILE_TIME:
            return "no file modification time: a table is not a file"
        if flt.date_column == MESSAGE_DATE:
            return "no message date: a table holds no mail"
        for col in flt.columns_needed():
            if _find_column(info.table, col) is None:
                return f"no column {col}"
        if flt.text_test is not None and not info.columns_of(FREE_TEXT):
            return "no free-text column"
        return None

    def _term_condition(self, col, term: str | None):
        """Lets through every value of `col` that contains `term` once lower-cased as Python does (any
        non-NULL value when there is no term). PostgreSQL's lower() changes ASCII letters only under a
        "C" collation, so there a term with other letters is left to Python."""
        if term is None or (self.dialect == "postgresql" and not term.isascii()):
            return col.is_not(None)
        lower = sa.func.lethe_lower(col) if self.dialect == "sqlite" else sa.func.lower(col)
        return lower.contains(term, autoescape=True)

    def _select_table(self, info: TableInfo, flt: RecordFilter) -> tuple[list[Finding], int]:
        t = info.table
        equals = [(_find_column(t, c), accepted) for c, accepted in flt.equals.items()]
        conds = [_equals_condition(col, accepted) for col, accepted in equals]
        text_cols = [t.c[c] for c in info.columns_of(FREE_TEXT)] if flt.text_test is not None else []
        if text_cols:
            conds.append(sa.or_(*[self._term_condition(c, term)
                                  for c in text_cols for term in (flt.text_terms or (None,))]))
        date_col = _find_column(t, flt.date_column) if flt.date_column else None
        date_conds = []
        if date_col is not None:
            date_conds.append(date_col.is_not(None))
            date_conds += _date_bounds(date_col, flt.before, flt.after)

        def passes_others(row: dict) -> list[str] | None:
            """Names of the free-text columns that pass the text test (or [] without one) when the row
            passes the equals and text conditions; None when it does not."""
            if not _equals_ok(row, equals):
                return None
            if flt.text_test is None:
                return []
            passing = [c.name for c in text_cols if flt.text_ok(row[c.name])]
            return passing or None

        findings: list[Finding] = []
        undated = 0
        with self.engine.connect() as conn:
            streaming = conn.execution_options(stream_results=True, yield_per=IN_CHUNK)
            for row in streaming.execute(sa.select(t).where(*conds, *date_conds)).mappings():
                row = dict(row)
                in_range = flt.date_ok(row[date_col.name]) if date_col is not None else True
                if in_range is False:
                    continue
                passing = passes_others(row)
                if passing is None:
                    continue
                if in_range is None:
                    undated += 1
                    continue
                findings.append(self._selected(info, row, flt, passing))
                if flt.follow_links and flt.text_test is None:
                    self._seeds.append(_Hit(info, row, "identifier", set(), True))
            if date_col is not None:  # rows without a date: counted when they pass every other condition
                needed = {c.name: c for c, _ in equals} | {c.name: c for c in text_cols}
                missing = date_col.is_(None)
                if not needed:
                    undated += conn.execute(sa.select(sa.func.count()).select_from(t)
                                            .where(*conds, missing)).scalar_one()
                else:
                    query = sa.select(*needed.values()).where(*conds, missing)
                    for row in streaming.execute(query).mappings():
                        if passes_others(dict(row)) is not None:
                            undated += 1
        return findings, undated

    # ---- retention by last contact (a per-person clock)
    def _contact_sources(self, info: TableInfo, flt: RecordFilter) -> tuple[list[sa.Column], list[tuple], str | None]:
        """The person table's own contact-date columns and, per linked table, (table, referencing columns,
        referenced columns, date column); or a reason the person table cannot be selected this way."""
        own: list[sa.Column] = []
        linked: list[tuple] = []
        by_name = {}
        for i in self.tables():
            by_name.setdefault(i.name.casefold(), i)
            by_name.setdefault(i.container.casefold(), i)
        for entry in flt.last_contact:
            table_name, _, column = entry.rpartition(".")
            if not table_name or table_name.casefold() in (info.name.casefold(), info.container.casefold()):
                col = _find_column(info.table, column)
                if col is None:
                    return own, linked, f"no contact-date column {column}"
                own.append(col)
                continue
            child = by_name.get(table_name.casefold())
            if child is None:
                return own, linked, f"no table {table_name} (named in last_contact)"
            col = _find_column(child.table, column)
            if col is None:
                return own, linked, f"no column {column} in {child.container} (named in last_contact)"
            fk = next((fk for fk in child.table.foreign_key_constraints
                       if fk.referred_table.name == info.name
                       and (fk.referred_table.schema or None) == (info.table.schema or None)), None)
            if fk is None:
                return own, linked, f"{child.container} has no foreign key to {info.container}"
            linked.append((child, [child.table.c[c.name] for c in fk.columns],
                           [e.column.name for e in fk.elements], col))
        return own, linked, None

    def _latest_linked(self, conn, child: TableInfo, fcols: list[sa.Column], date_col: sa.Column,
                       latest: dict[tuple, dt.date]) -> None:
        """Fold one linked table's contact dates into `latest` (referenced key -> latest date): one grouped
        query (MAX per key) on a DATE/DATETIME column; on a text column one pass reading each date in Python
        (text dates in mixed forms do not order as text)."""
        typed = isinstance(date_col.type, (sqltypes.Date, sqltypes.DateTime))
        if typed:
            query = (sa.select(*fcols, sa.func.max(date_col)).where(date_col.is_not(None))
                     .group_by(*fcols))
        else:
            query = sa.select(*fcols, date_col).where(date_col.is_not(None))
        streaming = conn.execution_options(stream_results=True, yield_per=IN_CHUNK)
        n = len(fcols)
        for row in streaming.execute(query):
            key = tuple(row[:n])
            if any(v is None for v in key):
                continue
            day = parse_date(row[n])
            if day is not None and (key not in latest or day > latest[key]):
                latest[key] = day

    def _select_last_contact(self, info: TableInfo, flt: RecordFilter) -> tuple[list[Finding], int]:
        """Person rows whose latest contact (own date columns, and the dates of rows referencing them) is
        before the filter's cutoff, who have no later contact elsewhere (`flt.recent`). Rows without any
        contact date are counted as undated (kept).

        Pushed down: each DATE/DATETIME-typed linked table is one grouped subquery (MAX per person) joined
        to the person table, and it and the typed own columns become WHERE conditions (NULL or before
        the cutoff), so the database returns only people without a later typed contact. A linked table
        whose dates are text is read in one pass (key, date) and its dates parsed here; every kept row is
        confirmed here from the values read (text dates compare unreliably in SQL)."""
        own, linked, reason = self._contact_sources(info, flt)
        if reason:
            self.skipped.append((info.container, reason))
            self.say(f"{info.container}: skipped ({reason})")
            return [], 0
        t = info.table
        equals = [(_find_column(t, c), accepted) for c, accepted in flt.equals.items()]
        recent = None
        if flt.recent and any(flt.recent.values()):
            # normalised already (pii.engine.lastcontact): no second validation of many identifiers
            recent = SubjectMatcher(Subject(emails=tuple(flt.recent.get("emails") or ()),
                                            phones=tuple(flt.recent.get("phones") or ()),
                                            region=self.config.default_region if self.config else "GB"))

        def typed(col) -> bool:
            return isinstance(col.type, (sqltypes.Date, sqltypes.DateTime))

        def not_later(expr, col):
            bound = dt.datetime.combine(flt.before, dt.time.min) if isinstance(col.type, sqltypes.DateTime) \
                else flt.before
            return sa.or_(expr.is_(None), expr < bound)

        conds = [_equals_condition(col, accepted) for col, accepted in equals]
        conds += [not_later(c, c) for c in own if typed(c)]
        source, extra = t, []
        text_linked = []
        for i, (child, fcols, pcols, date_col) in enumerate(linked):
            if not typed(date_col):
                text_linked.append((child, fcols, pcols, date_col))
                continue
            sub = (sa.select(*[c.label(f"k{j}") for j, c in enumerate(fcols)], sa.func.max(date_col).label("m"))
                   .where(date_col.is_not(None)).group_by(*fcols).subquery(f"lethe_lc{i}"))
            source = source.outerjoin(sub, sa.and_(*[sub.c[f"k{j}"] == t.c[p] for j, p in enumerate(pcols)]))
            extra.append(sub.c.m.label(f"lethe_lc{i}"))
            conds.append(not_later(sub.c.m, date_col))
        per_key: dict[tuple[str, ...], dict[tuple, dt.date]] = {}
        findings: list[Finding] = []
        undated = elsewhere = 0
        extra_names = [e.name for e in extra]
        with self.engine.connect() as conn:
            for child, fcols, pcols, date_col in text_linked:
                self._latest_linked(conn, child, fcols, date_col, per_key.setdefault(tuple(pcols), {}))
            self.say(f"{info.container}: latest contact from {len(linked)} linked table(s) "
                     f"({len(linked) - len(text_linked)} in the database, {len(text_linked)} with text dates here)")
            streaming = conn.execution_options(stream_results=True, yield_per=IN_CHUNK)
            query = sa.select(t, *extra).select_from(source).where(*conds)
            for row in streaming.execute(query).mappings():
                row = dict(row)
                days = [d for d in (parse_date(row.pop(n)) for n in extra_names) if d is not None]
                if not _equals_ok(row, equals):
                    continue
                days += [d for d in (parse_date(row[c.name]) for c in own) if d is not None]
                for pcols, latest in per_key.items():
                    d = latest.get(tuple(row[c] for c in pcols))
                    if d is not None:
                        days.append(d)
                if not days:
                    undated += 1
                    continue
                if not max(days) < flt.before:
                    continue
                if recent is not None and _matches_any(recent, row):
                    elsewhere += 1
                    continue
                findings.append(self._selected(info, row, flt, []))
                if flt.follow_links:
                    self._seeds.append(_Hit(info, row, "identifier", set(), True))
        if elsewhere:
            self.say(f"{info.container}: {elsewhere} people kept for a later contact in another store")
        return findings, undated

    def _selected(self, info: TableInfo, row: dict, flt: RecordFilter, text_columns: list[str]) -> Finding:
        loc, note = info.location(row)
        if flt.text_test is not None:  # as locate records a text match: the free text that passed
            record = {c: jsonable(row[c]) for c in text_columns}
            match = "text"
        else:
            record = {k: jsonable(v) for k, v in row.items()}
            match = "identifier"
        return Finding(store=self.name, location=loc, entities=[flt.entity] if flt.entity else [], match=match,
                       strength=STRONG, container=info.container, record=record, note=note)

    # ------------------------------------------------------------------ erasure
    def apply(self, actions: list[ExecAction], done: Done, matcher: SubjectMatcher) -> None:
        """Carry out deletes and updates in ONE transaction for the store (statements batched per table,
        children before parents), so a crash leaves either none or all of them; `done` is called after
        the commit.

        A row to delete that other rows still reference (other people's rows, or rows retained under an
        exemption) is not deleted, which would leave them dangling or change them: it is anonymised in
        place instead (every column but its keys cleared), and `done` says so."""
        self.check()
        self.classify_tables()
        by_container: dict[str, list[ExecAction]] = {}
        for a in actions:
            by_container.setdefault(a.container, []).append(a)
        infos = {i.container: i for i in self.tables()}
        unknown = [c for c in by_container if c not in infos]
        if unknown:
            raise StoreError(self.name, f"table {unknown[0]}", "not found in the database (renamed or dropped?)")
        order = [i for i in reversed(self.tables()) if i.container in by_container]  # children first
        results: list[tuple[list[str], int, str | None]] = []
        try:
            with self.engine.begin() as conn:
                for info in order:
                    todo = by_container[info.container]
                    updates = [a for a in todo if a.kind == UPDATE]
                    deletes = [a for a in todo if a.kind == DELETE]
                    if updates:
                        results.append(self._apply_updates(conn, info, updates))
                    if deletes:
                        results.extend(self._apply_deletes(conn, info, deletes))
                    self.say(f"{info.container}: {len(deletes)} delete and {len(updates)} update actions")
        except SQLAlchemyError as exc:
            raise StoreError(self.name, "erasure", _safe_reason(exc)) from None
        for ids, rows, detail in results:
            if ids:
                done(ids, rows, detail)

    def _where_location(self, info: TableInfo, location: dict):
        t = info.table
        key = location.get("key") or {}
        missing = [c for c in key if c not in t.c]
        if missing or not key:
            raise StoreError(self.name, f"table {info.container}", "a planned location names unknown key columns")
        conds = []
        for col, value in key.items():
            column = t.c[col]
            conds.append(column.is_(None) if value is None else column == _db_value(column, value))
        return sa.and_(*conds)

    def _apply_updates(self, conn, info: TableInfo, batch: list[ExecAction]) -> tuple[list[str], int, None]:
        t = info.table
        total = 0
        for a in batch:
            bad = [c for c in a.updates if c not in t.c]
            if bad:
                raise StoreError(self.name, f"table {info.container}", f"no column {bad[0]!r} to update")
            total += conn.execute(sa.update(t).where(self._where_location(info, a.location))
                                  .values(**a.updates)).rowcount or 0
        return [a.action_id for a in batch], total, None

    def _apply_deletes(self, conn, info: TableInfo, batch: list[ExecAction]) -> list[tuple[list[str], int, str | None]]:
        if len(info.pk) != 1:
            return self._apply_deletes_row_by_row(conn, info, batch)
        # single-column key: set-based, IN_CHUNK keys per statement
        t, pkcol = info.table, info.table.c[info.pk[0]]
        deleted_ids, anonymised_ids = [], []
        rows_deleted = rows_anonymised = 0
        for i in range(0, len(batch), IN_CHUNK):
            chunk = batch[i:i + IN_CHUNK]
            key_of = {a.action_id: _db_value(pkcol, (a.location.get("key") or {}).get(pkcol.name)) for a in chunk}
            if any(k is None for k in key_of.values()):
                raise StoreError(self.name, f"table {info.container}", "a planned location names unknown key columns")
            rows = {r[pkcol.name]: r for r in conn.execute(sa.select(t).where(pkcol.in_(list(key_of.values()))))
                    .mappings()}
            referenced = self._referenced_keys(conn, info, list(rows.values()))
            strip = [aid for aid, k in key_of.items() if k in rows and k in referenced]
            drop = [k for aid, k in key_of.items() if k in rows and k not in referenced]
            for aid in strip:
                conn.execute(sa.update(t).where(pkcol == key_of[aid]).values(**self._clearing_values(info, aid)))
            rows_anonymised += len(strip)
            if drop:
                rows_deleted += conn.execute(sa.delete(t).where(pkcol.in_(drop))).rowcount or 0
            anonymised_ids += strip
            deleted_ids += [aid for aid in key_of if aid not in set(strip)]  # gone already counts as done
        return [(deleted_ids, rows_deleted, None),
                (anonymised_ids, rows_anonymised, _STRIPPED)]

    def _referenced_keys(self, conn, info: TableInfo, rows: list) -> set:
        """Primary keys of `rows` that rows of other tables (or other rows of this one) still reference."""
        if not rows:
            return set()
        pk = info.pk[0]
        out: set = set()
        for child, ccols, pcols in self._referencing(info):
            if len(ccols) != 1:  # composite references: ask row by row
                out |= {r[pk] for r in rows if self._still_referenced(conn, info, r, info.table.c[pk] == r[pk])}
                continue
            ccol, pcol = child.table.c[ccols[0]], pcols[0]
            by_value: dict = {}
            for r in rows:
                if r[pcol] is not None:
                    by_value.setdefault(r[pcol], []).append(r[pk])
            if not by_value:
                continue
            q = sa.select(ccol).distinct().where(ccol.in_(list(by_value)))
            if child is info:  # a row referencing itself, or another row being deleted with it, does not count
                q = q.where(sa.not_(child.table.c[pk].in_([r[pk] for r in rows])))
            for value in conn.execute(q).scalars():
                out.update(by_value.get(value, ()))
        return out

    def _apply_deletes_row_by_row(self, conn, info: TableInfo, batch: list[ExecAction]) -> list[tuple[list[str], int, str | None]]:
        t = info.table
        deleted_ids, anonymised_ids = [], []
        rows_deleted = rows_anonymised = 0
        for a in batch:
            where = self._where_location(info, a.location)
            row = conn.execute(sa.select(t).where(where)).mappings().first()
            if row is None:  # already gone: nothing to do (idempotent re-run)
                deleted_ids.append(a.action_id)
                continue
            if self._still_referenced(conn, info, row, where):
                conn.execute(sa.update(t).where(where).values(**self._clearing_values(info, a.action_id)))
                anonymised_ids.append(a.action_id)
                rows_anonymised += 1
            else:
                rows_deleted += conn.execute(sa.delete(t).where(where)).rowcount or 0
                deleted_ids.append(a.action_id)
        return [(deleted_ids, rows_deleted, None), (anonymised_ids, rows_anonymised, _STRIPPED)]

    def _still_referenced(self, conn, info: TableInfo, row, where) -> bool:
        for child, ccols, pcols in self._referencing(info):
            values = [row[c] for c in pcols]
            if any(v is None for v in values):
                continue
            cond = sa.and_(*[child.table.c[cc] == v for cc, v in zip(ccols, values)])
            if child is info:  # the row referencing itself does not count
                cond = sa.and_(cond, sa.not_(where))
            if conn.execute(sa.select(sa.literal(1)).select_from(child.table).where(cond).limit(1)).first():
                return True
        return False

    def _referencing(self, info: TableInfo) -> list[tuple[TableInfo, list[str], list[str]]]:
        """Every (table, its columns, the columns of `info` they reference), self-references included."""
        out = []
        for child in self.tables():
            for fk in child.table.foreign_key_constraints:
                ref = fk.referred_table
                if self._table_key(ref.schema, ref.name) == self._table_key(info.table.schema, info.name):
                    out.append((child, [c.name for c in fk.columns], [e.column.name for e in fk.elements]))
        return out

    def _clearing_values(self, info: TableInfo, action_id: str) -> dict:
        """Values that strip a row to its keys: every column that is neither primary nor foreign key becomes
        NULL, or a neutral marker when it is a NOT NULL text column (other NOT NULL columns are kept)."""
        keep = set(info.pk) | {c.name for fk in info.table.foreign_key_constraints for c in fk.columns}
        values = {}
        for col in info.table.columns:
            if col.name in keep:
                continue
            if col.nullable:
                values[col.name] = None
            elif _column_type(col) == cls.STRING:
                values[col.name] = f"erased-{action_id[-10:]}"
        return values

    # ------------------------------------------------------------------ export helpers
    def table_infos(self) -> list[TableInfo]:
        self.classify_tables()
        return self.tables()


DEFAULT_DRIVERS = {"postgresql": "psycopg", "postgres": "psycopg", "mysql": "pymysql", "mariadb": "pymysql"}


def with_default_driver(url: str) -> str:
    """`postgresql://` and `mysql://`/`mariadb://` URLs use the drivers Lethe installs (psycopg 3, PyMySQL)
    rather than SQLAlchemy's defaults (psycopg2, mysqlclient)."""
    scheme, sep, rest = url.partition("://")
    if sep and scheme.lower() in DEFAULT_DRIVERS:
        base = "postgresql" if scheme.lower() == "postgres" else scheme.lower()
        return f"{base}+{DEFAULT_DRIVERS[scheme.lower()]}://{rest}"
    return url


def _sqlite_lower(value):
    """Python's lower() (SQLite's own lower() folds ASCII letters only): the LIKE prefilter of a text
    selection must let through every value `RecordFilter.text_ok` accepts."""
    return None if value is None else str(value).lower()


def _register_sqlite_functions(dbapi_conn, _record) -> None:
    dbapi_conn.create_function("lethe_fold", 1, _sqlite_fold, deterministic=True)
    dbapi_conn.create_function("lethe_lower", 1, _sqlite_lower, deterministic=True)


def _db_value(column: sa.Column, value):
    """A locator value (JSON form, see `jsonable`) back in the column's Python type."""
    if isinstance(value, str):
        if value.startswith("base64:") and isinstance(column.type, sqltypes.LargeBinary):
            return base64.b64decode(value[7:])
        if isinstance(column.type, sqltypes.DateTime):
            return dt.datetime.fromisoformat(value)
        if isinstance(column.type, sqltypes.Date):
            return dt.date.fromisoformat(value)
        if isinstance(column.type, sqltypes.Numeric) and not isinstance(column.type, sqltypes.Integer):
            return decimal.Decimal(value)
    return value


def _find_column(table: sa.Table, name: str) -> sa.Column | None:
    """The column named `name`, exactly or else case-insensitively (as RecordFilter looks up names)."""
    if name in table.c:
        return table.c[name]
    folded = name.casefold()
    return next((c for c in table.columns if c.name.casefold() == folded), None)


def _from_text(column: sa.Column, text: str):
    """An `equals` value (text) in the column's Python type, for an `IN` the database can use; None when
    no value of the column has that text."""
    t = column.type
    try:
        if isinstance(t, sqltypes.Boolean):
            return {"True": True, "False": False}.get(text)
        if isinstance(t, sqltypes.Integer):
            return int(text) if re.fullmatch(r"[+-]?\d+", text) else None
        if isinstance(t, (sqltypes.Numeric, sqltypes.Float)):
            value = decimal.Decimal(text)
            return value if value.is_finite() else None
        if isinstance(t, sqltypes.DateTime):
            return dt.datetime.fromisoformat(text)
        if isinstance(t, sqltypes.Date):
            return dt.date.fromisoformat(text)
    except (ValueError, ArithmeticError):
        return None
    return None


_CONVERTED = (sqltypes.Boolean, sqltypes.Integer, sqltypes.Numeric, sqltypes.Float, sqltypes.DateTime, sqltypes.Date)


def _equals_condition(column: sa.Column, accepted: tuple[str, ...]):
    """A WHERE condition letting through every row whose value, as text with spaces stripped, is one of
    `accepted` (possibly more: MariaDB compares case-insensitively; Python confirms with `_equals_ok`)."""
    if _column_type(column) == cls.STRING:
        expr = sa.cast(column, sa.String) if isinstance(column.type, sqltypes.Enum) else column
        return sa.func.trim(expr).in_(list(accepted))
    if isinstance(column.type, _CONVERTED):
        values = [v for v in (_from_text(column, a) for a in accepted) if v is not None]
        return column.in_(values) if values else sa.false()
    return sa.func.trim(sa.cast(column, sa.String)).in_(list(accepted))


def _equals_ok(row: dict, equals: list[tuple[sa.Column, tuple[str, ...]]]) -> bool:
    """RecordFilter's `equals` on a fetched row: the value as text (as read, or as its JSON form, so that
    7 and Decimal("7.00") both read "7") with surrounding spaces stripped, exactly."""
    for column, accepted in equals:
        value = row[column.name]
        if value is None:
            return False
        if str(value).strip() not in accepted and str(jsonable(value)).strip() not in accepted:
            return False
    return True


def _date_bounds(column: sa.Column, before: dt.date | None, after: dt.date | None) -> list:
    """WHERE conditions for the date bounds on a DATE/DATETIME/TIMESTAMP column; [] for other types
    (their values are parsed in Python). A timestamp's date is strictly before `before` when it is
    earlier than that day's midnight, strictly after `after` from the next day's midnight on."""
    if isinstance(column.type, sqltypes.DateTime):
        conds = []
        if before is not None:
            conds.append(column < dt.datetime.combine(before, dt.time.min))
        if after is not None:
            conds.append(column >= dt.datetime.combine(after + dt.timedelta(days=1), dt.time.min))
        return conds
    if isinstance(column.type, sqltypes.Date):
        conds = []
        if before is not None:
            conds.append(column < before)
        if after is not None:
            conds.append(column > after)
        return conds
    return []


def _matches_any(matcher: SubjectMatcher, row: dict) -> bool:
    """Whether one of the row's values is an e-mail address or phone number `matcher` knows."""
    for value in row.values():
        if not isinstance(value, str) or not value.strip():
            continue
        if "@" in value:
            if matcher.email_matches(value):
                return True
        elif sum(ch.isdigit() for ch in value) >= 6 and matcher.phone_matches(value):
            return True
    return False


def _column_type(col: sa.Column) -> str:
    t = col.type
    if isinstance(t, (sqltypes.String, sqltypes.Enum)):
        return cls.STRING
    if isinstance(t, (sqltypes.Integer, sqltypes.Numeric)) and not isinstance(t, sqltypes.Boolean):
        return cls.NUMBER
    if isinstance(t, sqltypes.NullType):  # SQLite columns without a declared type
        return cls.STRING
    return cls.OTHER_TYPE


class _TableFailed:
    """A table the search could not read (its reason names no value)."""

    def __init__(self, reason: str):
        self.reason = reason


def _row_identity(info: TableInfo, row: dict):
    if info.pk:
        return tuple(repr(row[c]) for c in info.pk)
    return repr(sorted((k, repr(v)) for k, v in row.items()))


def _how_text(how: dict[str, int]) -> str:
    return ", ".join(f"{n} {m}" for m, n in sorted(how.items())) or "nothing to compare"


def _safe_reason(exc: Exception) -> str:
    """An error named by class and code only: a driver's message can echo row values (a trigger's text,
    a duplicate key), so it is never shown."""
    orig = getattr(exc, "orig", None)
    code = None
    if orig is not None:
        code = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
        if code is None and getattr(orig, "args", None) and isinstance(orig.args[0], int):
            code = orig.args[0]  # PyMySQL: (errno, message)
        if code is None and getattr(orig, "sqlite_errorname", None):
            code = orig.sqlite_errorname
    name = (orig or exc).__class__.__name__
    out = f"{name} {code}" if code is not None else name
    diag = getattr(orig, "diag", None)  # PostgreSQL names the table and constraint apart from its message
    where = [f"{label} {getattr(diag, attr)}" for attr, label in (("table_name", "table"),
                                                                  ("constraint_name", "constraint"))
             if diag is not None and getattr(diag, attr, None)]
    return f"{out} ({', '.join(where)})" if where else out


def _quote(engine: Engine, name: str) -> str:
    return engine.dialect.identifier_preparer.quote(name)


def _quoted_table(engine: Engine, table: sa.Table) -> str:
    return engine.dialect.identifier_preparer.format_table(table)


def _json_texts(value) -> list[str]:
    """Every scalar inside a JSON value (parsed or as text), as text."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return [value]
    out: list[str] = []
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, dict):
            stack.extend(v.values())
            out.extend(str(k) for k in v if isinstance(k, str) and ("@" in k or any(ch.isdigit() for ch in k)))
        elif isinstance(v, (list, tuple)):
            stack.extend(v)
        elif v is not None and not isinstance(v, bool):
            out.append(str(v))
    return out


def _maybe_json_texts(text: str) -> list[str]:
    """A text value, and when it holds a JSON document, also its scalars (escapes such as \\u00e9 decoded)."""
    stripped = text.lstrip()
    if stripped[:1] in ("{", "[") and "\\" in text:
        try:
            return [text] + _json_texts(json.loads(text))
        except ValueError:
            pass
    return [text]


def _text_entities(matcher: SubjectMatcher, texts: list[str]) -> set[str]:
    found: set[str] = set()
    for t in texts:
        if not t:
            continue
        spans = matcher.find_in_text(t)
        if spans:
            found.update(entities_of(spans))
        elif matcher.email_matches(t):
            found.add(ENTITY_EMAIL)
        elif matcher.phone_matches(t):
            found.add(ENTITY_PHONE)
    return found
