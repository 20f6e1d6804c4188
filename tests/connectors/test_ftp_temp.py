"""Local copies of remote files (issue 12.2): an FTP run keeps its downloaded copies (everyone's rows, in
plain text) in one private folder per store, ``<temp_dir>/lethe-ftp-<store>-<uid>`` (0700), each
operation's in a sub-folder ``<host tag>-<pid>-...`` (0700, files 0600) removed when it ends. A run killed
with SIGKILL cannot clean up: the next run removes what it left before downloading anything. Tested with a
real ``kill -9`` of a child process (tests/ftp_kill_child.py) against the in-process FTP server."""
from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from connectors import open_connector
from connectors.fakes.ftp_server import PASSWORD, PASSWORD_ENV, FtpServer
from connectors.ftp import HOST_TAG, STALE_COPY_SECONDS, FtpConnector
from pii.core.config import StoreConfig
from pii.core.errors import ConfigError, StoreError
from pii.core.subject import Subject, SubjectMatcher

REPO = Path(__file__).resolve().parents[2]
CHILD = REPO / "tests" / "ftp_kill_child.py"
MATCHER = SubjectMatcher(Subject.build(emails=["alice.smith@x.org"]))
LEADS = (b"email;name;notes\r\n"
         b"bob@x.org;Bob Jones;met at the fair\r\n"
         b"alice.smith@x.org;Alice Smith;prefers email\r\n"
         b"carol@x.org;Carol White;\r\n")
NOTES = b"rang bob@x.org\nnothing here\n"


@pytest.fixture
def server(tmp_path, monkeypatch):
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    with FtpServer(tmp_path / "home") as srv:
        srv.put("/incoming/leads.csv", LEADS)
        srv.put("/incoming/logs/notes.txt", NOTES)
        yield srv


@pytest.fixture
def temp_dir(tmp_path) -> Path:
    folder = tmp_path / "copies"
    folder.mkdir()
    return folder


def connect(server: FtpServer, temp_dir: Path, messages: list | None = None) -> FtpConnector:
    opts = server.store_options(path="/incoming", temp_dir=str(temp_dir))
    store = StoreConfig(name="partner_drop", kind="ftp", options=opts, base_dir=temp_dir.parent)
    progress = (lambda _s, m: messages.append(m)) if messages is not None else (lambda _s, _m: None)
    return open_connector(store, progress=progress)


def store_folder(temp_dir: Path) -> Path:
    return temp_dir / f"lethe-ftp-partner_drop-{os.getuid()}"


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def killed_run(server: FtpServer, temp_dir: Path, what: str) -> subprocess.CompletedProcess:
    child = subprocess.run([sys.executable, str(CHILD), what, server.host, str(server.port), str(temp_dir)],
                           cwd=REPO, capture_output=True, text=True, timeout=60)
    assert child.returncode == -signal.SIGKILL, (child.returncode, child.stderr[-2000:])
    assert "copy held" in child.stdout
    return child


