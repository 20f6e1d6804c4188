"""The plan report: one JSON document per flow plan, for the CLI's ``--report FILE`` and the Airflow flows'
``LETHE_OUTPUT_DIR/<flow>/<plan>.report.json`` alike. What was selected per store, the action counts,
what is held and why, what is left for a person's review (real locations as `lethe locate` prints them
and, for a child-age text clue, its kind, age and score); never a value from the records."""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from pii.reports import write_atomic


def plan_report(engine, plan, selection=None) -> dict:
    """The report of `plan` (made by `pii.engine.flows.submit_selection` or `preview_selection` for `selection`)."""
    threshold = (selection.description.get("threshold") if selection is not None else None)
    flow = plan.data.get("flow") or (selection.flow if selection is not None else None)
    return {"plan_id": plan.plan_id, "request_id": plan.request_id, "flow": flow,
            "created_at": plan.data.get("created_at"), "selection": plan.data.get("selection"),
            "selected": plan.data.get("selection_report"), "counts": plan.counts(),
            "held": [{"store": a.store, "container": a.container, "reason": a.reason} for a in plan.held],
            "review": review_entries(engine, plan, threshold=threshold)}


def write_plan_report(report: dict, path: Path) -> Path:
    """Write the report as JSON at `path` (`write_atomic`: never half a report)."""
    return write_atomic(Path(path), json.dumps(report, indent=2, sort_keys=True, default=str) + "\n")


def review_entries(engine, plan, *, threshold: int | None = None) -> list[dict]:
    """The plan's review list for a person: the real location (as `lethe locate` prints it) and, for a
    child-age text clue, its kind, the age it states and its score. Never the text itself."""
    from pii.core.printable import printable_finding

    real = {engine.action_id(f.store, f.location): f for f in plan.findings}
    out = []
    for a in plan.review:
        f = real.get(a.action_id)
        row = {"store": a.store, "container": a.container,
               "location": (printable_finding(f.to_manifest())["location"] if f else a.location),
               "entities": list(a.entities), "reason": a.reason, "clue": None, "age": None, "score": None}
        if f is not None and threshold and f.record:
            from pii.core import age

            clues = [c for v in f.record.values() if isinstance(v, str)
                     for c in age.find_child_clues(v, threshold, today=engine.today)]
            if clues:
                best = max(clues, key=lambda c: c.score)
                row.update(clue=best.kind, age=best.age, score=round(best.score, 2))
        out.append(row)
    return out


# --------------------------------------------------------------------------- the approval's Markdown
APPROVERS_ANYONE = "any user allowed to answer this DAG's approvals"
NOT_RECORDED = "not recorded"
_MD_SPECIAL = set("\\`*_{}[]<>()#+!|~&")


def md_text(value) -> str:
    """`value` as literal Markdown text (a table cell or running text): every character Markdown or GFM
    tables could read as syntax is backslash-escaped, line breaks become spaces; nothing turns into a link,
    emphasis, HTML or a new table column."""
    text = " ".join(str("" if value is None else value).split())
    return "".join("\\" + ch if ch in _MD_SPECIAL else ch for ch in text)


def md_code(value, *, in_table: bool = False) -> str:
    """`value` as a Markdown code span (shown literally: backslash escapes do not apply inside one, so it is
    fenced with more backticks than it holds); `in_table`: its pipes escaped, which GFM tables require even
    inside code."""
    text = " ".join(str("" if value is None else value).split())
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * (longest + 1)
    if text.startswith("`") or text.endswith("`"):
        text = f" {text} "
    if in_table:
        text = text.replace("|", "\\|")
    return f"{fence}{text}{fence}"


def _when(value) -> str:
    """An ISO timestamp as people read it ("2026-12-06 14:49 UTC"); a date stays a date."""
    text = str(value or "")
    if "T" not in text:
        return text or NOT_RECORDED
    day, _, rest = text.partition("T")
    return f"{day} {rest[:5]} UTC"


def _plan_parts(plan) -> tuple[str | None, dict]:
    data = getattr(plan, "data", plan)
    return getattr(plan, "plan_id", None), data


