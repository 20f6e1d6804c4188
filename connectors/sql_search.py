"""The subject search planner for SQL stores: per table and column, the cheapest correct predicate.

Every column that can hold text is searched (char, varchar, text, clob, enum, json/jsonb, arrays, columns of
unknown or undeclared type); binary columns are listed as not searched. What a column is searched *for*
follows its kind (from the column inventory: names and samples decide the kind, never whether it is searched):

- email / phone / name / given+family name columns, and columns named as an ``--id`` key: compared whole
  with the subject's identifier of that kind (normalised equality);
- every other text column (free text, codes, JSON, unclassified): searched inside for every identifier
  (emails, phones, name words, ids of five or more characters).

For each (column, what) the planner picks, from the indexes the database has (reflected: plain and
expression b-trees such as ``lower(email)``, citext, pg_trgm GIN/GiST, MariaDB FULLTEXT and case-insensitive
collations, SQLite NOCASE) and what the schema declares (CHECK ... IN lists and enum types, declared
lengths), one method:

=====================  ==============================================================================
``domain``             the declared values (CHECK/enum) are tested in Python; no query unless one matches
``length``             the declared length is shorter than any identifier it could hold: nothing to read
``index:<how>``        an index serves the comparison (``index:lower(email)``, ``index:trigram``,
                       ``index:fulltext``, ``index:ci``, ``index:distinct`` (the distinct values of an
                       indexed low-cardinality column read through the index and tested in Python))
``scan``               one sequential pass over the table for all its scan columns together, with native
                       predicates only (LIKE/ILIKE, lower, trim, instr, GLOB; never a Python function)
=====================  ==============================================================================

Index methods that compare the column's *own* written form rely on what the sample showed (``trimmed``,
``lower``, ``phone_standard``; pii.core.classify.column_forms) or on how people write phones in text (the last
three digits together); they are marked with ``assumes`` in the coverage report, and ``search: {strict:
true}`` on the store turns them off (scans instead). Every candidate the database returns is confirmed in
Python by the subject matcher, so predicates only need to be supersets.
"""
from __future__ import annotations

import re
import string
import unicodedata
from dataclasses import dataclass, field
from typing import Iterable, Iterator

import sqlalchemy as sa
from sqlalchemy.sql import sqltypes

from pii.core import classify as cls
from pii.core.inventory import EMAIL, FAMILY_NAME, FREE_TEXT, GIVEN_NAME, NAME, PHONE, ColumnProfile
from pii.core.subject import SubjectMatcher, fold

TEXT, JSON, BINARY, NONTEXT = "text", "json", "binary", "nontext"
MAX_DISTINCT = 2000          # an indexed column with more distinct values than this is not enumerated
FT_MIN_TOKEN = 3             # InnoDB's innodb_ft_min_token_size default
ESC = "!"                    # LIKE escape character (no backslash games across dialects)
INNODB_STOPWORDS = frozenset(
    "a about an are as at be by com de en for from how i in is it la of on or that the this to was what "
    "when where who will with und www".split())
_IDENT = re.compile(r'^"?([A-Za-z_][A-Za-z0-9_$]*|[^"]+)"?$')


# =========================================================================== facts about columns
@dataclass(frozen=True)
class IndexFacts:
    """One index usable for one column (as the index's first key)."""

    name: str
    method: str          # btree | hash | gin | gist | fulltext
    form: str            # plain | lower | lower_trim | text (cast to text) | lower_text
    trigram: bool = False
    nocase: bool = False  # SQLite: the index compares with COLLATE NOCASE


@dataclass
class ColumnFacts:
    name: str
    type_class: str = TEXT
    length: int | None = None          # declared maximum length, where the database enforces it
    ci: bool = False                   # compares case-insensitively (MariaDB *_ci, citext)
    accent_insensitive: bool = False   # MariaDB *_general_ci / *_unicode_ci
    cast: bool = False                 # compare through CAST(col AS TEXT) (json, arrays, unknown types)
    domain: tuple[str, ...] | None = None  # every value the column may hold (CHECK ... IN, enum)
    indexes: list[IndexFacts] = field(default_factory=list)
    normalised_json: bool = False      # PostgreSQL jsonb: its text form holds no \u escapes (decoded on input)

    def index(self, *, form: str | None = None, trigram: bool | None = None, method: str | None = None,
              nocase: bool | None = None) -> IndexFacts | None:
        for ix in self.indexes:
            if form is not None and ix.form != form:
                continue
            if trigram is not None and ix.trigram != trigram:
                continue
            if method is not None and ix.method != method:
                continue
            if nocase is not None and ix.nocase != nocase:
                continue
            return ix
        return None


def type_class(column: sa.Column, dialect: str) -> str:
    t = column.type
    if isinstance(t, sqltypes.JSON):
        return JSON
    if isinstance(t, (sqltypes._Binary,)) and not isinstance(t, sqltypes.String):
        return BINARY
    if isinstance(t, (sqltypes.String, sqltypes.Enum)):
        return TEXT
    if isinstance(t, sqltypes.ARRAY):
        return TEXT
    if isinstance(t, sqltypes.NullType):
        return TEXT  # SQLite columns without a type; PostgreSQL types SQLAlchemy does not know (citext...)
    return NONTEXT


def _unquote(name: str) -> str:
    name = name.strip()
    if len(name) >= 2 and name[0] == name[-1] and name[0] in '"`[':
        return name[1:-1].replace('""', '"')
    if name.startswith("[") and name.endswith("]"):
        return name[1:-1]
    return name


def _strip_casts(expr: str) -> str:
    out = re.sub(r"::[a-z ]+(\[\])?(\(\d+\))?", "", expr, flags=re.I)
    return out.strip()


def _strip_parens(expr: str) -> str:
    expr = expr.strip()
    while expr.startswith("(") and expr.endswith(")") and _balanced(expr[1:-1]):
        expr = expr[1:-1].strip()
    return expr


def _unquoted(text: str, quotes: str) -> Iterator[tuple[int, str, int]]:
    """(position, character, parenthesis depth after it) for each character outside quotes."""
    depth, quote = 0, None
    for i, ch in enumerate(text):
        if quote:
            if ch == quote:
                quote = None
            continue
        if ch in quotes:
            quote = ch
            continue
        depth += (ch == "(") - (ch == ")")
        yield i, ch, depth


def _balanced(text: str) -> bool:
    depth = 0
    for _i, _ch, depth in _unquoted(text, "'\"`"):
        if depth < 0:
            return False
    return depth == 0


