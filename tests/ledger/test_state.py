"""Lethe's state database creates every declared table, whichever module touched the URL first."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

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
