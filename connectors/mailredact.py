"""Redacting one mail (RFC 822 bytes) for one subject: pure, no network (the Gmail connector adds the copy).

`redact_message(raw, matcher)` returns the message with the subject's identifiers removed, and everything
else kept byte for byte:

- bodies and text attachments (text/plain, text/html, text/csv, other text/* and the text-like types and file
  extensions the Gmail connector scans): decoded with their transfer encoding and charset, the subject's spans
  replaced by ``[redacted]`` with the engine's own text redaction (`pii.core.policy.redact_text`, spans from
  the matcher), then encoded again the same way (same charset, same transfer encoding, same line length and
  line ends). HTML is redacted in its text and attribute values (``mailto:``/``tel:`` links), never in the
  markup (no-break spaces and line breaks read as spaces; a span running over inline tags, ``<b>Alice</b>
  Smith``, is found in the text as a reader sees it). An attached or forwarded message (message/rfc822) is
  redacted the same way, its headers included;
- headers: From, Sender, To, Cc, Bcc, Reply-To (and their Resent- forms) name people. An entry that is the
  subject (address, display name, or a phone in the display name, as the matcher says) is removed from
  To/Cc/Bcc/Reply-To (To becomes ``undisclosed-recipients:;`` when it is left empty; an empty Cc/Bcc/Reply-To
  is dropped); in From/Sender it becomes ``"[redacted]" <redacted@redacted.invalid>`` (a mail must have a
  sender). Another person's entry keeps its address; only the subject's spans in its display name are
  redacted. Any other header whose decoded text holds the subject (Subject, Received, Delivered-To,
  X-Original-To, a file name in Content-Disposition, ...) has those spans redacted and is folded again.
  Message-ID, References and In-Reply-To are kept as they are (threading and the re-run's search for its
  own copy need them); so are the MIME structure headers;
- every other part (PDF, images, office files, ...) and every unchanged header line: the same bytes.

A part Lethe cannot rewrite (an unknown transfer encoding, text that does not encode back) is left as it is;
the connector's check of the copy then finds what remains and the message is reported, not redacted.
"""
from __future__ import annotations

import base64
import binascii
import email.policy
import html
import quopri
import re
import urllib.parse
from dataclasses import dataclass, field
from email.parser import BytesHeaderParser

from pii.core.policy import REDACTED, redact_text

MARKER_HEADER = "X-Lethe-Redacted-From"
REDACTED_ADDRESS = "redacted@redacted.invalid"
SENDER_HEADERS = {"from", "sender", "resent-from", "resent-sender"}
RECIPIENT_HEADERS = {"to", "cc", "bcc", "reply-to", "resent-to", "resent-cc", "resent-bcc"}
ADDRESS_HEADERS = SENDER_HEADERS | RECIPIENT_HEADERS
KEPT_HEADERS = {"message-id", "references", "in-reply-to", "content-transfer-encoding",
                "mime-version", "content-id", MARKER_HEADER.lower()}
TEXT_EXTENSIONS = {"txt", "text", "csv", "tsv", "json", "md", "log", "xml", "vcf", "ics", "htm", "html"}
TEXT_TYPES = {"application/json", "text/json", "application/xml", "text/xml", "text/vcard", "text/x-vcard",
              "text/calendar", "text/csv"}
_LATIN1_LABELS = {"iso-8859-1", "iso8859-1", "latin-1", "latin1", "l1", "us-ascii", "ascii", "iso_8859-1",
                  "cp819", "ibm819"}
_POLICY = email.policy.SMTP
_BLANK = re.compile(rb"\r?\n\r?\n")
_HTML_TOKEN = re.compile(r"(<!--.*?-->|<[^>]*>)", re.S)
_TAG_NAME = re.compile(r"<\s*(/?)\s*([A-Za-z][A-Za-z0-9]*)")
_INLINE_TAGS = {"a", "abbr", "b", "bdi", "bdo", "big", "cite", "code", "em", "font", "i", "kbd", "mark", "q", "s",
                "samp", "small", "span", "strong", "sub", "sup", "u", "var", "wbr", "o", "st1"}
_ATTR = re.compile(r"""(\s[^\s=/>]+\s*=\s*)("[^"]*"|'[^']*'|[^\s"'>]+)""")


