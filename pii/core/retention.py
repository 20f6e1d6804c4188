"""Retention schedules: how long each kind of record is kept, and what happens when that time is up.

The schedule lives in stores.yaml under ``retention:`` (a list of rules) or in its own file
(``retention: {file: retention.yaml}``, the file holding ``rules: [...]``). A rule:

```yaml
- name: enquiries                 # unique; used in reports, the ledger and the data map
  store: crm                      # glob on the store name
  match: [enquiries]              # globs on tables (schema.table or table) / files / "*" for a mailbox
  date: received_at               # the column holding the record's date; file_time = the file's time,
                                  # message_date = a mail's date
  period: 2y                      # kept this long after that date: 90d, 6w, 3m, 2y (calendar months/years)
  category: Enquiries             # the data category, for the data map and records of processing
  action: delete                  # delete, or anonymise (for statistics: needs `anonymise:`)
  anonymise:                      # column -> operator (pii.core.policy operators, e.g. generalise_date,
    email: null                   #   postcode_district, null, redact, hash)
    date_of_birth: generalise_date
  where: {consent: withdrawn}     # optional: only records whose column equals one of these values
  legal_hold: "Litigation 2026-14" # optional: nothing under this rule is purged while set; reported
  legal_basis: "..."              # optional, for the records of processing
  override_retained: "..."        # optional: why this rule purges sooner than the store's declared retention
```

A rule may instead keep data for a period after a person's *last contact* ("five years after your last
communication with us"): `match` names the person table (a SQL store), `last_contact` replaces `date`:

```yaml
- name: customers-after-last-contact
  store: crm
  match: [customers]              # the person table
  last_contact:
    dates: [customers.last_login, orders.ordered_at, tickets.opened_at]   # the person table's own columns,
                                  # or columns of tables whose rows reference it by a foreign key
    elsewhere:                    # optional: contact recorded in other stores, matched by the person's
      - {store: exports, match: ["*.csv"], date: sent_at}   # e-mail addresses and phone numbers
      - {store: mailbox}          # mail from or to them (its message date)
  period: 5y
  category: Customers
  action: delete                  # delete: the person's row and the rows linked to it; anonymise
                                  # (statistics): the person's row, the linked rows staying as they are
```

A person expires when their latest contact date + period is before the run date; a person with no
contact date at all is counted as undated and kept. SQL does the work: one grouped query per linked table.

A record is *expired* on a run date when its date + period < run date (strictly: a record dated
2024-11-22 with period 2y expires on 2026-11-23). Policy holds (``holds:`` in the policy file) and a
rule's own `legal_hold` are honoured: held records are listed, never touched.
"""
from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any, Mapping

from pii.core.config import PERIOD_PATTERN, Config, read_yaml
from pii.core.errors import ConfigError
from pii.core.policy import OperatorSpec
from pii.core.selection import FILE_TIME, MESSAGE_DATE, RecordFilter

DELETE, ANONYMISE = "delete", "anonymise"
RULE_KEYS = ("name", "store", "match", "date", "period", "category", "action", "anonymise", "where",
             "legal_hold", "legal_basis", "description", "include_linked", "override_retained", "last_contact")
LAST_CONTACT = "@last_contact"  # a rule's `date` when it keeps data for a period after the last contact
ELSEWHERE_KEYS = ("store", "match", "date")
_PERIOD = re.compile(PERIOD_PATTERN, re.I)  # shared with stores.yaml's `metadata: {retained: ...}` check
_DATE_ALIASES = {"file_time": FILE_TIME, "@file_time": FILE_TIME, "message_date": MESSAGE_DATE,
                 "@message_date": MESSAGE_DATE}


