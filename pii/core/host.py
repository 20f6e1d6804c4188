"""Who and where this process is: the user named in the ledger, this host's identity, whether a process lives.

One module, because three places need the same answers: erasure locks (is the run holding this lock
dead?), and the CSV and FTP connectors' temp files (is the rewrite that left this file dead?). A pid only
means something on the host, boot and pid namespace that issued it, so every record of a process carries
`node_id()` (or its short form `host_tag()`), and a process is only ever judged dead on its own node.
"""
from __future__ import annotations

import functools
import getpass
import hashlib
import os
import socket


def current_user() -> str:
    """The person or account running Lethe, as written in the ledger: ``user on host``."""
    try:
        user = getpass.getuser()
    except Exception:  # noqa: BLE001 - no login name in some containers
        user = f"uid-{os.getuid()}"
    # "user on host", not "user@host": a fully qualified host name would read as an e-mail address
    return f"{user} on {socket.gethostname()}"


@functools.lru_cache(maxsize=1)
def node_id() -> str:
    """12 hex digits naming this host as its processes see it: host name, boot and pid namespace (two
    containers sharing a host name do not see each other's pids, and a reboot reuses them)."""
    parts = [socket.gethostname()]
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as fh:
            parts.append(fh.read().strip())
    except OSError:
        parts.append("")
    try:
        parts.append(str(os.stat("/proc/self/ns/pid").st_ino))
    except OSError:
        parts.append("")
    return hashlib.sha256("\0".join(parts).encode("utf-8")).hexdigest()[:12]


def host_tag() -> str:
    """`node_id()` shortened to 8 hex digits, for file names."""
    return node_id()[:8]


def process_gone(pid: int) -> bool:
    """True only when `pid` (of this node) is certainly not running: no such process, or a zombie (killed,
    not yet reaped: it runs no more code). Unknown (not POSIX, no permission) counts as alive."""
    if os.name != "posix" or pid <= 0:
        return False
    try:
        os.kill(pid, 0)  # signal 0: existence check only
    except ProcessLookupError:
        return True
    except OSError:  # EPERM: alive, another user's
        return False
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False


def run_gone(tag: str | None, pid: int) -> bool | None:
    """For what a run left, named with its `host_tag()` and pid (temp files, copy folders): True when that
    run is certainly over (this host's tag, and the pid no longer runs or is this very process, whose own
    live work the caller leaves alone: a dead run's pid reused); False when it may still run; None when
    another host left it (only its age can tell)."""
    if tag != host_tag():
        return None
    return pid == os.getpid() or process_gone(pid)
