"""The special flows end to end on the demo stores of all four kinds (SQLite CRM, CSV exports, an FTP drop
served by pyftpdlib, a mailbox behind the Gmail-compatible endpoint), through the `lethe` CLI, with the
stores checked afterwards: the right records gone, every other record intact, holds respected."""
from __future__ import annotations

import csv
import json
import sqlite3
from pathlib import Path

import pytest

from pii.demo import flows as demo_flows

from pii.demo import remote as demo_remote
from pii.demo.world import build_demo
from tests.cli_support import assert_no_personal_data, run

RUN = ["--date", demo_flows.RUN_DATE.isoformat()]


@pytest.fixture
def world(tmp_path, monkeypatch):
    ftp_port, gmail_port = demo_remote.free_port(0), demo_remote.free_port(0)
    w = build_demo(tmp_path / "demo", remote=True, ftp_port=ftp_port, gmail_port=gmail_port)
    monkeypatch.setenv(demo_remote.FTP_PASSWORD_ENV, "pw-for-this-test")
    with demo_remote.serve(w.root, ftp_port, gmail_port):
        yield w


def rows(world, table: str) -> dict:
    con = sqlite3.connect(world.crm_path)
    con.row_factory = sqlite3.Row
    key = {"enquiries": "enquiry_id", "youth_signups": "signup_id", "marketing_contacts": "contact_id",
           "support_tickets": "ticket_id"}.get(table)
    out = {}
    for i, r in enumerate(con.execute(f'SELECT * FROM "{table}"')):
        out[r[key] if key else i] = dict(r)
    con.close()
    return out


def all_tables(world) -> dict[str, list]:
    con = sqlite3.connect(world.crm_path)
    names = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")]
    out = {t: sorted(map(repr, con.execute(f'SELECT * FROM "{t}"'))) for t in names}
    con.close()
    return out


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def drop(world) -> Path:
    return world.root / "data" / "ftp" / "incoming"


def mailbox(world) -> Path:
    return world.root / "data" / "mailbox"


def suppressed(world, email: str) -> bool:
    from pii.core.config import load_config
    from pii.ledger import Ledger

    return Ledger(load_config(world.config_path).state_url).is_suppressed("email", email)


def cfg(world) -> list[str]:
    return ["--config", str(world.config_path)]


# ---------------------------------------------------------------------------- received in error
def test_when_an_import_batch_was_received_in_error_then_only_its_rows_go_and_senders_are_suppressed(world):
    before_tables, before_files = all_tables(world), tree(world.root / "data" / "exports")
    enquiries = rows(world, "enquiries")
    code, out, err = run(*cfg(world), "received-in-error", "--store", "crm",
                         "--batch", f"import_batch={demo_flows.ERROR_BATCH}", "--yes")
    assert code == 0, err
    assert "state: verified" in out
    after = rows(world, "enquiries")
    assert sorted(set(enquiries) - set(after)) == world.flows.error_enquiry_ids
    assert all(after[i] == enquiries[i] for i in after)  # the rest untouched
    tables = all_tables(world)
    assert {t: v for t, v in tables.items() if t != "enquiries"} == {
        t: v for t, v in before_tables.items() if t != "enquiries"}
    assert tree(world.root / "data" / "exports") == before_files
    first = enquiries[world.flows.error_enquiry_ids[0]]
    assert suppressed(world, first["email"])
    assert not suppressed(world, enquiries[1]["email"])
    assert_no_personal_data(out + err)
    assert first["email"] not in out + err


def test_when_a_csv_export_was_received_in_error_then_the_file_goes_and_nothing_else(world):
    exports = world.root / "data" / "exports"
    before = tree(exports)
    rows_before = list(csv.DictReader((exports / demo_flows.ERROR_EXPORT).open(encoding="utf-8")))
    code, out, err = run(*cfg(world), "received-in-error", "--store", "exports", "--file", demo_flows.ERROR_EXPORT,
                         "--yes")
    assert code == 0, err
    after = tree(exports)
    assert demo_flows.ERROR_EXPORT not in after
    assert after == {k: v for k, v in before.items() if k != demo_flows.ERROR_EXPORT}
    assert all(suppressed(world, r["email"]) for r in rows_before)


