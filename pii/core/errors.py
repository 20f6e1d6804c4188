"""One error hierarchy for Lethe. Messages name the store and the place, never a personal value."""
from __future__ import annotations


class LetheError(Exception):
    """Base of every error Lethe raises on purpose. `exit_code` is what the CLI exits with."""

    exit_code = 1


class ConfigError(LetheError):
    """stores.yaml (or another config file) is missing, unreadable or invalid."""

    exit_code = 2


class InvalidIdentifier(LetheError):
    """A subject identifier given on the command line or in a run conf cannot be used.

    The message says which kind of identifier and why, never the value itself.
    """

    exit_code = 2


class StoreUnreachable(LetheError):
    """A configured store cannot be reached (connection refused, missing folder, bad credentials)."""

    exit_code = 4

    def __init__(self, store: str, reason: str):
        self.store = store
        self.reason = reason
        super().__init__(f"store '{store}' is unreachable: {reason}")


class StoreError(LetheError):
    """A store was reached but an operation on it failed (names the store and the place)."""

    exit_code = 5

    def __init__(self, store: str, place: str, reason: str):
        self.store = store
        self.place = place
        self.reason = reason
        super().__init__(f"store '{store}', {place}: {reason}")


class PackageError(LetheError):
    """An access package cannot be written, read or decrypted."""

    exit_code = 6


class LedgerError(LetheError):
    """The erasure ledger refused an operation (a state change out of order, an expired plan, a missing
    key, a second approver who is the requester). Names the request, plan or action id and the states,
    never a personal value. A refusal: exit status 3 ("blocked", README), not 7 (an erasure that ran and
    did not complete)."""

    exit_code = 3


class RequestTermsRefused(LedgerError):
    """A change to a request's terms that the rules do not allow (an extension beyond two months, or asked
    for after the first due date passed): exit status 2, like other bad input."""

    exit_code = 2


class LedgerTampered(LedgerError):
    """The ledger's records do not match their keyed hashes: a plan, an approval or an audit event was
    written or changed by someone without the ledger key. Nothing is carried out."""

    exit_code = 3
