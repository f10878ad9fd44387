"""Engine pools: n engines split into jobs and kept at their number, engine sets with tags, and
``cluster render``.

On the real Slurm and Grid Engine of the test bed and on the PBS, LSF and HTCondor fakes; the
policy (cluster/pool.py) without processes. Waits are on conditions, and every batch system is
asked directly (not through a launcher) whether a job is gone.
"""
from __future__ import annotations

import collections
import json
import logging
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest

import minipar
from fixtures.batch import (CANCEL, SUBMIT, engine_facts, job_listed, logged, make_profile, number, shim,
                            use_batch_system)
from helpers import FAST_HEARTBEAT, wait_for
from minipar.cluster import pool
from minipar.cluster.pool import ENDED, PENDING, RUNNING, EngineSetRecord, PoolLimits
from minipar.config import render_profile
from minipar.error import ClusterError
from minipar.jobs import EXTENSION_SLACK
from minipar.pidfile import pid_alive

POOL_SYSTEMS = ("slurm", "sge", "pbs", "lsf", "htcondor")
CLI = [sys.executable, "-m", "minipar.cluster"]
TAG = re.compile(r"minipar-(engine|ctrl)-[0-9a-f]{8}")


@pytest.fixture(params=POOL_SYSTEMS)
def system(request, tmp_path, monkeypatch):
    return use_batch_system(request.param, request, tmp_path, monkeypatch)


def pool_cluster(pdir, **kwargs) -> minipar.Cluster:
    """A Cluster of the profile that polls its batch system every 0.5 s and has a fast controller."""
    overrides = dict({"cluster.poll_interval": 0.5}, **kwargs.pop("config_overrides", {}))
    return minipar.Cluster(profile_dir=str(pdir), cluster_id="pool", controller_args=FAST_HEARTBEAT,
                           config_overrides=overrides, **kwargs)


def sleep_until(when):
    import time
    time.sleep(max(0.0, when - time.time()))


def replacement_of(cluster, set_id: str) -> str:
    """The id of the engine set that replaces set_id, once it is recorded with a job id."""
    for new_id, record in list(cluster.set_records.items()):
        launcher = cluster.engine_sets.get(new_id)
        if record.replaces == set_id and launcher is not None and launcher.job_id:
            return new_id
    return ""


def engines_by_job(rc, ids) -> dict:
    """{engine id: job number} for the engines ids, from the variables of their batch jobs."""
    return {engine: job for engine, (_, job) in zip(ids, rc[list(ids)].apply_sync(engine_facts))}


def cli(*args, timeout=120) -> subprocess.CompletedProcess:
    return subprocess.run(CLI + [str(a) for a in args], capture_output=True, text=True, timeout=timeout)


def rendered_scripts(output: str) -> dict:
    """{path: (header title, script text)} from render's output."""
    parts = re.split(r"(?:^|\n)==> (.+): (\S+) <==\n", output)
    assert parts[0] == "", output
    return {parts[i + 1]: (parts[i], parts[i + 2]) for i in range(1, len(parts), 3)}


# ------------------------------------------------------------------ the pool on every batch system


def test_a_pool_keeps_its_number_after_a_job_is_cancelled_from_outside(system, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="minipar.cluster")
    pdir = make_profile(tmp_path, '[cluster]\nengines = "%s"\n' % system)
    cluster = pool_cluster(pdir, n=4, jobs=2, keep_engines=True)
    with cluster as rc:
        first = dict(cluster.engine_sets)
        assert sorted(s.n for s in first.values()) == [2, 2]
        where = engines_by_job(rc, rc.ids)
        assert sorted(collections.Counter(where.values()).values()) == [2, 2]
        assert set(where.values()) == {number(s.job_id) for s in first.values()}

        out = cli("render", "--profile-dir", pdir, "--cluster-id", "pool", "-n", 4, "--jobs", 2)
        assert out.returncode == 0, out.stderr
        written = {s.script_file: TAG.sub("TAG", Path(s.script_file).read_text()) for s in first.values()}
        assert {path: TAG.sub("TAG", text) for path, (_, text) in rendered_scripts(out.stdout).items()} == written

        (cancelled_id, cancelled), (kept_id, kept) = sorted(first.items())
        gone = [engine for engine, job in where.items() if job == number(cancelled.job_id)]
        subprocess.run(CANCEL[system] + [cancelled.job_id], check=True, capture_output=True, timeout=30)
        new_id = wait_for(lambda: replacement_of(cluster, cancelled_id), 60, "a replacement of the cancelled job")
        new_job = cluster.engine_sets[new_id].job_id
        wait_for(lambda: len(rc.ids) == 4 and not set(gone) & set(rc.ids), 90, "4 engines again")
        assert sorted(engines_by_job(rc, rc.ids).values()) == sorted([number(kept.job_id)] * 2 + [number(new_job)] * 2)

        saved = json.loads(cluster.state_file.read_text())["engines"]
        assert set(saved) == {kept_id, new_id}
        assert saved[new_id]["record"]["replaces"] == cancelled_id and saved[new_id]["n"] == 2
        said = [r.getMessage() for r in caplog.records if r.getMessage().startswith("replacing engine set %s "
                                                                                    % cancelled_id)]
        assert said == ["replacing engine set %s (%s job %s, 2 engines): it ended on its own (walltime reached, "
                        "cancelled from outside, or finished)" % (cancelled_id, system, cancelled.job_id)]
    for job_id in (cancelled.job_id, kept.job_id, new_job):
        assert not job_listed(system, job_id), job_id
    assert not cluster.state_file.exists()