def test_when_an_ftp_file_was_received_in_error_then_it_is_deleted_from_the_drop(world):
    name = demo_flows.ERROR_FTP_FILE.rsplit("/", 1)[1]
    before = tree(drop(world))
    code, out, err = run(*cfg(world), "received-in-error", "--store", "partner_drop",
                         "--file", demo_flows.ERROR_FTP_FILE, "--yes")
    assert code == 0, err
    after = tree(drop(world))
    assert name not in after
    assert after == {k: v for k, v in before.items() if k != name}


def test_when_a_sender_mailed_us_in_error_then_their_messages_go_and_the_others_stay(world):
    box = mailbox(world)
    others = sorted(p.name for p in box.glob("*.eml") if p.stem not in world.flows.error_message_ids)
    code, out, err = run(*cfg(world), "received-in-error", "--store", "support_mailbox",
                         "--sender", demo_flows.ERROR_SENDER, "--yes")
    assert code == 0, err
    assert sorted(p.name for p in box.glob("*.trash.eml")) == sorted(
        f"{m}.trash.eml" for m in world.flows.error_message_ids)
    assert sorted(p.name for p in box.glob("*.eml") if not p.name.endswith(".trash.eml")) == others
    assert suppressed(world, demo_flows.ERROR_SENDER)


def test_when_a_subject_is_given_then_only_their_rows_of_the_source_go(world):
    path = world.root / "data" / "exports" / demo_flows.ERROR_EXPORT
    lines = path.read_text(encoding="utf-8").splitlines()
    one = next(csv.DictReader(lines))
    code, out, err = run(*cfg(world), "received-in-error", "--store", "exports", "--file", demo_flows.ERROR_EXPORT,
                         "--email", one["email"], "--yes")
    assert code == 0, err
    assert path.read_text(encoding="utf-8").splitlines() == [lines[0]] + lines[2:]
    assert suppressed(world, one["email"])
    assert one["email"] not in out + err


def test_when_received_in_error_is_not_approved_then_nothing_changes_until_approval(world):
    before = tree(world.root / "data")
    code, out, err = run(*cfg(world), "received-in-error", "--store", "exports", "--file", demo_flows.ERROR_EXPORT)
    assert code == 3, err
    plan_id = out.split("plan ")[-1].split()[0]
    assert tree(world.root / "data") == before
    code, out, err = run(*cfg(world), "approve", plan_id, "--as", "dpo", "--execute")
    assert code == 0, err
    assert not (world.root / "data" / "exports" / demo_flows.ERROR_EXPORT).exists()
    assert "received in error certificate" in out


@pytest.mark.parametrize("args, message", [
    (["--store", "crm", "--file", "x.csv"], "--batch"),
    (["--store", "exports", "--sender", "a@example.test"], "--file"),
    (["--store", "nowhere", "--file", "x.csv"], "unknown store"),
    (["--store", "crm", "--batch", "no-equals-sign"], "COLUMN=VALUE"),
])
def test_when_the_source_is_wrong_then_one_line_error(world, args, message):
    code, out, err = run(*cfg(world), "received-in-error", *args, "--yes")
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def assert_values_absent(text: str, values) -> None:
    """None of the personal values of the records a flow touched appears in its output (the demo
    subject's own identifiers, which PERSONAL checks, are not in the flows' records)."""
    values = sorted({str(v) for v in values if v and len(str(v)) >= 4})
    assert values, "nothing to look for: the check would pass on any output"
    leaked = [i for i, v in enumerate(values) if v.lower() in text.lower()]
    assert leaked == [], f"{len(leaked)} personal value(s) of touched records in the output"


