"""The data subject: the identifiers a request names, normalised, and the matcher that recognises them.

Normalisation decides what "the same identifier" means everywhere in Lethe (SQL push-down, CSV scans,
free text, Gmail searches), so it lives in one place:

- emails: trimmed and case-folded; no other rewriting (``malice.smith@`` is not ``alice.smith@``);
  internationalised ones keep a Unicode local part (NFC, case-folded) and take their domain in IDNA A-labels,
  so ``zoë@exämple.com`` and ``ZOË@xn--exmple-cua.com`` are one address;
- phones: parsed with ``phonenumbers`` into E.164 with a default region for national formats;
- names: accents stripped, case-folded, punctuation dropped, "Last, First" reordered; compared as a
  set of tokens of two or more letters, so initials and order do not matter but "Alicia" is not "Alice";
- ids: ``key=value`` pairs where the key names the columns or fields that hold that identifier;
  values compare trimmed and case-insensitively.
"""
from __future__ import annotations

import re
import unicodedata
from encodings import idna as _idna
from dataclasses import dataclass, field
from typing import Iterable, Mapping, Sequence

import phonenumbers

from pii.core.errors import InvalidIdentifier

DEFAULT_REGION = "GB"

# Internationalised addresses (RFC 6531 local parts, IDN domains written in Unicode) add non-ASCII letters and
# digits and combining marks (_MARKS: decomposed accents) to the ASCII syntax; ASCII text matches as before.
# ``\w`` is ASCII letters, digits and "_" plus Unicode alphanumerics; ``[^\W_]`` the same without "_".
_MARKS = r"\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f"
_U = r"[^\W_\x00-\x7f]|[" + _MARKS + r"]"  # what Unicode adds to [a-z0-9]
_LOCAL = r"[\w!#$%&'*+/=?^`{|}~\-" + _MARKS + r"]"
_LABEL_END = r"(?:[^\W_]|[" + _MARKS + r"])"
_LABEL_MID = r"(?:[^\W_]|[\-" + _MARKS + r"])"
_EMAIL_CORE = (
    _LOCAL + r"+(?:\." + _LOCAL + r"+)*"
    r"@(?:" + _LABEL_END + r"(?:" + _LABEL_MID + r"*" + _LABEL_END + r")?\.)+"
    r"(?:[a-z]{2,}|xn--[a-z0-9\-]*[a-z0-9]|(?:" + _U + r"){2,})"
)
EMAIL_RE = re.compile(r"(?<![\w.+\-])" + _EMAIL_CORE + r"(?![\w\-])", re.IGNORECASE)
EMAIL_FULL_RE = re.compile(r"^" + _EMAIL_CORE + r"$", re.IGNORECASE)
_ID_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]*$")
_NON_DIGIT = re.compile(r"\D+")
ENTITY_EMAIL = "EMAIL_ADDRESS"
ENTITY_PHONE = "PHONE_NUMBER"
ENTITY_PERSON = "PERSON"
ENTITY_ID = "ID"


# --------------------------------------------------------------------------- normalisation
def normalise_email(value: str) -> str | None:
    """The matching key of an email address, or None when the value is not an email address.

    ASCII addresses are trimmed and case-folded, nothing else. An internationalised address
    (``zoë@exämple.com``) keeps its local part in Unicode, NFC-normalised and case-folded, and has its
    domain in IDNA A-labels (``zoë@xn--exmple-cua.com``), however the domain was written."""
    return email_key(value)[0]


def email_key(value: str) -> tuple[str | None, str | None]:
    """(key, None) for an email address; (None, why) when it is not one. `why` never holds the value."""
    if value is None:
        return None, "not an email address"
    v = str(value).strip().strip("<>").strip()
    if v.lower().startswith("mailto:"):
        v = v[7:]
    if v.isascii():
        v = v.casefold()
        return (v, None) if EMAIL_FULL_RE.match(v) else (None, "not a valid email address")
    v = unicodedata.normalize("NFC", v)
    if not EMAIL_FULL_RE.match(v):
        return None, "not a valid email address"
    local, _, domain = v.rpartition("@")
    ascii_domain = idna_domain(domain)
    if ascii_domain is None:
        return None, "not a valid email address (its domain is not a valid internationalised domain name)"
    return unicodedata.normalize("NFC", local.casefold()) + "@" + ascii_domain, None


def idna_domain(domain: str) -> str | None:
    """A domain in lower-case IDNA A-labels (``exämple.com`` and ``XN--EXMPLE-CUA.com`` give
    ``xn--exmple-cua.com``), or None when a Unicode label is not valid IDNA (Python's IDNA 2003 codec).
    ASCII labels, ``xn--`` ones included, are only lower-cased, as they always were."""
    labels = []
    for label in domain.split("."):
        if label.isascii():
            label = label.lower()
        else:
            try:
                label = _idna.ToASCII(label).decode("ascii").lower()
            except (UnicodeError, ValueError):
                return None
        if not label:
            return None
        labels.append(label)
    return ".".join(labels)


