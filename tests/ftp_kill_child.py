"""Child process for tests/connectors/test_ftp_temp.py.

    python tests/ftp_kill_child.py scan|erase HOST PORT TEMP_DIR

opens an FtpConnector on the test FTP server's /incoming (password in the variable the test set, as a
store's password_env names it; local copies under TEMP_DIR) and SIGKILLs itself while a downloaded copy
exists, as ``kill -9`` would: no `finally`, no `close`, no cleanup runs. ``scan``: in the middle of a
`locate`, once the first file has been downloaded. ``erase``: in the middle of an `apply` deleting row 2 of
/incoming/leads.csv, after the copy was rewritten and before its upload. Writes "copy held" on stdout
just before the kill.
"""
from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

if __name__ == "__main__":  # run as a script: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from connectors.base import DELETE, ExecAction  # noqa: E402
from connectors.fakes.ftp_server import PASSWORD_ENV, USER  # noqa: E402
from connectors.ftp import FtpConnector  # noqa: E402
from pii.core.config import StoreConfig  # noqa: E402
from pii.core.subject import Subject, SubjectMatcher  # noqa: E402


def die(*_args, **_kwargs):
    sys.stdout.write("copy held\n")
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def main(mode: str, host: str, port: str, temp_dir: str) -> int:
    options = {"host": host, "port": int(port), "user": USER, "password_env": PASSWORD_ENV, "path": "/incoming",
               "temp_dir": temp_dir}
    conn = FtpConnector(StoreConfig(name="partner_drop", kind="ftp", options=options, base_dir=Path(temp_dir)))
    matcher = SubjectMatcher(Subject.build(emails=["alice.smith@x.org"]))
    if mode == "scan":
        conn._scan = die
        conn.locate(matcher)
    elif mode == "erase":
        conn._upload_and_replace = die
        remote = "/incoming/leads.csv"
        conn.apply([ExecAction("a1", remote, {"path": remote, "row": 2}, DELETE)], lambda *_a: None, matcher)
    return 3  # not killed: the test fails on this exit status


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
