"""A fake Gmail API server for tests: the parts of the REST API Lethe's Gmail connector uses, with
Gmail's search semantics (not substring matching), Google's HTTP batch format, an OAuth token endpoint
for service-account JWT grants, and switches that inject 429 storms and 5xx errors.

    with FakeGmail() as gmail:
        mid = gmail.add(mail(frm="alice@example.org", to="support@example.test", text="hi"))
        gmail.endpoint   # "http://127.0.0.1:PORT/": the store's api_endpoint
        gmail.token_uri  # "http://127.0.0.1:PORT/token": a service-account JSON's token_uri

Endpoints (all under /gmail/v1/users/{user}/):
  GET  profile                                   users.getProfile
  GET  messages?q=&pageToken=&maxResults=&includeSpamTrash=
  GET  messages/{id}?format=raw|full|metadata
  GET  messages/{id}/attachments/{attachmentId}
  POST messages/{id}/trash
  POST messages/batchDelete                      {"ids": [...]}, at most 1000
  POST messages/import?internalDateSource=       users.messages.import, JSON body {"raw", "labelIds", "threadId"}
  POST messages?internalDateSource=              users.messages.insert, the same body (no /upload media path:
                                                 a JSON body over `max_json_bytes`, 5 MB, answers 413 as Google does)
  DELETE messages/{id}
  POST /batch/gmail/v1 (and /batch)              multipart/mixed of application/http parts, at most 100
  POST /token                                    jwt-bearer and refresh_token grants

Search (`q`): text is tokenised into words (case- and accent-insensitive); a term or a quoted phrase
matches consecutive words; `from:`/`to:`/`cc:`/`bcc:`/`subject:` restrict a term to that header
(addresses and display names); `OR` (upper case) binds tighter than the implicit AND; `-` negates;
`( )` groups; `{a b}` means `a OR b`. `after:`/`newer:` and `before:`/`older:` take a day (YYYY/MM/DD, or
YYYY-MM-DD) or Unix seconds and compare the message's internalDate: `after:` on or after that day's midnight,
`before:` before it (midnight UTC here; real Gmail takes the mailbox's time zone). `label:` matches a label
(case-insensitive; spaces and "/" written as "-"); `rfc822msgid:` matches the Message-ID header exactly (with or
without angle brackets). Plain terms search headers, bodies (HTML as text), attachment names
and the text of text/* and PDF attachments (Gmail indexes PDFs; the connector cannot read them).
Other operators (in:, has:, ...) answer 400, so a query Lethe builds wrongly fails loudly.
"""
from __future__ import annotations

import base64
import datetime
import email
import email.policy
import html
import itertools
import json
import re
import threading
from pathlib import Path
import time
import unicodedata
import urllib.parse
from collections import Counter
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

WORD = re.compile(r"\w+")
ADDRESS_OPS = ("from", "to", "cc", "bcc")
DATE_OPS = {"after": "after", "newer": "after", "before": "before", "older": "before"}
SUPPORTED_OPS = ADDRESS_OPS + ("subject", "label", "rfc822msgid") + tuple(DATE_OPS)
KNOWN_OPS = SUPPORTED_OPS + ("in", "label", "is", "has", "after", "before", "older_than", "newer_than",
                             "filename", "list", "deliveredto", "category", "size", "larger", "smaller",
                             "rfc822msgid", "older", "newer")
TEXT_TYPES = ("text/",)
INDEXED_BINARY_TYPES = ("application/pdf", "application/json")


class SearchSyntaxError(ValueError):
    pass