def everything_under(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*"))


# --------------------------------------------------------------------------- kill -9
@pytest.mark.skipif(os.name != "posix", reason="SIGKILL and file modes are POSIX")
@pytest.mark.parametrize("what", ["scan", "erase"])
def test_when_a_run_is_killed_holding_a_copy_then_the_copy_is_private_and_the_next_run_removes_it(
        server, temp_dir, what):
    killed_run(server, temp_dir, what)

    # what the killed run left: its copy of the remote file, other people's rows in plain text ...
    root = store_folder(temp_dir)
    runs = [p for p in root.iterdir()]
    assert len(runs) == 1 and runs[0].name.startswith(f"{HOST_TAG}-") and runs[0].is_dir()
    files = [p for p in everything_under(runs[0]) if p.is_file()]
    assert files and any(b"bob@x.org" in f.read_bytes() for f in files)
    # ... but only its owner can read it
    assert mode(root) == 0o700 and mode(runs[0]) == 0o700
    assert all(mode(f) == 0o600 for f in files)
    assert server.read("/incoming/leads.csv") == LEADS  # the erasure never reached the server

    # the next run removes it before it downloads anything, and says how many (never what)
    messages: list[str] = []
    with connect(server, temp_dir, messages) as conn:
        findings = conn.locate(MATCHER)
        assert not runs[0].exists()
    assert [f.location for f in findings] == [{"path": "/incoming/leads.csv", "row": 2}]
    assert f"removed {len(files)} stale FTP copies left by killed runs" in messages
    assert not any("bob" in m for m in messages)
    assert everything_under(root) == []  # and after a normal run nothing is left


@pytest.mark.skipif(os.name != "posix", reason="SIGKILL is POSIX")
def test_when_a_later_run_only_checks_the_store_then_it_removes_a_killed_runs_copies_too(server, temp_dir):
    killed_run(server, temp_dir, "scan")
    assert everything_under(store_folder(temp_dir))
    messages: list[str] = []
    with connect(server, temp_dir, messages) as conn:
        conn.check()
    assert everything_under(store_folder(temp_dir)) == []
    assert any(m.startswith("removed 1 stale FTP copies") for m in messages)


# --------------------------------------------------------------------------- what counts as stale
def test_copies_of_live_runs_are_left_and_of_dead_or_long_idle_runs_removed(server, temp_dir):
    root = store_folder(temp_dir)
    root.mkdir(mode=0o700)
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        gone = subprocess.Popen([sys.executable, "-c", "pass"])
        gone.wait()
        folders = {
            "live": root / f"{HOST_TAG}-{sleeper.pid}-live",  # another run of this host, still working
            "dead": root / f"{HOST_TAG}-{gone.pid}-dead",  # its process is gone
            "reused": root / f"{HOST_TAG}-{os.getpid()}-reused",  # a dead run's pid, now this process's
            "other_host_busy": root / "0badc0de-1-busy",  # another host's: judged by age only
            "other_host_idle": root / "0badc0de-2-idle",
            "not_ours": root / "something-else",  # not a copy folder: never touched
        }
        for folder in folders.values():
            folder.mkdir(mode=0o700)
            (folder / "x.copy").write_bytes(b"bob@x.org;Bob\n")
        old = time.time() - STALE_COPY_SECONDS - 60
        for p in (folders["other_host_idle"] / "x.copy", folders["other_host_idle"]):
            os.utime(p, (old, old))
        messages: list[str] = []
        with connect(server, temp_dir, messages) as conn:
            conn.locate(MATCHER)
        left = {name for name, folder in folders.items() if folder.exists()}
        assert left == {"live", "other_host_busy", "not_ours"}
        assert "removed 3 stale FTP copies left by killed runs" in messages
    finally:
        sleeper.kill()
        sleeper.wait()


# --------------------------------------------------------------------------- normal ends
def test_when_an_operation_fails_or_a_sweep_is_abandoned_then_its_copies_are_removed(server, temp_dir):
    root = store_folder(temp_dir)
    with connect(server, temp_dir) as conn:
        def boom(remote, matcher):
            assert [p for p in everything_under(root) if p.is_file()]  # the copy exists right now
            raise RuntimeError("scanner broke")

        conn._scan = boom
        with pytest.raises(RuntimeError):
            conn.locate(MATCHER)
        assert everything_under(root) == []

    conn = connect(server, temp_dir)
    sampled = conn.sample_containers(["/incoming/leads.csv", "/incoming/logs/notes.txt"], 10, lambda: None)
    assert next(sampled).container == "/incoming/leads.csv"
    assert len(everything_under(root)) == 1  # the sweep's folder, between two files
    conn.close()  # the generator is never finished
    assert everything_under(root) == []
    del sampled


def test_when_an_erasure_finishes_then_no_copy_is_left_and_the_folder_stays_private(server, temp_dir):
    from connectors.base import DELETE, ExecAction

    root = store_folder(temp_dir)
    root.mkdir(mode=0o755)  # e.g. made by hand, or by a run under a looser umask
    with connect(server, temp_dir) as conn:
        remote = "/incoming/leads.csv"
        conn.apply([ExecAction("a1", remote, {"path": remote, "row": 2}, DELETE)], lambda *_a: None, MATCHER)
    assert b"alice" not in server.read(remote)
    assert everything_under(root) == []
    assert mode(root) == 0o700


# --------------------------------------------------------------------------- where copies may not live
def test_when_temp_dir_is_missing_or_the_store_folder_is_not_ours_then_nothing_is_downloaded(server, temp_dir):
    with connect(server, temp_dir / "nope") as conn, pytest.raises(ConfigError, match="temp_dir"):
        conn.locate(MATCHER)
    elsewhere = temp_dir.parent / "elsewhere"
    elsewhere.mkdir()
    store_folder(temp_dir).symlink_to(elsewhere, target_is_directory=True)  # a planted link
    with connect(server, temp_dir) as conn, pytest.raises(StoreError, match="not a folder of this user"):
        conn.locate(MATCHER)
    assert list(elsewhere.iterdir()) == []


def test_without_temp_dir_copies_go_under_the_system_temp_folder(server, tmp_path, monkeypatch):
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # what gettempdir() answers
    opts = server.store_options(path="/incoming")
    with open_connector(StoreConfig(name="partner drop/x", kind="ftp", options=opts, base_dir=tmp_path)) as conn:
        seen = []
        real = conn._scan
        conn._scan = lambda remote, matcher: (seen.append(conn._local_copy(remote)), real(remote, matcher))[1]
        conn.locate(MATCHER)
    root = tmp_path / f"lethe-ftp-partner_drop_x-{os.getuid()}"
    assert seen and all(root in p.parents for p in seen)
    assert everything_under(root) == []
