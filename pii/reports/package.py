"""The access package: the answer to a subject access request (GDPR Art. 15), written to a folder.

Layout of DIR (CONTRACT.md, "Access package"):

    manifest.json                 subject, generated_at, findings (CONTRACT shape) + files, stores, version
    summary.html                  the human-readable answer (self-contained, inline CSS)
    data/<store>/<container>.csv  the subject's records in that table or file, one row per finding
    data/<store>/<container>.json the same records as JSON
    portable.zip                  only with portable=True (`lethe access --portable`): the portability
                                  export, the data the person provided as JSON + CSV + a JSON Schema per
                                  table or file (pii/reports/portability.py)
    README.txt                    what the files are (and, when encrypted, how to decrypt them)

Every answer names the person's rights, how to exercise each and whom to contact (the controller, its DPO
and the supervisory authority from stores.yaml's ``controller:``; "not configured" where absent): in
summary.html and in the manifest's ``rights`` (pii/reports/rights.py).

Other people's details: a `text` finding's record is someone else's row that mentions the subject, so
every string in it is passed through Presidio and each detected span that does not overlap one of the
subject's own identifiers is replaced with ``<ENTITY_TYPE>``. The subject's own rows (`identifier` and
`linked` findings) are given as they are.

Encryption at rest: with a Fernet key (argument, or LETHE_PACKAGE_KEY) every file except README.txt is
encrypted in memory and written with the suffix ``.enc``; no plain copy ever touches the disk.
`decrypt_package` reverses it.

Writing is atomic: the package is built in a temporary folder beside DIR and renamed into place. A
non-empty DIR is refused unless it holds a previous Lethe package, which is then replaced.
"""
from __future__ import annotations

import base64
import binascii
import csv
import html
import io
import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Any, Iterable, Mapping

from pii.core.errors import PackageError
from pii.core.findings import STRONG, WEAK, Finding, merge
from pii.core.subject import EMAIL_RE, Subject, SubjectMatcher
from pii.core.printable import spreadsheet_safe_row
from pii.reports.values import (  # noqa: F401 - json_safe, safe_name, RAW_*: part of this module's interface
    RAW_EML, RAW_FILE, container_of, csv_cell, cell_text, dumps_json, json_safe, safe_name,
)

KEY_ENV = "LETHE_PACKAGE_KEY"
ENC_SUFFIX = ".enc"
MANIFEST = "manifest.json"
SUMMARY = "summary.html"
README = "README.txt"
DATA_DIR = "data"
HTML_ROW_CAP = 200
HTML_CELL_CAP = 1000
REDACTION_THRESHOLD = 0.4

INVALID_KEY_MESSAGE = (
    f"{KEY_ENV} is not a valid Fernet key (32 url-safe base64-encoded bytes); create one with "
    "`python -c \"from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())\"`"
)

ENTITY_LABELS = {
    "EMAIL_ADDRESS": "email address",
    "PHONE_NUMBER": "phone number",
    "PERSON": "name",
    "ID": "identifier (customer number or similar)",
    "LOCATION": "location / address",
    "CREDIT_CARD": "payment card number",
    "IBAN_CODE": "bank account (IBAN)",
    "IP_ADDRESS": "IP address",
    "UK_NHS": "NHS number",
    "UK_NINO": "National Insurance number",
    "UK_POSTCODE": "postcode",
    "UK_PASSPORT": "passport number",
    "DATE_TIME": "date or time",
    "ORGANIZATION": "organisation",
    "US_SSN": "social security number",
    "MEDICAL_LICENSE": "medical licence number",
    "CRYPTO": "crypto wallet address",
}

MATCH_LABELS = {
    "identifier": "a field equals one of your identifiers",
    "text": "you are mentioned inside free text (e.g. a note or message); other people's details are redacted",
    "linked": "a record connected to one of your records (e.g. an order or registration)",
}


# --------------------------------------------------------------------------- result
@dataclass
class PackageResult:
    out_dir: Path
    files: list[str] = field(default_factory=list)  # relative POSIX paths, as written (".enc" included)
    finding_count: int = 0  # findings in the manifest (one per location)
    record_count: int = 0  # findings that carried a record (the rest are listed by location only)
    encrypted: bool = False


# --------------------------------------------------------------------------- keys
# Record fields that locate or date a record rather than describe anyone: never redacted.
KEEP_UNREDACTED = frozenset({"message_id", "thread_id", "date", "party", "part", "attachments", "subject_line"})


def generate_key() -> str:
    """A fresh Fernet key, as text (put it in LETHE_PACKAGE_KEY)."""
    from cryptography.fernet import Fernet

    return Fernet.generate_key().decode("ascii")