# --------------------------------------------------------------------------- tokens
def fold(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


def tokens(text: str) -> list[str]:
    return WORD.findall(fold(text or ""))


def _joined(toks: list[str]) -> str:
    return " " + " ".join(toks) + " "


def _html_text(markup: str) -> str:
    markup = re.sub(r"(?is)<(script|style)\b.*?</\1>", " ", markup)
    return html.unescape(re.sub(r"<[^>]+>", " ", markup))


# --------------------------------------------------------------------------- messages
class Stored:
    """One message: its raw bytes, labels, and what search looks at (joined token strings)."""

    def __init__(self, mid: str, raw: bytes, thread_id: str, labels: list[str], internal_date: int):
        self.id = mid
        self.raw = raw
        self.thread_id = thread_id
        self.labels = labels
        self.internal_date = internal_date
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        self.msg = msg
        try:
            self.msgid = str(msg.get("message-id", "") or "").strip().strip("<>").strip().casefold()
        except Exception:  # noqa: BLE001 - a malformed Message-ID
            self.msgid = ""
        self.fields: dict[str, list[str]] = {}
        for op in ADDRESS_OPS:
            entries = []
            for value in msg.get_all(op, []):
                try:
                    addresses = value.addresses
                except Exception:  # noqa: BLE001 - malformed header: index it as words
                    addresses = ()
                if addresses:
                    for a in addresses:
                        entries.append(_joined(tokens(f"{a.display_name} {a.addr_spec}")))
                else:
                    entries.append(_joined(tokens(str(value))))
            self.fields[op] = entries
        self.fields["subject"] = [_joined(tokens(str(msg.get("subject", ""))))]
        body: list[str] = []
        for part in msg.walk():
            if part.get_content_type() == "message/rfc822":  # an attached or forwarded message: its headers
                for inner in part.get_payload():
                    body.extend(str(inner.get(h, "")) for h in ("from", "to", "cc", "subject"))
                continue
            if part.is_multipart():
                continue
            ctype = part.get_content_type()
            name = part.get_filename()
            if name:
                body.append(name)
            try:
                if ctype.startswith(TEXT_TYPES):
                    content = part.get_content()
                    body.append(_html_text(content) if ctype == "text/html" else content)
                elif ctype in INDEXED_BINARY_TYPES:
                    body.append((part.get_payload(decode=True) or b"").decode("latin-1"))
            except (LookupError, UnicodeError):
                body.append((part.get_payload(decode=True) or b"").decode("latin-1"))
        everything = [e for op in ADDRESS_OPS for e in self.fields[op]] + self.fields["subject"]
        everything.append(_joined(tokens("\n".join(body))))
        self.fields["all"] = everything
        self.snippet = " ".join(tokens("\n".join(body)))[:100]


def mail(*, frm: str, to: str | list[str], subject: str = "", text: str | None = None, html_body: str | None = None,
         cc: str | list[str] | None = None, bcc: str | list[str] | None = None, reply_to: str | None = None,
         attachments: tuple = (), date: str = "Mon, 16 Nov 2026 10:00:00 +0000", charset: str = "utf-8",
         message_id: str | None = None) -> bytes:
    """An RFC 5322 message as bytes. `attachments`: (filename, content_type, bytes) triples."""
    msg = EmailMessage()
    msg["From"] = frm
    msg["To"] = to if isinstance(to, str) else ", ".join(to)
    if cc:
        msg["Cc"] = cc if isinstance(cc, str) else ", ".join(cc)
    if bcc:
        msg["Bcc"] = bcc if isinstance(bcc, str) else ", ".join(bcc)
    if reply_to:
        msg["Reply-To"] = reply_to
    msg["Subject"] = subject
    msg["Date"] = date
    msg["Message-ID"] = message_id or f"<{time.monotonic_ns()}@fake.test>"
    if text is not None:
        msg.set_content(text, charset=charset)
        if html_body is not None:
            msg.add_alternative(html_body, subtype="html", charset=charset)
    elif html_body is not None:
        msg.set_content(html_body, subtype="html", charset=charset)
    else:
        msg.set_content("", charset=charset)
    for filename, ctype, data in attachments:
        maintype, subtype = ctype.split("/", 1)
        msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=filename)
    return msg.as_bytes(policy=email.policy.SMTP)