@dataclass
class Redacted:
    """The redacted message, and what happened to it (part paths like "1.2"; "h:<header>"; never values)."""

    raw: bytes
    changed: list[str] = field(default_factory=list)  # parts and headers rewritten
    kept: dict[str, bytes] = field(default_factory=dict)  # leaf part path -> body bytes kept as they were
    failed: list[str] = field(default_factory=list)  # parts that could not be rewritten (left as they are)


# --------------------------------------------------------------------------- bytes
def split_head(raw: bytes) -> tuple[bytes, bytes, bytes]:
    """(header block with its last line end, the blank line, body) of a message or MIME part."""
    if raw.startswith((b"\r\n", b"\n")):
        eol = b"\r\n" if raw.startswith(b"\r\n") else b"\n"
        return b"", eol, raw[len(eol):]
    m = _BLANK.search(raw)
    if not m:
        return raw, b"", b""
    first_eol = b"\r\n" if raw[m.start():m.start() + 2] == b"\r\n" else b"\n"
    head_end = m.start() + len(first_eol)
    return raw[:head_end], raw[head_end:m.end()], raw[m.end():]


def header_fields(head: bytes) -> list[bytes]:
    """The header block as fields, each with its continuation lines and line ends."""
    fields: list[bytes] = []
    for line in head.splitlines(keepends=True):
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1] += line
        else:
            fields.append(line)
    return fields


def _field_name(raw_field: bytes) -> str:
    return raw_field.split(b":", 1)[0].strip().decode("ascii", "replace").lower()


def _eol_of(data: bytes) -> bytes:
    return b"\r\n" if b"\r\n" in data else b"\n"


def _headers(head: bytes):
    return BytesHeaderParser(policy=email.policy.default).parsebytes(head + b"\r\n")


def _content_info(hdr, default_type: str) -> tuple[str, str | None, str, str]:
    """(content type, charset, file name, transfer encoding) of a part's headers."""
    try:
        ctype = hdr.get_content_type() if hdr.get("content-type") else default_type
    except Exception:  # noqa: BLE001
        ctype = default_type
    try:
        charset = hdr.get_content_charset()
    except Exception:  # noqa: BLE001
        charset = None
    try:
        filename = hdr.get_filename() or ""
    except Exception:  # noqa: BLE001
        filename = ""
    cte = str(hdr.get("content-transfer-encoding") or "7bit").strip().lower()
    return ctype.lower(), charset, str(filename), cte


def _boundary(hdr) -> str | None:
    try:
        return hdr.get_boundary()
    except Exception:  # noqa: BLE001
        return None


def _split_multipart(body: bytes, boundary: str) -> tuple[list[tuple[int, int]], bool]:
    """Byte ranges of the parts of a multipart body (between delimiter lines), and whether it is closed."""
    delim = re.compile(rb"(?:^|\r?\n)--" + re.escape(boundary.encode("latin-1")) + rb"(--)?[ \t]*(\r?\n|$)")
    ranges: list[tuple[int, int]] = []
    start = None
    for m in delim.finditer(body):
        if start is not None:
            ranges.append((start, m.start()))
        if m.group(1):
            return ranges, True
        start = m.end()
    if start is not None:
        ranges.append((start, len(body)))
    return ranges, False


# --------------------------------------------------------------------------- text
def _decode_text(data: bytes, charset: str | None) -> tuple[str, str] | None:
    label = (charset or "").strip().strip('"').lower()
    tries = ["cp1252"] if label in _LATIN1_LABELS else ([label] if label else [])
    tries += ["utf-8", "cp1252", "latin-1"]
    for codec in tries:
        try:
            return data.decode(codec), codec
        except (LookupError, UnicodeDecodeError):
            continue
    return None


def _redact_spans(text: str, matcher, probe: str | None = None) -> str:
    """`text` with the subject's spans redacted; the spans are found in `probe` (same length) when given
    (HTML text with no-break spaces as spaces); the engine's `redact_text` otherwise."""
    if probe is None:
        return redact_text(text, matcher) or text
    spans = sorted((m.start, m.end) for m in matcher.find_in_text(probe) if m.end > m.start)
    if not spans:
        return text
    merged: list[list[int]] = []
    for start, end in spans:
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    out = text
    for start, end in reversed(merged):
        out = out[:start] + REDACTED + out[end:]
    return out


