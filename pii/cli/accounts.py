"""`lethe accounts` (inactivity review of drops with one folder per account) and `lethe close-account`
(a holder's closure request): pii/engine/accounts.py holds the rules."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pii.cli import common


def add_parsers(sub, add_identifier_args) -> None:
    def modes(p: argparse.ArgumentParser) -> None:
        mode = p.add_mutually_exclusive_group()
        mode.add_argument("--dry-run", action="store_true", help="print the plan; store and change nothing")
        mode.add_argument("--yes", action="store_true", help="plan, approve (as the OS user) and carry out in one go")
        p.add_argument("--requester", metavar="WHO", help="who asked (default: the OS user)")
        p.add_argument("--certificate", metavar="FILE", help="also write the certificate as JSON to FILE")
        p.add_argument("--report", metavar="FILE", help="write the plan report (JSON, no personal values) to FILE")

    p = sub.add_parser("accounts", help="inactivity review: notify inactive accounts, plan deleting unconfirmed ones")
    p.add_argument("--rule", metavar="NAME", help="only this account rule (default: every rule in 'accounts:')")
    p.add_argument("--date", metavar="YYYY-MM-DD", help="the run date (default today)")
    p.add_argument("--out", metavar="FILE",
                   help="the confirmation list for the mailing tool (CSV; default "
                        "$LETHE_OUTPUT_DIR/accounts/<rule>/confirm-<date>.csv)")
    modes(p)
    p.set_defaults(func=cmd_accounts)

    p = sub.add_parser("close-account", help="a holder asked to close their account: plan deleting its data")
    p.add_argument("--store", required=True, metavar="NAME", help="the store holding one folder per account")
    p.add_argument("--account", required=True, metavar="FOLDER", help="the account's folder name")
    p.add_argument("--received", metavar="DATE", help="date the request was received (YYYY-MM-DD); sets the due date")
    modes(p)
    p.set_defaults(func=cmd_close_account)


def cmd_accounts(args) -> int:
    from pii.cli.flows import run_selection
    from pii.engine import accounts
    from pii.engine.flows import run_date_of
    from pii.engine.requests import output_root

    config = common.config_from(args)
    rules = [accounts.account_rule(config, name=args.rule)] if args.rule else accounts.account_rules(config)
    if not rules:
        from pii.core.errors import ConfigError

        raise ConfigError("no account rules: add 'accounts:' to stores.yaml (see README)")
    run_date = run_date_of(args.date)
    worst = 0
    for rule in rules:
        engine = common.engine_for(args, config, today=run_date)
        report = accounts.review(engine, rule, run_date)
        print(f"== account rule {rule.name} ({rule.store}): {report['accounts']} accounts, inactive before "
              f"{report['cutoff']}")
        print(f"  {len(report['notified'])} newly notified, {len(report['awaiting'])} awaiting confirmation, "
              f"{report['confirmed']} confirmed by new activity, {len(report['due'])} due for deletion, "
              f"{report['closed']} closed")
        if report["undated"] or report["outside_accounts"]:
            print(f"  {report['undated']} accounts without a readable file time (left alone); "
                  f"{report['outside_accounts']} files outside any account folder")
        if not args.dry_run:
            out = Path(args.out) if args.out and len(rules) == 1 else \
                output_root(config) / "accounts" / rule.name / f"confirm-{run_date.isoformat()}.csv"
            accounts.write_confirmation_list(report, out)
            print(f"  confirmation list: {out} ({len(report['awaiting'])} accounts)")
        if report["due"]:
            selection = accounts.closure_selection(rule, [e["account"] for e in report["due"]], run_date)
            code = run_selection(args, engine, selection)[0]
            worst = worst or code
    return worst


def cmd_close_account(args) -> int:
    from pii.cli.flows import run_selection
    from pii.engine import accounts
    from pii.engine.flows import run_date_of

    config = common.config_from(args)
    account = accounts.check_account_name(args.account)
    rule = accounts.account_rule(config, store=args.store)
    common.received_from(args)  # a malformed date is refused before anything runs
    run_date = run_date_of(None)
    engine = common.engine_for(args, config, today=run_date)
    newest, _ = accounts.activity(engine, rule)
    if account not in newest:
        print(f"lethe: store {args.store} has no files in that account folder: nothing to delete",
              file=sys.stderr)
        return 2
    selection = accounts.closure_selection(rule, [account], run_date, requested=True)
    code, plan = run_selection(args, engine, selection)
    if plan is not None:
        row = engine.ledger.get_request(engine.ledger.get_plan(plan.plan_id)["request_id"])
        print(f"closure request {row['request_id']} received {row['received_at']}, due {row['due_at']} "
              f"(close_within {rule.close_within})")
    return code