def parse_index_expression(expr: str, columns: Iterable[str]) -> tuple[str, str] | None:
    """(column, form) an index expression compares, for the forms the planner can use:
    ``lower(col)``, ``lower(trim(col))``, ``col::text`` and ``lower(col::text)``; None otherwise.
    Accepts PostgreSQL's and SQLite's spellings (casts, TRIM(BOTH FROM x), quoted names)."""
    names = {c.casefold(): c for c in columns}
    e = _strip_parens(_strip_casts(expr))
    cast = bool(re.search(r"::\s*text\b|cast\s*\(.+\s+as\s+text\s*\)", expr, re.I))
    m = re.fullmatch(r"lower\s*\((.*)\)", e, re.I | re.S)
    if m:
        inner = _strip_parens(m.group(1))
        t = re.fullmatch(r"(?:trim|btrim)\s*\(\s*(?:both\s+from\s+)?(.*)\)", inner, re.I | re.S)
        if t:
            col = names.get(_unquote(_strip_parens(t.group(1))).casefold())
            return (col, "lower_trim") if col else None
        col = names.get(_unquote(inner).casefold())
        if col:
            return col, ("lower_text" if cast else "lower")
        return None
    c = re.fullmatch(r"cast\s*\((.*)\s+as\s+text\s*\)", e, re.I | re.S)
    inner = _strip_parens(c.group(1)) if c else e
    col = names.get(_unquote(inner).casefold())
    if col and (cast or c):
        return col, "text"
    return None


_QUOTED = re.compile(r"'((?:[^']|'')*)'")


def parse_check_domain(clause: str, columns: Iterable[str]) -> tuple[str, tuple[str, ...]] | None:
    """(column, values) when a CHECK clause says exactly ``col IN ('a', 'b', ...)`` (PostgreSQL writes it
    ``(col)::text = ANY ((ARRAY['a'::character varying, ...])::text[])``); None for anything else."""
    names = {c.casefold(): c for c in columns}
    text = _strip_parens(clause.strip())
    m = re.fullmatch(r"(.+?)\s+in\s*\((.*)\)", text, re.I | re.S)
    if not m:
        m = re.fullmatch(r"(.+?)\s*=\s*any\s*\((.*)\)", text, re.I | re.S)
    if not m:
        return None
    col = names.get(_unquote(_strip_parens(_strip_casts(m.group(1)))).casefold())
    if not col:
        return None
    body = m.group(2)
    values = tuple(v.replace("''", "'") for v in _QUOTED.findall(body))
    rest = _QUOTED.sub("", body)
    rest = re.sub(r"::[a-z ]+(\[\])?(\(\d+\))?|array|[\[\]\(\),\s]", "", rest, flags=re.I)
    if not values or rest:
        return None  # something else than a plain list of string literals
    return col, values


# =========================================================================== reflection per dialect
def reflect_facts(conn, dialect: str, tables: list) -> dict[str, dict[str, ColumnFacts]]:
    """container -> column -> ColumnFacts for `tables` (connectors.sql.TableInfo), from the catalogs."""
    out: dict[str, dict[str, ColumnFacts]] = {}
    for info in tables:
        facts = {}
        for c in info.table.columns:
            tc = type_class(c, dialect)
            f = ColumnFacts(c.name, tc)
            if tc == JSON or isinstance(c.type, sqltypes.ARRAY):
                f.cast = True
            if isinstance(c.type, sqltypes.NullType) and dialect != "sqlite":
                f.cast = True
            if isinstance(c.type, sqltypes.Enum) and c.type.enums:
                f.domain = tuple(c.type.enums)
            length = getattr(c.type, "length", None)
            if dialect != "sqlite" and isinstance(length, int) and isinstance(c.type, sqltypes.String):
                f.length = length
            facts[c.name] = f
        out[info.container] = facts
    if dialect == "postgresql":
        _reflect_postgresql(conn, tables, out)
    elif dialect in ("mysql", "mariadb"):
        _reflect_mysql(conn, tables, out)
    elif dialect == "sqlite":
        _reflect_sqlite(conn, tables, out)
    for info in tables:  # CHECK constraints through SQLAlchemy's inspector where the catalogs were not read
        if dialect == "sqlite":
            try:
                checks = sa.inspect(conn).get_check_constraints(info.name, schema=info.table.schema)
            except (NotImplementedError, sa.exc.SQLAlchemyError):
                checks = []
            for ck in checks:
                _apply_domain(out[info.container], ck.get("sqltext") or "")
    return out


def _apply_domain(facts: dict[str, ColumnFacts], clause: str) -> None:
    parsed = parse_check_domain(clause, facts)
    if parsed:
        col, values = parsed
        f = facts[col]
        f.domain = values if f.domain is None else tuple(v for v in f.domain if v in values)


def _reflect_postgresql(conn, tables, out) -> None:
    by_oid_name = {}
    for info in tables:
        schema = info.table.schema or "public"
        by_oid_name[(schema, info.name)] = info.container
    schemas = sorted({k[0] for k in by_oid_name})
    rows = conn.execute(sa.text("""
        SELECT n.nspname AS schema, t.relname AS tbl, a.attname AS col, format_type(a.atttypid, a.atttypmod) AS type,
               coalesce(co.collname, '') AS collation
        FROM pg_attribute a JOIN pg_class t ON t.oid = a.attrelid JOIN pg_namespace n ON n.oid = t.relnamespace
        LEFT JOIN pg_collation co ON co.oid = a.attcollation AND a.attcollation <> 0
        WHERE n.nspname = ANY(:schemas) AND a.attnum > 0 AND NOT a.attisdropped
    """), {"schemas": schemas}).mappings()
    for r in rows:
        container = by_oid_name.get((r["schema"], r["tbl"]))
        f = out.get(container, {}).get(r["col"]) if container else None
        if f is None:
            continue
        typ = (r["type"] or "").lower()
        if typ.startswith("citext"):
            f.type_class, f.ci, f.cast = TEXT, True, False
        elif typ in ("bytea",):
            f.type_class = BINARY
        elif typ in ("json", "jsonb"):
            f.type_class, f.cast, f.normalised_json = JSON, True, typ == "jsonb"
        elif typ in ("tsvector", "xml", "hstore") or typ.endswith("[]"):
            f.type_class, f.cast = TEXT, True
    rows = conn.execute(sa.text("""
        SELECT n.nspname AS schema, t.relname AS tbl, ic.relname AS idx, am.amname AS method,
               i.indkey[0] AS key0, pg_get_expr(i.indexprs, i.indrelid) AS exprs, i.indpred IS NOT NULL AS partial,
               (SELECT opc.opcname FROM pg_opclass opc WHERE opc.oid = i.indclass[0]) AS opclass,
               (SELECT a.attname FROM pg_attribute a WHERE a.attrelid = t.oid AND a.attnum = i.indkey[0]) AS col
        FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid JOIN pg_class t ON t.oid = i.indrelid
        JOIN pg_namespace n ON n.oid = t.relnamespace JOIN pg_am am ON am.oid = ic.relam
        WHERE n.nspname = ANY(:schemas) AND i.indisvalid AND i.indisready
    """), {"schemas": schemas}).mappings()
    for r in rows:
        container = by_oid_name.get((r["schema"], r["tbl"]))
        facts = out.get(container) if container else None
        if facts is None or r["partial"]:
            continue  # a partial index only serves rows its predicate admits
        trigram = (r["opclass"] or "") in ("gin_trgm_ops", "gist_trgm_ops")
        if r["col"]:
            col, form = r["col"], "plain"
        elif r["exprs"]:
            first = _first_expression(r["exprs"])
            parsed = parse_index_expression(first, facts)
            if not parsed:
                continue
            col, form = parsed
        else:
            continue
        if col in facts:
            if facts[col].type_class == TEXT and not facts[col].cast:
                # PostgreSQL spells lower(varchar_col) as lower((col)::text): for a text column that IS lower(col)
                form = {"lower_text": "lower", "text": "plain"}.get(form, form)
            facts[col].indexes.append(IndexFacts(r["idx"], r["method"], form, trigram))
    rows = conn.execute(sa.text("""
        SELECT n.nspname AS schema, t.relname AS tbl, pg_get_constraintdef(c.oid) AS def
        FROM pg_constraint c JOIN pg_class t ON t.oid = c.conrelid JOIN pg_namespace n ON n.oid = t.relnamespace
        WHERE c.contype = 'c' AND n.nspname = ANY(:schemas)
    """), {"schemas": schemas}).mappings()
    for r in rows:
        container = by_oid_name.get((r["schema"], r["tbl"]))
        if container in out:
            m = re.fullmatch(r"CHECK\s*\((.*)\)(\s+NOT VALID)?", r["def"].strip(), re.S)
            if m and not m.group(2):
                _apply_domain(out[container], m.group(1))


