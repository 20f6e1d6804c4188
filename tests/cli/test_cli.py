"""End-to-end: the `lethe` CLI on the demo stores, error handling, and no personal data in its output."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from pii.cli import main as cli
from pii.demo.world import DEMO_SUBJECT, build_demo, location_key
from tests.cli_support import assert_no_personal_data, demo_rows, run

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return build_demo(tmp_path_factory.mktemp("demo"))


def subject_args(with_ids=True):
    args = []
    for e in DEMO_SUBJECT["emails"]:
        args += ["--email", e]
    for n in DEMO_SUBJECT["names"]:
        args += ["--name", n]
    for p in DEMO_SUBJECT["phones"]:
        args += ["--phone", p]
    if with_ids:
        args += ["--id", "customer_no=C-10042"]
    return args


def test_when_access_runs_on_demo_then_manifest_holds_exactly_the_expected_findings(demo, tmp_path):
    out = tmp_path / "pkg"
    code, stdout, stderr = run("--config", demo.config_path, "access", *subject_args(), "--received", "2026-01-31",
                               "--out", out)
    assert code == 0, stderr
    manifest = json.loads((out / "manifest.json").read_text())
    got = {location_key(f["store"], f["location"]): (f["match"], f["strength"]) for f in manifest["findings"]}
    want = {e.key: (e.match, e.strength) for e in demo.expected}
    assert got == want
    for f in manifest["findings"]:
        assert set(f) >= {"store", "location", "entities", "match"}
    assert manifest["subject"]["email"] == ["alice.smith@example.org"]
    assert manifest["subject"]["phone"] == ["+442079460123"]
    assert manifest["subject"]["ids"] == {"customer_no": ["C-10042"]}
    assert manifest["request"] == {"received_at": "2026-01-31", "due_by": "2026-02-28"}
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", manifest["generated_at"])
    assert (out / "summary.html").exists()
    assert (out / "data" / "crm" / "members.csv").exists()
    assert "19 locations in 2 store(s)" in stdout
    assert_no_personal_data(stdout + stderr)


def test_when_only_a_name_is_given_then_every_finding_is_weak(demo):
    code, stdout, stderr = run("--config", demo.config_path, "locate", "--name", "Smith, Alice", "--json")
    assert code == 0, stderr
    findings = json.loads(stdout)
    assert findings and all(f["strength"] == "weak" for f in findings)
    decoys = {d.key for d in demo.decoys}
    assert not decoys & {location_key(f["store"], f["location"]) for f in findings}


@pytest.mark.parametrize("args, code, message", [
    (["--config", "{missing}", "locate", "--email", "a@b.org"], 2, "does not exist"),
    (["--config", "{demo}", "locate", "--email", "alice.smith@example"], 2, "email #1 is not a valid email"),
    (["--config", "{demo}", "locate", "--phone", "12"], 2, "phone #1 is not a valid phone"),
    (["--config", "{demo}", "locate", "--id", "customer_no"], 2, "id #1 must be KEY=VALUE"),
    (["--config", "{demo}", "access", "--out", "{tmp}/x"], 2, "at least one identifier"),
    (["--config", "{demo}", "access", "--email", "a@b.org", "--received", "31/01/2026", "--out", "{tmp}/x"],
     2, "--received must be a date"),
    (["--config", "{broken}", "locate", "--email", "a@b.org"], 4, "store 'crm' is unreachable"),
    (["--config", "{badyaml}", "locate", "--email", "a@b.org"], 2, "not valid YAML"),
    (["--config", "{badkind}", "locate", "--email", "a@b.org"], 2, "known kinds: sql, csv, ftp, gmail"),
    (["--config", "{demo}", "locate", "--email", "a@b.org", "--store", "nope"], 2, "unknown store(s) nope"),
])
def test_when_input_is_bad_then_one_line_error_and_nonzero_exit(demo, tmp_path, args, code, message):
    (tmp_path / "broken.yaml").write_text("stores:\n  crm:\n    kind: sql\n    url: sqlite:///nowhere/crm.db\n")
    (tmp_path / "badyaml.yaml").write_text("stores:\n  crm: [\n")
    (tmp_path / "badkind.yaml").write_text("stores:\n  crm:\n    kind: oracle\n")
    paths = {"missing": tmp_path / "missing.yaml", "demo": demo.config_path, "broken": tmp_path / "broken.yaml",
             "badyaml": tmp_path / "badyaml.yaml", "badkind": tmp_path / "badkind.yaml", "tmp": tmp_path}
    argv = [a.format(**paths) for a in args]
    got, stdout, stderr = run(*argv)
    assert got == code
    lines = stderr.strip().splitlines()
    assert lines[-1].startswith("lethe: ") and message in lines[-1]
    assert "alice.smith@example" not in lines[-1] and "Traceback" not in stderr


def test_when_lethe_demo_runs_as_a_program_then_it_finds_every_expected_location(tmp_path):
    exe = Path(sys.executable).with_name("lethe")
    proc = subprocess.run([str(exe), "demo", "--dir", str(tmp_path / "demo")], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "LETHE_PACKAGE_KEY": ""})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "expected locations found: 25/25; unexpected: 0" in proc.stdout
    manifest = json.loads((tmp_path / "demo" / "access_package" / "manifest.json").read_text())
    # the demo's stores.yaml names a (fictional) controller: its own answer names it too
    assert manifest["rights"]["contacts"]["controller"]["name"] == "Example Members Club Ltd"
    # the demo prints its own identifiers only in the "try:" hint; progress on stderr holds none
    assert_no_personal_data(proc.stderr)


def test_when_package_key_is_set_then_access_writes_only_encrypted_files(demo, tmp_path, monkeypatch):
    from pii.reports.package import generate_key, read_manifest

    key = generate_key()
    monkeypatch.setenv("LETHE_PACKAGE_KEY", key)
    code, stdout, stderr = run("--config", demo.config_path, "access", "--email", "alice.smith@example.org",
                               "--out", tmp_path / "enc")
    assert code == 0, stderr
    assert "encrypted access package" in stdout
    for path in (tmp_path / "enc").rglob("*"):
        if path.is_file():
            assert b"alice.smith@example.org" not in path.read_bytes()
    assert read_manifest(tmp_path / "enc", key=key)["subject"]["email"] == ["alice.smith@example.org"]
    code, _, stderr = run("decrypt-package", tmp_path / "enc", "--out", tmp_path / "plain")
    assert code == 0, stderr
    assert json.loads((tmp_path / "plain" / "manifest.json").read_text())["findings"]


@pytest.mark.parametrize("received, due", [("2026-01-31", "2026-02-28"), ("2024-01-31", "2024-02-29"),
                                           ("2026-12-15", "2027-01-15"), ("2026-03-31", "2026-04-30")])
def test_when_request_received_then_due_one_calendar_month_later(received, due):
    import datetime as dt

    from pii.ledger import due_date

    assert due_date(dt.date.fromisoformat(received)).isoformat() == due


def test_when_cli_has_a_command_then_the_readme_documents_it():
    readme = (ROOT / "README.md").read_text()
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    for name in sub.choices:
        assert f"lethe {name}" in readme, f"README does not document 'lethe {name}'"


def test_when_locate_prints_a_table_without_primary_key_then_its_values_are_withheld(demo):
    code, stdout, stderr = run("--config", demo.config_path, "locate", *subject_args())
    assert code == 0, stderr
    assert "newsletter" in stdout and "withheld" in stdout
    assert_no_personal_data(stdout + stderr)


# ---------------------------------------------------------------------------- erasure from the CLI
@pytest.fixture
def fresh_demo(tmp_path):
    return build_demo(tmp_path / "demo")


def test_when_erase_dry_run_then_plan_is_printed_and_nothing_changes(fresh_demo):
    before = demo_rows(fresh_demo)
    code, stdout, stderr = run("--config", fresh_demo.config_path, "erase", *subject_args(), "--dry-run")
    assert code == 0, stderr
    assert "dry run: nothing stored, nothing changed" in stdout
    assert "crm/members: 1 delete" in stdout and "1 review" in stdout
    assert demo_rows(fresh_demo) == before
    assert_no_personal_data(stdout + stderr)


def test_when_erase_then_approve_execute_then_subject_is_gone_and_suppressed(fresh_demo, tmp_path):
    cfg = fresh_demo.config_path
    code, stdout, stderr = run("--config", cfg, "erase", *subject_args())
    assert code == 3, stderr  # stored, awaiting approval
    plan_id = re.search(r"plan (plan-[0-9a-f]+) stored", stdout).group(1)
    code, stdout, stderr = run("--config", cfg, "approve", plan_id, "--as", "dpo", "--execute",
                               "--certificate", tmp_path / "cert.json")
    assert code == 0, stderr
    assert "state: verified" in stdout and "0 erasable locations remain" in stdout
    cert = json.loads((tmp_path / "cert.json").read_text())
    text = (tmp_path / "cert.txt").read_text()
    assert "Lethe erasure certificate" in text and "approved by dpo" in text
    assert_no_personal_data(text)
    assert cert["verified"] is True and cert["approved_by"] == "dpo" and cert["review_not_erased"] == 1
    code, stdout, _ = run("--config", cfg, "locate", *subject_args(), "--json")
    assert [f["strength"] for f in json.loads(stdout)] == ["weak"]  # only the name-only badge is left
    code, stdout, _ = run("--config", cfg, "suppression", "check", "--email", "ALICE.SMITH@example.org")
    assert code == 1 and "suppressed" in stdout
    code, stdout, _ = run("--config", cfg, "suppression", "check", "--email", "malice.smith@example.org")
    assert code == 0
    code, stdout, _ = run("--config", cfg, "access", "--email", "alice.smith@example.org", "--out", tmp_path / "p")
    assert code == 0 and "suppression list" in stdout
    assert json.loads((tmp_path / "p" / "manifest.json").read_text())["request"]["suppression"]
    code, _, _ = run("--config", cfg, "audit", "--out", tmp_path / "audit.json")
    events = json.loads((tmp_path / "audit.json").read_text())
    assert {"plan_stored", "plan_approved", "plan_verified"} <= {e["event"] for e in events}
    assert "alice" not in (tmp_path / "audit.json").read_text().lower()


def test_when_erase_yes_runs_twice_then_second_run_changes_nothing(fresh_demo):
    cfg = fresh_demo.config_path
    code, stdout, stderr = run("--config", cfg, "erase", *subject_args(), "--yes")
    assert code == 0, stderr
    assert "verified" in stdout
    first_plan = re.search(r"plan (plan-[0-9a-f]+) approved by", stdout).group(1)
    after_first = demo_rows(fresh_demo)
    code, stdout, stderr = run("--config", cfg, "erase", *subject_args(), "--yes")
    assert code == 0, stderr
    # nothing new: the first run's certificate again (as after a kill between finishing and printing),
    # no new request with an empty one
    assert f"nothing left to erase: plan {first_plan} already completed this erasure" in stdout
    assert f"certificate: plan {first_plan}" in stdout and "state: verified" in stdout
    assert "plan: 0 delete" not in stdout
    assert demo_rows(fresh_demo) == after_first
    assert_no_personal_data(stdout + stderr)


def test_when_plan_is_rejected_then_execute_refuses(fresh_demo):
    cfg = fresh_demo.config_path
    _, stdout, _ = run("--config", cfg, "erase", "--email", "alice.smith@example.org")
    plan_id = re.search(r"plan (plan-[0-9a-f]+) stored", stdout).group(1)
    code, stdout, _ = run("--config", cfg, "reject", plan_id, "--reason", "identity not verified")
    assert code == 0 and "rejected" in stdout
    code, _, stderr = run("--config", cfg, "execute", plan_id)
    assert code != 0 and "rejected" in stderr


def test_approve_reason_is_sealed_in_the_ledger_and_the_audit_keeps_its_keyed_hash(fresh_demo, tmp_path):
    cfg = fresh_demo.config_path
    _, stdout, _ = run("--config", cfg, "erase", "--email", "alice.smith@example.org", "--requester",
                       "Quentin Blakewell")
    plan_id = re.search(r"plan (plan-[0-9a-f]+) stored", stdout).group(1)
    code, stdout, stderr = run("--config", cfg, "approve", plan_id, "--as", "dpo", "--reason",
                               "identity checked by Eve Moneypennyworth")
    assert code == 0, stderr
    run("--config", cfg, "audit", "--out", tmp_path / "audit.json")
    approved = [e for e in json.loads((tmp_path / "audit.json").read_text()) if e["event"] == "plan_approved"]
    assert approved and approved[0]["details"]["reason_hash"].startswith("hmac:")
    # neither the reason nor the requester is anywhere in clear: not in the export, not in the ledger's files
    for path in [tmp_path / "audit.json", *Path(fresh_demo.root).rglob("*.db*")]:
        data = path.read_bytes()
        assert b"Moneypennyworth" not in data and b"Blakewell" not in data, path.name


def test_when_a_planned_row_drifted_then_erase_yes_again_makes_a_new_plan(fresh_demo):
    import sqlite3

    cfg = fresh_demo.config_path
    _, stdout, _ = run("--config", cfg, "erase", *subject_args())
    plan_id = re.search(r"plan (plan-[0-9a-f]+) stored", stdout).group(1)
    run("--config", cfg, "approve", plan_id, "--as", "dpo")
    con = sqlite3.connect(fresh_demo.crm_path)
    con.execute("UPDATE payments SET amount = amount + 1 WHERE reg_id IN "
                "(SELECT reg_id FROM registrations WHERE member_id = 3042)")
    con.commit()
    con.close()
    code, stdout, stderr = run("--config", cfg, "execute", plan_id)
    assert code == 7 and "drifted" in stdout
    code, stdout, stderr = run("--config", cfg, "erase", *subject_args(), "--yes")
    assert code == 0, stderr
    assert "resuming" not in stdout and "verified" in stdout


def test_when_all_four_store_kinds_are_erased_then_subject_is_gone_everywhere(tmp_path, monkeypatch):
    from pii.demo import remote as demo_remote

    ftp_port, gmail_port = demo_remote.free_port(0), demo_remote.free_port(0)
    world = build_demo(tmp_path / "demo", remote=True, ftp_port=ftp_port, gmail_port=gmail_port)
    monkeypatch.setenv(demo_remote.FTP_PASSWORD_ENV, "pw-for-this-test")
    with demo_remote.serve(world.root, ftp_port, gmail_port):
        code, stdout, stderr = run("--config", world.config_path, "erase", *subject_args(), "--yes")
        # the drop holds a PDF and four call recordings Lethe cannot read: erased where it could search, and
        # the certificate says those five places are not verified (exit 8), never "verified" for that store
        assert code == 8, stderr
        assert "state: verified" in stdout
        assert "NOT VERIFIED: 5 place(s) could not be fully searched" in stdout
        assert "partner_drop: /incoming/brochure.pdf: cannot be read as a PDF (PdfStreamError); damaged, or not a PDF" in stdout
        # the mention-only message is replaced by a checked redacted copy (no longer kept and reported)
        assert "support_mailbox/messages: 2 delete, 1 redact" in stdout
        assert "gmail cannot edit a record in place" not in stdout
        code, stdout, _ = run("--config", world.config_path, "locate", *subject_args(), "--json")
        left = {(f["store"], f["match"], f["strength"]) for f in json.loads(stdout)}
        assert left == {("exports", "identifier", "weak")}
    drop = world.root / "data" / "ftp" / "incoming"
    assert ",alice.smith@example.org" not in (drop / "leads.csv").read_text()
    assert "Ruth Okafor" in (drop / "leads.csv").read_text() and "malice.smith" in (drop / "leads.csv").read_text()
    assert "[redacted]" in (drop / "call_notes.txt").read_text()
    box = world.root / "data" / "mailbox"
    assert sorted(p.name for p in box.glob("*.trash.eml")) == ["18c2f0000000a001.trash.eml",
                                                               "18c2f0000000a002.trash.eml",
                                                               "18c2f0000000a003.trash.eml"]
    (copy,) = [p for p in box.glob("*.eml") if b"X-Lethe-Redacted-From:" in p.read_bytes()]
    assert b"[redacted]" in copy.read_bytes() and b"020 7946 0123" not in copy.read_bytes()
    assert (box / "18c2f0000000a004.eml").exists()  # a decoy's message is untouched
    assert_no_personal_data(stdout + stderr)


def test_when_a_drop_holds_an_unreadable_file_then_the_access_answer_lists_it(tmp_path, monkeypatch):
    from pii.demo import remote as demo_remote

    ftp_port, gmail_port = demo_remote.free_port(0), demo_remote.free_port(0)
    world = build_demo(tmp_path / "demo", remote=True, ftp_port=ftp_port, gmail_port=gmail_port)
    monkeypatch.setenv(demo_remote.FTP_PASSWORD_ENV, "pw-for-this-test")
    with demo_remote.serve(world.root, ftp_port, gmail_port):
        code, stdout, stderr = run("--config", world.config_path, "access", *subject_args(), "--out", tmp_path / "p")
    assert code == 8, stderr  # the answer is written, and says where it could not look
    # the demo's brochure is not a real PDF: it is read as one, found damaged, and listed with the reason
    assert "not searched: /incoming/brochure.pdf: cannot be read as a PDF (PdfStreamError); damaged, or not a PDF" in stdout
    manifest = json.loads((tmp_path / "p" / "manifest.json").read_text())
    drop_gaps = [g for g in manifest["request"]["not_scanned"] if g["store"] == "partner_drop"]
    assert drop_gaps == [
        {"store": "partner_drop", "place": p, "reason": "unsupported file type (.wav)", "state": "skipped"}
        for p in sorted(world.flows.old_recordings + world.flows.new_recordings)] + [
        {"store": "partner_drop", "place": "/incoming/brochure.pdf", "reason": "cannot be read as a PDF (PdfStreamError); damaged, or not a PDF",
         "state": "skipped"}]  # documents are judged once downloaded, after the listing's skips
    assert manifest["complete"] is False
    (drop,) = [c for c in manifest["coverage"] if c["store"] == "partner_drop"]
    assert drop["complete"] is False and len(drop["skipped"]) == 5
    assert "Places we could not fully search" in (tmp_path / "p" / "summary.html").read_text()
    assert len(list((tmp_path / "p").rglob("*.eml"))) == 2  # whole messages only where she is a party
    got = {location_key(f["store"], f["location"]) for f in manifest["findings"]}
    assert got == {e.key for e in world.expected}


def test_when_ledger_url_comes_from_the_environment_then_it_is_used(tmp_path, monkeypatch):
    from pii.core.config import parse_config
    from pii.core.errors import ConfigError

    raw = {"ledger_env": "LETHE_TEST_LEDGER_URL", "stores": {"x": {"kind": "csv", "path": "."}}}
    with pytest.raises(ConfigError, match="LETHE_TEST_LEDGER_URL"):
        parse_config(raw, tmp_path / "stores.yaml")
    monkeypatch.setenv("LETHE_TEST_LEDGER_URL", f"sqlite:///{tmp_path / 'shared.db'}")
    assert parse_config(raw, tmp_path / "stores.yaml").state_url.endswith("shared.db")


def test_when_a_request_is_registered_then_its_identifiers_are_sealed_under_the_id(demo):
    from pii.core.config import load_config
    from pii.ledger import Ledger

    code, stdout, stderr = run("--config", demo.config_path, "register", "--kind", "access",
                               "--email", "alice.smith@example.org", "--request-id", "sar-test-1")
    assert code == 0, stderr
    assert 'trigger subject_access with {"request_id": "sar-test-1"}' in stdout
    ledger = Ledger(load_config(demo.config_path).state_url)
    assert ledger.unseal_subject("sar-test-1").emails == ("alice.smith@example.org",)
    assert_no_personal_data(stdout + stderr)


def test_when_files_are_named_after_the_subject_then_erase_removes_or_renames_them_without_printing_names(tmp_path):
    folder = tmp_path / "exports"
    folder.mkdir()
    (folder / "nora.quill@x.org.csv").write_text("email,name\nnora.quill@x.org,Nora Quill\n")
    (folder / "Nora Quill.csv").write_text("email,notes\nnora.quill@x.org,x\nbob@y.org,keep me\n")
    (folder / "other.csv").write_text("email\nbob@y.org\n")
    cfg = tmp_path / "stores.yaml"
    cfg.write_text("stores:\n  exports:\n    kind: csv\n    path: exports\n")
    args = ["--config", cfg, "erase", "--email", "nora.quill@x.org", "--name", "Nora Quill", "--yes"]
    code, stdout, stderr = run(*args)
    assert code == 0, stderr
    assert "nora" not in (stdout + stderr).lower()  # progress, plan and certificate withhold the names
    names = sorted(p.name for p in folder.iterdir())
    assert names[0] == "other.csv" and names[1].startswith("renamed-") and len(names) == 2
    assert (folder / names[1]).read_text() == "email,notes\nbob@y.org,keep me\n"  # other people's row stays
    code, stdout, _ = run("--config", cfg, "locate", "--email", "nora.quill@x.org", "--json")
    assert code == 0 and json.loads(stdout) == []


def test_when_the_reader_of_the_output_goes_away_then_no_broken_pipe_traceback(tmp_path):
    """`lethe show-plan PLAN | head`: the pipe's reader is gone before Lethe writes."""
    import os
    import subprocess
    import sys as _sys

    from tests import sql_world

    crm = tmp_path / "crm.db"
    sql_world.build(f"sqlite:///{crm}").dispose()
    cfg = tmp_path / "stores.yaml"
    cfg.write_text(f"stores:\n  crm:\n    kind: sql\n    url: sqlite:///{crm}\n", encoding="utf-8")
    env = {**os.environ, "LETHE_LEDGER_KEY": "test-ledger-key-0123456789abcdef"}
    args = [_sys.executable, "-m", "pii.cli.main", "--config", str(cfg)]
    stored = subprocess.run(args + ["erase", "--email", sql_world.ALICE["emails"][0]], capture_output=True,
                            text=True, env=env, timeout=120)
    assert stored.returncode == 3, stored.stderr
    plan_id = stored.stdout.split("plan ")[-1].split()[0]
    read, write = os.pipe()
    os.close(read)  # the reader is gone: every write gets EPIPE
    try:
        proc = subprocess.run(args + ["show-plan", plan_id], stdout=write, stderr=subprocess.PIPE, text=True,
                              env=env, timeout=120)
    finally:
        os.close(write)
    assert "Traceback" not in proc.stderr and "BrokenPipeError" not in proc.stderr, proc.stderr[-800:]
    assert proc.returncode == 141