def _resolve_key(key: bytes | str | None) -> bytes | str | None:
    """The key to use: `key`, else LETHE_PACKAGE_KEY (unset or empty: none). An empty `key` given
    explicitly is invalid rather than "no encryption", so a caller's mistake never writes plain files."""
    if key is None:
        key = (os.environ.get(KEY_ENV) or "").strip() or None
    elif isinstance(key, str):
        key = key.strip()
    return key


def _fernet(key: bytes | str):
    from cryptography.fernet import Fernet

    try:
        raw = key.encode("ascii") if isinstance(key, str) else bytes(key)
        return Fernet(raw)
    except (ValueError, TypeError, binascii.Error, UnicodeEncodeError):
        raise PackageError(INVALID_KEY_MESSAGE) from None


# --------------------------------------------------------------------------- values
# --------------------------------------------------------------------------- redaction
class Redactor:
    """Replaces other people's identifiers in free text with ``<ENTITY_TYPE>``; keeps the subject's."""

    def __init__(self, subject: Subject, analyzer=None, threshold: float = REDACTION_THRESHOLD):
        self.subject = subject
        self.matcher = SubjectMatcher(subject)
        self._analyzer = analyzer
        self.threshold = threshold
        self._cache: dict[str, str] = {}

    @property
    def analyzer(self):
        if self._analyzer is None:
            from pii.core.detection import build_analyzer, model_name

            self._analyzer = build_analyzer(model_name())
        return self._analyzer

    def _spans(self, text: str) -> list[tuple[int, int, str, float]]:
        from pii.core.detection import analyze

        spans = [(r.start, r.end, r.entity_type, float(r.score))
                 for r in analyze(self.analyzer, text, threshold=self.threshold)]
        # Belt and braces for the identifiers that matter most (Presidio's phone regions are fixed).
        if "@" in text:
            spans += [(m.start(), m.end(), "EMAIL_ADDRESS", 1.0) for m in EMAIL_RE.finditer(text)]
        if sum(c.isdigit() for c in text) >= 6:
            import phonenumbers

            for m in phonenumbers.PhoneNumberMatcher(text, self.subject.region,
                                                     leniency=phonenumbers.Leniency.POSSIBLE):
                spans.append((m.start, m.end, "PHONE_NUMBER", 0.9))
        return spans

    def redact_text(self, text: str) -> str:
        if not text or not any(c.isalnum() for c in text):
            return text
        cached = self._cache.get(text)
        if cached is not None:
            return cached
        own = [(m.start, m.end) for m in self.matcher.find_in_text(text)]
        spans = [s for s in self._spans(text)
                 if s[1] > s[0] and not any(s[0] < oe and os_ < s[1] for os_, oe in own)]
        # Merge overlapping spans; the label is that of the strongest (then longest) span in the group.
        spans.sort(key=lambda s: (s[0], -s[1]))
        groups: list[list] = []
        for start, end, ent, score in spans:
            if groups and start < groups[-1][1]:
                g = groups[-1]
                g[1] = max(g[1], end)
                if (score, end - start) > (g[3], g[4]):
                    g[2], g[3], g[4] = ent, score, end - start
            else:
                groups.append([start, end, ent, score, end - start])
        out = text
        for start, end, ent, _score, _len in reversed(groups):
            out = out[:start] + f"<{ent}>" + out[end:]
        self._cache[text] = out
        return out

    def redact(self, value: Any) -> Any:
        """Redact every string inside a JSON-safe value (dict keys are left alone)."""
        if isinstance(value, str):
            return self.redact_text(value)
        if isinstance(value, dict):
            return {k: v if k in KEEP_UNREDACTED else self.redact(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.redact(v) for v in value]
        return value


# --------------------------------------------------------------------------- names
def _utc_stamp(when: datetime | None) -> str:
    when = when or datetime.now(timezone.utc)
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("lethe")
    except Exception:  # not installed (running from a checkout)
        return "unknown"


# --------------------------------------------------------------------------- building
@dataclass
class _Row:
    finding: Finding
    record: dict | None  # JSON-safe (and redacted where it is someone else's row)
    redacted: bool


@dataclass
class _Container:
    store: str
    name: str
    stem: str = ""
    rows: list[_Row] = field(default_factory=list)

    @property
    def csv_path(self) -> str:
        return f"{DATA_DIR}/{self.stem}.csv"

    @property
    def json_path(self) -> str:
        return f"{DATA_DIR}/{self.stem}.json"

    def columns(self) -> list[str]:
        cols: dict[str, None] = {}
        for r in self.rows:
            for k in (r.record or {}):
                cols.setdefault(k, None)
        return list(cols)


def _meta_names(columns: list[str]) -> list[str]:
    prefix = "_"
    names = ["location", "match", "strength", "entities"]
    while any(prefix + n in columns for n in names):
        prefix += "_"
    return [prefix + n for n in names]


def _csv_bytes(c: _Container) -> bytes:
    cols = c.columns()
    meta = _meta_names(cols)
    buf = io.StringIO(newline="")
    w = csv.writer(buf, lineterminator="\r\n")
    w.writerow(spreadsheet_safe_row(meta + cols))  # column names come from the store: neutralised too
    for r in c.rows:
        f = r.finding
        rec = r.record or {}
        w.writerow(spreadsheet_safe_row([json.dumps(json_safe(f.location), ensure_ascii=False, sort_keys=True),
                                         f.match, f.strength, ";".join(sorted(f.entities))])
                   + [csv_cell(rec.get(k)) for k in cols])
    return buf.getvalue().encode("utf-8-sig")  # BOM: spreadsheets then read UTF-8 correctly


def _json_bytes(c: _Container) -> bytes:
    return dumps_json({
        "store": c.store,
        "container": c.name,
        "count": len(c.rows),
        "records": [
            {
                "location": json_safe(r.finding.location),
                "match": r.finding.match,
                "strength": r.finding.strength,
                "entities": sorted(r.finding.entities),
                "redacted": r.redacted,
                "record": r.record,
            }
            for r in c.rows
        ],
    })


def _meta_text(value: Any) -> str | None:
    if value is None or value == "" or value == [] or value == {}:
        return None
    if isinstance(value, Mapping):
        return "; ".join(f"{k}: {_meta_text(v) or 'not stated'}" for k, v in value.items())
    if isinstance(value, (list, tuple, set)):
        return ", ".join(str(_meta_text(v)) for v in value if _meta_text(v))
    return str(value)


def _entity_label(ent: str) -> str:
    return ENTITY_LABELS.get(ent, ent.replace("_", " ").lower())


_CSS = """
body{font-family:-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;color:#1f2933;background:#f5f7fa;
margin:0;line-height:1.5}
main{max-width:1100px;margin:0 auto;padding:2rem 1.5rem 4rem}
header{background:#243b53;color:#fff;padding:1.5rem}
header h1{margin:0 auto;max-width:1100px;font-size:1.6rem}
header p{margin:.3rem auto 0;max-width:1100px;color:#d9e2ec}
h2{border-bottom:2px solid #bcccdc;padding-bottom:.3rem;margin-top:2.5rem}
h3{margin-top:1.8rem}
section.card{background:#fff;border:1px solid #d9e2ec;border-radius:8px;padding:1rem 1.5rem;margin:1rem 0}
dl.meta{display:grid;grid-template-columns:max-content 1fr;gap:.3rem 1.2rem;margin:0}
dl.meta dt{font-weight:600;color:#486581}
dl.meta dd{margin:0}
.missing{color:#829ab1;font-style:italic}
.scroll{overflow-x:auto;max-width:100%}
table{border-collapse:collapse;width:100%;font-size:.9rem;background:#fff}
th,td{border:1px solid #d9e2ec;padding:.35rem .55rem;text-align:left;vertical-align:top}
th{background:#f0f4f8;position:sticky;top:0}
td{white-space:pre-wrap;word-break:break-word}
tr.weak td{background:#fffbea}
.badge{display:inline-block;border-radius:999px;padding:0 .55rem;font-size:.78rem;font-weight:600;
background:#e4e7eb;color:#323f4b;white-space:nowrap}
.badge.weak{background:#f7c948;color:#513c06}
.badge.text{background:#bae3ff;color:#003e6b}
.badge.linked{background:#c6f7e2;color:#014d40}
.note{background:#fffbea;border-left:4px solid #f7c948;padding:.6rem 1rem;margin:1rem 0}
.rights{background:#e3f8ff;border-left:4px solid #2bb0ed;padding:.6rem 1rem}
code{background:#f0f4f8;padding:0 .25rem;border-radius:3px}
footer{color:#829ab1;font-size:.8rem;margin-top:3rem}
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _html(subject: Subject, generated_at: str, containers: list[_Container],
          stores_metadata: Mapping[str, Mapping], redacted: bool,
          request: Mapping[str, Any] | None = None, coverage: list[dict] | None = None,
          controller: Mapping[str, Any] | None = None, portable: Mapping[str, Any] | None = None) -> bytes:
    by_store: dict[str, list[_Container]] = {}
    for c in containers:
        by_store.setdefault(c.store, []).append(c)
    total = sum(len(c.rows) for c in containers)
    weak = sum(1 for c in containers for r in c.rows if r.finding.strength == WEAK)
    p: list[str] = []
    a = p.append
    a("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">")
    a("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">")
    a("<title>Your personal data: answer to your access request</title>")
    a(f"<style>{_CSS}</style></head><body>")
    a("<header><h1>Your personal data</h1>"
      f"<p>Answer to your access request (GDPR Article 15) &middot; generated {_e(generated_at)}</p></header><main>")

    # who
    a("<h2>Who this answer is about</h2><section class=\"card\"><p>We searched for records that match these "
      "identifiers:</p><dl class=\"meta\">")
    idents = [("Email", list(subject.emails)), ("Name", list(subject.names)), ("Phone", list(subject.phones))]
    idents += [(f"ID ({k})", list(v)) for k, v in subject.ids.items()]
    for label, vals in idents:
        if vals:
            a(f"<dt>{_e(label)}</dt><dd>{'<br>'.join(_e(v) for v in vals)}</dd>")
    a(f"<dt>Generated at</dt><dd>{_e(generated_at)} (UTC)</dd>")
    for key, label in (("received_at", "Request received"), ("due_by", "Answer due by")):
        if request and request.get(key):
            a(f"<dt>{label}</dt><dd>{_e(request[key])}</dd>")
    a("</dl></section>")

    # overview
    a("<h2>Overview</h2><section class=\"card\">")
    if total:
        a(f"<p>We found <strong>{total}</strong> record{'s' if total != 1 else ''} about you in "
          f"<strong>{len(by_store)}</strong> system{'s' if len(by_store) != 1 else ''}.</p>")
    else:
        a("<p>We found no records about you in the systems we searched.</p>")
    a("<p>How each record was found:</p><ul>")
    for kind, label in MATCH_LABELS.items():
        if kind == "text" and not redacted:
            label = "you are mentioned inside free text (e.g. a note or message)"
        a(f"<li><span class=\"badge {kind}\">{_e(kind)}</span> {_e(label)}</li>")
    a("</ul>")
    if weak:
        a(f"<p class=\"note\"><strong>{weak}</strong> record{'s' if weak != 1 else ''} matched on a name only "
          "(marked <span class=\"badge weak\">needs review</span>). They are listed so that you can tell us "
          "whether they are about you; a name alone may belong to someone else.</p>")
    else:
        a("<p>Records that match on a name only (weak matches) would be marked "
          "<span class=\"badge weak\">needs review</span>; there are none in this answer.</p>")
    if by_store:
        a("<div class=\"scroll\"><table><thead><tr><th>System</th><th>Records</th><th>identifier</th>"
          "<th>text</th><th>linked</th><th>Needs review</th></tr></thead><tbody>")
        for store, cs in by_store.items():
            fs = [r.finding for c in cs for r in c.rows]
            cnt = {k: sum(1 for f in fs if f.match == k) for k in MATCH_LABELS}
            a(f"<tr><td><a href=\"#store-{_e(cs[0].stem.split('/')[0])}\">{_e(store)}</a></td><td>{len(fs)}</td>"
              f"<td>{cnt['identifier']}</td><td>{cnt['text']}</td><td>{cnt['linked']}</td>"
              f"<td>{sum(1 for f in fs if f.strength == WEAK)}</td></tr>")
        a("</tbody></table></div>")
    unmatched = [s for s in stores_metadata if s not in by_store]
    if unmatched:
        a("<p>Other systems searched, with nothing found about you: " + ", ".join(_e(s) for s in unmatched) + ".</p>")
    a("</section>")

    # per store
    for store, cs in by_store.items():
        meta = stores_metadata.get(store) or {}
        anchor = cs[0].stem.split("/")[0]
        a(f"<h2 id=\"store-{_e(anchor)}\">{_e(store)}</h2><section class=\"card\"><dl class=\"meta\">")
        for key, label in (("description", "What it is"), ("purpose", "Purpose of processing"),
                           ("legal_basis", "Legal basis"), ("source", "Where the data came from"),
                           ("recipients", "Recipients"), ("retention", "How long it is kept")):
            text = _meta_text(meta.get(key))
            a(f"<dt>{_e(label)}</dt><dd>" + (_e(text) if text else "<span class=\"missing\">not stated</span>")
              + "</dd>")
        ents = sorted({e for c in cs for r in c.rows for e in r.finding.entities})
        cats = ", ".join(_e(_entity_label(e)) for e in ents) or "<span class=\"missing\">none detected</span>"
        a(f"<dt>Categories of data</dt><dd>{cats}</dd></dl>")
        a("<div class=\"scroll\"><table><thead><tr><th>Table or file</th><th>Records</th><th>Categories</th>"
          "<th>How found</th><th>Data files</th></tr></thead><tbody>")
        for c in cs:
            kinds = sorted({r.finding.match for r in c.rows}, key=list(MATCH_LABELS).index)
            cents = sorted({e for r in c.rows for e in r.finding.entities})
            cats = _e(", ".join(_entity_label(e) for e in cents)) or "&ndash;"
            badges = " ".join('<span class="badge %s">%s</span>' % (_e(k), _e(k)) for k in kinds)
            a(f"<tr><td>{_e(c.name)}</td><td>{len(c.rows)}</td><td>{cats}</td><td>{badges}</td>"
              f"<td><a href=\"{_e(c.csv_path)}\">CSV</a> &middot; <a href=\"{_e(c.json_path)}\">JSON</a></td></tr>")
        a("</tbody></table></div></section>")
        for c in cs:
            a(f"<h3>{_e(store)} &rsaquo; {_e(c.name)}</h3>")
            cols = c.columns()
            shown = c.rows[:HTML_ROW_CAP]
            if len(c.rows) > HTML_ROW_CAP:
                a(f"<p class=\"note\">Showing the first {HTML_ROW_CAP} of {len(c.rows)} records; all of them are "
                  f"in <a href=\"{_e(c.csv_path)}\">{_e(c.csv_path)}</a> and "
                  f"<a href=\"{_e(c.json_path)}\">{_e(c.json_path)}</a>.</p>")
            a("<div class=\"scroll\"><table><thead><tr><th>Where</th><th>How found</th>"
              + "".join(f"<th>{_e(k)}</th>" for k in cols) + "</tr></thead><tbody>")
            for r in shown:
                f = r.finding
                badges = f"<span class=\"badge {_e(f.match)}\">{_e(f.match)}</span>"
                if f.strength == WEAK:
                    badges += " <span class=\"badge weak\">needs review</span>"
                if r.redacted:
                    badges += " <span class=\"badge\">others redacted</span>"
                where = ", ".join(f"{k}: {cell_text(json_safe(v))}" for k, v in (f.location or {}).items())
                cells = []
                for k in cols:
                    text = cell_text((r.record or {}).get(k))
                    if len(text) > HTML_CELL_CAP:
                        text = text[:HTML_CELL_CAP] + " … (truncated; see the CSV/JSON file)"
                    cells.append(f"<td>{_e(text)}</td>")
                if r.record is None:
                    cells = [f"<td colspan=\"{max(len(cols), 1)}\" class=\"missing\">listed by location only</td>"]
                a(f"<tr class=\"{'weak' if f.strength == WEAK else STRONG}\"><td>{_e(where)}</td><td>{badges}</td>"
                  + "".join(cells) + "</tr>")
            a("</tbody></table></div>")

    # rights: each one, how to exercise it, whom to contact (stores.yaml's controller:, or "not configured")
    from pii.reports.rights import rights_html

    a(rights_html(controller, portable_included=portable is not None))
    if portable is not None:
        a("<h2>Your data in a portable form</h2><section class=\"card\"><p><code>portable.zip</code> holds the "
          "data you provided to us (the records that match your identifiers and the records linked to them), as "
          "JSON and CSV, with a data dictionary (a JSON Schema per table or file: each column, its type and "
          "whether it identifies you). Records of other people that mention you, records matched on a name "
          "alone and e-mail messages are not in it.</p>")
        if portable.get("tables"):
            a("<div class=\"scroll\"><table><thead><tr><th>System</th><th>Table or file</th><th>Records</th>"
              "</tr></thead><tbody>")
            for t in portable["tables"]:
                a(f"<tr><td>{_e(t['store'])}</td><td>{_e(t['container'])}</td><td>{t['records']}</td></tr>")
            a("</tbody></table></div>")
        else:
            a("<p>We hold no records that you provided in the systems we searched.</p>")
        a("</section>")
    a("<h2>About this package</h2><section class=\"card\"><p><code>manifest.json</code> lists every place your "
      "data was found. The folder <code>data/</code> holds one CSV and one JSON file per table or file, with all "
      "records (binary values are given as <code>base64:</code> text). "
      + ("Where a record belongs to someone else and only mentions you, other people's details are replaced by "
         "a label such as <code>&lt;PERSON&gt;</code>." if redacted else "")
      + "</p></section>")
    gaps = [(c["store"], g) for c in (coverage or []) for g in c.get("skipped", []) + c.get("partial", [])]
    if gaps:  # an honest answer says where it could not look
        a("<h2>Places we could not fully search</h2><section class=\"card\"><p>This answer covers every place "
          "listed in <code>manifest.json</code> except the following, which could not be searched in full; "
          "we will search them again once they can be read.</p><ul>")
        for store, g in gaps:
            a(f"<li>{_e(store)}: {_e(g['place'])}: {_e(g['reason'])}</li>")
        a("</ul></section>")
    a(f"<footer>Generated by Lethe {_e(_version())} at {_e(generated_at)}.</footer></main></body></html>\n")
    return "".join(p).encode("utf-8")


def _readme(encrypted: bool, generated_at: str, portable: bool = False) -> bytes:
    lines = [
        "Lethe access package",
        "====================",
        "",
        f"Generated at {generated_at} (UTC) by Lethe {_version()}.",
        "",
        "Contents:",
        "  manifest.json   every place the person's data was found (machine-readable)",
        "  summary.html    the human-readable answer to the access request",
        "  data/           the records, one CSV and one JSON file per store and table or file",
    ]
    if portable:
        lines += ["  portable.zip    the data the person provided, as JSON and CSV with a data dictionary",
                  "                  (a JSON Schema per table or file), for another provider (GDPR Art. 20)"]
    lines += [""]
    if encrypted:
        lines += [
            "Every file except this README is encrypted with Fernet (AES-128-CBC + HMAC-SHA256) and has the",
            "suffix .enc. To decrypt, set LETHE_PACKAGE_KEY to the key the package was written with and run:",
            "",
            "    lethe decrypt-package DIR --out PLAIN",
            "",
            "or, from Python:",
            "",
            "    from pii.reports.package import decrypt_package",
            "    decrypt_package('DIR', 'PLAIN', key='...')",
            "",
            "The decrypted folder holds personal data: keep it only as long as needed and send it securely.",
        ]
    else:
        lines += ["These files hold personal data: keep them only as long as needed and send them securely."]
    return ("\n".join(lines) + "\n").encode("utf-8")


def build_package(subject: Subject, findings: Iterable[Finding], *,
                  stores_metadata: Mapping[str, Mapping] | None = None,
                  generated_at: datetime | None = None, analyzer=None, redact: bool = True,
                  request: Mapping[str, Any] | None = None, coverage: list[dict] | None = None,
                  portable: bool = False, controller: Mapping[str, Any] | None = None,
                  ) -> tuple[dict[str, bytes], int, int]:
    """The package's plain files in memory: ({relative path: bytes}, finding_count, record_count).
    `coverage`: per store, what the search read (pii/core/coverage.py `Coverage.detailed`), kept in the manifest
    and summarised in summary.html where a store was not searched in full.
    `portable`: add portable.zip (pii/reports/portability.py). `controller`: stores.yaml's ``controller:``
    mapping (config.raw["controller"]), named in the rights section; None: the contacts are not configured."""
    stores_metadata = dict(stores_metadata or {})
    stamp = _utc_stamp(generated_at)
    merged = merge(findings)
    redactor = Redactor(subject, analyzer) if redact else None

    containers: dict[tuple[str, str], _Container] = {}
    raw_messages: list[tuple[tuple[str, str], str, bytes]] = []  # (container key, message id, .eml bytes)
    for f in merged:
        record = dict(f.record) if f.record is not None else None
        if record is not None and RAW_EML in record:
            raw = record.pop(RAW_EML)
            if raw:
                mid = str((f.location or {}).get("message_id") or len(raw_messages))
                raw_messages.append(((f.store, container_of(f)), mid, base64.b64decode(raw)))
        if (document := _pop_raw_file(record)) is not None:
            raw_messages.append(((f.store, container_of(f)), "", document))
        record = json_safe(record) if record is not None else None
        was_redacted = False
        if record is not None and f.match == "text" and redactor is not None:
            new = redactor.redact(record)
            was_redacted = new != record
            record = new
        cname = container_of(f)
        c = containers.setdefault((f.store, cname), _Container(f.store, cname))
        c.rows.append(_Row(f, record, was_redacted))

    store_dirs: dict[str, str] = {}
    taken_stores: set[str] = set()
    taken_in: dict[str, set[str]] = {}
    from pii.core.printable import names_subject
    from pii.core.subject import SubjectMatcher

    matcher = SubjectMatcher(subject)
    for n, c in enumerate(containers.values(), 1):
        if c.store not in store_dirs:
            store_dirs[c.store] = safe_name(c.store, taken_stores, strip_ext=())
        sdir = store_dirs[c.store]
        # a file named after the subject keeps its name in the records and manifest, not in file names
        base = f"named-after-you-{n}" if names_subject(c.name.rsplit("/", 1)[-1], matcher) else c.name
        c.stem = f"{sdir}/{safe_name(base, taken_in.setdefault(sdir, set()))}"

    files: dict[str, bytes] = {}
    clist = list(containers.values())
    for c in clist:
        files[c.csv_path] = _csv_bytes(c)
        files[c.json_path] = _json_bytes(c)
    taken_eml: dict[str, set[str]] = {}
    for key, mid, raw in raw_messages:  # whole messages where the subject is a party, as .eml files
        if not mid:  # a whole document the subject is found in (PDF, DOCX, XLSX): the file itself
            files[_document_path(containers[key].stem, key[1])] = raw
            continue
        folder = containers[key].stem + "_messages"
        files[f"{folder}/{safe_name(mid, taken_eml.setdefault(folder, set()), strip_ext=())}.eml"] = raw
    portable_entry = None
    if portable:
        from pii.reports.portability import PORTABLE, build_portable

        files[PORTABLE], portable_entry = build_portable(subject, merged, stamp=stamp)
    files[SUMMARY] = _html(subject, stamp, clist, stores_metadata, redact, request, coverage,
                           controller=controller, portable=portable_entry)

    stores_out: dict[str, dict] = {}
    for name in list(dict.fromkeys([c.store for c in clist] + list(stores_metadata))):
        cs = [c for c in clist if c.store == name]
        fs = [r.finding for c in cs for r in c.rows]
        stores_out[name] = {
            "metadata": json_safe(dict(stores_metadata.get(name) or {})),
            "findings": len(fs),
            "by_match": {k: sum(1 for f in fs if f.match == k) for k in MATCH_LABELS},
            "weak": sum(1 for f in fs if f.strength == WEAK),
            "entities": sorted({e for f in fs for e in f.entities}),
            "containers": {
                c.name: {"records": len(c.rows), "csv": c.csv_path, "json": c.json_path} for c in cs
            },
        }
    record_count = sum(1 for c in clist for r in c.rows if r.record is not None)
    manifest = {
        "subject": subject.to_manifest(),
        "generated_at": stamp,
        "findings": [f.to_manifest() for f in merged],
        "lethe_version": _version(),
        "redacted": bool(redact),
        "record_count": record_count,
        "files": sorted([*files, MANIFEST]),
        "stores": stores_out,
    }
    from pii.reports.rights import rights_manifest

    manifest["rights"] = rights_manifest(controller, portable_included=portable_entry is not None)
    if portable_entry is not None:
        manifest["portability"] = portable_entry
    if request:
        manifest["request"] = dict(request)
    if coverage is not None:
        manifest["coverage"] = list(coverage)
        manifest["complete"] = all(c.get("complete", True) for c in coverage)
    files[MANIFEST] = dumps_json(json_safe(manifest))
    return files, len(merged), record_count


def _pop_raw_file(record: dict | None) -> bytes | None:
    """The whole document a finding's record carries under RAW_FILE (taken out of the record), or None."""
    raw = record.pop(RAW_FILE, None) if record is not None else None
    if not isinstance(raw, dict) or not raw.get("base64"):
        return None
    return base64.b64decode(raw["base64"])


def _document_path(stem: str, container: str) -> str:
    """Where a whole document goes: ``data/<stem>_file/original.<ext>`` beside its records (the extension kept,
    the name not: it may name the person, and the stem already stands for it)."""
    ext = container.rsplit(".", 1)[-1] if "." in container.rsplit("/", 1)[-1] else ""
    ext = ext.lower() if re.fullmatch(r"[A-Za-z0-9]{1,8}", ext) else "bin"
    return f"{DATA_DIR}/{stem}_file/original.{ext}"


# --------------------------------------------------------------------------- writing
def _is_package(path: Path) -> bool:
    return (path / MANIFEST).is_file() or (path / (MANIFEST + ENC_SUFFIX)).is_file()


def _check_target(out_dir: Path) -> None:
    if out_dir.exists() or out_dir.is_symlink():
        if not out_dir.is_dir():
            raise PackageError(f"{out_dir} exists and is not a folder")
        if any(out_dir.iterdir()) and not _is_package(out_dir):
            raise PackageError(
                f"{out_dir} is not empty and does not hold a previous Lethe package; choose another folder"
            )


def _write_tree(out_dir: Path, files: Mapping[str, bytes]) -> None:
    """Write `files` into a temporary folder beside `out_dir`, then swap it into place."""
    out_dir = Path(out_dir)
    _check_target(out_dir)
    parent = out_dir.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.lethe-", dir=parent))
    except OSError as exc:
        raise PackageError(f"cannot create {out_dir}: {exc.strerror or exc.__class__.__name__}") from None
    backup: Path | None = None
    try:
        root = tmp.resolve()
        for rel, data in files.items():
            target = (tmp / PurePosixPath(rel)).resolve()
            if root not in target.parents:  # never true for names from safe_name; a last guard
                raise PackageError("refusing to write a file outside the package folder")
            target.parent.mkdir(parents=True, exist_ok=True)
            with open(target, "xb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
        if out_dir.exists():
            if any(out_dir.iterdir()):
                backup = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.lethe-old-", dir=parent))
                os.rmdir(backup)
                os.rename(out_dir, backup)
            else:
                os.rmdir(out_dir)
        try:
            os.rename(tmp, out_dir)
        except OSError:
            if backup is not None:
                os.rename(backup, out_dir)
                backup = None
            raise
    except OSError as exc:
        raise PackageError(f"cannot write the package to {out_dir}: {exc.strerror or exc.__class__.__name__}") \
            from None
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
        if backup is not None:
            shutil.rmtree(backup, ignore_errors=True)


def write_access_package(
    out_dir: str | os.PathLike,
    subject: Subject,
    findings: Iterable[Finding],
    *,
    stores_metadata: dict[str, dict] | None = None,
    generated_at: datetime | None = None,
    key: bytes | str | None = None,
    analyzer=None,
    redact: bool = True,
    request: Mapping[str, Any] | None = None,
    coverage: list[dict] | None = None,
    portable: bool = False,
    controller: Mapping[str, Any] | None = None,
) -> PackageResult:
    """Write the access package for `subject` to `out_dir` (see the module docstring). `portable` adds
    portable.zip; `controller` is stores.yaml's ``controller:`` mapping (see `build_package`)."""
    out_dir = Path(out_dir)
    generated_at = generated_at or datetime.now(timezone.utc)
    key = _resolve_key(key)
    fernet = _fernet(key) if key is not None else None  # invalid key: fail before any work
    _check_target(out_dir)
    plain, finding_count, record_count = build_package(
        subject, findings, stores_metadata=stores_metadata, generated_at=generated_at,
        analyzer=analyzer, redact=redact, request=request, coverage=coverage, portable=portable,
        controller=controller,
    )
    stamp = _utc_stamp(generated_at)
    has_portable = "portable.zip" in plain
    if fernet is not None:
        files = {rel + ENC_SUFFIX: fernet.encrypt(data) for rel, data in plain.items()}
    else:
        files = dict(plain)
    del plain
    files[README] = _readme(fernet is not None, stamp, has_portable)
    _write_tree(out_dir, files)
    return PackageResult(
        out_dir=out_dir, files=sorted(files), finding_count=finding_count, record_count=record_count,
        encrypted=fernet is not None,
    )


def _decrypt_all(enc_dir: Path, fernet) -> dict[str, bytes]:
    from cryptography.fernet import InvalidToken

    if not (enc_dir / (MANIFEST + ENC_SUFFIX)).is_file():
        raise PackageError(f"{enc_dir} does not hold an encrypted Lethe package (no {MANIFEST}{ENC_SUFFIX})")
    out: dict[str, bytes] = {}
    for path in sorted(enc_dir.rglob("*" + ENC_SUFFIX)):
        if not path.is_file() or path.is_symlink():
            continue
        rel = path.relative_to(enc_dir).as_posix()[: -len(ENC_SUFFIX)]
        try:
            out[rel] = fernet.decrypt(path.read_bytes())
        except InvalidToken:
            raise PackageError(
                f"cannot decrypt {path.relative_to(enc_dir).as_posix()}: wrong key, or the file is damaged"
            ) from None
        except OSError as exc:
            raise PackageError(f"cannot read {path.relative_to(enc_dir).as_posix()}: {exc.strerror}") from None
    return out


def _need_key(key: bytes | str | None):
    key = _resolve_key(key)
    if key is None:
        raise PackageError(f"the package is encrypted: give the key or set {KEY_ENV}")
    return _fernet(key)


def decrypt_package(enc_dir: str | os.PathLike, out_dir: str | os.PathLike,
                    key: bytes | str | None = None) -> PackageResult:
    """Decrypt an encrypted package into `out_dir` (same folder rules as writing). Every file is
    decrypted in memory first, so a wrong key writes nothing."""
    enc_dir, out_dir = Path(enc_dir), Path(out_dir)
    fernet = _need_key(key)
    if out_dir.resolve() == enc_dir.resolve():
        raise PackageError("decrypt into a different folder than the encrypted package")
    files = _decrypt_all(enc_dir, fernet)
    try:
        manifest = json.loads(files[MANIFEST])
        stamp = str(manifest.get("generated_at", ""))
    except (ValueError, KeyError):
        raise PackageError(f"{MANIFEST} in {enc_dir} is not valid JSON") from None
    files[README] = _readme(False, stamp, "portable.zip" in files)
    _write_tree(out_dir, files)
    findings = manifest.get("findings") or []
    return PackageResult(out_dir=out_dir, files=sorted(files), finding_count=len(findings),
                         record_count=int(manifest.get("record_count", 0) or 0), encrypted=False)


def read_manifest(path: str | os.PathLike, key: bytes | str | None = None) -> dict:
    """manifest.json of a package folder, decrypting it when the package is encrypted."""
    path = Path(path)
    plain, enc = path / MANIFEST, path / (MANIFEST + ENC_SUFFIX)
    try:
        if plain.is_file():
            data = plain.read_bytes()
        elif enc.is_file():
            from cryptography.fernet import InvalidToken

            fernet = _need_key(key)
            try:
                data = fernet.decrypt(enc.read_bytes())
            except InvalidToken:
                raise PackageError(f"cannot decrypt {MANIFEST}{ENC_SUFFIX}: wrong key, or the file is damaged") \
                    from None
        else:
            raise PackageError(f"{path} does not hold a Lethe access package (no {MANIFEST})")
        return json.loads(data)
    except OSError as exc:
        raise PackageError(f"cannot read the manifest in {path}: {exc.strerror}") from None
    except ValueError:
        raise PackageError(f"{MANIFEST} in {path} is not valid JSON") from None
