"""The approval screen's Markdown (`pii.reports.plan_report.approval_markdown`): what a privacy officer reads in
Airflow's Human-in-the-loop page before choosing Approve or Reject. A table per store, exemptions and holds,
review items with their clue kinds, what was not searched, the people and dates around the decision; names
from the plan escaped so that none can break a table or become a link; no personal values."""
from __future__ import annotations

import re

import pytest

from pii.reports.plan_report import APPROVERS_ANYONE, approval_markdown, md_text

REQUEST = {"request_id": "req-1", "kind": "erasure", "received_at": "2026-11-20", "due_at": "2026-12-20",
           "requester": "support desk"}


def _action(store, container, action, *, match="identifier", strength="strong", entities=("EMAIL_ADDRESS",),
            reason="default policy: a row about the subject is deleted", n=0, **extra):
    location = {"table": container, "key": {"id": n}} if store == "crm" else {"file": container, "row": n}
    return {"action_id": f"act-{store}-{container}-{action}-{n}", "store": store, "container": container,
            "location": location, "match": match, "strength": strength, "entities": list(entities),
            "fingerprint": "f" * 64, "action": action, "reason": reason, **extra}


def _plan(**extra) -> dict:
    return {
        "version": 1, "created_at": "2026-11-21T10:00:00Z", "expires_at": "2026-11-24T10:00:00+00:00",
        "policy": "default policy", "stores": ["crm", "exports"], "include_weak": False,
        "actions": [_action("crm", "members", "delete", n=1),
                    *[_action("crm", "payments", "delete", match="linked", entities=(), n=i,
                              reason="default policy: a row linked to the subject is deleted") for i in range(3)],
                    _action("crm", "notes", "redact", match="text", entities=("PHONE_NUMBER",), n=7,
                            reason="default policy: the subject's mentions in other free text are redacted"),
                    _action("exports", "crm_export.csv", "delete", n=151)],
        "review": [_action("exports", "event_badges.csv", "review", strength="weak", entities=("PERSON",), n=33,
                           reason="weak evidence only", proposed="delete")],
        "held": [], "out_of_scope": [],
        "coverage": [{"store": "crm", "kind": "sql", "complete": True, "searched": 13, "skipped": [],
                      "partial": [], "excluded": []},
                     {"store": "exports", "kind": "csv", "complete": True, "searched": 7, "skipped": [],
                      "partial": [], "excluded": []}],
        **extra}


def cells(row: str) -> list[str]:
    """The cells of a GFM table row, split on the pipes Markdown reads as column separators (unescaped)."""
    inner = row.strip()
    assert inner.startswith("|") and inner.endswith("|") and not inner.endswith("\\|"), row
    return [c.strip() for c in re.split(r"(?<!\\)\|", inner[1:-1])]


def table_after(md: str, heading: str) -> list[list[str]]:
    """The data rows of the first table after `heading`, as cells."""
    lines = md.splitlines()
    start = lines.index(heading)
    rows, seen = [], False
    for line in lines[start + 1:]:
        if line.startswith("|"):
            seen = True
            rows.append(line)
        elif seen:
            break
        elif line.startswith("#"):
            break
    assert len(rows) >= 2 and set(rows[1]) <= set("|-: "), rows  # a header and its delimiter row
    width = len(cells(rows[0]))
    out = [cells(r) for r in rows[2:]]
    assert all(len(r) == width for r in out), out  # no name added or removed a column
    return out


# ---------------------------------------------------------------------------- the tables
def test_when_a_plan_is_rendered_then_each_store_has_its_own_table_with_counts_fields_reasons_and_basis():
    md = approval_markdown(_plan(), REQUEST, plan_id="plan-1")
    assert md.startswith("## Erasure plan `plan-1`\n")
    crm = table_after(md, "### Store `crm`")
    assert ["members", "delete", "1", "whole record", "default policy: a row about the subject is deleted", "—"] in crm
    assert ["payments", "delete", "3", "whole record", "default policy: a row linked to the subject is deleted",
            "—"] in crm
    assert ["notes", "redact", "1", "the subject's phone inside the text",
            "default policy: the subject's mentions in other free text are redacted", "—"] in crm
    exports = table_after(md, "### Store `exports`")
    assert [r[0] for r in exports] == ["crm\\_export.csv", "event\\_badges.csv"]
    assert md.count("| Container | Action | Count | Fields touched | Reason | Legal basis |") == 2
    assert "What this plan does: **5 delete**, **1 redact**, **1 review**." in md  # 6 actions + 1 review