def _first_expression(exprs: str) -> str:
    for i, ch, depth in _unquoted(exprs, "'\""):
        if ch == "," and depth == 0:
            return exprs[:i]
    return exprs


def _reflect_mysql(conn, tables, out) -> None:
    by_name = {info.name: info.container for info in tables}
    db = conn.execute(sa.text("SELECT DATABASE()")).scalar()
    rows = conn.execute(sa.text("""
        SELECT TABLE_NAME AS tbl, COLUMN_NAME AS col, DATA_TYPE AS dtype, COLUMN_TYPE AS ctype,
               CHARACTER_MAXIMUM_LENGTH AS len, COLLATION_NAME AS coll
        FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = :db"""), {"db": db}).mappings()
    for r in rows:
        f = out.get(by_name.get(r["tbl"]), {}).get(r["col"])
        if f is None:
            continue
        dtype = (r["dtype"] or "").lower()
        coll = (r["coll"] or "").lower()
        if dtype in ("binary", "varbinary", "tinyblob", "blob", "mediumblob", "longblob"):
            f.type_class = BINARY
            continue
        if f.type_class not in (TEXT, JSON):
            continue
        if coll.endswith("_ci"):
            f.ci = True
            f.accent_insensitive = "_general_" in coll or "_unicode_" in coll or "_0900_ai" in coll
        if dtype in ("enum", "set"):
            values = tuple(v.replace("''", "'") for v in _QUOTED.findall(r["ctype"] or ""))
            f.domain = values if dtype == "enum" else None
        if isinstance(r["len"], int) and dtype in ("char", "varchar"):
            f.length = int(r["len"])
    rows = conn.execute(sa.text("""
        SELECT TABLE_NAME AS tbl, INDEX_NAME AS idx, COLUMN_NAME AS col, INDEX_TYPE AS itype, SUB_PART AS sub,
               SEQ_IN_INDEX AS seq
        FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = :db ORDER BY TABLE_NAME, INDEX_NAME, SEQ_IN_INDEX"""),
        {"db": db}).mappings()
    fulltext: dict[tuple, list[str]] = {}
    for r in rows:
        facts = out.get(by_name.get(r["tbl"]))
        if facts is None or r["col"] not in facts:
            continue
        itype = (r["itype"] or "").lower()
        if itype == "fulltext":
            fulltext.setdefault((r["tbl"], r["idx"]), []).append(r["col"])
        elif int(r["seq"]) == 1 and r["sub"] is None:
            facts[r["col"]].indexes.append(IndexFacts(r["idx"], itype or "btree", "plain"))
    for (tbl, idx), cols in fulltext.items():
        if len(cols) == 1:  # MATCH() must name exactly the index's columns: single-column indexes only
            out[by_name[tbl]][cols[0]].indexes.append(IndexFacts(idx, "fulltext", "plain"))
    try:
        rows = conn.execute(sa.text("""
            SELECT TABLE_NAME AS tbl, CHECK_CLAUSE AS clause FROM information_schema.CHECK_CONSTRAINTS
            WHERE CONSTRAINT_SCHEMA = :db"""), {"db": db}).mappings().all()
    except sa.exc.SQLAlchemyError:
        rows = []
    for r in rows:
        facts = out.get(by_name.get(r["tbl"]))
        if facts is not None:
            _apply_domain(facts, r["clause"] or "")


def _reflect_sqlite(conn, tables, out) -> None:
    for info in tables:
        facts = out[info.container]
        q = sa.text("SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = :t")
        for name, sql in conn.execute(q, {"t": info.name}).all():
            if sql and re.search(r"\bwhere\b", sql, re.I):
                continue  # partial index
            xinfo = conn.exec_driver_sql(f'PRAGMA index_xinfo("{name.replace(chr(34), chr(34) * 2)}")').all()
            keys = [x for x in xinfo if x[5]]  # (seqno, cid, name, desc, coll, key)
            if not keys:
                continue
            first = keys[0]
            nocase = (first[4] or "").upper() == "NOCASE"
            if first[1] >= 0 and first[2] in facts:
                facts[first[2]].indexes.append(IndexFacts(name, "btree", "plain", nocase=nocase))
            elif first[1] == -2 and sql:
                m = re.search(r"\bon\s+\S+\s*\((.*)\)\s*$", sql, re.I | re.S)
                if m:
                    parsed = parse_index_expression(_first_expression(m.group(1)), facts)
                    if parsed:
                        facts[parsed[0]].indexes.append(IndexFacts(name, "btree", parsed[1], nocase=nocase))


# =========================================================================== what to look for
@dataclass
class Probe:
    """What one column is searched for: ``eq`` (the column's kind compared whole) or ``contains``."""

    column: str
    mode: str                      # eq_email | eq_phone | eq_name | eq_id | contains | pair
    kind: str


@dataclass
class Query:
    """One statement's WHERE clause for a table, and which columns it searches with which method."""

    label: str                     # e.g. "index:lower(email) on email", "scan"
    where: object                  # SQLAlchemy expression
    columns: dict[str, str]        # column -> method
    index: str | None = None       # the index it means to use (for EXPLAIN checks)