def _rows(data: dict, parts=("actions", "held", "review")) -> list[tuple[Any, dict]]:
    from pii.core.plans import PlannedAction

    return [(PlannedAction.from_dict(raw), raw) for part in parts for raw in data.get(part) or []]


def approval_markdown(plan, request: dict, *, plan_id: str | None = None, approvers: list[str] | None = None,
                      distinct: bool = False, console_url: str | None = None,
                      identity_note: str | None = None) -> str:
    """The approval screen's text (GitHub-flavoured Markdown, which Airflow's Human-in-the-loop page renders)
    for `plan` (a `pii.core.plans.Plan` or its stored JSON) of `request` (the ledger's request row: dates,
    ``requester`` when recorded). Pure: no store or ledger access. Holds no personal value: the stored plan
    has none (personal locators and containers named after the subject are keyed hashes, shown withheld),
    and every name from the plan or the request is escaped as literal text.

    `approvers`: the user ids who may answer (None: anyone allowed to answer the DAG's approvals);
    `distinct`: the requester may not approve; `console_url`: the plan's page in the Lethe console."""
    from pii.core.coverage import coverage_gaps
    from pii.core.plans import ACTION_ORDER, action_conflict, entity_words, shown_container, store_tables
    from pii.core.policy import DEFAULT_SOURCE

    own_id, data = _plan_parts(plan)
    plan_id = plan_id or own_id or "?"
    flow = data.get("flow")
    rows = _rows(data)
    out: list[str] = []
    title = "Erasure plan" if not flow else f"{md_text(flow.replace('_', ' ').capitalize())} plan"
    out += [f"## {title} {md_code(plan_id)}", ""]
    totals: dict[str, int] = {}
    for a, _raw in rows:
        totals[a.action] = totals.get(a.action, 0) + 1
    summary = ", ".join(f"**{totals[k]} {k}**" for k in ACTION_ORDER if totals.get(k)) or "nothing to change"
    out += [f"What this plan does: {summary}.", ""]

    requester = request.get("requester")
    due = request.get("extended_to") or request.get("due_at")
    approver_text = ", ".join(md_code(a, in_table=True) for a in approvers) if approvers else APPROVERS_ANYONE
    self_rule = ("**no**: a second person must approve (the run asks for a second person)" if distinct
                 else "yes (the run does not ask for a second person)")
    policy = data.get("policy") or DEFAULT_SOURCE
    out += ["| | |", "|---|---|",
            f"| Request | {md_code(request.get('request_id') or data.get('request_id') or '?', in_table=True)} "
            f"({md_text(request.get('kind') or 'erasure')}) |",
            f"| Requester | {md_text(requester) if requester else NOT_RECORDED} |",
            f"| Identity verification | {md_text(identity_note) if identity_note else NOT_RECORDED} |",
            f"| Received | {md_text(request.get('received_at') or NOT_RECORDED)} |",
            f"| Answer due | **{md_text(due or NOT_RECORDED)}** |",
            f"| Plan valid until | {md_text(_when(data.get('expires_at')))} |",
            f"| Policy | {md_text(policy)} |",
            f"| Who may approve | {approver_text} |",
            f"| May the requester approve? | {self_rule} |"]
    if console_url:
        out.append(f"| Console | [this plan in the Lethe console](<{console_url}>) |")
    out.append("")
    if policy == DEFAULT_SOURCE:
        out += ["> **No policy file is configured**: everything found defaults to **delete** (rows about the "
                "subject and rows linked to them; mentions in other people's text are redacted). No exemption "
                "or legal basis applies unless a policy file says so.", ""]

    conflicts = [(a, c) for a, raw in rows if (c := action_conflict(a, raw))]
    if conflicts:
        grouped: dict[tuple, int] = {}
        for a, c in conflicts:
            key = (a.store, shown_container(a.container), a.action, c)
            grouped[key] = grouped.get(key, 0) + 1
        out += ["### ⚠ Conflicts with declared retention", ""]
        out += [f"- **{md_text(s)} / {md_text(cont)}**: {n} {md_text(act)}: {md_text(c)}"
                for (s, cont, act, c), n in sorted(grouped.items())]
        out.append("")

    for store, table in store_tables(data).items():
        out += [f"### Store {md_code(store)}", ""]
        if not table:
            out += ["Nothing found to change in this store.", ""]
            continue
        out += ["| Container | Action | Count | Fields touched | Reason | Legal basis |",
                "|---|---|--:|---|---|---|"]
        for r in table:
            basis_text = md_text(r["legal_basis"]) if r["legal_basis"] else "—"
            if r["until"]:
                basis_text += f" (until {md_text(r['until'])})"
            act_text = f"**{md_text(r['action'])}** ⚠" if r["conflict"] else md_text(r["action"])
            out.append(f"| {md_text(r['container'])} | {act_text} | {r['count']} | {md_text(r['fields'])} "
                       f"| {md_text(r['reason'])} | {basis_text} |")
        out.append("")

    exempt = [(a, raw) for a, raw in rows if a.action in ("retain", "hold")]
    out += ["### Exemptions and holds", ""]
    if exempt:
        grouped = {}
        for a, _raw in exempt:
            key = (a.store, shown_container(a.container), a.action, a.reason or "", a.legal_basis or "", a.until or "")
            grouped[key] = grouped.get(key, 0) + 1
        out += ["| Store | Container | Kept as | Count | Reason | Legal basis | Until |", "|---|---|---|--:|---|---|---|"]
        out += [f"| {md_text(s)} | {md_text(c)} | {md_text(act)} | {n} | {md_text(r)} | {md_text(b) if b else '—'} "
                f"| {md_text(u) if u else '—'} |" for (s, c, act, r, b, u), n in sorted(grouped.items())]
    else:
        out.append("None: nothing in this plan is kept under an exemption or a legal hold.")
    out.append("")

    review = [a for a, _raw in rows if a.action == "review"]
    out += ["### Left for a person's review", ""]
    if review:
        grouped = {}
        for a in review:
            key = (a.store, shown_container(a.container), a.match, a.strength, entity_words(a.entities),
                   a.proposed or "")
            grouped[key] = grouped.get(key, 0) + 1
        out += ["Weak evidence (a name alone, a clue in free text) is **never erased without review**: these "
                "locations are not changed by this plan, whatever you choose"
                + (" (include them with `include_weak` after reviewing them)." if not flow else "."), "",
                "| Store | Container | Count | Clue | Evidence | Would be |", "|---|---|--:|---|---|---|"]
        out += [f"| {md_text(s)} | {md_text(c)} | {n} | {md_text(kinds)} ({md_text(match)} match) | "
                f"{md_text(strength)} | {md_text(prop) if prop else '—'} |"
                for (s, c, match, strength, kinds, prop), n in sorted(grouped.items())]
    else:
        out.append("None.")
    out.append("")

    out += ["### Not searched", ""]
    gaps = coverage_gaps(data.get("coverage"))
    not_searched = [f"- **{md_text(g['store'])}**: {md_text(g['place'])} ({md_text(g['state'])}: "
                    f"{md_text(g['reason'])})" for g in gaps]
    for store, rep in sorted((data.get("selection_report") or {}).items()):
        skipped = (rep or {}).get("skipped") or []
        if skipped:
            reasons: dict[str, int] = {}
            for item in skipped:
                why = item[1] if isinstance(item, (list, tuple)) and len(item) > 1 else str(item)
                reasons[why] = reasons.get(why, 0) + 1
            not_searched.append(f"- **{md_text(store)}**: " + "; ".join(
                f"{n} table(s) or file(s): {md_text(why)}" for why, n in sorted(reasons.items())))
        if (rep or {}).get("undated"):
            not_searched.append(f"- **{md_text(store)}**: {rep['undated']} record(s) whose date could not be read "
                                "(never selected)")
    for s in data.get("out_of_scope") or []:
        not_searched.append(f"- out of scope: **{md_text(s.get('name'))}**: "
                            f"{md_text(s.get('route') or 'no erasure route given')}")
    if gaps:
        out += ["What these places hold is **not in this plan**, and the certificate will not call those stores "
                "verified.", ""]
    out += not_searched or ["Every store in the plan was searched in full."]
    out += ["", "---", "",
            "**Approve** carries the plan out, then searches again to verify it and writes the certificate. "
            "**Reject** changes nothing. Either way the decision, who made it and the **Reason** you give go into "
            "the ledger."]
    return "\n".join(out) + "\n"
