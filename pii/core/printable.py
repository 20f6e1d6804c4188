"""What may be printed or stored about a place: a container named after the person is personal data.

A file called ``alice.smith@example.org.csv``, a folder ``Alice Smith/``, an attachment ``cv-alice-smith.pdf``
or a table ``customer_07700900123`` reveals whom it is about. Such names are evidence (the search reports
them), but progress lines, plans, the ledger, the inventory and reports show them withheld; only the
access package, which is the person's own, names them.

And what may be written into a CSV cell a person opens: `spreadsheet_safe` keeps a value from being run as a
spreadsheet formula.
"""
from __future__ import annotations

import re
from typing import Any

from pii.core.subject import EMAIL_RE, SubjectMatcher

_SEPARATORS = re.compile(r"[_\-.+/\\]+")


def names_subject(name: str, matcher: SubjectMatcher | None) -> bool:
    """Whether a container or file name holds one of the subject's identifiers (an email, a phone, a long id,
    or every word of a name), written with any of the usual file-name separators."""
    if not name or matcher is None:
        return False
    text = str(name)
    if matcher.find_in_text(text) or matcher.could_mention(text):
        return True
    spaced = _SEPARATORS.sub(" ", text)
    return spaced != text and bool(matcher.find_in_text(spaced))


def looks_personal(value, matcher: SubjectMatcher | None = None) -> bool:
    """A locator value that may be personal: an email address, a long digit run (a phone number), or one of
    the subject's identifiers."""
    if not isinstance(value, str):
        return False
    if EMAIL_RE.search(value) or sum(c.isdigit() for c in value) >= 7:
        return True
    return names_subject(value, matcher)


def withheld(kind: str, n: int) -> str:
    """How a person-named place is shown: its kind and position, never its name."""
    return f"<{kind} #{n}: its name names the subject, withheld>"


class PlaceNames:
    """Shows place names, withholding those that name the subject (numbered in order of first sight, so a
    run's lines can still be told apart)."""

    def __init__(self, matcher: SubjectMatcher | None, kind: str = "place"):
        self.matcher = matcher
        self.kind = kind
        self._withheld: dict[str, str] = {}

    def personal(self, name: str) -> bool:
        return name in self._withheld or names_subject(name, self.matcher)

    def __call__(self, name: str) -> str:
        if name in self._withheld:
            return self._withheld[name]
        if self.personal(name):
            self._withheld[name] = withheld(self.kind, len(self._withheld) + 1)
            return self._withheld[name]
        return name


def printable_finding(finding: dict) -> dict:
    """A finding safe to print: a row located by all its column values (no primary key) would print
    those values, so its key is withheld (the access package has it)."""
    if finding.get("note", "").startswith("no primary key"):
        finding = {**finding, "location": {**finding["location"], "key": "(all column values; withheld)"}}
    return finding


# A spreadsheet reads a cell starting with one of these as a formula (OWASP, "CSV Injection").
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(value: Any) -> Any:
    """One CSV cell as a spreadsheet should show it: text starting with = + - @, tab or CR gets a leading
    apostrophe, so the spreadsheet shows the text and does not run it as a formula (OWASP). Anything that is
    not text (numbers, None) is returned unchanged. For CSV files people open; JSON keeps exact values.
    Every writer of such a file uses it: the reports, the ledger's audit export, the CLI's exports."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def spreadsheet_safe_row(row: Any) -> Any:
    """`spreadsheet_safe` over a CSV row: every value of a dict (keys kept), or every cell of a sequence."""
    if isinstance(row, dict):
        return {k: spreadsheet_safe(v) for k, v in row.items()}
    return [spreadsheet_safe(v) for v in row]
