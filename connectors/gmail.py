"""Gmail mailboxes (store kind ``gmail``) through the Gmail API (google-api-python-client).

Store options: ``user_id`` (the mailbox; with a service account, the user it acts for), ``credentials_env``
(an environment variable holding a service-account JSON with domain-wide delegation, an OAuth
authorized-user JSON, or a path to either), ``api_endpoint`` (a Gmail-compatible endpoint, for tests: with
no credentials it is used unauthenticated), ``erase`` (``trash``, the default, or ``delete``: permanent),
``include_spam_trash`` (search Spam and Trash too; default false, so trashed messages count as erased),
``batch_size`` (calls per HTTP batch, at most 100; default 50, Gmail's advice), ``max_attempts``
(per call, on 429/5xx; default 8), ``backoff_cap`` (seconds; default 32), ``timeout`` (seconds; default 60),
``max_attachment_mb`` (text attachments larger than this are listed, not scanned; default 20).

How a subject is located:
1. Gmail searches (``q=``) built from the subject's identifiers: per email
   ``from:E OR to:E OR cc:E OR bcc:E OR "E"``; per phone its national, international and digits-only
   forms as quoted phrases; per name ``"First Last" OR "Last, First"``; per long id its value quoted.
   Every page of ``users.messages.list`` (500 ids a page) is read and ids are de-duplicated.
2. Candidates are fetched whole (``format=raw``) in HTTP batches and parsed with the stdlib ``email``
   package: From/To/Cc/Bcc/Reply-To, Subject, Date, text/plain and text/html bodies (HTML as text),
   text-like attachments (txt, csv, tsv, json, ...), and PDF/DOCX/XLSX attachments by page, paragraph/table
   cell or sheet and cell (connectors/documents.py; excerpt lines say ``[file, page 2]`` and the record's
   attachment lists ``found_at`` places). Other attachments (and encrypted or damaged documents) are listed
   as not scanned, with why.
3. Gmail's search is fuzzy (word tokens, no exact address matching), so every candidate is confirmed with
   the subject matcher. ``identifier``: the subject is a party (an address or a display name in
   From/To/Cc/Bcc/Reply-To); ``text``: only mentioned (subject line, bodies, attachments). A name alone is
   weak evidence. A candidate that cannot be confirmed but carries attachments Lethe cannot read (a PDF
   that Gmail's index may have matched) is reported as a weak ``text`` finding with a note.

Records (`Finding.record`): message_id, thread_id, date, from, to, cc, subject, party, body_text (the whole
text when the subject is a party, else only the lines or sentences that mention them), attachments
(name, type, size, scanned, reason) and, only when the subject is a party, ``_raw_eml`` (base64 of the
message as Gmail stores it), which the access package writes as a .eml file. A party known only by display
name (weak: perhaps a namesake) gets the excerpt instead, and a note.

Erasure: a ``delete`` action moves the message to Trash (``erase: trash``; Gmail purges Trash after 30
days) or deletes it for good (``erase: delete``, ``users.messages.batchDelete`` with at most 1000 ids a
call). Gmail cannot edit a message: an ``update`` action (a redaction) adds a redacted copy with
``users.messages.import``, checks it, then trashes or deletes the original (``_redact_messages``; README "Mail
redaction"). A message already gone counts as done.

Selection (`select`, for flows not about one person: see pii/core/selection.py and GmailConnector.select): senders,
from/to/subject values and message-date bounds become one Gmail search (a superset), message ids are fetched
directly, and each candidate is checked in Python; findings are ``{"message_id": id}`` with the whole
message's record, erased by the same ``delete`` actions.

Rate limits: 429, 5xx and 403 rate-limit reasons are retried with capped exponential backoff and jitter
(also per call inside a batch); 401/403 otherwise mean the credentials were refused. Errors and progress
messages carry counts and HTTP statuses, never message content or addresses.
"""
from __future__ import annotations

import base64
import email
import email.policy
import email.utils
import json
import os
import random
import re
import socket
import time
import unicodedata
import urllib.parse
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from fnmatch import fnmatchcase
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, Callable, Iterator

import phonenumbers

from connectors.base import DELETE, UPDATE, Connector, Container, Done, ExecAction, Sampled, change_signature
from pii.core.coverage import Coverage
from pii.core.errors import ConfigError, InvalidIdentifier, StoreError, StoreUnreachable
from pii.core.findings import STRONG, WEAK, Finding, merge
from pii.core.selection import FILE_TIME, MESSAGE_DATE, RecordFilter
from pii.core.subject import (
    ENTITY_EMAIL, ENTITY_PERSON, ENTITY_PHONE, SubjectMatcher, TextMatch, entities_of, name_tokens,
    normalise_email,
)

SCOPES = ["https://mail.google.com/"]
DEFAULT_ROOT = "https://gmail.googleapis.com/"
CONTAINER = "messages"
LIST_PAGE_SIZE = 500  # Gmail's maximum
MAX_BATCH = 100  # Gmail's maximum calls per HTTP batch
DEFAULT_BATCH = 50  # Gmail advises against larger batches (rate limiting)
BATCH_DELETE_MAX = 1000
DEFAULT_MAX_ATTEMPTS = 8
DEFAULT_BACKOFF_BASE = 1.0
DEFAULT_BACKOFF_CAP = 32.0
DEFAULT_TIMEOUT = 60
DEFAULT_MAX_ATTACHMENT_MB = 20
TRANSPORT_ATTEMPTS = 3
EXCERPT_LINE_MAX = 300  # a longer line is narrowed to the sentences that mention the subject
ERASE_MODES = ("trash", "delete")
PARTY_HEADERS = ("from", "to", "cc", "bcc", "reply-to")
MAIL_COLUMNS = ("from", "to", "subject")  # the columns `select` can compare on a message (equals)
_MESSAGE_ID = re.compile(r"[0-9A-Za-z_-]{1,64}")
_GLOB = re.compile(r"[*?\[]")
RATE_LIMIT_REASONS = {"rateLimitExceeded", "userRateLimitExceeded", "backendError", "concurrentLimitExceeded"}
# Google refuses a JSON (metadata) request body over 5 MB: the largest base64url `raw` the import call sends
RAW_JSON_MAX = 5 * 1024 * 1024
NOT_REWRITABLE = "not redacted: the subject is named where Lethe cannot rewrite it; left as it is, for review"

TEXT_EXTENSIONS = {"txt", "text", "csv", "tsv", "json", "md", "log", "xml", "vcf", "ics", "htm", "html", "eml"}
TEXT_TYPES = {"text/plain", "text/csv", "text/tab-separated-values", "application/json", "text/json",
              "text/markdown", "text/xml", "application/xml", "text/vcard", "text/x-vcard", "text/calendar",
              "text/html", "message/rfc822"}
_LATIN1_LABELS = {"iso-8859-1", "iso8859-1", "latin-1", "latin1", "l1", "us-ascii", "ascii", "iso_8859-1",
                  "cp819", "ibm819"}

Sleep = Callable[[float], None]


class _Gone(Exception):
    """The message does not exist (any more): 404."""


# --------------------------------------------------------------------------- text helpers
def decode_bytes(data: bytes, charset: str | None) -> str:
    """Text of a body in its declared charset. Labels for Latin-1 and ASCII are read as windows-1252 (as
    browsers and mail clients do: such mail often carries cp1252 quotes and dashes); an unknown or wrong
    label falls back to UTF-8, then windows-1252, then Latin-1, which never fails."""
    label = (charset or "").strip().strip('"').lower()
    tries: list[str] = []
    if label in _LATIN1_LABELS:
        tries.append("cp1252")
    elif label:
        tries.append(label)
    tries += ["utf-8", "cp1252"]
    for codec in tries:
        try:
            return _newlines(data.decode(codec))
        except (LookupError, UnicodeDecodeError):
            continue
    return _newlines(data.decode("latin-1"))


def _newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n") if "\r" in text else text