# --------------------------------------------------------------------------- search
class _Query:
    """Parser and evaluator for Gmail's `q` syntax (the subset described in the module docstring)."""

    _LEX = re.compile(r'\s*(?:(?P<op>[A-Za-z_]+):(?P<opq>"[^"]*")|(?P<phrase>"[^"]*")|(?P<punct>[(){}])'
                      r'|(?P<word>[^\s(){}"]+))')

    def __init__(self, q: str):
        self.items = []
        pos = 0
        q = q or ""
        while pos < len(q):
            if q[pos:].strip() == "":
                break
            m = self._LEX.match(q, pos)
            if not m or m.end() == pos:
                raise SearchSyntaxError("unbalanced quotes")
            pos = m.end()
            if m.group("op"):
                self.items.append(("term", m.group("op").lower(), m.group("opq")[1:-1]))
            elif m.group("phrase"):
                self.items.append(("term", None, m.group("phrase")[1:-1]))
            elif m.group("punct"):
                self.items.append((m.group("punct"),))
            else:
                word = m.group("word")
                if word == "OR":
                    self.items.append(("OR",))
                    continue
                if word.startswith("-") and len(word) > 1:
                    word = word[1:]
                    self.items.append(("-",))
                op, sep, value = word.partition(":")
                if sep and op.isalnum() and op.lower() in KNOWN_OPS:
                    if op.lower() not in SUPPORTED_OPS:
                        raise SearchSyntaxError(f"operator {op}: is not supported by the fake server")
                    self.items.append(("term", op.lower(), value))
                else:
                    self.items.append(("term", None, word))
        self.pos = 0
        self.tree = self._and(end=None)
        if self.pos != len(self.items):
            raise SearchSyntaxError("unbalanced parentheses")

    def _peek(self):
        return self.items[self.pos] if self.pos < len(self.items) else None

    def _and(self, end):
        parts = []
        while True:
            tok = self._peek()
            if tok is None or tok[0] == end:
                break
            if tok[0] in (")", "}"):
                raise SearchSyntaxError("unbalanced parentheses")
            parts.append(self._or())
        return ("and", parts)

    def _or(self):
        parts = [self._unary()]
        while self._peek() is not None and self._peek()[0] == "OR":
            self.pos += 1
            if self._peek() is None:
                raise SearchSyntaxError("OR at the end")
            parts.append(self._unary())
        return parts[0] if len(parts) == 1 else ("or", parts)

    def _unary(self):
        tok = self._peek()
        if tok[0] == "-":
            self.pos += 1
            return ("not", self._unary())
        if tok[0] == "(":
            self.pos += 1
            inner = self._and(end=")")
            if self._peek() is None:
                raise SearchSyntaxError("unbalanced parentheses")
            self.pos += 1
            return inner
        if tok[0] == "{":
            self.pos += 1
            parts = []
            while self._peek() is not None and self._peek()[0] != "}":
                if self._peek()[0] == "OR":
                    self.pos += 1
                    continue
                parts.append(self._unary())
            if self._peek() is None:
                raise SearchSyntaxError("unbalanced braces")
            self.pos += 1
            return ("or", parts)
        if tok[0] == "term":
            self.pos += 1
            if tok[1] in DATE_OPS:
                return ("date", DATE_OPS[tok[1]], _day_ms(tok[1], tok[2]))
            if tok[1] == "label":
                return ("label", _label_key(tok[2]))
            if tok[1] == "rfc822msgid":
                return ("msgid", tok[2].strip().strip("<>").strip().casefold())
            return ("term", tok[1], _joined(tokens(tok[2])) if tokens(tok[2]) else None)
        raise SearchSyntaxError(f"unexpected {tok[0]}")

    def matches(self, msg: Stored) -> bool:
        return self._eval(self.tree, msg)

    def _eval(self, node, msg: Stored) -> bool:
        kind = node[0]
        if kind == "and":
            return all(self._eval(n, msg) for n in node[1])
        if kind == "or":
            return any(self._eval(n, msg) for n in node[1])
        if kind == "not":
            return not self._eval(node[1], msg)
        if kind == "date":
            return msg.internal_date >= node[2] if node[1] == "after" else msg.internal_date < node[2]
        if kind == "label":
            return node[1] in {_label_key(x) for x in msg.labels}
        if kind == "msgid":
            return bool(node[1]) and msg.msgid == node[1]
        _, op, phrase = node
        if phrase is None:
            return True
        return any(phrase in entry for entry in msg.fields[op or "all"])