DRAIN = {"slurm": ('timelimit = "1"', 60, 50), "sge": ('timelimit = "0:0:12"', 12, 8),
         "pbs": ('timelimit = "00:00:12"', 12, 8)}
"""Per system: the walltime setting, the walltime in seconds, and engine.drain_before. Slurm's
shortest limit is a minute: the replacement comes 10 s after the job starts, long before its end;
the others' jobs are short enough to see the drained job end too."""


@pytest.mark.parametrize("name", sorted(DRAIN))
def test_a_job_is_replaced_when_its_engines_drain_before_its_walltime(name, request, tmp_path, monkeypatch, caplog):
    system = use_batch_system(name, request, tmp_path, monkeypatch)
    caplog.set_level(logging.INFO, logger="minipar.cluster")
    setting, walltime, drain_before = DRAIN[name]
    pdir = make_profile(tmp_path, '[cluster]\nengines = "%s"\n[launcher.%s]\n%s\n' % (system, system, setting))
    cluster = pool_cluster(pdir, n=1, keep_engines=True, engine_args=["--engine.drain_before=%d" % drain_before])
    with cluster as rc:
        [(first_id, first)] = cluster.engine_sets.items()
        [(engine, info)] = rc.engine_info().items()
        busy = rc[engine].apply_async(sleep_until, info["drain_at"] + 4)  # so the draining job runs on
        new_id = wait_for(lambda: replacement_of(cluster, first_id), 60, "the draining job's replacement")
        record = cluster.set_records[first_id]
        waited = time.time() - record.running_since
        assert walltime - drain_before - 3 < waited < walltime - drain_before + 15, waited
        assert record.drain_at == record.end_time - drain_before
        assert job_listed(system, first.job_id), "the draining job still runs"
        assert cluster.engine_set_states()[first_id] == "draining"
        assert any(r.getMessage() == "replacing engine set %s (%s job %s, 1 engine): its engines drain from %s, "
                   "engine.drain_before = %gs before its walltime ends at %s"
                   % (first_id, system, first.job_id, pool.clock(record.drain_at), drain_before,
                      pool.clock(record.end_time)) for r in caplog.records)
        jobs = {first.job_id, cluster.engine_sets[new_id].job_id}
        assert busy.get(timeout=30) is None and busy.metadata["engine_id"] == engine, "the running task finished"
        if walltime < 30:
            wait_for(lambda: any(r.getMessage().endswith("; engine set %s replaced it" % new_id)
                                 and r.levelno == logging.INFO for r in caplog.records), 30,
                     "the drained job's end to be logged")
            assert first_id not in cluster.engine_sets, "and the job dropped"
            replaced_first = [r for r in caplog.records if r.getMessage().endswith("replaces engine set %s" % first_id)]
            assert len(replaced_first) == 1, "replaced once (its replacement may drain and be replaced in turn)"
        jobs |= {s.job_id for s in cluster.engine_sets.values()}
    for job_id in jobs:
        assert not job_listed(system, job_id), job_id


