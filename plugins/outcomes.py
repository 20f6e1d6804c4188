"""The one place where Lethe's errors become Airflow task outcomes.

| raised inside a task                                  | outcome                                        |
|-------------------------------------------------------|------------------------------------------------|
| StoreUnreachable, StoreError, PackageError            | raised as they are: the task retries            |
| ConfigError, InvalidIdentifier, LedgerError,          | AirflowFailException: fails at once, no retry   |
| ErasureBlocked (a hold, a plan in the wrong state)    | (retrying cannot fix a config, an identifier    |
|                                                       | or a refused state change)                      |
| UnsupportedStore (no connector for the kind yet)      | AirflowSkipException: the task is skipped       |
| anything else                                         | a generic error naming only the exception class |
|                                                       | (its message may hold values: set LETHE_DEBUG=1 |
|                                                       | to re-raise it as it is); the task retries      |

Lethe's messages name stores, places and ids, never personal values, so they are safe in task logs.
Airflow's own control-flow exceptions (skip, fail, deferral, awaiting input) pass through untouched.
"""
from __future__ import annotations

import functools
import os
from contextlib import contextmanager

from pii.core.errors import ConfigError, InvalidIdentifier, LedgerError, LetheError, StoreUnreachable

DEBUG_ENV = "LETHE_DEBUG"


class UnsupportedStore(LetheError):
    """A store whose kind this Lethe cannot handle in this flow yet: skipped, and said so."""

    exit_code = 2


class LetheTaskError(Exception):
    """An unexpected error, reported by class only (its message could carry a personal value)."""


def _fail_classes() -> tuple[type[BaseException], ...]:
    from pii.engine.erasure import ErasureBlocked

    return ConfigError, InvalidIdentifier, LedgerError, ErasureBlocked


def _is_airflow_control(exc: BaseException) -> bool:
    module = type(exc).__module__ or ""
    return module == "airflow" or module.startswith("airflow.")


def translate(exc: BaseException) -> BaseException | None:
    """The exception to raise instead of `exc`, or None to re-raise `exc` itself."""
    from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

    if _is_airflow_control(exc) or not isinstance(exc, Exception):
        return None
    if isinstance(exc, UnsupportedStore):
        return AirflowSkipException(str(exc))
    if isinstance(exc, _fail_classes()):
        return AirflowFailException(f"{type(exc).__name__}: {exc}")
    if isinstance(exc, (StoreUnreachable, LetheError)):
        return None  # retryable: unreachable store, failed store operation, package not written
    if os.environ.get(DEBUG_ENV) == "1":
        return None
    return LetheTaskError(f"unexpected {type(exc).__name__} (set {DEBUG_ENV}=1 on the workers for details)")


@contextmanager
def lethe_outcomes():
    """Run a block and map what it raises (see the module docstring)."""
    try:
        yield
    except BaseException as exc:
        replacement = translate(exc)
        if replacement is None:
            raise
        raise replacement from None


def mapped_errors(func):
    """Decorator form of `lethe_outcomes` for task bodies."""
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        with lethe_outcomes():
            return func(*args, **kwargs)
    return wrapper
