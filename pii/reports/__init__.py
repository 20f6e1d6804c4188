"""Reports: what Lethe writes for people and auditors (the certificate, the flow plan report; the access
package and the data map are to move here too). Reports read the ledger's records; they decide nothing.
Every report file is written with `write_atomic`: a reader sees the old file or the new one, never half.

Every CSV cell a person may open in a spreadsheet goes through `spreadsheet_safe`: text starting with = + - @,
tab or CR gets a leading apostrophe, so it is shown, not run as a formula (OWASP, "CSV Injection"). The JSON
beside each CSV keeps the exact values. (The helper is pii.core.printable's: the ledger's audit export uses it
too.)"""
from __future__ import annotations

import os
from pathlib import Path



def write_atomic(path: Path, text: str) -> Path:
    """Write `text` beside `path` and rename it into place: readers see the old file or the new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w", encoding="utf-8", newline="") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return path