@pytest.mark.parametrize("name", ["slurm"])
def test_a_job_extended_before_its_drain_time_is_not_replaced_then(name, request, tmp_path, monkeypatch, caplog):
    system = use_batch_system(name, request, tmp_path, monkeypatch)
    caplog.set_level(logging.INFO, logger="minipar.cluster")
    pdir = make_profile(tmp_path, '[cluster]\nengines = "slurm"\n[launcher.slurm]\ntimelimit = "1"\n')
    cluster = pool_cluster(pdir, n=1, keep_engines=True, engine_args=["--engine.drain_before=50"])
    with cluster as rc:
        [(first_id, first)] = cluster.engine_sets.items()
        wait_for(lambda: cluster.set_records[first_id].end_time_asked, 30, "the pool to ask when the job ends")
        record = cluster.set_records[first_id]
        old_drain = record.drain_at
        subprocess.run(["scontrol", "update", "JobId=%s" % number(first.job_id), "TimeLimit=3"], check=True,
                       capture_output=True, timeout=30)
        wait_for(lambda: record.drain_at is not None and record.drain_at > old_drain + 100, old_drain - time.time() + 20,
                 "the pool to learn the extension at the old drain time")
        assert time.time() >= old_drain and list(cluster.engine_sets) == [first_id], "not replaced"
        assert any(r.getMessage() == "engine set %s: slurm job %s was extended; it now ends at %s and is replaced at "
                   "%s" % (first_id, first.job_id, pool.clock(record.end_time), pool.clock(record.drain_at))
                   for r in caplog.records)
        assert len(rc.ids) == 1 and not rc.engine_info()[rc.ids[0]]["draining"]
    assert not job_listed(system, first.job_id)


STATUS_COMMAND = {"slurm": "squeue", "pbs": "qstat"}
STATUS_QUERY = {"slurm": re.compile(r"^squeue --noheader --jobs=(\S+) --format=%i %T$"),
                "pbs": re.compile(r"^qstat ((?:\d\S* ?)+)$")}
"""How the pool asks about its jobs: every job in one command."""


@pytest.mark.parametrize("name", sorted(STATUS_QUERY))
def test_submissions_are_spaced_and_one_query_a_poll_asks_about_every_job(name, request, tmp_path, monkeypatch):
    system = use_batch_system(name, request, tmp_path, monkeypatch)
    log = shim(tmp_path, monkeypatch, [SUBMIT[system], STATUS_COMMAND[system]])
    pdir = make_profile(tmp_path, '[cluster]\nengines = "%s"\nmax_array_size = 1\nsubmit_interval = 1.5\n'
                                  'poll_interval = 2.0\n' % system)
    cluster = minipar.Cluster(profile_dir=str(pdir), n=3, keep_engines=True, controller_args=FAST_HEARTBEAT)
    with cluster:
        job_ids = [s.job_id for s in cluster.engine_sets.values()]
        assert [s.n for s in cluster.engine_sets.values()] == [1, 1, 1]

        def status_queries():
            return [(t, STATUS_QUERY[name].match(argv).group(1)) for t, argv in logged(log)
                    if STATUS_QUERY[name].match(argv)]

        seen = len(status_queries())
        wait_for(lambda: len(status_queries()) >= seen + 3, 20, "three more polls")
        queries = status_queries()[seen:]
    submitted = [t for t, argv in logged(log) if argv.startswith(SUBMIT[system] + " ")]
    assert len(submitted) == 3 and all(b - a > 1.5 - 0.2 for a, b in zip(submitted, submitted[1:])), submitted
    for _, asked in queries:
        assert sorted(re.split("[ ,]", asked)) == sorted(job_ids)
    times = [t for t, _ in queries]
    assert all(b - a > 2.0 - 0.3 for a, b in zip(times, times[1:])), times


def test_a_pool_whose_jobs_keep_failing_gives_up_and_says_why(request, tmp_path, monkeypatch, caplog):
    use_batch_system("pbs", request, tmp_path, monkeypatch)
    caplog.set_level(logging.INFO, logger="minipar.cluster")
    pdir = make_profile(tmp_path, '[cluster]\nengines = "pbs"\nengine_args = ["--no-such-flag"]\n')
    cluster = pool_cluster(pdir, n=1, keep_engines=True, engine_timeout=90)
    with pytest.raises(ClusterError) as info:
        cluster.start_and_connect_sync()
    assert "every engine job ended: 0 of 1 registered" in str(info.value)
    replaced = [r for r in caplog.records if r.getMessage().startswith("replacing engine set ")]
    [gave_up] = [r for r in caplog.records if r.getMessage().startswith("not replacing engine set ")]
    assert len(replaced) == pool.FAILED_STARTS_LIMIT - 1 and gave_up.levelno == logging.ERROR
    assert re.search(r": it is the 3rd job in a row of this pool to end (before it ran|within 60s of starting); not "
                     r"replacing it any more \(see its output, then start engines again\)$", gave_up.getMessage())
    assert not cluster.state_file.exists()


