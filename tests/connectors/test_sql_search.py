"""The SQL search planner (connectors/sql_search.py) on real databases: every text column searched, the
database's indexes used where they exist (EXPLAIN on PostgreSQL and MariaDB), and the coverage report
honest about what could not be searched."""
from __future__ import annotations

import json

import pytest
import sqlalchemy as sa

from connectors.sql import SqlConnector
from pii.core.config import StoreConfig
from pii.core.subject import Subject, SubjectMatcher

NORA = dict(emails=["nora.quill@x.org"], names=["Nora Quill"], phones=["+447700900456"], region="GB")


def connector(url: str, **options) -> tuple[SqlConnector, list[str]]:
    messages: list[str] = []
    cfg = StoreConfig(name="crm", kind="sql", options={"url": url, **options}, base_dir=".")
    return SqlConnector(cfg, progress=lambda _s, m: messages.append(m)), messages


def world(url: str, *, rows: int = 400) -> sa.Engine:
    """members (email, phone, status with a CHECK, notes, prefs JSON-as-text, a reserved-word column), a
    codes table whose sampled values look like codes, a binary column, and orders linked by foreign key."""
    engine = sa.create_engine(url)
    md = sa.MetaData()
    members = sa.Table(
        "members", md,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("email", sa.String(120)), sa.Column("phone", sa.String(40)),
        sa.Column("status", sa.String(10)),
        sa.Column("notes", sa.Text), sa.Column("prefs", sa.Text),
        sa.Column("from", sa.String(120)),  # a reserved word
        sa.Column("photo", sa.LargeBinary),
        sa.CheckConstraint("status IN ('active','lapsed')", name="ck_status"),
    )
    codes = sa.Table("codes", md, sa.Column("id", sa.Integer, primary_key=True), sa.Column("ref", sa.String(80)))
    orders = sa.Table("orders", md, sa.Column("id", sa.Integer, primary_key=True),
                      sa.Column("member_id", sa.Integer, sa.ForeignKey("members.id"), index=True),
                      sa.Column("memo", sa.String(200)))
    md.drop_all(engine)
    md.create_all(engine)
    with engine.begin() as conn:
        conn.execute(members.insert(), [
            dict(id=i, email=f"user{i}@y.org", phone=f"07700 9{i:05d}", status="active",
                 notes=f"note {i}", prefs=json.dumps({"newsletter": True}), **{"from": f"u{i}@y.org"}, photo=b"\x00")
            for i in range(1, rows)])
        conn.execute(members.insert(), [
            # the subject, after every sampled row: written in mixed case with spaces
            dict(id=rows, email=" Nora.Quill@X.org", phone="+44 7700 900456", status="lapsed", notes=None,
                 prefs=None, **{"from": None}, photo=None),
            # someone else whose JSON (kept in a text column) names the subject's phone: a text match
            dict(id=rows + 1, email="eve@y.org", phone=None, status="active", notes="hi",
                 prefs=json.dumps({"emergency": {"name": "N. Q.", "phone": "07700900456"}}),
                 **{"from": "nora.quill@x.org"}, photo=None),
        ])
        conn.execute(codes.insert(), [dict(id=i, ref=f"PAY-{i:06d}") for i in range(1, rows)]
                     + [dict(id=rows, ref="nora.quill@x.org")])
        conn.execute(orders.insert(), [dict(id=1, member_id=rows, memo=None),
                                       dict(id=2, member_id=rows + 1, memo=None)])  # eve's order: not Nora's
    return engine


def found(conn: SqlConnector) -> set[tuple]:
    out = conn.locate(SubjectMatcher(Subject.build(**NORA)))
    return {(f.container, json.dumps(f.location["key"]), f.match) for f in out}