# ---------------------------------------------------------------------------- child purge
def test_when_children_are_found_by_date_of_birth_then_they_are_purged_and_text_clues_go_to_review(world, tmp_path):
    signups = rows(world, "youth_signups")
    jsonl = (drop(world) / "juniors.jsonl").read_text().splitlines()
    junior = (world.root / "data" / "exports" / "junior_club.csv").read_text().splitlines()
    review = tmp_path / "review.csv"
    code, out, err = run(*cfg(world), "child-purge", *RUN, "--yes", "--review-out", review)
    assert code == 0, err
    after = rows(world, "youth_signups")
    f = world.flows
    assert sorted(set(signups) - set(after)) == sorted(f.child_signup_ids)
    assert set(f.teen_signup_ids) <= set(after) and set(f.clue_signup_ids) <= set(after)
    con = sqlite3.connect(world.crm_path)
    left = {r[0] for r in con.execute("SELECT attendance_id FROM youth_attendance")}
    con.close()
    assert f.child_attendance_ids and not left & set(f.child_attendance_ids)  # linked rows went with them
    assert len(left) == 2 * (len(signups) - len(f.child_signup_ids))
    assert (drop(world) / "juniors.jsonl").read_text().splitlines() == [
        line for n, line in enumerate(jsonl, 1) if n not in f.child_jsonl_rows]
    assert (world.root / "data" / "exports" / "junior_club.csv").read_text().splitlines() == [
        line for n, line in enumerate(junior) if n not in f.child_csv_rows]
    assert all((mailbox(world) / f"{m}.eml").exists() for m in f.clue_message_ids)  # a clue is reviewed, not deleted
    listed = list(csv.DictReader(review.open(encoding="utf-8")))
    keys = {(r["store"], r["location"]) for r in listed}
    for i in f.clue_signup_ids:
        assert ("crm", json.dumps({"key": {"signup_id": i}, "table": "youth_signups"}, sort_keys=True)) in keys
    assert ("support_mailbox", json.dumps({"message_id": f.clue_message_ids[0]})) in keys
    ages = sorted(int(r["age"]) for r in listed)
    assert ages == [9, 11, 11, 12] and all(0.5 <= float(r["score"]) <= 1 for r in listed)
    assert suppressed(world, signups[f.child_signup_ids[0]]["email"])
    assert_no_personal_data(out + err)
    assert_values_absent(out + err, [signups[i][c] for i in f.child_signup_ids + f.clue_signup_ids
                                     for c in ("first_name", "last_name", "email", "date_of_birth")])
    assert "I am 12" not in review.read_text()


def test_when_the_threshold_is_18_then_teenagers_go_too(world):
    signups = rows(world, "youth_signups")
    code, out, err = run(*cfg(world), "child-purge", *RUN, "--threshold", "18", "--yes")
    assert code == 0, err
    gone = set(signups) - set(rows(world, "youth_signups"))
    assert gone == set(world.flows.child_signup_ids) | set(world.flows.teen_signup_ids)


def test_when_a_policy_hold_covers_a_table_then_child_purge_keeps_it_and_reports_it(world):
    policy = world.root / "policy.yaml"
    policy.write_text("holds:\n  - store: crm\n    container: youth_signups\n    reason: Safeguarding review 7\n")
    text = world.config_path.read_text().replace("stores:\n", "policy: policy.yaml\nstores:\n", 1)
    world.config_path.write_text(text)
    before = rows(world, "youth_signups")
    code, out, err = run(*cfg(world), "child-purge", *RUN, "--yes")
    assert code == 0, err
    assert rows(world, "youth_signups") == before
    assert "Safeguarding review 7" in out
    assert len(world.flows.child_jsonl_rows) and "juniors.jsonl" in out  # the other stores were purged


def test_when_child_purge_is_a_dry_run_then_nothing_changes(world):
    before = tree(world.root / "data")
    code, out, err = run(*cfg(world), "child-purge", *RUN, "--dry-run")
    assert code == 0, err
    assert tree(world.root / "data") == before
    assert f"{len(world.flows.child_signup_ids)} delete" in out.replace("crm/youth_signups: ", "")