class _HtmlText(HTMLParser):
    """Visible text of an HTML body: block elements break lines; scripts and styles are dropped;
    mailto:/tel: link targets are kept beside the link text (they are data the message holds)."""

    BLOCK = {"p", "div", "br", "li", "tr", "table", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "pre",
             "ul", "ol", "section", "article", "header", "footer", "hr", "dd", "dt", "title"}
    SKIP = {"script", "style", "head"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.skip = 0
        self.links: list[str | None] = []

    def handle_starttag(self, tag, attrs):
        if tag in self.SKIP:
            self.skip += 1
        if tag in self.BLOCK:
            self.out.append("\n")
        if tag in ("td", "th"):
            self.out.append(" ")
        if tag == "a":
            href = dict(attrs).get("href") or ""
            target = None
            if href.lower().startswith(("mailto:", "tel:")):
                target = href.split(":", 1)[1].split("?", 1)[0]
            self.links.append(target)

    def handle_startendtag(self, tag, attrs):
        self.handle_starttag(tag, attrs)
        if tag == "a":
            self.handle_endtag(tag)

    def handle_endtag(self, tag):
        if tag in self.SKIP and self.skip:
            self.skip -= 1
        if tag in self.BLOCK:
            self.out.append("\n")
        if tag == "a" and self.links:
            target = self.links.pop()
            if target:
                target = urllib.parse.unquote(target)
                recent = "".join(self.out[-20:])
                if target.casefold() not in recent.casefold():
                    self.out.append(f" ({target})")

    def handle_data(self, data):
        if not self.skip:
            self.out.append(data)


def html_to_text(markup: str) -> str:
    parser = _HtmlText()
    try:
        parser.feed(markup)
        parser.close()
    except Exception:  # noqa: BLE001 - html.parser is lenient; never let a body stop a scan
        return re.sub(r"<[^>]+>", " ", markup)
    lines = [" ".join(line.replace("\xa0", " ").split()) for line in "".join(parser.out).splitlines()]
    text = "\n".join(lines)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def excerpt(text: str, spans: list[TextMatch]) -> list[str]:
    """The lines of `text` that hold a span; a long line is narrowed to the sentences holding it."""
    out: list[str] = []
    seen: set[tuple[int, int]] = set()
    for span in spans:
        start = text.rfind("\n", 0, span.start) + 1
        end = text.find("\n", span.end)
        end = len(text) if end < 0 else end
        if end - start > EXCERPT_LINE_MAX:
            left = max((m.end() for m in re.finditer(r"[.!?](?:\s+)", text[start:span.start])), default=0)
            right_m = re.search(r"[.!?](?=\s|$)", text[span.end:end])
            start, end = start + left, (span.end + right_m.end()) if right_m else end
        if (start, end) in seen:
            continue
        seen.add((start, end))
        piece = " ".join(text[start:end].split())
        if piece:
            out.append(piece)
    return out


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


# --------------------------------------------------------------------------- parsed message
@dataclass
class _Text:
    label: str  # "subject", "body", "alternative" (an HTML twin of a plain body) or "attachment"
    name: str | None  # the attachment's file name
    text: str
    where: str | None = None  # a document attachment's place: "page 2", "sheet 'Leads' cell B3"


@dataclass
class _Parsed:
    headers: dict[str, str]
    addresses: list[tuple[str, str]]  # (display name, address) in the party headers
    texts: list[_Text]
    body_text: str
    attachments: list[dict] = field(default_factory=list)


def _header_values(msg, name: str) -> list:
    try:
        return msg.get_all(name) or []
    except Exception:  # noqa: BLE001 - a header the parser cannot read
        return []


def _header_str(values: list) -> str:
    out = []
    for v in values:
        try:
            out.append(str(v))
        except Exception:  # noqa: BLE001 - undecodable header
            pass
    return ", ".join(x for x in out if x)


def _addresses(values: list) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for value in values:
        try:
            out.extend((a.display_name or "", a.addr_spec or "") for a in value.addresses)
            continue
        except Exception:  # noqa: BLE001 - a malformed header: fall back to the lenient parser
            pass
        out.extend((n or "", a or "") for n, a in email.utils.getaddresses([str(value)]))
    return out


def _part_info(part) -> tuple[str, bool, str | None, str | None]:
    """(content type, is an attachment, file name, charset) from one parse of each header: with
    policy.default every get_content_type()/get_filename() call would parse the headers again."""
    ctype, charset, filename, attachment = None, None, None, False
    try:
        ct = part["content-type"]
        if ct is not None and not getattr(ct, "defects", None):
            ctype = ct.content_type
            charset = ct.params.get("charset")
            filename = ct.params.get("name")
        elif ct is not None:
            ctype = part.get_content_type()
            charset = part.get_content_charset()
        cd = part["content-disposition"]
        if cd is not None:
            attachment = str(getattr(cd, "content_disposition", "") or "").lower() == "attachment"
            filename = cd.params.get("filename") or filename
    except Exception:  # noqa: BLE001 - unreadable MIME headers: the slow, lenient accessors
        ctype = part.get_content_type()
        charset = part.get_content_charset()
        filename = part.get_filename()
        attachment = part.is_attachment()
    if not ctype or "/" not in ctype:
        ctype = part.get_default_type()
    return ctype.lower(), attachment, (str(filename) if filename else None), charset


def _part_text(part, charset: str | None) -> str:
    data = part.get_payload(decode=True)
    if data is None:
        payload = part.get_payload()
        return _newlines(payload) if isinstance(payload, str) else ""
    return decode_bytes(data, charset)


def _is_text_attachment(ctype: str, filename: str) -> bool:
    ext = filename.rsplit(".", 1)[-1].lower() if "." in filename else ""
    return ext in TEXT_EXTENSIONS or ctype in TEXT_TYPES or (ctype.startswith("text/") and not ext)


DOCUMENT_TYPES = {"application/pdf": "pdf",
                  "application/vnd.openxmlformats-officedocument.wordprocessingml.document": "docx",
                  "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": "xlsx"}


def _document_kind(ctype: str, filename: str) -> str | None:
    from connectors.documents import document_kind

    return document_kind(filename) or DOCUMENT_TYPES.get(ctype)


def _read_document(data: bytes, kind: str, ctype: str, name: str, info: dict, texts: list, limit: int) -> None:
    """A document attachment's text as one `_Text` per page/paragraph/cell; a bad or too large one keeps
    ``scanned`` False with the reason (what was read before a failure is still searched)."""
    from connectors import documents

    try:
        for seg in documents.segments(data, kind, limit=limit):
            texts.append(_Text("attachment", name, seg.text, documents.where_label(seg.where)))
    except documents.DocumentError as exc:
        info["reason"] = f"{ctype}: {exc.reason}"
        return
    info["scanned"] = True


def parse_message(raw: bytes, max_attachment_bytes: int) -> _Parsed:
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    values = {h: _header_values(msg, h) for h in ("from", "to", "cc", "bcc", "reply-to", "subject", "date")}
    headers = {k: _header_str(values[k]) for k in ("from", "to", "cc", "subject", "date")}
    addresses = [a for h in PARTY_HEADERS for a in _addresses(values[h])]
    texts: list[_Text] = []
    if headers["subject"]:
        texts.append(_Text("subject", None, headers["subject"]))
    body_parts: list[str] = []
    attachments: list[dict] = []

    def walk(part, in_alternative_with_plain: bool) -> None:
        ctype, is_attachment, filename, charset = _part_info(part)
        if part.is_multipart() and ctype != "message/rfc822":
            children = list(part.iter_parts())
            infos = [_part_info(c) for c in children] if ctype == "multipart/alternative" else []
            has_plain = any(i[0] == "text/plain" and not i[1] for i in infos)
            for child in children:
                walk(child, has_plain)
            return
        if ctype == "message/rfc822" and not (is_attachment or filename):
            # a forwarded message: its headers and text are mentions (the subject is not a party here)
            payload = part.get_payload()
            inner = payload[0] if isinstance(payload, list) and payload else None
            if inner is not None:
                head = "\n".join(f"{h.title()}: {v}" for h in ("from", "to", "cc", "subject")
                                 if (v := _header_str(_header_values(inner, h))))
                if head:
                    body_parts.append(head)
                walk(inner, False)
            return
        if is_attachment or filename:
            name = filename or f"part-{len(attachments) + 1}"
            try:
                if ctype == "message/rfc822":
                    inner = part.get_payload()
                    data = inner[0].as_bytes() if isinstance(inner, list) and inner else b""
                else:
                    data = part.get_payload(decode=True) or b""
            except Exception:  # noqa: BLE001 - undecodable transfer encoding
                data = b""
            info = {"filename": name, "content_type": ctype, "size": len(data), "scanned": False, "reason": None}
            attachments.append(info)
            texts.append(_Text("attachment", name, name.replace("_", " ")))  # file names can name people
            doc_kind = _document_kind(ctype, name)
            if doc_kind is not None:  # PDF, DOCX, XLSX: their text, place by place (connectors/documents.py)
                _read_document(data, doc_kind, ctype, name, info, texts, max_attachment_bytes)
                return
            if not _is_text_attachment(ctype, name):
                info["reason"] = f"{ctype}: not a text format Lethe can read"
                return
            if len(data) > max_attachment_bytes:
                info["reason"] = f"larger than {max_attachment_bytes // (1024 * 1024)} MB"
                return
            if ctype == "message/rfc822" or name.lower().endswith(".eml"):
                text = _attached_message_text(data)
            else:
                text = decode_bytes(data, charset)
                if ctype == "text/html" or name.lower().endswith((".htm", ".html")):
                    text = html_to_text(text)
            info["scanned"] = True
            texts.append(_Text("attachment", name, text))
            return
        if ctype == "text/plain":
            body_parts.append(_part_text(part, charset))
        elif ctype == "text/html":
            if not in_alternative_with_plain:
                body_parts.append(html_to_text(_part_text(part, charset)))
            else:  # the same content as the plain part: still scanned, not repeated in body_text
                texts.append(_Text("alternative", None, html_to_text(_part_text(part, charset))))
        elif ctype.startswith("text/"):
            body_parts.append(_part_text(part, charset))
        # other inline parts (images, ...) hold no text

    walk(msg, False)
    body_text = "\n\n".join(p.strip() for p in body_parts if p and p.strip())
    if body_text:
        texts.insert(1 if headers["subject"] else 0, _Text("body", None, body_text))
    return _Parsed(headers, addresses, texts, body_text, attachments)


def _attached_message_text(data: bytes) -> str:
    """An attached .eml as text: its headers and every text it holds (it is a mention, not a party)."""
    parsed = parse_message(data, len(data) + 1)
    head = "\n".join(f"{h.title()}: {parsed.headers[h]}" for h in ("from", "to", "cc", "subject")
                     if parsed.headers.get(h))
    body = "\n".join(t.text for t in parsed.texts if t.label != "subject")
    return f"{head}\n{body}".strip()


# --------------------------------------------------------------------------- search queries
def _any_of(terms: list[str]) -> str:
    return terms[0] if len(terms) == 1 else "(" + " OR ".join(terms) + ")"


def _q_value(value: str) -> str:
    """An operator value as Gmail's `q` takes it: bare when it is plain, else quoted."""
    return value if re.fullmatch(r"[\w.+\-@']+", value) else '"' + value.replace('"', "") + '"'


def _phrase(value: str) -> str:
    return '"' + value.replace('"', " ").strip() + '"'


def phone_forms(e164: str) -> list[str]:
    parsed = phonenumbers.parse(e164, None)
    national = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.NATIONAL)
    forms = [national,
             phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.INTERNATIONAL),
             re.sub(r"\D", "", national),
             e164]
    out: list[str] = []
    for f in forms:
        if f and f not in out:
            out.append(f)
    return out


