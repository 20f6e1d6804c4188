"""Rectification, the pure part: the changes a request asks for (`--set email=NEW`), which fields of a
record hold a value being corrected, and the new value written in that field's own form.

- **Changes.** `parse_changes` reads ``KIND=VALUE`` items (kinds: email, phone, name); errors are one line,
  name the kind and never the value: an unknown kind, a repeated kind, an invalid new email or phone, a
  name without a word of two or more letters. `check_changes` refuses a new value equal to the old one
  and a change whose old value the request does not name (the plan must know what it replaces).
- **Fields.** `identifier_fields(record, matcher, kinds)`: the columns that hold one of the subject's old
  values as a whole value (normalised as a DSAR matches them: case-folded email, E.164 phone, name tokens
  in any order), and split given/family name columns whose pair is the old name.
  `mention_fields`: free-text columns that mention an old value (someone else's words: review only).
- **Forms.** The new value is written as the old one was: a phone in E.164 (``+442079460123``), spaced
  international (``+44 20 7946 0123``) or national (``020 7946 0123``, or without spaces when the old had
  none); an e-mail lower-case where the old was lower-case (upper where upper, else as given); a name as
  "Last, First" where the old used a comma, in the old one's capitals (``SMITH, Alice`` -> ``JONES, Alice``),
  and split over given and family columns.

Nothing here logs, prints or raises a personal value.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

import phonenumbers

from pii.core.errors import InvalidIdentifier
from pii.core.subject import (
    ENTITY_EMAIL, ENTITY_PERSON, ENTITY_PHONE, Subject, SubjectMatcher, email_key, name_key, normalise_phone,
)

EMAIL, PHONE, NAME = "email", "phone", "name"
KINDS = (EMAIL, PHONE, NAME)
GIVEN, FAMILY, MENTION = "given_name", "family_name", "mention"  # field kinds besides the three above
FIELD_KINDS = (EMAIL, PHONE, NAME, GIVEN, FAMILY, MENTION)
OPERATOR = "rectify"
_ENTITY_OF = {EMAIL: ENTITY_EMAIL, PHONE: ENTITY_PHONE, NAME: ENTITY_PERSON}
_KIND_OF_ENTITY = {v: k for k, v in _ENTITY_OF.items()}


# ---------------------------------------------------------------------------- the changes
@dataclass(frozen=True)
class Changes:
    """New values per kind, as given (trimmed) and normalised. JSON through `to_dict` (personal: sealed)."""

    email: str | None = None   # as given, trimmed
    phone: str | None = None   # E.164
    name: str | None = None    # as given, spaces collapsed

    @property
    def kinds(self) -> tuple[str, ...]:
        return tuple(k for k in KINDS if getattr(self, k))

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.kinds}

    @classmethod
    def from_dict(cls, data: Mapping) -> "Changes":
        return cls(**{k: data.get(k) for k in KINDS})


def parse_changes(items: Iterable[str], region: str) -> Changes:
    """``["email=NEW", "phone=NEW", "name=NEW"]`` -> Changes (InvalidIdentifier on bad input)."""
    found: dict[str, str] = {}
    for i, item in enumerate(items or (), 1):
        kind, sep, value = str(item).partition("=")
        kind = kind.strip().lower()
        if not sep:
            raise InvalidIdentifier(f"--set #{i} must be FIELD=VALUE (fields: {', '.join(KINDS)})")
        if kind not in KINDS:
            raise InvalidIdentifier(f"--set #{i}: unknown field {kind[:30]!r}; fields: {', '.join(KINDS)}")
        if kind in found:
            raise InvalidIdentifier(f"--set {kind} is given twice")
        found[kind] = value
    if not found:
        raise InvalidIdentifier(f"give at least one --set FIELD=VALUE (fields: {', '.join(KINDS)})")
    return changes_of(found, region)


def changes_of(values: Mapping[str, Any], region: str) -> Changes:
    """Validate new values given per kind (CLI or a DAG run's conf)."""
    out: dict[str, str] = {}
    for kind, raw in values.items():
        if raw is None or str(raw).strip() == "":
            if kind in KINDS:
                raise InvalidIdentifier(f"the new {kind} is empty")
            continue
        if kind not in KINDS:
            raise InvalidIdentifier(f"unknown field {str(kind)[:30]!r}; fields: {', '.join(KINDS)}")
        value = str(raw).strip()
        if kind == EMAIL:
            key, why = email_key(value)
            if key is None:
                raise InvalidIdentifier(f"the new email is {why}")
            out[kind] = value.strip("<>").strip()
        elif kind == PHONE:
            e164 = normalise_phone(value, region)
            if e164 is None:
                raise InvalidIdentifier(f"the new phone is not a valid phone number (national numbers are read "
                                        f"in region {region})")
            out[kind] = e164
        else:
            if not name_key(value):
                raise InvalidIdentifier("the new name has no word of two or more letters")
            out[kind] = " ".join(value.split())
    if not out:
        raise InvalidIdentifier(f"give at least one new value ({', '.join(KINDS)})")
    return Changes(**out)


def check_changes(subject: Subject, changes: Changes) -> None:
    """Refuse a change the request cannot carry out: no old value of that kind among the identifiers, or a
    new value that is one of the old ones."""
    if subject.is_empty():
        raise InvalidIdentifier("at least one identifier is required (email, name, phone or id)")
    if changes.email:
        if not subject.emails:
            raise InvalidIdentifier("--set email needs the current email among the identifiers (--email)")
        if email_key(changes.email)[0] in subject.emails:
            raise InvalidIdentifier("the new email is the same as the current one")
    if changes.phone:
        if not subject.phones:
            raise InvalidIdentifier("--set phone needs the current phone among the identifiers (--phone)")
        if changes.phone in subject.phones:
            raise InvalidIdentifier("the new phone is the same as the current one")
    if changes.name:
        if not subject.names:
            raise InvalidIdentifier("--set name needs the current name among the identifiers (--name)")
        if name_key(changes.name) in [name_key(n) for n in subject.names]:
            raise InvalidIdentifier("the new name is the same as the current one")


def old_subject(subject: Subject, changes: Changes) -> Subject:
    """The identifiers whose old values are corrected (the kinds being set): what must be gone afterwards."""
    return Subject(emails=subject.emails if changes.email else (), phones=subject.phones if changes.phone else (),
                   names=subject.names if changes.name else (), region=subject.region)


def new_subject(subject: Subject, changes: Changes) -> Subject:
    """The person as they are after the change: the kinds set take their new values, the rest stay."""
    return Subject(
        emails=(email_key(changes.email)[0],) if changes.email else subject.emails,
        phones=(changes.phone,) if changes.phone else subject.phones,
        names=(changes.name,) if changes.name else subject.names,
        ids=subject.ids, region=subject.region)


# ---------------------------------------------------------------------------- the fields
def _column_kind(column: str) -> str | None:
    from pii.core.classify import kind_from_name

    return kind_from_name(str(column))


def identifier_fields(record: Mapping[str, Any] | None, matcher: SubjectMatcher, kinds: Iterable[str]) -> dict[str, str]:
    """column -> field kind (email, phone, name, given_name, family_name) for every identifier field of the
    record holding an old value of one of `kinds` (the matcher is built from the old values only)."""
    from pii.core.inventory import EMAIL as K_EMAIL, FAMILY_NAME, FREE_TEXT, GIVEN_NAME, NAME as K_NAME, PHONE as K_PHONE

    kinds = set(kinds)
    out: dict[str, str] = {}
    if not record:
        return out
    given = [c for c in record if _column_kind(c) == GIVEN_NAME]
    family = [c for c in record if _column_kind(c) == FAMILY_NAME]
    for col, value in record.items():
        if not isinstance(value, str) or not value.strip():
            continue
        ck = _column_kind(col)
        if ck in (GIVEN_NAME, FAMILY_NAME):
            continue
        if EMAIL in kinds and ck != FREE_TEXT and matcher.email_matches(value):
            out[col] = EMAIL
        elif PHONE in kinds and ck not in (FREE_TEXT, K_EMAIL, K_NAME) and matcher.phone_matches(value):
            out[col] = PHONE
        elif NAME in kinds and ck in (K_NAME, None) and ck != K_PHONE and matcher.name_matches(value):
            out[col] = NAME
    if NAME in kinds and given and family:
        g, f = given[0], family[0]
        if record.get(g) and record.get(f) and matcher.name_matches(f"{record[g]} {record[f]}"):
            out[g], out[f] = GIVEN, FAMILY
    return out


def mention_fields(record: Mapping[str, Any] | None, matcher: SubjectMatcher, kinds: Iterable[str],
                   skip: Iterable[str] = ()) -> list[str]:
    """Columns (not in `skip`) whose text mentions an old value of one of `kinds`."""
    wanted = {_ENTITY_OF[k] for k in kinds}
    skip = set(skip)
    out = []
    for col, value in (record or {}).items():
        if col in skip or not isinstance(value, str) or not value.strip():
            continue
        if matcher.could_mention(value) and any(m.entity in wanted for m in matcher.find_in_text(value)):
            out.append(col)
    return out


# ---------------------------------------------------------------------------- the forms
def phone_in_form_of(old: str, new_e164: str, region: str) -> str:
    """`new_e164` written as `old` is: E.164, spaced international, "00" international or national, with the
    old one's separators (none, spaces, or dashes)."""
    old = str(old).strip()
    new = phonenumbers.parse(new_e164, None)
    same_country = new.country_code == phonenumbers.country_code_for_region(region.upper())
    digits_only = re.fullmatch(r"\+?\d+", old) is not None
    if old.startswith("+"):
        if digits_only:
            return phonenumbers.format_number(new, phonenumbers.PhoneNumberFormat.E164)
        text = phonenumbers.format_number(new, phonenumbers.PhoneNumberFormat.INTERNATIONAL)
    elif old.startswith("00"):
        text = "00" + phonenumbers.format_number(new, phonenumbers.PhoneNumberFormat.INTERNATIONAL)[1:]
        if digits_only:
            return re.sub(r"\D", "", text)
    elif not same_country:  # a national form cannot carry another country's number
        text = phonenumbers.format_number(new, phonenumbers.PhoneNumberFormat.INTERNATIONAL)
    else:
        text = phonenumbers.format_number(new, phonenumbers.PhoneNumberFormat.NATIONAL)
        if digits_only:
            return re.sub(r"\D", "", text)
        parts = text.split(" ")
        if old.startswith("(") and len(parts) > 1 and not parts[0].startswith("("):  # "(020) 7946-0123"
            sep = "-" if "-" in old else " "
            return f"({parts[0]}) " + sep.join(parts[1:])
    if "-" in old and " " not in old.strip("()"):
        text = text.replace(" ", "-")
    return text


def _cased_like(old: str, new: str) -> str:
    letters = [c for c in old if c.isalpha()]
    if letters and all(c.isupper() for c in letters):
        return new.upper()
    if letters and all(c.islower() for c in letters):
        return new.lower()
    return new


def email_in_form_of(old: str, new: str) -> str:
    """The new address lower-case where the old was lower-case (upper where upper), else as given."""
    return _cased_like(str(old).strip(), str(new).strip())


def split_name(name: str) -> tuple[str, str]:
    """(given, family) of a name written "First Last" or "Last, First" (the last word is the family name)."""
    text = " ".join(str(name).split())
    if text.count(",") == 1:
        last, first = (p.strip() for p in text.split(","))
        return first, last
    parts = text.split(" ")
    if len(parts) == 1:
        return "", parts[0]
    return " ".join(parts[:-1]), parts[-1]


def name_in_form_of(old: str, new: str) -> str:
    """The new name as the old is written: "Last, First" where the old had a comma, in its capitals."""
    old = str(old).strip()
    given, family = split_name(new)
    if old.count(",") == 1:
        old_family, old_given = (p.strip() for p in old.split(","))
        fam, giv = _cased_like(old_family, family), _cased_like(old_given, given)
        return f"{fam}, {giv}" if giv else fam
    old_given, old_family = split_name(old)
    if not old_given:
        return _cased_like(old, " ".join(p for p in (given, family) if p))
    return " ".join(p for p in (_cased_like(old_given, given), _cased_like(old_family, family)) if p)


def updates_for(record: Mapping[str, Any], fields: Mapping[str, str], changes: Changes, matcher: SubjectMatcher,
                region: str) -> dict[str, Any]:
    """column -> new value for the planned `fields` (column -> field kind) of `record`, each in its own form.
    A field that no longer holds the old value (changed since) is left out."""
    out: dict[str, Any] = {}
    given, family = split_name(changes.name) if changes.name else ("", "")
    cols = {str(c).casefold(): c for c in record}
    for col, kind in fields.items():
        real = cols.get(str(col).casefold())
        if real is None:
            continue
        old = record[real]
        if not isinstance(old, str):
            continue
        if kind == EMAIL and changes.email and matcher.email_matches(old):
            out[real] = email_in_form_of(old, changes.email)
        elif kind == PHONE and changes.phone and matcher.phone_matches(old):
            out[real] = phone_in_form_of(old, changes.phone, region)
        elif kind == NAME and changes.name and matcher.name_matches(old):
            out[real] = name_in_form_of(old, changes.name)
        elif kind in (GIVEN, FAMILY) and changes.name:
            out[real] = _cased_like(old, given if kind == GIVEN else family) if (given or kind == FAMILY) else old
        elif kind == MENTION:
            new = replace_mentions(old, matcher, changes, region)
            if new != old:
                out[real] = new
    if any(k in (GIVEN, FAMILY) for k in fields.values()):  # a pair: only while it is still the old name
        pair = [cols.get(str(c).casefold()) for c, k in sorted(fields.items(), key=lambda kv: kv[1] != GIVEN)
                if k in (GIVEN, FAMILY)]
        if len(pair) == 2 and None not in pair and not matcher.name_matches(f"{record[pair[0]]} {record[pair[1]]}"):
            for c in pair:
                out.pop(c, None)
    return {c: v for c, v in out.items() if v != record.get(c)}


def replace_mentions(text: str, matcher: SubjectMatcher, changes: Changes, region: str) -> str:
    """`text` with every mention of an old value of a kind being set replaced by the new one, in the form the
    mention was written in."""
    spans = [m for m in matcher.find_in_text(text) if _KIND_OF_ENTITY.get(m.entity) in changes.kinds]
    out, pos = [], 0
    for m in spans:
        if m.start < pos:
            continue
        old = text[m.start:m.end]
        kind = _KIND_OF_ENTITY[m.entity]
        new = (email_in_form_of(old, changes.email) if kind == EMAIL else
               phone_in_form_of(old, changes.phone, region) if kind == PHONE else name_in_form_of(old, changes.name))
        out += [text[pos:m.start], new]
        pos = m.end
    out.append(text[pos:])
    return "".join(out)


def field_specs(fields: Mapping[str, str]) -> dict[str, dict]:
    """The stored form of a plan action's fields: by field kind only, never a value."""
    return {c: {"operator": OPERATOR, "kind": k} for c, k in sorted(fields.items())}


class RectifySpec:
    """A field of a rectify decision, as `pii.core.plans.PlannedAction.decided` stores it (`to_dict`)."""

    def __init__(self, kind: str):
        if kind not in FIELD_KINDS:
            raise ValueError(f"unknown rectify field kind {kind!r}")
        self.kind = kind

    def to_dict(self) -> dict:
        return {"operator": OPERATOR, "kind": self.kind}

    def __eq__(self, other) -> bool:
        return isinstance(other, RectifySpec) and other.kind == self.kind

    def __repr__(self) -> str:
        return f"RectifySpec({self.kind})"