def test_stop_waits_for_a_replacement_being_submitted_and_stops_it_too(request, tmp_path, monkeypatch):
    use_batch_system("pbs", request, tmp_path, monkeypatch)
    slow = tmp_path / "slow"
    shim(tmp_path, monkeypatch, ["qsub"], before='[ -e %s ] && touch %s.started && sleep 2' % (slow, slow))
    pdir = make_profile(tmp_path, '[cluster]\nengines = "pbs"\n')
    cluster = pool_cluster(pdir, n=1, keep_engines=True)
    with cluster:
        [(old_id, old)] = cluster.engine_sets.items()
        slow.touch()
        subprocess.run(["qdel", old.job_id], check=True, capture_output=True, timeout=30)
        wait_for(lambda: Path(str(slow) + ".started").exists(), 30, "the replacement's qsub to start")
        saved = json.loads(cluster.state_file.read_text())["engines"]
        [new_id] = [i for i in saved if i != old_id]
        assert saved[new_id]["job_id"] == "", "recorded before its submit command returned"
        replacement = cluster.engine_sets[new_id]
    assert replacement.job_id and not job_listed("pbs", replacement.job_id)
    assert not cluster.state_file.exists()


def test_a_pool_stopped_from_another_process_submits_nothing_that_outlives_the_stop(request, tmp_path, monkeypatch):
    use_batch_system("pbs", request, tmp_path, monkeypatch)
    pdir = make_profile(tmp_path, '[cluster]\nengines = "pbs"\n')
    cluster = pool_cluster(pdir, n=2, jobs=2, keep_engines=True)
    cluster.start_and_connect_sync().close()
    stopped = cli("stop", "--profile-dir", pdir, "--cluster-id", "pool")
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    wait_for(cluster._watch_stop.is_set, 30, "the pool's watcher to see the cluster stopped")
    assert subprocess.run(["qstat"], capture_output=True, text=True, timeout=30).stdout == "", "no job is left"
    assert not cluster.state_file.exists()
    cluster.stop_cluster_sync()
    assert not cluster.state_file.exists(), "stopping what is gone already records nothing again"
    assert sorted(p.name for p in (pdir / "security").iterdir()) == [], "no lock file is left either"


def test_each_process_writes_its_own_engine_sets_into_the_shared_state_file(tmp_path, monkeypatch):
    monkeypatch.setenv("MINIPAR_DIR", str(tmp_path / "mp"))
    pdir = make_profile(tmp_path, "")
    path = pdir / "security" / "cluster-shared.json"
    path.parent.mkdir()
    path.write_text(json.dumps({"cluster_id": "shared", "profile_dir": str(pdir), "controller": None, "engines": {
        "stale": {"class": "minipar.cluster.launchers.local.LocalEngineSetLauncher", "profile_dir": str(pdir), "n": 1,
                  "processes": []}}}))
    owner = minipar.Cluster(profile_dir=str(pdir), cluster_id="shared", n=1)
    try:
        owner.start_cluster_sync()
        assert list(json.loads(path.read_text())["engines"]) == list(owner.engine_sets), "a stale file is replaced"
        other = minipar.Cluster.from_file(profile_dir=str(pdir), cluster_id="shared")
        added = other.start_engines_sync(1, tags=["extra"])
        owner.write_state()
        assert set(json.loads(path.read_text())["engines"]) == set(owner.engine_sets) | {added}
        other.stop_engines_sync(added)
        owner.write_state()
        assert set(json.loads(path.read_text())["engines"]) == set(owner.engine_sets)
    finally:
        owner.stop_cluster_sync()
    assert not path.exists()


# ------------------------------------------------------------------ the command line


