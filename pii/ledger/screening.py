"""Keeping personal values out of the ledger: the keyed hashes it stores instead of identifiers, requesters
and personal parts of locations, and the screen that recognises one subject's identifiers (known only as
hashes) in values about to be stored, so free text is masked or withheld and plans holding them are refused.

Every function here takes the ledger's keyed MAC, ``mac(domain, value) -> hex``, as an argument."""
from __future__ import annotations

import hmac
import json
import re
import unicodedata
from typing import Callable, Iterable, Mapping

import phonenumbers

from pii.core.errors import LedgerError
from pii.ledger.common import canonical_identifier, identifier_kind, subject_identifiers
from pii.core.subject import EMAIL_RE, Subject, fold, normalise_email, normalise_id, normalise_phone

Mac = Callable[[str, str], str]

_HMAC_RE = re.compile(r"^hmac:[0-9a-f]{64}$")
_WITHHELD = "[withheld: it named the subject]"
_DETAIL_LIMIT = 1000

# Strings Lethe itself makes (keyed hashes, fingerprints, ids): nothing personal can be inside them.
OPAQUE_RE = re.compile(r"^(?:hmac:|act-|plan-|req-|note-|expect:)?[0-9a-p]{32,}$")


class Screen:
    """Recognises one subject's identifiers, known only as hashes, in values about to be stored."""

    def __init__(self, mac: Callable[[str, str], str], hashes: Iterable[tuple[str, str]], region: str):
        self._mac = mac
        self.hashes = set(hashes)
        kinds = {k for k, _ in self.hashes}
        self.emails, self.phones, self.names = "email" in kinds, "phone" in kinds, "name" in kinds
        self.id_kinds = sorted(k for k in kinds if k.startswith("id:"))
        self.region = region
        self._memo: dict = {}

    def _hit(self, kind: str, canonical: str) -> bool:
        return (kind, self._mac(kind, canonical)) in self.hashes

    def find(self, value) -> str | None:
        """The kind of the subject's identifier that `value` holds, whole or inside it; else None."""
        if value is None or isinstance(value, bool) or not self.hashes:
            return None
        if isinstance(value, str) and OPAQUE_RE.match(value):
            return None  # a keyed hash or an id Lethe made: holds no identifier
        key = (type(value), value)
        if key not in self._memo:
            if len(self._memo) > 100_000:
                self._memo.clear()
            self._memo[key] = self._find(value)
        return self._memo[key]

    def _find(self, value) -> str | None:
        if isinstance(value, int):
            text = str(value)
        elif isinstance(value, str):
            text = value[:5000]
            found = self._find_in_text(text)
            if found:
                return found
        else:
            return None
        if self.id_kinds:
            parts = re.split(r"[\s,;()\[\]{}<>\"'=/|]+", text) + re.split(r"[^\w\-]+|_", text)
            candidates = {normalise_id(text)} | {normalise_id(t) for t in parts if t}
            for kind in self.id_kinds:
                if any(self._hit(kind, c) for c in candidates):
                    return kind
        return None

    def _find_in_text(self, text: str) -> str | None:
        if self.emails and "@" in text:
            for m in EMAIL_RE.finditer(text):
                local, _, domain = m.group(0).casefold().rpartition("@")
                # "/in/alice@example.org.csv" holds "alice@example.org": a local part may contain "/" and the
                # like, and a file suffix reads as one more domain label.
                locals_ = {local} | {local[i + 1:] for i, c in enumerate(local) if c in "/=|{}`'!#$%&*?^~"}
                domains = [domain]
                while "." in domains[-1].rsplit(".", 1)[0]:
                    domains.append(domains[-1].rsplit(".", 1)[0])
                if any(self._hit("email", _email_canonical(f"{lp}@{d}")) for lp in locals_ if lp for d in domains):
                    return "email"
        if self.phones and sum(c.isdigit() for c in text) >= 6:
            if len(text) <= 40:
                whole = normalise_phone(text, self.region)
                if whole and self._hit("phone", whole):
                    return "phone"
            for m in phonenumbers.PhoneNumberMatcher(text, self.region, leniency=phonenumbers.Leniency.POSSIBLE):
                if self._hit("phone", phonenumbers.format_number(m.number, phonenumbers.PhoneNumberFormat.E164)):
                    return "phone"
        if self.names:
            # Not name_tokens: its "Last, First" reordering would split the pair; windows are unordered anyway.
            toks = [t for t in (t.replace("'", "") for t in re.split(r"[^\w']+|_", fold(text))) if len(t) >= 2]
            for size in range(1, min(5, len(toks)) + 1):
                for i in range(len(toks) - size + 1):
                    if self._hit("name", " ".join(sorted(set(toks[i:i + size])))):
                        return "name"
        return None

    def check_json(self, obj, path: str, on_hit: Callable[[str, str], None]) -> None:
        if isinstance(obj, Mapping):
            for k, v in obj.items():
                kind = self.find(str(k))
                if kind:
                    on_hit(kind, f"{path} (a key)")
                self.check_json(v, f"{path}.{k}", on_hit)
        elif isinstance(obj, (list, tuple)):
            for i, v in enumerate(obj):
                self.check_json(v, f"{path}[{i}]", on_hit)
        else:
            kind = self.find(obj)
            if kind:
                on_hit(kind, path)


def _email_canonical(address: str) -> str:
    """As `canonical_identifier` hashes an email: an internationalised one by its key (IDNA domain)."""
    return address if address.isascii() else (normalise_email(address) or address)