def test_when_a_policy_retains_or_anonymises_then_fields_legal_basis_and_until_are_shown():
    plan = _plan(policy="/etc/lethe/policy.yaml")
    plan["actions"] += [
        _action("crm", "invoices", "retain", n=2, reason="Invoices kept six years for tax",
                legal_basis="Legal obligation, Art. 6(1)(c)", until="2032-04-05", fields={"notes": {"operator": "redact"}}),
        _action("crm", "newsletter", "anonymise", n=3, reason="kept for statistics",
                fields={"email": {"operator": "hash"}, "name": {"operator": "replace", "new_value": "<erased>"}})]
    plan["held"] = [_action("crm", "disputes", "hold", n=4, reason="legal hold: Litigation 2026-17", until="2027-06-30")]
    md = approval_markdown(plan, REQUEST, plan_id="plan-2")
    crm = table_after(md, "### Store `crm`")
    assert ["invoices", "retain", "1", "kept; anonymised: notes \\(redact\\)", "Invoices kept six years for tax",
            "Legal obligation, Art. 6\\(1\\)\\(c\\) (until 2032-04-05)"] in crm
    assert ["newsletter", "anonymise", "1", "email \\(hash\\), name \\(replace\\)", "kept for statistics", "—"] in crm
    assert ["disputes", "hold", "1", "none \\(held\\)", "legal hold: Litigation 2026-17", "— (until 2027-06-30)"] in crm
    kept = table_after(md, "### Exemptions and holds")
    assert ["crm", "invoices", "retain", "1", "Invoices kept six years for tax",
            "Legal obligation, Art. 6\\(1\\)\\(c\\)", "2032-04-05"] in kept
    assert ["crm", "disputes", "hold", "1", "legal hold: Litigation 2026-17", "—", "2027-06-30"] in kept
    assert "No policy file is configured" not in md and "| Policy | /etc/lethe/policy.yaml |" in md
    assert "\\<erased\\>" not in md and "<erased>" not in md  # operator parameters are not shown


def test_when_no_policy_file_is_configured_then_the_screen_says_everything_defaults_to_delete():
    md = approval_markdown(_plan(), REQUEST, plan_id="p")
    assert "> **No policy file is configured**: everything found defaults to **delete**" in md
    assert "Exemptions and holds\n\nNone: nothing in this plan is kept" in md


def test_when_review_items_remain_then_their_clue_kinds_are_listed_and_never_erased_without_review():
    plan = _plan(flow="child_purge")
    plan["review"].append(_action("crm", "youth_signups", "review", match="text", entities=("CHILD_AGE",), n=3,
                                  reason="a clue in free text only", proposed="delete"))
    md = approval_markdown(plan, REQUEST, plan_id="p")
    assert md.startswith("## Child purge plan `p`")
    review = table_after(md, "### Left for a person's review")
    assert ["exports", "event\\_badges.csv", "1", "name (identifier match)", "weak", "delete"] in review
    assert ["crm", "youth\\_signups", "1", "child's age in text (text match)", "strong", "delete"] in review
    assert "**never erased without review**" in md


def test_when_places_were_not_searched_then_they_are_listed_with_their_reasons():
    plan = _plan(out_of_scope=[{"name": "nightly-backups", "route": "expire after 35 days"}])
    plan["coverage"][0]["skipped"] = [{"place": "blobs.data", "reason": "binary column"}]
    plan["coverage"][1]["partial"] = [{"place": "broken.csv", "reason": "unterminated quote from line 12"}]
    md = approval_markdown(plan, REQUEST, plan_id="p")
    section = md.split("### Not searched", 1)[1]
    assert "- **crm**: blobs.data (skipped: binary column)" in section
    assert "- **exports**: broken.csv (partial: unterminated quote from line 12)" in section
    assert "- out of scope: **nightly-backups**: expire after 35 days" in section
    assert "not in this plan" in section
    clean = approval_markdown(_plan(), REQUEST, plan_id="p")
    assert "Every store in the plan was searched in full." in clean


def test_when_an_action_conflicts_with_declared_retention_then_it_is_flagged():
    plan = _plan()
    for a in plan["actions"]:
        if a["container"] == "payments":
            a["conflict"] = "stores.yaml declares payments kept six years (Legal obligation)"
    md = approval_markdown(plan, REQUEST, plan_id="p")
    assert "### ⚠ Conflicts with declared retention" in md
    assert "- **crm / payments**: 3 delete: stores.yaml declares payments kept six years \\(Legal obligation\\)" in md
    assert ["payments", "**delete** ⚠", "3"] in [r[:3] for r in table_after(md, "### Store `crm`")]
    assert "Conflicts with declared retention" not in approval_markdown(_plan(), REQUEST, plan_id="p")


