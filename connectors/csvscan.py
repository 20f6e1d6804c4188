"""Fast subject search over one CSV file: the raw text is tested block by block before any parsing.

A block (256 KiB of UTF-8, always ending where a record ends) whose folded text holds none of the subject's
tokens (an email, an id value, a name's longest token, a phone number's national digits) cannot hold a
matching record, so it is only counted, never parsed: records are the non-blank lines left once every
quoted field (which may hold newlines) is replaced by a placeholder. Blocks that do hold a token are parsed
by the csv module exactly as the slow path parses the file, so row numbers are the CSV reader's, always.

The prefilter is a superset of every detailed test (`RowFilter`, `match_row`): a matching email, id or name
token is a substring of the folded record, and a matching phone number keeps its national digits together
once the non-digits are removed. (Vanity numbers, letters for digits in a phone column, are the one form
this test does not read; the record-level filter still does where a block is parsed.)

An unterminated quote (a quoted field still open at the end of the file, which the csv module would read
as one field holding the rest of the file) is detected: the records before its line are read normally, and
from its line on each line is read as one record; the caller reports the file as partly read from there.
"""
from __future__ import annotations

import csv
import functools
import io
import re
import unicodedata
from dataclasses import dataclass
from typing import Iterator

from pii.core.subject import SubjectMatcher, fold

BLOCK_CHARS = 1 << 18  # 256 KiB: memory stays flat (a few blocks at a time), parsing a hit block is cheap
_NOT_DIGIT_BYTES = bytes(b for b in range(256) if not 0x30 <= b <= 0x39)
_NON_ASCII = re.compile(rb"[\x80-\xff]+")


def fold_specials() -> tuple[tuple[str, str], ...]:
    """The characters whose ASCII letters after NFKD differ from those `fold` gives, with what fold gives (ß
    and ẞ -> ss, typographic apostrophes -> '). tests/connectors/test_csv_fastscan.py checks every character of the
    Basic Multilingual Plane against `fold`, so a change there fails a test rather than a search."""
    return (("\u00df", "ss"), ("\u1e9e", "ss"), ("\u2019", "'"), ("\u02bc", "'"))


@functools.cache
def _non_ascii_digit_re() -> re.Pattern:
    """UTF-8 bytes of any decimal digit outside ASCII (they read as digits in `_fold_run`, not in NFKD)."""
    alts: dict[bytes, set[int]] = {}
    for code in range(0x80, 0x20000):  # decimal digits live in planes 0 and 1 (a test checks the rest)
        if unicodedata.category(chr(code)) == "Nd":
            e = chr(code).encode()
            alts.setdefault(e[:-1], set()).add(e[-1])
    return re.compile(b"|".join(re.escape(p) + b"[" + b"".join(re.escape(bytes([x])) for x in sorted(v)) + b"]"
                               for p, v in sorted(alts.items())))


_SPAN = re.compile(rb'"[^"]*+(?:""[^"]*+)*+"')  # a quoted field; possessive: a doubled quote never closes it
_SPAN_OR_OPEN = re.compile(rb'"[^"]*+(?:""[^"]*+)*+("?)')


@dataclass
class Unterminated:
    """Where a quoted field was left open: the physical line (1-based) and the first record read line by
    line from there."""

    line: int
    row: int


