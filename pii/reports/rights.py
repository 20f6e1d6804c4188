"""The rights every access answer names (GDPR Arts. 7(3), 13-22, 77): how to exercise each, and whom to contact.

The contacts come from stores.yaml's top-level ``controller:`` mapping (schema: pii/core/config.py,
`CONTACT_KEYS`)::

    controller:
      name: Example Members Ltd
      email: privacy@example.org
      address: 1 High Street, London
      dpo: {name: Jo Bloggs, email: dpo@example.org}
      supervisory_authority: {name: Information Commissioner's Office, url: https://ico.org.uk/make-a-complaint/}

A contact that is not configured is said to be not configured: nothing is ever made up. The text for the
person (`RIGHTS[...]["description"]`, ``how``) is in plain words; the Lethe command staff run for each
right (`staff_command`) goes only into the manifest, for the people who answer the request.
"""
from __future__ import annotations

import html
from typing import Any, Mapping

from pii.core.config import CONTACT_KEYS

ROLES = ("controller", "dpo", "supervisory_authority")
ROLE_LABELS = {
    "controller": "the controller (the organisation responsible for your data)",
    "dpo": "the data protection officer",
    "supervisory_authority": "the data-protection supervisory authority",
}
NOT_CONFIGURED = "not configured"
CONTACT_LABELS = {"name": "Name", "email": "Email", "phone": "Phone", "address": "Address", "url": "Web"}

# (key, title, article, what it is in plain words, contact roles, the Lethe command staff use)
RIGHTS: tuple[dict[str, Any], ...] = (
    {"right": "access", "title": "Access", "article": "GDPR Art. 15",
     "description": "You can ask for a copy of the personal data we hold about you, what we use it for, who "
                    "receives it, where it came from and how long we keep it. This answer is such a copy; you "
                    "can ask again.",
     "contact": ["controller", "dpo"], "staff_command": "lethe access IDENTIFIERS --out DIR"},
    {"right": "rectification", "title": "Rectification (correction)", "article": "GDPR Art. 16",
     "description": "If any of your data is wrong or incomplete, you can ask us to correct or complete it. Tell "
                    "us what is wrong and what it should be.",
     "contact": ["controller", "dpo"],
     "staff_command": "lethe rectify IDENTIFIERS --set email=NEW|phone=NEW|name=NEW [--dry-run | --yes]"},
    {"right": "erasure", "title": "Erasure (deletion)", "article": "GDPR Art. 17",
     "description": "You can ask us to delete your personal data. We delete it unless the law requires us to "
                    "keep some of it, and we tell you what we kept and why.",
     "contact": ["controller", "dpo"], "staff_command": "lethe erase IDENTIFIERS [--dry-run | --yes]"},
    {"right": "restriction", "title": "Restriction of processing", "article": "GDPR Art. 18",
     "description": "You can ask us to keep your data but stop using it, for example while you contest its "
                    "accuracy or while we consider an objection.",
     "contact": ["controller", "dpo"], "staff_command": "lethe restrict IDENTIFIERS --reason R [--until DATE]"},
    {"right": "objection", "title": "Objection", "article": "GDPR Art. 21",
     "description": "You can object to our use of your data for direct marketing (we then stop), and to its use "
                    "for profiling or on the ground of our legitimate interests.",
     "contact": ["controller", "dpo"],
     "staff_command": "lethe object IDENTIFIERS --purpose marketing|profiling|analytics --reason R"},
    {"right": "portability", "title": "Data portability", "article": "GDPR Art. 20",
     "description": "You can ask for the data you gave us in a structured, commonly used, machine-readable form "
                    "(JSON and CSV, with a description of every column), to keep or to pass to another provider.",
     "contact": ["controller", "dpo"], "staff_command": "lethe access IDENTIFIERS --portable --out DIR"},
    {"right": "withdraw_consent", "title": "Withdrawing consent", "article": "GDPR Art. 7(3)",
     "description": "Where we use your data because you agreed to it (for example marketing e-mails), you can "
                    "withdraw your consent at any time, as easily as you gave it. What was done before stays "
                    "lawful.",
     "contact": ["controller", "dpo"], "staff_command": "lethe unsubscribe IDENTIFIERS"},
    {"right": "complaint", "title": "Complaining to the supervisory authority", "article": "GDPR Art. 77",
     "description": "If you are unhappy with how we handle your data or with this answer, you can complain to a "
                    "data-protection supervisory authority, in particular in the country where you live or work "
                    "or where you think the problem happened. You do not have to contact us first.",
     "contact": ["supervisory_authority"], "staff_command": None},
)


def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = " ".join(str(value).split())
    return text or None