# ---------------------------------------------------------------------------- people, dates, links
def test_when_the_request_and_run_are_known_then_requester_dates_approvers_and_link_are_shown():
    md = approval_markdown(_plan(), {**REQUEST, "extended_to": "2027-02-20"}, plan_id="plan-1",
                           approvers=["dpo", "privacy-lead"], distinct=True,
                           console_url="https://airflow.example/sub/lethe/plans/plan-1", identity_note="passport seen")
    assert "| Requester | support desk |" in md
    assert "| Identity verification | passport seen |" in md
    assert "| Received | 2026-11-20 |" in md and "| Answer due | **2027-02-20** |" in md
    assert "| Plan valid until | 2026-11-24 10:00 UTC |" in md
    assert "| Who may approve | `dpo`, `privacy-lead` |" in md
    assert "| May the requester approve? | **no**: a second person must approve" in md
    assert "[this plan in the Lethe console](<https://airflow.example/sub/lethe/plans/plan-1>)" in md


def test_when_nothing_is_recorded_then_the_screen_says_not_recorded_and_who_may_approve():
    md = approval_markdown(_plan(), {**REQUEST, "requester": None}, plan_id="p")
    assert "| Requester | not recorded |" in md and "| Identity verification | not recorded |" in md
    assert f"| Who may approve | {APPROVERS_ANYONE} |" in md
    assert "| May the requester approve? | yes" in md
    assert "Console" not in md


# ---------------------------------------------------------------------------- escaping
@pytest.mark.parametrize("name", ["a|b", "x*y*_z_", "[click](http://evil.example)", "<img src=x>", "`code`",
                                  "line\nbreak | two", "&amp; #1 ~~gone~~ !x", "back\\slash|"])
def test_when_a_container_name_holds_markdown_syntax_then_it_is_escaped_and_keeps_the_table_whole(name):
    plan = _plan()
    plan["actions"].append(_action("crm", name, "delete", n=99))
    md = approval_markdown(plan, REQUEST, plan_id="p")
    rows = table_after(md, "### Store `crm`")
    (row,) = [r for r in rows if r[0] == md_text(name)]
    assert row[1:3] == ["delete", "1"]
    unescaped = re.sub(r"\\(.)", "", md_text(name))  # what is left once escapes are removed
    assert not set(unescaped) & set("|*_[]()<>`&#~!\\\n")
    assert not re.search(r"(?<!\\)\]\(http|(?<!\\)<img", md)  # no live link, no HTML tag


def test_when_text_is_escaped_then_every_markdown_character_is_literal():
    assert md_text("a|b*c_d[e](f)<g>`h`#i+j!k~l&m\\n") == \
        "a\\|b\\*c\\_d\\[e\\]\\(f\\)\\<g\\>\\`h\\`\\#i\\+j\\!k\\~l\\&m\\\\n"
    assert md_text("two\nlines\r\n  and   spaces") == "two lines and spaces"
    assert md_text(None) == ""


# ---------------------------------------------------------------------------- no personal values
def test_when_a_real_demo_plan_is_rendered_then_no_personal_value_appears(tmp_path):
    from pii.core.config import load_config
    from pii.demo.world import build_demo
    from pii.engine.erasure import ErasureEngine

    world = build_demo(tmp_path / "demo")
    engine = ErasureEngine(load_config(world.config_path))
    plan = engine.submit(world.build_subject(), "support desk")
    row = engine.ledger.get_plan(plan.plan_id)
    request = engine.ledger.get_request(row["request_id"])
    md = approval_markdown({**row["plan"], "expires_at": row["expires_at"]}, request, plan_id=plan.plan_id)
    assert "### Store `crm`" in md and "### Store `exports`" in md
    assert table_after(md, "### Store `crm`")  # the stored plan, rendered
    low = md.lower()
    subject = world.build_subject()
    needles = ["alice", "smith", "79460123", "7946 0123", "+442079460123", "example.org",
               *subject.emails, *subject.phones, *subject.names]
    leaked = [n for n in needles if n and n in low]
    assert leaked == [], leaked
    assert "hmac:" not in md  # keyed hashes of personal locators are not shown either


def test_when_a_store_or_id_holds_markdown_syntax_then_its_code_span_shows_it_literally():
    """Backslash escapes do not apply inside code spans: store names, plan and request ids and approvers are
    fenced instead (a pipe escaped where GFM tables need it), so `support_mailbox` is not shown as
    `support\\_mailbox`."""
    from pii.reports.plan_report import md_code

    plan = _plan(stores=["support_mailbox", "odd`store"])
    plan["actions"] = [_action("support_mailbox", "inbox", "delete", n=1), _action("odd`store", "t", "delete", n=2)]
    md = approval_markdown(plan, {**REQUEST, "request_id": "req_1"}, plan_id="plan_x", approvers=["a|b"])
    assert md.startswith("## Erasure plan `plan_x`\n")
    assert "### Store `support_mailbox`\n" in md and "### Store ``odd`store``\n" in md
    assert table_after(md, "### Store `support_mailbox`") == [
        ["inbox", "delete", "1", "whole record", "default policy: a row about the subject is deleted", "—"]]
    assert "| Request | `req_1` (erasure) |" in md and "| Who may approve | `a\\|b` |" in md
    assert md_code("`x") == "`` `x ``" and md_code("a\nb") == "`a b`"
