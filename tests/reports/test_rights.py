"""The answer names the rights (issue 14, item 7): the access summary and the manifest say, for each right, how to
exercise it and whom to contact (controller, DPO, supervisory authority from stores.yaml's `controller:`); a
contact that is not configured is said to be not configured, never made up."""
from __future__ import annotations

import json
import re
from datetime import datetime, timezone

import pytest

from pii.core.config import parse_config
from pii.core.errors import ConfigError
from pii.core.findings import Finding
from pii.core.subject import Subject
from pii.reports.package import KEY_ENV, read_manifest, write_access_package
from pii.reports.rights import RIGHTS, contacts, rights_manifest

WHEN = datetime(2026, 11, 21, 12, 0, 0, tzinfo=timezone.utc)
RIGHT_KEYS = ["access", "rectification", "erasure", "restriction", "objection", "portability", "withdraw_consent",
              "complaint"]
STAFF = {"access": "lethe access", "rectification": "lethe rectify", "erasure": "lethe erase",
         "restriction": "lethe restrict", "objection": "lethe object", "portability": "lethe access IDENTIFIERS --portable",
         "withdraw_consent": "lethe unsubscribe", "complaint": None}
CONTROLLER = {
    "name": "Example Members Club Ltd", "email": "privacy@example.test", "phone": "+44 20 7946 0000",
    "address": "1 Example Street, London", "url": "https://example.test/privacy",
    "dpo": {"name": "Dana Protector", "email": "dpo@example.test"},
    "supervisory_authority": {"name": "Example Supervisory Office", "url": "https://supervisor.example.test/complain"},
}


@pytest.fixture(autouse=True)
def _no_env_key(monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)


def package(tmp_path, controller, **kw):
    subject = Subject.build(emails=["alice.smith@example.org"])
    f = Finding("crm", {"table": "members", "key": {"member_id": 1}}, ["EMAIL_ADDRESS"], "identifier",
                container="members", record={"member_id": 1, "email": "alice.smith@example.org"})
    write_access_package(tmp_path / "pkg", subject, [f], generated_at=WHEN, redact=False, controller=controller, **kw)
    page = (tmp_path / "pkg" / "summary.html").read_text(encoding="utf-8")
    return page, read_manifest(tmp_path / "pkg")


def rights_section(page: str) -> str:
    start = page.index('<h2 id="rights">')
    return page[start:page.index("</section>", start)]


def test_when_controller_is_configured_then_summary_and_manifest_name_every_right_and_the_contacts(tmp_path):
    page, manifest = package(tmp_path, CONTROLLER)
    rights = manifest["rights"]
    assert [r["right"] for r in rights["rights"]] == RIGHT_KEYS
    for r in rights["rights"]:
        assert r["description"] and r["how"] and r["contact"] and r["contact_configured"] is True
        if STAFF[r["right"]] is None:
            assert r["staff_command"] is None
        else:
            assert r["staff_command"].startswith(STAFF[r["right"]])
    assert rights["configured"] is True
    assert rights["contacts"]["controller"] == {"configured": True, **{k: v for k, v in CONTROLLER.items()
                                                                       if isinstance(v, str)}}
    assert rights["contacts"]["dpo"] == {"configured": True, **CONTROLLER["dpo"]}
    assert rights["contacts"]["supervisory_authority"] == {"configured": True, **CONTROLLER["supervisory_authority"]}
    by = {r["right"]: r for r in rights["rights"]}
    assert by["complaint"]["contact"] == ["supervisory_authority"]
    assert "Example Supervisory Office" in by["complaint"]["how"]
    assert "Example Members Club Ltd" in by["erasure"]["how"] and "data protection officer" in by["erasure"]["how"]
    section = rights_section(page)
    for r in RIGHTS:  # every right in plain words, with its title
        assert r["title"] in section and r["description"] in section, r["right"]
    for text in ("Example Members Club Ltd", "mailto:privacy@example.test", "+44 20 7946 0000",
                 "1 Example Street, London", "Dana Protector", "mailto:dpo@example.test",
                 "Example Supervisory Office", 'href="https://supervisor.example.test/complain"'):
        assert text in section, text
    assert "not configured" not in section
    for word in ("rectification", "erasure", "restriction", "objection", "portability", "withdraw consent",
                 "supervisory authority"):
        assert word in section, word
    # staff commands are for the manifest's readers, not in the person's summary
    assert "lethe " not in page


