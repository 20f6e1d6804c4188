"""Column classification: which columns hold identifiers (compared whole) and which hold free text
(searched inside). Column names decide most columns; a small sample of values decides the rest, and
Presidio (with NER) runs only on the samples of columns still undecided. Results go to the inventory.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

from pii.core.inventory import (
    EMAIL, FAMILY_NAME, FREE_TEXT, GIVEN_NAME, NAME, OTHER, PHONE, ColumnProfile,
)
import phonenumbers

from pii.core.subject import EMAIL_RE, normalise_email

STRING, NUMBER, OTHER_TYPE = "string", "number", "other"


@dataclass(frozen=True)
class ColumnInfo:
    name: str
    type: str = STRING  # string, number or other


_EMAIL_NAMES = {"email", "e_mail", "mail", "email_address", "emailaddress", "mail_address"}
_PHONE_WORDS = {"phone", "mobile", "tel", "telephone", "cell", "cellphone", "fax", "msisdn", "landline"}
_GIVEN = {"first_name", "firstname", "given_name", "givenname", "forename", "fname", "first"}
_FAMILY = {"last_name", "lastname", "surname", "family_name", "familyname", "lname", "last"}
_TEXT_WORDS = {"note", "notes", "comment", "comments", "description", "body", "message", "text", "remarks",
               "details", "summary", "content", "feedback", "transcript", "memo", "narrative", "bio", "about"}
_NOT_PERSON = {"product", "company", "org", "organisation", "organization", "event", "file", "table", "item",
               "category", "city", "country", "street", "brand", "venue", "course", "project", "plan", "host",
               "domain", "group", "role", "tag", "type", "status", "bank", "account", "column", "schema",
               "campaign", "list", "source", "site", "store", "branch", "team", "department", "job", "sku",
               "server", "database", "app", "application", "service", "package", "region", "town", "county",
               "business", "trading", "legal", "brand", "model", "device", "browser", "key", "field", "class"}


def words(column: str) -> list[str]:
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", column)
    return [w for w in re.split(r"[^a-z0-9]+", spaced.lower()) if w]


def signature(columns: Sequence[ColumnInfo]) -> str:
    text = "\n".join(f"{c.name}:{c.type}" for c in columns)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def kind_from_name(column: str) -> str | None:
    ws = words(column)
    joined = "_".join(ws)
    if not ws:
        return None
    if joined in _EMAIL_NAMES or "email" in ws or (ws[-1] == "mail" and len(ws) <= 2):
        return EMAIL
    if set(ws) & _PHONE_WORDS and not {"type", "verified", "count", "opt", "consent"} & set(ws):
        return PHONE
    if joined in _GIVEN or (len(ws) >= 2 and "_".join(ws[-2:]) in _GIVEN):
        return GIVEN_NAME
    if joined in _FAMILY or (len(ws) >= 2 and "_".join(ws[-2:]) in _FAMILY):
        return FAMILY_NAME
    if ws[-1] == "name" or joined in ("fullname", "displayname"):
        if not set(ws[:-1]) & _NOT_PERSON and "user" not in ws[:-1]:
            return NAME
        return OTHER
    if ws[-1] in _TEXT_WORDS or joined in _TEXT_WORDS:
        return FREE_TEXT
    return None


def _fraction(values: list[str], pred: Callable[[str], bool]) -> float:
    return sum(1 for v in values if pred(v)) / len(values) if values else 0.0


_DATE_LIKE = re.compile(r"^\d{1,4}[-/.]\d{1,2}[-/.]\d{1,4}([ T].*)?$")
_LETTERS = re.compile(r"[^\W\d_]")


def _looks_like_phone(v: str, region: str = "GB") -> bool:
    """A value written as a phone number: no letters (order numbers, SKUs), not a date, and a valid
    number in `region` or internationally."""
    digits = sum(c.isdigit() for c in v)
    if not 7 <= digits <= 15 or len(v) > 24 or _LETTERS.search(v) or _DATE_LIKE.match(v.strip()):
        return False
    try:
        number = phonenumbers.parse(v, region)
    except phonenumbers.NumberParseException:
        return False
    if phonenumbers.is_valid_number(number):
        return True
    # fictional and newly allocated ranges are possible but not "valid": accept them when written
    # the way phone numbers are (international prefix or trunk zero)
    return phonenumbers.is_possible_number(number) and v.strip()[:1] in ("+", "0", "(")


def _singular(word: str) -> str:
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith("s") and not word.endswith("ss") and len(word) > 3:
        return word[:-1]
    return word


def thing_table(container: str | None) -> bool:
    """A table named for things, not people (`companies`, `events`, `products`): its bare `name` column
    names the thing."""
    if not container:
        return False
    ws = words(container.rsplit(".", 1)[-1])
    return bool(ws) and _singular(ws[-1]) in _NOT_PERSON | {"product", "venue", "company", "organisation"}


# --------------------------------------------------------------------------- how values are written
TRIMMED, LOWER, PHONE_STANDARD = "trimmed", "lower", "phone_standard"
MIN_FORM_SAMPLE = 10  # fewer sampled values say nothing about how a column is written
_PHONE_FORMATS = (phonenumbers.PhoneNumberFormat.E164, phonenumbers.PhoneNumberFormat.INTERNATIONAL,
                  phonenumbers.PhoneNumberFormat.NATIONAL)


def phone_forms(e164: str) -> list[str]:
    """The standard ways one number is written: E.164, international, national, and each without
    spaces or punctuation (``+447700900456``, ``+44 7700 900456``, ``07700 900456``, ``447700900456``,
    ``07700900456``, ``7700900456``)."""
    number = phonenumbers.parse(e164, None)
    out = [phonenumbers.format_number(number, f) for f in _PHONE_FORMATS]
    out += ["".join(ch for ch in f if ch.isdigit()) for f in out]
    out.append(phonenumbers.national_significant_number(number))
    return list(dict.fromkeys(out))


def _standard_phone(value: str, region: str) -> bool:
    from pii.core.subject import normalise_phone

    e164 = normalise_phone(value, region)
    return e164 is not None and value in phone_forms(e164)


def column_forms(values: Iterable, *, region: str = "GB") -> list[str]:
    """How every sampled value of a text column is written: ``trimmed`` (no surrounding spaces),
    ``lower`` (no upper-case letter), ``phone_standard`` (each is one of `phone_forms` of its number).
    The search planner may then compare the column's own form through its index (see
    connectors/sql_search.py); with fewer than MIN_FORM_SAMPLE values nothing is claimed."""
    present = [str(v) for v in values if v is not None and str(v) != ""]
    if len(present) < MIN_FORM_SAMPLE:
        return []
    forms = []
    if all(v == v.strip() for v in present):
        forms.append(TRIMMED)
    if all(v == v.lower() for v in present):
        forms.append(LOWER)
    if all(_standard_phone(v, region) for v in present):
        forms.append(PHONE_STANDARD)
    return forms


def classify(columns: Sequence[ColumnInfo], samples: dict[str, list], *,
             entity_counter: Callable[[Iterable[str]], dict[str, int]] | None = None,
             text_columns: Iterable[str] = (), container: str | None = None) -> dict[str, ColumnProfile]:
    """Classify columns from their names and `samples` (column -> sampled values).

    `entity_counter` (e.g. `functools.partial(pii.core.detection.entities_in, analyzer)`) runs Presidio over
    undecided string samples; without it no NER runs. `text_columns` forces columns to free text.
    `container` (a SQL table's name) lets a bare `name` column of a table of things (`companies`) be
    classified as the thing's name, not a person's.
    """
    forced = {c.casefold() for c in text_columns}
    out: dict[str, ColumnProfile] = {}
    for col in columns:
        raw = samples.get(col.name, [])
        values = [str(v).strip() for v in raw if v is not None and str(v).strip()]
        n = len(values)
        if col.name.casefold() in forced:
            out[col.name] = ColumnProfile(FREE_TEXT, [], 1.0, n)
            continue
        if col.type != STRING:
            out[col.name] = ColumnProfile(OTHER, [], 1.0, n)
            continue
        kind = kind_from_name(col.name)
        if kind == NAME and words(col.name) in (["name"], ["title"]) and thing_table(container):
            kind = OTHER  # companies.name, events.title: the thing's name
        entities: list[str] = []
        confidence = 0.9 if kind else 0.0
        if kind in (EMAIL,):
            entities = ["EMAIL_ADDRESS"]
        elif kind == PHONE:
            entities = ["PHONE_NUMBER"]
        elif kind in (NAME, GIVEN_NAME, FAMILY_NAME):
            entities = ["PERSON"]
        if values and kind in (None, OTHER):
            emails = _fraction(values, lambda v: normalise_email(v) is not None)
            phones = _fraction(values, _looks_like_phone)
            avg_len = sum(map(len, values)) / n
            spaced = _fraction(values, lambda v: len(v.split()) >= 4)
            if emails >= 0.5:
                kind, entities, confidence = EMAIL, ["EMAIL_ADDRESS"], emails
            elif phones >= 0.5:
                kind, entities, confidence = PHONE, ["PHONE_NUMBER"], phones
            elif kind is None and avg_len >= 30 and spaced >= 0.5:
                kind, confidence = FREE_TEXT, spaced
            elif kind is None and entity_counter is not None and avg_len <= 60:
                counts = entity_counter(values)
                person = counts.get("PERSON", 0) / n
                entities = sorted(e for e, c in counts.items() if c / n >= 0.3)
                if person >= 0.5:
                    kind, confidence = NAME, person
        if kind == FREE_TEXT and values:
            if any(EMAIL_RE.search(v) for v in values):
                entities.append("EMAIL_ADDRESS")
            if entity_counter is not None:
                counts = entity_counter(values)
                entities = sorted(set(entities) | {e for e, c in counts.items() if c})
            confidence = max(confidence, 0.5)
        out[col.name] = ColumnProfile(kind or OTHER, sorted(set(entities)), round(confidence, 3), n,
                                      column_forms(raw))
    return out


def free_text_profile(values: Iterable, counter: Callable | None) -> ColumnProfile:
    """A column known to hold free text (a text file's lines, a mail's subject or body): the entity types
    Presidio (`counter`: texts -> {entity: count}) finds in any sampled value, e-mail addresses by pattern
    too. Confidence 1.0: the kind comes from what the column is, not from the sample."""
    texts = [str(v) for v in values if v is not None and str(v).strip()]
    entities: set[str] = set()
    if any(EMAIL_RE.search(t) for t in texts):
        entities.add("EMAIL_ADDRESS")
    if texts and counter is not None:
        entities |= {e for e, c in counter(texts).items() if c}
    return ColumnProfile(FREE_TEXT, sorted(entities), 1.0, len(texts))
