"""Load-balancing schemes, dependencies, retries, aborts and queue status in the controller."""
from __future__ import annotations

import os
import signal
import time

import pytest

import minipar
from helpers import announce_then_sleep, print_pid_then_sleep, start_cluster, wait_for
from minipar.dependency import Dependency


def slow(seconds, value=None):
    import time
    time.sleep(seconds)
    return value


def fail(message="planned"):
    raise ValueError(message)


def pid():
    import os
    return os.getpid()


@pytest.fixture(scope="module")
def cluster3(tmp_path_factory):
    from helpers import Profile
    p = Profile(tmp_path_factory.mktemp("sched"))
    rc, engines = start_cluster(p, 3)
    rc.profile = p
    yield rc
    p.stop_all()


@pytest.mark.parametrize("scheme", ["leastload", "lru", "twobin", "weighted", "plainrandom"])
def test_every_scheme_runs_everything(profile, scheme):
    rc, _ = start_cluster(profile, 2, "--controller.scheme=%s" % scheme)
    lv = rc.load_balanced_view()
    assert lv.map_sync(lambda x: x * 3, range(60)) == [x * 3 for x in range(60)]
    engines = {ar.get(10) for ar in [lv.apply_async(slow, 0.05, 0) for _ in range(1)]}
    assert engines == {0}
    assert "Task scheduler: %s" % scheme in (profile.dir / "log" / "controller.log").read_text()


def test_unknown_scheme_is_refused(profile):
    ctl = profile.controller("--controller.scheme=fastest", wait=False)
    assert ctl.wait() == 2
    assert "controller.scheme" in ctl.output() and "leastload" in ctl.output()


def test_targets_restrict_load_balancing(cluster3):
    lv = cluster3.load_balanced_view(targets=[1, 2])
    pids = set(lv.map_sync(lambda x: pid(), range(20)))
    allowed = set(cluster3[[1, 2]].apply_sync(pid))
    assert pids <= allowed


def test_after_waits_for_the_tasks(cluster3):
    lv = cluster3.load_balanced_view()
    first = lv.apply_async(slow, 0.5, "first")
    with lv.temp_flags(after=first):
        second = lv.apply_async(time.time)
    assert second.get(10) >= first.metadata["completed"].timestamp() - 0.01
    assert first.get() == "first"


def test_follow_runs_where_the_task_ran(cluster3):
    lv = cluster3.load_balanced_view()
    ar = lv.apply_async(pid)
    where = ar.get(10)
    followers = []
    for _ in range(6):
        with lv.temp_flags(follow=ar):
            followers.append(lv.apply_async(pid))
    assert {f.get(10) for f in followers} == {where}


def test_failed_dependency_is_impossible(cluster3):
    lv = cluster3.load_balanced_view()
    bad = lv.apply_async(fail)
    with lv.temp_flags(after=bad):
        dependent = lv.apply_async(pid)
    with pytest.raises(minipar.ImpossibleDependency) as info:
        dependent.get(10)
    assert info.value.ename == "ImpossibleDependency" and isinstance(info.value, minipar.RemoteError)
    with lv.temp_flags(after=Dependency(bad, failure=True, success=False)):
        on_failure = lv.apply_async(lambda: "ran because it failed")
    assert on_failure.get(10) == "ran because it failed"


def test_any_dependency_needs_one(cluster3):
    lv = cluster3.load_balanced_view()
    bad = lv.apply_async(fail)
    good = lv.apply_async(slow, 0.2, 1)
    with lv.temp_flags(after=Dependency([bad, good], all=False)):
        ar = lv.apply_async(lambda: "one was enough")
    assert ar.get(10) == "one was enough"


def test_dependency_timeout(cluster3):
    lv = cluster3.load_balanced_view()
    long = lv.apply_async(slow, 3)
    with lv.temp_flags(after=long, timeout=0.3):
        ar = lv.apply_async(pid)
    with pytest.raises(minipar.DependencyTimeout) as info:
        ar.get(10)
    assert info.value.ename == "TaskTimeout" and isinstance(info.value, minipar.TaskTimeout)
    assert "0.3s" in info.value.evalue
    long.get(10)


def test_unknown_dependency_is_invalid(cluster3):
    lv = cluster3.load_balanced_view()
    with lv.temp_flags(after=["no-such-task"]):
        ar = lv.apply_async(pid)
    with pytest.raises(minipar.InvalidDependency) as info:
        ar.get(10)
    assert info.value.ename == "InvalidDependency"
    assert "no-such-task" in info.value.evalue


def test_unmet_depend_moves_to_another_engine_or_is_impossible(cluster3):
    target_pid = cluster3[2].apply_sync(pid)

    def only_on(p):
        import os
        return os.getpid() == p

    on_engine_2 = minipar.depend(only_on, target_pid)(pid)
    lv = cluster3.load_balanced_view()
    assert {lv.apply_async(on_engine_2).get(10) for _ in range(4)} == {target_pid}
    nowhere = minipar.depend(only_on, -1)(pid)
    with lv.temp_flags(targets=cluster3.ids):
        with pytest.raises(minipar.RemoteError) as info:
            lv.apply_async(nowhere).get(10)
    assert info.value.ename == "ImpossibleDependency"
    assert "@depend check failed on every engine" in info.value.evalue


def flaky(marker):
    import os
    if not os.path.exists(marker):
        open(marker, "w").close()
        raise RuntimeError("first attempt fails")
    return "second attempt works"


def test_retries_resubmit_a_failed_task(cluster3, tmp_path):
    lv = cluster3.load_balanced_view()
    with lv.temp_flags(retries=1):
        assert lv.apply_async(flaky, str(tmp_path / "m1")).get(10) == "second attempt works"
    with pytest.raises(minipar.RemoteError, match="first attempt fails"):
        lv.apply_async(flaky, str(tmp_path / "m2")).get(10)


