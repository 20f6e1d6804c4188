"""The console's pages as plain server-rendered HTML: one stylesheet inline, no scripts, no external
assets, every value escaped (`e`). Inputs are what `pii.ledger.views` and `pii.reports.datamap` return:
ids, states, dates, counts, names of stores, tables and columns, screened reasons; never a personal value."""
from __future__ import annotations

import html
import json
from typing import Any, Iterable
from urllib.parse import quote

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:1.5rem;color:#1b1b1b;line-height:1.4}
nav{margin-bottom:1rem;padding-bottom:.5rem;border-bottom:1px solid #ccc}nav a{margin-right:1rem}
h1{font-size:1.4rem}h2{font-size:1.15rem;margin-top:1.6rem}h3{font-size:1rem}
table{border-collapse:collapse;margin:.4rem 0 1rem;font-size:.9rem}
th,td{border:1px solid #ccc;padding:.25rem .5rem;text-align:left;vertical-align:top}
th{background:#f2f2f2}.muted{color:#666}.overdue{background:#fde2e1;color:#8a1111;font-weight:bold}
.warn{background:#fff4d6}code{background:#f4f4f4;padding:0 .2rem}pre{background:#f7f7f7;padding:.6rem;overflow:auto}
.who{float:right;color:#666;font-size:.85rem}
"""
NONE = "—"


def e(value: Any) -> str:
    if value is None or value == "":
        return NONE
    if isinstance(value, (list, tuple)):
        value = ", ".join(str(v) for v in value)
    return html.escape(str(value), quote=True)


def q(value: Any) -> str:
    """A path segment, percent-encoded (then escaped for the attribute)."""
    return html.escape(quote(str(value), safe=""), quote=True)


def page(title: str, body: str, *, root: str, user: str | None = None) -> str:
    who = f'<span class="who">signed in as {e(user)}</span>' if user else ""
    nav = (f'<nav>{who}<strong>Lethe</strong> · <a href="{root}/requests">Requests</a>'
           f'<a href="{root}/approvals">Pending approvals</a><a href="{root}/inventory">Inventory</a>'
           f'<a href="{root}/datamap">Data map</a><a href="{root}/ropa">Records of processing</a></nav>')
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{e(title)} · Lethe</title><style>{CSS}</style></head><body>{nav}"
            f"<h1>{e(title)}</h1>\n{body}\n</body></html>\n")


def table(headers: Iterable[str], rows: Iterable[Iterable[str]], *, empty: str = "Nothing here.",
          row_classes: Iterable[str] | None = None, id_: str | None = None) -> str:
    """`rows` hold HTML already escaped (cells built with `e`)."""
    headers = list(headers)
    classes = list(row_classes or [])
    body = []
    for i, row in enumerate(rows):
        cls = f' class="{classes[i]}"' if i < len(classes) and classes[i] else ""
        body.append(f"<tr{cls}>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>")
    if not body:
        body.append(f'<tr><td colspan="{len(headers)}" class="muted">{e(empty)}</td></tr>')
    ident = f' id="{e(id_)}"' if id_ else ""
    return (f"<table{ident}><thead><tr>" + "".join(f"<th>{e(h)}</th>" for h in headers) + "</tr></thead><tbody>"
            + "".join(body) + "</tbody></table>")


def link(href: str, text: Any) -> str:
    return f'<a href="{href}">{e(text)}</a>'


def details_text(details: dict) -> str:
    return e(json.dumps(details, sort_keys=True, ensure_ascii=False)) if details else NONE


def message(title: str, text: str, *, root: str, user: str | None = None) -> str:
    return page(title, f"<p>{e(text)}</p>", root=root, user=user)


# --------------------------------------------------------------------------- pages
def requests_page(rows: list[dict], *, root: str, user: str) -> str:
    def days(r):
        return e(r["days_left"]) if r["days_left"] is not None else NONE
    cells = [[link(f"{root}/requests/{q(r['request_id'])}", r["request_id"]), e(r["kind"]), e(r["status"]),
              e(r["received"]), e(r["due"]), e(r["extension"]), days(r), "yes" if r["overdue"] else "no",
              e(r["identity"])] for r in rows]
    open_n = sum(r["open"] for r in rows)
    overdue_n = sum(r["overdue"] for r in rows)
    body = (f"<p>{open_n} open, {len(rows) - open_n} closed; {overdue_n} overdue. Dates are UTC; "
            "the due date is the extended one once a request was extended.</p>"
            + table(["Request", "Kind", "Status", "Received", "Due", "Extension", "Days left", "Overdue",
                     "Identity"], cells, empty="No requests in the ledger yet.",
                    row_classes=["overdue" if r["overdue"] else "" for r in rows], id_="requests"))
    return page("Requests", body, root=root, user=user)


def _decision_cells(d: dict) -> list[str]:
    reason = "(the plan failed its integrity check)" if d.get("tampered") else d.get("reason")
    return [e(d.get("by")), e(d.get("at")), e(reason)]


def request_page(req: dict, events: list[dict], plans: list[dict], *, root: str, user: str,
                 certificates: dict[str, bool], package: str | None, may_download: bool) -> str:
    facts = table(["Kind", "Status", "Received", "Due", "Extension", "Days left", "Overdue", "Identity"],
                  [[e(req["kind"]), e(req["status"]), e(req["received"]), e(req["due"]), e(req["extension"]),
                    e(req["days_left"]) if req["days_left"] is not None else NONE,
                    "yes" if req["overdue"] else "no",
                    e(req["identity"]) + (f" ({e(req['identity_method'])}, {e(req['identity_at'])})"
                                          if req.get("identity_method") else "")]])
    plan_rows = []
    for p in plans:
        cert = (link(f"{root}/plans/{q(p['plan_id'])}/certificate", "certificate")
                if certificates.get(p["plan_id"]) else NONE)
        plan_rows.append([link(f"{root}/plans/{q(p['plan_id'])}", p["plan_id"]), e(p["flow"] or "erasure"),
                          e(p["state"]), e(p["action_count"]), e(p["created_at"]), e(p["expires_at"]),
                          *_decision_cells(p["decision"]), cert])
    plans_html = table(["Plan", "Flow", "State", "Actions", "Created", "Expires", "Decided by", "Decided at",
                        "Reason", "Certificate"], plan_rows, empty="No plan for this request.", id_="plans")
    if package is None:
        pkg = "<p class=\"muted\">No access package was written for this request by Airflow.</p>"
    elif may_download:
        href = f"{root}/requests/{q(req['request_id'])}/package"
        pkg = (f'<p><a id="package-download" href="{href}">Download the '
               "access package</a> (a ZIP file; it holds the subject's personal data; the download is recorded "
               "in the ledger with your name).</p>")
    else:
        pkg = ("<p>An access package exists. Your role may not download it: the roles allowed are set by "
               "<code>LETHE_PACKAGE_ROLES</code>.</p>")
    ev_rows = [[e(v["ts"]), e(v["event"]), e(v["plan_id"]), e(v["actor"]), details_text(v["details"])]
               for v in events]
    body = (facts + "<h2>Plans and decisions</h2>" + plans_html + "<h2>Access package</h2>" + pkg
            + "<h2>Timeline</h2><p class=\"muted\">The ledger's audit events: names, times, actors (people's names, "
              "keyed hashes shortened), counts. No personal values are kept there.</p>"
            + table(["Time (UTC)", "Event", "Plan", "Actor", "Details"], ev_rows, empty="No events.", id_="timeline"))
    return page(f"Request {req['request_id']}", body, root=root, user=user)


def plan_page(plan: dict, *, root: str, user: str, certificate: bool, hitl_url: str | None) -> str:
    d = plan["decision"]
    summary = ", ".join(f"{n} {act}" for act, n in plan["counts"].items()) or "nothing to change"
    facts = table(["Request", "State", "Flow", "Policy", "Created", "Expires", "What it does"],
                  [[link(f"{root}/requests/{q(plan['request_id'])}", plan["request_id"]), e(plan["state"]),
                    e(plan["flow"] or "erasure"), e(plan["policy"]), e(plan["created_at"]), e(plan["expires_at"]),
                    e(summary)]])
    decision = table(["Decided by", "Decided at", "Reason"], [_decision_cells(d)] if d.get("at") else [],
                     empty="No decision yet.", id_="decision")
    parts = [facts, "<h2>Decision</h2>", decision]
    if hitl_url:
        parts.append(f'<p><a id="hitl-link" href="{e(hitl_url)}">Decide in Airflow (the approval task)'
                     "</a></p>")
    if certificate:
        cert_href = f"{root}/plans/{q(plan['plan_id'])}/certificate"
        parts.append(f"<p>{link(cert_href, 'Certificate')}</p>")
    if plan.get("policy") in (None, "", "default policy"):
        parts.append('<p class="warn">No policy file is configured: everything found defaults to delete.</p>')
    parts.append("<h2>Per store</h2>")
    for store, rows in plan["tables"].items():
        parts.append(f"<h3>Store <code>{e(store)}</code></h3>")
        cells = [[e(r["container"]), e(r["action"]) + (" ⚠" if r["conflict"] else ""), e(r["count"]), e(r["fields"]),
                  e(r["reason"]), e(r["legal_basis"]) + (f" (until {e(r['until'])})" if r["until"] else "")]
                 for r in rows]
        parts.append(table(["Container", "Action", "Count", "Fields", "Reason", "Legal basis"], cells,
                           empty="Nothing found to change in this store.",
                           row_classes=["warn" if r["conflict"] else "" for r in rows], id_=f"store-{store}"))
    if plan["not_searched"]:
        parts.append("<h2>Not fully searched</h2>" + table(
            ["Store", "Places skipped", "Places partly read"],
            [[e(g["store"]), e(g["skipped"]), e(g["partial"])] for g in plan["not_searched"]]))
    return page(f"Plan {plan['plan_id']}", "".join(parts), root=root, user=user)


def approvals_page(rows: list[dict], links: dict[str, str], *, root: str, user: str) -> str:
    cells = [[link(f"{root}/plans/{q(p['plan_id'])}", p["plan_id"]),
              link(f"{root}/requests/{q(p['request_id'])}", p["request_id"]), e(p["kind"]), e(p["flow"] or "erasure"),
              e(p["action_count"]), e(p["created_at"]), e(p["expires_at"]), e(p["due"]),
              (f'<a class="hitl" href="{e(links[p["plan_id"]])}">approval task</a>'
               if p["plan_id"] in links else '<span class="muted">no waiting Airflow task (CLI: lethe approve)</span>')]
             for p in rows]
    body = ("<p>Plans waiting for a decision. Open the plan to read what it would do; decide in its Airflow "
            "approval task (Approve carries it out, Reject changes nothing).</p>"
            + table(["Plan", "Request", "Kind", "Flow", "Actions", "Created", "Expires", "Answer due", "Airflow"],
                    cells, empty="No plan is waiting for approval.", id_="approvals"))
    return page("Pending approvals", body, root=root, user=user)


def certificate_page(plan_id: str, request_id: str, text: str, *, root: str, user: str) -> str:
    body = (f"<p>Request {link(f'{root}/requests/{q(request_id)}', request_id)} · "
            f"{link(f'{root}/plans/{q(plan_id)}', 'plan')} · "
            f'<a href="{root}/plans/{q(plan_id)}/certificate.json">certificate as JSON</a></p>'
            f'<pre id="certificate">{e(text)}</pre>')
    return page(f"Certificate of plan {plan_id}", body, root=root, user=user)


def inventory_page(rows: list[dict], *, root: str, user: str) -> str:
    cells = [[e(r["store"]), e(r["store_kind"]), e(r["container"]), e(r["column"]), e(r["kind"]), e(r["entities"]),
              e(r["confidence"]), e(r["sample_size"]), e(r["updated_at"]), "yes" if r["personal"] else "no",
              e(r["retention_rules"])] for r in rows]
    body = ("<p>Which column holds which kind of data (from discovery sweeps and access runs): kinds, entity "
            "types and counts, never values.</p>"
            + table(["Store", "Kind", "Container", "Column", "Data kind", "Entity types", "Confidence", "Sample",
                     "Classified", "Personal", "Retention rules"], cells,
                    empty="The inventory is empty: run an access or a discovery sweep first.", id_="inventory"))
    return page("PII inventory", body, root=root, user=user)


def ropa_page(rows: list[dict], *, root: str, user: str) -> str:
    cells = [[e(r["store"]), e(r["container"]), e(r["data_categories"]), e(r["entities"]), e(r["purpose"]),
              e(r["legal_basis"]), e(r["recipients"]), e(r["retention_rules"]), e(r["retention_periods"]),
              e(r["retention_actions"]), e(r["flag"]) if r["flag"] else "covered"] for r in rows]
    body = ("<p>Draft records of processing (Art. 30): one row per table, file or mailbox holding personal data; "
            "purpose and legal basis from the stores' metadata in stores.yaml.</p>"
            + table(["Store", "Container", "Data categories", "Entity types", "Purpose", "Legal basis", "Recipients",
                     "Retention rule", "Period", "Action", "Flag"], cells, empty="No records.",
                    row_classes=["overdue" if r["flag"] else "" for r in rows], id_="ropa"))
    return page("Records of processing", body, root=root, user=user)
