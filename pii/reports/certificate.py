"""The erasure certificate: one writer for the CLI and the Airflow tasks (JSON for machines, text for people).

What it says comes from `ErasureEngine.certificate` (the ledger's record of the plan, its execution and
verification); this module only renders and writes it. No personal values: places, counts, reasons.
"""
from __future__ import annotations

import json
from pathlib import Path

from pii.core.plans import shown_container
from pii.reports import write_atomic


def certificate_lines(cert: dict, report=None) -> list[str]:
    """The certificate for people: what was done, verified, kept and why; no personal values."""
    flow = cert.get("flow") or "erasure"
    title = "erasure" if flow == "erasure" else flow.replace("_", " ")
    lines = [f"Lethe {title} certificate: plan {cert['plan_id']} (request {cert['request_id']})",
             f"state: {cert['state']}; approved by {cert['approved_by']} at {cert['approved_at']}; "
             f"issued {cert['issued_at']}",
             f"request received {cert['received_at']}, due {cert['due_at']}",
             "actions: " + ", ".join(f"{n} {s}" for s, n in sorted(cert["actions"].items()))
             + f"; {cert['rows_affected']} rows affected"]
    if report is not None:
        for line in report.details:
            lines.append(f"  {line}")
        if report.new_locations:
            lines.append(f"  {report.new_locations} locations appeared after the plan was made and were not touched")
    for where, per in sorted(cert["by_location"].items()):
        lines.append(f"  {where}: " + ", ".join(f"{n} {k}" for k, n in sorted(per.items())))
    for r in cert["retained"]:
        lines.append(f"  retained in {r['store']}/{r['container']}: {r['reason']}"
                     + (f" ({r['legal_basis']})" if r.get("legal_basis") else "")
                     + (f", until {r['until']}" if r.get("until") else ""))
    for h in cert["held"]:
        lines.append(f"  held in {h['store']}/{h['container']}: {h['reason']}")
    if cert.get("refused_by_policy"):
        lines.append(f"  {cert['refused_by_policy']} approved action(s) refused: the policy no longer allowed them "
                     f"when the plan was carried out (left as they are; re-plan to act on it)")
    rect = cert.get("rectification")
    if rect is not None:
        lines.extend(_rectification_lines(rect))
    if cert["review_not_erased"] and rect is None:
        what = "weak (name-only)" if flow == "erasure" else "review-only (text clue or weak)"
        lines.append(f"  {cert['review_not_erased']} {what} locations were not erased: review them")
    remaining = [v.get("remaining") for v in cert["verification"] if "remaining" in v]
    if remaining:
        if rect is not None:
            lines.append(f"verification: {remaining[-1]} identifier fields still hold an old value or lack the new one"
                         + ("; suppression entries followed the person" if cert["verified"] else ""))
        else:
            lines.append(f"verification: {remaining[-1]} erasable locations remain"
                         + ("; identifiers added to the suppression list" if cert["verified"] else ""))
    for s in cert["out_of_scope"]:
        lines.append(f"  not reachable by Lethe: {s['name']}: {s.get('route') or 'no erasure route given'}")
    gaps = cert.get("not_verified") or []
    if gaps:
        lines.append(f"NOT VERIFIED: {len(gaps)} place(s) could not be fully searched, so nothing can be said "
                     "about them:")
        for g in gaps:
            lines.append(f"  {g['store']}: {g['place']}: {g['reason']}")
    return lines


def _rectification_lines(rect: dict) -> list[str]:
    """A rectification certificate's own lines: fields rectified by kind, what was left for review and what
    could not be changed (mail), never a value."""
    done = rect.get("fields_rectified") or {}
    lines = ["  rectified (" + ", ".join(rect.get("fields") or []) + "): "
             + (", ".join(f"{n} {k.replace('_', ' ')} field(s)" for k, n in sorted(done.items())) or "no field")]
    if rect.get("mentions_for_review"):
        lines.append(f"  {rect['mentions_for_review']} mention(s) in other people's records: listed for review, "
                     "not changed")
    if rect.get("weak_for_review"):
        lines.append(f"  {rect['weak_for_review']} weak (name-only) record(s): listed for review, not changed")
    for n in rect.get("not_changeable") or []:
        lines.append(f"  not changeable: review: {n['locations']} in {n['store']}/{shown_container(n['container'])} "
                     "(left as they are, not rectified)")
    return lines


def write_certificate(cert: dict, path: Path, lines: list[str] | None = None) -> tuple[Path, Path]:
    """Write the certificate as JSON at `path` and as text beside it (`.txt`); returns both paths."""
    path = Path(path)
    text = path.with_suffix(".txt") if path.suffix != ".txt" else path.with_suffix(".txt.txt")
    lines = certificate_lines(cert) if lines is None else lines
    write_atomic(path, json.dumps(cert, indent=2, sort_keys=True) + "\n")
    write_atomic(text, "\n".join(lines) + "\n")
    return path, text
