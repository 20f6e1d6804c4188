"""The ledger key: where it comes from (``LETHE_LEDGER_KEY``, a ``ledger.key`` file beside a SQLite ledger, or
a per-process key for an in-memory one), the check value that refuses another key, and what is made with it
(the keyed MAC of every hash the ledger stores, the Fernet key of the request store)."""
from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
import tempfile
from pathlib import Path

from sqlalchemy import insert, select
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import IntegrityError

from pii.core.errors import LedgerError
from pii.ledger.schema import ledger_meta

log = logging.getLogger("pii.ledger")  # the name it logged under before the ledger became a package

KEY_ENV = "LETHE_LEDGER_KEY"
KEY_FILE = "ledger.key"
MIN_ENV_KEY_CHARS = 32
MIN_KEY_BYTES = 16

_memory_keys: dict[str, bytes] = {}


def resolve_key(url: str, key: bytes | str | None) -> bytes:
    """The key given, else ``LETHE_LEDGER_KEY``, else (SQLite only) the key file beside the database."""
    if key is not None:
        raw = key.encode("utf-8") if isinstance(key, str) else bytes(key)
        if len(raw) < MIN_KEY_BYTES:
            raise LedgerError(f"the ledger key must be at least {MIN_KEY_BYTES} bytes")
        return raw
    env = os.environ.get(KEY_ENV, "").strip()
    if env:
        if len(env) < MIN_ENV_KEY_CHARS:
            raise LedgerError(f"{KEY_ENV} must be at least {MIN_ENV_KEY_CHARS} characters "
                              f"(for example the output of: python -c 'import secrets; print(secrets.token_hex(32))')")
        return env.encode("utf-8")
    u = make_url(url)
    backend = u.get_backend_name()
    if backend != "sqlite":
        raise LedgerError(
            f"{KEY_ENV} is not set: a {backend} ledger is shared by several hosts, and every host must hash "
            f"identifiers with the same secret; set {KEY_ENV} to one value (32+ characters) on all of them")
    db = u.database or ""
    if not db or db == ":memory:" or db.startswith("file::memory:") or u.query.get("mode") == "memory":
        # An in-memory ledger dies with the process; so may its key.
        return _memory_keys.setdefault(url, secrets.token_hex(32).encode("ascii"))
    return _key_file(Path(db).resolve().parent / KEY_FILE)


def _key_file(path: Path) -> bytes:
    """Read `path`, creating it first (mode 0600, atomically: never half-written) if it does not exist."""
    for _ in range(3):
        try:
            text = path.read_text(encoding="ascii").strip()
        except FileNotFoundError:
            _create_key_file(path)
            continue
        except (OSError, UnicodeDecodeError) as exc:
            raise LedgerError(f"ledger key file {path} cannot be read: {exc.__class__.__name__}") from None
        if not text:
            raise LedgerError(f"ledger key file {path} is empty; restore it or set {KEY_ENV}")
        if os.name == "posix" and path.stat().st_mode & 0o077:
            log.warning("ledger key file %s is readable by other users; run chmod 600 on it", path)
        return text.encode("ascii")
    raise LedgerError(f"ledger key file {path} cannot be created")


def _create_key_file(path: Path) -> None:
    try:
        fd, tmp = tempfile.mkstemp(prefix=".ledger.key.", dir=path.parent)  # mkstemp makes it 0600
    except OSError as exc:
        raise LedgerError(f"ledger key file cannot be created in {path.parent}: {exc.__class__.__name__}") from None
    try:
        try:
            os.write(fd, (secrets.token_hex(32) + "\n").encode("ascii"))
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)  # fails if another process made it first: theirs wins
        except FileExistsError:
            pass
    finally:
        os.unlink(tmp)


def check_key(engine: Engine, key: bytes) -> None:
    """Store the key's check value on first use; refuse a key whose check value differs from the stored one."""
    check = hmac.new(key, b"lethe-ledger:key-check", hashlib.sha256).hexdigest()[:32]
    try:
        with engine.begin() as conn:
            conn.execute(insert(ledger_meta).values(name="key_check", value=check))
    except IntegrityError:
        pass
    with engine.connect() as conn:
        stored = conn.execute(select(ledger_meta.c.value).where(ledger_meta.c.name == "key_check")).scalar_one()
    if not hmac.compare_digest(stored, check):
        raise LedgerError(f"this ledger's hashes were made with another key: set {KEY_ENV} (or restore "
                          f"{KEY_FILE}) to the key the ledger was created with")


def keyed_mac(key: bytes, domain: str, value: str) -> str:
    """HMAC-SHA256 of `value` in `domain` (an identifier kind, "requester", "location"): hex."""
    return hmac.new(key, f"lethe-ledger:v1:{domain}\x00{value}".encode("utf-8"), hashlib.sha256).hexdigest()


def request_store_fernet(key: bytes):
    """The Fernet of the request store (and of kept addresses), derived from the ledger key."""
    import base64

    from cryptography.fernet import Fernet

    derived = hmac.new(key, b"lethe-ledger:v1:request-store", hashlib.sha256).digest()
    return Fernet(base64.urlsafe_b64encode(derived))