def unicode_domain(domain: str) -> str:
    """A domain with its A-labels (``xn--``) written in Unicode, for matching text that writes them so."""
    out = []
    for label in domain.split("."):
        if label.startswith("xn--"):
            try:
                label = _idna.ToUnicode(label)
            except (UnicodeError, ValueError):
                pass
        out.append(label)
    return ".".join(out)


def email_written_forms(key: str) -> tuple[str, ...]:
    """How text may write the address with this key, lower-case: the key itself and, for an
    internationalised address, its domain in Unicode and its local part decomposed (NFD)."""
    local, _, domain = key.rpartition("@")
    forms = {key}
    if not key.isascii() or "xn--" in domain:
        for d in {domain, unicode_domain(domain)}:
            for form in ("NFC", "NFD"):
                forms.add(unicodedata.normalize(form, local) + "@" + unicodedata.normalize(form, d))
    return tuple(sorted(forms))


def normalise_phone(value: str, region: str = DEFAULT_REGION) -> str | None:
    """E.164 form of a phone number written in any common format, or None when it does not parse."""
    if value is None:
        return None
    text = str(value).strip()
    if sum(c.isdigit() for c in text) < 6:
        return None
    try:
        parsed = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_possible_number(parsed):
        return None
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def phone_digits(e164: str) -> str:
    """The national significant number: the digit run every written form of the number contains."""
    parsed = phonenumbers.parse(e164, None)
    return phonenumbers.national_significant_number(parsed)


_APOSTROPHES = "\u2019\u02bc"  # typographic apostrophes, folded to "'" (O’Brien is O'Brien)


class _FoldTable(dict):
    """`str.translate` table equal to `fold_with_map` character by character, filled on demand:
    folding long non-ASCII text this way is far cheaper than a Python loop per character."""

    def __missing__(self, codepoint: int) -> str:
        value = fold_with_map(chr(codepoint))[0]
        self[codepoint] = value
        return value


_FOLD_TABLE = _FoldTable()


def fold(text: str) -> str:
    """Accent-free, case-folded text, equal to `fold_with_map(text)[0]` (hot: SQL functions, CSV scans)."""
    return text.lower() if text.isascii() else text.translate(_FOLD_TABLE)


def fold_with_map(text: str) -> tuple[str, list[int]]:
    """Fold `text` and return, for every folded character, the index of the original character."""
    out: list[str] = []
    index: list[int] = []
    for i, ch in enumerate(text):
        if ch.isascii():
            piece = ch.lower()
        else:
            decomposed = unicodedata.normalize("NFKD", ch)
            piece = "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()
            if ch == "ß":
                piece = "ss"
            elif ch in _APOSTROPHES:
                piece = "'"
        out.append(piece)
        index.extend([i] * len(piece))
    return "".join(out), index


def name_tokens(value: str) -> tuple[str, ...]:
    """Folded tokens of a personal name, "Last, First" reordered to "First Last"."""
    if value is None:
        return ()
    text = str(value).strip()
    if text.count(",") == 1:
        last, first = text.split(",")
        text = f"{first} {last}"
    folded = fold(text)
    return tuple(t for t in re.split(r"[^\w']+|_", folded) if t and not t.isdigit())


def name_key(value: str) -> frozenset[str]:
    """What two names must share to be the same name: their tokens of two or more letters."""
    return frozenset(t.replace("'", "") for t in name_tokens(value) if len(t.replace("'", "")) >= 2)


def normalise_id(value) -> str:
    return str(value).strip().casefold()