@pytest.mark.parametrize("url_fixture", ["sqlite_url", "postgres_url", "mariadb_url"])
def test_when_identifiers_sit_beyond_every_sample_and_in_odd_columns_then_all_are_found(request, url_fixture):
    url = request.getfixturevalue(url_fixture)
    world(url)
    conn, messages = connector(url)
    got = found(conn)
    assert got == {
        ("members", '{"id": 400}', "identifier"),   # mixed-case email with a space, far past the sample
        ("members", '{"id": 401}', "identifier"),   # the reserved-word column "from" holds her email
        ("codes", '{"id": 400}', "identifier"),     # a column whose samples all look like codes
        ("orders", '{"id": 1}', "linked"),          # her order
        ("orders", '{"id": 2}', "linked"),          # the order of the row that holds her email in "from"
    }, got
    cov = conn.coverage
    assert {s["place"] for s in cov.skipped} == {"members.photo"}  # binary: listed, with the reason
    assert cov.skipped[0]["reason"].startswith("binary column")
    assert not cov.complete
    methods = cov.methods()
    assert methods.get("domain") == 1  # status: its CHECK values cannot hold an identifier


@pytest.mark.parametrize("url_fixture", ["sqlite_url", "postgres_url", "mariadb_url"])
def test_when_a_json_value_in_a_text_column_holds_the_phone_then_that_row_is_a_text_match(request, url_fixture):
    url = request.getfixturevalue(url_fixture)
    engine = world(url)
    with engine.begin() as c:
        c.execute(sa.text("UPDATE members SET " + ('"from"' if "mysql" not in url else "`from`")
                          + " = NULL WHERE id = 401"))
    conn, _ = connector(url)
    got = found(conn)
    assert ("members", '{"id": 401}', "text") in got
    assert ("orders", '{"id": 2}', "linked") not in got  # a mention never spreads linkage


def explain(engine: sa.Engine, table: sa.Table, where) -> str:
    stmt = sa.select(sa.literal(1)).select_from(table).where(where)
    sql = str(stmt.compile(engine, compile_kwargs={"literal_binds": True}))
    with engine.connect() as c:
        if engine.dialect.name == "postgresql":
            c.execute(sa.text("ANALYZE"))
            rows = c.execute(sa.text("EXPLAIN " + sql)).fetchall()
            return "\n".join(r[0] for r in rows)
        rows = c.execute(sa.text("EXPLAIN " + sql)).mappings().fetchall()
        return "\n".join(json.dumps({k: str(v) for k, v in r.items()}) for r in rows)


def big_members(engine: sa.Engine, n: int = 20000) -> None:
    members = sa.Table("members", sa.MetaData(), autoload_with=engine)
    with engine.begin() as c:
        c.execute(sa.text("DELETE FROM orders"))
        c.execute(sa.text("DELETE FROM members"))
        rows = [{"id": i, "email": f"user{i}@y.org", "phone": f"07700 9{i:05d}", "status": "active",
                 "notes": f"note number {i} about things", "prefs": "{}", "from": f"u{i}@y.org"}
                for i in range(1, n)]
        rows.append({"id": n, "email": "nora.quill@x.org", "phone": "07700 900456", "status": "active",
                     "notes": "x", "prefs": "{}", "from": None})
        c.execute(members.insert(), rows)


def test_when_postgresql_has_crm_indexes_then_every_query_uses_them_and_no_table_is_scanned(postgres_url):
    engine = world(postgres_url)
    big_members(engine)
    with engine.begin() as c:
        c.execute(sa.text("CREATE EXTENSION IF NOT EXISTS pg_trgm"))
        c.execute(sa.text("CREATE INDEX ix_email ON members (lower(email))"))
        c.execute(sa.text("CREATE INDEX ix_phone ON members (phone)"))
        c.execute(sa.text('CREATE INDEX ix_from ON members (lower("from"))'))
        c.execute(sa.text("CREATE INDEX ix_notes ON members USING gin (notes gin_trgm_ops)"))
        c.execute(sa.text("CREATE INDEX ix_prefs ON members USING gin (prefs gin_trgm_ops)"))
    conn, _ = connector(postgres_url)
    info = next(i for i in conn.tables() if i.name == "members")
    ts = conn.search_plan(info, SubjectMatcher(Subject.build(**NORA)))
    assert ts.scan_columns == [] and ts.queries, ts.methods
    assert ts.methods["email"] == "index:lower(email)" and ts.methods["notes"] == "index:trigram"
    for q in ts.queries:
        plan = explain(engine, info.table, q.where)
        assert "Seq Scan" not in plan, (q.label, plan)
        assert q.index is None or q.index in plan, (q.label, plan)