def test_cli_start_daemonized_keeps_the_pool_and_list_shows_each_job(request, tmp_path, monkeypatch):
    use_batch_system("pbs", request, tmp_path, monkeypatch)
    pdir = make_profile(tmp_path, "")
    out = cli("start", "-n", 4, "--jobs", 2, "--keep-engines", "--daemonize", "--engines", "pbs", "--profile-dir", pdir,
              "--cluster.poll_interval=0.5", "--controller.heartbeat_period=0.2")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "cluster '' running: 4 engines" in out.stdout and "keeps the engines in the background" in out.stdout
    state_file = pdir / "security" / "cluster-.json"
    [keeper] = json.loads(state_file.read_text())["keepers"]
    assert pid_alive(keeper["pid"])

    def listing():
        """The cluster's row, and a row per engine set under a header of their own."""
        lines = cli("list", "--profile-dir", pdir).stdout.splitlines()
        assert lines[2].split() == ["ENGINE", "SET", "LAUNCHER", "JOB", "STATE", "ENGINES", "TAGS"], lines
        return lines[1].split(), [line.split() for line in lines[3:]]

    cluster_row, set_rows = listing()
    assert cluster_row[2:5] == ["running", "4/4", "local/pbs"]
    assert [row[1:] for row in set_rows] == [["pbs", row[2], "running", "2", "-"] for row in set_rows]
    assert len(set_rows) == 2
    cancelled = set_rows[0]
    subprocess.run(["qdel", cancelled[2]], check=True, capture_output=True, timeout=30)
    wait_for(lambda: any(row[-2:] == ["replaces", cancelled[0]] and row[3] == "running" for row in listing()[1]),
             60, "list to show the replacement running")
    jobs = {row[2] for row in listing()[1]} | {cancelled[2]}
    stopped = cli("stop", "--profile-dir", pdir)
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert not pid_alive(keeper["pid"]) and not state_file.exists()
    for job_id in jobs:
        assert not job_listed("pbs", job_id), job_id


def test_cli_engines_added_to_a_running_cluster_are_kept_by_their_own_keeper(request, tmp_path, monkeypatch):
    use_batch_system("pbs", request, tmp_path, monkeypatch)
    pdir = make_profile(tmp_path, "")
    started = cli("start", "-n", 1, "--daemonize", "--profile-dir", pdir)
    assert started.returncode == 0, started.stdout + started.stderr
    added = cli("engines", "-n", 2, "--jobs", 2, "--keep-engines", "--daemonize", "--engines", "pbs",
                "--profile-dir", pdir, "--cluster.poll_interval=0.5")
    assert added.returncode == 0, added.stdout + added.stderr
    assert "started 2 engine(s) for cluster '' in 2 jobs" in added.stdout
    state_file = pdir / "security" / "cluster-.json"
    state = json.loads(state_file.read_text())
    [keeper] = state["keepers"]
    pbs = {i: d for i, d in state["engines"].items() if d["class"].endswith("PBSEngineSetLauncher")}
    assert len(state["engines"]) == 3 and sorted(d["n"] for d in pbs.values()) == [1, 1]
    cancelled = sorted(pbs)[0]
    subprocess.run(["qdel", pbs[cancelled]["job_id"]], check=True, capture_output=True, timeout=30)

    def replacement():
        engines = json.loads(state_file.read_text())["engines"]
        return [d["job_id"] for d in engines.values() if d["record"]["replaces"] == cancelled and d["job_id"]]

    jobs = {d["job_id"] for d in pbs.values()} | set(wait_for(replacement, 60, "the keeper to replace the job"))
    stopped = cli("stop", "--profile-dir", pdir)
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert not pid_alive(keeper["pid"]) and not state_file.exists()
    for job_id in jobs:
        assert not job_listed("pbs", job_id), job_id


def command_lines():
    """The command lines of this engine process and of its parent (the engine's nanny)."""
    import os
    return [open("/proc/%d/cmdline" % pid).read().split("\0") for pid in (os.getpid(), os.getppid())]


