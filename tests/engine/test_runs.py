"""The run service (pii/engine/runs.py) that the CLI and the Airflow tasks share: dry run, store, close an empty
plan, approve and run, resume, withdraw, and `run_through` (`--yes`) with the events it reports."""
from __future__ import annotations

import pytest
import sqlalchemy as sa

from pii.demo import flows as demo_flows
from pii.core.config import load_config, parse_config
from pii.demo.world import build_demo
from pii.engine.erasure import ErasureEngine, ExecutionReport
from pii.engine.flows import Source, received_in_error
from pii.engine.runs import RunService, SelectionRun, SubjectRun
from pii.core.subject import Subject
from tests import sql_world

ALICE = Subject.build(**sql_world.ALICE)


@pytest.fixture
def demo(tmp_path):
    world = build_demo(tmp_path / "demo")
    return ErasureEngine(load_config(world.config_path)), world


def in_error(engine) -> SelectionRun:
    return SelectionRun(received_in_error(engine, Source(store="exports", file=demo_flows.ERROR_EXPORT), None))


class Events(list):
    def __call__(self, event: str, **details) -> None:
        self.append((event, details))

    def names(self) -> list[str]:
        return [e for e, _ in self]


def test_when_a_flow_runs_through_then_it_is_planned_approved_carried_out_and_a_second_run_closes_empty(demo):
    engine, world = demo
    runs = RunService(engine)
    export = world.root / "data" / "exports" / demo_flows.ERROR_EXPORT
    preview = runs.dry_run(in_error(engine))
    assert preview.actions and preview.plan_id is None and export.exists()  # a dry run changes nothing

    events = Events()
    outcome = runs.run_through(in_error(engine), "helpdesk", "dpo", notify=events)
    assert events.names() == ["planned", "approved"]
    assert events[1][1] == {"plan_id": outcome.plan.plan_id, "approver": "dpo"}
    assert outcome.last.state == "verified" and outcome.closed is None and not export.exists()
    assert engine.ledger.get_plan(outcome.plan.plan_id)["decided_by"] == "dpo"

    events = Events()
    again = runs.run_through(in_error(engine), "helpdesk", "dpo", notify=events)
    assert events.names() == ["planned", "closed"]  # nothing left: closed at once, nobody asked
    assert again.closed == "verified" and again.plan.actions == [] and again.last.state == "verified"


def test_when_an_approved_flow_plan_was_left_unfinished_then_run_through_resumes_it_then_plans_anew(demo):
    engine, world = demo
    runs = RunService(engine)
    plan = runs.store(in_error(engine), "helpdesk")
    assert runs.close_if_empty(plan, "dpo") is None  # it has actions: it waits for a person
    runs.approve(plan.plan_id, "dpo")  # approved, then the run was killed before carrying it out
    assert runs.unfinished(in_error(engine)) == [plan.plan_id]

    events = Events()
    outcome = runs.run_through(in_error(engine), "helpdesk", "dpo", notify=events)
    assert events.names() == ["resuming", "resumed", "planned", "closed"]
    assert events[0][1] == {"plan_id": plan.plan_id}
    assert outcome.reports[0].plan_id == plan.plan_id and outcome.reports[0].state == "verified"
    assert not (world.root / "data" / "exports" / demo_flows.ERROR_EXPORT).exists()
    assert runs.unfinished(in_error(engine)) == []


def test_when_a_resumed_plan_does_not_verify_then_run_through_stops_there(demo, monkeypatch):
    engine, _world = demo
    runs = RunService(engine)
    plan = runs.store(in_error(engine), "helpdesk")
    runs.approve(plan.plan_id, "dpo")
    monkeypatch.setattr(RunService, "run", lambda self, plan_id, **kw: ExecutionReport(plan_id, "failed", failed=1))
    events = Events()
    outcome = runs.run_through(in_error(engine), "helpdesk", "dpo", notify=events)
    assert events.names() == ["resuming", "resumed"]
    assert outcome.plan is None and outcome.last.state == "failed"
    assert engine.ledger.plan_state(plan.plan_id) == "approved"  # untouched by the stub; nothing new planned