@dataclass(frozen=True)
class Period:
    count: int
    unit: str  # d, w, m, y

    @classmethod
    def parse(cls, value: Any, where: str) -> "Period":
        m = _PERIOD.match(str(value)) if isinstance(value, (str, int)) and not isinstance(value, bool) else None
        if not m or int(m.group(1)) <= 0:
            raise ConfigError(f"{where}: 'period' must be a positive count with a unit, e.g. 90d, 6w, 3m, 2y")
        return cls(int(m.group(1)), m.group(2)[0].lower())

    def before(self, day: dt.date) -> dt.date:
        """`day` minus this period (calendar months and years; the 31st of a short month -> its last day)."""
        if self.unit == "d":
            return day - dt.timedelta(days=self.count)
        if self.unit == "w":
            return day - dt.timedelta(weeks=self.count)
        months = self.count * (12 if self.unit == "y" else 1)
        y, m = divmod(day.year * 12 + (day.month - 1) - months, 12)
        m += 1
        last = (dt.date(y + (m == 12), m % 12 + 1, 1) - dt.timedelta(days=1)).day
        return dt.date(y, m, min(day.day, last))

    def __str__(self) -> str:
        return f"{self.count}{self.unit}"


@dataclass
class RetentionRule:
    index: int
    name: str
    store: str
    match: tuple[str, ...]
    date: str
    period: Period
    category: str
    action: str = DELETE
    anonymise: dict[str, OperatorSpec] = field(default_factory=dict)
    where: dict[str, tuple[str, ...]] = field(default_factory=dict)
    legal_hold: str | None = None
    legal_basis: str | None = None
    description: str | None = None
    include_linked: bool = False
    # why this rule purges a container sooner than the store declares it kept (stores.yaml metadata
    # `retained:`); without it such a purge is flagged as a conflict in its plan
    override_retained: str | None = None
    # retention by last contact: the contact-date columns ("col" or "table.col") and the other stores'
    # sources ({"store", "match", "date"}); `date` is then LAST_CONTACT
    contact_dates: tuple[str, ...] = ()
    elsewhere: tuple[dict, ...] = ()

    @property
    def by_last_contact(self) -> bool:
        return bool(self.contact_dates)

    def cutoff(self, run_date: dt.date) -> dt.date:
        """Records dated before this day have expired on `run_date`."""
        return self.period.before(run_date)

    def covers_store(self, store: str) -> bool:
        return fnmatchcase(store, self.store)

    def covers(self, store: str, container: str) -> bool:
        """Whether this rule governs `container` (a table or file name) of `store`."""
        if not self.covers_store(store):
            return False
        names = {container, container.casefold(), container.rsplit("/", 1)[-1], container.rsplit(".", 1)[-1]}
        return any(fnmatchcase(n, p) or fnmatchcase(n.casefold(), p.casefold()) for p in self.match for n in names)

    def record_filter(self, run_date: dt.date, recent: dict | None = None) -> RecordFilter:
        """The rule's filter on `run_date`; for a last-contact rule, `recent`: the identifiers with a later
        contact in other stores (pii.engine.lastcontact.recent_contacts)."""
        if self.by_last_contact:
            return RecordFilter(containers=self.match, equals=dict(self.where), last_contact=self.contact_dates,
                                before=self.cutoff(run_date), recent=recent if self.elsewhere else None,
                                follow_links=self.action == DELETE)
        return RecordFilter(containers=self.match, equals=dict(self.where), date_column=self.date,
                            before=self.cutoff(run_date))

    def describe(self) -> dict:
        more = {"last_contact": list(self.contact_dates),
                "elsewhere": [dict(e) for e in self.elsewhere]} if self.by_last_contact else {}
        return {**more, "rule": self.name, "store": self.store, "match": list(self.match), "date": self.date,
                "period": str(self.period), "category": self.category, "action": self.action,
                "anonymise": {c: s.to_dict() for c, s in self.anonymise.items()},
                "where_columns": sorted(self.where), "legal_hold": self.legal_hold,
                "legal_basis": self.legal_basis}


@dataclass
class RetentionSchedule:
    rules: list[RetentionRule]
    source: str

    def rule(self, name: str) -> RetentionRule:
        for r in self.rules:
            if r.name == name:
                return r
        raise ConfigError(f"{self.source}: no retention rule named {name!r}; rules: "
                          f"{', '.join(r.name for r in self.rules) or 'none'}")

    def for_container(self, store: str, container: str) -> list[RetentionRule]:
        return [r for r in self.rules if r.covers(store, container)]


