"""What the CLI's commands share (pii/cli/main.py and pii/cli/flows.py): reading the config and the subject from
the arguments, progress, the erasure engine, printing an execution's certificate and its exit status.

Apart from pii/cli/main.py so that the flow commands need not import the main CLI (which imports them).
"""
from __future__ import annotations

import datetime as dt
import os
import sys
from pathlib import Path

from pii.core.errors import InvalidIdentifier


def config_from(args):
    from pii.core.config import load_config

    path = args.config or os.environ.get("LETHE_CONFIG") or "stores.yaml"
    return load_config(path)


def subject_from(args, config):
    from pii.core.subject import Subject

    return Subject.build(emails=args.email, names=args.name, phones=args.phone, ids=args.id,
                         region=(args.region or config.default_region).upper())


def received_from(args) -> dt.date | None:
    if not args.received:
        return None
    try:
        return dt.date.fromisoformat(args.received)
    except ValueError:
        raise InvalidIdentifier("--received must be a date written YYYY-MM-DD") from None


def progress_for(args):
    from connectors.base import null_progress, stderr_progress

    return null_progress if args.quiet else stderr_progress


EXIT_AWAITING_APPROVAL = 3
EXIT_INCOMPLETE = 7
EXIT_NOT_FULLY_SEARCHED = 8  # done, but some places could not be (fully) searched: listed, never certified


def engine_for(args, config, *, today: dt.date | None = None):
    """The erasure engine for a command; `today`: the run date its policy and flows decide by (default:
    the real date)."""
    from pii.engine.erasure import ErasureEngine

    return ErasureEngine(config, progress=progress_for(args), today=today)


def print_report(engine, report, certificate_path: str | None) -> int:
    from pii.reports.certificate import certificate_lines, write_certificate

    cert = engine.certificate(report.plan_id)
    if report.drifted:
        print(f"plan {report.plan_id}: {report.drifted} locations drifted (changed since planned): not touched")
    lines = certificate_lines(cert, report)
    print("\n".join(lines))
    if certificate_path:
        path, text = write_certificate(cert, Path(certificate_path), lines)
        print(f"certificate: {path} (and {text.name})")
    what = "rectification" if cert.get("flow") == "rectification" else "erasure"
    if report.state == "verified":
        if cert.get("not_verified"):
            print(f"lethe: {what} done where Lethe could search; {len(cert['not_verified'])} place(s) could not "
                  f"be searched and are not verified (exit status {EXIT_NOT_FULLY_SEARCHED})", file=sys.stderr)
            return EXIT_NOT_FULLY_SEARCHED
        return 0
    print(f"lethe: {what} incomplete (plan {report.plan_id} is {report.state}): "
          f"see `lethe show-plan {report.plan_id}`", file=sys.stderr)
    return EXIT_INCOMPLETE