def _day_ms(op: str, value: str) -> int:
    """Milliseconds since the epoch of a date operator's value: midnight UTC of YYYY/MM/DD, or Unix seconds."""
    value = value.strip()
    if value.isdigit():
        return int(value) * 1000
    m = re.fullmatch(r"(\d{4})[/-](\d{1,2})[/-](\d{1,2})", value)
    if not m:
        raise SearchSyntaxError(f"{op}: wants YYYY/MM/DD or seconds")
    try:
        day = datetime.datetime(int(m.group(1)), int(m.group(2)), int(m.group(3)), tzinfo=datetime.timezone.utc)
    except ValueError:
        raise SearchSyntaxError(f"{op}: not a date") from None
    return int(day.timestamp()) * 1000


def _label_key(name: str) -> str:
    return re.sub(r"[\s/]+", "-", name.strip()).casefold()


# --------------------------------------------------------------------------- server
class FakeGmail:
    def __init__(self, *, require_auth: bool = False, public_key=None, strict_batch_delete: bool = False,
                 refuse_subjects: tuple[str, ...] = (), port: int = 0, mailbox_dir: Path | None = None):
        self.messages: dict[str, Stored] = {}
        self.lock = threading.RLock()
        self.require_auth = require_auth
        self.public_key = public_key  # cryptography RSA public key: JWT signatures are verified when set
        self.strict_batch_delete = strict_batch_delete  # batchDelete answers 404 when an id is unknown
        self.refuse_subjects = set(refuse_subjects)  # delegated users the token endpoint refuses
        self.tokens: set[str] = set()
        self.grants: list[dict] = []  # claims of every JWT grant (sub, scope, iss, aud) or refresh grants
        self.stats: Counter = Counter()  # per endpoint kind
        self.batch_sizes: list[int] = []
        self.batch_delete_sizes: list[int] = []
        self.list_page_sizes: list[int] = []
        self.queries: list[str] = []
        self.auth_headers_seen: Counter = Counter()
        self._faults: list[list] = []  # [status, remaining, scope, reason]
        self._ids = itertools.count(0x18C2F00000000000)
        self._clock = itertools.count(1_763_000_000_000, 60_000)
        self.mailbox_dir = Path(mailbox_dir) if mailbox_dir else None  # *.eml files, kept in step with deletes
        self.max_json_bytes = 5 * 1024 * 1024  # Google's limit for a JSON (metadata) request body
        self.imported: list[dict] = []  # {"id", "how" (import/insert), "params"} of every message added by the API
        self.server = ThreadingHTTPServer(("127.0.0.1", port), _Handler)
        self.server.daemon_threads = True
        self.server.fake = self  # type: ignore[attr-defined]
        self._thread: threading.Thread | None = None

    # ---- lifecycle
    def start(self) -> "FakeGmail":
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    @property
    def endpoint(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}/"

    @property
    def token_uri(self) -> str:
        return self.endpoint + "token"

    # ---- mailbox
    def add(self, raw: bytes | EmailMessage, *, labels=("INBOX",), thread_id: str | None = None,
            internal_date: int | None = None) -> str:
        if isinstance(raw, EmailMessage):
            raw = raw.as_bytes(policy=email.policy.SMTP)
        with self.lock:
            mid = format(next(self._ids), "x")
            self.messages[mid] = Stored(mid, raw, thread_id or mid, list(labels),
                                        internal_date if internal_date is not None else next(self._clock))
            return mid

    def load_mailbox(self) -> int:
        """Serve every `<id>.eml` in `mailbox_dir` under its file name's id (`<id>.trash.eml`: in Trash)."""
        if self.mailbox_dir is None:
            return 0
        with self.lock:
            for n, path in enumerate(sorted(self.mailbox_dir.glob("*.eml"))):
                trashed = path.name.endswith(".trash.eml")
                mid = path.name[: -len(".trash.eml")] if trashed else path.stem
                labels = ["TRASH"] if trashed else ["INBOX"]
                raw = path.read_bytes()
                self.messages[mid] = Stored(mid, raw, mid, labels, _date_ms(raw, 1_763_000_000_000 + n * 60_000))
            return len(self.messages)

    def _persist(self, mid: str, what: str) -> None:
        """Mirror a trash or delete into `mailbox_dir`, so the demo mailbox survives a restart as changed."""
        if self.mailbox_dir is None:
            return
        path = self.mailbox_dir / f"{mid}.eml"
        if what == "trash" and path.exists():
            path.rename(self.mailbox_dir / f"{mid}.trash.eml")
        elif what == "delete":
            for p in (path, self.mailbox_dir / f"{mid}.trash.eml"):
                if p.exists():
                    p.unlink()

    def ids(self, *, include_trash: bool = False) -> set[str]:
        with self.lock:
            return {m.id for m in self.messages.values() if include_trash or "TRASH" not in m.labels}

    def fail(self, status: int, count: int, *, scope: str = "http", reason: str | None = None) -> None:
        """The next `count` API calls answer `status`. scope "http": top-level requests (a batch POST
        counts as one); "part": calls inside batches; "any": both."""
        with self.lock:
            self._faults.append([status, count, scope, reason])

    def _fault(self, scope: str):
        with self.lock:
            for f in self._faults:
                if f[1] != 0 and f[2] in (scope, "any"):
                    if f[1] > 0:
                        f[1] -= 1
                    return f[0], f[3]
        return None

    def search(self, q: str, include_spam_trash: bool = False) -> list[Stored]:
        query = _Query(q)
        with self.lock:
            msgs = [m for m in self.messages.values()
                    if include_spam_trash or not ({"TRASH", "SPAM"} & set(m.labels))]
        found = [m for m in msgs if query.matches(m)]
        found.sort(key=lambda m: (-m.internal_date, m.id))
        return found

    # ---- dispatch of one API call: returns (status, json-able body or None)
    def dispatch(self, method: str, target: str, headers, body: bytes, scope: str) -> tuple[int, object]:
        parsed = urllib.parse.urlsplit(target)
        path = parsed.path
        params = urllib.parse.parse_qs(parsed.query)
        fault = self._fault(scope)
        if fault:
            status, reason = fault
            return status, _error(status, reason or ("rateLimitExceeded" if status in (403, 429) else "backendError"),
                                  "Too many requests" if status == 429 else "Backend Error")
        if self.require_auth:
            auth = headers.get("Authorization") or headers.get("authorization") or ""
            token = auth[7:] if auth.lower().startswith("bearer ") else ""
            if token not in self.tokens:
                return 401, _error(401, "authError", "Invalid Credentials")
            self.auth_headers_seen[token] += 1
        m = re.fullmatch(r"/gmail/v1/users/([^/]+)/(.*)", path)
        if not m:
            return 404, _error(404, "notFound", "Not Found")
        user = urllib.parse.unquote(m.group(1))
        rest = m.group(2)
        if rest == "profile" and method == "GET":
            self.stats["profile"] += 1
            return 200, {"emailAddress": user, "messagesTotal": len(self.messages), "historyId": "1"}
        if rest == "messages" and method == "GET":
            return self._list(params)
        if rest == "messages/batchDelete" and method == "POST":
            return self._batch_delete(body)
        if rest in ("messages/import", "messages") and method == "POST":
            return self._import("import" if rest.endswith("import") else "insert", params, body)
        mm = re.fullmatch(r"messages/([^/]+)(/trash|/attachments/([^/]+))?", rest)
        if not mm:
            return 404, _error(404, "notFound", "Not Found")
        mid = urllib.parse.unquote(mm.group(1))
        with self.lock:
            stored = self.messages.get(mid)
        if stored is None:
            self.stats["not_found"] += 1
            return 404, _error(404, "notFound", "Requested entity was not found.")
        if mm.group(2) == "/trash" and method == "POST":
            self.stats["trash"] += 1
            with self.lock:
                stored.labels = [x for x in stored.labels if x not in ("INBOX", "UNREAD")] + ["TRASH"]
                self._persist(mid, "trash")
            return 200, _resource(stored, "minimal")
        if mm.group(3) and method == "GET":
            self.stats["attachment"] += 1
            return self._attachment(stored, urllib.parse.unquote(mm.group(3)))
        if mm.group(2) is None and method == "DELETE":
            self.stats["delete"] += 1
            with self.lock:
                self.messages.pop(mid, None)
                self._persist(mid, "delete")
            return 204, None
        if mm.group(2) is None and method == "GET":
            fmt = (params.get("format") or ["full"])[0]
            if fmt not in ("raw", "full", "metadata", "minimal"):
                return 400, _error(400, "invalidArgument", "Invalid format")
            self.stats[f"get_{fmt}"] += 1
            return 200, _resource(stored, fmt)
        return 405, _error(405, "methodNotAllowed", "Method not allowed")

    def _list(self, params):
        self.stats["list"] += 1
        q = (params.get("q") or [""])[0]
        self.queries.append(q)
        try:
            max_results = min(int((params.get("maxResults") or ["100"])[0]), 500)
            offset = int((params.get("pageToken") or ["0"])[0] or 0)
        except ValueError:
            return 400, _error(400, "invalidArgument", "Invalid pageToken or maxResults")
        include = (params.get("includeSpamTrash") or ["false"])[0].lower() == "true"
        try:
            found = self.search(q, include)
        except SearchSyntaxError as exc:
            return 400, _error(400, "invalidArgument", f"Invalid query: {exc}")
        page = found[offset:offset + max_results]
        self.list_page_sizes.append(len(page))
        out: dict = {"resultSizeEstimate": len(found)}
        if page:
            out["messages"] = [{"id": m.id, "threadId": m.thread_id} for m in page]
        if offset + max_results < len(found):
            out["nextPageToken"] = str(offset + max_results)
        return 200, out

    def _batch_delete(self, body: bytes):
        self.stats["batchDelete"] += 1
        try:
            ids = json.loads(body or b"{}").get("ids") or []
        except ValueError:
            return 400, _error(400, "invalidArgument", "Invalid JSON")
        if len(ids) > 1000:
            return 400, _error(400, "invalidArgument", "Number of ids cannot exceed 1000")
        with self.lock:
            if self.strict_batch_delete and any(i not in self.messages for i in ids):
                return 404, _error(404, "notFound", "Requested entity was not found.")
            self.batch_delete_sizes.append(len(ids))
            for i in ids:
                self.messages.pop(i, None)
                self._persist(i, "delete")
        return 204, None

    def _new_id(self) -> str:
        """An id no message has (nor a file of `mailbox_dir`: a demo restarted counts from the start again)."""
        while True:
            mid = format(next(self._ids), "x")
            if mid not in self.messages and not (self.mailbox_dir is not None and any(
                    (self.mailbox_dir / f"{mid}{ext}").exists() for ext in (".eml", ".trash.eml"))):
                return mid

    def _import(self, how: str, params, body: bytes):
        """users.messages.import / insert with a JSON body: the message as given, with its labels, in the thread
        named when that thread exists (else a new one), dated by its Date header (internalDateSource=dateHeader,
        import's default) or now (receivedTime, insert's default)."""
        self.stats[how] += 1
        if len(body) > self.max_json_bytes:
            return 413, _error(413, "uploadTooLarge", "Request payload size exceeds the limit")
        try:
            resource = json.loads(body or b"{}")
            raw = _unb64url(resource["raw"])
        except (ValueError, KeyError, TypeError):
            return 400, _error(400, "invalidArgument", "'raw' RFC822 payload message string or uploading message "
                                                       "via /upload/* URL required")
        labels = resource.get("labelIds") or []
        if not isinstance(labels, list) or any(x in ("DRAFT", "CHAT") or not isinstance(x, str) for x in labels):
            return 400, _error(400, "invalidArgument", "Invalid label")
        source = (params.get("internalDateSource") or ["dateHeader" if how == "import" else "receivedTime"])[0]
        with self.lock:
            clock = next(self._clock)
            when = _date_ms(raw, clock) if source == "dateHeader" else clock
            thread = resource.get("threadId")
            if not thread or not any(m.thread_id == thread for m in self.messages.values()):
                thread = None
            mid = self._new_id()
            try:
                stored = Stored(mid, raw, thread or mid, list(labels), when)
            except Exception:  # noqa: BLE001 - bytes that are no message
                return 400, _error(400, "invalidArgument", "Invalid RFC822 message")
            self.messages[mid] = stored
            self.imported.append({"id": mid, "how": how, "params": {k: v[0] for k, v in params.items()}})
            if self.mailbox_dir is not None:
                (self.mailbox_dir / f"{mid}.eml").write_bytes(raw)
        return 200, _resource(stored, "minimal")

    def _attachment(self, stored: Stored, aid: str):
        for index, part in enumerate(stored.msg.walk()):
            if f"att{index}" == aid and not part.is_multipart():
                data = part.get_payload(decode=True) or b""
                return 200, {"attachmentId": aid, "size": len(data), "data": _b64url(data)}
        return 404, _error(404, "notFound", "Requested entity was not found.")

    # ---- token endpoint
    def grant(self, form: dict[str, str]) -> tuple[int, dict]:
        self.stats["token"] += 1
        grant_type = form.get("grant_type")
        if grant_type == "urn:ietf:params:oauth:grant-type:jwt-bearer":
            try:
                header_b64, payload_b64, sig_b64 = form["assertion"].split(".")
                claims = json.loads(_unb64url(payload_b64))
            except (KeyError, ValueError):
                return 400, {"error": "invalid_grant", "error_description": "malformed assertion"}
            if self.public_key is not None:
                from cryptography.exceptions import InvalidSignature
                from cryptography.hazmat.primitives import hashes
                from cryptography.hazmat.primitives.asymmetric import padding
                try:
                    self.public_key.verify(_unb64url(sig_b64), f"{header_b64}.{payload_b64}".encode(),
                                           padding.PKCS1v15(), hashes.SHA256())
                except InvalidSignature:
                    return 400, {"error": "invalid_grant", "error_description": "Invalid JWT Signature."}
            if claims.get("sub") in self.refuse_subjects:
                return 401, {"error": "unauthorized_client",
                             "error_description": "Client is unauthorized to retrieve access tokens using this method."}
            self.grants.append(claims)
        elif grant_type == "refresh_token":
            if not form.get("refresh_token"):
                return 400, {"error": "invalid_grant"}
            self.grants.append({"refresh_token": form["refresh_token"], "client_id": form.get("client_id"),
                                "scope": form.get("scope")})
        else:
            return 400, {"error": "unsupported_grant_type"}
        token = f"ya29.fake-{len(self.grants)}-{time.monotonic_ns()}"
        self.tokens.add(token)
        return 200, {"access_token": token, "expires_in": 3600, "token_type": "Bearer"}


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii")