def name_phrases(name: str) -> list[str]:
    """ "First Last" and "Last, First" (words as written, accents kept; and folded when different)."""
    text = " ".join(name.split())
    if text.count(",") == 1:
        last, first = text.split(",")
        text = f"{first.strip()} {last.strip()}"
    words = [w for w in re.findall(r"[^\W\d_][\w'\u2019\-]*", text)]
    folded = [t for t in name_tokens(name)]
    out: list[str] = []
    for ws in (words, folded):
        if not ws:
            continue
        for phrase in (" ".join(ws), f"{ws[-1]}, {' '.join(ws[:-1])}" if len(ws) > 1 else None):
            if phrase and phrase not in out:
                out.append(phrase)
    return out


def _same_address(token: str, key: str) -> bool:
    """Whether an email token is another spelling of the address `key` (its normalised form)."""
    try:
        return normalise_email(token) == key
    except (InvalidIdentifier, ValueError):
        return False


def search_queries(matcher: SubjectMatcher) -> list[str]:
    """One Gmail search per identifier (their results are united)."""
    subject = matcher.subject
    queries = []
    for e in subject.emails:
        # an internationalised address is searched as its key (A-label domain) and as written in Unicode
        forms = [e] + sorted({t for t in matcher.email_tokens if "@" in t and t != e
                              and unicodedata.normalize("NFC", t) == t and _same_address(t, e)})
        queries.append(" OR ".join(f"from:{v} OR to:{v} OR cc:{v} OR bcc:{v} OR {_phrase(f)}"
                                   for f in forms for v in [_q_value(f)]))
    for p in subject.phones:
        queries.append(" OR ".join(_phrase(f) for f in phone_forms(p)))
    for n in subject.names:
        phrases = name_phrases(n)
        if phrases:
            queries.append(" OR ".join(_phrase(f) for f in phrases))
    for value in matcher.text_id_values:
        queries.append(_phrase(value))
    return queries