class RawNeedles:
    """The subject's tokens as the folded raw bytes (UTF-8) of a block must show them for a record to match.

    Folding is `pii.core.subject.fold`, applied to the block as bytes: ASCII letters lowered in place, each run of
    non-ASCII characters folded (and other scripts' digits read as digits), so the result equals
    ``fold(text).encode()`` at a fraction of the cost for mostly-ASCII text."""

    def __init__(self, matcher: SubjectMatcher, id_values=()):
        words = set(matcher.email_tokens) | set(matcher.text_id_values) | {str(v) for v in id_values}
        self.words = tuple(sorted({fold(w).encode() for w in words if w.strip()}))
        self.names = tuple(sorted({toks[0].encode() for toks in matcher.name_token_sets if toks}))
        self.digits = tuple(sorted({d.encode() for d in matcher.phone_digit_tokens if d}))
        self._runs: dict[bytes, bytes] = {}
        self._ascii = all(t.isascii() for t in self.words + self.names + self.digits)

    def __bool__(self) -> bool:
        return bool(self.words or self.names or self.digits)

    def _fold_run(self, m: re.Match) -> bytes:
        run = m.group()
        out = self._runs.get(run)
        if out is None:
            text = fold(run.decode("utf-8", "replace"))
            if any(c.isdigit() for c in text):
                text = "".join(str(unicodedata.decimal(c, "")) or c if c.isdigit() else c for c in text)
            out = text.encode("utf-8")
            if len(self._runs) > 50_000:
                self._runs.clear()
            self._runs[run] = out
        return out

    def hit(self, block: bytes) -> bool:
        low = block.lower()
        if self._has(low):
            return True
        if block.isascii():
            return False
        if self._ascii and _non_ascii_digit_re().search(block) is None:
            # the subject's tokens are ASCII: the ASCII letters NFKD leaves (accents split off and dropped,
            # ß and typographic apostrophes first written as fold writes them) hold every ASCII token that
            # `fold` would show; dropping other characters can only join words (a superset). C speed all
            # the way: about 4x the per-run folding below on accent-heavy text.
            text = block.decode("utf-8", "replace")
            for ch, rep in fold_specials():
                if ch in text:
                    text = text.replace(ch, rep)
            return self._has(unicodedata.normalize("NFKD", text).encode("ascii", "ignore").lower())
        return self._has(_NON_ASCII.sub(self._fold_run, low))

    def hit_exact(self, block: bytes) -> bool:
        """The same test through `fold` run by run (what `hit` is a fast superset of)."""
        low = block.lower()
        return self._has(low if block.isascii() else _NON_ASCII.sub(self._fold_run, low))

    def _has(self, low: bytes) -> bool:
        for w in self.words:
            if w in low:
                return True
        if self.names:
            bare = low.replace(b"'", b"") if b"'" in low else low
            for n in self.names:
                if n in bare:
                    return True
        if self.digits:
            digits = low.translate(None, _NOT_DIGIT_BYTES)
            for d in self.digits:
                if d in digits:
                    return True
        return False


class Utf8Reader:
    """A text file seen as UTF-8 bytes (`read`, `readline`), for files in other encodings."""

    def __init__(self, fh):
        self.fh = fh

    def read(self, n: int) -> bytes:
        return self.fh.read(n).encode("utf-8")

    def readline(self) -> bytes:
        return self.fh.readline().encode("utf-8")