@dataclass
class TableSearch:
    queries: list[Query] = field(default_factory=list)
    enumerations: list[tuple[str, str]] = field(default_factory=list)  # (column, index name): distinct values
    methods: dict[str, str] = field(default_factory=dict)      # column -> method (coverage)
    assumes: dict[str, str] = field(default_factory=dict)      # column -> assumption of its method
    skipped: dict[str, str] = field(default_factory=dict)      # column -> reason (binary...)
    scan_columns: list[str] = field(default_factory=list)


def _like_escape(text: str) -> str:
    return text.replace(ESC, ESC + ESC).replace("%", ESC + "%").replace("_", ESC + "_")


def _contains_pattern(text: str) -> str:
    return "%" + _like_escape(text) + "%"


def _digits_pattern(digits: str) -> str:
    """LIKE pattern matching every value whose digits, read in order, contain `digits` (a superset of
    "the value's digits hold the number")."""
    return "%" + "%".join(digits) + "%"


def _subsequence_pattern(text: str) -> str:
    """LIKE pattern for values holding the characters of `text` in order, anything between them: what a
    value must hold before dropping its apostrophes can leave `text` in it (a cheap guard for that test)."""
    return "%" + "%".join(_like_escape(ch) for ch in text) + "%"


def _digit_regex(digits: str) -> str:
    return "[^0-9]*".join(digits)


# Reverse fold map for SQLite GLOB classes: ASCII letter -> characters folding to it (both cases).
def _fold_classes() -> tuple[dict[str, str], str]:
    classes: dict[str, set[str]] = {ch: {ch, ch.upper()} for ch in string.ascii_lowercase}
    exotic: set[str] = set()
    ranges = list(range(0x80, 0x250)) + list(range(0x1E00, 0x1F00)) + list(range(0xFB00, 0xFB07))
    for code in ranges:
        ch = chr(code)
        f = fold(ch)
        if len(f) == 1 and f in classes:
            classes[f].add(ch)
        elif f and f != ch and (len(f) != 1 or not f.isalpha() or not f.isascii()):
            if any(c.isascii() and c.isalpha() for c in f):
                exotic.add(ch)  # folds to several letters (ß -> ss, ligatures): caught as a whole
    for code in range(0x300, 0x370):  # combining marks (decomposed accents): caught as a whole
        exotic.add(chr(code))
    return ({k: "".join(sorted(v)) for k, v in classes.items()}, "".join(sorted(exotic)))


_CLASSES, _EXOTIC = _fold_classes()


def _exotic_bytes(token: str) -> list[bytes]:
    """UTF-8 byte strings whose presence lets a value hold `token` through a character GLOB classes cannot
    stand for: any combining mark (lead bytes 0xCC, 0xCD), and each character folding to several letters
    that occur in `token` (ß for "ss", ﬁ for "fi")."""
    out = [b"\xcc", b"\xcd"]
    for ch in _EXOTIC:
        if 0x300 <= ord(ch) < 0x370:
            continue
        piece = fold(ch).replace("'", "")
        if piece and piece in token:
            out.append(ch.encode("utf-8"))
    return out
_APOS = ("'", "\u2019", "\u02bc")


def _fold_pieces() -> tuple[dict[str, set[str]], dict[str, set[str]], str]:
    """What PostgreSQL's name regexes are built from: per folded letter, the characters that fold to it
    (`pii.core.subject.fold`, accents and case); per folded run of two or more letters, the characters that fold
    to it (ß -> ss, æ -> ae, ligatures); and the characters that fold to nothing a name keeps (apostrophes,
    combining marks). Latin, Greek and Cyrillic blocks and fullwidth forms."""
    singles: dict[str, set[str]] = {ch: {ch, ch.upper()} for ch in string.ascii_lowercase}
    spans: dict[str, set[str]] = {}
    skip: set[str] = set(_APOS)
    ranges = (list(range(0x80, 0x250)) + list(range(0x300, 0x530)) + list(range(0x1E00, 0x2000))
              + list(range(0xFB00, 0xFB07)) + list(range(0xFF21, 0xFF3B)) + list(range(0xFF41, 0xFF5B)))
    for code in ranges:
        ch = chr(code)
        piece = fold(ch).replace("'", "")
        if not piece:
            skip.add(ch)
        elif piece.isalpha() and len(piece) == 1:
            singles.setdefault(piece, {piece}).add(ch)
        elif piece.isalpha():
            spans.setdefault(piece, set()).add(ch)
    return singles, spans, "".join(sorted(skip))


_SINGLES, _SPANS, _SKIPPABLE = _fold_pieces()
_ARE_MAX = 6000  # longest name regex built with multi-letter folds; longer ones drop them (see pg_token_regex)


def _are_class(chars: Iterable[str]) -> str:
    """A bracket expression for `chars`, consecutive code points as ranges (the combining marks)."""
    members = sorted(set(chars))
    if len(members) == 1 and members[0].isalnum():
        return members[0]
    out, i = [], 0
    while i < len(members):
        j = i
        while j + 1 < len(members) and ord(members[j + 1]) == ord(members[j]) + 1:
            j += 1
        for c in (members[i], members[j]) if j - i >= 2 else members[i:j + 1]:
            out.append(c if c.isalnum() or unicodedata.category(c)[0] == "M" or c in _APOS else "\\" + c)
            if j - i >= 2 and c == members[i]:
                out.append("-")
        i = j + 1
    return "[" + "".join(out) + "]"


def pg_token_regex(token: str) -> str:
    """A PostgreSQL regular expression (operator ``~``) matching any text that holds the folded name word
    `token` (apostrophes already dropped) written with any case and accents, apostrophes or combining
    marks between its letters, and letters that fold to several (Strauß for "strauss"): what
    ``fold(text).replace("'", "")`` containing `token` means, without folding every row (PostgreSQL's
    translate() costs about 20 µs a row)."""
    sep = _are_class(_SKIPPABLE) + "*"

    def one(ch: str) -> str:
        if ch in _SINGLES:
            return _are_class(_SINGLES[ch])
        if ch.isalpha():
            return _are_class({ch, ch.lower(), *(u for u in (ch.upper(),) if len(u) == 1)})
        return ch if ch.isalnum() else "\\" + ch

    def plain() -> str:
        return sep.join(one(ch) for ch in token)

    memo: dict[int, str] = {}

    def rest(i: int) -> str:  # the regex for token[i:], each letter or multi-letter fold then the next
        if i == len(token):
            return ""
        if i not in memo:
            options = [one(token[i]) + (sep + rest(i + 1) if i + 1 < len(token) else "")]
            for piece, chars in _SPANS.items():
                if token.startswith(piece, i):
                    j = i + len(piece)
                    options.append(_are_class(chars) + (sep + rest(j) if j < len(token) else ""))
            memo[i] = options[0] if len(options) == 1 else "(?:" + "|".join(options) + ")"
        return memo[i]

    full = rest(0)
    return full if len(full) <= _ARE_MAX else plain()


