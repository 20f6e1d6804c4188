"""`lethe requests`, `lethe extend`, `lethe verify-identity`: a request's deadline and its requester's
identity (issue 14). Ids, kinds, dates and states only are printed; reasons and notes are sealed."""
from __future__ import annotations

import json
import re

from pii.cli.common import config_from
from pii.core.errors import RequestTermsRefused

_COLUMNS = ("request_id", "kind", "received", "due", "extended_to", "identity", "status")


def add_parsers(sub, add_identifier_args) -> None:
    """Add this module's sub-commands to the `lethe` parser."""
    p = sub.add_parser("requests", help="list open requests: id, kind, received, due (extended), identity, status")
    p.add_argument("--json", action="store_true", help="print a JSON list of objects")
    p.add_argument("--overdue", action="store_true", help="only requests whose (extended) due date has passed")
    p.add_argument("--all", action="store_true", help="also completed, rejected and withdrawn requests")
    p.set_defaults(func=cmd_requests)

    p = sub.add_parser("extend", help="extend a request's due date by 1 or 2 calendar months, with a notice "
                                      "to the person")
    p.add_argument("request_id", metavar="REQUEST_ID")
    p.add_argument("--by", required=True, metavar="1m|2m", help="how much longer: 1m or 2m (calendar months)")
    p.add_argument("--reason", required=True, help="why (goes into the notice to the person; sealed in the ledger)")
    p.add_argument("--as", dest="actor", metavar="WHO", help="who extends it (default: the OS user)")
    p.set_defaults(func=cmd_extend)

    p = sub.add_parser("verify-identity", help="record how the requester's identity was verified")
    p.add_argument("request_id", metavar="REQUEST_ID")
    p.add_argument("--method", required=True, metavar="M",
                   help="how: a short word such as document, email-link, in-person, video-call")
    p.add_argument("--by", required=True, metavar="WHO", help="who checked it")
    p.add_argument("--note", metavar="N", help="a note (sealed in the ledger like identifiers)")
    p.set_defaults(func=cmd_verify_identity)


def _ledger(config):
    from pii.ledger import Ledger

    return Ledger(config.state_url)


def cmd_requests(args) -> int:
    from pii.engine.requests import list_requests

    config = config_from(args)
    rows = list_requests(_ledger(config), include_closed=args.all)
    if args.overdue:
        rows = [r for r in rows if r["overdue"]]
    if args.json:
        keys = _COLUMNS + ("first_due", "days_left", "overdue")
        print(json.dumps([{k: r[k] for k in keys} for r in rows], indent=2))
        return 0
    if not rows:
        print("no overdue requests" if args.overdue else "no open requests")
        return 0
    table = [list(_COLUMNS) + ["days_left"]]
    table += [[str(r[k]) if r[k] is not None else "-" for k in _COLUMNS]
              + [("OVERDUE " if r["overdue"] else "") + (str(r["days_left"]) if r["days_left"] is not None else "-")]
              for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    for row in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
    overdue = sum(1 for r in rows if r["overdue"])
    print(f"{len(rows)} request(s){f', {overdue} overdue' if overdue else ''}")
    return 0


def cmd_extend(args) -> int:
    from pii.core.host import current_user
    from pii.engine.requests import extend_with_notice

    m = re.fullmatch(r"\s*([12])\s*m(?:onths?)?\s*", args.by or "")
    if not m:
        raise RequestTermsRefused("--by must be 1m or 2m (calendar months; at most two beyond the first due date)")
    config = config_from(args)
    ledger = _ledger(config)
    new_due, notice = extend_with_notice(ledger, config, args.request_id, int(m.group(1)), args.reason,
                                         actor=args.actor or current_user())
    print(f"request {args.request_id}: due date extended to {new_due.isoformat()}")
    print(f"notice to the person: {notice}")
    return 0


def cmd_verify_identity(args) -> int:
    config = config_from(args)
    ledger = _ledger(config)
    ledger.verify_identity(args.request_id, args.method, args.by, args.note)
    print(f"request {args.request_id}: identity verified ({args.method.strip().lower()})")
    return 0
