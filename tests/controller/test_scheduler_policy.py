"""The scheduler's policy for every scheme, without processes: assignments up to hwm,
targets, and steals by idle engines from engines stuck on a long task."""
from __future__ import annotations

import pytest

from minipar.controller.scheduler import SCHEMES, STEAL_AFTER, Steal
from minipar.controller.tasks import Task
from policy_loop import PolicyLoop, lb_task

ALL_SCHEMES = sorted(SCHEMES)


def burst(loop, n, prefix="t", now=0.0):
    for i in range(n):
        loop.submit(lb_task("%s%d" % (prefix, i)), now)


def held_by(loop, engine_id):
    return list(loop.table.engines[engine_id].outstanding)


@pytest.mark.parametrize("scheme", ALL_SCHEMES)
def test_every_scheme_fills_engines_up_to_hwm_and_no_further(scheme):
    loop = PolicyLoop(3, scheme, hwm=4)
    for engine in loop.engines:
        engine.last_answer = 0.0  # answered just now: may take more than one task
    burst(loop, 20)
    loop.schedule(now=0.01)
    assert len(loop.assigned) == 12
    assert all(e.load == 4 for e in loop.engines)
    assert len(loop.scheduler) == 8 and loop.table.stacked == 3
    assert sorted(m for m, _ in loop.assigned) == sorted("t%d" % i for i in range(12))


@pytest.mark.parametrize("scheme", ALL_SCHEMES)
def test_every_scheme_keeps_targets(scheme):
    loop = PolicyLoop(3, scheme, hwm=100)
    for i in range(30):
        loop.submit(lb_task("t%d" % i, targets={1, 2}))
    loop.schedule()
    assert {e for _, e in loop.assigned} <= {1, 2} and loop.assigned


def test_leastload_prefers_the_engine_holding_least():
    loop = PolicyLoop(3, "leastload", hwm=10)
    table = loop.table
    for i, engine in enumerate(loop.engines):
        for j in range(2 - i):
            table.assign(engine, lb_task("pre%d-%d" % (i, j)), 0.0)
    loop.submit(lb_task("next"))
    loop.schedule()
    assert loop.assigned == [("next", 2)]


def test_lru_prefers_the_engine_given_work_longest_ago():
    loop = PolicyLoop(3, "lru", hwm=10)
    for engine, when in zip(loop.engines, (3.0, 1.0, 2.0)):
        engine.last_assigned = when
    loop.submit(lb_task("next"))
    loop.schedule(now=4.0)
    assert loop.assigned == [("next", 1)]


def test_a_busy_engine_that_stopped_answering_gets_no_more_prefetch():
    loop = PolicyLoop(2, "leastload", hwm=16)
    slow, fast = loop.engines
    loop.table.assign(slow, lb_task("long"), 0.0)
    slow.last_answer = 0.0
    fast.last_answer = 10.0
    fast_task = lb_task("f0")
    loop.table.assign(fast, fast_task, 10.0)
    burst(loop, 5)
    loop.schedule(now=10.0)
    assert {e for _, e in loop.assigned} == {fast.id}


def stuck_victim(scheme, n_engines=2, queued=15, hwm=16):
    """Engine 0 runs a long task with ``queued`` prefetched behind it; the others hold nothing."""
    loop = PolicyLoop(n_engines, scheme, hwm=hwm)
    victim = loop.engines[0]
    loop.table.assign(victim, lb_task("long"), 0.0)
    for i in range(queued):
        loop.table.assign(victim, lb_task("q%d" % i), 0.0)
    return loop, victim


@pytest.mark.parametrize("scheme", ALL_SCHEMES)
def test_an_idle_engine_steals_half_the_queue_of_one_stuck_on_a_long_task(scheme):
    loop, victim = stuck_victim(scheme)
    loop.schedule(now=STEAL_AFTER / 2)
    assert not loop.steals, "not stuck long enough: its queue may drain by itself"
    assert loop.scheduler.steal_due(loop.table, STEAL_AFTER / 2) == pytest.approx(STEAL_AFTER)
    loop.schedule(now=STEAL_AFTER)
    assert len(loop.steals) == 1
    victim_id, msg_ids, thief_id = loop.steals[0]
    assert (victim_id, thief_id) == (0, 1)
    assert "long" not in msg_ids, "the oldest task is the one running: never asked for"
    assert msg_ids == ["q%d" % i for i in range(7, 15)], "the newest half; the victim keeps the older half"
    loop.schedule(now=1.0)
    assert len(loop.steals) == 1, "one steal in flight per victim and per thief"
    assert loop.scheduler.steal_due(loop.table, 1.0) is None


