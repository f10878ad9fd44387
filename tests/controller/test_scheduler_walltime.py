"""The scheduler's policy for engines that drain before their batch job ends and for tagged
engines, without processes: who may get a task, who may steal it, and what a task that no
engine may take waits for."""
from __future__ import annotations

import pytest

from minipar.controller.scheduler import SCHEMES, STEAL_AFTER
from policy_loop import PolicyLoop, lb_task

ALL_SCHEMES = sorted(SCHEMES)


def loop_of(*engines, scheme="leastload", hwm=4):
    """A loop whose engines are given as (tags, drain_at) pairs, ids from 0."""
    loop = PolicyLoop(0, scheme, hwm=hwm)
    for i, (tags, drain_at) in enumerate(engines):
        loop.add_engine(i, tags, drain_at)
    return loop


@pytest.mark.parametrize("scheme", ALL_SCHEMES)
def test_a_draining_engine_gets_nothing_new(scheme):
    loop = loop_of(((), None), ((), None), scheme=scheme, hwm=100)
    loop.table.close_engine(loop.table.engines[0])
    for i in range(20):
        loop.submit(lb_task("t%d" % i))
        loop.schedule()
    assert {e for _, e in loop.assigned} == {1}


@pytest.mark.parametrize("scheme", ALL_SCHEMES)
def test_tagged_tasks_go_only_to_engines_with_every_tag(scheme):
    loop = loop_of((("gpu",), None), (("gpu", "bigmem"), None), ((), None), scheme=scheme, hwm=100)
    for i in range(30):
        loop.submit(lb_task("g%d" % i, tags={"gpu"}))
        loop.submit(lb_task("b%d" % i, tags={"gpu", "bigmem"}))
        loop.submit(lb_task("any%d" % i))
        loop.schedule()
    where = {}
    for msg_id, engine in loop.assigned:
        where.setdefault(msg_id.rstrip("0123456789"), set()).add(engine)
    assert where["g"] <= {0, 1} and where["b"] == {1} and where["any"]


def test_a_tagged_task_waits_for_an_engine_with_its_tags_then_runs_there():
    loop = loop_of(((), None))
    loop.submit(lb_task("gpu-work", tags={"gpu"}))
    loop.schedule()
    assert loop.assigned == [] and loop.failed == []
    assert loop.scheduler.parked["gpu-work"].waits_for == "tags"
    loop.add_engine(7, ("gpu",))
    loop.schedule()
    assert loop.assigned == [("gpu-work", 7)]


def test_a_tagged_task_no_engine_takes_within_its_timeout_fails_naming_the_tags():
    loop = loop_of(((), None))
    loop.submit(lb_task("gpu-work", tags={"gpu", "a100"}, timeout=5.0), now=0.0)
    loop.schedule(now=0.0)
    loop.carry_out(loop.scheduler.check_timeouts(5.1))
    assert loop.failed == [("gpu-work", "TaskTimeout", "no engine with tags ['a100', 'gpu'] took it within 5s")]


def test_a_task_with_a_timeout_avoids_engines_that_drain_within_it():
    loop = loop_of(((), 100.0), ((), None), ((), 200.0), hwm=100)
    for i in range(10):
        loop.submit(lb_task("long%d" % i, timeout=150.0), now=0.0)
        loop.schedule(now=0.0)
    assert {e for _, e in loop.assigned} <= {1, 2}
    loop.assigned.clear()
    for i in range(10):
        loop.submit(lb_task("short%d" % i, timeout=50.0), now=0.0)
        loop.schedule(now=0.0)
    assert 0 in {e for _, e in loop.assigned}


def test_a_task_with_a_timeout_no_engine_has_time_for_waits_then_fails_saying_why():
    loop = loop_of(((), 10.0))
    loop.submit(lb_task("long", timeout=30.0), now=0.0)
    loop.schedule(now=0.0)
    assert loop.assigned == [] and loop.scheduler.parked["long"].waits_for == "walltime"
    loop.carry_out(loop.scheduler.check_timeouts(30.5))
    assert loop.failed == [("long", "TaskTimeout", "no engine with 30s left before it drains for the end of its "
                                                   "job took it within 30s")]


def test_a_replacement_engine_takes_the_task_waiting_for_walltime():
    loop = loop_of(((), 10.0))
    loop.submit(lb_task("long", timeout=30.0), now=0.0)
    loop.schedule(now=0.0)
    loop.add_engine(1, (), 500.0)
    loop.schedule(now=1.0)
    assert loop.assigned == [("long", 1)]


def test_an_extended_engine_takes_the_task_waiting_for_walltime_and_a_tagged_one_still_waits():
    loop = loop_of(((), 10.0))
    loop.submit(lb_task("long", timeout=30.0), now=0.0)
    loop.submit(lb_task("gpu-work", tags={"gpu"}), now=0.0)
    loop.schedule(now=0.0)
    assert loop.assigned == [] and set(loop.scheduler.parked) == {"long", "gpu-work"}
    loop.table.set_drain_at(loop.table.engines[0], 500.0)
    loop.scheduler.walltime_extended()
    loop.schedule(now=1.0)
    assert loop.assigned == [("long", 0)] and list(loop.scheduler.parked) == ["gpu-work"]
    assert loop.table.ending == 1


def test_a_task_that_waits_does_not_hold_up_those_behind_it():
    loop = loop_of(((), None))
    loop.submit(lb_task("gpu-work", tags={"gpu"}))
    loop.submit(lb_task("plain"))
    loop.schedule()
    assert loop.assigned == [("plain", 0)]


def test_targets_that_all_drain_make_the_task_impossible():
    loop = loop_of(((), None), ((), None))
    loop.table.close_engine(loop.table.engines[0])
    loop.submit(lb_task("pinned", targets={0}))
    loop.schedule()
    assert [f[:2] for f in loop.failed] == [("pinned", "ImpossibleDependency")]


def stuck(loop, victim_id, tasks, now=0.0):
    """Engine victim_id runs a long task with ``tasks`` queued behind it, since ``now``."""
    victim = loop.table.engines[victim_id]
    loop.table.assign(victim, lb_task("long"), now)
    for task in tasks:
        loop.table.assign(victim, task, now)
    return victim


def test_only_an_engine_that_may_run_them_steals_queued_tasks():
    loop = loop_of(((), None), ((), None), (("gpu",), None), hwm=16)
    stuck(loop, 0, [lb_task("g%d" % i, tags={"gpu"}) for i in range(4)])
    loop.schedule(now=STEAL_AFTER + 0.01)
    assert [(v, t) for v, _, t in loop.steals] == [(0, 2)]


def test_a_draining_engine_or_one_that_drains_too_soon_does_not_steal():
    loop = loop_of(((), None), ((), None), ((), 1.0), hwm=16)
    loop.table.close_engine(loop.table.engines[1])
    stuck(loop, 0, [lb_task("t%d" % i, timeout=60.0) for i in range(4)])
    loop.schedule(now=STEAL_AFTER + 0.01)
    assert loop.steals == []


def test_tasks_given_back_by_a_draining_engine_go_to_others_first():
    loop = loop_of(((), None), ((), None), hwm=16)
    victim = stuck(loop, 0, [lb_task("q%d" % i) for i in range(3)])
    loop.submit(lb_task("later"))
    loop.table.close_engine(victim)
    loop.scheduler.returned(loop.table.take_back(victim, ["q0", "q1", "q2"]))
    loop.schedule(now=1.0)
    assert [m for m, _ in loop.assigned][:1] == ["q0"] and {e for _, e in loop.assigned} == {1}
