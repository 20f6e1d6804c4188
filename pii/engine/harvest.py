"""The e-mail addresses and phone numbers held in records' identifying fields (a column named like an
e-mail or phone column; a mail's from/to): for suppression entries after a purge, and for the contacts a
last-contact retention rule finds in other stores. Never free text: a mention is not a contact."""
from __future__ import annotations

import re

from pii.core.config import Config
from pii.core.findings import Finding
from pii.core.subject import EMAIL_RE, normalise_email, normalise_phone

_PHONE_COL = re.compile(r"phone|mobile|tel", re.I)
_EMAIL_COL = re.compile(r"e-?mail|^from$|^to$", re.I)


def harvest_identifiers(findings: list[Finding], config: Config) -> dict:
    """E-mail addresses and phone numbers held in the identifying fields of records about to be deleted,
    for the suppression list (never the free text: a mention is not a person who was imported)."""
    own = {normalise_email(str(s.get("user_id") or "")) for s in config.stores.values() if s.kind == "gmail"}
    emails, phones = set(), set()
    for f in findings:
        for col, value in (f.record or {}).items():
            if not isinstance(value, str) or not value.strip():
                continue
            col = str(col)
            if _EMAIL_COL.search(col):
                for m in EMAIL_RE.findall(value):
                    e = normalise_email(m if isinstance(m, str) else m[0])
                    if e and e not in own:
                        emails.add(e)
            elif _PHONE_COL.search(col):
                p = normalise_phone(value, config.default_region)
                if p:
                    phones.add(p)
    return {"emails": sorted(emails), "phones": sorted(phones)}
