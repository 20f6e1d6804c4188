"""Child processes for tests/engine/test_erasure_crash.py.

    python tests/crash_child.py FOLDER

erases the test subject (ALICE) from a folder of CSV files the way `ErasureEngine.execute` does it (locate
again, then one `CsvConnector.apply`), so that the test can SIGKILL it in the middle of a file rewrite and
then run it again. Writes "applying" on stderr just before the rewrites start. Running it again after a
kill is the resume: it locates the subject afresh, so rows a finished rewrite removed are not looked for.

    python tests/crash_child.py kill-after-rewrite FILE LETHE-ARGS...

runs the `lethe` command line, and the process SIGKILLs itself as soon as the CSV file FILE has been
rewritten (renamed into place), before the ledger hears of it: a kill at one exact, otherwise rare moment.
"""
from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

if __name__ == "__main__":  # run as a script: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from connectors.base import DELETE, UPDATE, ExecAction  # noqa: E402
from connectors.csvfiles import CsvConnector  # noqa: E402
from pii.core.config import StoreConfig  # noqa: E402
from pii.core.findings import WEAK  # noqa: E402
from pii.core.policy import redact_fields  # noqa: E402
from pii.core.subject import Subject, SubjectMatcher  # noqa: E402
from tests.sql_world import ALICE  # noqa: E402


def erase_csv_folder(folder: Path, announce=lambda: None) -> int:
    """Delete the subject's records and redact mentions of her in other records; returns the actions."""
    folder = Path(folder)
    store = StoreConfig(name="exports", kind="csv", options={"path": str(folder)}, base_dir=folder.parent)
    matcher = SubjectMatcher(Subject.build(**ALICE))
    with CsvConnector(store) as conn:
        actions = []
        for i, f in enumerate(conn.locate(matcher)):
            if f.strength == WEAK:
                continue
            if f.match == "text":
                record = f.record or {}
                updates = {k: v for k, v in redact_fields(record, matcher).items() if v != record.get(k)}
                if updates:
                    actions.append(ExecAction(f"a{i}", f.container, f.location, UPDATE, updates))
            else:
                actions.append(ExecAction(f"a{i}", f.container, f.location, DELETE))
        announce()
        conn.apply(actions, lambda ids, rows, detail: None, matcher)
    return len(actions)


def lethe_killed_after_rewrite(target: str, argv: list[str]) -> int:
    from connectors import csvfiles
    from pii.cli import main as cli

    rewrite = csvfiles.CsvConnector._rewrite

    def rewrite_then_die(self, rel, todo):
        result = rewrite(self, rel, todo)
        if rel == target:
            os.kill(os.getpid(), signal.SIGKILL)
        return result

    csvfiles.CsvConnector._rewrite = rewrite_then_die
    return cli.main(argv)


if __name__ == "__main__":
    if sys.argv[1] == "kill-after-rewrite":
        sys.exit(lethe_killed_after_rewrite(sys.argv[2], sys.argv[3:]))
    erase_csv_folder(Path(sys.argv[1]), lambda: print("applying", file=sys.stderr, flush=True))
    print("done", file=sys.stderr, flush=True)
