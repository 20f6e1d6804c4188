"""What the CLI tests share (tests/cli/test_cli.py, tests/engine/test_flows.py): running `lethe` in-process with its
output captured, and the demo subject's identifiers that must never appear in that output."""
from __future__ import annotations

from pii.cli import main as cli

PERSONAL = ["alice.smith@example.org", "7946 0123", "79460123", "Alice Smith", "C-10042"]


def run(*argv) -> tuple[int, str, str]:
    import contextlib
    import io

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


def assert_no_personal_data(text: str) -> None:
    for value in PERSONAL:
        assert value.lower() not in text.lower(), "personal data in CLI output"


def demo_rows(world) -> dict:
    """Every row of the demo CRM and every export file's bytes: to show a command changed nothing."""
    import sqlite3

    con = sqlite3.connect(world.crm_path)
    tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")]
    out = {t: sorted(map(repr, con.execute(f'SELECT * FROM "{t}"'))) for t in tables}
    con.close()
    for f in sorted(world.exports_dir.iterdir()):
        out[f.name] = f.read_bytes()
    return out