def _glob_escape_char(ch: str) -> str:
    return f"[{ch}]" if ch in "*?[]" else ch


def glob_token(token: str) -> str:
    """A GLOB pattern matching any text that holds `token` (folded, apostrophes already dropped) with any
    case and accents (SQLite's GLOB is case-sensitive and knows no folding)."""
    parts = []
    for ch in token:
        if ch in _CLASSES:
            parts.append("[" + _CLASSES[ch] + "]")
        elif ch.isalpha():
            variants = {ch, ch.upper(), ch.lower()}
            parts.append("[" + "".join(sorted(variants)) + "]")
        else:
            parts.append(_glob_escape_char(ch))
    return "*" + "".join(parts) + "*"


def glob_exact_ci(value: str) -> str:
    """A GLOB pattern equal to `value` up to case (for ids that are not ASCII, which SQLite's lower() and
    LIKE do not fold)."""
    parts = []
    for ch in value:
        if ch.isalpha():
            parts.append("[" + "".join(sorted({ch, ch.upper(), ch.lower()})) + "]")
        else:
            parts.append(_glob_escape_char(ch))
    return "".join(parts)


def _ascii_runs(text: str) -> list[str]:
    return [r for r in re.split(r"[^\x20-\x7e]+", text) if r]


# =========================================================================== the planner
class Planner:
    """Builds a table's search from its facts, the classified profiles and the subject."""

    def __init__(self, dialect: str, matcher: SubjectMatcher, *, strict: bool = False, region: str = "GB"):
        self.dialect = "mysql" if dialect == "mariadb" else dialect
        self.m = matcher
        self.strict = strict
        s = matcher.subject
        self.emails = list(matcher.email_tokens)
        self.phones = list(s.phones)
        self.nsns = list(matcher.phone_digit_tokens)
        self.name_sets = [toks for toks in matcher.name_token_sets if toks]
        self.text_ids = list(matcher.text_id_values)
        from pii.core.classify import phone_forms

        self.phone_forms = sorted({f for p in self.phones for f in phone_forms(p)})

    # ---------------------------------------------------------------- probes
    def probes(self, table: sa.Table, profiles: dict[str, ColumnProfile], facts: dict[str, ColumnFacts]
               ) -> tuple[list[Probe], dict[str, str]]:
        """What each text column is searched for, and the columns not searched (with why)."""
        out, skipped = [], {}
        id_keys = set(self.m.id_keys)
        for c in table.columns:
            f = facts.get(c.name) or ColumnFacts(c.name, type_class(c, self.dialect))
            key = c.name.casefold()
            if key in id_keys:
                out.append(Probe(c.name, "eq_id", "id"))
            if f.type_class == BINARY:
                skipped[c.name] = "binary column: its content is not searched"
                continue
            if f.type_class == NONTEXT:
                continue
            kind = (profiles.get(c.name) or ColumnProfile()).kind
            if f.type_class == JSON:
                kind = FREE_TEXT
            if key in id_keys:
                continue  # compared whole with the id; an id column holds the id, not text
            if kind == EMAIL:
                if self.emails:
                    out.append(Probe(c.name, "eq_email", kind))
            elif kind == PHONE:
                if self.nsns:
                    out.append(Probe(c.name, "eq_phone", kind))
            elif kind == NAME:
                if self.name_sets:
                    out.append(Probe(c.name, "eq_name", kind))
            elif kind in (GIVEN_NAME, FAMILY_NAME):
                pass  # searched as a pair below
            else:
                if self.emails or self.nsns or self.name_sets or self.text_ids:
                    out.append(Probe(c.name, "contains", kind))
        given = [c for c, p in profiles.items() if p.kind == GIVEN_NAME and c in table.c]
        family = [c for c, p in profiles.items() if p.kind == FAMILY_NAME and c in table.c]
        if self.name_sets:
            if given and family:
                out.append(Probe(given[0] + "\x00" + family[0], "pair", "name"))
            for c in given[1:] + family[1:] + ([given[0]] if given and not family else []) + \
                    ([family[0]] if family and not given else []):
                out.append(Probe(c, "eq_name", NAME))
        return out, skipped

    # ---------------------------------------------------------------- plan
    def plan(self, table: sa.Table, profiles: dict[str, ColumnProfile], facts: dict[str, ColumnFacts], *,
             distinct=None) -> TableSearch:
        """The table's queries. `distinct(column)` lists an indexed column's distinct values through its
        index (None when there are too many); without it such columns are scanned."""
        ts = TableSearch()
        probes, ts.skipped = self.probes(table, profiles, facts)
        scan_terms: list = []
        for p in probes:
            if p.mode == "pair":
                g, fam = p.column.split("\x00")
                self._plan_pair(ts, table, facts, profiles, g, fam, scan_terms)
                continue
            col = table.c[p.column]
            f = facts.get(p.column) or ColumnFacts(p.column)
            forms = set((profiles.get(p.column) or ColumnProfile()).forms)
            if self._static(ts, p, f, col):
                continue
            idx = self._indexed(ts, table, col, p, f, forms)
            if idx is not None:
                ts.queries.append(idx)
                continue
            ix = self._enumerable(f) if p.mode == "contains" and distinct is not None else None
            if ix is not None:
                values = distinct(p.column)
                if values is not None:
                    ts.enumerations.append((p.column, ix.name))
                    ts.methods[p.column] = "index:distinct"
                    hits = [v for v in values if self.value_could_match(p, str(v))]
                    if hits:
                        ts.queries.append(Query(f"index:distinct on {p.column}", col.in_(hits),
                                                {p.column: "index:distinct"}, ix.name))
                    continue
            term = self._scan(col, p, f)
            if term is None:
                continue
            scan_terms.append(term)
            ts.methods[p.column] = "scan"
            ts.scan_columns.append(p.column)
        if scan_terms:
            ts.queries.append(Query("scan", sa.or_(*scan_terms), {c: "scan" for c in ts.scan_columns}))
        return ts

    # ---- declared values and lengths
    def _min_length(self, p: Probe) -> int:
        lengths = []
        if p.mode in ("eq_email", "contains"):
            lengths += [len(e) for e in self.emails]
        if p.mode in ("eq_phone", "contains"):
            lengths += [len(d) for d in self.nsns]
        if p.mode in ("eq_name", "contains"):
            lengths += [sum(len(t) for t in toks) for toks in self.name_sets]
        if p.mode == "contains":
            lengths += [len(v) for v in self.text_ids]
        if p.mode == "eq_id":
            lengths += [len(v) for v in self.m.id_values(p.column)]
        return min(lengths) if lengths else 0

    def _static(self, ts: TableSearch, p: Probe, f: ColumnFacts, col) -> bool:
        if f.domain is not None:
            hits = [v for v in f.domain if self.value_could_match(p, v)]
            ts.methods[p.column] = "domain"
            if hits:  # a declared value that matches (unlikely): fetch exactly those rows
                ts.queries.append(Query(f"domain on {p.column}", col.in_(hits), {p.column: "domain"}))
            return True
        if f.length is not None and f.length < self._min_length(p):
            ts.methods[p.column] = "length"
            return True
        return False

    def value_could_match(self, p: Probe, value: str) -> bool:
        m = self.m
        if p.mode == "eq_email":
            return m.email_matches(value)
        if p.mode == "eq_phone":
            return m.phone_matches(value)
        if p.mode == "eq_name":
            return m.name_matches(value)
        if p.mode == "eq_id":
            return m.id_matches(p.column, value)
        return m.email_matches(value) or m.phone_matches(value) or bool(m.find_in_text(value))

    @staticmethod
    def _enumerable(f: ColumnFacts) -> IndexFacts | None:
        if f.cast:
            return None
        return next((ix for ix in f.indexes if ix.method == "btree" and ix.form == "plain" and not ix.nocase), None)

    # ---- index paths
    def _indexed(self, ts: TableSearch, table: sa.Table, col, p: Probe, f: ColumnFacts, forms: set[str]
                 ) -> Query | None:
        d = self.dialect
        trusted = not self.strict
        trimmed = cls.TRIMMED in forms
        lower = cls.LOWER in forms
        if p.mode == "eq_email":
            if d == "postgresql":
                ix = f.index(form="lower_trim")
                if ix:
                    return self._q(ts, p, f"index:lower(trim({p.column}))", ix,
                                   sa.func.lower(sa.func.trim(col)).in_(self.emails))
                ix = f.index(form="lower")
                if ix and trusted and trimmed:
                    return self._q(ts, p, f"index:lower({p.column})", ix, sa.func.lower(col).in_(self.emails),
                                   assumes="values written without surrounding spaces (sample)")
                ix = f.index(form="plain", method="btree")
                if ix and trusted and trimmed and (f.ci or lower):
                    return self._q(ts, p, "index:ci" if f.ci else "index:plain", ix, col.in_(self.emails),
                                   assumes="values written trimmed" + ("" if f.ci else ", lower-case") + " (sample)")
                ix = f.index(trigram=True)
                if ix:
                    return self._q(ts, p, "index:trigram", ix,
                                   sa.or_(*[col.ilike(_contains_pattern(e), escape=ESC) for e in self.emails]))
            elif d == "mysql":
                ix = f.index(form="plain", method="btree")
                if ix and trusted and f.ci and trimmed:
                    return self._q(ts, p, "index:ci", ix, col.in_(self.emails),
                                   assumes="values written without leading spaces (sample)")
            elif d == "sqlite":
                ix = f.index(form="lower")
                if ix and trusted and trimmed:
                    return self._q(ts, p, f"index:lower({p.column})", ix, sa.func.lower(col).in_(self.emails),
                                   assumes="values written without surrounding spaces (sample)")
                ix = f.index(form="plain", nocase=True)
                if ix and trusted and trimmed:
                    return self._q(ts, p, "index:nocase", ix, sa.collate(col, "NOCASE").in_(self.emails),
                                   assumes="values written without surrounding spaces (sample)")
                ix = f.index(form="plain", nocase=False)
                if ix and trusted and trimmed and lower:
                    return self._q(ts, p, "index:plain", ix, col.in_(self.emails),
                                   assumes="values written trimmed, lower-case (sample)")
            return None
        if p.mode == "eq_phone":
            ix = f.index(form="plain", method="btree", nocase=False) or f.index(form="plain", nocase=True)
            if ix and trusted and cls.PHONE_STANDARD in forms:
                return self._q(ts, p, "index:phone-forms", ix, col.in_(self.phone_forms),
                               assumes="numbers written in a standard form (sample)")
            if d == "postgresql" and f.index(trigram=True) and trusted:
                return self._q(ts, p, "index:trigram", f.index(trigram=True),
                               sa.or_(*[sa.and_(col.like(_contains_pattern(n[-3:]), escape=ESC),
                                                col.op("~")(_digit_regex(n))) for n in self.nsns]),
                               assumes="phones written with their last three digits together")
            return None
        if p.mode == "eq_id":
            values = list(self.m.id_values(p.column))
            if not isinstance(col.type, (sqltypes.String, sqltypes.NullType, sqltypes.Enum)):
                return None  # typed: the scan condition is an exact IN on the typed values, index or not
            ix = f.index(form="plain", method="btree") if d != "sqlite" else f.index(form="plain")
            if ix and trusted and trimmed:
                variants = sorted({v for raw in self._raw_ids(p.column) for v in (raw, raw.upper(), raw.lower())})
                if f.ci or (d == "sqlite" and ix.nocase):
                    expr = sa.collate(col, "NOCASE").in_(variants) if d == "sqlite" else col.in_(variants)
                    return self._q(ts, p, "index:ci", ix, expr, assumes="values written trimmed (sample)")
                return self._q(ts, p, "index:plain", ix, col.in_(variants),
                               assumes="values written trimmed, in upper, lower or the given case (sample)")
            ix = f.index(form="lower_trim")
            if ix:
                return self._q(ts, p, f"index:lower(trim({p.column}))", ix,
                               sa.func.lower(sa.func.trim(col)).in_(values))
            return None
        if p.mode == "eq_name":
            return self._indexed_name(ts, table, col, p, f)
        if p.mode == "contains":
            return self._indexed_text(ts, col, p, f)
        return None

    def _raw_ids(self, key: str) -> list[str]:
        subject = self.m.subject
        for k, vs in subject.ids.items():
            if k.casefold() == key.casefold():
                return [str(v).strip() for v in vs]
        return []

    def _indexed_name(self, ts, table, col, p: Probe, f: ColumnFacts) -> Query | None:
        d = self.dialect
        if d == "postgresql" and f.index(trigram=True):
            return self._q(ts, p, "index:trigram", f.index(trigram=True), sa.or_(*[
                sa.and_(*[col.ilike(_contains_pattern(t), escape=ESC) for t in toks]) for toks in self.name_sets]),
                assumes=None if self.strict else "name words written with the accents as given")
        if d == "mysql" and f.index(method="fulltext") and not self.strict:
            expr = self._ft_names(col, f)
            if expr is not None:
                return self._q(ts, p, "index:fulltext", f.index(method="fulltext"), expr,
                               assumes="name words indexed by FULLTEXT (3+ letters, not stopwords)")
        return None

    def _indexed_text(self, ts, col, p: Probe, f: ColumnFacts) -> Query | None:
        d = self.dialect
        target = sa.cast(col, sa.Text) if f.cast else col
        if d == "postgresql":
            ix = f.index(trigram=True, form="text" if f.cast else "plain")
            if ix is None:
                return None
            terms = [target.ilike(_contains_pattern(e), escape=ESC) for e in self.emails]
            terms += [target.ilike(_contains_pattern(v), escape=ESC) for v in self.text_ids if len(v) >= 3]
            assumes = []
            if self.nsns:
                if self.strict:
                    return None
                terms += [sa.and_(target.like(_contains_pattern(n[-3:]), escape=ESC),
                                  target.op("~")(_digit_regex(n))) for n in self.nsns]
                assumes.append("phones written with their last three digits together")
            if self.name_sets:
                if self.strict:
                    return None
                terms += [sa.and_(*[target.ilike(_contains_pattern(t), escape=ESC) for t in toks])
                          for toks in self.name_sets]
                assumes.append("name words written with the accents as given")
            if f.cast and not f.normalised_json:
                terms.append(target.like(_contains_pattern("\\"), escape=ESC))  # JSON escapes hide text
            return self._q(ts, p, "index:trigram", ix, sa.or_(*terms), assumes="; ".join(assumes) or None)
        if d == "mysql":
            ix = f.index(method="fulltext")
            if ix is None or self.strict:
                return None
            parts = []
            for e in self.emails + list(self.text_ids):
                words = self._ft_words(e)
                if not words:
                    return None
                parts.append("(" + " ".join("+" + w for w in words) + ")")
            for toks in self.name_sets:
                words = [w for t in toks for w in self._ft_words(t)]
                if len(words) != len(toks):
                    return None
                parts.append("(" + " ".join("+" + w for w in words) + ")")
            for p_form in self._ft_phone_forms():
                parts.append(p_form)
            if not parts:
                return None
            expr = sa.text(f"MATCH(`{col.name.replace('`', '``')}`) AGAINST (:q IN BOOLEAN MODE)").bindparams(
                q=" ".join(parts))
            return self._q(ts, p, "index:fulltext", ix, expr,
                           assumes="words indexed by FULLTEXT (3+ characters, not stopwords); phone numbers "
                                   "whose last digit group has 3+ digits")
        return None

    def _ft_words(self, text: str) -> list[str]:
        words = [w for w in re.split(r"[^\w]+", text.lower()) if w]
        if any(len(w) < FT_MIN_TOKEN or w in INNODB_STOPWORDS for w in words):
            words = [w for w in words if len(w) >= FT_MIN_TOKEN and w not in INNODB_STOPWORDS]
        return words

    def _ft_names(self, col, f) -> object | None:
        parts = []
        for toks in self.name_sets:
            words = [w for t in toks for w in self._ft_words(t)]
            if len(words) != len(toks):
                return None
            parts.append("(" + " ".join("+" + w for w in words) + ")")
        return sa.text(f"MATCH(`{col.name.replace('`', '``')}`) AGAINST (:q IN BOOLEAN MODE)").bindparams(
            q=" ".join(parts)) if parts else None

    def _ft_phone_forms(self) -> list[str]:
        """FULLTEXT tokens that any written form of the number ends with: FULLTEXT splits "07700 900 456" into
        words, and the number's last word is a suffix of its digits (with the trunk 0 or the country code
        in front when written whole). Every suffix of three digits or more is asked for; Python confirms."""
        out: set[str] = set()
        for n in self.nsns:
            for k in range(FT_MIN_TOKEN, len(n) + 1):
                out.add(n[-k:])
            out.add("0" + n)
            for f in self.phone_forms:
                digits = re.sub(r"\D", "", f)
                if len(digits) >= FT_MIN_TOKEN:
                    out.add(digits)
        return sorted(out)

    def _q(self, ts: TableSearch, p: Probe, label: str, ix: IndexFacts, where, assumes: str | None = None) -> Query:
        ts.methods[p.column] = label
        if assumes:
            ts.assumes[p.column] = assumes
        return Query(f"{label} on {p.column}", where, {p.column: label}, ix.name)

    # ---- pairs of given and family names
    def _plan_pair(self, ts, table, facts, profiles, g: str, fam: str, scan_terms: list) -> None:
        gcol, fcol = table.c[g], table.c[fam]
        ff = facts.get(fam) or ColumnFacts(fam)
        gf = facts.get(g) or ColumnFacts(g)
        label = None
        surnames = self._surname_candidates()
        d = self.dialect
        trusted = not self.strict
        where = None
        ix = None
        for c, f in ((fcol, ff), (gcol, gf)):
            forms = set((profiles.get(c.name) or ColumnProfile()).forms)
            if d == "postgresql" and f.index(form="lower") and trusted and cls.TRIMMED in forms:
                ix, label, where = f.index(form="lower"), f"index:lower({c.name})", sa.func.lower(c).in_(surnames)
            elif d == "postgresql" and f.index(trigram=True):
                ix, label = f.index(trigram=True), "index:trigram"
                where = sa.or_(*[c.ilike(_contains_pattern(t), escape=ESC) for toks in self.name_sets for t in toks])
            elif d == "mysql" and f.ci and f.accent_insensitive and trusted and cls.TRIMMED in forms \
                    and f.index(form="plain", method="btree"):
                ix, label, where = f.index(form="plain", method="btree"), "index:ci", c.in_(surnames)
            if where is not None:
                break
        if where is not None:
            ts.queries.append(Query(f"{label} on {ix and fam}", where, {g: label, fam: label}, ix.name))
            ts.methods[g] = ts.methods[fam] = label
            ts.assumes[fam] = ts.assumes[g] = ("names written trimmed; the family name as one or more of the "
                                               "given words, accents as given or none")
            return
        scan_terms.append(sa.or_(*[sa.and_(*[sa.or_(self._name_token(gcol, gf, t), self._name_token(fcol, ff, t))
                                             for t in toks]) for toks in self.name_sets]))
        ts.methods[g] = ts.methods[fam] = "scan"
        ts.scan_columns += [g, fam]

    def _surname_candidates(self) -> list[str]:
        """Family-name values that could complete a match (any run of the name's words, in typed and folded
        spelling), lower-cased."""
        out: set[str] = set()
        for name in self.m.subject.names:
            words = [w for w in re.split(r"\s+", " ".join(name.replace(",", " ").split())) if w]
            for i in range(len(words)):
                for j in range(i + 1, len(words) + 1):
                    if j - i == len(words) and len(words) > 1:
                        continue
                    run = words[i:j]
                    for joiner in (" ", "-"):
                        v = joiner.join(run)
                        out.update({v.lower(), fold(v)})
        return sorted(out)

    # ---- scan predicates
    def _scan(self, col, p: Probe, f: ColumnFacts):
        target = sa.cast(col, sa.Text) if f.cast else col
        if p.mode == "eq_email":
            return sa.or_(*[self._contains_email(target, f, e) for e in self.emails])
        if p.mode == "eq_phone":
            return sa.or_(*[target.like(_digits_pattern(n), escape=ESC) for n in self.nsns])
        if p.mode == "eq_name":
            return sa.or_(*[sa.and_(*[self._name_token(target, f, t) for t in toks]) for toks in self.name_sets])
        if p.mode == "eq_id":
            return self._id_scan(col, p, f)
        terms = [self._contains_email(target, f, e) for e in self.emails]
        terms += [self._contains_id(target, f, v) for v in self.text_ids]
        terms += [target.like(_digits_pattern(n), escape=ESC) for n in self.nsns]
        terms += [sa.and_(*[self._name_token(target, f, t) for t in toks]) for toks in self.name_sets]
        if (f.cast or f.type_class == JSON) and not f.normalised_json:
            terms.append(target.like(_contains_pattern("\\"), escape=ESC))
        return sa.or_(*terms) if terms else None

    def _contains_ci(self, target, f: ColumnFacts, text: str):
        """Values holding `text` (ASCII, lower-case) in any case."""
        d = self.dialect
        if d == "postgresql":
            return target.ilike(_contains_pattern(text), escape=ESC)
        if d == "mysql" and not f.ci:
            return sa.func.lower(target).like(_contains_pattern(text), escape=ESC)
        return target.like(_contains_pattern(text), escape=ESC)  # SQLite LIKE and MariaDB *_ci ignore case

    def _contains_email(self, target, f: ColumnFacts, token: str):
        """Values holding an email token in any case. A non-ASCII token (an internationalised address) goes
        the way of a non-ASCII id: SQLite and case-sensitive MySQL columns fold only ASCII case, so the
        prefilter is its longest ASCII run and the final match decides."""
        return self._contains_ci(target, f, token) if token.isascii() else self._contains_id(target, f, token)

    def _contains_id(self, target, f: ColumnFacts, value: str):
        if value.isascii():
            return self._contains_ci(target, f, value.lower())
        if self.dialect == "postgresql" or (self.dialect == "mysql" and f.ci):
            return target.ilike(_contains_pattern(value), escape=ESC) if self.dialect == "postgresql" \
                else target.like(_contains_pattern(value), escape=ESC)
        runs = _ascii_runs(value)
        if not runs:
            return target.is_not(None)
        return self._contains_ci(target, f, max(runs, key=len).lower())

    def _id_scan(self, col, p: Probe, f: ColumnFacts):
        values = list(self.m.id_values(p.column))
        if isinstance(col.type, (sqltypes.Integer, sqltypes.Numeric)) and not isinstance(col.type, sqltypes.Boolean):
            nums = []
            for v in values:
                try:
                    nums.append(int(v) if re.fullmatch(r"[+-]?\d+", v) else float(v))
                except ValueError:
                    pass
            return col.in_(nums) if nums else sa.false()
        target = sa.cast(col, sa.String) if not isinstance(col.type, (sqltypes.String, sqltypes.NullType)) else col
        ascii_values = [v for v in values if v.isascii()]
        terms = []
        if ascii_values:
            if self.dialect == "mysql" and f.ci:
                terms.append(sa.func.trim(target).in_(ascii_values))
            else:
                terms.append(sa.func.lower(sa.func.trim(target)).in_(ascii_values))
        for v in values:
            if v.isascii():
                continue
            if self.dialect == "sqlite":
                terms.append(sa.func.trim(target).op("GLOB")(glob_exact_ci(v)))
            elif self.dialect == "postgresql":
                terms.append(sa.func.lower(sa.func.trim(target)) == v)
            else:
                terms.append(sa.func.trim(target).like(_like_escape(v), escape=ESC))
        return sa.or_(*terms) if terms else sa.false()

    def _name_token(self, target, f: ColumnFacts, token: str):
        """Values holding the folded name word `token` with any case, accents and apostrophes."""
        d = self.dialect
        pat = _contains_pattern(token)
        if d == "sqlite":
            plain = target.like(pat, escape=ESC)
            stripped = sa.func.replace(sa.func.replace(sa.func.replace(target, "'", ""), "\u2019", ""), "\u02bc", "")
            # characters that fold to several letters or to nothing (ß, ligatures, combining marks) make the
            # GLOB below miss: rows holding one that matters for this word are candidates. Byte tests (instr on
            # the UTF-8 bytes: combining marks all begin with 0xCC or 0xCD), where GLOB with a class of 139
            # characters costs 50x a LIKE
            raw = sa.cast(target, sa.LargeBinary)
            exotic = sa.or_(*[sa.func.instr(raw, sa.literal(b, sa.LargeBinary)) > 0 for b in _exotic_bytes(token)])
            # non-ASCII text: more characters as bytes than as characters (a length test, far cheaper than GLOB)
            nonascii = sa.func.length(target) < sa.func.length(sa.cast(target, sa.LargeBinary))
            # ASCII text with an apostrophe (O'Brien): LIKE on the text without apostrophes; only non-ASCII text
            # needs GLOB's accent classes (costly per character, so only on the rows that hold such text)
            # (the letters in order, a LIKE, first: replace() on every row with an apostrophe costs 3x a LIKE)
            return sa.or_(plain,
                          sa.and_(target.like(_subsequence_pattern(token), escape=ESC),
                                  sa.or_(*[sa.func.instr(target, a) > 0 for a in _APOS]), stripped.like(pat, escape=ESC)),
                          sa.and_(nonascii, sa.or_(stripped.op("GLOB")(glob_token(token)), exotic)))
        if d == "postgresql":
            # one regular expression: letters as classes of their case and accented forms, apostrophes and
            # combining marks allowed between them (as fast as ILIKE, where lower(translate()) was 100x slower)
            return target.op("~")(pg_token_regex(token))
        # MariaDB / MySQL: *_general_ci and *_unicode_ci compare without case and accents; otherwise compare
        # through such a collation. Apostrophes are dropped only on rows that hold one.
        if f.ci and f.accent_insensitive:
            folded = target
        else:
            folded = sa.collate(sa.func.convert(target.op("USING")(sa.literal_column("utf8mb4"))),
                                "utf8mb4_general_ci")
        terms = [folded.like(pat, escape=ESC)]
        if "ss" in token:  # these collations read ß as s
            terms.append(folded.like(_contains_pattern(token.replace("ss", "\u00df")), escape=ESC))
        stripped = folded
        for a in _APOS:
            stripped = sa.func.replace(stripped, a, "")
        terms.append(sa.and_(folded.like(_subsequence_pattern(token), escape=ESC),
                             sa.or_(*[target.like(_contains_pattern(a), escape=ESC) for a in _APOS]),
                             stripped.like(pat, escape=ESC)))
        # the collations weigh combining marks and ligatures (ﬁ) apart from the letters they fold to: rows that
        # hold one that matters for this word are candidates (non-ASCII rows only, then a byte search)
        raw = sa.cast(target, sa.LargeBinary)
        terms.append(sa.and_(sa.func.length(target) > sa.func.char_length(target),
                             sa.or_(*[sa.func.locate(sa.literal(b, sa.LargeBinary), raw) > 0
                                      for b in _exotic_bytes(token)])))
        return sa.or_(*terms)
