"""`lethe rectify IDENTIFIERS --set email=NEW|phone=NEW|name=NEW [--set ...] [--dry-run | --yes]`: correct a
person's identifiers wherever an identifier field holds the old value (pii/engine/rectify.py).

Like `lethe erase`: `--dry-run` prints the plan and changes nothing; `--yes` plans, approves (as the OS
user), carries it out and verifies it (resuming an interrupted run first); with neither the plan is stored
for a second person (`lethe approve PLAN_ID --execute`) and the exit status is 3. Neither the old nor the new
values are printed.
"""
from __future__ import annotations


def add_parsers(sub, add_identifier_args) -> None:
    """Add this module's sub-commands to the `lethe` parser."""
    p = sub.add_parser("rectify", help="correct a person's email, phone or name wherever an identifier field "
                                       "holds the old value (plan, approval, certificate)")
    add_identifier_args(p)
    p.add_argument("--set", dest="set_values", action="append", default=[], metavar="FIELD=NEW",
                   help="the new value: email=NEW, phone=NEW or name=NEW (repeatable, one per field)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--dry-run", action="store_true", help="print the plan; store and change nothing")
    mode.add_argument("--yes", action="store_true",
                      help="approve as the OS user and carry the plan out now (resumes an interrupted run)")
    p.add_argument("--include-mentions", action="store_true",
                   help="also replace mentions of the old value in other people's text (after review)")
    p.add_argument("--include-weak", action="store_true",
                   help="also rectify weak (name-only) records: only after a person reviewed them")
    p.add_argument("--requester", metavar="WHO", help="who asked (default: the OS user)")
    p.add_argument("--certificate", metavar="FILE", help="also write the certificate as JSON to FILE")
    p.set_defaults(func=cmd_rectify)


def _print_plan(plan) -> None:
    from pii.engine.rectify import plan_lines

    for line in plan.lines() + plan_lines(plan.data):
        print(line)


def cmd_rectify(args) -> int:
    from pii.cli import common
    from pii.core.host import current_user
    from pii.core.rectify import check_changes, parse_changes
    from pii.engine.rectify import RectifyRun
    from pii.engine.runs import RunService

    config = common.config_from(args)
    region = (args.region or config.default_region).upper()
    changes = parse_changes(args.set_values, region)  # bad --set first: one line, exit 2, nothing touched
    subject = common.subject_from(args, config)
    check_changes(subject, changes)
    received = common.received_from(args)
    engine = common.engine_for(args, config)
    runs = RunService(engine)
    spec = RectifyRun(subject, changes, include_weak=args.include_weak, include_mentions=args.include_mentions,
                      stores=args.store or None)
    if args.dry_run:
        plan = runs.dry_run(spec)
        print("dry run: nothing stored, nothing changed")
        _print_plan(plan)
        return 0
    requester = args.requester or current_user()
    from pii.engine.requests import identity_required

    if args.yes and identity_required(config):
        from pii.core.errors import LedgerError

        raise LedgerError("stores.yaml requires the requester's identity to be verified before a rectification "
                          "runs: run `lethe rectify` without --yes to store the plan, then `lethe verify-identity "
                          "REQUEST_ID --method M --by WHO` and `lethe approve PLAN_ID --execute`")
    if args.yes:
        def notify(event: str, **d) -> None:
            if event == "withdrawn":
                print("an earlier unapproved rectification request of yours for this subject was withdrawn")
            elif event == "resuming":
                print(f"resuming plan {d['plan_id']} (an earlier run did not finish; its sealed new values apply)")
            elif event == "planned":
                _print_plan(d["plan"])
            elif event in ("approved", "closed"):
                plan_id = d.get("plan_id") or d["plan"].plan_id
                print(f"plan {plan_id} approved by {d['approver']}")
            elif event == "already_done":
                print(f"nothing left to rectify: plan {d['plan_id']} already completed this rectification; "
                      f"its certificate again:")

        outcome = runs.run_through(spec, requester, current_user(), received_at=received, notify=notify)
        return common.print_report(engine, outcome.last, args.certificate)
    plan = runs.store(spec, requester, received_at=received)
    _print_plan(plan)
    if identity_required(config):
        request_id = engine.ledger.get_plan(plan.plan_id)["request_id"]
        print(f"request {request_id}: the requester's identity must be verified before approval: "
              f"lethe verify-identity {request_id} --method M --by WHO")
    closed = runs.close_if_empty(plan, current_user())
    if closed:
        print(f"plan {plan.plan_id}: nothing to rectify; {closed.state}")
        return 0
    print(f"plan {plan.plan_id} stored; awaiting approval: lethe approve {plan.plan_id} --execute")
    return common.EXIT_AWAITING_APPROVAL
