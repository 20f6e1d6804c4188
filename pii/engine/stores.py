"""Opening a configured store: the one place the engine builds a connector, with the engine's defaults (the
config, the column inventory of the state DB, the configured Presidio model), so every caller (locate,
erasure, the special flows, the sweep, the Airflow tasks) opens stores the same way."""
from __future__ import annotations

from connectors import open_connector
from connectors.base import Progress, null_progress
from pii.core.config import Config, StoreConfig
from pii.core.detection import model_name
from pii.state.inventory import Inventory

_DEFAULT = object()


def connect(config: Config, store: StoreConfig | str, *, progress: Progress = null_progress, inventory=_DEFAULT):
    """The connector of `store` (a StoreConfig or its name), not yet connected (use it as a context
    manager). `inventory`: the column inventory to read and fill (default: the state DB's; None: none)."""
    if isinstance(store, str):
        store = config.stores[store]
    if inventory is _DEFAULT:
        inventory = Inventory(config.state_url)
    return open_connector(store, config=config, progress=progress, inventory=inventory,
                          analyzer_model=model_name(config.detection))
