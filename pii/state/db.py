"""Lethe's own state database (inventory cache now; the erasure ledger builds on it).

Any SQLAlchemy URL; by default a SQLite file next to stores.yaml. One engine per URL and process.
"""
from __future__ import annotations

import threading

from sqlalchemy import MetaData, create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, InterfaceError, OperationalError, ProgrammingError

from pii.core.errors import ConfigError, StoreUnreachable

metadata = MetaData()
_engines: dict[str, Engine] = {}
_created: dict[str, int] = {}  # URL -> how many declared tables were created there
_lock = threading.Lock()


def state_engine(url: str) -> Engine:
    with _lock:
        engine = _engines.get(url)
        if engine is None:
            try:
                engine = create_engine(url, future=True, pool_pre_ping=True)
            except Exception as exc:  # bad URL or missing driver
                raise ConfigError(f"ledger URL cannot be used: {exc.__class__.__name__}") from None
            if engine.dialect.name == "sqlite":
                @event.listens_for(engine, "connect")
                def _sqlite_pragmas(dbapi_conn, _record):
                    cur = dbapi_conn.cursor()
                    cur.execute("PRAGMA journal_mode=WAL")
                    cur.execute("PRAGMA busy_timeout=30000")
                    cur.close()
            _engines[url] = engine
        # Tables are declared by the modules that use them (inventory, ledger): create any declared since
        # this URL was first seen, whichever module came first.
        if _created.get(url) != len(metadata.tables):
            try:
                with engine.connect():
                    pass
            except (OperationalError, InterfaceError) as exc:  # a closed port, a host that is down
                _engines.pop(url, None)
                raise StoreUnreachable("ledger", f"the state database cannot be reached "
                                                 f"({type(getattr(exc, 'orig', exc)).__name__})") from None
            create_tables(engine)
            _created[url] = len(metadata.tables)
        return engine


def create_tables(engine: Engine, tables=None) -> None:
    """Create the declared tables that do not exist yet. Safe when several processes do it at once on a
    fresh database: the loser of a race to create a table (it exists now) tries again and finds it."""
    import time

    for attempt in range(5):
        try:
            metadata.create_all(engine, tables=tables)
            return
        except (OperationalError, ProgrammingError, IntegrityError):  # another process created them meanwhile
            if attempt == 4:
                raise
            time.sleep(0.1 * (attempt + 1))
