"""CSV search benchmark: how fast Lethe searches a folder of CSV exports for one subject, in MB/s per core,
against the floor of reading the same bytes once, and whether it finds exactly the planted rows.

    .venv/bin/python bench/csv_bench.py                 # 100 MB, mostly ASCII and accent-heavy variants
    .venv/bin/python bench/csv_bench.py --mb 20 --variants accented

Each variant writes one file (CRLF, quoted fields with doubled quotes and embedded newlines, an email, a
phone and a free-text column) to a temporary folder: ``ascii`` (names and text mostly ASCII) and
``accented`` (a third of the records hold accented names, decomposed accents, ß and typographic
apostrophes). The subject (an email, a phone and a name) is planted in three records: its email in one, its
phone written ``07700 900 456`` in another's note, its accented name in a third. Lethe's search is the CSV
connector's `locate` (files are read on one thread, so MB/s is per core), warm (best of 3 after one cold run); the floor is
reading the file and lower-casing its bytes once (best of 3). Output names rows and counts, never a planted
value. Exit status 0 when every run found exactly the planted rows, 1 otherwise.
"""
from __future__ import annotations

import argparse
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SUBJECT = dict(names=["Zoë Quillfeather"], emails=["zoe.quillfeather@csv-bench.test"], phones=["07700 900456"])
FIRST = "Oliver Amelia George Isla Harry Ava Jack Mia Noah Grace Leo Ella Oscar Lily Max Freya".split()
LAST = "Smith Jones Taylor Brown Williams Wilson Johnson Davies Robinson Wright Thompson Evans".split()
FIRST_ACC = "Zoë Chloé Léa José Ángel Ñuño Renée Maël Agnès Sørina Jürgen Ömer".split()
LAST_ACC = ["Müller", "Dupré", "Sánchez", "Strauß", "O\u2019Connell", "Lefe\u0300vre", "Ørsted", "Gonçalves"]
WORDS = "order delivered call back about the invoice refund parcel account newsletter renewal".split()
WORDS_ACC = "café crème brûlée déjà vu naïve façade entrée rôle piñata über".split()


def build(path: Path, mb: float, accented: bool, seed: int) -> dict:
    """Write the file; return {"bytes", "records", "planted": {row numbers}} (row 1 = first data row)."""
    rnd = random.Random(seed)
    target = int(mb * 1_000_000)
    planted_at = {int(target * 0.25): "email", int(target * 0.6): "phone", int(target * 0.95): "name"}
    marks = sorted(planted_at)
    planted: set[int] = set()
    size = 0
    row = 0
    with path.open("w", encoding="utf-8", newline="") as fh:
        header = "id,name,email,phone,note\r\n"
        fh.write(header)
        size += len(header.encode())
        while size < target:
            row += 1
            acc = accented and rnd.random() < 1 / 3
            first = rnd.choice(FIRST_ACC if acc else FIRST)
            last = rnd.choice(LAST_ACC if acc else LAST)
            words = [rnd.choice(WORDS_ACC if acc and rnd.random() < 0.5 else WORDS) for _ in range(rnd.randint(4, 14))]
            note = " ".join(words)
            if rnd.random() < 0.05:
                note = f'{note} ""quoted""\r\nsecond line'
            email = f"{first.lower()}.{row}@example.org"
            phone = f"07700 8{row % 100000:05d}" if rnd.random() < 0.5 else f"+44 7700 8{row % 100000:05d}"
            kind = None
            if marks and size >= marks[0]:
                kind = planted_at[marks.pop(0)]
            if kind == "email":
                email = SUBJECT["emails"][0]
            elif kind == "phone":
                note = f"{note}, call her on 07700 900 456"
            elif kind == "name":
                first, last = "ZOË", "Quillfeather"
            if kind:
                planted.add(row)
            line = f'{row},"{first} {last}",{email},{phone},"{note}"\r\n'
            fh.write(line)
            size += len(line.encode())
    return {"bytes": size, "records": row, "planted": planted}


def floor(path: Path, runs: int = 3) -> float:
    best = float("inf")
    for _ in range(runs):
        t = time.perf_counter()
        with path.open("rb") as fh:
            while chunk := fh.read(1 << 18):
                chunk.lower()
        best = min(best, time.perf_counter() - t)
    return best


def lethe(folder: Path) -> tuple[float, set[int]]:
    from connectors.csvfiles import CsvConnector
    from pii.core.config import StoreConfig
    from pii.core.subject import Subject, SubjectMatcher

    cfg = StoreConfig(name="exports", kind="csv", options={"path": str(folder)},
                      base_dir=str(folder))
    conn = CsvConnector(cfg)
    matcher = SubjectMatcher(Subject.build(**SUBJECT, region="GB"))
    t = time.perf_counter()
    found = conn.locate(matcher)
    elapsed = time.perf_counter() - t
    return elapsed, {int(f.location.get("row", 0)) for f in found}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mb", type=float, default=100.0)
    ap.add_argument("--variants", choices=("ascii", "accented", "both"), default="both")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--seed", type=int, default=20261202)
    a = ap.parse_args(argv)
    variants = ["ascii", "accented"] if a.variants == "both" else [a.variants]
    ok = True
    lines = []
    for v in variants:
        folder = Path(tempfile.mkdtemp(prefix=f"lethe-csvbench-{v}-"))
        try:
            path = folder / f"contacts_{v}.csv"
            t = time.perf_counter()
            w = build(path, a.mb, v == "accented", a.seed)
            print(f"== {v}: {w['bytes'] / 1e6:.1f} MB, {w['records']:,} records, written in "
                  f"{time.perf_counter() - t:.1f}s", flush=True)
            fl = floor(path, a.runs)
            cold, rows = lethe(folder)
            warm = [lethe(folder) for _ in range(a.runs)]
            best = min(s for s, _ in warm)
            good = rows == w["planted"] and all(r == w["planted"] for _, r in warm)
            ok = ok and good
            mbs = w["bytes"] / 1e6
            print(f"floor (read + lower): {fl:.2f}s = {mbs / fl:.0f} MB/s", flush=True)
            print(f"lethe cold {cold:.2f}s, warm best {best:.2f}s = {mbs / best:.1f} MB/s "
                  f"(runs: {', '.join(f'{s:.2f}' for s, _ in warm)})", flush=True)
            print(f"recall: {len(rows & w['planted'])}/{len(w['planted'])} planted rows, "
                  f"{len(rows - w['planted'])} unexpected", flush=True)
            lines.append(f"csv variant={v} mb={mbs:.1f} floor={mbs / fl:.0f}MB/s lethe={mbs / best:.1f}MB/s "
                         f"ratio={best / fl:.1f}x recall={'ok' if good else 'FAILED'}")
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    print("\n```")
    print("\n".join(lines))
    print("```")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
