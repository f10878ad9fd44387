"""Walltime-aware engines with real processes: an engine told when its allocation ends
(engine.end_time) drains drain_before seconds earlier, gives back what it had not started,
finishes what it runs and leaves; tasks with a timeout avoid engines that drain too soon.

The batch systems' own walltimes (Slurm, Grid Engine, the PBS fake) are in
test_walltime_batch.py; the policy, without processes, in test_scheduler_walltime.py."""
from __future__ import annotations

import os
import re
import signal
import time

import pytest

import minipar
from helpers import wait_for


def nap(seconds):
    import time
    time.sleep(seconds)
    return seconds


def engine_with(rc, **wanted):
    """The id of the one registered engine whose engine_info matches ``wanted``."""
    found = [i for i, e in rc.engine_info().items() if all(e.get(k) == v for k, v in wanted.items())]
    assert len(found) == 1, rc.engine_info()
    return found[0]


def two_engines(profile, drain_in, end_in=60.0):
    """A controller, an engine that drains ``drain_in`` s from now (its allocation ending
    ``end_in`` s from now) and one that never does; the client and both ids."""
    profile.controller()
    end = time.time() + end_in
    ending = profile.engine("--end-time=%f" % end, "--drain-before=%f" % (end_in - drain_in))
    profile.engine()
    rc = profile.client()
    rc.wait_for_engines(2, timeout=30)
    return rc, ending, engine_with(rc, end_time=pytest.approx(end, abs=1e-3)), engine_with(rc, end_time=None)


def test_engine_info_shows_when_an_engine_drains(profile):
    rc, _, ending, lasting = two_engines(profile, drain_in=40.0)
    info = rc.engine_info()
    assert info[ending]["drain_at"] == pytest.approx(info[ending]["end_time"] - 20.0, abs=0.5)
    assert 55 < info[ending]["remaining"] <= 60
    assert info[ending]["draining"] is False and info[ending]["job"] is None
    assert info[lasting]["drain_at"] is None and info[lasting]["remaining"] is None
    assert set(info[lasting]) >= {"host", "pid", "uuid", "tags", "load", "completed"}


def test_a_draining_engine_gives_its_queued_tasks_to_others_and_finishes_the_running_one(profile):
    rc, proc, ending, lasting = two_engines(profile, drain_in=3.5)
    drain_at = rc.engine_info(ending)[ending]["drain_at"]
    assert drain_at - time.time() > 2, "the engine registered too late to see it work before draining"
    ar = rc.load_balanced_view().map_async(nap, [0.05] * 180)
    assert ar.get(timeout=60) == [0.05] * 180
    ran_there = [md["started"].timestamp() for md in ar.metadata if md["engine_id"] == ending]
    assert ran_there, "the draining engine ran nothing: the test shows nothing"
    assert max(ran_there) < drain_at + 0.2, "a task started on the engine after it drained"
    assert sum(md["engine_id"] == lasting for md in ar.metadata) > len(ran_there)
    assert proc.wait(20) == 0
    wait_for(lambda: ending not in rc.ids, 10, "the drained engine to unregister")
    controller_log = profile.procs[0].output()
    given_back = re.search(r"engine %d drains before its job ends \(.*\): (\d+) unstarted tasks go elsewhere"
                           % ending, controller_log)
    assert given_back and int(given_back.group(1)) > 0, controller_log
    assert "engine %d unregistered: engine drained before the end of its allocation" % ending in controller_log


def test_direct_tasks_on_a_draining_engine_fail_saying_so_and_the_running_one_finishes(profile):
    rc, proc, ending, _ = two_engines(profile, drain_in=3.0)
    drain_at = rc.engine_info(ending)[ending]["drain_at"]
    running = rc[ending].apply_async(nap, drain_at - time.time() + 1.5)
    queued = rc[ending].apply_async(nap, 0)
    wait_for(lambda: rc.engine_info().get(ending, {}).get("draining"), 15, "the engine to drain")
    with pytest.raises(minipar.EngineError, match=r"engine %d drained before its job ends .* and did not run "
                                                  r"this task, which only it could run" % ending):
        queued.get(timeout=10)
    with pytest.raises(minipar.EngineError, match="engine %d is draining before its job ends .*: it takes no new "
                                                  "tasks" % ending):
        rc[ending].apply_sync(nap, 0)
    assert running.get(timeout=15) > 0
    assert running.metadata["engine_id"] == ending
    assert proc.wait(20) == 0