# ---------------------------------------------------------------------------- retention
def test_when_retention_runs_then_expired_records_go_held_ones_stay_and_stats_stay_anonymous(world):
    f = world.flows
    enquiries, contacts = rows(world, "enquiries"), rows(world, "marketing_contacts")
    tickets = rows(world, "support_tickets")
    visitors = (world.root / "data" / "exports" / "visitors.csv").read_text().splitlines()
    leads = (drop(world) / "leads.csv").read_bytes()
    code, out, err = run(*cfg(world), "retention", *RUN, "--yes")
    assert code == 0, err
    # enquiries: anonymised for statistics, the rest untouched
    after = rows(world, "enquiries")
    assert set(after) == set(enquiries)
    for i, row in after.items():
        if i in f.expired_enquiry_ids:
            assert row["full_name"] is None and row["email"] is None and row["phone"] is None
            assert row["message"] is None and row["postcode"] == enquiries[i]["postcode"].split()[0]
            assert row["topic"] == enquiries[i]["topic"] and row["received_at"] == enquiries[i]["received_at"]
        else:
            assert row == enquiries[i]
    kept_text = json.dumps([after[i] for i in f.expired_enquiry_ids]).lower()
    for person in f.expired_enquiry_people:
        for value in person.values():
            assert value.lower() not in kept_text
    gone_contacts = set(f.expired_marketing_ids) | set(f.expired_withdrawn_ids)
    assert_values_absent(out + err, [v for p in f.expired_enquiry_people for v in p.values()]
                         + [contacts[i][c] for i in gone_contacts for c in ("full_name", "email")])
    # marketing contacts: expired consented ones and withdrawn ones past a month are gone
    left = rows(world, "marketing_contacts")
    assert set(contacts) - set(left) == set(f.expired_marketing_ids) | set(f.expired_withdrawn_ids)
    assert all(left[i] == contacts[i] for i in left)
    # complaints: under a legal hold, untouched and reported
    assert rows(world, "support_tickets") == tickets
    assert "Ombudsman case 2026-114" in out and f"{len(f.held_ticket_ids)} hold" in out
    assert len(f.held_ticket_ids) == 2
    # visitors (CSV), leads and recordings (FTP file times), old support mail
    assert (world.root / "data" / "exports" / "visitors.csv").read_text().splitlines() == [
        line for n, line in enumerate(visitors) if n not in f.expired_visitor_rows]
    assert not (drop(world) / "leads_2026-06.csv").exists() and (drop(world) / "leads.csv").read_bytes() == leads
    for r in f.old_recordings:
        assert not (drop(world) / r.split("/incoming/")[1]).exists()
    for r in f.new_recordings:
        assert (drop(world) / r.split("/incoming/")[1]).exists()
    for m in f.old_message_ids:
        assert (mailbox(world) / f"{m}.trash.eml").exists()
    assert (mailbox(world) / "18c2f0000000a001.eml").exists()
    assert_no_personal_data(out + err)
    # a second run finds nothing new to do: anonymised rows are not anonymised again
    code, out, err = run(*cfg(world), "retention", *RUN, "--rule", "enquiries", "--yes")
    assert code == 0, err
    assert "nothing to change" in out
    assert rows(world, "enquiries") == after


def test_when_retention_is_a_dry_run_then_it_reports_and_changes_nothing(world, tmp_path):
    before = tree(world.root / "data")
    code, out, err = run(*cfg(world), "retention", *RUN, "--dry-run", "--rule", "visitors", "--rule", "complaints")
    assert code == 0, err
    assert tree(world.root / "data") == before
    assert f"{len(world.flows.expired_visitor_rows)} delete" in out
    assert "legal hold" in out


def test_when_a_retention_rule_is_unknown_then_the_error_names_the_rules(world):
    code, out, err = run(*cfg(world), "retention", *RUN, "--rule", "nope")
    assert code == 2 and "enquiries" in err