def _redact_plain(text: str, matcher) -> str:
    if not matcher.could_mention(text):
        return text
    return _redact_spans(text, matcher)


def _redact_html_text(segment: str, matcher) -> str:
    """One run of HTML text (entities as written): unchanged unless it holds the subject."""
    plain = html.unescape(segment)
    probe = re.sub(r"\s", " ", plain)  # no-break spaces and line breaks read as spaces
    if not matcher.could_mention(probe):
        return segment
    new = _redact_spans(plain, matcher, probe)
    return segment if new == plain else html.escape(new, quote=False)


def _redact_attr(match: re.Match, matcher) -> str:
    lead, value = match.group(1), match.group(2)
    quote = value[0] if value[:1] in ("'", '"') else ""
    inner = value[1:-1] if quote else value
    plain = urllib.parse.unquote(html.unescape(inner))
    if not matcher.could_mention(plain) or _redact_spans(plain, matcher) == plain:
        return match.group(0)
    return f'{lead}"{html.escape(_redact_spans(plain, matcher), quote=True)}"'


def redact_html(markup: str, matcher) -> str:
    """HTML with the subject redacted in its text, comments and attribute values; tags and structure kept.
    A name split by inline tags (``<b>Alice</b> Smith``) is found in the text as a reader sees it: the first
    piece becomes ``[redacted]``, the rest of the span is removed from the pieces after it."""
    pieces = [p for p in _HTML_TOKEN.split(markup) if p]
    out: list[str] = []
    for piece in pieces:
        if piece.startswith("<!--"):
            out.append("<!--" + _redact_plain(piece[4:-3], matcher) + "-->")
        elif piece.startswith("<"):
            out.append(_ATTR.sub(lambda m: _redact_attr(m, matcher), piece))
        else:
            out.append(_redact_html_text(piece, matcher))
    return "".join(_across_inline_tags(out, matcher))


def _across_inline_tags(pieces: list[str], matcher) -> list[str]:
    """Second pass: spans that run over several text pieces joined by inline tags."""
    runs: list[list[int]] = [[]]  # indexes of text pieces a reader sees as one run of text
    skip = False
    for i, piece in enumerate(pieces):
        if piece.startswith("<"):
            tag = _TAG_NAME.match(piece)
            name = tag.group(2).lower() if tag else ""
            if name in ("script", "style"):
                skip = not tag.group(1)
            if piece.startswith("<!--") or name not in _INLINE_TAGS:
                runs.append([])
            continue
        if not skip:
            runs[-1].append(i)
    out = list(pieces)
    for run in runs:
        if len(run) < 2:
            continue
        plain = {i: html.unescape(out[i]) for i in run}
        joined = "".join(plain[i] for i in run)
        probe = re.sub(r"\s", " ", joined)
        if not matcher.could_mention(probe):
            continue
        spans = sorted((m.start, m.end) for m in matcher.find_in_text(probe) if m.end > m.start)
        if not spans:
            continue
        starts, pos = {}, 0
        for i in run:
            starts[i] = pos
            pos += len(plain[i])
        new = {i: list(plain[i]) for i in run}  # characters; None marks one removed
        changed: set[int] = set()
        for start, end in spans:
            first = True
            for i in run:
                lo, hi = max(start, starts[i]), min(end, starts[i] + len(plain[i]))
                if lo >= hi:
                    continue
                for k in range(lo - starts[i], hi - starts[i]):
                    new[i][k] = None
                if first:
                    new[i][lo - starts[i]] = REDACTED
                    first = False
                changed.add(i)
        for i in changed:
            out[i] = html.escape("".join(c for c in new[i] if c is not None), quote=False)
    return out


# --------------------------------------------------------------------------- transfer encodings
def _decode_cte(body: bytes, cte: str) -> bytes | None:
    if cte == "base64":
        try:
            return base64.b64decode(re.sub(rb"[^A-Za-z0-9+/=]", b"", body) + b"==", validate=False)
        except (binascii.Error, ValueError):
            return None
    if cte == "quoted-printable":
        return quopri.decodestring(body)
    if cte in ("7bit", "8bit", "binary", ""):
        return body
    return None


