"""The plan report: one JSON document per flow plan, for the CLI's ``--report FILE`` and the Airflow flows'
``LETHE_OUTPUT_DIR/<flow>/<plan>.report.json`` alike. What was selected per store, the action counts,
what is held and why, what is left for a person's review (real locations as `lethe locate` prints them
and, for a child-age text clue, its kind, age and score); never a value from the records."""
from __future__ import annotations

import json
from pathlib import Path

from pii.reports import write_atomic


def plan_report(engine, plan, selection=None) -> dict:
    """The report of `plan` (made by `pii.engine.flows.submit_selection` or `preview_selection` for `selection`)."""
    threshold = (selection.description.get("threshold") if selection is not None else None)
    flow = plan.data.get("flow") or (selection.flow if selection is not None else None)
    return {"plan_id": plan.plan_id, "request_id": plan.request_id, "flow": flow,
            "created_at": plan.data.get("created_at"), "selection": plan.data.get("selection"),
            "selected": plan.data.get("selection_report"), "counts": plan.counts(),
            "held": [{"store": a.store, "container": a.container, "reason": a.reason} for a in plan.held],
            "review": review_entries(engine, plan, threshold=threshold)}


def write_plan_report(report: dict, path: Path) -> Path:
    """Write the report as JSON at `path` (`write_atomic`: never half a report)."""
    return write_atomic(Path(path), json.dumps(report, indent=2, sort_keys=True, default=str) + "\n")


def review_entries(engine, plan, *, threshold: int | None = None) -> list[dict]:
    """The plan's review list for a person: the real location (as `lethe locate` prints it) and, for a
    child-age text clue, its kind, the age it states and its score. Never the text itself."""
    from pii.core.printable import printable_finding

    real = {engine.action_id(f.store, f.location): f for f in plan.findings}
    out = []
    for a in plan.review:
        f = real.get(a.action_id)
        row = {"store": a.store, "container": a.container,
               "location": (printable_finding(f.to_manifest())["location"] if f else a.location),
               "entities": list(a.entities), "reason": a.reason, "clue": None, "age": None, "score": None}
        if f is not None and threshold and f.record:
            from pii.core import age

            clues = [c for v in f.record.values() if isinstance(v, str)
                     for c in age.find_child_clues(v, threshold, today=engine.today)]
            if clues:
                best = max(clues, key=lambda c: c.score)
                row.update(clue=best.kind, age=best.age, score=round(best.score, 2))
        out.append(row)
    return out