def test_an_engine_set_with_tags_beside_a_cpu_set(request, tmp_path, monkeypatch):
    use_batch_system("pbs", request, tmp_path, monkeypatch)
    pdir = make_profile(tmp_path, "")
    cluster = minipar.Cluster(profile_dir=str(pdir), n=2, controller_args=FAST_HEARTBEAT)
    with cluster as rc:
        [cpu] = cluster.engine_sets
        gpu = cluster.start_engines_sync(n=2, engines="pbs", tags=["gpu", "fp64"])
        cluster.wait_for_engines_sync(4)
        saved = json.loads(cluster.state_file.read_text())["engines"]
        assert saved[cpu]["record"]["tags"] == [] and saved[gpu]["record"]["tags"] == ["gpu", "fp64"]
        assert saved[gpu]["class"].endswith("PBSEngineSetLauncher") and saved[cpu]["class"].endswith("LocalEngineSetLauncher")
        script = Path(saved[gpu]["script_file"]).read_text()
        assert shlex.quote('--engine.tags=["gpu", "fp64"]') in script
        tagged = ['--engine.tags=["gpu", "fp64"]' in argv for argvs in rc[:].apply_sync(command_lines)
                  for argv in argvs]
        assert tagged.count(True) >= 2 and tagged.count(False) >= 4
        [_, header, *rows] = cli("list", "--profile-dir", pdir).stdout.splitlines()[1:]
        assert {row.split()[0]: row.split()[-1] for row in rows} == {cpu: "-", gpu: "gpu,fp64"}
        assert cluster.restart_engines_sync(gpu) is None
        [again] = [i for i in cluster.engine_sets if i != cpu]
        assert again == gpu and cluster.set_records[gpu].tags == ["gpu", "fp64"]


# ------------------------------------------------------------------ render, no batch system needed


RENDER_SYSTEMS = ("slurm", "sge", "pbs", "lsf", "htcondor", "windowshpc")
FIRST_LINE = {"slurm": "#!/bin/sh", "sge": "#!/bin/sh", "pbs": "#!/bin/sh", "lsf": "#!/bin/sh",
              "htcondor": "universe = vanilla", "windowshpc": '<?xml version="1.0" encoding="utf-8"?>'}


@pytest.mark.parametrize("name", RENDER_SYSTEMS)
def test_render_prints_each_job_script_of_a_split_and_writes_nothing(name, tmp_path, monkeypatch):
    monkeypatch.setenv("MINIPAR_DIR", str(tmp_path / "mp"))
    pdir = make_profile(tmp_path, "[launcher.%s]\naccount = \"proj42\"\n" % name)
    before = sorted(p for p in pdir.rglob("*"))
    out = cli("render", "--profile-dir", pdir, "--engines", name, "--controller", name, "-n", 7, "--jobs", 3,
              "--cluster-id", "r1", "--engine.drain_before=50")
    assert out.returncode == 0, out.stderr
    assert sorted(p for p in pdir.rglob("*")) == before
    scripts = rendered_scripts(out.stdout)
    suffix = {"htcondor": ".condor", "windowshpc": ".xml"}.get(name, ".sh")
    assert [(Path(path).name, title) for path, (title, _) in scripts.items()] == [
        ("%s-controller-r1-0%s" % (name, suffix), "controller job (%s)" % name),
        ("%s-engines-r1-0%s" % (name, suffix), "engines job 1 of 3 (%s, 3 engines)" % name),
        ("%s-engines-r1-3%s" % (name, suffix), "engines job 2 of 3 (%s, 2 engines)" % name),
        ("%s-engines-r1-5%s" % (name, suffix), "engines job 3 of 3 (%s, 2 engines)" % name)]
    texts = [text for _, text in scripts.values()]
    assert all(text.startswith(FIRST_LINE[name]) and "proj42" in text for text in texts)
    assert "-m minipar.controller" in texts[0] and "drain_before" not in texts[0]
    assert all("minipar.engine" in text and "--engine.drain_before=50" in text for text in texts[1:])
    assert len(set(TAG.findall(out.stdout))) == 2 and len(TAG.findall(out.stdout)) >= 4


def test_render_refuses_launchers_without_a_script_and_an_impossible_split(tmp_path, monkeypatch):
    monkeypatch.setenv("MINIPAR_DIR", str(tmp_path / "mp"))
    pdir = make_profile(tmp_path, "")
    local = cli("render", "--profile-dir", pdir, "-n", 2)
    assert local.returncode == 1 and local.stdout == ""
    assert local.stderr.strip() == ("python -m minipar.cluster render: error: the local engine launcher submits no job "
                                    "script; render shows those of batch launchers (engines: pbs, sge, lsf, slurm, "
                                    "htcondor or windowshpc)")
    split = cli("render", "--profile-dir", pdir, "--engines", "slurm", "-n", 64, "--jobs", 8,
                "--cluster.max_jobs=4")
    assert split.returncode == 1 and "Traceback" not in split.stderr
    assert split.stderr.strip().endswith("64 engines in cluster.jobs = 8 jobs: more than cluster.max_jobs = 4; "
                                         "raise cluster.max_jobs, or lower cluster.jobs")
    missing = cli("render", "--profile-dir", tmp_path / "nope", "--engines", "slurm")
    assert missing.returncode == 1 and "does not exist; create it with" in missing.stderr
    assert not (tmp_path / "nope").exists()


