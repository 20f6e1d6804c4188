"""Retention by last contact (pii.core.retention: a rule with `last_contact:`): who had a later contact
in another store.

The person table's own clock (its contact-date columns, and the dates of rows referencing each person) is
read by the SQL connector in one grouped query per linked table (`RecordFilter.last_contact`). Contact
recorded elsewhere (a CSV export of sent newsletters, an FTP drop, mail from or to the person) is matched by
the person's identifiers: each source is searched once for records dated on or after the cutoff (pushed
down as the connectors' own date selection: a Gmail `after:` search, a streaming pass over files, a SQL
`WHERE`), and the e-mail addresses and phone numbers in their identifying fields are collected. Those people
are kept. The set is personal data: it lives in the selection sealed in the request store, and plans and
reports show only its size.
"""
from __future__ import annotations

import datetime as dt

from pii.core.retention import RetentionRule
from pii.core.selection import RecordFilter


def recent_contacts(engine, rule: RetentionRule, run_date: dt.date) -> dict | None:
    """{"emails": [...], "phones": [...]}: identifiers with a contact on or after the rule's cutoff in the
    rule's `elsewhere` sources (None when it names none)."""
    if not rule.elsewhere:
        return None
    from pii.engine.harvest import harvest_identifiers
    from pii.engine.stores import connect

    cutoff = rule.cutoff(run_date)
    config = engine.config
    emails: set[str] = set()
    phones: set[str] = set()
    for source in rule.elsewhere:
        flt = RecordFilter(containers=tuple(source["match"]), date_column=source["date"],
                           after=cutoff - dt.timedelta(days=1))  # strictly after the day before: on or after
        with connect(config, config.stores[source["store"]], progress=engine.progress) as conn:
            found = conn.select(flt)
            for container, why in conn.skipped:
                engine.progress(source["store"], f"{container}: not read for last contact ({why})")
        got = harvest_identifiers(found, config)
        emails.update(got["emails"])
        phones.update(got["phones"])
        engine.progress(source["store"], f"{len(found)} records of contact since {cutoff.isoformat()} "
                                         f"(rule {rule.name})")
    return {"emails": sorted(emails), "phones": sorted(phones)}
