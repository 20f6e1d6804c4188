"""Lethe's state database creates every declared table, whichever module touched the URL first."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = """
import os, sys
sys.path.insert(0, {root!r})
os.environ["LETHE_LEDGER_KEY"] = "k" * 40
url = "sqlite:///" + {db!r}
from pii.ledger import Ledger          # the ledger sees the URL first ...
Ledger(url)
from pii.state.inventory import Inventory  # ... the inventory's table is declared only now
print(len(Inventory(url).rows()))
"""


def test_when_ledger_opens_the_url_before_inventory_is_imported_then_inventory_table_exists(tmp_path):
    code = SCRIPT.format(root=str(ROOT), db=str(tmp_path / "state.db"))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-1500:]
    assert proc.stdout.strip() == "0"


def test_when_the_ledger_database_cannot_be_reached_then_one_line_names_it_not_a_driver_message():
    from pii.core.errors import StoreUnreachable
    from pii.ledger import Ledger

    with pytest.raises(StoreUnreachable, match=r"store 'ledger' is unreachable: the state database cannot be "
                                               r"reached \(OperationalError\)") as err:
        Ledger("postgresql+psycopg://lethe@127.0.0.1:1/nowhere", key=b"k" * 32)
    assert err.value.exit_code == 4 and "127.0.0.1" not in str(err.value)