# ---------------------------------------------------------------------------- unsubscribe
def test_when_someone_unsubscribes_then_only_marketing_lists_lose_them_and_a_suppression_entry_stays(world, tmp_path):
    email = "alice.smith@example.org"
    members = rows(world, "members")
    market = (world.root / "data" / "exports" / "marketing_list.csv").read_bytes()
    crm_export = (world.root / "data" / "exports" / "crm_export.csv").read_bytes()
    line = b"\n" + email.encode() + b";"  # (malice.smith@... is another person)
    assert line in market
    code, out, err = run(*cfg(world), "unsubscribe", "--email", email, "--yes")
    assert code == 0, err
    assert (world.root / "data" / "exports" / "marketing_list.csv").read_bytes() == b"\n".join(
        x for x in market.split(b"\n") if not x.startswith(email.encode() + b";"))
    con = sqlite3.connect(world.crm_path)
    assert con.execute("SELECT count(*) FROM newsletter WHERE lower(email)=?", (email,)).fetchone()[0] == 0
    con.close()
    assert rows(world, "members") == members  # membership is not marketing
    assert (world.root / "data" / "exports" / "crm_export.csv").read_bytes() == crm_export
    assert suppressed(world, email)
    assert_no_personal_data(out + err)
    # the mailing tool's list: hashes only unless the controller keeps addresses
    code, out, err = run(*cfg(world), "suppression", "export", "--out", tmp_path / "m.csv", "--for-mailing")
    assert code == 0, err
    text = (tmp_path / "m.csv").read_text()
    assert email not in text and "hash" in text.splitlines()[0]
    code, out, err = run(*cfg(world), "suppression", "export", "--out", tmp_path / "m2.csv", "--for-mailing",
                         "--with-addresses")
    assert code == 2 and "keep_addresses" in err


def test_when_the_controller_keeps_addresses_then_the_mailing_export_holds_them(world, tmp_path):
    email = "alice.smith@example.org"
    world.config_path.write_text(world.config_path.read_text() + "suppression:\n  keep_addresses: true\n")
    code, out, err = run(*cfg(world), "unsubscribe", "--email", email, "--yes")
    assert code == 0, err
    code, out, err = run(*cfg(world), "suppression", "export", "--out", tmp_path / "m.json", "--for-mailing",
                         "--with-addresses")
    assert code == 0, err
    data = json.loads((tmp_path / "m.json").read_text())
    assert [e["email"] for e in data["entries"] if e["email"]] == [email]
    assert "legitimate interest" in data["note"]


def test_when_a_flow_run_breaks_off_then_the_next_yes_run_resumes_its_plan(world, monkeypatch):
    from connectors.csvfiles import CsvConnector
    from pii.core.errors import StoreError

    visitors = world.root / "data" / "exports" / "visitors.csv"
    before = visitors.read_text().splitlines()
    real_apply = CsvConnector.apply

    def broken(self, actions, done, matcher):
        raise StoreError(self.name, "file visitors.csv", "disk went away")

    monkeypatch.setattr(CsvConnector, "apply", broken)
    code, out, err = run(*cfg(world), "retention", *RUN, "--rule", "visitors", "--yes")
    assert code == 5 and "disk went away" in err
    assert visitors.read_text().splitlines() == before  # nothing changed
    monkeypatch.setattr(CsvConnector, "apply", real_apply)
    code, out, err = run(*cfg(world), "retention", *RUN, "--rule", "visitors", "--yes")
    assert code == 0, err
    assert "resuming plan" in out
    assert visitors.read_text().splitlines() == [
        line for n, line in enumerate(before) if n not in world.flows.expired_visitor_rows]
    from pii.core.config import load_config
    from pii.ledger import Ledger

    ledger = Ledger(load_config(world.config_path).state_url)
    resumed = out.split("resuming plan ")[1].split()[0]
    assert ledger.get_plan(resumed)["state"] == "verified"


def test_when_a_marketing_list_mentions_the_person_in_another_row_then_only_the_mention_goes(tmp_path):
    folder = tmp_path / "lists"
    folder.mkdir()
    (folder / "contacts.csv").write_text(
        "email,name,notes\n"
        "zed.quill@example.test,Zed Quill,met at the fair\n"
        "amy.vale@example.test,Amy Vale,referred by zed.quill@example.test\n"
        "bo.rand@example.test,Bo Rand,\n", encoding="utf-8")
    (folder / "orders.csv").write_text("email,total\nzed.quill@example.test,12.00\n", encoding="utf-8")
    config = tmp_path / "stores.yaml"
    config.write_text("stores:\n  lists:\n    kind: csv\n    path: lists\n"
                      "marketing_lists:\n  lists: [contacts.csv]\n", encoding="utf-8")
    code, out, err = run("--config", config, "unsubscribe", "--email", "zed.quill@example.test", "--yes")
    assert code == 0, err
    assert (folder / "contacts.csv").read_text(encoding="utf-8") == (
        "email,name,notes\n"
        "amy.vale@example.test,Amy Vale,referred by [redacted]\n"
        "bo.rand@example.test,Bo Rand,\n")
    assert (folder / "orders.csv").read_text(encoding="utf-8") == "email,total\nzed.quill@example.test,12.00\n"