def load_schedule(config: Config) -> RetentionSchedule:
    """The schedule named by the config (empty when there is none)."""
    raw = config.raw.get("retention")
    source = f"{config.path or 'config'}: retention"
    if raw is None:
        return RetentionSchedule([], source)
    if isinstance(raw, (str, Mapping)) and not isinstance(raw, list):
        file = raw if isinstance(raw, str) else raw.get("file")
        if not file:
            raise ConfigError(f"{source}: give a list of rules or {{file: path}}")
        path = Path(file)
        if not path.is_absolute():
            path = config.base_dir / path
        data = read_yaml(path, "retention file")
        source = str(path)
        raw = data.get("rules") if isinstance(data, Mapping) else data
    return parse_schedule(raw, source, config.stores)


def parse_schedule(raw: Any, source: str, stores: Mapping[str, Any] | None = None) -> RetentionSchedule:
    if raw is None:
        raw = []
    if not isinstance(raw, list):
        raise ConfigError(f"{source}: the retention schedule must be a list of rules")
    rules: list[RetentionRule] = []
    seen: set[str] = set()
    for i, item in enumerate(raw):
        here = f"{source}: rules[{i}]"
        if not isinstance(item, Mapping):
            raise ConfigError(f"{here}: must be a mapping")
        unknown = [k for k in item if k not in RULE_KEYS]
        if unknown:
            raise ConfigError(f"{here}: unknown key(s) {', '.join(map(str, unknown))}; known: {', '.join(RULE_KEYS)}")
        name = item.get("name")
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_.\-]{1,80}", name or ""):
            raise ConfigError(f"{here}: 'name' is required: letters, digits, _ . - (at most 80)")
        if name in seen:
            raise ConfigError(f"{here}: the name {name!r} is used twice")
        seen.add(name)
        here = f"{source}: rule {name!r}"
        store = item.get("store")
        if not isinstance(store, str) or not store:
            raise ConfigError(f"{here}: 'store' is required (a store name or glob)")
        if stores is not None and not any(fnmatchcase(s, store) for s in stores):
            raise ConfigError(f"{here}: 'store' {store!r} names no configured store ({', '.join(stores)})")
        match = item.get("match", "*")
        match = [match] if isinstance(match, str) else match
        if not isinstance(match, list) or not match or not all(isinstance(m, str) and m for m in match):
            raise ConfigError(f"{here}: 'match' must be a table/file glob or a list of them")
        contact_dates, elsewhere = _last_contact(item, here, store, stores)
        date = item.get("date")
        if contact_dates:
            if date is not None:
                raise ConfigError(f"{here}: give 'date' or 'last_contact', not both")
            if "match" not in item:
                raise ConfigError(f"{here}: 'match' must name the person table of a last-contact rule")
            if item.get("include_linked") is not None:
                raise ConfigError(f"{here}: a last-contact rule always acts on the rows linked to the person: "
                                  f"leave out 'include_linked'")
            date = LAST_CONTACT
        elif not isinstance(date, str) or not date.strip():
            raise ConfigError(f"{here}: 'date' is required: a date column, file_time or message_date "
                              f"(or 'last_contact:' for a period after the person's last contact)")
        date = _DATE_ALIASES.get(date.strip(), date.strip())
        period = Period.parse(item.get("period"), here)
        category = item.get("category")
        if not isinstance(category, str) or not category.strip():
            raise ConfigError(f"{here}: 'category' is required (the data category, e.g. Enquiries)")
        action = item.get("action", DELETE)
        if action not in (DELETE, ANONYMISE):
            raise ConfigError(f"{here}: 'action' must be delete or anonymise")
        ops_raw = item.get("anonymise") or {}
        if not isinstance(ops_raw, Mapping):
            raise ConfigError(f"{here}: 'anonymise' must map columns to operators")
        ops = {str(c): OperatorSpec.from_dict(s, f"{here}, anonymise column {c!r}") for c, s in ops_raw.items()}
        if action == ANONYMISE and not ops:
            raise ConfigError(f"{here}: action anonymise needs 'anonymise:' (column -> operator) naming every "
                              f"identifying column")
        if action == DELETE and ops:
            raise ConfigError(f"{here}: 'anonymise:' applies only to action anonymise")
        if ops and date in (FILE_TIME, MESSAGE_DATE):
            raise ConfigError(f"{here}: anonymise needs records with columns, not {date}")
        where = item.get("where") or {}
        if not isinstance(where, Mapping):
            raise ConfigError(f"{here}: 'where' must map a column to a value or a list of values")
        where_t = {str(c): tuple(str(v) for v in (vs if isinstance(vs, list) else [vs])) for c, vs in where.items()}
        texts = {}
        for key in ("legal_hold", "legal_basis", "description", "override_retained"):
            v = item.get(key)
            if v is not None and (not isinstance(v, str) or not v.strip()):
                raise ConfigError(f"{here}: '{key}' must be a non-empty text")
            texts[key] = v.strip() if isinstance(v, str) else None
        linked = item.get("include_linked", False)
        if not isinstance(linked, bool):
            raise ConfigError(f"{here}: 'include_linked' must be true or false")
        if linked and action != DELETE:
            raise ConfigError(f"{here}: 'include_linked' goes with action delete")
        rules.append(RetentionRule(index=i, name=name, store=store, match=tuple(match), date=date, period=period,
                                   category=category.strip(), action=action, anonymise=ops, where=where_t,
                                   include_linked=linked, contact_dates=contact_dates, elsewhere=elsewhere,
                                   **texts))
    return RetentionSchedule(rules, source)