def _encode_cte(data: bytes, cte: str, original: bytes) -> bytes:
    eol = _eol_of(original)
    trailing = original.endswith((b"\n",))
    if cte == "base64":
        first = original.lstrip().split(b"\n", 1)[0].strip()
        width = len(first) if 4 <= len(first) <= 998 and len(first) % 4 == 0 else 76
        encoded = base64.b64encode(data)
        lines = [encoded[i:i + width] for i in range(0, len(encoded), width)]
        return eol.join(lines) + (eol if trailing else b"")
    if cte == "quoted-printable":
        out = binascii.b2a_qp(data.replace(b"\r\n", b"\n"), quotetabs=False, istext=True, header=False)
        return out.replace(b"\n", eol) if eol != b"\n" else out
    return data


# --------------------------------------------------------------------------- headers
def _fold(name: str, value: str, eol: bytes) -> bytes:
    header = _POLICY.header_factory(name, value)
    return header.fold(policy=_POLICY).encode("ascii", "replace").replace(b"\r\n", eol)


def _display_text(raw_field: bytes) -> str:
    try:
        hdr = _headers(raw_field)
        name = _field_name(raw_field)
        return str(hdr.get(name) or "")
    except Exception:  # noqa: BLE001
        return raw_field.split(b":", 1)[-1].decode("latin-1").strip()


def _is_subject(display: str, addr: str, matcher) -> bool:
    if addr and (matcher.email_matches(addr) or _redact_plain(addr, matcher) != addr):
        return True
    return bool(display) and (matcher.name_matches(display) or matcher.phone_matches(display))


def _address_field(raw_field: bytes, name: str, matcher) -> bytes | None:
    """The field rewritten without the subject (b"" to drop it), or None when it is unchanged."""
    from email.headerregistry import Address

    eol = _eol_of(raw_field)
    try:
        hdr = _headers(raw_field)
        addresses = list(hdr[name].addresses)
    except Exception:  # noqa: BLE001 - an address header the parser cannot read: redact it as text
        return _text_field(raw_field, name, matcher)
    kept: list[str] = []
    changed = False
    for a in addresses:
        display, addr = a.display_name or "", a.addr_spec or ""
        if _is_subject(display, addr, matcher):
            changed = True
            if name in SENDER_HEADERS:
                kept.append(str(Address(REDACTED, addr_spec=REDACTED_ADDRESS)))
            continue
        new_display = _redact_plain(display, matcher) if display else display
        if new_display != display:
            changed = True
            kept.append(str(Address(new_display, addr_spec=addr)))
        else:
            kept.append(str(a))
    if not changed:
        text = _display_text(raw_field)  # e.g. a group name that names the subject
        return _text_field(raw_field, name, matcher) if _redact_plain(text, matcher) != text else None
    label = raw_field.split(b":", 1)[0].decode("ascii", "replace").strip()
    if not kept:
        if name == "to":
            return f"{label}: undisclosed-recipients:;".encode("ascii") + eol
        return b""
    return _fold(label, ", ".join(kept), eol)


def _text_field(raw_field: bytes, name: str, matcher) -> bytes | None:
    text = _display_text(raw_field)
    if not text or not matcher.could_mention(text):
        return None
    new = _redact_plain(text, matcher)
    if new == text:
        return None
    label = raw_field.split(b":", 1)[0].decode("ascii", "replace").strip()
    try:
        return _fold(label, new, _eol_of(raw_field))
    except Exception:  # noqa: BLE001 - a structured header the new text does not fit: plain unstructured text
        from email.header import Header
        return f"{label}: ".encode("ascii") + Header(new, "utf-8").encode().encode("ascii") + _eol_of(raw_field)


def _redact_head(head: bytes, matcher, path: str, out: Redacted) -> bytes:
    pieces: list[bytes] = []
    for raw_field in header_fields(head):
        name = _field_name(raw_field)
        new = None
        if b":" in raw_field and name not in KEPT_HEADERS:
            new = _address_field(raw_field, name, matcher) if name in ADDRESS_HEADERS else \
                _text_field(raw_field, name, matcher)
        if new is None:
            pieces.append(raw_field)
        else:
            out.changed.append(f"{path}h:{name}")
            pieces.append(new)
    return b"".join(pieces)


