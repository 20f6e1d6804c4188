"""Accounts kept as one folder each in a file drop (issue 15.2): inactivity, confirmation, closure.

The policies promise: "if there is no activity on your account for two years, we will contact you to
confirm it is still required before closing it and deleting the data", and "if you ask us to close your
account, we will delete the data within a month". stores.yaml:

```yaml
accounts:
  - name: partner-drops           # the rule's name (reports, the ledger's lineage)
    store: drops                  # an FTP store whose folder holds one sub-folder per account
    inactive_after: 2y            # no file newer than this: the account is inactive
    grace: 30d                    # how long the holder has to confirm (default 30d)
    close_within: 30d             # the promise for a closure request (default 30d)
    legal_basis: "contract ended" # optional, for plans and certificates
```

An account is the first folder level under the store's folder; its last activity is the newest
modification time of its files (listings only, no file is read). `review`:

1. an inactive account without an open notice gets one: a ledger request of kind `inactivity_notice`
   (the account name sealed like identifiers; the request's due date is the confirm-by date) and a line
   in the confirmation list for the mailing tool (account, last activity, confirm by);
2. an account with activity after its notice's last activity is confirmed: the notice is withdrawn;
3. an account whose notice passed its confirm-by date with no new activity is due: `closure_selection`
   plans the deletion of its files (whole files, approval, certificate, as every flow);
4. a notice whose account has no files left is completed.

`close_account` is a holder's own request: a ledger request of kind `account_closure`, due within
`close_within`, whose plan deletes the account's files.
"""
from __future__ import annotations

import csv
import datetime as dt
import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from pii.core.config import Config
from pii.core.errors import ConfigError, InvalidIdentifier
from pii.core.retention import Period
from pii.core.selection import FILE_TIME, RecordFilter
from pii.core.subject import Subject

NOTICE, CLOSURE, INACTIVE = "inactivity_notice", "account_closure", "inactive_account"
ACCOUNT_KEY = "lethe_account"  # the identifier kind an account is sealed under
_OPEN = ("open", "in_progress")


@dataclass(frozen=True)
class AccountRule:
    name: str
    store: str
    inactive_after: Period
    grace: Period
    close_within: Period
    legal_basis: str | None = None
    category: str = "Account data"

    def cutoff(self, run_date: dt.date) -> dt.date:
        """Accounts whose newest file is dated before this day are inactive on `run_date`."""
        return self.inactive_after.before(run_date)


def _days(period: Period, start: dt.date) -> int:
    """A period as a number of days from `start` (calendar months and years counted from there)."""
    if period.unit == "d":
        return period.count
    if period.unit == "w":
        return 7 * period.count
    months = period.count * (12 if period.unit == "y" else 1)
    y, m = divmod(start.year * 12 + start.month - 1 + months, 12)
    import calendar

    end = dt.date(y, m + 1, min(start.day, calendar.monthrange(y, m + 1)[1]))
    return (end - start).days


def account_rules(config: Config) -> list[AccountRule]:
    """stores.yaml's `accounts:` (its shape is checked with the rest of the file)."""
    rules = []
    for i, item in enumerate(config.raw.get("accounts") or []):
        here = f"{config.path or 'config'}: accounts[{i}] ({item['name']})"
        store = config.stores.get(item["store"])
        if store is None:
            raise ConfigError(f"{here}: 'store' names no configured store ({', '.join(config.stores)})")
        if store.kind != "ftp":
            raise ConfigError(f"{here}: an account rule needs an FTP store with one folder per account "
                              f"({item['store']} is {store.kind})")
        rules.append(AccountRule(
            name=item["name"], store=item["store"], inactive_after=Period.parse(item["inactive_after"], here),
            grace=Period.parse(item.get("grace", "30d"), here),
            close_within=Period.parse(item.get("close_within", "30d"), here),
            legal_basis=item.get("legal_basis"), category=item.get("category") or "Account data"))
    if len({r.name for r in rules}) != len(rules):
        raise ConfigError(f"{config.path or 'config'}: accounts: rule names must be unique")
    return rules


def account_rule(config: Config, *, name: str | None = None, store: str | None = None) -> AccountRule:
    rules = account_rules(config)
    found = [r for r in rules if (name is None or r.name == name) and (store is None or r.store == store)]
    if not found:
        what = f"named {name!r}" if name else f"for store {store!r}"
        raise ConfigError(f"no account rule {what} in stores.yaml 'accounts:' "
                          f"(rules: {', '.join(r.name for r in rules) or 'none'})")
    return found[0]


def check_account_name(account: str) -> str:
    """An account folder name: one path segment, no control characters (InvalidIdentifier otherwise)."""
    value = str(account or "").strip()
    if not value or "/" in value or value in (".", "..") or not value.isprintable():
        raise InvalidIdentifier("--account must be one folder name of the store (no '/', not empty)")
    return value


def _subject(rule: AccountRule, account: str) -> Subject:
    return Subject(ids={ACCOUNT_KEY: (f"{rule.store}/{account}".casefold(),)})


def _lineage(kind: str, rule: AccountRule, account: str) -> str:
    """Opaque and stable per account: one of the request's identifiers, never the account's name."""
    return "la" + hashlib.sha256(f"{kind}\0{rule.store}\0{account}".encode("utf-8")).hexdigest()[:22]


