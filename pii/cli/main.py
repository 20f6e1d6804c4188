"""`lethe`: the command line. A thin layer over the library: every rule lives in pii/ and connectors/.

Nothing personal is printed: counts and locations only. Errors are one line on stderr and a non-zero
exit status (2 config or identifier, 4 unreachable store, 5 store operation failed, 6 package, 8 done but
some places could not be fully searched: listed on standard output and in the manifest).
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

from pii.cli.common import (
    EXIT_AWAITING_APPROVAL, EXIT_INCOMPLETE, EXIT_NOT_FULLY_SEARCHED, config_from, engine_for, print_report,
    progress_for, received_from, subject_from,
)
from pii.core.errors import ConfigError, LetheError

log = logging.getLogger("lethe")


def _add_identifier_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("subject identifiers (at least one; each may repeat)")
    g.add_argument("--email", action="append", default=[], metavar="E", help="email address")
    g.add_argument("--name", action="append", default=[], metavar="N", help='personal name ("First Last" or "Last, First")')
    g.add_argument("--phone", action="append", default=[], metavar="P", help="phone number, any format")
    g.add_argument("--id", action="append", default=[], metavar="KEY=VALUE",
                   help="an identifier held in columns or fields named KEY, e.g. customer_no=123")
    p.add_argument("--received", metavar="DATE", help="date the request was received (YYYY-MM-DD); sets the due date")
    p.add_argument("--region", metavar="CC", help="default region for national phone numbers (default from config, GB)")
    p.add_argument("--store", action="append", default=[], metavar="NAME", help="only these stores (repeatable)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lethe",
        description="Find, export and erase one person's data across SQL, CSV, FTP and Gmail stores.",
    )
    parser.add_argument("--config", metavar="PATH",
                        help="stores.yaml (default: $LETHE_CONFIG, else ./stores.yaml)")
    parser.add_argument("-v", "--verbose", action="store_true", help="more progress detail (still no personal data)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of unexpected errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("access", help="find the subject's data and write a subject-access package")
    _add_identifier_args(p)
    p.add_argument("--out", required=True, metavar="DIR", help="folder for the package (created or replaced)")
    p.add_argument("--no-redact", action="store_true",
                   help="do not redact other people's identifiers in text excerpts (faster; not for sending)")
    p.add_argument("--portable", action="store_true",
                   help="add portable.zip: the data the person provided as JSON and CSV with a JSON Schema per "
                        "table or file (GDPR Art. 20)")
    p.set_defaults(func=cmd_access)

    p = sub.add_parser("locate", help="list where the subject's data is (counts and locations, no values)")
    _add_identifier_args(p)
    p.add_argument("--json", action="store_true", help="print findings as JSON")
    p.set_defaults(func=cmd_locate)

    p = sub.add_parser("erase", help="plan an erasure; --dry-run only prints it, --yes also approves and runs it")
    _add_identifier_args(p)
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--dry-run", action="store_true", help="print the plan; store and change nothing")
    mode.add_argument("--yes", action="store_true",
                      help="approve as the OS user and carry the plan out now (resumes an interrupted run)")
    p.add_argument("--include-weak", action="store_true",
                   help="also erase weak (name-only) findings: only after a person reviewed them")
    p.add_argument("--requester", metavar="WHO", help="who asked (default: the OS user)")
    p.add_argument("--certificate", metavar="FILE", help="also write the certificate as JSON to FILE")
    p.set_defaults(func=cmd_erase)

    p = sub.add_parser("approve", help="approve a stored erasure plan (a second person)")
    p.add_argument("plan_id", metavar="PLAN_ID")
    p.add_argument("--as", dest="approver", metavar="WHO", help="approver's name (default: the OS user)")
    p.add_argument("--require-distinct", action="store_true", help="refuse if the approver is the requester")
    p.add_argument("--reason", help="why (sealed in the ledger like identifiers; the audit trail keeps a keyed hash)")
    p.add_argument("--execute", action="store_true", help="carry the plan out right after approving it")
    p.add_argument("--certificate", metavar="FILE", help="with --execute: write the certificate JSON to FILE")
    p.set_defaults(func=cmd_approve)

    p = sub.add_parser("reject", help="reject a stored erasure plan: nothing in it will be carried out")
    p.add_argument("plan_id", metavar="PLAN_ID")
    p.add_argument("--reason", required=True,
                   help="why (sealed in the ledger like identifiers; the audit trail keeps a keyed hash)")
    p.add_argument("--as", dest="approver", metavar="WHO", help="who rejects (default: the OS user)")
    p.set_defaults(func=cmd_reject)

    p = sub.add_parser("execute", help="carry out (or resume) an approved erasure plan by its id")
    p.add_argument("plan_id", metavar="PLAN_ID")
    p.add_argument("--certificate", metavar="FILE", help="write the certificate JSON to FILE")
    p.set_defaults(func=cmd_execute)

    p = sub.add_parser("certificate", help="re-issue a finished plan's certificate (from the ledger's record)")
    p.add_argument("plan_id", metavar="PLAN_ID")
    p.add_argument("--out", metavar="FILE", help="also write it to FILE (JSON) and FILE's .txt (text)")
    p.set_defaults(func=cmd_certificate)

    p = sub.add_parser("show-plan", help="print a stored plan, its state and its certificate so far")
    p.add_argument("plan_id", metavar="PLAN_ID")
    p.set_defaults(func=cmd_show_plan)

    p = sub.add_parser("suppression", help="check or export the suppression list (keyed hashes)")
    ssub = p.add_subparsers(dest="suppression_command", metavar="ACTION", required=True)
    sp = ssub.add_parser("check", help="exit 1 when any given identifier is suppressed (for import pipelines)")
    sp.add_argument("--email", action="append", default=[])
    sp.add_argument("--phone", action="append", default=[])
    sp.add_argument("--id", action="append", default=[], metavar="KEY=VALUE")
    sp.add_argument("--region", metavar="CC")
    sp.set_defaults(func=cmd_suppression_check)
    sp = ssub.add_parser("export", help="write the list (kind, keyed hash, reason, date) as CSV or JSON")
    sp.add_argument("--out", required=True, metavar="FILE")
    sp.add_argument("--for-mailing", action="store_true",
                    help="e-mail entries only, as a mailing tool's suppression list (hash column + recipe)")
    sp.add_argument("--with-addresses", action="store_true",
                    help="with --for-mailing: add the addresses the controller chose to keep "
                         "(suppression: keep_addresses: true); refused when none are kept")
    sp.set_defaults(func=cmd_suppression_export)

    p = sub.add_parser("register", help="register a request by id for Airflow (identifiers stay out of Airflow)")
    _add_identifier_args(p)
    p.add_argument("--kind", choices=["access", "erasure", "restriction"], required=True,
                   help="the DAG that will run it: subject_access, subject_erasure or subject_restriction")
    p.add_argument("--request-id", metavar="ID", help="your own opaque id (default: generated)")
    p.add_argument("--requester", metavar="WHO", help="who asked (default: the OS user)")
    p.set_defaults(func=cmd_register)

    p = sub.add_parser("hold", help="place or release a legal hold on a subject: no erasure runs while held")
    hsub = p.add_subparsers(dest="hold_command", metavar="ACTION", required=True)
    hp = hsub.add_parser("place", help="hold the subject's data (give a reason)")
    _add_identifier_args(hp)
    hp.add_argument("--reason", required=True)
    hp.set_defaults(func=cmd_hold_place)
    hp = hsub.add_parser("release", help="lift the hold")
    _add_identifier_args(hp)
    hp.set_defaults(func=cmd_hold_release)

    from pii.cli import flows as cli_flows, rectify as cli_rectify, requests as cli_requests
    from pii.cli import accounts as cli_accounts, restriction as cli_restriction

    cli_flows.add_parsers(sub, _add_identifier_args)
    cli_rectify.add_parsers(sub, _add_identifier_args)
    cli_restriction.add_parsers(sub, _add_identifier_args)
    cli_requests.add_parsers(sub, _add_identifier_args)
    cli_accounts.add_parsers(sub, _add_identifier_args)

    p = sub.add_parser("audit", help="export the ledger's append-only audit events (no personal values), "
                                     "or verify their keyed hash chain")
    p.add_argument("--out", metavar="FILE", help="FILE.csv or FILE.json")
    p.add_argument("--plan", metavar="PLAN_ID")
    p.add_argument("--verify", action="store_true",
                   help="walk the keyed hash chain over every event: exit 0 intact, 1 naming the first broken event")
    p.set_defaults(func=cmd_audit)

    p = sub.add_parser("demo", help="generate the embedded demo stores and run an access request on them")
    p.add_argument("--dir", default="demo", metavar="DIR", help="where to build the demo (default ./demo)")
    p.add_argument("--local-only", action="store_true",
                   help="only the SQLite CRM and CSV exports (no FTP drop, no mailbox servers)")
    p.add_argument("--serve", action="store_true",
                   help="after the demo run, keep the demo FTP and mail servers running (Ctrl-C stops them) "
                        "so other commands and Airflow can use the demo stores")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("keygen", help="print a new key for encrypting access packages (LETHE_PACKAGE_KEY)")
    p.set_defaults(func=cmd_keygen)

    p = sub.add_parser("decrypt-package", help="decrypt an encrypted access package")
    p.add_argument("dir", metavar="DIR")
    p.add_argument("--out", required=True, metavar="DIR")
    p.set_defaults(func=cmd_decrypt)

    p = sub.add_parser("sweep", help="discovery sweep: sample the stores and refresh the PII inventory "
                                     "(only tables and files changed since the last sweep)")
    p.add_argument("--store", action="append", default=[], metavar="NAME", help="only these stores (repeatable)")
    p.add_argument("--full", action="store_true", help="re-sample every table and file, changed or not")
    p.add_argument("--sample-rows", type=int, default=None, metavar="N",
                   help="rows (records, messages) sampled per table or file (default: the store's sample_size, "
                        "detection: sample_rows, else the connector's default)")
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser("inventory", help="print the cached column inventory (what kind of data each column holds), "
                                         "or export it, the HTML data map and the records of processing")
    p.add_argument("--store", default=None)
    p.add_argument("--export", metavar="FILE",
                   help="write the inventory (one row per column) as FILE.csv or FILE.json")
    p.add_argument("--data-map", metavar="FILE.html", help="write the data map and records of processing as HTML")
    p.add_argument("--ropa", metavar="FILE", help="write the records of processing as FILE.csv or FILE.json")
    p.set_defaults(func=cmd_inventory)
    return parser


# ---------------------------------------------------------------------------- helpers
def _locate(args, config, subject):
    from pii.engine.discover import locate_subject

    result = locate_subject(config, subject, stores=args.store or None, progress=progress_for(args))
    log.info("column inventory: %d tables/files from cache, %d classified now (state db %s)",
             result.inventory_hits, result.inventory_misses, _safe_state_url(config.state_url))
    return result


def _safe_state_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def _summary_line(findings) -> str:
    from pii.core.findings import summarise

    counts: dict[str, int] = {}
    for per in summarise(findings).values():
        for k, v in per.items():
            counts[k] = counts.get(k, 0) + v
    stores = len({f.store for f in findings})
    parts = ", ".join(f"{counts.get(k, 0)} {k}" for k in ("identifier", "text", "linked"))
    weak = counts.get("weak", 0)
    return f"{len(findings)} locations in {stores} store(s) ({parts}; {weak} weak, name-only, for review)"


# ---------------------------------------------------------------------------- commands
def cmd_access(args) -> int:
    from pii.ledger import due_date
    from pii.reports.package import write_access_package

    config = config_from(args)
    subject = subject_from(args, config)
    received = received_from(args)
    started = time.perf_counter()
    result = _locate(args, config, subject)
    findings = result.findings
    metadata = {name: s.metadata for name, s in config.stores.items()}
    request = {"received_at": received.isoformat(), "due_by": due_date(received).isoformat()} if received else {}
    suppression = _ledger(config).suppression_entries(subject)
    if suppression:
        request["suppression"] = suppression
        print(f"note: {len(suppression)} of the subject's identifiers are on the suppression list "
              f"(reason: {', '.join(sorted({s['reason'] for s in suppression}))})")
    request = request or None
    not_scanned = result.not_scanned()
    if not_scanned:
        request = {**(request or {}), "not_scanned": not_scanned}
    pkg = write_access_package(Path(args.out), subject, findings, stores_metadata=metadata,
                               redact=not args.no_redact, request=request,
                               coverage=[c.detailed() for c in result.coverages()],
                               portable=getattr(args, "portable", False),
                               controller=(config.raw or {}).get("controller"))
    elapsed = time.perf_counter() - started
    print(_summary_line(findings))
    for store in result.stores:
        print(f"  {store.store} ({store.kind}): {len(store.findings)} locations, {store.seconds:.2f}s")
    if received:
        print(f"request received {request['received_at']}, answer due by {request['due_by']}")
    state = "encrypted " if pkg.encrypted else ""
    print(f"{state}access package: {pkg.out_dir} ({len(pkg.files)} files) in {elapsed:.1f}s")
    if getattr(args, "portable", False):
        print(f"portability export: {pkg.out_dir / ('portable.zip' + ('.enc' if pkg.encrypted else ''))}")
    return _coverage_status(result)


def _coverage_status(result) -> int:
    """Print what could not be searched; EXIT_NOT_FULLY_SEARCHED when anything could not (the answer is
    written, but it does not cover those places)."""
    from pii.core.coverage import summary_lines

    lines = summary_lines([c.to_dict() for c in result.coverages()])
    if lines:
        print("coverage:")
        for line in lines:
            print(line)
    if result.complete:
        return 0
    gaps = result.not_scanned()
    print(f"note: {len(gaps)} place(s) could not be fully searched (listed above and in the manifest); "
          f"exit status {EXIT_NOT_FULLY_SEARCHED}", file=sys.stderr)
    return EXIT_NOT_FULLY_SEARCHED


def cmd_locate(args) -> int:
    import json

    config = config_from(args)
    subject = subject_from(args, config)
    result = _locate(args, config, subject)
    findings = result.findings
    from pii.core.printable import printable_finding

    shown = [printable_finding(f.to_manifest()) for f in findings]
    if args.json:
        print(json.dumps(shown, indent=2, default=str))
        if not result.complete:
            print(f"note: {len(result.not_scanned())} place(s) could not be fully searched; exit status "
                  f"{EXIT_NOT_FULLY_SEARCHED}", file=sys.stderr)
            return EXIT_NOT_FULLY_SEARCHED
        return 0
    for f in shown:
        print(f"{f['store']}\t{f['match']}\t{f['strength']}\t{json_location(f['location'])}\t"
              f"{','.join(f['entities'])}")
    print(_summary_line(findings))
    return _coverage_status(result)


def json_location(location: dict) -> str:
    import json

    return json.dumps(location, sort_keys=True, default=str)


def cmd_demo(args) -> int:
    import contextlib

    from pii.demo import remote as demo_remote
    from pii.core.config import load_config
    from pii.demo.world import build_demo
    from pii.engine.discover import locate_subject
    from pii.reports.package import write_access_package
    from pii.core.subject import Subject

    root = Path(args.dir).resolve()
    started = time.perf_counter()
    remote = not args.local_only
    ftp_port = demo_remote.free_port(demo_remote.DEFAULT_FTP_PORT) if remote else None
    gmail_port = demo_remote.free_port(demo_remote.DEFAULT_GMAIL_PORT) if remote else None
    world = build_demo(root, remote=remote, ftp_port=ftp_port, gmail_port=gmail_port)
    config = load_config(world.config_path)
    subject = Subject.build(**world.subject, region=config.default_region)
    print(f"demo stores built in {root} ({', '.join(config.stores)}); config {world.config_path}")
    servers = demo_remote.serve(root, ftp_port, gmail_port) if remote else contextlib.nullcontext()
    with servers:
        if remote:
            print(f"demo servers: FTP on 127.0.0.1:{ftp_port}, Gmail-compatible endpoint on 127.0.0.1:{gmail_port}")
        result = locate_subject(config, subject, progress=progress_for(args))
        findings = result.findings
        out = root / "access_package"
        metadata = {name: s.metadata for name, s in config.stores.items()}
        pkg = write_access_package(out, subject, findings, stores_metadata=metadata,
                                   controller=(config.raw or {}).get("controller"))
        print("demo subject: the fictional Alice Smith (see pii/demo/world.py)")
        print(_summary_line(findings))
        for store in result.stores:
            print(f"  {store.store} ({store.kind}): {len(store.findings)} locations, {store.seconds:.2f}s")
        expected = {(e[0], json_location(e[1])) for e in world.expected}
        got = {(f.store, json_location(f.location)) for f in findings}
        print(f"expected locations found: {len(expected & got)}/{len(expected)}; unexpected: {len(got - expected)}")
        print(f"access package: {pkg.out_dir} (open summary.html) in {time.perf_counter() - started:.1f}s")
        if remote:
            print(f"the FTP and mail stores need the demo servers: run `lethe demo --serve` and, in another shell, "
                  f"export {demo_remote.FTP_PASSWORD_ENV}={demo_remote.FTP_DEMO_PASSWORD}")
        print(f"try: .venv/bin/lethe --config {world.config_path} erase --email alice.smith@example.org --dry-run")
        print(f"and the special flows (demo dates are set around 2026-11-22): .venv/bin/lethe --config "
              f"{world.config_path} retention --date 2026-11-22 --dry-run   (also: child-purge, "
              f"received-in-error, unsubscribe; see README)")
        if args.serve:
            print("serving the demo stores; Ctrl-C to stop", flush=True)
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                pass
    return 0 if expected <= got else 1


# ---------------------------------------------------------------------------- erasure
def cmd_erase(args) -> int:
    from pii.core.errors import LedgerError
    from pii.core.host import current_user
    from pii.engine.requests import identity_required
    from pii.engine.runs import RunService, SubjectRun

    config = config_from(args)
    subject = subject_from(args, config)
    received = received_from(args)
    runs = RunService(engine_for(args, config))
    spec = SubjectRun(subject, include_weak=args.include_weak, stores=args.store or None)
    if args.dry_run:
        plan = runs.dry_run(spec)
        print("dry run: nothing stored, nothing changed")
        for line in plan.lines():
            print(line)
        return 0
    requester = args.requester or current_user()
    if args.yes and identity_required(config):
        raise LedgerError("stores.yaml requires the requester's identity to be verified before an erasure runs: "
                          "run `lethe erase` without --yes to store the plan, then `lethe verify-identity "
                          "REQUEST_ID --method M --by WHO` and `lethe approve PLAN_ID --execute`")
    if args.yes:
        def notify(event: str, **d) -> None:
            if event == "withdrawn":
                print("an earlier unapproved request of yours for this subject was withdrawn")
            elif event == "resuming":
                print(f"resuming plan {d['plan_id']} (an earlier run did not finish)")
            elif event == "planned":
                for line in d["plan"].lines():
                    print(line)
            elif event == "approved":
                print(f"plan {d['plan_id']} approved by {d['approver']}")
            elif event == "closed":  # nothing to change: approved and verified at once
                print(f"plan {d['plan'].plan_id} approved by {d['approver']}")
            elif event == "already_done":
                print(f"nothing left to erase: plan {d['plan_id']} already completed this erasure; "
                      f"its certificate again:")

        outcome = runs.run_through(spec, requester, current_user(), received_at=received, notify=notify)
        return print_report(runs.engine, outcome.last, args.certificate)
    plan = runs.store(spec, requester, received_at=received)
    for line in plan.lines():
        print(line)
    if identity_required(config):
        request_id = runs.engine.ledger.get_plan(plan.plan_id)["request_id"]
        print(f"request {request_id}: the requester's identity must be verified before approval: "
              f"lethe verify-identity {request_id} --method M --by WHO")
    print(f"plan {plan.plan_id} stored; awaiting approval: lethe approve {plan.plan_id} --execute")
    return EXIT_AWAITING_APPROVAL


def cmd_approve(args) -> int:
    from pii.core.host import current_user
    from pii.engine.runs import RunService

    config = config_from(args)
    runs = RunService(engine_for(args, config))
    approver = args.approver or current_user()
    runs.approve(args.plan_id, approver, require_distinct=args.require_distinct, reason=args.reason)
    print(f"plan {args.plan_id} approved by {approver}")
    if args.execute:
        return print_report(runs.engine, runs.run(args.plan_id), args.certificate)
    return 0


def cmd_reject(args) -> int:
    from pii.core.host import current_user

    engine = engine_for(args, config_from(args))
    who = args.approver or current_user()
    engine.reject(args.plan_id, who, args.reason)
    print(f"plan {args.plan_id} rejected by {who}: nothing will be carried out")
    return 0


def cmd_execute(args) -> int:
    from pii.engine.runs import RunService

    runs = RunService(engine_for(args, config_from(args)))
    return print_report(runs.engine, runs.run(args.plan_id), args.certificate)


def cmd_certificate(args) -> int:
    from pii.core.errors import LedgerError
    from pii.reports.certificate import certificate_lines, write_certificate

    engine = engine_for(args, config_from(args))
    engine.ledger.verify_plan(args.plan_id)  # a certificate only for a plan as the key recorded it
    state = engine.ledger.plan_state(args.plan_id)
    if state not in ("verified", "executed", "failed"):
        raise LedgerError(f"plan {args.plan_id} is {state}: it has not been carried out, so it has no certificate")
    cert = engine.certificate(args.plan_id)
    lines = certificate_lines(cert)
    print("\n".join(lines))
    if args.out:
        path, text = write_certificate(cert, Path(args.out), lines)
        print(f"certificate: {path} (and {text.name})")
    if state != "verified":
        return EXIT_INCOMPLETE
    return EXIT_NOT_FULLY_SEARCHED if cert.get("not_verified") else 0


def cmd_show_plan(args) -> int:
    import json

    from pii.core.plans import Plan

    engine = engine_for(args, config_from(args))
    row = engine.ledger.get_plan(args.plan_id)
    print(f"plan {args.plan_id}: {row['state']} (request {row['request_id']}, expires {row['expires_at']})")
    for line in Plan(row["plan"]).lines():
        print(line)
    states: dict[str, int] = {}
    for a in engine.ledger.actions(args.plan_id):
        states[a["state"] or "not started"] = states.get(a["state"] or "not started", 0) + 1
    print("actions: " + json.dumps(states, sort_keys=True))
    return 0


def _ledger(config):
    from pii.ledger import Ledger

    return Ledger(config.state_url)


def cmd_suppression_check(args) -> int:
    from pii.core.subject import Subject

    config = config_from(args)
    subject = Subject.build(emails=args.email, phones=args.phone, ids=args.id,
                            region=(args.region or config.default_region).upper())
    if _ledger(config).is_subject_suppressed(subject):
        print("suppressed: do not import or contact")
        return 1
    print("not suppressed")
    return 0


def cmd_suppression_export(args) -> int:
    import csv
    import json

    from pii.core.printable import spreadsheet_safe_row
    from pii.ledger.restrictions import HASH_RECIPE

    ledger = _ledger(config_from(args))
    rows = ledger.export_suppression()
    recipe = HASH_RECIPE  # the same recipe `lethe restriction export` prints
    out = Path(args.out)
    if args.with_addresses and not args.for_mailing:
        raise ConfigError("--with-addresses goes with --for-mailing")
    if args.for_mailing:
        return _export_for_mailing(ledger, rows, recipe, out, args.with_addresses)
    if out.suffix.lower() == ".json":
        out.write_text(json.dumps({"recipe": recipe, "entries": rows}, indent=2, default=str) + "\n")
    else:
        with out.open("w", newline="", encoding="utf-8") as fh:
            w = csv.DictWriter(fh, fieldnames=["kind", "hash", "reason", "request_id", "created_at"])
            w.writeheader()
            for r in rows:  # cells spreadsheet_safe (a leading ' before = + - @, tab, CR); JSON stays exact
                w.writerow(spreadsheet_safe_row({k: r.get(k) for k in w.fieldnames}))
    print(f"{len(rows)} suppression entries written to {out} (keyed hashes; recipe: {recipe})")
    return 0


def _export_for_mailing(ledger, rows, recipe: str, out: Path, with_addresses: bool) -> int:
    """A mailing tool's suppression file: one e-mail entry per line, its keyed hash (compare with the
    recipe, using the ledger key) and, only where the controller keeps them, the address itself."""
    import csv
    import json

    from pii.core.printable import spreadsheet_safe_row

    emails = [r for r in rows if r["kind"] == "email"]
    # people whose processing is restricted, or who objected to marketing, are left out of any mailing too
    # (their e-mail hashes, marked; never the reason): pii/ledger/restrictions.py
    listed = {r["hash"] for r in emails}
    for r in ledger.export_restrictions():
        if r["kind"] == "email" and r["purpose"] in ("restriction", "marketing") and r["hash"] not in listed:
            listed.add(r["hash"])
            emails.append({"hash": r["hash"], "created_at": r["since"],
                           "reason": "restricted" if r["purpose"] == "restriction" else "objection: marketing"})
    kept = {}
    if with_addresses:
        kept = {k["hash"]: k["email"] for k in ledger.kept_addresses()}
        if not kept:
            raise ConfigError("no addresses are kept (set `suppression: {keep_addresses: true}` in the config to "
                              "keep unsubscribed addresses; the hashes alone are exported without --with-addresses)")
    mail_recipe = recipe.split(":", 1)[0] + " over 'lethe-ledger:v1:email\\0' + the address trimmed and lower-cased"
    entries = [{"hash": r["hash"], "reason": r["reason"], "created_at": r["created_at"],
                **({"email": kept.get(r["hash"], "")} if with_addresses else {})} for r in emails]
    if out.suffix.lower() == ".json":
        note = ("addresses kept deliberately under legitimate interest (never mail them again)"
                if with_addresses else "keyed hashes only")
        out.write_text(json.dumps({"recipe": mail_recipe, "note": note, "entries": entries}, indent=2) + "\n",
                       encoding="utf-8")
    else:
        with out.open("w", newline="", encoding="utf-8") as fh:
            w = csv.DictWriter(fh, fieldnames=list(entries[0]) if entries else ["hash", "reason", "created_at"])
            w.writeheader()
            w.writerows(spreadsheet_safe_row(e) for e in entries)  # JSON keeps exact addresses
    print(f"{len(entries)} e-mail suppression entries written to {out}"
          + (f" ({sum(1 for e in entries if e.get('email'))} with the kept address)" if with_addresses else "")
          + f"; hash = {mail_recipe}")
    return 0


def cmd_register(args) -> int:
    from pii.core.host import current_user
    from pii.engine.requests import register

    config = config_from(args)
    request_id = register(_ledger(config), args.kind, subject_from(args, config), args.requester or current_user(),
                          received_at=received_from(args), request_id=args.request_id)
    dag = {"access": "subject_access", "erasure": "subject_erasure", "restriction": "subject_restriction"}[args.kind]
    print(f"request {request_id} registered; trigger {dag} with {{\"request_id\": \"{request_id}\"}}")
    return 0


def cmd_hold_place(args) -> int:
    from pii.core.host import current_user

    config = config_from(args)
    added = _ledger(config).place_hold(subject_from(args, config), args.reason, actor=current_user())
    print(f"legal hold placed ({added} identifiers added): erasures of this subject are refused until released")
    return 0


def cmd_hold_release(args) -> int:
    from pii.core.host import current_user

    config = config_from(args)
    released = _ledger(config).release_hold(subject_from(args, config), actor=current_user())
    print(f"legal hold released ({released} identifiers)")
    return 0


def cmd_audit(args) -> int:
    from pii.core.errors import ConfigError

    if not args.verify and not args.out:
        raise ConfigError("lethe audit needs --out FILE (export) or --verify")
    if args.verify:
        result = _ledger(config_from(args)).verify_chain()
        older = f"; {result['before_chain']} older event(s) predate the chain" if result["before_chain"] else ""
        if not result["intact"]:
            print(f"lethe: audit chain BROKEN at event {result['broken_at']}: {result['reason']} "
                  f"({result['events']} event(s) verified before it{older})", file=sys.stderr)
            return 1
        print(f"audit chain intact: {result['events']} event(s) verified with the ledger key{older}")
        if not args.out:
            return 0
    out = Path(args.out)
    fmt = "json" if out.suffix.lower() == ".json" else "csv"
    _ledger(config_from(args)).export_audit(out, fmt, plan_id=args.plan)
    print(f"audit events written to {out}")
    return 0


def cmd_keygen(args) -> int:
    from pii.reports.package import generate_key

    print(generate_key())
    return 0


def cmd_decrypt(args) -> int:
    from pii.reports.package import decrypt_package

    decrypt_package(Path(args.dir), Path(args.out))
    print(f"decrypted package: {args.out}")
    return 0


def cmd_sweep(args) -> int:
    from pii.engine.sweep import summary_line, sweep_store

    config = config_from(args)
    stores = config.select(args.store or None)
    for store in stores:
        progress_for(args)(store.name, f"sweeping ({store.kind}{', full' if args.full else ''})")
        result = sweep_store(config, store.name, progress=progress_for(args), full=args.full,
                             sample_rows=args.sample_rows)
        print(f"{store.name} ({store.kind}): {summary_line(result)}")
        for err in result["errors"]:
            print(f"  not classified: {err['container']} ({err['reason']})")
    return 0


def cmd_inventory(args) -> int:
    from pii.state.inventory import Inventory

    config = config_from(args)
    if args.export or args.data_map or args.ropa:
        from pii.reports import datamap

        if args.store and (args.data_map or args.ropa):
            raise ConfigError("--data-map and --ropa cover every store; --store applies to --export only")
        if args.store:
            config.select([args.store])
        schedule = datamap.load_schedule(config)
        rows = datamap.data_map(config, schedule=schedule)
        if args.export:
            export_rows = [r for r in rows if r["store"] == args.store] if args.store else rows
            path = datamap.export_inventory(config, args.export, rows=export_rows)
            print(f"inventory ({len(export_rows)} columns) written to {path}")
        ropa = datamap.records_of_processing(config, schedule=schedule, rows=rows)
        if args.ropa:
            path = datamap.export_ropa(config, args.ropa, rows=ropa)
            print(f"records of processing ({len(ropa)} rows) written to {path}")
        if args.data_map:
            path = datamap.write_data_map_html(config, args.data_map, rows=rows, ropa=ropa)
            print(f"data map written to {path}")
        flagged = [r for r in ropa if r["flag"] == datamap.NO_RULE]
        if flagged:
            print(f"{len(flagged)} places hold personal data with no retention rule", file=sys.stderr)
        return 0
    rows = Inventory(config.state_url).rows(args.store)
    if not rows:
        print("inventory is empty: run an access or a discovery sweep first")
        return 0
    for r in rows:
        print(f"{r['store']}\t{r['container']}\t{r['column_name']}\t{r['kind']}\t{r['entities']}\t"
              f"conf={r['confidence']}\tsample={r['sample_size']}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("presidio-analyzer", "presidio_analyzer", "tldextract", "sqlalchemy"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    try:
        code = args.func(args)
        sys.stdout.flush()  # a reader that went away (`| head`) shows here, not as a traceback at exit
        return code
    except LetheError as exc:
        print("lethe: " + " ".join(str(exc).split()), file=sys.stderr)  # one line, whatever a name held
        return exc.exit_code
    except BrokenPipeError:  # `lethe show-plan | head`: the reader left; nothing more to say
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())  # Python's own flush at exit must not fail again
        except (OSError, ValueError, AttributeError):
            pass
        return 141
    except KeyboardInterrupt:
        print("lethe: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - one line, no values; tracebacks only on request
        if args.debug:
            raise
        print(f"lethe: unexpected {exc.__class__.__name__} (run with --debug for a traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