def test_a_task_with_a_timeout_goes_only_where_it_can_run_that_long(profile):
    rc, _, ending, lasting = two_engines(profile, drain_in=30.0)
    long_ones = rc.load_balanced_view(timeout=45).map_async(nap, [0.02] * 40)
    short_ones = rc.load_balanced_view(timeout=5).map_async(nap, [0.02] * 40)
    assert long_ones.get(timeout=30) == [0.02] * 40 and short_ones.get(timeout=30) == [0.02] * 40
    assert {md["engine_id"] for md in long_ones.metadata} == {lasting}
    assert ending in {md["engine_id"] for md in short_ones.metadata}


def test_a_task_no_engine_has_time_for_fails_with_task_timeout_once_its_timeout_passes(profile):
    profile.controller()
    profile.engine("--end-time=+60", "--drain-before=58")
    rc = profile.client()
    rc.wait_for_engines(1, timeout=30)
    ar = rc.load_balanced_view(timeout=4).apply_async(nap, 0)
    with pytest.raises(minipar.TaskTimeout, match=r"no engine with 4s left before it drains for the end of its "
                                                  r"job took it within 4s"):
        ar.get(timeout=20)


def test_an_end_time_that_cannot_be_read_is_refused_at_start_naming_the_forms(profile):
    profile.controller()
    engine = profile.engine("--end-time=teatime")
    rc = profile.client()
    rc.wait_for_engines(1, timeout=30)
    assert rc.engine_info()[rc.ids[0]]["end_time"] is None
    assert "engine.end_time: 'teatime' is not an end time: give seconds since the epoch" in engine.output()


def test_a_job_shorter_than_drain_before_drains_halfway_and_says_so(profile):
    profile.controller()
    engine = profile.engine("--end-time=+20", "--drain-before=300")
    rc = profile.client()
    rc.wait_for_engines(1, timeout=30)
    info = rc.engine_info()[rc.ids[0]]
    assert 7 < info["drain_at"] - time.time() < 10.5
    wait_for(lambda: "sooner than engine.drain_before (300s): it drains halfway to its end" in engine.output(),
             10, "the warning")


def lost_then_fails_then_works(marker_dir):
    """Prints its engine's pid and sleeps on attempt 1 (to be killed), fails on 2, returns 3."""
    import os
    import time
    attempt = len(os.listdir(marker_dir)) + 1
    open(os.path.join(marker_dir, str(attempt)), "w").close()
    if attempt == 1:
        print(os.getpid(), flush=True)
        time.sleep(120)
    if attempt == 2:
        raise RuntimeError("a real failure, on attempt 2")
    return attempt


@pytest.mark.parametrize("killed_after_the_end", [True, False])
def test_an_engine_killed_silently_at_its_allocations_end_costs_its_task_no_retry(profile, tmp_path,
                                                                                 killed_after_the_end):
    """An engine deaf to SIGTERM is killed with its nanny when the allocation ends (the batch
    system's KillWait): nobody reports it, its heartbeats stop. Past its end time that is the
    job's end, not the task's fault; before it, a crash like any other, which uses a retry."""
    controller = profile.controller()
    end = time.time() + (3.0 if killed_after_the_end else 3600.0)
    doomed = profile.engine("--end-time=%f" % end, "--drain-before=0")
    rc = profile.client()
    rc.wait_for_engines(1, timeout=30)
    markers = tmp_path / "attempts"
    markers.mkdir()
    ar = rc.load_balanced_view(retries=1).apply_async(lost_then_fails_then_works, str(markers))
    wait_for(lambda: ar.stdout.strip().isdigit(), 20, "the task to start")
    engine_pid = int(ar.stdout)
    if killed_after_the_end:
        wait_for(lambda: time.time() > end, 10, "the end of the allocation")
    os.kill(doomed.popen.pid, signal.SIGKILL)  # the nanny first: nothing is left to report the engine
    os.kill(engine_pid, signal.SIGKILL)
    spare = profile.engine()
    if killed_after_the_end:
        assert ar.get(timeout=30) == 3, "lost to the allocation's end, failed once, then ran: its one retry kept"
        assert sorted(os.listdir(markers)) == ["1", "2", "3"]
    else:
        with pytest.raises(minipar.RemoteError, match="a real failure, on attempt 2"):
            ar.get(timeout=30)
        assert sorted(os.listdir(markers)) == ["1", "2"]
    said = "no heartbeat for 4 periods of 0.2s, after the end of its allocation at "
    assert (said in controller.output()) == killed_after_the_end, controller.output()[-2000:]
    spare.stop()