def test_when_an_unapproved_flow_run_was_left_behind_then_the_same_requester_withdraws_it(demo):
    engine, _world = demo
    runs = RunService(engine)
    stale = runs.store(in_error(engine), "helpdesk")
    other = runs.store(in_error(engine), "someone-else")
    events = Events()
    outcome = runs.run_through(in_error(engine), "helpdesk", "dpo", notify=events)
    assert events[0] == ("withdrawn", {"count": 1}) and outcome.withdrawn == 1
    assert engine.ledger.get_request(stale.request_id)["status"] == "withdrawn"
    assert not engine.ledger.is_sealed(stale.request_id)
    assert engine.ledger.plan_state(other.plan_id) == "planned"  # not theirs to withdraw


def test_when_an_erasure_plan_was_left_unfinished_then_run_through_only_resumes_it(sqlite_url, tmp_path):
    sql_world.build(sqlite_url).dispose()
    engine = ErasureEngine(parse_config({"stores": {"crm": {"kind": "sql", "url": sqlite_url}}},
                                        tmp_path / "stores.yaml"))
    runs = RunService(engine)
    spec = SubjectRun(ALICE)
    plan = runs.store(spec, "requester")
    runs.approve(plan.plan_id, "dpo")
    events = Events()
    outcome = runs.run_through(spec, "requester", "dpo", notify=events)
    assert events.names() == ["resuming", "resumed"]  # the resumed plan covers the request
    assert outcome.plan is None and outcome.last.plan_id == plan.plan_id and outcome.last.state == "verified"
    assert engine.ledger.get_request(plan.request_id)["status"] == "completed"
    assert len(engine.ledger.find_requests(ALICE)) == 1  # no second request was made


def test_when_the_engine_takes_a_target_then_subject_and_selection_targets_both_have_its_methods(demo):
    import inspect

    from pii.engine.erasure import SubjectTarget, Target
    from pii.engine.flows import SelectionTarget

    wanted = {n for n, _ in inspect.getmembers(Target, inspect.isfunction)} | set(Target.__annotations__)
    assert {"locate", "decide", "check_holds", "lock_names", "lineage", "complete", "kind", "matcher"} <= wanted
    engine, _world = demo
    for target in (SubjectTarget(engine, ALICE), SelectionTarget(engine, in_error(engine).selection)):
        missing = sorted(n for n in wanted if not hasattr(target, n))
        assert missing == [], f"{type(target).__name__} lacks {missing}"


def test_when_a_completed_erasure_is_run_again_and_nothing_new_is_found_then_its_certificate_is_reissued(
        sqlite_url, tmp_path, monkeypatch):
    """A run killed after the ledger finished, before it printed: the re-run gives the same certificate,
    not a new request with an empty one."""
    sql_world.build(sqlite_url).dispose()
    engine = ErasureEngine(parse_config({"stores": {"crm": {"kind": "sql", "url": sqlite_url}}},
                                        tmp_path / "stores.yaml"))
    runs = RunService(engine)
    first = runs.run_through(SubjectRun(ALICE), "requester", "dpo")
    assert first.last.state == "verified" and first.last.rows > 0
    events = Events()
    again = runs.run_through(SubjectRun(ALICE), "requester", "dpo", notify=events)
    assert events == [("already_done", {"plan_id": first.plan.plan_id})]
    assert again.already == first.plan.plan_id and again.plan is None
    assert again.last.plan_id == first.plan.plan_id and again.last.state == "verified"
    assert again.last.rows == first.last.rows  # what that plan did, as the ledger recorded it
    assert len(engine.ledger.find_requests(ALICE)) == 1  # no new, empty request
    # new data about the person: a new request and plan, not the old certificate
    eng = sa.create_engine(sqlite_url)
    with eng.begin() as conn:
        conn.execute(sa.text("INSERT INTO newsletter (email, source) VALUES ('alice.smith@example.org', 'fair')"))
    eng.dispose()
    from pii.engine.discover import locate_subject as real_locate
    from pii.engine import erasure as erasure_mod

    searches = []
    monkeypatch.setattr(erasure_mod, "locate_subject",
                        lambda *a, **kw: searches.append(1) or real_locate(*a, **kw))
    fresh = runs.run_through(SubjectRun(ALICE), "requester", "dpo")
    assert fresh.already is None and fresh.plan.plan_id != first.plan.plan_id and fresh.last.state == "verified"
    assert len(searches) == 3  # the dry run's search is the plan's; then execution and verification
