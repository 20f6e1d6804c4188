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
