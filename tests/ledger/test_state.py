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


RACE = """
import os, sys, time
sys.path.insert(0, {root!r})
os.environ["LETHE_LEDGER_KEY"] = "k" * 40
start = float(sys.argv[1])
while time.time() < start:  # every process opens the fresh ledger at the same moment
    time.sleep(0.001)
from datetime import date
from pii.core.subject import Subject
from pii.ledger import Ledger
ledger = Ledger({url!r})
ledger.create_request("erasure", Subject.build(emails=["p%d@example.test" % os.getpid()]), "race", date(2026, 12, 1))
print("ok")
"""


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_when_several_first_runs_open_a_fresh_ledger_at_once_then_all_of_them_work(kind, request, tmp_path):
    import time

    url = request.getfixturevalue("postgres_url") if kind == "postgresql" else f"sqlite:///{tmp_path / 's.db'}"
    code = RACE.format(root=str(ROOT), url=url)
    start = str(time.time() + 3.0)
    procs = [subprocess.Popen([sys.executable, "-c", code, start], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(4)]
    results = [(p.wait(timeout=120), p.stdout.read(), p.stderr.read()) for p in procs]
    assert [r[0] for r in results] == [0, 0, 0, 0], [r[2][-800:] for r in results if r[0]]
    from pii.ledger import Ledger

    assert len(Ledger(url, key=b"k" * 40).open_requests(("erasure",))) == 4