# --------------------------------------------------------------------------- parts
def _is_text(ctype: str, filename: str) -> bool:
    ext = filename.rsplit(".", 1)[-1].lower() if "." in filename else ""
    return ctype.startswith("text/") or ctype in TEXT_TYPES or ext in TEXT_EXTENSIONS


def _part(raw: bytes, matcher, path: str, default_type: str, out: Redacted) -> bytes:
    head, blank, body = split_head(raw)
    hdr = _headers(head)
    ctype, charset, filename, cte = _content_info(hdr, default_type)
    new_head = _redact_head(head, matcher, f"{path}:" if path else "", out)
    if ctype.startswith("multipart/"):
        boundary = _boundary(hdr)
        if not boundary:
            out.kept[path or "0"] = body
            return new_head + blank + body
        ranges, _closed = _split_multipart(body, boundary)
        child_default = "message/rfc822" if ctype == "multipart/digest" else "text/plain"
        pieces, last = [], 0
        for i, (start, end) in enumerate(ranges, 1):
            pieces.append(body[last:start])
            pieces.append(_part(body[start:end], matcher, f"{path}.{i}" if path else str(i), child_default, out))
            last = end
        pieces.append(body[last:])
        return new_head + blank + b"".join(pieces)
    where = path or "0"
    if ctype == "message/rfc822":
        data = _decode_cte(body, cte)
        if data is None:
            out.failed.append(where)
            return new_head + blank + body
        inner = _part(data, matcher, f"{where}/m", "text/plain", out)
        if inner == data:
            return new_head + blank + body
        return new_head + blank + _encode_cte(inner, cte, body)
    if not _is_text(ctype, filename):
        out.kept[where] = body
        return new_head + blank + body
    data = _decode_cte(body, cte)
    decoded = _decode_text(data, charset) if data is not None else None
    if decoded is None:
        out.failed.append(where)
        return new_head + blank + body
    text, codec = decoded
    is_html = ctype == "text/html" or filename.lower().endswith((".htm", ".html"))
    new_text = redact_html(text, matcher) if is_html else _redact_plain(text, matcher)
    if new_text == text:
        out.kept[where] = body
        return new_head + blank + body
    try:
        new_data = new_text.encode(codec)
    except (UnicodeEncodeError, LookupError):
        out.failed.append(where)
        return new_head + blank + body
    out.changed.append(where)
    return new_head + blank + _encode_cte(new_data, cte, body)


def redact_message(raw: bytes, matcher, *, marker: str | None = None) -> Redacted:
    """The message `raw` without the subject's identifiers (see the module docstring). `marker`: the value of
    an ``X-Lethe-Redacted-From`` header put first (a keyed hash naming the original, never a value), by which
    a re-run finds this copy."""
    out = Redacted(b"")
    body = _part(raw, matcher, "", "text/plain", out)
    if marker:
        body = f"{MARKER_HEADER}: {marker}".encode("ascii") + _eol_of(raw) + body
    out.raw = body
    return out


def leaf_parts(raw: bytes) -> dict[str, tuple[str, bytes]]:
    """Every leaf part of a message by path, (content type, body bytes as stored): to compare a copy with its
    original part by part."""
    found: dict[str, tuple[str, bytes]] = {}

    def walk(data: bytes, path: str, default_type: str) -> None:
        head, _blank, body = split_head(data)
        hdr = _headers(head)
        ctype, _charset, _filename, _cte = _content_info(hdr, default_type)
        boundary = _boundary(hdr) if ctype.startswith("multipart/") else None
        if boundary:
            ranges, _closed = _split_multipart(body, boundary)
            child = "message/rfc822" if ctype == "multipart/digest" else "text/plain"
            for i, (start, end) in enumerate(ranges, 1):
                walk(body[start:end], f"{path}.{i}" if path else str(i), child)
            return
        found[path or "0"] = (ctype, body)

    walk(raw, "", "text/plain")
    return found


def header_names(raw: bytes) -> list[str]:
    """The top-level header names in order (lower case)."""
    return [_field_name(f) for f in header_fields(split_head(raw)[0])]


__all__ = ["Redacted", "redact_message", "redact_html", "leaf_parts", "header_names", "MARKER_HEADER",
                      "REDACTED_ADDRESS"]