def activity(engine, rule: AccountRule) -> tuple[dict[str, dt.date | None], int]:
    """{account: newest file day (None: no readable time)} and how many files sit outside any account."""
    from pii.engine.stores import connect

    newest: dict[str, dt.date | None] = {}
    loose = 0
    with connect(engine.config, engine.config.stores[rule.store], progress=engine.progress) as conn:
        for rel, day in conn.file_days():
            if "/" not in rel:
                loose += 1
                continue
            account = rel.split("/", 1)[0]
            if account not in newest:
                newest[account] = day
            elif day is not None and (newest[account] is None or day > newest[account]):
                newest[account] = day
    return newest, loose


def _open_requests(ledger, rule: AccountRule, account: str, kind: str) -> list[str]:
    return [r for r in ledger.find_requests(_subject(rule, account))
            if (row := ledger.get_request(r))["kind"] == kind and row["status"] in _OPEN]


def review(engine, rule: AccountRule, run_date: dt.date, *, actor: str = "lethe: inactivity review") -> dict:
    """Walk the accounts of `rule` (see the module docstring). Returns counts and the lists the caller
    writes: "notify" (new notices) and "awaiting" (every open notice: account, last_activity, confirm_by),
    "due" (accounts whose files are to be deleted). Account names are the store's folder names: the
    confirmation list needs them; logs and the ledger never hold them in clear."""
    ledger = engine.ledger
    newest, loose = activity(engine, rule)
    cutoff = rule.cutoff(run_date)
    report = {"rule": rule.name, "store": rule.store, "run_date": run_date.isoformat(), "cutoff": cutoff.isoformat(),
              "accounts": len(newest), "outside_accounts": loose, "undated": 0, "notified": [], "awaiting": [],
              "due": [], "confirmed": 0, "closed": 0}
    for account in sorted(newest):
        day = newest[account]
        notices = _open_requests(ledger, rule, account, NOTICE)
        if day is None:
            report["undated"] += 1
            continue
        if day >= cutoff:
            last_known = [dt.date.fromisoformat(ledger.unseal_extra(n)["last_activity"]) for n in notices]
            for n in notices:  # activity since the notice: the holder still uses it
                if day > min(last_known):
                    ledger.set_request_status(n, "withdrawn", actor=actor)
                    report["confirmed"] += 1
            continue
        if not notices:
            confirm_by = run_date + dt.timedelta(days=_days(rule.grace, run_date))
            subject = _subject(rule, account)
            rid = ledger.create_request(NOTICE, subject, actor, run_date,
                                        due_in_days=_days(rule.grace, run_date))
            ledger.seal_subject(rid, subject, extra={"account": account, "last_activity": day.isoformat(),
                                                     "confirm_by": confirm_by.isoformat(), "rule": rule.name})
            entry = {"request_id": rid, "account": account, "last_activity": day.isoformat(),
                     "confirm_by": confirm_by.isoformat()}
            report["notified"].append(entry)
            report["awaiting"].append(entry)
            continue
        extra = ledger.unseal_extra(notices[0])
        entry = {"request_id": notices[0], "account": account, "last_activity": extra["last_activity"],
                 "confirm_by": extra["confirm_by"]}
        if run_date > dt.date.fromisoformat(extra["confirm_by"]):
            report["due"].append(entry)
        else:
            report["awaiting"].append(entry)
    # notices whose account is gone (deleted by a closure plan, or by its holder): done
    for rid in ledger.open_requests([NOTICE]):
        try:
            extra = ledger.unseal_extra(rid)
        except Exception:  # noqa: BLE001 - shredded or unreadable: nothing to compare
            continue
        if extra.get("rule") == rule.name and extra.get("account") not in newest:
            ledger.set_request_status(rid, "completed", actor=actor)
            ledger.shred_subject(rid, actor=actor)
            report["closed"] += 1
    return report


def write_confirmation_list(report: dict, path: Path) -> Path:
    """The accounts awaiting confirmation, for the mailing tool: account, last_activity, confirm_by
    (CSV, mode 0600, written atomically)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".csv")
    try:
        with os.fdopen(fd, "w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh)
            w.writerow(["account", "last_activity", "confirm_by"])
            for e in report["awaiting"]:
                w.writerow([_cell(e["account"]), e["last_activity"], e["confirm_by"]])
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _cell(value: str) -> str:
    """A folder name as a spreadsheet cell that cannot run as a formula."""
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


def closure_selection(rule: AccountRule, accounts: list[str], run_date: dt.date, *, requested: bool = False):
    """The selection deleting the files of `accounts` (whole files, every type, dated or not)."""
    from pii.engine.flows import Selection

    if not accounts:
        raise ValueError("no account to close")
    accounts = sorted(set(accounts))
    flt = RecordFilter(containers=tuple(f"{a}/*" for a in accounts) + tuple(f"{a}/**" for a in accounts),
                       date_column=FILE_TIME, before=run_date + dt.timedelta(days=2), whole_files=True)
    kind = CLOSURE if requested else INACTIVE
    why = ("the holder asked us to close the account" if requested else
           f"no activity on the account for {rule.inactive_after} and no confirmation within {rule.grace}")
    key = accounts[0] if len(accounts) == 1 else ",".join(accounts)
    description = {"rule": rule.name, "accounts": len(accounts), "run_date": run_date.isoformat()}
    if requested:
        description["due_in_days"] = _days(rule.close_within, run_date)
    return Selection(flow=kind, lineage=_lineage(kind, rule, key), filters={rule.store: [flt.to_spec()]},
                     reason=f"account rule {rule.name}: {why}", legal_basis=rule.legal_basis,
                     description=description)