# ------------------------------------------------------------------ settings and policy, no processes


def test_the_settings_are_in_the_commented_profile_with_their_help():
    text = render_profile()
    cluster = text[text.index("\n[cluster]\n"):text.index("\n[", text.index("\n[cluster]\n") + 1)]
    for line in ("# jobs = 1", "# keep_engines = false", "# max_jobs = 0", "# max_array_size = 0",
                 "# submit_interval = 0.0", "# poll_interval = 10.0"):
        assert "\n" + line + "\n" in cluster, line
    assert "## How many jobs (engine sets) the n engines are split into" in cluster


def test_a_split_the_settings_refuse_fails_before_anything_starts(tmp_path, monkeypatch):
    monkeypatch.setenv("MINIPAR_DIR", str(tmp_path / "mp"))
    pdir = make_profile(tmp_path, "[cluster]\nmax_array_size = 10\nmax_jobs = 4\n")
    cluster = minipar.Cluster(profile_dir=str(pdir), n=64, engines="slurm")
    with pytest.raises(ClusterError) as info:
        cluster.start_cluster_sync()
    assert str(info.value) == ("64 engines in jobs of at most cluster.max_array_size = 10 need 7 jobs: more than "
                               "cluster.max_jobs = 4; raise cluster.max_jobs, or start fewer engines or raise "
                               "cluster.max_array_size")
    assert cluster.controller is None and not cluster.state_file.exists()
    for overrides, message in (({"cluster.poll_interval": 0}, "cluster.poll_interval must be more than 0 seconds"),
                               ({"cluster.max_jobs": -1}, "cluster.max_jobs must be 0 or more, got -1")):
        with pytest.raises(ClusterError, match=re.escape(message)):
            minipar.Cluster(profile_dir=str(pdir), config_overrides=overrides).start_cluster_sync()
    with pytest.raises(ClusterError, match=r"cluster.jobs = 5 is more jobs than engines \(n = 4\)"):
        minipar.Cluster(profile_dir=str(pdir), n=4, jobs=5).start_cluster_sync()


def test_split_sizes_differ_by_at_most_one_and_respect_the_array_limit():
    assert pool.split_engines(64, 1) == [64]
    assert pool.split_engines(10, 3) == [4, 3, 3]
    assert pool.split_engines(10, 1, max_array_size=4) == [4, 3, 3]
    assert pool.split_engines(10, 5, max_array_size=4) == [2, 2, 2, 2, 2]
    assert pool.split_engines(8, 2, max_jobs=4, live_jobs=2) == [4, 4]
    with pytest.raises(ClusterError, match=r"8 engines in cluster.jobs = 2 jobs, besides the 3 the cluster has: more "
                                           r"than cluster.max_jobs = 4"):
        pool.split_engines(8, 2, max_jobs=4, live_jobs=3)
    with pytest.raises(ClusterError, match="cluster.jobs must be 1 or more, got 0"):
        pool.split_engines(8, 0)


def kept(state=RUNNING, **fields) -> EngineSetRecord:
    return EngineSetRecord(keep=True, state=state, **fields)


def decide(records, now=1000.0, last_submit=0.0, limits=PoolLimits(), mine=None) -> list:
    return [(d.action, d.set_id) for d in pool.plan(records, now, last_submit, limits,
                                                    set(records) if mine is None else mine)]


def test_plan_replaces_ended_sets_first_then_draining_ones_once_each():
    records = {"a": kept(drain_at=900.0, end_time=1200.0), "b": kept(ENDED, running_since=0.0, ended_at=990.0),
               "c": kept(drain_at=1100.0), "d": kept(PENDING), "e": EngineSetRecord(state=ENDED)}
    assert decide(records) == [("replace", "b"), ("replace", "a")]
    records["a"].replaced_by = "f"
    assert decide(records) == [("replace", "b")]
    assert decide(records, mine={"a", "c"}) == [], "only sets this process started are replaced"


