"""`lethe restrict | restriction check | restriction export | object`: restriction of processing and objections
(issue 14, items 2 and 3). The ledger keeps keyed hashes of the identifiers and the reason sealed
(pii/ledger/restrictions.py); the flows hold a restricted person's records (pii/engine/restriction.py).

Bad input (no identifiers, a bad --until date, an unknown purpose, --release with --reason) is a one-line
error, exit status 2, and nothing changes. Nothing personal is printed.
"""
from __future__ import annotations

import json
from pathlib import Path

from pii.core.errors import ConfigError
from pii.engine.restriction import purpose_of, require_matchable, until_of

EXIT_RESTRICTED = 1


def add_parsers(sub, add_identifier_args) -> None:
    """Add this module's sub-commands to the `lethe` parser."""
    p = sub.add_parser("restrict", help="restrict processing of a person's data (the flows hold it), or --release it")
    add_identifier_args(p)
    p.add_argument("--reason", metavar="R", help="why (sealed in the ledger; the audit trail keeps a keyed hash)")
    p.add_argument("--until", metavar="YYYY-MM-DD", help="the last day of the restriction (default: until released)")
    p.add_argument("--release", action="store_true", help="lift the restriction (its reason is shredded)")
    p.set_defaults(func=cmd_restrict)

    p = sub.add_parser("restriction", help="check or export restrictions and objections (keyed hashes)")
    rsub = p.add_subparsers(dest="restriction_command", metavar="ACTION", required=True)
    rp = rsub.add_parser("check", help="exit 1 while the person is restricted (or objected to for --purpose), "
                                       "0 otherwise (for pipelines)")
    rp.add_argument("--email", action="append", default=[], metavar="E")
    rp.add_argument("--phone", action="append", default=[], metavar="P")
    rp.add_argument("--id", action="append", default=[], metavar="KEY=VALUE")
    rp.add_argument("--region", metavar="CC")
    rp.add_argument("--purpose", metavar="P", help="also answer for an objection to this purpose "
                                                   "(marketing, profiling, analytics)")
    rp.set_defaults(func=cmd_restriction_check)
    rp = rsub.add_parser("export", help="write the restrictions and objections in force (kind, keyed hash, "
                                        "purpose, since, until; never the reason) as CSV or JSON")
    rp.add_argument("--out", metavar="FILE", help="FILE.csv or FILE.json")
    rp.set_defaults(func=cmd_restriction_export)

    p = sub.add_parser("object", help="record an objection to processing for a purpose; marketing also runs "
                                      "the unsubscribe flow")
    add_identifier_args(p)
    p.add_argument("--purpose", metavar="P", help="marketing, profiling or analytics")
    p.add_argument("--reason", metavar="R", help="why (sealed in the ledger; the audit trail keeps a keyed hash)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--dry-run", action="store_true", help="print what would happen; record and change nothing")
    mode.add_argument("--yes", action="store_true",
                      help="marketing: plan, approve (as the OS user) and carry out the unsubscribe in one go")
    p.add_argument("--requester", metavar="WHO", help="who asked (default: the OS user)")
    p.add_argument("--certificate", metavar="FILE", help="marketing: also write the certificate as JSON to FILE")
    p.add_argument("--report", metavar="FILE", help="marketing: write the plan report (JSON, no personal values)")
    p.set_defaults(func=cmd_object)


# ---------------------------------------------------------------------------- shared
def _subject(args, config):
    from pii.cli import common

    subject = common.subject_from(args, config)
    require_matchable(subject)
    return subject