def _last_contact(item: Mapping, here: str, store: str, stores: Mapping[str, Any] | None
                  ) -> tuple[tuple[str, ...], tuple[dict, ...]]:
    """A rule's `last_contact:` (contact-date columns and other stores' sources), checked; ((), ()) without."""
    raw = item.get("last_contact")
    if raw is None:
        return (), ()
    where = f"{here}: last_contact"
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where} must be a mapping with 'dates' (and optionally 'elsewhere')")
    unknown = [str(k) for k in raw if k not in ("dates", "elsewhere")]
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; known: dates, elsewhere")
    dates = raw.get("dates")
    dates = [dates] if isinstance(dates, str) else dates
    if not isinstance(dates, list) or not dates or not all(
            isinstance(d, str) and re.fullmatch(r"[^.\s]+(\.[^.\s]+){0,2}", d.strip()) for d in dates):
        raise ConfigError(f"{where}: 'dates' must list contact-date columns: 'column' of the person table or "
                          f"'table.column' of a table referencing it")
    if stores is not None:
        kinds = {getattr(s, "kind", None) for n, s in stores.items() if fnmatchcase(n, store)}
        if kinds - {"sql"}:
            raise ConfigError(f"{where}: the person table must be in a SQL store ('store' {store!r} is not)")
    if not isinstance(raw.get("elsewhere") or [], list):
        raise ConfigError(f"{where}: 'elsewhere' must be a list of {{store, match, date}}")
    sources = []
    for j, src in enumerate(raw.get("elsewhere") or []):
        at = f"{where}: elsewhere[{j}]"
        if not isinstance(src, Mapping):
            raise ConfigError(f"{at} must be a mapping with 'store' (and 'match', 'date')")
        bad = [str(k) for k in src if k not in ELSEWHERE_KEYS]
        if bad:
            raise ConfigError(f"{at}: unknown key(s) {', '.join(bad)}; known: {', '.join(ELSEWHERE_KEYS)}")
        name = src.get("store")
        if not isinstance(name, str) or (stores is not None and name not in stores):
            raise ConfigError(f"{at}: 'store' must name a configured store"
                              + (f" ({', '.join(stores)})" if stores else ""))
        kind = getattr(stores[name], "kind", None) if stores is not None else None
        match = src.get("match", "*")
        match = [match] if isinstance(match, str) else match
        if not isinstance(match, list) or not match or not all(isinstance(m, str) and m for m in match):
            raise ConfigError(f"{at}: 'match' must be a table/file glob or a list of them")
        date = src.get("date", "message_date" if kind == "gmail" else None)
        if not isinstance(date, str) or not date.strip():
            raise ConfigError(f"{at}: 'date' is required: the column holding the contact's date")
        sources.append({"store": name, "match": list(match), "date": _DATE_ALIASES.get(date.strip(), date.strip())})
    return tuple(d.strip() for d in dates), tuple(sources)