def test_when_postgresql_has_no_index_then_one_scan_query_covers_every_text_column(postgres_url):
    engine = world(postgres_url)
    conn, _ = connector(postgres_url)
    info = next(i for i in conn.tables() if i.name == "members")
    ts = conn.search_plan(info, SubjectMatcher(Subject.build(**NORA)))
    scans = [q for q in ts.queries if q.label == "scan"]
    assert len(scans) == 1
    assert set(ts.scan_columns) == {"email", "phone", "notes", "prefs", "from"}
    assert "Seq Scan" in explain(engine, info.table, scans[0].where)


def test_when_mariadb_has_crm_indexes_then_the_queries_use_them(mariadb_url):
    engine = world(mariadb_url)
    big_members(engine)
    with engine.begin() as c:
        c.execute(sa.text("CREATE INDEX ix_email ON members (email)"))
        c.execute(sa.text("CREATE INDEX ix_from ON members (`from`)"))
        c.execute(sa.text("CREATE FULLTEXT INDEX ft_notes ON members (notes)"))
        c.execute(sa.text("ANALYZE TABLE members"))
    conn, _ = connector(mariadb_url)
    info = next(i for i in conn.tables() if i.name == "members")
    ts = conn.search_plan(info, SubjectMatcher(Subject.build(**NORA)))
    assert ts.methods["notes"] == "index:fulltext", ts.methods
    assert ts.methods["email"].startswith("index:"), ts.methods
    for q in ts.queries:
        if q.index is None:
            continue
        plan = explain(engine, info.table, q.where)
        assert q.index in plan, (q.label, plan)
        assert '"type": "ALL"' not in plan, (q.label, plan)


def test_when_a_table_cannot_be_read_then_it_is_listed_not_searched_and_the_rest_is_searched(postgres_url):
    engine = world(postgres_url)
    with engine.begin() as c:
        c.execute(sa.text("DROP ROLE IF EXISTS lethe_limited"))
        c.execute(sa.text("CREATE ROLE lethe_limited LOGIN"))
        c.execute(sa.text("GRANT SELECT ON members, orders TO lethe_limited"))
    try:
        url = sa.engine.make_url(postgres_url).set(username="lethe_limited").render_as_string(hide_password=False)
        conn, messages = connector(url)
        got = found(conn)
        assert ("members", '{"id": 400}', "identifier") in got
        (skipped,) = [s for s in conn.coverage.skipped if s["place"] == "codes"]
        assert "cannot be read" in skipped["reason"] and "42501" in skipped["reason"]
        assert "nora" not in json.dumps(conn.coverage.to_dict()).lower()
    finally:
        with engine.begin() as c:
            c.execute(sa.text("REVOKE ALL ON members, orders FROM lethe_limited"))
            c.execute(sa.text("DROP ROLE IF EXISTS lethe_limited"))


def test_when_postgresql_tests_a_name_word_then_its_regex_agrees_with_python_folding(postgres_url):
    """pg_token_regex is the scan's name predicate on PostgreSQL: for every text in a mixed sample (accents
    as one character or decomposed, ß, ligatures, typographic apostrophes, fullwidth letters, other
    scripts), PostgreSQL's ``~`` must say "holds the word" exactly when Python's fold does."""
    import random
    import unicodedata

    from connectors.sql_search import pg_token_regex
    from pii.core.subject import fold

    words = ["quill", "strauss", "obrien", "muller", "zoe", "nora", "\u00e6by", "fiona", fold("\u0421\u0435\u0440\u0433\u0435\u0439")]
    pieces = ["Quill", "QUÍLL", "qu'ill", "Qu\u2019ill", "Stra\u00dfe", "Strauß", "STRAUSS", "O'Brien",
              "O\u2019BRIEN", "Mu\u0308ller", "Müller", "MÜLLER", "Zoë", "Zo\u00eb", "Nóra", "Ｎｏｒａ", "Æby",
              "ﬁona", "Fiona", "\u0421\u0435\u0440\u0433\u0435\u0439", "quil", "qui ll", "Strause", "obrie n",
              "Mueller", "zoe", "n.o.r.a", "x", " ", "-", "ǫuill"]
    rnd = random.Random(7)
    texts = set(pieces)
    for _ in range(300):
        texts.add(" ".join(rnd.choice(pieces) for _ in range(rnd.randint(1, 3))))
    texts |= {unicodedata.normalize("NFD", t) for t in list(texts)[:60]}
    texts = sorted(texts)
    engine = sa.create_engine(postgres_url)
    try:
        with engine.connect() as conn:
            for word in words:
                rows = conn.execute(sa.text("SELECT t, t ~ :rx FROM unnest(CAST(:texts AS text[])) AS t"),
                                    {"rx": pg_token_regex(word), "texts": texts}).all()
                disagree = [t for t, hit in rows if bool(hit) != (word in fold(t).replace("'", ""))]
                assert not disagree, (word, len(disagree))
                assert any(hit for _t, hit in rows), word  # the sample holds each word somewhere
    finally:
        engine.dispose()


