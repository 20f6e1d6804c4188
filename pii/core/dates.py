"""Dates as stored values hold them: parsing the forms records use, completed years of age, years back."""
from __future__ import annotations

import datetime as dt
import re
from typing import Any

_ISO = re.compile(r"^\s*(\d{4})-(\d{1,2})-(\d{1,2})(?:[T ].*)?$")
_YMD_SLASH = re.compile(r"^\s*(\d{4})/(\d{1,2})/(\d{1,2})(?:[T ].*)?$")
_DMY = re.compile(r"^\s*(\d{1,2})[/.\-](\d{1,2})[/.\-](\d{4})(?:\s.*)?$")
_COMPACT = re.compile(r"^\s*(\d{4})(\d{2})(\d{2})\s*$")


def parse_date(value: Any, *, day_first: bool = True) -> dt.date | None:
    """A date from a stored value: date/datetime objects, ISO text ("2024-05-01", "2024-05-01T10:00:00Z"),
    "2024/05/01", "01/05/2024" (day first unless `day_first` is False; "31/12/2024" either way), "20240501",
    or a Unix timestamp (int/float seconds). None when there is no readable date."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    if isinstance(value, (int, float)):
        if value > 10**11:  # milliseconds
            value = value / 1000
        try:
            return dt.datetime.fromtimestamp(float(value), dt.timezone.utc).date()
        except (OverflowError, OSError, ValueError):
            return None
    text = str(value).strip()
    if not text:
        return None
    for rx, order in ((_ISO, "ymd"), (_YMD_SLASH, "ymd"), (_COMPACT, "ymd"), (_DMY, "dmy")):
        m = rx.match(text)
        if not m:
            continue
        a, b, c = (int(x) for x in m.groups())
        if order == "ymd":
            y, mo, d = a, b, c
        else:
            y = c
            d, mo = (a, b) if day_first else (b, a)
            if mo > 12 and d <= 12:  # unambiguous the other way round
                d, mo = mo, d
        try:
            return dt.date(y, mo, d)
        except ValueError:
            return None
    return None


def age_on(born: dt.date, today: dt.date) -> int:
    """Completed years between `born` and `today` (a birthday on 29 February counts on 1 March)."""
    years = today.year - born.year
    if (today.month, today.day) < (born.month, born.day):
        years -= 1
    return years


def years_before(today: dt.date, years: int) -> dt.date:
    """The same calendar day `years` years earlier (29 February -> 28 February)."""
    try:
        return today.replace(year=today.year - years)
    except ValueError:
        return today.replace(year=today.year - years, day=28)
