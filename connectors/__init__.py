"""Store connectors: one module per store kind. `open_connector` picks the class for a store's kind."""
from __future__ import annotations

from importlib import import_module

from pii.core.errors import ConfigError

_MODULES = {"sql": ("connectors.sql", "SqlConnector"), "csv": ("connectors.csvfiles", "CsvConnector"),
            "ftp": ("connectors.ftp", "FtpConnector"), "gmail": ("connectors.gmail", "GmailConnector")}


def connector_class(kind: str):
    try:
        module, cls = _MODULES[kind]
    except KeyError:
        raise ConfigError(f"no connector for store kind {kind!r}; known: {', '.join(_MODULES)}") from None
    try:
        return getattr(import_module(module), cls)
    except ModuleNotFoundError as exc:
        if exc.name == module:
            raise ConfigError(f"store kind {kind!r} is not supported yet by this version of Lethe") from None
        raise


def open_connector(store, **kwargs):
    return connector_class(store.kind)(store, **kwargs)
