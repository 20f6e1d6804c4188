"""`lethe received-in-error | child-purge | retention | unsubscribe`: the special flows on the command line.

Each runs like `lethe erase`: `--dry-run` prints the plan and changes nothing; `--yes` plans, approves
(as the OS user) and carries it out; with neither the plan is stored for a second person to approve
(`lethe approve PLAN --execute`) and the exit status is 3. Nothing personal is printed.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_parsers(sub, add_identifier_args) -> None:
    def modes(p: argparse.ArgumentParser) -> None:
        mode = p.add_mutually_exclusive_group()
        mode.add_argument("--dry-run", action="store_true", help="print the plan; store and change nothing")
        mode.add_argument("--yes", action="store_true",
                          help="plan, approve (as the OS user) and carry out in one go")
        p.add_argument("--requester", metavar="WHO", help="who asked (default: the OS user)")
        p.add_argument("--certificate", metavar="FILE", help="also write the certificate as JSON to FILE")
        p.add_argument("--report", metavar="FILE", help="write the plan report (JSON, no personal values) to FILE")

    p = sub.add_parser("received-in-error",
                       help="delete data received in error: a whole source, or what it holds about one subject")
    p.add_argument("--store", required=True, metavar="NAME", help="the store the source is in")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--file", metavar="NAME", help="csv/ftp store: the export file or drop path (glob allowed)")
    src.add_argument("--sender", metavar="ADDRESS", help="mail store: every message from this sender")
    src.add_argument("--message-id", metavar="ID", help="mail store: one message, by the store's id")
    src.add_argument("--batch", metavar="COLUMN=VALUE", help="sql store: rows of one import batch")
    p.add_argument("--table", metavar="GLOB", help="sql store with --batch: only this table (default all)")
    g = p.add_argument_group("only what the source holds about one subject (default: the whole source)")
    g.add_argument("--email", action="append", default=[], metavar="E")
    g.add_argument("--name", action="append", default=[], metavar="N")
    g.add_argument("--phone", action="append", default=[], metavar="P")
    g.add_argument("--id", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--region", metavar="CC")
    p.add_argument("--received", metavar="DATE", help="date the report of the error was received (YYYY-MM-DD)")
    modes(p)
    p.set_defaults(func=cmd_received_in_error)

    p = sub.add_parser("child-purge", help="find children's data (date of birth, text clues) and purge it")
    p.add_argument("--threshold", type=int, metavar="AGE", help="under this age (default: child_purge.threshold, 13)")
    p.add_argument("--date", metavar="YYYY-MM-DD", help="the run date ages are computed on (default today)")
    p.add_argument("--review-out", metavar="FILE",
                   help="write the text-clue review list (store, place, entity, score; no text) to FILE (CSV/JSON)")
    p.add_argument("--include-weak", action="store_true", help="also purge the text-clue hits (after review)")
    modes(p)
    p.set_defaults(func=cmd_child_purge)

    p = sub.add_parser("retention", help="purge what the retention schedule says has expired (one plan per rule)")
    p.add_argument("--rule", action="append", default=[], metavar="NAME", help="only these rules (repeatable)")
    p.add_argument("--date", metavar="YYYY-MM-DD", help="the run date (default today)")
    p.add_argument("--list", action="store_true", help="list the schedule's rules and exit")
    modes(p)
    p.set_defaults(func=cmd_retention)

    p = sub.add_parser("unsubscribe",
                       help="consent withdrawn: remove the person from the marketing lists, keep a suppression entry")
    add_identifier_args(p)
    modes(p)
    p.set_defaults(func=cmd_unsubscribe)


# ---------------------------------------------------------------------------- shared
def run_selection(args, engine, selection, *, include_weak: bool = False) -> tuple[int, object]:
    """Run a flow as the command's mode says; returns the exit status and the plan it made."""
    from pii.cli import common
    from pii.core.host import current_user
    from pii.engine.runs import RunService, SelectionRun

    runs = RunService(engine)
    spec = SelectionRun(selection, include_weak=include_weak)
    if args.dry_run:
        plan = runs.dry_run(spec)
        print("dry run: nothing stored, nothing changed")
        _print_plan(plan)
        _write_report(args, engine, plan, selection)
        return 0, plan
    requester = args.requester or current_user()
    received = common.received_from(args) if getattr(args, "received", None) else None
    if args.yes:
        codes: list[int] = []

        def notify(event: str, **d) -> None:
            if event == "withdrawn":
                print("an earlier unapproved run of this flow was withdrawn (its sealed data shredded)")
            elif event == "resuming":
                print(f"resuming plan {d['plan_id']} (an earlier run did not finish)")
            elif event == "resumed":
                codes.append(common.print_report(engine, d["report"], None))
            elif event == "planned":
                _print_plan(d["plan"])
                _write_report(args, engine, d["plan"], selection)
            elif event == "closed":
                print(f"plan {d['plan'].plan_id}: nothing to change; {d['state']}")
            elif event == "approved":
                print(f"plan {d['plan_id']} approved by {d['approver']}")

        outcome = runs.run_through(spec, requester, current_user(), received_at=received, notify=notify)
        if outcome.plan is None:  # stopped at a resumed plan that did not verify
            return codes[-1], None
        if outcome.closed:
            return 0, outcome.plan
        return common.print_report(engine, outcome.last, args.certificate), outcome.plan
    plan = runs.store(spec, requester, received_at=received)
    _print_plan(plan)
    _write_report(args, engine, plan, selection)
    closed = runs.close_if_empty(plan, current_user())
    if closed:
        print(f"plan {plan.plan_id}: nothing to change; {closed.state}")
        return 0, plan
    print(f"plan {plan.plan_id} stored; awaiting approval: lethe approve {plan.plan_id} --execute")
    return common.EXIT_AWAITING_APPROVAL, plan