@pytest.mark.parametrize("scheme", ALL_SCHEMES)
def test_the_tasks_given_back_go_to_the_thief(scheme):
    loop, victim = stuck_victim(scheme)
    loop.schedule(now=1.0)
    _, msg_ids, thief_id = loop.steals[0]
    started = msg_ids[0]  # the victim had started this one meanwhile: it keeps it
    loop.give_back(victim, msg_ids[1:], now=1.0)
    thief = loop.table.engines[thief_id]
    assert held_by(loop, thief_id) == msg_ids[1:]
    assert started in victim.outstanding and victim.load == 16 - len(msg_ids) + 1
    assert all(loop.table.pending[m].engine == thief_id for m in msg_ids[1:])
    assert all(loop.table.pending[m].attempts == 2 for m in msg_ids[1:]), "re-signed when sent again"
    assert not victim.steal and not thief.stealing


def test_given_back_tasks_beyond_the_thiefs_room_queue_first():
    loop, victim = stuck_victim("leastload", hwm=16)
    loop.scheduler.hwm = 3
    loop.schedule(now=1.0)
    _, msg_ids, thief_id = loop.steals[0]
    loop.submit(lb_task("later"), now=1.0)
    loop.give_back(victim, msg_ids, now=1.0)
    assert held_by(loop, thief_id) == msg_ids[:3]
    assert [t.msg_id for t in loop.scheduler.ready][:len(msg_ids) - 3] == msg_ids[3:]
    assert loop.scheduler.holds(msg_ids[3]) and loop.scheduler.unassigned()[-1] == "later"


def test_a_thief_that_died_before_the_answer_leaves_the_tasks_queued():
    loop, victim = stuck_victim("leastload")
    loop.schedule(now=1.0)
    _, msg_ids, thief_id = loop.steals[0]
    loop.table.remove_engine(loop.table.engines[thief_id])
    loop.give_back(victim, msg_ids, now=1.0)
    assert loop.scheduler.unassigned() == msg_ids
    assert all(m not in loop.table.pending for m in msg_ids)


def test_steals_respect_targets_and_failed_depend_checks():
    loop, victim = stuck_victim("leastload", queued=0)
    pinned = Task("pinned", {}, b"c", [], lb=True, targets={0})
    refused = lb_task("refused")
    refused.unmet_on.add(1)
    free = lb_task("free")
    direct = Task("direct", {}, b"c", [], lb=False)
    for task in (pinned, refused, direct, free):
        loop.table.assign(victim, task, 0.0)
    loop.schedule(now=1.0)
    assert loop.steals == [(0, ["free"], 1)], "only load-balanced tasks the thief may run"


def test_a_task_whose_abort_was_asked_is_not_stolen():
    loop, victim = stuck_victim("leastload", queued=2)
    victim.outstanding["q1"].abort_requested = True
    loop.schedule(now=1.0)
    assert loop.steals == [(0, ["q0"], 1)]


def test_four_engines_split_a_stuck_queue_one_steal_at_a_time():
    loop, victim = stuck_victim("leastload", n_engines=4)
    loop.schedule(now=1.0)
    assert [(v, t) for v, _, t in loop.steals] == [(0, 1)]
    loop.give_back(victim, loop.steals[0][1], now=1.0)
    loop.schedule(now=1.0)
    assert [(v, t) for v, _, t in loop.steals] == [(0, 1), (0, 2)]
    loop.give_back(victim, loop.steals[1][1], now=1.0)
    loop.schedule(now=1.0)
    assert [(v, t) for v, _, t in loop.steals][-1] == (0, 3)
    loop.give_back(victim, loop.steals[2][1], now=1.0)
    queues = [loop.table.engines[i].load for i in range(4)]
    assert queues[0] == 1 + 15 - 8 - 4 - 2 and queues[1:] == [8, 4, 2]


def test_no_steal_while_the_ready_queue_feeds_the_idle_engine():
    loop, victim = stuck_victim("leastload")
    loop.submit(lb_task("waiting"), now=1.0)
    loop.schedule(now=1.0)
    assert loop.assigned == [("waiting", 1)] and not loop.steals


def test_no_steal_from_an_engine_that_holds_one_task():
    loop, victim = stuck_victim("leastload", queued=0)
    loop.schedule(now=100.0)
    assert not loop.steals and loop.scheduler.steal_due(loop.table, 100.0) is None


def test_a_victim_lost_with_a_steal_in_flight_frees_nobody_twice():
    loop, victim = stuck_victim("leastload")
    loop.schedule(now=1.0)
    held = loop.table.remove_engine(victim)
    assert len(held) == 16 and loop.table.stacked == 0 and not loop.table.pending


def test_decisions_are_steals_assigns_and_fails_only():
    loop, victim = stuck_victim("leastload")
    decisions = list(loop.scheduler.schedule(loop.table, 1.0))
    assert [type(d) for d in decisions] == [Steal]
    assert victim.steal is None, "the policy decides; only the loop changes engine state"