def test_retries_survive_a_dead_engine(profile):
    rc, engines = start_cluster(profile, 2)
    engine_pids = set(rc[:].apply_sync(os.getpid))
    lv = rc.load_balanced_view()
    with lv.temp_flags(retries=1):
        ar = lv.apply_async(print_pid_then_sleep, 0.5)
    wait_for(lambda: ar.stdout.strip().isdigit(), 20, "the task to print its pid")
    first = int(ar.stdout)
    os.kill(first, signal.SIGKILL)
    second = ar.get(20)
    assert second != first and second in engine_pids
    with lv.temp_flags(retries=0):
        doomed = lv.apply_async(print_pid_then_sleep, 5)
    wait_for(lambda: doomed.stdout.strip().isdigit(), 20, "the task to print its pid")
    os.kill(int(doomed.stdout), signal.SIGKILL)
    with pytest.raises(minipar.EngineError):
        doomed.get(20)


def test_abort_queued_tasks(cluster3):
    view = cluster3[0]
    blocker = view.apply_async(announce_then_sleep, 1)
    wait_for(lambda: blocker.stdout == "started\n", 20, "the blocker to start")
    queued = [view.apply_async(pid) for _ in range(3)]
    cluster3.abort(queued[1:])
    assert queued[0].get(10) > 0
    for ar in queued[1:]:
        with pytest.raises(minipar.TaskAborted) as info:
            ar.get(10)
        assert info.value.ename == "TaskAborted"
    assert blocker.get(10) == "slept"


def test_abort_in_the_hub(cluster3):
    lv = cluster3.load_balanced_view()
    long = lv.apply_async(slow, 2)
    with lv.temp_flags(after=long):
        waiting = lv.apply_async(pid)
    status = cluster3.queue_status(verbose=True)
    assert status["unassigned"] == [waiting.msg_ids[0]], (status, long.msg_ids)
    cluster3.abort(waiting)
    with pytest.raises(minipar.RemoteError) as info:
        waiting.get(10)
    assert info.value.ename == "TaskAborted"
    assert cluster3.queue_status()["unassigned"] == 0
    long.get(10)


def test_queue_status(cluster3):
    before = cluster3.queue_status()
    assert set(before) == {0, 1, 2, "unassigned"}
    blocker = cluster3[1].apply_async(announce_then_sleep, 1)
    wait_for(lambda: blocker.stdout == "started\n", 20, "the blocker to start")
    queued = [cluster3[1].apply_async(pid) for _ in range(2)]
    status = cluster3.queue_status()
    assert status[1]["queue"] == 3 and status[1]["tasks"] == 0
    verbose = cluster3.queue_status(targets=[1], verbose=True)
    assert sorted(verbose[1]["queue"]) == sorted([blocker.msg_ids[0]] + [a.msg_ids[0] for a in queued])
    assert cluster3.queue_status(targets=1)["queue"] == 3
    for ar in [blocker] + queued:
        ar.get(10)
    after = cluster3.queue_status()
    assert after[1]["queue"] == 0 and after[1]["completed"] == before[1]["completed"] + 3


def test_clear_empties_namespaces(cluster3):
    cluster3[:].push({"leftover": 1}, block=True)
    cluster3.clear(targets=[0, 1])
    with pytest.raises(minipar.CompositeError):
        cluster3[[0, 1]].pull("leftover", block=True)
    assert cluster3[2].pull("leftover", block=True) == 1


def test_send_signal_interrupts_a_busy_engine(cluster3):
    ar = cluster3[2].apply_async(announce_then_sleep, 60)
    wait_for(lambda: ar.stdout == "started\n", 20, "the task to start")
    cluster3.send_signal(signal.SIGINT, targets=[2])
    with pytest.raises(minipar.RemoteError) as info:
        ar.get(10)
    assert info.value.ename == "KeyboardInterrupt"
    assert cluster3[2].apply_sync(pid) > 0


def test_client_executor(cluster3):
    import concurrent.futures
    with cluster3.executor() as ex:
        assert isinstance(ex, concurrent.futures.Executor)
        assert ex.submit(pow, 2, 5).result(10) == 32
        assert list(ex.map(abs, [-1, -2, -3], timeout=10)) == [1, 2, 3]
    pinned = cluster3.executor(targets=[1])
    assert pinned.submit(pid).result(10) == cluster3[1].apply_sync(pid)


def test_a_dependency_on_a_task_the_scheduler_forgot_is_looked_up_in_the_database(profile):
    from minipar.controller.scheduler import FINISHED_MEMORY
    rc, _ = start_cluster(profile, 2, "--db.dict.record_limit=0")
    lv = rc.load_balanced_view()
    first = lv.apply_async(pid)
    where = first.get(10)
    lv.map_sync(lambda x: x, range(FINISHED_MEMORY + 50))  # pushes `first` out of the scheduler's memory
    with lv.temp_flags(after=first, follow=first):
        followers = [lv.apply_async(pid) for _ in range(4)]
    assert [f.get(20) for f in followers] == [where] * 4


def test_with_nodb_a_dependency_on_a_forgotten_task_is_invalid(profile):
    from minipar.controller.scheduler import FINISHED_MEMORY
    rc, _ = start_cluster(profile, 2, "--nodb")
    lv = rc.load_balanced_view()
    first = lv.apply_async(pid)
    first.get(10)
    lv.map_sync(lambda x: x, range(FINISHED_MEMORY + 50))
    with lv.temp_flags(after=first):
        late = lv.apply_async(pid)
    with pytest.raises(minipar.InvalidDependency) as info:
        late.get(20)
    assert "does not know" in str(info.value) and str(info.value).count(first.msg_ids[0]) == 1