class BlockReader:
    """Reads a CSV file as UTF-8 bytes in blocks that end where a record ends."""

    def __init__(self, fh, delimiter: str, skipinitialspace: bool, block_chars: int | None = None):
        self.fh = fh
        self.block_chars = block_chars or BLOCK_CHARS
        self.skip = skipinitialspace
        d = re.escape(delimiter.encode("utf-8"))
        lead = rb"[ ]*" if skipinitialspace else rb""
        body = rb'"[^"]*+(?:""[^"]*+)*+'
        start = rb"(?m)(?:^|(?<=" + d + rb"))" + lead
        self._quoted = re.compile(start + body + rb'"')  # exact: quoted fields only where a field starts
        self._open = re.compile(start + rb'"')
        self._any = re.compile(start + body + rb'("?)')
        self._starts = {b"", delimiter.encode("utf-8"), b"\n", b"\r"}  # what may stand before a field

    def dequoted(self, block: bytes) -> tuple[bytes, bool]:
        """(block with every quoted field replaced by one placeholder byte, whether a field is left open).

        Fast path: quoted spans anywhere, then a check that each began where a field begins; a file with
        quotes inside unquoted fields (``5" screen``) takes the exact, slower pattern."""
        if b'"' not in block:
            return block, False
        if not self.skip and b"\x00" not in block:
            deq = _SPAN.sub(b"\x00", block)
            if self._at_field_starts(deq, b"\x00") and (b'"' not in deq or self._at_field_starts(deq, b'"')):
                return deq, b'"' in deq
        deq = self._quoted.sub(b"x", block)
        return deq, self._open.search(deq) is not None

    def _at_field_starts(self, deq: bytes, mark: bytes) -> bool:
        """Whether every `mark` in `deq` stands where a field starts (block start, after a delimiter or a
        line end)."""
        return {part[-1:] for part in deq.split(mark)[:-1]} <= self._starts

    def blocks(self) -> Iterator[tuple[bytes, bytes, bool]]:
        """(block, its dequoted bytes, whether a quoted field is still open at the end of the file)."""
        while True:
            block = self.fh.read(self.block_chars)
            if not block:
                return
            block += self.fh.readline()  # to the end of the line: a block never splits a line
            deq, is_open = self.dequoted(block)
            if is_open:  # a quoted field goes on past the block: read on until it closes
                at = self.unclosed(block, 0)
                step = 1  # lines per read: doubled while the same field stays open, so a long one costs
                while at >= 0:  # O(n log n), and a block grows by little more than the field it ends in
                    more = b"".join(self.fh.readline() for _ in range(step))
                    if not more:
                        yield block, self.dequoted(block)[0], True
                        return
                    block += more
                    was, at = at, self.unclosed(block, at)
                    step = step * 2 if at == was else 1
                deq = self.dequoted(block)[0]
            yield block, deq, False

    def unclosed(self, block: bytes, start: int) -> int:
        """Offset of the first quoted field at or after `start` (a field start) that never closes, or -1."""
        pattern = self._any
        if not self.skip and b"\x00" not in block:  # quotes only where fields start: the fast pattern
            tail = block[start:]
            deq = _SPAN.sub(b"\x00", tail)
            if self._at_field_starts(deq, b"\x00") and self._at_field_starts(deq, b'"'):
                pattern = _SPAN_OR_OPEN
        for m in pattern.finditer(block, start):
            if not m.group(1):
                return m.start()
        return -1

    def open_field_start(self, block: bytes) -> int:
        """Offset in `block` of the line where the quoted field that never closes begins."""
        start = self.unclosed(block, 0)
        if start < 0:
            return len(block)
        nl = max(block.rfind(b"\n", 0, start), block.rfind(b"\r", 0, start))
        return nl + 1


def lone_cr(block: bytes) -> bool:
    """Old Mac line endings (CR alone): blocks cannot be cut at line ends, the file is read record by record."""
    return b"\r" in block and block.count(b"\r") != block.count(b"\r\n")


def count_records(dequoted: bytes) -> int | None:
    """Records in a block's dequoted bytes (quoted newlines already gone): its non-blank lines; None where
    a CR alone ends a line (the caller parses that block instead)."""
    lines = dequoted.split(b"\n")
    if b"\r" in dequoted:
        if dequoted.count(b"\r") != dequoted.count(b"\r\n"):
            return None
        return len(lines) - lines.count(b"") - lines.count(b"\r")
    return len(lines) - lines.count(b"")


def physical_lines(text: bytes) -> int:
    ends = text.count(b"\n")
    if b"\r" in text:
        ends += text.count(b"\r") - text.count(b"\r\n")
    return ends + (0 if not text or text.endswith((b"\n", b"\r")) else 1)


def parse_rows(text: str, delimiter: str, skipinitialspace: bool) -> Iterator[list[str]]:
    """Records of `text` exactly as the connector's csv reader reads them (blank lines give [])."""
    return csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, quotechar='"', doublequote=True,
                      skipinitialspace=skipinitialspace, strict=False)


def line_rows(text: str, delimiter: str, skipinitialspace: bool) -> Iterator[list[str]]:
    """Each physical line of `text` read as one record (for the rest of a file after an unterminated quote)."""
    for line in io.StringIO(text, newline=""):
        rows = list(parse_rows(line, delimiter, skipinitialspace))
        yield rows[0] if rows else []
