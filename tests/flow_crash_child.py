"""Child process for tests/engine/test_flow_crash.py: the `lethe` command line, SIGKILLed at one exact moment.

    python tests/flow_crash_child.py done:STORE:N LETHE-ARGS...

runs `lethe LETHE-ARGS...` and the process SIGKILLs itself the N-th time a connector of store STORE reports
a change as carried out (`done`: after the SQL transaction committed, after a CSV file was renamed into
place or dropped), before the ledger hears of it.

    python tests/flow_crash_child.py approve:N LETHE-ARGS...

SIGKILLs itself at the N-th approval, after the plan was stored and before it is approved.

    python tests/flow_crash_child.py rewrite:N LETHE-ARGS...

SIGKILLs itself in the middle of the N-th CSV rewrite: the temp file is written, about to be synced and
renamed over the original (a crash that leaves a temp file behind).

    python tests/flow_crash_child.py shred:N LETHE-ARGS...

SIGKILLs itself right after the N-th shredding of a request's sealed data, before the request is marked
completed (a verified plan whose re-run can no longer rebuild its target from the request store).

These moments are too short to hit often by timing a kill from outside.
"""
from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

if __name__ == "__main__":  # run as a script: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def kill_after_done(store: str, n: int) -> None:
    from connectors.csvfiles import CsvConnector
    from connectors.sql import SqlConnector

    calls = [0]

    def wrap(cls) -> None:
        real = cls.apply

        def apply(self, actions, done, matcher):
            if self.name != store:
                return real(self, actions, done, matcher)

            def done_then_die(ids, rows, detail):
                calls[0] += 1
                if calls[0] == n:
                    _die()
                return done(ids, rows, detail)

            return real(self, actions, done_then_die, matcher)

        cls.apply = apply

    wrap(SqlConnector)
    wrap(CsvConnector)


def kill_before_approval(n: int) -> None:
    from pii.engine.erasure import ErasureEngine

    real = ErasureEngine.approve
    calls = [0]

    def approve(self, *args, **kwargs):
        calls[0] += 1
        if calls[0] == n:
            _die()
        return real(self, *args, **kwargs)

    ErasureEngine.approve = approve


def kill_after_shred(n: int) -> None:
    from pii.ledger import Ledger

    real = Ledger.shred_subject
    calls = [0]

    def shred_subject(self, *args, **kwargs):
        gone = real(self, *args, **kwargs)
        calls[0] += 1
        if calls[0] == n:
            _die()
        return gone

    Ledger.shred_subject = shred_subject


def kill_in_rewrite(n: int) -> None:
    from connectors import fileformat

    real = os.fsync
    calls = [0]

    def fsync(fd):
        try:
            name = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            name = ""
        if fileformat.TMP_MARK in name:
            calls[0] += 1
            if calls[0] == n:
                _die()
        return real(fd)

    os.fsync = fsync  # the child's own process only


def main(moment: str, argv: list[str]) -> int:
    kind, _, rest = moment.partition(":")
    if kind == "done":
        store, _, n = rest.rpartition(":")
        kill_after_done(store, int(n))
    elif kind == "approve":
        kill_before_approval(int(rest))
    elif kind == "shred":
        kill_after_shred(int(rest))
    elif kind == "rewrite":
        kill_in_rewrite(int(rest))
    else:
        raise SystemExit(f"unknown moment {moment!r}")
    from pii.cli import main as cli

    return cli.main(argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2:]))
