"""Fake PBS/Torque, LSF, HTCondor and Windows HPC commands that really run their jobs.

``bin/`` holds qsub qstat qselect qdel qsig (pbs.py), bsub bjobs bkill (lsf.py),
condor_submit condor_q condor_rm (htcondor.py) and job (windowshpc.py: job submit, view, list,
cancel); each module's docstring says what its formats are based on, and common.py how jobs
run. Each answers the lookups by job name that launchers make when a submit command printed
no job id they could read (qselect -N, bjobs -J, condor_q -constraint, job list /jobname:). Settings, from the environment of each command:

    FAKE_BATCH_SPOOL        directory holding the jobs (required; exit 2 without it)
    FAKE_BATCH_KILL_DELAY   seconds between the polite signals and SIGKILL (default 2)
    FAKE_BATCH_START_DELAY  seconds a job stays queued before it starts (default 0)
    FAKE_BATCH_PYTHON       interpreter the bin/ shims run (default python3 on PATH)
    FAKE_PBS_FLAVOR         torque (default) or pbspro
    FAKE_PBS_SERVER         server name in PBS job ids (default fakeserver)
    FAKE_LSF_CLEAN_PERIOD   seconds bjobs keeps showing finished jobs (default 3600)
    FAKE_WINHPC_SCHEDULER   a head node name /scheduler: accepts besides this host's (default none)

Run commands with the environment from ``fake_batch_env`` and stop what is left with
``stop_all_jobs``, for instance in a fixture::

    @pytest.fixture
    def batch_env(tmp_path):
        env = fake_batch_env(tmp_path, kill_delay=0.3)
        yield env
        stop_all_jobs(env)

This module is imported by every fake command too, so it uses the standard library only.
"""
from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

BIN_DIR = Path(__file__).resolve().parent / "bin"


def fake_batch_env(tmp_path, kill_delay=None, start_delay=None, pbs_flavor=None, base=None) -> dict:
    """A copy of ``base`` (default os.environ) with the fakes first on PATH, a fresh spool in
    tmp_path, and the fakes run by this interpreter. ``kill_delay``: seconds between the polite
    signal and SIGKILL (default 2); ``start_delay``: seconds jobs stay queued (default 0);
    ``pbs_flavor``: "torque" (default) or "pbspro"."""
    spool = Path(tmp_path) / "fake-batch-spool"
    spool.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ if base is None else base)
    env["PATH"] = os.pathsep.join([str(BIN_DIR)] + [p for p in env.get("PATH", "").split(os.pathsep) if p])
    env.update(FAKE_BATCH_SPOOL=str(spool), FAKE_BATCH_PYTHON=sys.executable)
    for name, value in (("FAKE_BATCH_KILL_DELAY", kill_delay), ("FAKE_BATCH_START_DELAY", start_delay),
                        ("FAKE_PBS_FLAVOR", pbs_flavor)):
        if value is not None:
            env[name] = str(value)
    return env


def stop_all_jobs(env, timeout: float = 10.0) -> None:
    """SIGKILL every task group and supervisor recorded in env's spool, then wait until they
    are gone; raises AssertionError naming what survived."""
    from .common import alive, group_alive, read_json, signal_group
    spool = Path(env["FAKE_BATCH_SPOOL"] if isinstance(env, dict) else env)
    groups, supervisors = [], []
    for job_dir in spool.glob("*/jobs/*"):
        supervisor = read_json(job_dir / "supervisor.json", {})
        if supervisor:
            supervisors.append((supervisor["pid"], supervisor["start"]))
        for record in map(read_json, job_dir.glob("tasks/*.json")):
            if record and record.get("pid"):
                groups.append((record["pid"], record["start"]))
    deadline = time.monotonic() + timeout
    while True:
        left = [g for g in groups if group_alive(*g)] + [s for s in supervisors if alive(*s)]
        if not left:
            return
        if time.monotonic() > deadline:
            raise AssertionError("fake batch processes still alive after %gs: %s" % (timeout, left))
        for pgid, start in groups:
            signal_group(pgid, start, signal.SIGKILL)
        for pid, start in supervisors:
            if alive(pid, start):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.02)