@pytest.mark.parametrize("url_fixture", ["sqlite_url", "postgres_url", "mariadb_url"])
def test_when_a_name_is_written_with_sz_ligatures_combining_marks_or_apostrophes_then_the_scan_finds_it(
        request, url_fixture):
    """The scan's name predicates (PostgreSQL regex, SQLite LIKE/GLOB with byte guards, MariaDB collations)
    are supersets of Python's folding: ß, a ligature, decomposed accents and a typographic apostrophe in a
    name that has one are all found; a near-miss surname is not."""
    url = request.getfixturevalue(url_fixture)
    engine = sa.create_engine(url)
    md = sa.MetaData()
    notes = sa.Table("notes", md, sa.Column("id", sa.Integer, primary_key=True), sa.Column("body", sa.Text))
    md.drop_all(engine)
    md.create_all(engine)
    filler = [dict(id=i, body=f"ordinary note {i}: members' edition, Zoë's café") for i in range(1, 300)]
    planted = {300: "call Fiona Strauß today", 301: "Fi\u0301ona Stra\u0308uss wrote", 302: "\ufb01ona STRAUSS",
               303: "FIONA O\u2019Strauss"}
    with engine.begin() as conn:
        conn.execute(notes.insert(), filler + [dict(id=k, body=v) for k, v in planted.items()]
                     + [dict(id=305, body="Fiona Strauch"), dict(id=306, body="Fiona alone"),
                        dict(id=307, body="Fiona Strau'ss")])  # an apostrophe the name does not have: no match
    engine.dispose()
    conn, _ = connector(url)
    out = conn.locate(SubjectMatcher(Subject.build(names=["Fiona Strauss", "Fiona O'Strauss"], region="GB")))
    assert {f.location["key"]["id"] for f in out} == set(planted)


def test_when_an_internationalised_address_is_stored_in_capitals_then_it_is_found_on_every_database(
        any_sql_url, tmp_path):
    """SQLite's LIKE and lower() fold only ASCII case: a non-ASCII address is searched by its longest ASCII
    run and matched by the final check, so ZOË@EXÄMPLE.COM is found for zoë@exämple.com (and only it)."""
    from pii.core.config import parse_config
    from pii.core.subject import Subject
    from pii.engine.discover import locate_subject

    eng = sa.create_engine(any_sql_url)
    with eng.begin() as conn:
        conn.execute(sa.text("CREATE TABLE people (id INTEGER PRIMARY KEY, email VARCHAR(120), notes TEXT)"))
        conn.execute(sa.text("INSERT INTO people VALUES (1, 'ZOË@EXÄMPLE.COM', 'x'), "
                             "(2, 'bob@example.test', 'wrote to ZOË@EXÄMPLE.COM'), (3, 'zoe@example.com', 'other')"))
    eng.dispose()
    cfg = parse_config({"stores": {"db": {"kind": "sql", "url": any_sql_url}}}, tmp_path / "stores.yaml")
    result = locate_subject(cfg, Subject.build(emails=["zoë@exämple.com"]))
    found = sorted((str(f.location["key"]), f.match) for f in result.findings)
    assert found == [("{'id': 1}", "identifier"), ("{'id': 2}", "text")]