def test_plan_waits_for_max_jobs_and_submit_interval():
    records = {"a": kept(ENDED, running_since=0.0, ended_at=1.0), "b": kept(ENDED, running_since=0.0, ended_at=2.0),
               "c": kept(), "d": kept()}
    assert decide(records, limits=PoolLimits(max_jobs=3)) == [("replace", "a"), ("wait", "b")]
    assert decide(records, limits=PoolLimits(max_jobs=2)) == [("wait", "a"), ("wait", "b")]
    assert decide(records, limits=PoolLimits(submit_interval=5.0)) == [("replace", "a"), ("wait", "b")]
    assert decide(records, last_submit=998.0, limits=PoolLimits(submit_interval=5.0)) == [("wait", "a"), ("wait", "b")]
    [why] = [d.reason for d in pool.plan(records, 1000.0, 0.0, PoolLimits(max_jobs=2), {"a"})]
    assert why == "the cluster has cluster.max_jobs = 2 jobs queued or running"


def test_plan_gives_up_after_failed_starts_in_a_row_and_retries_a_failed_submission_later():
    quick = dict(running_since=100.0, ended_at=100.0 + pool.QUICK_END - 1)
    assert decide({"a": kept(ENDED, failed_starts=pool.FAILED_STARTS_LIMIT - 2, **quick)}) == [("replace", "a")]
    assert decide({"a": kept(ENDED, failed_starts=pool.FAILED_STARTS_LIMIT - 1, **quick)}) == [("give up", "a")]
    long_run = dict(running_since=100.0, ended_at=100.0 + pool.QUICK_END + 1)
    assert decide({"a": kept(ENDED, failed_starts=pool.FAILED_STARTS_LIMIT - 1, **long_run)}) == [("replace", "a")]
    assert kept(ENDED, failed_starts=2, **long_run).failed_starts_after_end() == 0
    assert decide({"a": kept(ENDED, not_before=1001.0, **long_run)}) == []
    assert decide({"a": kept(ENDED, given_up="no", **long_run)}) == []


def test_records_note_states_and_drain_times():
    record = EngineSetRecord(keep=True)
    record.note(RUNNING, 10.0)
    record.note(RUNNING, 20.0)
    assert (record.state, record.running_since) == (RUNNING, 10.0)
    record.learn_end_time(400.0, 300.0)
    assert record.drain_at == 100.0 and not record.draining(99.0) and record.draining(100.0)
    record.learn_end_time(None, 300.0)
    assert record.drain_at is None and record.end_time_asked
    record.note(ENDED, 30.0)
    record.note(RUNNING, 40.0)
    assert record.state == ENDED and record.ended_at == 30.0 and record.ended_quickly
    assert EngineSetRecord.from_dict(dict(record.to_dict(), unknown=1)) == record


def test_a_record_asks_its_jobs_end_again_at_its_drain_time_and_an_extension_puts_it_off():
    record = EngineSetRecord(keep=True)
    record.note(RUNNING, 10.0)
    record.learn_end_time(400.0, 300.0)
    assert not record.recheck_due(99.0) and record.recheck_due(100.0)
    assert not record.learn_later_end(400.0 + EXTENSION_SLACK - 1, 300.0), "not an extension: within the slack"
    assert record.drain_at == 100.0 and not record.recheck_due(101.0), "asked once per drain time"
    record.end_rechecked = False
    assert record.learn_later_end(1000.0, 300.0)
    assert (record.end_time, record.drain_at) == (1000.0, 700.0) and not record.draining(101.0)
    assert not record.recheck_due(699.0) and record.recheck_due(700.0), "asked again when the new drain time comes"
    assert not record.learn_later_end(None, 300.0) and record.drain_at == 700.0, "no answer changes nothing"
    record.end_rechecked = False
    record.replaced_by = "b"
    assert not record.recheck_due(800.0)


def test_a_job_that_ends_once_its_engines_drained_is_replaced_as_drained_not_as_a_failed_start():
    drained = kept(ENDED, running_since=100.0, drain_at=110.0, end_time=160.0, ended_at=111.0,
                   failed_starts=pool.FAILED_STARTS_LIMIT - 1)
    assert drained.drained and not drained.ended_quickly and drained.failed_starts_after_end() == 0
    [decision] = pool.plan({"a": drained}, 1000.0, 0.0, PoolLimits(), {"a"})
    assert decision.action == "replace"
    assert decision.reason == ("its engines drained before its walltime (at %s, engine.drain_before = 50s before %s) "
                               "and left" % (pool.clock(110.0), pool.clock(160.0)))
    early = kept(ENDED, running_since=100.0, drain_at=110.0, end_time=160.0, ended_at=105.0)
    assert not early.drained and early.ended_quickly
