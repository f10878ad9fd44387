"""Walltime-aware engines in real batch jobs: an engine asks its batch system when its job
ends (Slurm and Grid Engine of the test bed, the PBS and LSF fakes; HTCondor's from the
launcher's timelimit) and drains before; a task still running when the job is killed at its
walltime fails saying so, and does not use up its retries."""
from __future__ import annotations

import os
import re
import time

import pytest

import minipar
from fixtures.batch import job_listed, make_profile, number
from helpers import FAST_HEARTBEAT, wait_for

LIMIT = {"slurm": "1", "sge": "00:01:00", "pbs": "00:01:00", "lsf": "1", "htcondor": "60"}
"""A one-minute walltime as each system's launcher setting writes it (Slurm's shortest)."""


@pytest.mark.parametrize("system", sorted(LIMIT), indirect=True)
def test_an_engine_learns_when_its_job_ends_and_drains_before_it(system, tmp_path):
    pdir = make_profile(tmp_path, '[cluster]\nengines = "%s"\n[launcher.%s]\ntimelimit = "%s"\n'
                                  '[engine]\ndrain_before = 52\n' % (system, system, LIMIT[system]))
    cluster = minipar.Cluster(profile_dir=str(pdir), n=1, controller_args=FAST_HEARTBEAT)
    with cluster as rc:
        [engines] = cluster.engine_sets.values()
        [(eid, info)] = rc.engine_info().items()
        assert info["job"]["system"] == system and number(info["job"]["id"]) == number(engines.job_id)
        assert 35 < info["remaining"] <= 61, info
        assert info["drain_at"] == pytest.approx(info["end_time"] - 52, abs=1)
        assert rc[eid].apply_sync(os.getpid) == info["pid"]
        wait_for(lambda: eid not in rc.ids, 30, "the engine to drain and leave")
        wait_for(lambda: not job_listed(system, engines.job_id), 30, "its job to end before its walltime")
        assert time.time() < info["end_time"]
        output = "".join(open(f).read() for f in engines.output_files)
        assert "engine drained before the end of its allocation" in output, output


def walltime_victim(marker_dir):
    """Killed with its job in a PBS job; elsewhere it fails on its second attempt, then works."""
    import os
    import time
    attempt = len(os.listdir(marker_dir)) + 1
    open(os.path.join(marker_dir, str(attempt)), "w").close()
    if os.environ.get("PBS_JOBID"):
        print("started", flush=True)
        time.sleep(120)
    if attempt == 2:
        raise RuntimeError("a real failure, on attempt 2")
    return attempt


def announce_then_sleep(seconds):
    import time
    print("started", flush=True)
    time.sleep(seconds)


@pytest.mark.parametrize("system", ["pbs"], indirect=True)
def test_a_task_killed_at_its_jobs_walltime_fails_saying_so_and_keeps_its_retries(system, tmp_path, profile):
    pdir = make_profile(tmp_path, '[cluster]\nengines = "pbs"\n[launcher.pbs]\ntimelimit = "00:00:14"\n')
    cluster = minipar.Cluster(profile_dir=str(pdir), n=2, controller_args=FAST_HEARTBEAT)
    markers = tmp_path / "attempts"
    markers.mkdir()
    with cluster as rc:
        first, second = rc.ids
        direct = rc[first].apply_async(announce_then_sleep, 120)
        wait_for(lambda: direct.stdout == "started\n", 20, "the direct task to start")
        balanced = rc.load_balanced_view(retries=1).apply_async(walltime_victim, str(markers))
        wait_for(lambda: balanced.stdout == "started\n", 20, "the load-balanced task to start")
        assert balanced.engine_id == second if hasattr(balanced, "engine_id") else True
        spare = profile.engine("--profile-dir", str(pdir), "--cluster-id", cluster.cluster_id)
        with pytest.raises(minipar.EngineError) as lost:
            direct.get(timeout=40)
        assert re.search(r"engine %d died or left before finishing this task \(engine shut down: stopped by "
                         r"SIGTERM in PBS job \S+: the job reached its walltime \(\d\d:\d\d:\d\d\)\); the end of "
                         r"a batch job does not count against a task's retries" % first, str(lost.value))
        assert balanced.get(timeout=40) == 3, "lost to the walltime, failed once, then ran: its one retry kept"
        assert sorted(os.listdir(markers)) == ["1", "2", "3"]
        spare_id = [i for i, e in rc.engine_info().items() if e["job"] is None]
        assert balanced.metadata["engine_id"] in spare_id
        spare.stop()



@pytest.mark.parametrize("system", ["slurm"], indirect=True)
def test_a_job_extended_while_it_runs_moves_its_engines_end_at_the_controller(system, tmp_path):
    """An admin extends a running job (scontrol update TimeLimit=): the engine, asking its end
    again when about to drain, stays, and tells the controller, which then routes it the tasks
    with a timeout that the old end had no time for."""
    import subprocess
    pdir = make_profile(tmp_path, '[cluster]\nengines = "slurm"\n[launcher.slurm]\ntimelimit = "1"\n'
                                  '[engine]\ndrain_before = 50\n')
    cluster = minipar.Cluster(profile_dir=str(pdir), n=1, controller_args=FAST_HEARTBEAT)
    with cluster as rc:
        [engines] = cluster.engine_sets.values()
        [(eid, before)] = rc.engine_info().items()
        assert before["remaining"] <= 61 and before["drain_at"] == pytest.approx(before["end_time"] - 50, abs=1)
        waiting = rc.load_balanced_view(timeout=90).apply_async(os.getpid)
        subprocess.run(["scontrol", "update", "JobId=%s" % number(engines.job_id), "TimeLimit=3"], check=True,
                       capture_output=True, timeout=30)
        assert not waiting.done(), "no engine had 90 s before draining yet"
        wait_for(lambda: rc.engine_info()[eid]["end_time"] > before["end_time"] + 100, 40,
                 "the controller to learn the job's new end")
        after = rc.engine_info()[eid]
        assert after["drain_at"] == pytest.approx(after["end_time"] - 50, abs=1) and not after["draining"]
        assert waiting.get(timeout=20) == before["pid"]
        assert eid in rc.ids