def test_when_controller_is_absent_then_every_contact_says_not_configured_and_nothing_is_invented(tmp_path):
    page, manifest = package(tmp_path, None)
    rights = manifest["rights"]
    assert rights["configured"] is False
    assert rights["contacts"] == {role: {"configured": False, "note": "not configured"}
                                  for role in ("controller", "dpo", "supervisory_authority")}
    assert [r["right"] for r in rights["rights"]] == RIGHT_KEYS
    assert all(r["contact_configured"] is False for r in rights["rights"])
    for r in rights["rights"]:
        assert "not configured" in r["how"], r["right"]
    section = rights_section(page)
    assert section.count("not configured") >= 3 + len(RIGHTS)  # each contact, and each right's "how"
    assert "mailto:" not in section and "href=" not in section and "@" not in section
    assert "Information Commissioner" not in section  # no authority is named unless configured
    for r in RIGHTS:
        assert r["title"] in section


def test_when_only_the_controller_is_configured_then_dpo_and_authority_say_not_configured(tmp_path):
    page, manifest = package(tmp_path, {"name": "Example Ltd", "email": "privacy@example.test"})
    c = manifest["rights"]["contacts"]
    assert c["controller"]["configured"] and not c["dpo"]["configured"] and not c["supervisory_authority"]["configured"]
    by = {r["right"]: r for r in manifest["rights"]["rights"]}
    assert by["rectification"]["how"].startswith("Write to Example Ltd (details below)")
    assert "data protection officer" not in by["rectification"]["how"]
    assert "not configured" in by["complaint"]["how"] and by["complaint"]["contact_configured"] is False
    section = rights_section(page)
    dd = re.findall(r"<dt>(Data protection officer|Supervisory authority)</dt><dd>(.*?)</dd>", section)
    assert dd and all("not configured" in v for _, v in dd) and len(dd) == 2


def test_when_only_a_dpo_is_given_then_people_are_sent_to_the_dpo():
    found = contacts({"dpo": {"email": "dpo@example.test"}})
    assert found["controller"] == {"configured": False, "note": "not configured"}
    assert found["dpo"] == {"configured": True, "email": "dpo@example.test"}
    by = {r["right"]: r for r in rights_manifest({"dpo": {"email": "dpo@example.test"}})["rights"]}
    assert by["erasure"]["how"].startswith("Write to the data protection officer")


def test_when_portable_is_included_then_the_portability_right_points_to_the_archive(tmp_path):
    _, manifest = package(tmp_path, CONTROLLER, portable=True)
    by = {r["right"]: r for r in manifest["rights"]["rights"]}
    assert "portable.zip" in by["portability"]["how"]
    _, manifest = package(tmp_path, CONTROLLER)
    by = {r["right"]: r for r in manifest["rights"]["rights"]}
    assert "portable.zip" not in by["portability"]["how"]


def test_when_a_contact_holds_markup_then_the_summary_escapes_it(tmp_path):
    page, _ = package(tmp_path, {"name": "<script>alert(1)</script>", "url": "javascript:alert(1)"})
    section = rights_section(page)
    assert "<script>" not in section and "&lt;script&gt;" in section
    assert 'href="javascript:' not in section  # only http(s) addresses become links


def test_when_stores_yaml_names_the_controller_then_the_config_carries_it_and_a_wrong_key_is_refused(tmp_path):
    data = {"stores": {"x": {"kind": "csv", "path": "x"}}, "controller": CONTROLLER}
    config = parse_config(json.loads(json.dumps(data)), tmp_path / "stores.yaml")
    assert rights_manifest(config.raw.get("controller"))["contacts"]["dpo"]["name"] == "Dana Protector"
    with pytest.raises(ConfigError, match="unknown key 'emial'"):
        parse_config({**data, "controller": {"emial": "x@example.test"}}, tmp_path / "stores.yaml")


def test_when_the_demo_config_is_built_then_its_controller_reaches_the_rights(tmp_path):
    from pii.core.config import load_config
    from pii.demo.world import build_demo

    world = build_demo(tmp_path / "demo")
    found = rights_manifest(load_config(world.config_path).raw.get("controller"))["contacts"]
    assert all(v["configured"] for v in found.values())
