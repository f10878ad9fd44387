"""A @depend check no current engine meets waits for one that may still register, as in
ipyparallel: bounded by the task's timeout (TaskTimeout), failing at once only when its
targets were given and every one of them rejected it."""
from __future__ import annotations

import os
import time

import pytest

import minipar
from helpers import Proc, start_cluster, wait_for
from minipar.controller.tasks import Task
from policy_loop import PolicyLoop

ROLE = "MINIPAR_TEST_ENGINE_ROLE"


def has_role(role):
    import os
    return os.environ.get("MINIPAR_TEST_ENGINE_ROLE") == role


def whoami():
    import os
    return os.environ.get("MINIPAR_TEST_ENGINE_ROLE"), os.getppid()  # the launched process


def start_engine_with_role(profile, role) -> Proc:
    env = dict(profile.env, **{ROLE: role})
    proc = Proc(["-m", "minipar.engine"], env, profile.tmp / ("engine-%s.out" % role))
    profile.procs.append(proc)
    return proc


def rejected_once(rc, engine_ids, before):
    """True once every engine in engine_ids has answered one more task than before, and one
    task is still held by the controller: the rejection reached it and the task waits."""
    status = rc.queue_status()
    done = all(status[e]["completed"] > before[e] for e in engine_ids)
    return done and status["unassigned"] == 1


def completed(rc):
    return {e: s["completed"] for e, s in rc.queue_status().items() if e != "unassigned"}


def test_waits_for_an_engine_that_meets_it_and_runs_there(profile):
    rc, _ = start_cluster(profile, 2)
    lview = rc.load_balanced_view()
    before = completed(rc)
    with lview.temp_flags(timeout=60):
        ar = lview.apply_async(minipar.depend(has_role, "gpu")(whoami))
    wait_for(lambda: rejected_once(rc, [0, 1], before), 20, "both engines to reject the task")
    assert not ar.ready()
    assert rc.queue_status()["unassigned"] == 1
    gpu = start_engine_with_role(profile, "gpu")
    role, pid = ar.get(30)
    assert (role, pid) == ("gpu", gpu.pid)
    assert ar.engine_id == 2


def test_a_parked_task_can_be_aborted(profile):
    rc, _ = start_cluster(profile, 1)
    lview = rc.load_balanced_view()
    before = completed(rc)
    ar = lview.apply_async(minipar.depend(has_role, "never")(whoami))
    wait_for(lambda: rejected_once(rc, [0], before), 20, "the engine to reject the task")
    rc.abort(ar)
    with pytest.raises(minipar.TaskAborted):
        ar.get(10)
    assert rc.queue_status()["unassigned"] == 0


@pytest.fixture(scope="module")
def plain2(tmp_path_factory):
    from helpers import Profile
    p = Profile(tmp_path_factory.mktemp("depend"))
    rc, _ = start_cluster(p, 2)
    yield rc
    p.stop_all()


def test_with_a_timeout_it_fails_with_task_timeout_once_the_timeout_runs_out(plain2):
    lview = plain2.load_balanced_view()
    start = time.monotonic()
    with lview.temp_flags(timeout=1.0):
        ar = lview.apply_async(minipar.depend(has_role, "gpu")(whoami))
    with pytest.raises(minipar.TaskTimeout) as info:
        ar.get(20)
    waited = time.monotonic() - start
    assert waited >= 1.0, "failed after %.2fs, before its timeout" % waited
    err = info.value
    assert err.ename == "TaskTimeout"
    for cls in (minipar.DependencyTimeout, minipar.ImpossibleDependency, minipar.UnmetDependency,
                minipar.RemoteError):
        assert isinstance(err, cls), cls
    assert "within 1s" in err.evalue and "[0, 1]" in err.evalue
    assert plain2.queue_status()["unassigned"] == 0


def test_targets_that_all_reject_it_fail_it_at_once(plain2):
    lview = plain2.load_balanced_view()
    for targets in ([0, 1], [1]):
        with lview.temp_flags(targets=targets):
            ar = lview.apply_async(minipar.depend(has_role, "gpu")(whoami))
        with pytest.raises(minipar.ImpossibleDependency) as info:
            ar.get(20)
        assert info.value.ename == "ImpossibleDependency"
        assert "failed on every engine it may run on (targets %s" % targets in info.value.evalue


def test_a_check_met_somewhere_still_runs_there(plain2):
    target_pid = plain2[1].apply_sync(os.getppid)

    def on_pid(p):
        import os
        return os.getppid() == p

    lview = plain2.load_balanced_view()
    with lview.temp_flags(timeout=30):
        ars = [lview.apply_async(minipar.depend(on_pid, target_pid)(whoami)) for _ in range(4)]
    assert {ar.get(20)[1] for ar in ars} == {target_pid}


# -- the policy, without processes -----------------------------------------------------------------


def policy(n_engines):
    loop = PolicyLoop(n_engines, hwm=1)
    return loop, loop.scheduler, loop.engines


def test_policy_parks_a_task_every_engine_rejected_and_a_new_engine_gets_it():
    loop, sched, engines = policy(2)
    task = Task("t", {}, b"c", [], lb=True)
    loop.submit(task)
    for engine in engines:
        loop.schedule()
        assert loop.assigned[-1] == ("t", engine.id)
        loop.reject(engine, task)
    loop.schedule()
    assert list(sched.parked) == ["t"] and not loop.failed
    assert sched.unassigned() == ["t"] and len(sched) == 1 and sched.holds("t")
    sched.engine_registered(0)  # a new process under a reused id has not rejected it
    assert not sched.parked and task.unmet_on == {1}
    loop.schedule()
    assert loop.assigned[-1] == ("t", 0)


def test_policy_timeout_fails_a_parked_task_and_one_queued_after_rejections():
    loop, sched, engines = policy(2)
    parked = Task("parked", {}, b"c", [], lb=True)
    parked.timeout = 5.0
    loop.submit(parked)
    for engine in engines:
        loop.schedule()
        loop.reject(engine, parked)
    loop.schedule()
    assert "parked" in sched.parked
    queued = Task("queued", {}, b"c", [], lb=True)
    queued.timeout = 5.0
    loop.submit(queued)
    loop.schedule()
    busy = engines[loop.assigned[-1][1]]
    loop.reject(busy, queued)
    other = engines[1 - busy.id]
    loop.table.assign(other, Task("filler", {}, b"c", [], lb=True), 0.0)  # the other engine is busy
    loop.schedule()
    assert queued in sched.ready and sched.holds("queued")
    plain = Task("plain", {}, b"c", [], lb=True)
    plain.timeout = 0.1
    loop.submit(plain)
    loop.carry_out(sched.check_timeouts(time.monotonic() + 10))
    assert sorted((m, e) for m, e, _ in loop.failed) == [("parked", "TaskTimeout"), ("queued", "TaskTimeout")]
    assert sched.unassigned() == ["plain"], "a task only waiting for a free engine is not timed out"
    loop.answer("filler")
    loop.schedule()
    assert [m for m, _ in loop.assigned[-1:]] == ["plain"]
    assert len(sched) == 0


def test_policy_targets_all_rejecting_fail_at_once():
    loop, sched, engines = policy(3)
    task = Task("t", {}, b"c", [], lb=True, targets={0, 2})
    loop.submit(task)
    for _ in range(2):
        loop.schedule()
        loop.reject(engines[loop.assigned[-1][1]], task)
    loop.schedule()
    assert {e for _, e in loop.assigned} == {0, 2}
    assert loop.failed and loop.failed[0][:2] == ("t", "ImpossibleDependency")
    assert not sched.parked and len(sched) == 0