# --------------------------------------------------------------------------- connector
class GmailConnector(Connector):
    kind = "gmail"
    can_update = False  # Gmail cannot edit a message: no anonymising or rectifying in place
    can_redact = True  # a redaction replaces the message by a redacted copy (see _redact_messages)

    def __init__(self, store, *, sleep: Sleep | None = None, rng: random.Random | None = None, **kwargs):
        super().__init__(store, **kwargs)
        self._sleep: Sleep = sleep or time.sleep
        self._rng = rng or random.Random()
        self._service = None
        self._messages_resource = None
        self._http = None
        self._authenticated = False
        self._checked = False
        self.user_id = str(store.get("user_id") or "")
        endpoint = store.get("api_endpoint")
        self.api_endpoint = (str(endpoint).rstrip("/") + "/") if endpoint else None
        self.batch_size = self._int_option("batch_size", DEFAULT_BATCH, 1, MAX_BATCH)
        self.max_attempts = self._int_option("max_attempts", DEFAULT_MAX_ATTEMPTS, 1, 50)
        self.backoff_base = self._float_option("backoff_base", DEFAULT_BACKOFF_BASE)
        self.backoff_cap = self._float_option("backoff_cap", DEFAULT_BACKOFF_CAP)
        self.timeout = self._float_option("timeout", DEFAULT_TIMEOUT)
        self.max_attachment_bytes = int(self._float_option("max_attachment_mb", DEFAULT_MAX_ATTACHMENT_MB)
                                        * 1024 * 1024)
        self.include_spam_trash = bool(store.get("include_spam_trash", False))
        self.retries = 0  # calls retried after a 429/5xx (for tests and progress)
        self.stats: dict[str, int] = {}

    # ------------------------------------------------------------------ options
    def _int_option(self, key: str, default: int, low: int, high: int) -> int:
        value = self.store.get(key, default)
        try:
            value = int(value)
        except (TypeError, ValueError):
            raise ConfigError(f"store '{self.name}': '{key}' must be a whole number") from None
        if not low <= value <= high:
            raise ConfigError(f"store '{self.name}': '{key}' must be between {low} and {high}")
        return value

    def _float_option(self, key: str, default: float) -> float:
        value = self.store.get(key, default)
        try:
            value = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"store '{self.name}': '{key}' must be a number") from None
        if value < 0:
            raise ConfigError(f"store '{self.name}': '{key}' must not be negative")
        return value

    def erase_mode(self) -> str:
        mode = str(self.store.get("erase", "trash")).strip().lower()
        if mode not in ERASE_MODES:
            raise ConfigError(f"store '{self.name}': 'erase' must be one of {', '.join(ERASE_MODES)}")
        return mode

    # ------------------------------------------------------------------ credentials and client
    def _credentials(self):
        """google-auth credentials from the store's credentials_env, or None when there are none and an
        api_endpoint is set (test endpoints only)."""
        env_name = self.store.get("credentials_env")
        value = os.environ.get(env_name) if env_name else self.store.get("credentials")
        if not value or not str(value).strip():
            if self.api_endpoint:
                return None
            if env_name:
                raise ConfigError(
                    f"store '{self.name}' (gmail): environment variable {env_name} (named by credentials_env) "
                    "is not set; it must hold a service-account JSON with domain-wide delegation")
            raise ConfigError(
                f"store '{self.name}' (gmail) has no credentials: set credentials_env to the name of an environment "
                "variable holding a service-account JSON with domain-wide delegation")
        where = f"environment variable {env_name}" if env_name else "'credentials'"
        text = str(value).strip()
        if not text.startswith("{"):
            path = Path(os.path.expanduser(text))
            if not path.is_absolute():
                path = self.store.base_dir / path
            try:
                text = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError):
                raise ConfigError(f"store '{self.name}': {where} holds neither a credentials JSON nor the path of a "
                                  "readable one") from None
        try:
            info = json.loads(text)
        except ValueError:
            raise ConfigError(f"store '{self.name}': {where} does not hold valid JSON") from None
        if not isinstance(info, dict):
            raise ConfigError(f"store '{self.name}': {where} does not hold a credentials JSON object")
        kind = info.get("type")
        try:
            if kind == "service_account":
                from google.oauth2 import service_account
                if not self.user_id or self.user_id == "me":
                    raise ConfigError(f"store '{self.name}': a service account needs user_id, the mailbox's address "
                                      "(domain-wide delegation acts as that user)")
                creds = service_account.Credentials.from_service_account_info(info, scopes=SCOPES)
                return creds.with_subject(self.user_id)
            if kind == "authorized_user":
                from google.oauth2.credentials import Credentials
                return Credentials.from_authorized_user_info(info, scopes=SCOPES)
        except ConfigError:
            raise
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"store '{self.name}': the credentials in {where} are incomplete or invalid "
                              f"({exc.__class__.__name__})") from None
        raise ConfigError(f"store '{self.name}': the credentials in {where} have type {kind!r}; "
                          "expected 'service_account' (with domain-wide delegation) or 'authorized_user'")

    # ---- discovery
    SWEEP_HEADERS = ("from", "to", "cc")

    def containers(self, rows: int | None = None) -> list[Container]:
        """The mailbox as one container, signed by its history id, message count and the ids of its newest
        `rows` messages (those the sample reads)."""
        rows = rows or 50
        profile = self._execute_profile()
        ids = [m["id"] for messages in self._message_pages(
            "message list", limit=rows, includeSpamTrash=False, fields="messages(id),nextPageToken")
            for m in messages]
        self._sweep_ids = ids[:rows]
        return [Container(CONTAINER, change_signature("gmail", profile.get("historyId"),
                                                      profile.get("messagesTotal"), self._sweep_ids))]

    def sample_containers(self, names, rows, counter) -> Iterator[Sampled]:
        """The newest `rows` messages (listed by `containers`) classified as columns from, to, cc (addresses,
        and names by Presidio), subject and body (free text); stored in the inventory."""
        if CONTAINER not in names:
            return
        from pii.core import classify as cls
        from pii.core.inventory import EMAIL, ColumnProfile

        ids = getattr(self, "_sweep_ids", None)
        if ids is None:
            self.containers(rows)
            ids = self._sweep_ids
        ids = ids[:rows]
        values: dict[str, list[str]] = {c: [] for c in (*self.SWEEP_HEADERS, "subject", "body")}
        names_shown: dict[str, list[str]] = {h: [] for h in self.SWEEP_HEADERS}
        fetched = 0
        for batch in self._raw_batches(ids):
            for _mid, resource in batch:
                try:
                    parsed = parse_message(_b64url_decode(resource["raw"]), self.max_attachment_bytes)
                except Exception:  # noqa: BLE001 - one unparseable message must not stop the sweep
                    continue
                fetched += 1
                for h in self.SWEEP_HEADERS:
                    if parsed.headers.get(h):
                        values[h].append(parsed.headers[h])
                        shown = [n for n, _a in email.utils.getaddresses([parsed.headers[h]]) if n]
                        if shown:
                            names_shown[h].append(" ".join(shown))
                values["subject"].append(parsed.headers.get("subject") or "")
                values["body"].append(parsed.body_text)
        count = counter()
        profiles: dict = {}
        for h in self.SWEEP_HEADERS:
            present = values[h]
            with_address = sum(1 for v in present if any("@" in a for _n, a in email.utils.getaddresses([v])))
            entities = {"EMAIL_ADDRESS"} if with_address else set()
            if names_shown[h] and count is not None:
                counts = count(names_shown[h])
                entities |= {e for e, c in counts.items() if c / len(present) >= 0.3}
            confidence = round(with_address / len(present), 3) if present else 0.0
            profiles[h] = ColumnProfile(EMAIL, sorted(entities), confidence, len(present))
        profiles["subject"] = cls.free_text_profile(values["subject"], count)
        profiles["body"] = cls.free_text_profile(values["body"], count)
        self.keep_profiles(CONTAINER, profiles)
        yield Sampled(CONTAINER, profiles, fetched)

    def _client(self):
        if self._service is None:
            if self.store.get("conn_id") and not (self.store.get("credentials_env") or self.api_endpoint):
                raise ConfigError(
                    f"store '{self.name}' names conn_id; Airflow connections are resolved by Lethe's Airflow hook, "
                    "outside Airflow give 'user_id' and 'credentials_env'")
            if not self.user_id:
                raise ConfigError(f"store '{self.name}' (gmail) needs 'user_id'")
            import httplib2
            from googleapiclient.discovery import build

            creds = self._credentials()
            http = httplib2.Http(timeout=self.timeout)
            if creds is not None:
                import google_auth_httplib2
                http = google_auth_httplib2.AuthorizedHttp(creds, http=http)
                self._authenticated = True
            else:
                self.say("no credentials: talking to api_endpoint unauthenticated (test endpoints only)")
            options = {"api_endpoint": self.api_endpoint} if self.api_endpoint else None
            # static_discovery: the discovery document shipped inside google-api-python-client (no network)
            self._service = build("gmail", "v1", http=http, static_discovery=True, cache_discovery=False,
                                  client_options=options)
            self._http = http
        return self._service

    @property
    def _messages(self):
        """The users.messages resource, built once (building it from the discovery document is costly)."""
        if self._messages_resource is None:
            self._messages_resource = self._client().users().messages()
        return self._messages_resource

    def _new_batch(self, callback):
        from googleapiclient.http import BatchHttpRequest

        if self.api_endpoint:  # batches do not follow api_endpoint by themselves
            return BatchHttpRequest(callback=callback, batch_uri=self.api_endpoint + "batch/gmail/v1")
        return self._client().new_batch_http_request(callback=callback)

    def close(self) -> None:
        http = self._http
        if http is not None:
            inner = getattr(http, "http", http)
            for conn in list(getattr(inner, "connections", {}).values()):
                try:
                    conn.close()
                except Exception:  # noqa: BLE001
                    pass
        self._service = None
        self._messages_resource = None
        self._http = None

    # ------------------------------------------------------------------ errors and retries
    @staticmethod
    def _reasons(exc) -> set[str]:
        try:
            data = json.loads(exc.content.decode("utf-8") if isinstance(exc.content, bytes) else exc.content)
            err = data.get("error") or {}
            reasons = {e.get("reason") for e in err.get("errors") or [] if isinstance(e, dict)}
            if err.get("status"):
                reasons.add(err["status"])
            return {r for r in reasons if r}
        except Exception:  # noqa: BLE001
            return set()

    def _classify(self, exc) -> str:
        """'retry', 'gone', 'auth' or 'fatal' for a googleapiclient HttpError."""
        status = exc.resp.status
        if status == 429 or status >= 500:
            return "retry"
        if status == 404:
            return "gone"
        if status == 403 and (self._reasons(exc) & (RATE_LIMIT_REASONS | {"RESOURCE_EXHAUSTED"})):
            return "retry"
        if status in (401, 403):
            return "auth"
        return "fatal"

    def _auth_error(self, status: int) -> StoreUnreachable:
        if not self._authenticated:
            return StoreUnreachable(self.name, f"credentials refused (HTTP {status}): the endpoint wants credentials; "
                                               "set credentials_env")
        return StoreUnreachable(self.name, f"credentials refused (HTTP {status}): check the service account's "
                                           "domain-wide delegation, its scope https://mail.google.com/ and user_id")

    def _refresh_error(self, exc) -> StoreUnreachable:
        from google.auth import exceptions as gauth

        if isinstance(exc, gauth.RefreshError):
            code = ""
            data = exc.args[1] if len(exc.args) > 1 else None
            if isinstance(data, dict) and isinstance(data.get("error"), str):
                code = f": {data['error'][:60]}"
            return StoreUnreachable(self.name, f"credentials refused by the token endpoint{code}")
        return StoreUnreachable(self.name, f"token endpoint unreachable ({exc.__class__.__name__})")

    def _backoff(self, attempt: int, exc=None) -> None:
        delay = min(self.backoff_cap, self.backoff_base * (2 ** attempt))
        delay = delay / 2 + self._rng.uniform(0, delay / 2)  # jitter: spread clients that failed together
        retry_after = None
        try:
            retry_after = float(exc.resp.get("retry-after")) if exc is not None else None
        except (TypeError, ValueError, AttributeError):
            retry_after = None
        if retry_after:
            delay = max(delay, min(retry_after, self.backoff_cap))
        self.retries += 1
        self._sleep(delay)

    def _transport_errors(self) -> tuple:
        import httplib2

        return (httplib2.HttpLib2Error, OSError, socket.timeout)

    def _execute(self, request, what: str, passthrough: tuple[int, ...] = ()):
        """One API call with retries; raises _Gone on 404, and the HttpError itself for `passthrough` statuses."""
        from google.auth import exceptions as gauth
        from googleapiclient.errors import HttpError

        attempt = transport = 0
        while True:
            try:
                return request.execute(num_retries=0)
            except HttpError as exc:
                if exc.resp.status in passthrough:
                    raise
                kind = self._classify(exc)
                if kind == "retry":
                    attempt += 1
                    if attempt >= self.max_attempts:
                        raise StoreError(self.name, what, f"HTTP {exc.resp.status}: still rate limited or failing "
                                                          f"after {attempt} attempts") from None
                    self._backoff(attempt - 1, exc)
                    continue
                if kind == "gone":
                    raise _Gone() from None
                if kind == "auth":
                    raise self._auth_error(exc.resp.status) from None
                raise StoreError(self.name, what, f"HTTP {exc.resp.status}") from None
            except (gauth.RefreshError, gauth.TransportError) as exc:
                raise self._refresh_error(exc) from None
            except self._transport_errors() as exc:
                transport += 1
                if transport >= TRANSPORT_ATTEMPTS:
                    raise self._unreachable(exc) from None
                self._backoff(transport - 1)

    def _unreachable(self, exc: BaseException) -> StoreUnreachable:
        return StoreUnreachable(self.name, f"cannot reach {self._host()} ({exc.__class__.__name__})")

    def _host(self) -> str:
        from urllib.parse import urlsplit

        return urlsplit(self.api_endpoint or DEFAULT_ROOT).netloc

    def _run_batch(self, calls: list[tuple[str, Callable[[], Any]]], what: str) -> dict[str, Any]:
        """Run (key, request factory) calls in one HTTP batch, retrying failed calls with backoff.
        Returns {key: response}; a key whose call answered 404 maps to _Gone."""
        from google.auth import exceptions as gauth
        from googleapiclient.errors import HttpError

        results: dict[str, Any] = {}
        pending = list(calls)
        attempt = transport = 0
        while pending:
            answers: dict[str, tuple[Any, Any]] = {}

            def callback(request_id, response, exception, _answers=answers):
                _answers[request_id] = (response, exception)

            batch = self._new_batch(callback)
            for key, make in pending:
                batch.add(make(), request_id=key)
            try:
                batch.execute(http=self._http)
            except HttpError as exc:  # the batch request itself
                kind = self._classify(exc)
                if kind == "retry":
                    attempt += 1
                    if attempt >= self.max_attempts:
                        raise StoreError(self.name, what, f"HTTP {exc.resp.status}: still rate limited or failing "
                                                          f"after {attempt} attempts") from None
                    self._backoff(attempt - 1, exc)
                    continue
                if kind == "auth":
                    raise self._auth_error(exc.resp.status) from None
                raise StoreError(self.name, what, f"batch request: HTTP {exc.resp.status}") from None
            except (gauth.RefreshError, gauth.TransportError) as exc:
                raise self._refresh_error(exc) from None
            except self._transport_errors() as exc:
                transport += 1
                if transport >= TRANSPORT_ATTEMPTS:
                    raise self._unreachable(exc) from None
                self._backoff(transport - 1)
                continue
            retry: list[tuple[str, Callable[[], Any]]] = []
            last_exc = None
            for key, make in pending:
                response, exc = answers.get(key, (None, None))
                if key not in answers:
                    retry.append((key, make))  # the batch answer left it out: ask again
                    continue
                if exc is None:
                    results[key] = response
                    continue
                if not isinstance(exc, HttpError):
                    raise StoreError(self.name, what, f"batch answer: {exc.__class__.__name__}") from None
                kind = self._classify(exc)
                if kind == "retry":
                    retry.append((key, make))
                    last_exc = exc
                elif kind == "gone":
                    results[key] = _Gone
                elif kind == "auth":
                    raise self._auth_error(exc.resp.status) from None
                else:
                    raise StoreError(self.name, what, f"HTTP {exc.resp.status} for a call in a batch") from None
            if retry:
                attempt = 0 if len(retry) < len(pending) else attempt + 1  # progress resets the count
                if attempt >= self.max_attempts:
                    status = last_exc.resp.status if last_exc is not None else "?"
                    raise StoreError(self.name, what, f"HTTP {status}: {len(retry)} call(s) still rate limited or "
                                                      f"failing after {attempt} attempts") from None
                self._backoff(attempt, last_exc)
            pending = retry
        return results

    # ------------------------------------------------------------------ check
    def check(self) -> None:
        if self._checked:
            return
        self._execute_profile()
        self._checked = True

    def _execute_profile(self) -> dict:
        """The mailbox's profile (history id, message count); StoreUnreachable when there is no mailbox."""
        try:
            return self._execute(self._client().users().getProfile(userId=self.user_id), "mailbox profile")
        except _Gone:
            raise StoreUnreachable(self.name, "the mailbox (user_id) was not found") from None

    def _message_pages(self, what: str, *, limit: int | None = None, **query) -> Iterator[list[dict]]:
        """The pages of a `messages.list` (newest first) for `query`, each page's message dicts; with
        `limit`, no more pages once that many messages were listed (and no page asks for more)."""
        token = None
        listed = 0
        while limit is None or listed < limit:
            size = LIST_PAGE_SIZE if limit is None else min(LIST_PAGE_SIZE, limit - listed)
            kwargs = {"userId": self.user_id, **query, "maxResults": size}
            if token:
                kwargs["pageToken"] = token
            try:
                page = self._execute(self._messages.list(**kwargs), what)
            except _Gone:
                raise StoreUnreachable(self.name, "the mailbox (user_id) was not found") from None
            messages = page.get("messages") or []
            listed += len(messages)
            yield messages
            token = page.get("nextPageToken")
            if not token:
                break

    def _raw_batches(self, ids: list[str]) -> Iterator[list[tuple[str, dict]]]:
        """The messages `ids` in raw form, one batch request per `batch_size` ids, each batch as
        (id, resource) pairs in order; ids unknown or deleted since they were listed are left out."""
        for i in range(0, len(ids), self.batch_size):
            chunk = ids[i:i + self.batch_size]
            got = self._run_batch(
                [(mid, lambda mid=mid: self._messages.get(userId=self.user_id, id=mid, format="raw"))
                 for mid in chunk], "message fetch")
            yield [(mid, got[mid]) for mid in chunk
                   if got.get(mid) is not _Gone and got.get(mid) and "raw" in got[mid]]

    # ------------------------------------------------------------------ locate
    def _list_ids(self, queries: list[str]) -> dict[str, str]:
        ids: dict[str, str] = {}
        pages = 0
        for q in queries:
            for messages in self._message_pages("message search", q=q, includeSpamTrash=self.include_spam_trash,
                                                fields="messages(id,threadId),nextPageToken"):
                pages += 1
                for m in messages:
                    ids.setdefault(m["id"], m.get("threadId") or "")
        self.stats["list_pages"] = pages
        return ids

    def locate(self, matcher: SubjectMatcher) -> list[Finding]:
        self.check()
        queries = search_queries(matcher)
        if not queries:
            self.say("no identifier Gmail can search for (ids shorter than 5 characters are not searched)")
            return []
        started = time.monotonic()
        self.coverage = Coverage(self.name, self.kind)
        self.coverage.add_searched(CONTAINER, how={"gmail-search": len(queries)})
        ids = self._list_ids(queries)
        self.say(f"{len(ids)} messages listed by {len(queries)} searches ({self.stats['list_pages']} pages)")
        findings: list[Finding] = []
        fetched = unconfirmed = 0
        id_list = list(ids)
        for batch in self._raw_batches(id_list):  # ids deleted since they were listed are left out
            for mid, resource in batch:
                fetched += 1
                finding = self._confirm(mid, resource, matcher)
                if finding is None:
                    unconfirmed += 1
                else:
                    findings.append(finding)
            if len(id_list) > self.batch_size:
                self.say(f"{fetched} of {len(id_list)} messages fetched")
        elapsed = time.monotonic() - started
        self.stats.update(listed=len(ids), fetched=fetched, matched=len(findings), unconfirmed=unconfirmed)
        self.say(f"{fetched} messages fetched, {len(findings)} matched, {unconfirmed} search hits not confirmed "
                 f"({elapsed:.1f} s)")
        return merge(findings)

    def _confirm(self, mid: str, resource: dict, matcher: SubjectMatcher) -> Finding | None:
        raw = _b64url_decode(resource["raw"])
        try:
            parsed = parse_message(raw, self.max_attachment_bytes)
        except Exception as exc:  # noqa: BLE001 - one unparseable message must not stop a subject search
            return Finding(store=self.name, location={"message_id": mid}, entities=[], match="text", strength=WEAK,
                           container=CONTAINER, note=f"Gmail's search matched this message but Lethe cannot parse it "
                                                     f"({exc.__class__.__name__}); review it",
                           record={"message_id": mid, "thread_id": resource.get("threadId") or "", "party": False,
                                   "body_text": "", "attachments": []})
        unread_parts = [a for a in parsed.attachments if not a["scanned"]]
        if unread_parts:  # what Lethe could not read in a message the search returned: listed, by type only
            types = sorted({str(a.get("content_type") or "unknown type") for a in unread_parts})
            self.coverage.add_partial(f"message {mid}", f"{len(unread_parts)} attachment(s) not scanned "
                                                        f"({', '.join(types)})")
        ident: set[str] = set()
        for display, addr in parsed.addresses:
            if addr and matcher.email_matches(addr):
                ident.add(ENTITY_EMAIL)
            if display:
                if matcher.name_matches(display):
                    ident.add(ENTITY_PERSON)
                if matcher.phone_matches(display):  # SMS and fax gateways put the number there
                    ident.add(ENTITY_PHONE)
        text_entities: set[str] = set()
        hits: list[tuple[_Text, list[TextMatch]]] = []
        for t in parsed.texts:
            if not t.text or not matcher.could_mention(t.text):
                continue
            spans = matcher.find_in_text(t.text)
            if spans:
                hits.append((t, spans))
                text_entities.update(entities_of(spans))
        party = bool(ident)
        record = _message_record(mid, resource, parsed, party)
        location: dict[str, Any] = {"message_id": mid}
        note = None
        whole = party and bool((ident | text_entities) - {ENTITY_PERSON})
        if whole:
            entities = ident | text_entities
            record["body_text"] = parsed.body_text
            record["_raw_eml"] = base64.b64encode(raw).decode("ascii")
            match = "identifier"
        elif party or hits:
            # a mention, or a party by display name alone (perhaps a namesake): only the lines about them
            entities = ident | text_entities
            if party:
                note = "a party by display name only: the whole message is withheld until reviewed"
            lines: list[str] = []
            plain_hit = any(t.label == "body" for t, _ in hits)
            for t, spans in hits:
                if t.label == "subject" or (t.label == "alternative" and plain_hit):
                    continue  # the record's subject field holds it; the HTML twin repeats the plain body
                for piece in excerpt(t.text, spans):
                    tag = f"{t.name}, {t.where}" if t.where else t.name
                    lines.append(f"[{tag}] {piece}" if t.label == "attachment" else piece)
                if t.where:  # where in a document attachment the subject is: by place, never the value
                    for a in record.get("attachments") or []:
                        if a.get("filename") == t.name and t.where not in a.setdefault("found_at", []):
                            a["found_at"].append(t.where)
            record["body_text"] = "\n".join(dict.fromkeys(lines))
            if not party and all(t.label == "attachment" for t, _ in hits):
                location["part"] = hits[0][0].name
            match = "identifier" if party else "text"
        else:
            unread = [a for a in parsed.attachments if not a["scanned"]]
            if not unread:
                return None  # Gmail's fuzzy search matched; the matcher does not: not the subject's
            entities = set()
            match = "text"
            note = (f"Gmail's search matched this message but Lethe could not confirm it: {len(unread)} attachment(s) "
                    "not scanned; review it")
            record = {"message_id": mid, "thread_id": record["thread_id"], "date": record["date"], "party": False,
                      "body_text": "", "attachments": record["attachments"]}
        strong = bool(entities - {ENTITY_PERSON})
        return Finding(store=self.name, location=location, entities=sorted(entities), match=match,
                       strength=STRONG if strong else WEAK, container=CONTAINER, record=record, note=note)

    # ------------------------------------------------------------------ select
    def select(self, flt: RecordFilter) -> list[Finding]:
        """Messages the filter selects (see pii/core/selection.py), each a finding ``{"message_id": id}`` with match
        "identifier" (or "text" with a text test) and the whole message's record (as `locate` gives a party's,
        without ``_raw_eml``; ``party`` is False: no subject is involved).

        Containers: "*" or a glob matching the mailbox ("messages", the user_id or the store name) take the
        whole mailbox; a name without glob characters that does not is a label (pushed down as ``label:``);
        any other glob selects nothing here. Pushed down to ``q=``: ``mail_from`` and ``equals`` on
        from/to/subject as ``from:``/``to:``/``subject:``, MESSAGE_DATE bounds as ``after:``/``before:`` (a day
        wider, so the search is a superset whatever the mailbox's time zone); ``message_ids`` are fetched
        directly (an unknown id selects nothing). Every candidate is then checked here with the filter's own
        rules (normalised addresses, exact subjects, dates from internalDate in UTC, the text test on the
        subject and body). A text test alone is refused: it would read the whole mailbox."""
        self.skipped = []
        self.undated = 0
        labels, whole = self._select_containers(flt)
        if not (whole or labels):
            self.say("no container of the selection is this mailbox: nothing selected")
            return []
        for col in flt.equals:
            if col.casefold() not in MAIL_COLUMNS:
                self.skipped.append((CONTAINER, f"no column {col!r} (mail compares only from, to and subject)"))
                return []
        if flt.date_column == FILE_TIME or (flt.date_column and flt.date_column != MESSAGE_DATE
                                            and flt.date_column.casefold() != "date"):
            self.skipped.append((CONTAINER, f"no column {flt.date_column!r} (mail has its message date)"))
            return []
        conditions = {col.casefold(): values for col, values in flt.equals.items()}
        senders = {a for a in (normalise_email(v) for v in flt.mail_from) if a}
        addresses = {col: {a for a in (normalise_email(v) for v in conditions[col]) if a}
                     for col in ("from", "to") if col in conditions}
        if (flt.mail_from and not senders) or any(not found for found in addresses.values()):
            self.say("no valid e-mail address among the accepted senders: nothing selected")
            return []
        parts = []
        if senders:
            parts.append(_any_of([f"from:{_q_value(a)}" for a in sorted(senders)]))
        for col, found in addresses.items():
            parts.append(_any_of([f"{col}:{_q_value(a)}" for a in sorted(found)]))
        subjects = conditions.get("subject")
        if subjects and all(re.search(r"\w", v) for v in subjects):
            parts.append(_any_of([f'subject:"{v.replace(chr(34), " ")}"' for v in subjects]))
        if flt.after:
            parts.append(f"after:{_day(flt.after)}")
        if flt.before:
            parts.append(f"before:{_day(flt.before + timedelta(days=1))}")
        if not (parts or flt.message_ids):
            raise ConfigError(
                f"store '{self.name}': a selection over a whole mailbox needs a bound Gmail can search for: senders "
                "(mail_from), message ids, a message-date bound, or equals on from/to/subject; a text test alone "
                "would read every message")
        if not whole:
            parts.append(_any_of([f"label:{_q_value(name)}" for name in labels]))
        self.check()
        if flt.message_ids:
            ids = list(dict.fromkeys(m for m in flt.message_ids if isinstance(m, str) and _MESSAGE_ID.fullmatch(m)))
            if not whole:  # which of them carry the label: Gmail's search knows label names, a message only ids
                allowed = self._list_ids([" ".join(parts)])
                ids = [m for m in ids if m in allowed]
        else:
            ids = list(self._list_ids([" ".join(parts)]))
        self.say(f"{len(ids)} candidate messages")
        findings: list[Finding] = []
        fetched = unreadable = 0
        for batch in self._raw_batches(ids):  # unknown ids, or deleted since listed, are left out
            for mid, resource in batch:
                if not self.include_spam_trash and {"TRASH", "SPAM"} & set(resource.get("labelIds") or []):
                    continue  # trashed counts as erased (as the searches do)
                fetched += 1
                try:
                    parsed = parse_message(_b64url_decode(resource["raw"]), self.max_attachment_bytes)
                except Exception:  # noqa: BLE001 - one unparseable message must not stop a selection
                    unreadable += 1
                    continue
                finding = self._selected(flt, mid, resource, parsed, senders, addresses, subjects)
                if finding is not None:
                    findings.append(finding)
            if len(ids) > self.batch_size:
                self.say(f"{fetched} of {len(ids)} messages fetched")
        if unreadable:
            self.skipped.append((CONTAINER, f"{unreadable} messages could not be parsed"))
        self.say(f"{fetched} messages fetched, {len(findings)} selected, {self.undated} undated, "
                 f"{unreadable} unreadable")
        return findings

    def _select_containers(self, flt: RecordFilter) -> tuple[list[str], bool]:
        """(labels named, whether a pattern takes the whole mailbox)."""
        names = {CONTAINER, self.user_id.casefold(), self.name.casefold()}
        labels: list[str] = []
        for pattern in flt.containers:
            if any(fnmatchcase(n, pattern.casefold()) for n in names if n):
                return [], True
            if pattern.strip() and not _GLOB.search(pattern):
                labels.append(pattern.strip())
        return labels, False

    def _selected(self, flt: RecordFilter, mid: str, resource: dict, parsed: _Parsed, senders: set[str],
                  addresses: dict[str, set[str]], subjects: tuple[str, ...] | None) -> Finding | None:
        from_addresses = _header_addresses(parsed.headers["from"])
        if senders and not from_addresses & senders:
            return None
        if "from" in addresses and not from_addresses & addresses["from"]:
            return None
        if "to" in addresses and not _header_addresses(parsed.headers["to"]) & addresses["to"]:
            return None
        if subjects is not None and parsed.headers["subject"].strip() not in subjects:
            return None
        record = _message_record(mid, resource, parsed, False, parsed.body_text)
        in_range = flt.date_ok(_message_day(record["date"])) if (flt.before or flt.after) else True
        if in_range is False:
            return None
        if flt.text_test is not None and not (flt.text_ok(parsed.headers["subject"]) or flt.text_ok(parsed.body_text)):
            return None
        if in_range is None:  # an otherwise selected message without a readable date
            self.undated += 1
            return None
        return Finding(store=self.name, location={"message_id": mid}, entities=[flt.entity] if flt.entity else [],
                       match="text" if flt.text_test is not None else "identifier", strength=STRONG,
                       container=CONTAINER, record=record)

    # ------------------------------------------------------------------ erasure
    def apply(self, actions: list[ExecAction], done: Done, matcher: SubjectMatcher) -> None:
        updates = [a for a in actions if a.kind == UPDATE]
        actions = [a for a in actions if a.kind != UPDATE]
        mode = self.erase_mode()
        if updates:  # a redaction: a redacted copy replaces the message (see _redact_messages)
            deleting = {(a.location or {}).get("message_id") for a in actions}
            self._redact_messages([a for a in updates if (a.location or {}).get("message_id") not in deleting],
                                  done, matcher, mode)
            for a in updates:
                if (a.location or {}).get("message_id") in deleting:
                    done([a.action_id], 0, "the message is deleted by another action")
        by_message: dict[str, list[str]] = {}
        for a in actions:
            if a.kind != DELETE:
                raise StoreError(self.name, "erasure", f"unknown action kind {a.kind!r}")
            mid = (a.location or {}).get("message_id")
            if not isinstance(mid, str) or not mid:
                raise StoreError(self.name, f"action {a.action_id}", "the planned location has no message_id")
            by_message.setdefault(mid, []).append(a.action_id)
        if not by_message:
            return
        self.check()
        ids = list(by_message)
        total = 0
        if mode == "delete":
            for i in range(0, len(ids), BATCH_DELETE_MAX):
                chunk = ids[i:i + BATCH_DELETE_MAX]
                n = self._delete_for_good(chunk)
                total += n
                done([aid for mid in chunk for aid in by_message[mid]], n, None)
        else:
            for i in range(0, len(ids), self.batch_size):
                chunk = ids[i:i + self.batch_size]
                got = self._run_batch(
                    [(mid, lambda mid=mid: self._messages.trash(userId=self.user_id, id=mid)) for mid in chunk],
                    "moving messages to Trash")
                n = sum(1 for mid in chunk if got.get(mid) is not _Gone)
                total += n
                done([aid for mid in chunk for aid in by_message[mid]], n, None)
        verb = "deleted for good" if mode == "delete" else "moved to Trash"
        self.say(f"{total} of {len(ids)} messages {verb} ({len(ids) - total} already gone)")

    def _delete_for_good(self, chunk: list[str]) -> int:
        """batchDelete (one call for up to 1000 ids). Should Gmail refuse the batch because an id is unknown
        (already deleted), delete one by one, where 404 means done. Returns the messages deleted (as far as
        Gmail tells: batchDelete does not say which ids existed)."""
        from googleapiclient.errors import HttpError

        try:
            self._execute(self._messages.batchDelete(userId=self.user_id, body={"ids": chunk}), "permanent deletion",
                          passthrough=(400, 404))
            return len(chunk)
        except HttpError:
            pass  # an unknown (already deleted) or invalid id: one by one below
        deleted = 0
        for i in range(0, len(chunk), self.batch_size):
            part = chunk[i:i + self.batch_size]
            got = self._run_batch(
                [(mid, lambda mid=mid: self._messages.delete(userId=self.user_id, id=mid)) for mid in part],
                "permanent deletion")
            deleted += sum(1 for mid in part if got.get(mid) is not _Gone)
        return deleted

    # ------------------------------------------------------------------ redaction
    def _redact_messages(self, actions: list[ExecAction], done: Done, matcher: SubjectMatcher, mode: str) -> None:
        """Gmail cannot edit a message, so a redaction adds a redacted copy (connectors/mailredact.py) with
        ``users.messages.import`` (labels, thread and Date-header internal date kept; JSON body with ``raw``),
        fetches it back and checks it, and only then trashes or deletes the original (the store's ``erase``).

        Crash-safe: the copy carries ``X-Lethe-Redacted-From: <the action's id>`` (a keyed hash of store and
        message id) and the original's Message-ID (or, when it has none, one derived from that id); a re-run
        searches ``rfc822msgid:`` for it and uses a copy it made before instead of adding another. A copy that
        fails the check is deleted for good (the original is still there) and the message is left as it is;
        an original is never removed without a checked copy. A message Lethe cannot redact (the subject is in a
        part it cannot rewrite, or the mail is larger than the JSON path takes: RAW_JSON_MAX) is left as it
        is and reported: its action is recorded with 0 messages changed and a detail saying why (the
        connector protocol has no per-action failure), and the verification then finds the message, so the
        plan is not verified."""
        from connectors.mailredact import redact_message

        if not actions:
            return
        self.check()
        counts = {"redacted": 0, "resumed": 0, "gone": 0, "not_redacted": 0, "too_large": 0, "other_thread": 0}
        for a in actions:
            mid = (a.location or {}).get("message_id")
            if not isinstance(mid, str) or not mid:
                raise StoreError(self.name, f"action {a.action_id}", "the planned location has no message_id")
            try:
                original = self._execute(self._messages.get(userId=self.user_id, id=mid, format="raw"),
                                         "message fetch")
            except _Gone:
                counts["gone"] += 1
                done([a.action_id], 0, None)
                continue
            if "TRASH" in (original.get("labelIds") or []):  # removed after its copy was checked
                counts["gone"] += 1
                done([a.action_id], 0, None)
                continue
            raw = _b64url_decode(original["raw"])
            marker = a.action_id
            result = redact_message(raw, matcher, marker=marker)
            if not result.changed:
                counts["not_redacted"] += 1  # what names the subject is where Lethe cannot rewrite it
                done([a.action_id], 0, NOT_REWRITABLE)
                continue
            copy_raw = result.raw
            msgid = _message_id_of(raw)
            if not msgid:
                msgid = f"lethe-redacted.{marker}@lethe.invalid"
                copy_raw = f"Message-ID: <{msgid}>".encode("ascii") + (b"\r\n" if b"\r\n" in raw else b"\n") + copy_raw
            if not re.fullmatch(r"[^\s\"(){}<>]+", msgid):  # a search could not find the copy again: not crash-safe
                counts["not_redacted"] += 1
                done([a.action_id], 0, "not redacted: its Message-ID cannot be searched for; left as it is, for review")
                continue
            labels = [x for x in (original.get("labelIds") or []) if x not in ("TRASH", "SPAM", "DRAFT", "CHAT")]
            copy = self._own_copy(mid, msgid, marker, raw, matcher, labels)
            if copy is not None:
                counts["resumed"] += 1
            else:
                encoded = base64.urlsafe_b64encode(copy_raw).decode("ascii")
                if len(encoded) > RAW_JSON_MAX:
                    counts["too_large"] += 1
                    done([a.action_id], 0, f"not redacted: larger than the {RAW_JSON_MAX // (1024 * 1024)} MB JSON "
                                           "upload path; left as it is, for review")
                    continue
                body: dict[str, Any] = {"raw": encoded, "labelIds": labels}
                if original.get("threadId"):
                    body["threadId"] = original["threadId"]
                created = self._execute(self._messages.import_(
                    userId=self.user_id, body=body, internalDateSource="dateHeader", neverMarkSpam=True,
                    processForCalendar=False), "adding the redacted copy")
                try:
                    copy = self._execute(self._messages.get(userId=self.user_id, id=created["id"], format="raw"),
                                         "fetching the redacted copy")
                except _Gone:
                    copy = None
                if copy is None or self._copy_problem(raw, copy, marker, matcher, labels) is not None:
                    if copy is not None:
                        self._discard_copy(copy["id"])
                    counts["not_redacted"] += 1
                    done([a.action_id], 0, NOT_REWRITABLE)
                    continue
            if original.get("threadId") and copy.get("threadId") != original.get("threadId"):
                counts["other_thread"] += 1  # Gmail threads by subject and references: a redacted subject may split
            self._remove_original(mid, mode)
            counts["redacted"] += 1
            done([a.action_id], 1, None)
        verb = "deleted for good" if mode == "delete" else "moved to Trash"
        self.say(f"{counts['redacted']} of {len(actions)} messages replaced by a checked redacted copy (original "
                 f"{verb}; {counts['resumed']} copies from an interrupted run), {counts['gone']} already gone, "
                 f"{counts['other_thread']} in another thread")
        if counts["not_redacted"] or counts["too_large"]:
            self.say(f"{counts['not_redacted'] + counts['too_large']} messages NOT redacted, left as they are for "
                     f"review: {counts['not_redacted']} name the subject where Lethe cannot rewrite it, "
                     f"{counts['too_large']} larger than the {RAW_JSON_MAX // (1024 * 1024)} MB JSON upload path")

    def _own_copy(self, mid: str, msgid: str, marker: str, original_raw: bytes, matcher: SubjectMatcher,
                  labels: list[str]) -> dict | None:
        """A checked redacted copy an earlier run made of message `mid` (found by its Message-ID and marker),
        or None. Copies of ours that fail the check, and copies beyond the first, are deleted for good (the
        original is still there, so nothing is lost)."""
        from connectors.mailredact import MARKER_HEADER, split_head

        ids = [m["id"] for page in self._message_pages("search for a redacted copy", q=f"rfc822msgid:{msgid}",
                                                       includeSpamTrash=True, fields="messages(id),nextPageToken")
               for m in page if m.get("id") != mid]
        found = None
        for batch in self._raw_batches(ids):
            for cid, resource in batch:
                if "TRASH" in (resource.get("labelIds") or []):
                    continue
                head = split_head(_b64url_decode(resource["raw"]))[0]
                hdr = email.message_from_bytes(head + b"\r\n", policy=email.policy.default)
                if str(hdr.get(MARKER_HEADER) or "").strip() != marker:
                    continue  # another message with this Message-ID (a copy in Sent, ...): not ours
                if found is None and self._copy_problem(original_raw, resource, marker, matcher, labels) is None:
                    found = resource
                else:
                    self._discard_copy(cid)
        return found

    def _copy_problem(self, original_raw: bytes, copy: dict, marker: str, matcher: SubjectMatcher,
                      labels: list[str]) -> str | None:
        """Why the copy is not a good redaction of the original (None when it is): the subject still in it
        (as the subject search confirms a message: addresses, display names, every text), a part that was to
        be kept not byte for byte the same, a header missing, a label missing, or no marker."""
        from connectors.mailredact import MARKER_HEADER, header_names, leaf_parts, redact_message

        raw = _b64url_decode(copy.get("raw") or "")
        try:
            parsed = parse_message(raw, len(raw) + 1)  # every text part, however large: the copy is checked whole
        except Exception:  # noqa: BLE001
            return "the copy cannot be parsed"
        for display, addr in parsed.addresses:
            if (addr and matcher.email_matches(addr)) or (display and (matcher.name_matches(display)
                                                                       or matcher.phone_matches(display))):
                return "the subject is still a party"
        for t in parsed.texts:
            if t.text and matcher.could_mention(t.text) and matcher.find_in_text(t.text):
                return "the subject is still mentioned"
        expected = redact_message(original_raw, matcher, marker=marker)
        got = leaf_parts(raw)
        for path, body in expected.kept.items():
            if path not in got or got[path][1] != body:
                return "a part that was to be kept is not the same"
        names = header_names(raw)
        if MARKER_HEADER.lower() not in names:
            return "no marker"
        if any(n not in names for n in header_names(original_raw) if n not in ("to", "cc", "bcc", "reply-to")):
            return "a header is missing"
        if set(labels) - set(copy.get("labelIds") or []):
            return "a label is missing"
        return None

    def _discard_copy(self, cid: str) -> None:
        """Delete one of Lethe's own redacted copies for good (used only while the original still exists)."""
        try:
            self._execute(self._messages.delete(userId=self.user_id, id=cid), "deleting a failed redacted copy")
        except _Gone:
            pass

    def _remove_original(self, mid: str, mode: str) -> None:
        """The original of a checked redacted copy: to Trash, or deleted for good (``erase: delete``)."""
        call = self._messages.delete if mode == "delete" else self._messages.trash
        try:
            self._execute(call(userId=self.user_id, id=mid),
                          "deleting the original" if mode == "delete" else "moving the original to Trash")
        except _Gone:
            pass