def mask_contacts(text: str, region: str) -> str:
    """Any e-mail address or phone number, the subject's or anyone's, masked."""
    text = EMAIL_RE.sub("[email]", text)
    if sum(c.isdigit() for c in text) >= 6:
        spans = [(m.start, m.end) for m in
                 phonenumbers.PhoneNumberMatcher(text, region, leniency=phonenumbers.Leniency.POSSIBLE)]
        for start, end in reversed(spans):
            text = text[:start] + "[phone]" + text[end:]
    return text


# --------------------------------------------------------------------------- keyed hashes
def hash_identifier(mac: Mac, kind: str, value, region: str) -> str:
    """Keyed hash of an identifier (normalised first): what the ledger stores instead of the value."""
    kind = identifier_kind(kind)
    return mac(kind, canonical_identifier(kind, value, region))


def subject_hashes(mac: Mac, subject: Subject) -> list[tuple[str, str]]:
    """(kind, keyed hash) of every identifier of the subject (LedgerError for a subject without any)."""
    if not isinstance(subject, Subject) or subject.is_empty():
        raise LedgerError("a subject with at least one identifier is required")
    return sorted({(k, mac(k, v)) for k, v in subject_identifiers(subject)})


def actor_identity(who: str) -> str:
    """The form of a person's name that identifies them: NFKC, case-folded (NFKC again after folding) and
    whitespace collapsed, so "DPO", "dpo" and fullwidth "ｄｐｏ" are one person. Plain ASCII names without
    runs of inner spaces come out as they always did (trimmed, case-folded)."""
    text = unicodedata.normalize("NFKC", str(who))
    text = unicodedata.normalize("NFKC", text.casefold())
    return " ".join(text.split())


# Scripts that one name legitimately mixes (Japanese: kanji with kana; Korean: hangul with hanja).
_SCRIPT_FAMILY = {"HIRAGANA": "CJK", "KATAKANA": "CJK", "HALFWIDTH": "CJK", "HANGUL": "CJK", "BOPOMOFO": "CJK",
                  "IDEOGRAPHIC": "CJK"}


def name_scripts(who: str) -> list[str]:
    """The scripts of the letters of a name after NFKC (LATIN, CYRILLIC, GREEK, ...); digits, punctuation
    and modifier letters do not count."""
    scripts: set[str] = set()
    for ch in unicodedata.normalize("NFKC", str(who)):
        if not unicodedata.category(ch).startswith("L"):
            continue
        words = unicodedata.name(ch, "").split()
        if not words or words[0] == "MODIFIER":
            continue
        scripts.add(_SCRIPT_FAMILY.get(words[0], words[0]))
    return sorted(scripts)


def check_actor_name(who: str, role: str) -> None:
    """LedgerError when `who` mixes letters of several scripts (a Latin name with a Cyrillic "о" that looks
    like "o"): such a name can pass for another person's. The message names the scripts, never the name."""
    scripts = sorted(name_scripts(who), key=lambda s: (s != "LATIN", s))
    if len(scripts) > 1:
        listed = ", ".join(s.title() for s in scripts[:-1]) + " and " + scripts[-1].title()
        raise LedgerError(f"the {role}'s name mixes scripts ({listed}): use one script")


def actor_hash(mac: Mac, who: str) -> str:
    """``"hmac:<hex>"`` of a requester or an actor, over `actor_identity` (NFKC, case-folded, spaces collapsed)."""
    return "hmac:" + mac("requester", actor_identity(who))


def legacy_actor_hash(mac: Mac, who: str) -> str:
    """The hash ledgers stored before names were normalised (trimmed, case-folded raw text). Equal to
    `actor_hash` for plain ASCII names; kept so requests recorded then still compare."""
    return "hmac:" + mac("requester", str(who).strip().casefold())


def is_actor(mac: Mac, stored_hash: str, who: str) -> bool:
    """Whether `stored_hash` (a requester hash, new or legacy) is `who`'s, compared in constant time."""
    stored = str(stored_hash or "")
    hits = [hmac.compare_digest(stored, h) for h in (actor_hash(mac, who), legacy_actor_hash(mac, who))]
    return any(hits)


def protect_value(mac: Mac, value) -> str | None:
    """``"hmac:<hex>"`` for a personal value: equal values give equal strings, so locations still compare."""
    if value is None or (isinstance(value, str) and _HMAC_RE.match(value)):
        return value
    return "hmac:" + mac("location", json.dumps(value, sort_keys=True, default=str, ensure_ascii=False))


def protect_location(mac: Mac, location: Mapping, personal_keys: Iterable[str]) -> dict:
    """A copy of `location` whose values under any of `personal_keys` (at any depth) are keyed hashes."""
    keys = set(personal_keys)

    def walk(obj):
        if isinstance(obj, Mapping):
            return {k: (protect_value(mac, v) if k in keys else walk(v)) for k, v in obj.items()}
        if isinstance(obj, (list, tuple)):
            return [walk(v) for v in obj]
        return obj

    return walk(location)


# --------------------------------------------------------------------------- free text and actors
def scrub(text, screen: Screen, limit: int = _DETAIL_LIMIT) -> str | None:
    """Free text as it may be stored: contacts masked, cut to `limit`; withheld when it still names the subject."""
    if text is None:
        return None
    masked = mask_contacts(str(text)[:limit * 4], screen.region)
    if screen.find(masked):
        return _WITHHELD
    return masked[:limit]


def safe_actor(mac: Mac, actor, screen: Screen) -> str | None:
    """Approvers and workers are recorded by name, unless the name is one of the subject's identifiers."""
    if actor is None:
        return None
    actor = str(actor).strip()[:200]
    return actor_hash(mac, actor) if screen.find(actor) else actor