def test_when_the_policy_promises_unsubscribes_within_days_then_the_request_is_due_then(world):
    world.config_path.write_text(world.config_path.read_text() + "unsubscribe:\n  within_days: 10\n")
    code, out, err = run(*cfg(world), "unsubscribe", "--email", "alice.smith@example.org")
    assert code == 3, err
    from pii.core.config import load_config
    from pii.ledger import Ledger

    ledger = Ledger(load_config(world.config_path).state_url)
    plan_id = out.split("plan ")[-1].split()[0]
    request = ledger.get_request(ledger.get_plan(plan_id)["request_id"])
    import datetime as dt

    assert request["kind"] == "unsubscribe"
    assert dt.date.fromisoformat(request["due_at"]) - dt.date.fromisoformat(request["received_at"]) == dt.timedelta(10)


def test_when_a_flow_plan_expires_unapproved_then_the_next_run_withdraws_it_and_shreds_its_data(world):
    import datetime as dt

    import sqlalchemy as sa

    from pii.core.config import load_config
    from pii.ledger import Ledger, ledger_plans, ledger_request_secrets

    code, out, err = run(*cfg(world), "received-in-error", "--store", "exports", "--file", demo_flows.ERROR_EXPORT)
    assert code == 3, err
    plan_id = out.split("plan ")[-1].split()[0]
    ledger = Ledger(load_config(world.config_path).state_url)
    request_id = ledger.get_plan(plan_id)["request_id"]
    past = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    with ledger.engine.begin() as conn:
        conn.execute(sa.update(ledger_plans).where(ledger_plans.c.plan_id == plan_id).values(expires_at=past))
    code, out, err = run(*cfg(world), "retention", *RUN, "--rule", "visitors", "--dry-run")  # another flow
    assert code == 0, err
    code, out, err = run(*cfg(world), "unsubscribe", "--email", "nobody@example.test", "--yes")
    assert code == 0, err
    assert ledger.get_plan(plan_id)["state"] == "expired"
    assert ledger.get_request(request_id)["status"] == "withdrawn"
    with ledger.engine.connect() as conn:
        assert conn.execute(sa.select(ledger_request_secrets.c.request_id).where(
            ledger_request_secrets.c.request_id == request_id)).first() is None
    assert (world.root / "data" / "exports" / demo_flows.ERROR_EXPORT).exists()  # nothing was carried out


def test_when_a_flow_plan_report_is_written_then_cli_and_airflow_share_its_form(world, tmp_path):
    """`--report FILE` writes what the Airflow flows write to the output folder (pii/reports/plan_report.py):
    the child purge's review list with each clue's kind, age and score, never the text."""
    report = tmp_path / "plan.json"
    code, out, err = run(*cfg(world), "child-purge", *RUN, "--dry-run", "--report", report)
    assert code == 0, err
    assert f"report: {report}" in out
    data = json.loads(report.read_text(encoding="utf-8"))
    assert set(data) == {"plan_id", "request_id", "flow", "created_at", "selection", "selected", "counts",
                         "held", "review"}
    assert data["flow"] == "child_purge" and data["plan_id"] is None  # a dry run stores no plan
    assert data["counts"]["crm/youth_signups"]["delete"] == len(world.flows.child_signup_ids)
    assert data["counts"]["exports/junior_club.csv"]["delete"] == len(world.flows.child_csv_rows)
    ages = sorted(r["age"] for r in data["review"] if r["age"] is not None)
    assert ages == [9, 11, 11, 12] and "I am 12" not in report.read_text(encoding="utf-8")
    assert_no_personal_data(report.read_text(encoding="utf-8"))
