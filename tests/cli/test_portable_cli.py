"""`lethe access ... --portable` and the subject_access DAG's `portable` param (issue 14, items 6 and 7) on the demo
stores: the archive holds only the person's own and linked records, each table's JSON validates against its
schema, the rights name the demo's controller, and no personal data reaches the command's output."""
from __future__ import annotations

import io
import json
import os
import zipfile
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from pii.demo.world import build_demo
from pii.reports.package import KEY_ENV, generate_key, read_manifest
from tests.cli_support import assert_no_personal_data, run

SUBJECT_ARGS = ["--email", "alice.smith@example.org", "--name", "Alice Smith", "--phone", "020 7946 0123",
                "--id", "customer_no=C-10042"]


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return build_demo(tmp_path_factory.mktemp("demo"))


@pytest.fixture(autouse=True)
def _no_env_key(monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)


def _archive(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return {n: zf.read(n) for n in zf.namelist()}


def _own_records(pkg: Path) -> dict[tuple[str, str], list[dict]]:
    """(store, container) -> the records of the package's strong identifier/linked findings (its data files)."""
    manifest = read_manifest(pkg)
    out: dict[tuple[str, str], list[dict]] = {}
    for store, s in manifest["stores"].items():
        for container, c in s["containers"].items():
            doc = json.loads((pkg / c["json"]).read_text(encoding="utf-8"))
            own = [r["record"] for r in doc["records"] if r["match"] in ("identifier", "linked")
                   and r["strength"] == "strong" and r["record"] is not None and "message_id" not in r["location"]]
            if own:
                out[(store, container)] = own
    return out


def test_when_access_runs_with_portable_then_the_archive_holds_exactly_her_own_records(demo, tmp_path):
    out = tmp_path / "pkg"
    code, stdout, stderr = run("--config", demo.config_path, "access", *SUBJECT_ARGS, "--portable", "--out", out)
    assert code == 0, stderr
    assert "portability export:" in stdout and "portable.zip" in stdout
    assert_no_personal_data(stdout + stderr)
    manifest = read_manifest(out)
    assert "portable.zip" in manifest["files"] and manifest["portability"]["file"] == "portable.zip"
    files = _archive((out / "portable.zip").read_bytes())
    index = json.loads(files["index.json"])
    own = _own_records(out)
    got = {}
    for t in index["tables"]:
        doc, schema = json.loads(files[t["json"]]), json.loads(files[t["schema"]])
        Draft202012Validator.check_schema(schema)
        assert not list(Draft202012Validator(schema).iter_errors(doc)), t["json"]
        got[(t["store"], t["container"])] = doc["records"]
    assert got == own  # her identifier and linked records; no one else's row that mentions her
    assert {s for s, _ in got} == {"crm", "exports"}
    text_findings = [f for f in manifest["findings"] if f["match"] == "text"]
    assert text_findings and manifest["portability"]["excluded"]["mentions_in_other_records"] == len(text_findings)
    # the rights name the demo's (fictional) controller, DPO and authority
    contacts = manifest["rights"]["contacts"]
    assert contacts["controller"]["name"] == "Example Members Club Ltd"
    assert contacts["dpo"]["configured"] and contacts["supervisory_authority"]["configured"]
    page = (out / "summary.html").read_text(encoding="utf-8")
    assert "Example Members Club Ltd" in page and "mailto:dpo@example.org" in page and "portable.zip" in page


def test_when_access_runs_without_portable_then_no_archive_is_written(demo, tmp_path):
    code, stdout, stderr = run("--config", demo.config_path, "access", "--email", "alice.smith@example.org",
                               "--out", tmp_path / "pkg")
    assert code == 0, stderr
    assert not (tmp_path / "pkg" / "portable.zip").exists() and "portability export" not in stdout
    manifest = read_manifest(tmp_path / "pkg")
    assert "portability" not in manifest and len(manifest["rights"]["rights"]) == 8


def test_when_a_package_key_is_set_then_the_portable_archive_is_encrypted(demo, tmp_path, monkeypatch):
    from cryptography.fernet import Fernet

    key = generate_key()
    monkeypatch.setenv(KEY_ENV, key)
    code, stdout, stderr = run("--config", demo.config_path, "access", "--email", "alice.smith@example.org",
                               "--portable", "--out", tmp_path / "enc")
    assert code == 0, stderr
    assert "portable.zip.enc" in stdout
    assert not (tmp_path / "enc" / "portable.zip").exists()
    enc = (tmp_path / "enc" / "portable.zip.enc").read_bytes()
    assert b"alice.smith@example.org" not in enc
    files = _archive(Fernet(key.encode()).decrypt(enc))
    assert any(b"alice.smith@example.org" in v for v in files.values())


def test_when_the_access_form_is_built_then_portable_is_an_optional_boolean_defaulting_to_false():
    from plugins.params import subject_params

    access, erasure = subject_params(erasure=False), subject_params(erasure=True)
    assert access["portable"].value is False
    assert access["portable"].schema["type"] == ["null", "boolean"]
    assert "portable" not in erasure


@pytest.mark.usefixtures("airflow_db")
def test_when_subject_access_runs_with_portable_then_the_package_holds_the_archive(tmp_path, monkeypatch):
    monkeypatch.setenv("LETHE_TASK_RETRIES", "0")
    world = build_demo(tmp_path / "demo")
    monkeypatch.setenv("LETHE_CONFIG", str(world.config_path))
    monkeypatch.setenv("LETHE_OUTPUT_DIR", str(tmp_path / "out"))
    monkeypatch.setenv("LETHE_WORK_DIR", str(tmp_path / "work"))
    from tests.dag_support import flow, states, xcoms

    dr = flow("subject_access").test(run_conf={"emails": ["alice.smith@example.org"], "portable": True})
    assert dr.state == "success", states(dr)
    package = xcoms("subject_access", dr.run_id)[("assemble", "return_value", -1)]
    assert package["portable"] is True
    pkg = Path(package["package_dir"])
    files = _archive((pkg / "portable.zip").read_bytes())
    assert json.loads(files["index.json"])["tables"]
    manifest = read_manifest(pkg)
    assert manifest["portability"]["records"] > 0
    assert manifest["rights"]["contacts"]["controller"]["name"] == "Example Members Club Ltd"
    assert "alice" not in json.dumps(package).lower()  # the XCom: paths and counts only