def _message_id_of(raw: bytes) -> str:
    """The Message-ID of a raw message without its angle brackets ("" when it has none)."""
    from connectors.mailredact import split_head

    head = split_head(raw)[0]
    try:
        value = str(email.message_from_bytes(head + b"\r\n", policy=email.policy.compat32).get("message-id") or "")
    except Exception:  # noqa: BLE001
        return ""
    return value.strip().strip("<>").strip()


def _message_record(mid: str, resource: dict, parsed: _Parsed, party: bool, body_text: str = "") -> dict[str, Any]:
    """A message's record as findings carry it (without the body unless given, and without _raw_eml)."""
    return {
        "message_id": mid,
        "thread_id": resource.get("threadId") or "",
        "date": _date(resource, parsed),
        "from": parsed.headers["from"],
        "to": parsed.headers["to"],
        "cc": parsed.headers["cc"],
        "subject": parsed.headers["subject"],
        "party": party,
        "body_text": body_text,
        "attachments": [dict(a) for a in parsed.attachments],
    }


def _header_addresses(value: str) -> set[str]:
    """Normalised e-mail addresses in one header's text ("Name <a@b>, c@d")."""
    out = set()
    for _name, addr in email.utils.getaddresses([value or ""]):
        norm = normalise_email(addr)
        if norm:
            out.add(norm)
    return out


def _message_day(value: str):
    """A record's date as `RecordFilter.date_ok` reads it: internalDate's ISO text, else a Date header
    (RFC 5322) as the UTC day; the text itself when neither parses (date_ok then finds no date)."""
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return value
    if when.tzinfo is None:
        return when.date()
    return when.astimezone(timezone.utc).date()


def _day(value: date) -> str:
    return value.strftime("%Y/%m/%d")


def _date(resource: dict, parsed: _Parsed) -> str:
    """When Gmail received the message (internalDate, UTC ISO 8601), else the Date header as written."""
    internal = resource.get("internalDate")
    if internal:
        try:
            return datetime.fromtimestamp(int(internal) / 1000, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        except (ValueError, OverflowError, OSError):
            pass
    return parsed.headers.get("date") or ""


__all__ = ["GmailConnector", "search_queries", "parse_message", "html_to_text", "decode_bytes", "phone_forms",
           "name_phrases"]