# ---------------------------------------------------------------------------- commands
def cmd_restrict(args) -> int:
    from pii.cli import common
    from pii.core.host import current_user
    from pii.ledger import Ledger

    if args.release and args.reason is not None:
        raise ConfigError("--release takes no --reason (the reason given for the restriction is shredded)")
    if args.release and args.until is not None:
        raise ConfigError("--release takes no --until")
    if not args.release and not (args.reason or "").strip():
        raise ConfigError("lethe restrict needs --reason R (or --release)")
    config = common.config_from(args)
    subject = _subject(args, config)
    ledger = Ledger(config.state_url)
    if args.release:
        released = ledger.release_restriction(subject, actor=current_user())
        if not released:
            print("no restriction on these identifiers: nothing released")
        else:
            print(f"restriction released ({released} identifiers); its reason shredded: the flows act on this "
                  f"person's records again")
        return 0
    until = until_of(args.until, ledger._now().date())
    added = ledger.restrict(subject, args.reason, until=until, actor=current_user())
    print(f"processing restricted ({added} identifiers added) {'until ' + until.isoformat() if until else 'until released'}: "
          f"retention purges, the child-data purge, data received in error and the mailing export hold this "
          f"person's records; access and an explicit erasure request still run")
    return 0


def cmd_restriction_check(args) -> int:
    from pii.cli import common
    from pii.core.subject import Subject
    from pii.ledger import Ledger

    purpose = purpose_of(args.purpose) if args.purpose is not None else None
    config = common.config_from(args)
    subject = Subject.build(emails=args.email, phones=args.phone, ids=args.id,
                            region=(args.region or config.default_region).upper())
    require_matchable(subject)
    entries = Ledger(config.state_url).restrictions_on(subject)
    if any(e["purpose"] == "restriction" for e in entries):
        print("restricted: do not process (only storage, access and an explicit erasure request)")
        return EXIT_RESTRICTED
    if purpose and any(e["purpose"] == purpose for e in entries):
        print(f"objected to for {purpose}: do not use for {purpose}")
        return EXIT_RESTRICTED
    print("not restricted" + (f" (and no objection to {purpose})" if purpose else ""))
    return 0


def cmd_restriction_export(args) -> int:
    import csv

    from pii.cli import common
    from pii.core.printable import spreadsheet_safe_row
    from pii.ledger import Ledger
    from pii.ledger.restrictions import HASH_RECIPE

    if not args.out:
        raise ConfigError("lethe restriction export needs --out FILE (.csv or .json)")
    rows = Ledger(common.config_from(args).state_url).export_restrictions()
    out = Path(args.out)
    fields = ["kind", "hash", "purpose", "since", "until"]
    if out.suffix.lower() == ".json":
        out.write_text(json.dumps({"recipe": HASH_RECIPE, "entries": rows}, indent=2, default=str) + "\n",
                       encoding="utf-8")
    else:
        with out.open("w", newline="", encoding="utf-8") as fh:
            w = csv.DictWriter(fh, fieldnames=fields)
            w.writeheader()
            for r in rows:
                w.writerow(spreadsheet_safe_row({k: r.get(k) for k in fields}))
    print(f"{len(rows)} restriction and objection entries written to {out} (keyed hashes; recipe: {HASH_RECIPE})")
    return 0


def cmd_object(args) -> int:
    from pii.cli import common
    from pii.core.host import current_user
    from pii.ledger import Ledger

    purpose = purpose_of(args.purpose)
    if not (args.reason or "").strip():
        raise ConfigError("lethe object needs --reason R")
    config = common.config_from(args)
    subject = _subject(args, config)
    if purpose != "marketing":
        if args.dry_run:
            print(f"dry run: the objection to {purpose} would be recorded; nothing recorded")
            return 0
        added = Ledger(config.state_url).object_to(subject, purpose, args.reason, actor=current_user())
        print(f"objection to {purpose} recorded ({added} identifiers added): "
              f"`lethe restriction check --purpose {purpose}` answers it")
        return 0
    # marketing: the unsubscribe flow, run by `lethe unsubscribe`'s own command (same --dry-run / --yes semantics)
    from pii.cli.flows import cmd_unsubscribe
    from pii.engine.flows import marketing_scope

    marketing_scope(config)  # no marketing lists: refused (exit 2) before anything is recorded
    if args.dry_run:
        print("dry run: the objection to marketing would be recorded")
    else:
        added = Ledger(config.state_url).object_to(subject, purpose, args.reason, actor=current_user())
        print(f"objection to marketing recorded ({added} identifiers added); removing the person from the "
              f"marketing lists:")
    return cmd_unsubscribe(args)
