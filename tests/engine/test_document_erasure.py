"""The erasure engine over a CSV-folder store that lists PDF, DOCX and XLSX files: the default policy leaves
PDF/DOCX mentions for review (never claimed redacted), redacts XLSX cells in place and verifies; a policy rule
deleting PDFs removes the whole file once a person includes the (weak) findings; the stored plan holds no value."""
from __future__ import annotations

import openpyxl

from pii.core.config import parse_config
from pii.core.policy import REDACTED, parse_policy
from pii.engine.erasure import ErasureEngine
from tests.connectors.test_documents import EMAIL, REPORT_PDF, SECRETS, SUBJECT, make_docx, make_xlsx

PATTERNS = ["**/*.csv", "**/*.pdf", "**/*.docx", "**/*.xlsx"]


def world(tmp_path, policy=None):
    folder = tmp_path / "exports"
    folder.mkdir()
    (folder / "people.csv").write_text(f"email,name\n{EMAIL},Alice Smith\nbob@x.org,Bob Jones\n")
    (folder / "q4.pdf").write_bytes(REPORT_PDF)
    (folder / "minutes.docx").write_bytes(make_docx())
    (folder / "leads.xlsx").write_bytes(make_xlsx())
    cfg = parse_config({"stores": {"exports": {"kind": "csv", "path": str(folder), "pattern": PATTERNS}}},
                       tmp_path / "stores.yaml")
    return ErasureEngine(cfg, policy=parse_policy(policy, "test-policy") if policy else None), folder


def test_when_the_default_policy_runs_then_xlsx_cells_are_redacted_and_pdf_docx_wait_for_review(tmp_path):
    engine, folder = world(tmp_path)
    pdf_before, docx_before = (folder / "q4.pdf").read_bytes(), (folder / "minutes.docx").read_bytes()
    plan = engine.submit(SUBJECT, "requester@example.test")
    by_action = {}
    for a in plan.actions:
        by_action.setdefault(a.action, set()).add(a.container)
    assert by_action == {"delete": {"people.csv"}, "redact": {"leads.xlsx"}}
    review = plan.data["review"]
    assert {r["container"] for r in review} == {"q4.pdf", "minutes.docx"}
    assert {"file": "q4.pdf", "page": 2} in [r["location"] for r in review]
    stored = str(engine.ledger.get_plan(plan.plan_id)["plan"]).lower()
    assert not any(s in stored for s in SECRETS) and "base64" not in stored

    engine.approve(plan.plan_id, "dpo@example.test")
    report = engine.execute(plan.plan_id, subject=SUBJECT)
    assert report.state == "verified" and report.remaining == 0
    sheet = openpyxl.load_workbook(folder / "leads.xlsx")["Leads"]
    assert (sheet["B3"].value, sheet["C3"].value, sheet["B2"].value) == (REDACTED, REDACTED, "bob@x.org")
    assert (folder / "q4.pdf").read_bytes() == pdf_before and (folder / "minutes.docx").read_bytes() == docx_before
    assert (folder / "people.csv").read_text() == "email,name\nbob@x.org,Bob Jones\n"


def test_when_a_rule_deletes_pdfs_and_a_person_includes_them_then_the_whole_file_goes(tmp_path):
    engine, folder = world(tmp_path, {"rules": [{"store": "exports", "container": "*.pdf", "action": "delete",
                                                 "reason": "scans are not kept"}]})
    plan = engine.submit(SUBJECT, "requester@example.test")
    assert [r["proposed"]["action"] if isinstance(r.get("proposed"), dict) else r.get("proposed")
            for r in plan.data["review"] if r["container"] == "q4.pdf"] == ["delete"]
    plan = engine.submit(SUBJECT, "requester@example.test", include_weak=True)
    assert {a.container for a in plan.actions if a.action == "delete"} == {"people.csv", "q4.pdf"}
    engine.approve(plan.plan_id, "dpo@example.test")
    report = engine.execute(plan.plan_id, subject=SUBJECT)
    assert not (folder / "q4.pdf").exists()
    assert (folder / "minutes.docx").exists()  # redaction of a DOCX cannot be done: never claimed
    assert report.state != "verified" and report.remaining >= 1


def test_when_the_cli_answers_an_access_request_then_the_package_holds_the_documents_and_no_output_names_her(
        tmp_path):
    import yaml

    from tests.cli_support import run

    _engine, folder = world(tmp_path)
    (folder / "broken.pdf").write_bytes(b"%PDF-1.7 damaged " + EMAIL.encode())
    cfg = tmp_path / "stores.yaml"
    cfg.write_text(yaml.safe_dump({"stores": {"exports": {"kind": "csv", "path": str(folder), "pattern": PATTERNS}}}))
    who = ["--email", EMAIL, "--name", "Alice Smith", "--phone", "+44 7700 900123"]
    code, out, err = run("--config", cfg, "-v", "access", *who, "--out", tmp_path / "pkg", "--no-redact")
    assert code == 8, err  # 8: a place could not be fully searched (the damaged PDF)
    code2, out2, err2 = run("--config", cfg, "-v", "locate", *who)
    code3, out3, err3 = run("--config", cfg, "-v", "erase", "--dry-run", *who)
    assert (code2, code3) == (8, 0), err2 + err3  # a dry run prints the plan (its coverage names the gap)
    printed = (out + err + out2 + err2 + out3 + err3).lower()
    assert not any(s in printed for s in SECRETS)
    assert "broken.pdf" in printed and "cannot be read as a pdf" in printed  # the gap is named, with why
    originals = sorted(p.name for p in (tmp_path / "pkg").rglob("original.*"))
    assert originals == ["original.docx", "original.pdf", "original.xlsx"]
    pdf = next((tmp_path / "pkg").rglob("original.pdf"))
    assert pdf.read_bytes() == REPORT_PDF and pdf.parent.name.startswith("q4")