def _unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _error(status: int, reason: str, message: str) -> dict:
    return {"error": {"code": status, "message": message,
                      "errors": [{"domain": "global", "reason": reason, "message": message}]}}


def _resource(stored: Stored, fmt: str) -> dict:
    out = {"id": stored.id, "threadId": stored.thread_id, "labelIds": list(stored.labels)}
    if fmt == "minimal":
        return out
    out.update({"snippet": stored.snippet, "sizeEstimate": len(stored.raw), "historyId": "1",
                "internalDate": str(stored.internal_date)})
    if fmt == "raw":
        out["raw"] = _b64url(stored.raw)
        return out
    parts = list(stored.msg.walk())

    def payload(part, index: int) -> dict:
        node = {"partId": str(index), "mimeType": part.get_content_type(), "filename": part.get_filename() or "",
                "headers": [{"name": k, "value": str(v)} for k, v in part.items()]}
        if fmt == "metadata":
            return node
        if part.is_multipart():
            node["body"] = {"size": 0}
            node["parts"] = [payload(p, parts.index(p)) for p in part.iter_parts()]
        else:
            data = part.get_payload(decode=True) or b""
            if part.get_filename():
                node["body"] = {"size": len(data), "attachmentId": f"att{index}"}
            else:
                node["body"] = {"size": len(data), "data": _b64url(data)}
        return node

    out["payload"] = payload(stored.msg, 0)
    return out


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # quiet
        pass

    @property
    def fake(self) -> FakeGmail:
        return self.server.fake  # type: ignore[attr-defined]

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(self, status: int, body: bytes, content_type: str = "application/json; charset=UTF-8") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _send_json(self, status: int, obj) -> None:
        self._send(status, b"" if obj is None else json.dumps(obj).encode())

    def _api(self, method: str) -> None:
        body = self._body()
        path = urllib.parse.urlsplit(self.path).path
        if path == "/token" and method == "POST":
            form = {k: v[0] for k, v in urllib.parse.parse_qs(body.decode()).items()}
            status, obj = self.fake.grant(form)
            return self._send_json(status, obj)
        if path in ("/batch/gmail/v1", "/batch") and method == "POST":
            return self._batch(body)
        self.fake.stats["http"] += 1
        status, obj = self.fake.dispatch(method, self.path, self.headers, body, "http")
        self._send_json(status, obj)

    def do_GET(self):
        self._api("GET")

    def do_POST(self):
        self._api("POST")

    def do_DELETE(self):
        self._api("DELETE")

    def _batch(self, body: bytes) -> None:
        fake = self.fake
        fake.stats["batch"] += 1
        fake.stats["http"] += 1
        fault = fake._fault("http")
        if fault:
            return self._send_json(fault[0], _error(fault[0], "rateLimitExceeded", "Too many requests"))
        ctype = self.headers.get("Content-Type", "")
        outer = email.message_from_bytes(b"Content-Type: " + ctype.encode() + b"\r\n\r\n" + body,
                                         policy=email.policy.compat32)
        if not outer.is_multipart():
            return self._send_json(400, _error(400, "badRequest", "batch body is not multipart/mixed"))
        parts = outer.get_payload()
        if len(parts) > 100:
            return self._send_json(400, _error(400, "badRequest", "too many requests in a batch (max 100)"))
        fake.batch_sizes.append(len(parts))
        boundary = f"batch_fake_{time.monotonic_ns()}"
        chunks = []
        for part in parts:
            content_id = part.get("Content-ID", "")
            embedded = part.get_payload()
            if isinstance(embedded, list):  # message/http parsed as a sub-message: not expected
                embedded = embedded[0].as_string()
            head, _, sub_body = embedded.replace("\r\n", "\n").partition("\n\n")
            lines = head.split("\n")
            method, target, _version = lines[0].split(" ", 2)
            sub_headers = {}
            for line in lines[1:]:
                if ":" in line:
                    k, v = line.split(":", 1)
                    sub_headers[k.strip()] = v.strip()
            if "Authorization" not in sub_headers and self.headers.get("Authorization"):
                sub_headers["Authorization"] = self.headers["Authorization"]
            fake.stats["batch_part"] += 1
            status, obj = fake.dispatch(method, target, sub_headers, sub_body.encode(), "part")
            payload = "" if obj is None else json.dumps(obj)
            reason = {200: "OK", 204: "No Content", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden",
                      404: "Not Found", 429: "Too Many Requests"}.get(status, "Error")
            inner = f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n{payload}"
            cid = content_id.strip()
            cid = "<response-" + cid[1:] if cid.startswith("<") else f"<response-{cid}>"
            chunks.append(f"--{boundary}\r\nContent-Type: application/http\r\nContent-ID: {cid}\r\n\r\n{inner}\r\n")
        out = "".join(chunks) + f"--{boundary}--\r\n"
        self._send(200, out.encode("utf-8"), f"multipart/mixed; boundary={boundary}")


def _date_ms(raw: bytes, default: int) -> int:
    """A loaded message's internalDate: its Date header (as Gmail's is the time it arrived), else `default`."""
    import email.utils

    try:
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        when = email.utils.parsedate_to_datetime(str(msg["Date"]))
        return int(when.timestamp() * 1000)
    except (TypeError, ValueError, IndexError):
        return default