# --------------------------------------------------------------------------- subject
@dataclass(frozen=True)
class Subject:
    """Who a request is about. Values are already normalised; build one with `Subject.build`."""

    emails: tuple[str, ...] = ()
    phones: tuple[str, ...] = ()
    names: tuple[str, ...] = ()
    ids: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    region: str = DEFAULT_REGION

    @classmethod
    def build(
        cls,
        emails: Iterable[str] = (),
        names: Iterable[str] = (),
        phones: Iterable[str] = (),
        ids: Mapping[str, Iterable[str] | str] | Iterable[str] = (),
        region: str = DEFAULT_REGION,
    ) -> "Subject":
        """Validate and normalise identifiers. Errors say which identifier (kind and position), not its value."""
        norm_emails: list[str] = []
        for i, e in enumerate(emails or (), 1):
            n, why = email_key(e)
            if n is None:
                raise InvalidIdentifier(f"email #{i} is {why}")
            if n not in norm_emails:
                norm_emails.append(n)
        norm_phones: list[str] = []
        for i, p in enumerate(phones or (), 1):
            n = normalise_phone(p, region)
            if n is None:
                raise InvalidIdentifier(
                    f"phone #{i} is not a valid phone number (national numbers are read in region {region})"
                )
            if n not in norm_phones:
                norm_phones.append(n)
        norm_names: list[str] = []
        for i, nm in enumerate(names or (), 1):
            if not name_key(nm):
                raise InvalidIdentifier(f"name #{i} has no word of two or more letters")
            clean = " ".join(str(nm).split())
            if clean not in norm_names:
                norm_names.append(clean)
        norm_ids: dict[str, list[str]] = {}
        pairs: list[tuple[str, str]] = []
        if isinstance(ids, Mapping):
            for k, vs in ids.items():
                for v in [vs] if isinstance(vs, (str, int)) else vs:
                    pairs.append((str(k), str(v)))
        else:
            for i, item in enumerate(ids or (), 1):
                if "=" not in str(item):
                    raise InvalidIdentifier(f"id #{i} must be KEY=VALUE")
                k, v = str(item).split("=", 1)
                pairs.append((k.strip(), v))
        for i, (k, v) in enumerate(pairs, 1):
            if not _ID_KEY_RE.match(k):
                raise InvalidIdentifier(f"id #{i}: key must be a column or field name (letters, digits, _ or -)")
            if not str(v).strip():
                raise InvalidIdentifier(f"id #{i} ({k}): value is empty")
            vals = norm_ids.setdefault(k, [])
            if str(v).strip() not in vals:
                vals.append(str(v).strip())
        subject = cls(
            emails=tuple(norm_emails),
            phones=tuple(norm_phones),
            names=tuple(norm_names),
            ids={k: tuple(v) for k, v in norm_ids.items()},
            region=region,
        )
        if subject.is_empty():
            raise InvalidIdentifier("at least one identifier is required (email, name, phone or id)")
        return subject

    def is_empty(self) -> bool:
        return not (self.emails or self.phones or self.names or self.ids)

    @property
    def name_only(self) -> bool:
        return bool(self.names) and not (self.emails or self.phones or self.ids)

    def to_manifest(self) -> dict:
        return {
            "email": list(self.emails),
            "name": list(self.names),
            "phone": list(self.phones),
            "ids": {k: list(v) for k, v in self.ids.items()},
        }

    def to_dict(self) -> dict:
        return {**self.to_manifest(), "region": self.region}

    @classmethod
    def from_dict(cls, data: Mapping) -> "Subject":
        return cls.build(
            emails=data.get("email") or data.get("emails") or (),
            names=data.get("name") or data.get("names") or (),
            phones=data.get("phone") or data.get("phones") or (),
            ids=data.get("ids") or {},
            region=data.get("region", DEFAULT_REGION),
        )


# --------------------------------------------------------------------------- matching
@dataclass(frozen=True)
class TextMatch:
    """A span of free text that is one of the subject's identifiers. Carries positions, not the text."""

    start: int
    end: int
    entity: str  # EMAIL_ADDRESS, PHONE_NUMBER, PERSON or ID
    strong: bool  # False for a name: weak evidence on its own