def _print_plan(plan) -> None:
    sel = plan.data.get("selection") or {}
    print(f"{sel.get('flow')}: {sel.get('reason')}")
    if sel.get("legal_hold"):
        print(f"  legal hold on this rule: {sel['legal_hold']} (nothing under it is changed)")
    for store, rep in sorted((plan.data.get("selection_report") or {}).items()):
        line = f"  {store}: {rep['selected']} records selected"
        if rep.get("undated"):
            line += f", {rep['undated']} without a readable date (left alone)"
        if rep.get("skipped"):
            line += f", {len(rep['skipped'])} tables/files without the named columns"
        print(line)
    for line in plan.lines():
        print(line)


def _write_report(args, engine, plan, selection) -> None:
    if getattr(args, "report", None):
        from pii.reports.plan_report import plan_report, write_plan_report

        write_plan_report(plan_report(engine, plan, selection), Path(args.report))
        print(f"report: {args.report}")


# ---------------------------------------------------------------------------- commands
def cmd_received_in_error(args) -> int:
    from pii.cli import common
    from pii.core.errors import ConfigError
    from pii.engine.flows import Source, received_in_error

    config = common.config_from(args)
    engine = common.engine_for(args, config)
    subject = None
    if args.email or args.name or args.phone or args.id:
        subject = common.subject_from(args, config)
    column = value = None
    if args.batch:
        column, sep, value = args.batch.partition("=")
        if not sep or not column.strip():
            raise ConfigError("--batch must be COLUMN=VALUE")
        column = column.strip()
    elif args.table:
        raise ConfigError("--table goes with --batch")
    source = Source(store=args.store, file=args.file, sender=args.sender, message_id=args.message_id,
                    column=column, value=value, table=args.table)
    return run_selection(args, engine, received_in_error(engine, source, subject))[0]


def cmd_child_purge(args) -> int:
    from pii.cli import common
    from pii.engine.flows import child_purge, run_date_of

    config = common.config_from(args)
    run_date = run_date_of(args.date)
    engine = common.engine_for(args, config, today=run_date)
    selection = child_purge(engine, run_date, threshold=args.threshold)
    code, plan = run_selection(args, engine, selection, include_weak=args.include_weak)
    if args.review_out:
        # the run's own plan holds the review list; with --include-weak the clues were planned, not
        # reviewed, so the list comes from a plan without them (as it always lists every clue)
        if plan is None or args.include_weak:
            from pii.engine.flows import preview_selection

            plan = preview_selection(engine, selection)
        _write_review(args, engine, selection, plan)
    return code


def _write_review(args, engine, selection, plan) -> None:
    """The text-clue review list: where, what kind of clue, the age it states, its score; never the text."""
    import csv

    from pii.core.printable import spreadsheet_safe_row
    from pii.reports.plan_report import review_entries

    rows = review_entries(engine, plan, threshold=selection.description.get("threshold"))
    out = Path(args.review_out)
    if out.suffix.lower() == ".json":
        out.write_text(json.dumps(rows, indent=2, default=str) + "\n", encoding="utf-8")
    else:
        fields = ["store", "container", "location", "entities", "clue", "age", "score", "reason"]
        with out.open("w", newline="", encoding="utf-8") as fh:
            w = csv.DictWriter(fh, fieldnames=fields)
            w.writeheader()
            for r in rows:  # cells neutralised for spreadsheets (the JSON form keeps exact values)
                w.writerow(spreadsheet_safe_row({**{k: r.get(k) for k in fields},
                                                 "location": json.dumps(r["location"], sort_keys=True),
                                                 "entities": ",".join(r["entities"])}))
    print(f"review list: {len(rows)} text clues written to {out}")


def cmd_retention(args) -> int:
    from pii.cli import common
    from pii.core.errors import ConfigError
    from pii.engine.flows import retention_selection, run_date_of
    from pii.core.retention import load_schedule

    config = common.config_from(args)
    schedule = load_schedule(config)
    if args.list:
        for r in schedule.rules:
            hold = f"; LEGAL HOLD: {r.legal_hold}" if r.legal_hold else ""
            clock = r.date.lstrip("@") if not r.by_last_contact else \
                "last contact (" + ", ".join(list(r.contact_dates) + [e["store"] for e in r.elsewhere]) + ")"
            print(f"{r.name}: {r.store}/{','.join(r.match)} by {clock}, {r.period}, {r.action} "
                  f"({r.category}){hold}")
        return 0
    if not schedule.rules:
        raise ConfigError("no retention schedule: add `retention:` to the config (see README)")
    rules = [schedule.rule(n) for n in args.rule] if args.rule else schedule.rules
    run_date = run_date_of(args.date)
    import sys

    from pii.core.errors import LetheError

    worst, failed = 0, []
    for rule in rules:
        engine = common.engine_for(args, config, today=run_date)
        print(f"== rule {rule.name}")
        try:  # one rule's unreachable store does not stop the others
            code = run_selection(args, engine, retention_selection(engine, rule, run_date))[0]
        except LetheError as exc:
            print(f"lethe: rule {rule.name}: {exc}", file=sys.stderr)
            code = exc.exit_code
            failed.append(rule.name)
        worst = worst or code
    if failed:
        print(f"{len(failed)} of {len(rules)} rules did not run: {', '.join(failed)}", file=sys.stderr)
    return worst


def cmd_unsubscribe(args) -> int:
    from pii.cli import common
    from pii.engine.flows import unsubscribe

    config = common.config_from(args)
    engine = common.engine_for(args, config)
    return run_selection(args, engine, unsubscribe(engine, common.subject_from(args, config)))[0]
