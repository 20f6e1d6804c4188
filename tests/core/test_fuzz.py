"""Property-based tests (hypothesis) over what users hand Lethe: identifiers, stores.yaml and CSV bytes.
Whatever comes in, the answer is a result or one Lethe error (one line, exit status per README), never a
traceback or another exception; a failed run changes nothing; the error does not echo the value."""
from __future__ import annotations

import string
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pii.core.config import parse_config
from pii.core.errors import LetheError
from pii.core.subject import Subject
from tests.cli_support import run

EXAMPLES = 150
TEXT = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=60)
EMAILISH = st.one_of(TEXT, st.builds(lambda a, b: f"{a}@{b}", TEXT, TEXT),
                     st.from_regex(r"[a-zA-Z0-9.+_-]{0,20}@[a-zA-Z0-9.-]{0,20}", fullmatch=True))
EXIT_STATUSES = {0, 1, 2, 3, 4, 5, 6, 7, 8}


@settings(max_examples=EXAMPLES, deadline=None)
@given(emails=st.lists(EMAILISH, max_size=3), phones=st.lists(TEXT, max_size=2), names=st.lists(TEXT, max_size=2),
       ids=st.dictionaries(TEXT, TEXT, max_size=2))
def test_when_identifiers_are_anything_then_a_subject_or_one_lethe_error(emails, phones, names, ids):
    try:
        subject = Subject.build(emails=emails, phones=phones, names=names, ids=ids)
    except LetheError as exc:
        message = str(exc)
        assert "\n" not in message
        for value in emails + phones + names:
            if len(value.strip()) >= 6:  # a short value may be a word of the message by chance
                assert value.strip() not in message, "the error echoes the identifier"
        return
    assert isinstance(subject, Subject)


YAML_VALUE = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(), TEXT),
                          lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                  st.dictionaries(TEXT, inner, max_size=3)), max_leaves=8)
STORE = st.fixed_dictionaries({"kind": st.sampled_from(["sql", "csv", "ftp", "gmail", "nosql", ""])},
                              optional={"url": YAML_VALUE, "path": YAML_VALUE, "host": YAML_VALUE,
                                        "user_id": YAML_VALUE, "skip_tables": YAML_VALUE,
                                        "metadata": YAML_VALUE, "password": YAML_VALUE})
CONFIG = st.one_of(YAML_VALUE, st.fixed_dictionaries(
    {"stores": st.one_of(YAML_VALUE, st.dictionaries(TEXT, st.one_of(STORE, YAML_VALUE), max_size=3))},
    optional={"ledger": YAML_VALUE, "default_region": YAML_VALUE, "detection": YAML_VALUE,
              "erasure": YAML_VALUE, "retention": YAML_VALUE}))


@settings(max_examples=EXAMPLES, deadline=None)
@given(data=CONFIG)
def test_when_stores_yaml_holds_anything_then_a_config_or_one_config_error(data):
    try:
        config = parse_config(data, Path("/nonexistent/stores.yaml"))
    except LetheError as exc:
        assert exc.exit_code == 2 and "\n" not in str(exc)
        return
    assert config.stores


CSV_CHARS = st.sampled_from(list(string.ascii_letters + string.digits + ",;\t|\"'\r\n =+-@.") +
                            ["é", "ß", "\ufeff", "\x00", "😀"])
CSV_TEXT = st.lists(CSV_CHARS, max_size=300).map("".join)
CSV_BYTES = st.one_of(st.binary(max_size=300), CSV_TEXT.map(lambda t: t.encode("utf-8")),
                      CSV_TEXT.map(lambda t: t.encode("utf-16")),
                      st.builds(lambda head, body: (head + "\n" + body).encode("utf-8"),
                                st.sampled_from(["email,name,phone", "id;e-mail;notes", "a\tb"]), CSV_TEXT))


@pytest.fixture(scope="module")
def csv_store(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz")
    (root / "exports").mkdir()
    (root / "stores.yaml").write_text("stores:\n  exports:\n    kind: csv\n    path: exports\n", encoding="utf-8")
    return root


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(content=CSV_BYTES, with_planted=st.booleans())
def test_when_a_csv_export_holds_any_bytes_then_locate_answers_or_says_why_in_one_line(csv_store, content,
                                                                                        with_planted):
    path = csv_store / "exports" / "fuzz.csv"
    if with_planted:
        content += b"\nzoe.fuzz@example.test,Zoe Fuzz,020 7946 0999\n"
    path.write_bytes(content)
    code, out, err = run("--config", csv_store / "stores.yaml", "locate", "--email", "zoe.fuzz@example.test")
    assert code in EXIT_STATUSES
    assert "Traceback" not in err and "unexpected" not in err, err[-500:]
    lines = [line for line in err.splitlines() if line.startswith("lethe:")]
    assert len(lines) <= 3, err[-500:]
    assert path.read_bytes() == content  # searching never changes the file
    assert "zoe.fuzz@example.test" not in out + err