class SubjectMatcher:
    """Recognises the subject's identifiers in single field values and inside free text."""

    def __init__(self, subject: Subject):
        self.subject = subject
        self._emails = frozenset(subject.emails)
        self._email_forms = tuple(sorted({f for e in subject.emails for f in email_written_forms(e)}))
        self._email_needles = tuple(sorted({fold(f) for f in self._email_forms}))
        self._phones = frozenset(subject.phones)
        self._name_keys = [name_key(n) for n in subject.names]
        self._ids = {k.casefold(): frozenset(normalise_id(v) for v in vs) for k, vs in subject.ids.items()}
        self._phone_digits = tuple(sorted({phone_digits(p) for p in subject.phones}))
        self._name_patterns = [self._name_pattern(n) for n in subject.names]
        text_ids = sorted({v for vs in subject.ids.values() for v in vs if len(v) >= 5}, key=len, reverse=True)
        self._id_text_re = (
            re.compile(r"(?<![\w])(?:" + "|".join(re.escape(v) for v in text_ids) + r")(?![\w])", re.I)
            if text_ids
            else None
        )

    # ---- tokens that SQL/CSV prefilters use: a row without any of them cannot match
    @property
    def email_tokens(self) -> tuple[str, ...]:
        """The subject's addresses as text writes them, lower-case: for an ASCII address just the address; for
        an internationalised one also its domain in Unicode and its local part decomposed (`email_written_forms`)."""
        return self._email_forms

    @property
    def phone_digit_tokens(self) -> tuple[str, ...]:
        return self._phone_digits

    @property
    def name_token_sets(self) -> list[tuple[str, ...]]:
        """Per name, its folded tokens of two or more letters, longest first.

        Like `name_key`, tokens carry no apostrophes ("O'Brien" gives "obrien"): remove apostrophes from
        the folded text before testing whether it contains them."""
        return [tuple(sorted(k, key=len, reverse=True)) for k in self._name_keys]

    def id_values(self, key: str) -> tuple[str, ...]:
        return tuple(sorted(self._ids.get(key.casefold(), ())))

    @property
    def id_keys(self) -> tuple[str, ...]:
        return tuple(self._ids)

    @property
    def text_id_values(self) -> tuple[str, ...]:
        return tuple(sorted({v for vs in self.subject.ids.values() for v in vs if len(v) >= 5}))

    # ---- single values
    def email_matches(self, value) -> bool:
        if not self._emails or value is None:
            return False
        return normalise_email(str(value)) in self._emails

    def phone_matches(self, value) -> bool:
        if not self._phones or value is None:
            return False
        return normalise_phone(str(value), self.subject.region) in self._phones

    def name_matches(self, value) -> bool:
        if not self._name_keys or value is None:
            return False
        key = name_key(str(value))
        return bool(key) and key in self._name_keys

    def id_matches(self, key: str, value) -> bool:
        vals = self._ids.get(key.casefold())
        return bool(vals) and value is not None and normalise_id(value) in vals

    # ---- free text
    @staticmethod
    def _name_pattern(name: str) -> re.Pattern | None:
        toks = [t for t in name_tokens(name) if len(t) >= 2]
        if not toks:
            return None
        sep = r"(?:\s*,\s*|\s+)(?:\w\.?\s+)?"  # "First Last", "Last, First", an initial between
        orders = [toks]
        if len(toks) >= 2:
            orders.append([toks[-1]] + toks[:-1])
        alts = [sep.join(re.escape(t) for t in order) for order in orders]
        return re.compile(r"(?<!\w)(?:" + "|".join(alts) + r")(?!\w)")

    def find_in_text(self, text: str) -> list[TextMatch]:
        """Every span of `text` that is one of the subject's identifiers (positions in the original text)."""
        if not text:
            return []
        text = str(text)
        found: list[TextMatch] = []
        if self._emails and "@" in text:
            for m in EMAIL_RE.finditer(text):
                found_email = m.group(0)
                key = found_email.casefold() if found_email.isascii() else normalise_email(found_email)
                if key in self._emails:
                    found.append(TextMatch(m.start(), m.end(), ENTITY_EMAIL, True))
        if self._phones and any(d in _NON_DIGIT.sub("", text) for d in self._phone_digits):
            for m in phonenumbers.PhoneNumberMatcher(text, self.subject.region, leniency=phonenumbers.Leniency.POSSIBLE):
                e164 = phonenumbers.format_number(m.number, phonenumbers.PhoneNumberFormat.E164)
                if e164 in self._phones:
                    found.append(TextMatch(m.start, m.end, ENTITY_PHONE, True))
        if any(self._name_patterns):
            folded, index = fold_with_map(text)
            for pat in self._name_patterns:
                if pat is None:
                    continue
                for m in pat.finditer(folded):
                    start, end = index[m.start()], index[m.end() - 1] + 1
                    found.append(TextMatch(start, end, ENTITY_PERSON, False))
        if self._id_text_re is not None:
            for m in self._id_text_re.finditer(text):
                found.append(TextMatch(m.start(), m.end(), ENTITY_ID, True))
        found.sort(key=lambda t: (t.start, -t.end))
        return found

    def could_mention(self, text: str) -> bool:
        """Cheap prefilter: False means `find_in_text` certainly finds nothing."""
        if not text:
            return False
        text = str(text)
        low = fold(text) if not text.isascii() else text.lower()
        if any(e in low for e in self._email_needles):
            return True
        if self._phone_digits:
            digits = _NON_DIGIT.sub("", text)  # the same digits find_in_text looks at
            if any(d in digits for d in self._phone_digits):
                return True
        if self._name_keys:
            bare = low.replace("'", "")  # name tokens carry no apostrophes
            for toks in self.name_token_sets:
                if toks and all(t in bare for t in toks):
                    return True
        # ids: find_in_text's own pattern (case-insensitive, so also for accented ids where folding differs)
        return self._id_text_re is not None and self._id_text_re.search(text) is not None


def entities_of(matches: Sequence[TextMatch]) -> list[str]:
    return sorted({m.entity for m in matches})