def contacts(controller: Mapping[str, Any] | None) -> dict[str, dict[str, Any]]:
    """The three contacts as the manifest gives them: per role ``{"configured": True, name, email, ...}``
    (only the keys stores.yaml gives) or ``{"configured": False, "note": "not configured"}``."""
    controller = controller if isinstance(controller, Mapping) else {}
    out: dict[str, dict[str, Any]] = {}
    for role in ROLES:
        source = controller if role == "controller" else controller.get(role)
        source = source if isinstance(source, Mapping) else {}
        details = {k: _text(source.get(k)) for k in CONTACT_KEYS if _text(source.get(k))}
        out[role] = {"configured": True, **details} if details else {"configured": False, "note": NOT_CONFIGURED}
    return out


def how_to(right: Mapping[str, Any], found: Mapping[str, Mapping[str, Any]], *, portable_included: bool = False
           ) -> str:
    """How the person exercises `right`, in plain words, naming only contacts that are configured."""
    if right["right"] == "complaint":
        sa = found["supervisory_authority"]
        if sa["configured"]:
            return f"Contact {sa.get('name') or 'the supervisory authority'} (details below)."
        return ("The supervisory authority's contact is not configured for this answer: contact the "
                "data-protection authority of the country where you live or work, or where you think the "
                "problem happened.")
    c, d = found["controller"], found["dpo"]
    who = []
    if c["configured"]:
        who.append(c.get("name") or "the controller")
    if d["configured"]:
        who.append("its data protection officer" if who else "the data protection officer")
    if who:
        text = f"Write to {' or '.join(who)} (details below), saying which right you want to use"
        text += " and quoting this answer's reference." if right["right"] != "access" else "."
    else:
        text = ("The controller's contact is not configured for this answer: reply to whoever sent it to you "
                "and ask them for it.")
    if right["right"] == "portability" and portable_included:
        text = "The portable copy of the data you gave us is in this package (portable.zip). " + text
    return text


def rights_manifest(controller: Mapping[str, Any] | None, *, portable_included: bool = False) -> dict:
    """The manifest's ``rights`` entry: the contacts (configured or not) and, per right, what it is, how to
    exercise it, whom to contact (roles into ``contacts``) and the Lethe command staff run for it."""
    found = contacts(controller)
    return {
        "contacts": found,
        "configured": any(v["configured"] for v in found.values()),
        "rights": [{"right": r["right"], "title": r["title"], "article": r["article"],
                    "description": r["description"], "how": how_to(r, found, portable_included=portable_included),
                    "contact": list(r["contact"]),
                    "contact_configured": any(found[k]["configured"] for k in r["contact"]),
                    "staff_command": r["staff_command"]}
                   for r in RIGHTS],
    }


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _contact_html(role: str, contact: Mapping[str, Any]) -> str:
    title = {"controller": "Controller", "dpo": "Data protection officer",
             "supervisory_authority": "Supervisory authority"}[role]
    if not contact["configured"]:
        return (f"<dt>{_e(title)}</dt><dd><span class=\"missing\">{NOT_CONFIGURED}</span></dd>")
    parts = []
    for k in CONTACT_KEYS:
        v = contact.get(k)
        if not v:
            continue
        if k == "email":
            shown = f"<a href=\"mailto:{_e(v)}\">{_e(v)}</a>"
        elif k == "url" and str(v).lower().startswith(("https://", "http://")):
            shown = f"<a href=\"{_e(v)}\">{_e(v)}</a>"
        else:
            shown = _e(v)
        parts.append(f"{_e(CONTACT_LABELS[k])}: {shown}")
    return f"<dt>{_e(title)}</dt><dd>{'<br>'.join(parts)}</dd>"


def rights_html(controller: Mapping[str, Any] | None, *, portable_included: bool = False) -> str:
    """The summary's "Your rights" section: each right in plain words, how to exercise it, and the contacts."""
    data = rights_manifest(controller, portable_included=portable_included)
    found = data["contacts"]
    p = ["<h2 id=\"rights\">Your rights</h2><section class=\"card rights\">",
         "<p>You have these rights over your personal data. Using them is free of charge; we answer within one "
         "month (we tell you if we need up to two months more, and why).</p>", "<dl class=\"meta\">"]
    for r in data["rights"]:
        whom = " or ".join(ROLE_LABELS[k] for k in r["contact"])
        p.append(f"<dt>{_e(r['title'])}</dt><dd>{_e(r['description'])}<br><strong>How:</strong> {_e(r['how'])}"
                 f"<br><span class=\"missing\">Whom to contact: {_e(whom)} &middot; "
                 f"{_e(r['right'].replace('_', ' '))}, {_e(r['article'])}</span></dd>")
    p.append("</dl><h3>Whom to contact</h3><dl class=\"meta\">")
    for role in ROLES:
        p.append(_contact_html(role, found[role]))
    p.append("</dl></section>")
    return "".join(p)
