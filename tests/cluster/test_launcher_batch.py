"""Batch launchers against the real Slurm and Grid Engine of the test bed, and their templates.

Every system test runs the same behaviour on both: engines (and a controller) as real jobs,
signals, stopping from another process, submission errors, jobs that die.
"""
from __future__ import annotations

import json
import logging
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time

import pytest

import minipar
from fixtures.batch import (CANCEL, SUBMIT, engine_facts, job_listed, jobs_named, listed_states, logged,
                            make_profile, number, shim, use_batch_system)
from helpers import FAST_HEARTBEAT, TEST_PYTHONPATH, announce_then_sleep, pid_gone, wait_for
from minipar.cluster.cluster import ClusterError
from minipar.cluster.launchers import batch
from minipar.error import LauncherError, TemplateError
from minipar.cluster.launchers.template import BatchTemplate
from fakes.batch import fake_batch_env, stop_all_jobs


def test_engines_run_as_one_job_and_stop_with_it(system, tmp_path):
    pdir = make_profile(tmp_path, '[cluster]\nengines = "%s"\n' % system)
    cluster = minipar.Cluster(profile_dir=str(pdir), n=2, controller_args=["--controller.heartbeat_period=0.2"])
    with cluster as rc:
        [engines] = cluster.engine_sets.values()
        facts = rc[:].apply_sync(engine_facts)
        assert len({pid for pid, _ in facts}) == 2
        assert {job for _, job in facts} == {number(engines.job_id)}
        state = json.loads(cluster.state_file.read_text())
        [saved] = state["engines"].values()
        assert saved["job_id"] == engines.job_id and saved["n"] == 2
        script = open(saved["script_file"]).read()
        assert "-m minipar.engine" in script and "--profile-dir %s" % pdir in script
        assert sorted(rc[:].map_sync(lambda x: x * x, range(6))) == [0, 1, 4, 9, 16, 25]
    for pid, _ in facts:
        wait_for(lambda: pid_gone(pid), 20, "engine pid %d to be gone" % pid)
    assert not job_listed(system, engines.job_id)


def test_signal_reaches_every_engine_of_the_job(system, tmp_path):
    pdir = make_profile(tmp_path, '[cluster]\nengines = "%s"\n' % system)
    with minipar.Cluster(profile_dir=str(pdir), n=2) as rc:
        ar = rc[:].apply_async(announce_then_sleep, 60)
        wait_for(lambda: all(out == "started\n" for out in ar.stdout), 30, "both tasks to start")
        rc.cluster.signal_engines_sync(signal.SIGINT)
        with pytest.raises(minipar.CompositeError) as info:
            ar.get(20)
        assert [e.ename for e in info.value.elist] == ["KeyboardInterrupt"] * 2
        assert rc[:].apply_sync(sum, [1, 2]) == [3, 3]


def test_controller_and_engines_both_as_jobs(system, tmp_path):
    pdir = make_profile(tmp_path, '[cluster]\nengines = "%s"\ncontroller = "%s"\n' % (system, system))
    cluster = minipar.Cluster(profile_dir=str(pdir), n=2)
    with cluster as rc:
        assert rc[:].apply_sync(sum, [2, 3]) == [5, 5]
        script = open(cluster.controller.script_file).read()
        assert "-m minipar.controller" in script and "--ip=*" in script
        controller_job = cluster.controller.job_id
        assert job_listed(system, controller_job)
    wait_for(lambda: not job_listed(system, controller_job), 30, "the controller's job to end")


def test_cli_start_daemonized_then_stop_from_another_process(system, tmp_path):
    pdir = make_profile(tmp_path, "")
    cli = [sys.executable, "-m", "minipar.cluster"]
    out = subprocess.run(cli + ["start", "-n", "2", "--daemonize", "--engines", system, "--profile-dir", str(pdir)],
                         capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stdout + out.stderr
    [state_file] = (pdir / "security").glob("cluster-*.json")
    state = json.loads(state_file.read_text())
    [engines] = state["engines"].values()
    with minipar.Client(profile_dir=str(pdir), cluster_id=state["cluster_id"]) as rc:
        rc.wait_for_engines(2, timeout=60)
        pids = rc[:].apply_sync(os.getpid)
    listing = subprocess.run(cli + ["list", "--profile-dir", str(pdir)], capture_output=True, text=True, timeout=60)
    assert listing.stdout.splitlines()[1].split()[2:5] == ["running", "2/2", "local/%s" % system]
    stop = subprocess.run(cli + ["stop", "--profile-dir", str(pdir), "--cluster-id", state["cluster_id"]],
                          capture_output=True, text=True, timeout=120)
    assert stop.returncode == 0, stop.stdout + stop.stderr
    assert not job_listed(system, engines["job_id"])
    for pid in pids:
        wait_for(lambda: pid_gone(pid), 20, "engine pid %d to be gone" % pid)
    assert not state_file.exists()


ARITHMETIC = "# pairs={n//2} most={max(n - 1, 1)}\n"
TEMPLATES = {
    "slurm": "#!/bin/sh\n#SBATCH --ntasks={n}\n#SBATCH --output={output_file}\n" + ARITHMETIC
             + "echo {greeting} ${{SLURM_JOB_ID}}\nsrun {program_and_args}\n",
    "sge": "#!/bin/sh\n#$ -S /bin/sh\n#$ -t 1-{n}\n#$ -j y\n#$ -o {output_file}\n" + ARITHMETIC
           + "echo {greeting} ${{JOB_ID}}\nexec {program_and_args}\n",
    "pbs": "#!/bin/sh\n#PBS -t 1-{n}\n#PBS -j oe\n#PBS -o {output_file}\n" + ARITHMETIC
           + "echo {greeting} ${{PBS_JOBID}}\nexec {program_and_args}\n",
    "lsf": "#!/bin/sh\n#BSUB -J x[1-{n}]\n#BSUB -o {output_file}\n" + ARITHMETIC
           + "echo {greeting} ${{LSB_JOBID}}\nexec {program_and_args}\n",
    "windowshpc": '<?xml version="1.0"?>\n<!-- pairs={n//2} most={max(n - 1, 1)} -->\n<Job Name="x" '
                  'xmlns="http://schemas.microsoft.com/HPCS2008/scheduler/"><Tasks><Task IsParametric="true" '
                  'StartValue="1" EndValue="{n}" CommandLine="echo {greeting} $CCP_JOBID; exec {program_and_args}" '
                  'StdOutFilePath="{output_file}.*"/></Tasks></Job>\n',
    "htcondor": "executable = {python}\narguments = \"{condor_arguments}\"\n"
                "environment = \"PYTHONPATH={condor_pythonpath} GREETING={greeting}\"\n"
                "output = {output_file}.$(Process)\nerror = {output_file}.$(Process)\n" + ARITHMETIC
                + "queue {n}\n",
}


def test_template_file_with_context_and_arithmetic(system, tmp_path):
    pdir = make_profile(tmp_path, '[cluster]\nengines = "%s"\n[launcher.%s]\ncontext = { greeting = "hi" }\n'
                                  '[launcher.%s.engines]\nbatch_template_file = "engines.tmpl"\n'
                        % (system, system, system))
    (pdir / "engines.tmpl").write_text(TEMPLATES[system])
    cluster = minipar.Cluster(profile_dir=str(pdir), n=2)
    with cluster as rc:
        assert rc[:].apply_sync(sum, [1, 1]) == [2, 2]
        [engines] = cluster.engine_sets.values()
        script = open(engines.script_file).read()
        assert re.search(r"(# |<!-- )pairs=1 most=1", script) and "{" not in script.replace("${", "")
        if system == "htcondor":
            assert rc[:].apply_sync(lambda: __import__("os").environ["GREETING"]) == ["hi", "hi"]
        elif system != "pbs":  # PBS copies output back only when the job ends
            wait_for(lambda: "hi %s" % engines.job_id in "".join(open(f).read() for f in engines.output_files),
                     20, "the job's echo")


REFUSED = {
    "slurm": ('queue = "nosuchqueue"', "sbatch --parsable ", "invalid partition"),
    "sge": ('queue = "nosuchqueue"', "qsub -terse ", "nosuchqueue"),
    "pbs": ('options = ["#PBS -Z"]', "qsub ", "invalid option"),
    "lsf": ('options = ["#BSUB -Z"]', "bsub failed", "invalid option"),
    "htcondor": ('options = ["environment = \\"BROKEN\\""]', "condor_submit ", "not NAME=VALUE"),
    "windowshpc": ('options = [\'Priority="Urgent"\']', "job submit /jobfile:", "not valid: Priority 'Urgent'"),
}


def test_refused_submission_names_the_command_and_leaves_nothing(system, tmp_path):
    setting, command, says = REFUSED[system]
    pdir = make_profile(tmp_path, '[cluster]\nengines = "%s"\n[launcher.%s]\n%s\n' % (system, system, setting))
    cluster = minipar.Cluster(profile_dir=str(pdir), n=1)
    with pytest.raises(LauncherError) as info:
        cluster.start_and_connect_sync()
    message = str(info.value)
    assert message.startswith(command) and "failed (exit" in message and says in message
    assert cluster.controller is None and not cluster.state_file.exists()


def test_engines_that_die_in_the_job_fail_fast_naming_its_output(system, tmp_path):
    pdir = make_profile(tmp_path, '[cluster]\nengines = "%s"\nengine_args = ["--no-such-flag"]\n' % system)
    cluster = minipar.Cluster(profile_dir=str(pdir), n=1, engine_timeout=90)
    with pytest.raises(ClusterError) as info:
        cluster.start_and_connect_sync()
    message = str(info.value)
    assert "every engine job ended: 0 of 1 registered" in message
    assert "unrecognized arguments: --no-such-flag" in message
    assert cluster.controller is None and not cluster.state_file.exists()


GARBLED = "Submitted batch job on the cluster"


def garble_submit(system, tmp_path, monkeypatch, submit=True):
    """Put a submit command first on PATH that runs the real one (or, submit=False, submits
    nothing) and prints GARBLED instead of what it printed, as a site's wrapper might."""
    real = shutil.which(SUBMIT[system])
    assert real, "%s is not on PATH" % SUBMIT[system]
    wrapper = tmp_path / "wrapper" / SUBMIT[system]
    wrapper.parent.mkdir(exist_ok=True)
    lines = ["#!/bin/sh"]
    if system == "windowshpc":
        lines.append('[ "$1" = submit ] || exec %s "$@"' % shlex.quote(real))
    lines.append('%s "$@" > /dev/null 2>&1 || exit $?' % shlex.quote(real) if submit else "cat > /dev/null")
    lines.append("echo %s" % shlex.quote(GARBLED))
    wrapper.write_text("\n".join(lines) + "\n")
    wrapper.chmod(0o755)
    monkeypatch.setenv("PATH", "%s%s%s" % (wrapper.parent, os.pathsep, os.environ["PATH"]))


def test_a_job_whose_id_the_submit_command_did_not_print_is_found_by_its_name(system, tmp_path, monkeypatch,
                                                                                caplog):
    caplog.set_level(logging.WARNING, logger="minipar.cluster")
    garble_submit(system, tmp_path, monkeypatch)
    pdir = make_profile(tmp_path, '[cluster]\nengines = "%s"\n' % system)
    cluster = minipar.Cluster(profile_dir=str(pdir), n=2)
    with cluster as rc:
        [engines] = cluster.engine_sets.values()
        assert engines.job_id and engines.submit_output == GARBLED
        assert {job for _, job in rc[:].apply_sync(engine_facts)} == {number(engines.job_id)}
        [warning] = [r.getMessage() for r in caplog.records if "printed no job id" in r.getMessage()]
        assert warning.startswith(SUBMIT[system] + " ") and repr(GARBLED) in warning
        assert warning.endswith("using %s job %s, found by its name %s" % (system, engines.job_id, engines.job_name))
        [saved] = json.loads(cluster.state_file.read_text())["engines"].values()
        assert (saved["job_id"], saved["submit_output"], saved["tag"]) == (engines.job_id, GARBLED, engines.tag)
        assert job_listed(system, engines.job_id)
    wait_for(lambda: not job_listed(system, engines.job_id), 30, "the job found by its name to end")


def test_a_submit_that_printed_no_job_id_and_made_no_job_of_that_name_fails_naming_both(system, tmp_path,
                                                                                       monkeypatch):
    monkeypatch.setattr(batch, "FIND_BY_NAME_TIMEOUT", 1.0)
    garble_submit(system, tmp_path, monkeypatch, submit=False)
    pdir = make_profile(tmp_path, '[cluster]\nengines = "%s"\n' % system)
    cluster = minipar.Cluster(profile_dir=str(pdir), n=1)
    with pytest.raises(LauncherError) as info:
        cluster.start_and_connect_sync()
    message = str(info.value)
    name = re.search(r"lists no job named (minipar-engine-[0-9a-f]{8}) within 1s", message).group(1)
    assert message.startswith(SUBMIT[system] + " ") and "printed no job id I could read: %r" % GARBLED in message
    assert message.endswith("if it made a job, that job is named %s and runs untracked: cancel it by hand" % name)
    assert cluster.controller is None and not cluster.state_file.exists() and not cluster.engine_sets
    assert jobs_named(system, name) == []


def test_stop_without_a_job_id_deletes_the_job_found_by_its_name(system, tmp_path):
    pdir = make_profile(tmp_path, '[cluster]\nengines = "%s"\n' % system)
    cluster = minipar.Cluster(profile_dir=str(pdir), n=1)
    try:
        cluster.start_cluster_sync()
        [engines] = cluster.engine_sets.values()
        saved = dict(engines.to_dict(), job_id="", submit_output=GARBLED)
        listed_late = type(engines).from_dict(saved)
        assert listed_late.job_name == engines.job_name
        listed_late.stop(5)
        assert listed_late.job_id == engines.job_id
        wait_for(lambda: not job_listed(system, engines.job_id) and jobs_named(system, engines.job_name) == [], 30,
                 "the job found by its name to be gone")
    finally:
        cluster.stop_cluster_sync()


def output_of(launcher) -> str:
    return "".join("--- %s:\n%s" % (f, open(f).read()) for f in launcher.output_files if os.path.exists(f))


END_MESSAGE = {"slurm": "stopped by SIGTERM in Slurm job", "pbs": "stopped by SIGTERM in PBS job",
               "htcondor": "stopped by SIGTERM in HTCondor job", "windowshpc": "stopped by SIGTERM in Windows HPC job",
               "sge": "no heartbeat", "lsf": "stopped by SIGTERM in LSF job"}
"""What the task's EngineError says when the job is cancelled. Most systems send SIGTERM first,
and the engine says it stopped for it and in which job.
Grid Engine's qdel SIGKILLs every process of the job at once, nanny included, so only the
missing heartbeats tell. LSF's bkill sends SIGINT and SIGTERM together, then SIGKILL: the
engine stops for the SIGTERM rather than report the task interrupted."""


def test_a_job_cancelled_from_outside_is_reported_and_fails_its_task(system, tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("FAKE_BATCH_KILL_DELAY", "5")  # the fakes' SIGTERM-to-SIGKILL grace; Slurm's is 30 s
    caplog.set_level(logging.WARNING, logger="minipar.cluster")
    pdir = make_profile(tmp_path, '[cluster]\nengines = "%s"\n' % system)
    cluster = minipar.Cluster(profile_dir=str(pdir), n=1, controller_args=FAST_HEARTBEAT,
                              config_overrides={"cluster.poll_interval": 0.5})
    with cluster as rc:
        [engines] = cluster.engine_sets.values()
        ar = rc[rc.ids[0]].apply_async(announce_then_sleep, 120)
        wait_for(lambda: ar.stdout == "started\n", 30, "the task to start")
        cancel = subprocess.run(CANCEL[system] + [engines.job_id], capture_output=True, text=True, timeout=30)
        assert cancel.returncode == 0, cancel.stdout + cancel.stderr
        said = "engine job %s (%s) ended on its own: " % (engines.job_id, system)
        wait_for(lambda: said in caplog.text, 60, "the job's end to be logged")
        [warning] = [r for r in caplog.records if said in r.getMessage()]
        assert warning.levelno == logging.WARNING
        assert "(walltime reached, cancelled from outside, or finished); last lines of %s" % engines.output_files[0] \
            in warning.getMessage()
        with pytest.raises(minipar.EngineError) as info:
            ar.get(30)
        assert re.search(END_MESSAGE[system], str(info.value)), (str(info.value), output_of(engines))
        [saved] = json.loads(cluster.state_file.read_text())["engines"].values()
        assert saved["ended"] is True and saved["job_id"] == engines.job_id
        assert cluster.check_processes() == [], "the end is reported once"


# ------------------------------------------------------------------- templates, no service


@pytest.mark.parametrize("role", ["engines", "controller"])
def test_job_names_are_unique_short_and_valid_everywhere_and_kept_in_the_state(role, tmp_path):
    from minipar.cluster.launchers.slurm import SlurmControllerLauncher, SlurmEngineSetLauncher
    cls = SlurmEngineSetLauncher if role == "engines" else SlurmControllerLauncher
    first, second = cls(tmp_path, "c1", settings={}), cls(tmp_path, "c1", settings={})
    assert first.job_name != second.job_name
    for launcher in (first, second):
        assert re.match(r"^minipar-(engine|ctrl)-[0-9a-f]{8}$", launcher.job_name) and len(launcher.job_name) <= 24
    assert cls.from_dict(first.to_dict()).job_name == first.job_name


def test_template_arithmetic_and_errors():
    fields = {"n": 10, "queue": "short"}
    assert BatchTemplate("-t 1-{n} nodes={max(n // 4, 1)} {n%3} {queue} ${{HOME}}", "t").render(fields) == \
        "-t 1-10 nodes=2 1 short ${HOME}"
    problems = {
        "{nope}": "t: the batch template uses {nope}, which is not a field",
        "${HOME}": "write a literal brace twice: ${{HOME}}",
        "{__import__('os')}": "only numbers, field names",
        "{n.__class__}": "only numbers, field names",
        "{n // 0}": "integer division or modulo by zero",
        "{}": "empty or numbered field",
        "{n +}": "neither a field nor arithmetic",
    }
    for text, message in problems.items():
        with pytest.raises(TemplateError) as info:
            BatchTemplate(text, "t").render(fields)
        assert message in str(info.value), text


def test_missing_template_file_is_named(tmp_path, monkeypatch):
    monkeypatch.setenv("MINIPAR_DIR", str(tmp_path / "mp"))
    pdir = make_profile(tmp_path, '[cluster]\nengines = "slurm"\n[launcher.slurm.engines]\n'
                                  'batch_template_file = "missing.tmpl"\n')
    cluster = minipar.Cluster(profile_dir=str(pdir), n=1)
    with pytest.raises(LauncherError, match=r"launcher.slurm.engines.batch_template_file: cannot read .*missing.tmpl"):
        cluster.start_engines_sync()


def test_missing_submit_command_says_so(tmp_path, monkeypatch):
    monkeypatch.setenv("MINIPAR_DIR", str(tmp_path / "mp"))
    monkeypatch.setenv("PATH", str(tmp_path))
    pdir = make_profile(tmp_path, '[cluster]\nengines = "sge"\n')
    cluster = minipar.Cluster(profile_dir=str(pdir), n=1)
    with pytest.raises(LauncherError, match="qsub: command not found; is this a sge submit host"):
        cluster.start_engines_sync()


HEADERS = {
    "slurm": ["#SBATCH --partition=short", "#SBATCH --account=proj42", "#SBATCH --time=01:00:00",
              "#SBATCH --qos=high"],
    "sge": ["#$ -q short", "#$ -A proj42", "#$ -l h_rt=01:00:00"],
    "pbs": ["#PBS -q short", "#PBS -A proj42", "#PBS -l walltime=01:00:00"],
    "lsf": ["#BSUB -q short", "#BSUB -P proj42", "#BSUB -W 01:00:00"],
    "windowshpc": ['NodeGroups="short"', 'Project="proj42"', 'RuntimeSeconds="3600"'],
    "htcondor": ["accounting_group = proj42",
                 "periodic_remove = (time() - EnteredCurrentStatus) > 3600 && JobStatus == 2"],
}


@pytest.mark.parametrize("system", sorted(HEADERS))
def test_default_templates_carry_the_settings_as_header_lines(system, tmp_path):
    from minipar.cluster.launchers import ENGINE_LAUNCHERS, import_launcher
    cls = import_launcher(ENGINE_LAUNCHERS[system])
    settings = {"queue": "short", "account": "proj42", "timelimit": "01:00:00", "qos": "high",
                "options": ["# mine"], "context": {}}
    launcher = cls(tmp_path, "c1", "INFO", ["--engine.work_dir=/tmp"], n=3, settings=settings)
    script = launcher.write_script().read_text()
    header = script.split("\n")
    for line in HEADERS[system] + ["# mine"]:
        assert line in header, (line, script)
    assert "-m minipar.engine" in script and "--cluster-id c1" in script and "--engine.work_dir=/tmp" in script
    assert {"htcondor": "queue 3", "windowshpc": 'EndValue="3"'}.get(system, "3") in script


# ------------------------------------------------------------------- Windows HPC specifics


def test_windowshpc_submits_to_the_configured_head_node_and_cancels_there(tmp_path, monkeypatch):
    env = fake_batch_env(tmp_path, kill_delay=0.5)
    for key in ("PATH", "FAKE_BATCH_SPOOL", "FAKE_BATCH_PYTHON", "FAKE_BATCH_KILL_DELAY"):
        monkeypatch.setenv(key, env[key])
    monkeypatch.setenv("FAKE_WINHPC_SCHEDULER", "head1")
    monkeypatch.setenv("PYTHONPATH", TEST_PYTHONPATH)
    try:
        pdir = make_profile(tmp_path, '[cluster]\nengines = "WindowsHPC"\n[launcher.windowshpc]\nscheduler = "head1"\n')
        cluster = minipar.Cluster(profile_dir=str(pdir), n=2)
        with cluster as rc:
            [engines] = cluster.engine_sets.values()
            assert rc[:].apply_sync(lambda: __import__("os").environ["CCP_SCHEDULER"]) == ["head1", "head1"]
            assert sorted(rc[:].apply_sync(lambda: __import__("os").environ["CCP_TASKINSTANCEID"])) == ["1", "2"]
            assert listed_states("windowshpc", engines.job_id) == ["Running"]
        assert subprocess.run(["job", "view", engines.job_id], capture_output=True, text=True).stdout.count(
            "Canceled") == 1
    finally:
        stop_all_jobs(env)


def test_windowshpc_refuses_a_star_in_the_engines_command_line(tmp_path):
    from minipar.cluster.launchers.windowshpc import WindowsHPCEngineSetLauncher
    launcher = WindowsHPCEngineSetLauncher(tmp_path, "c1", "INFO", ["--startup-command=x = 2 * 3"], n=2,
                                           settings={"context": {}, "options": []})
    with pytest.raises(LauncherError, match=r"contains '\*', which Windows HPC replaces by the task's instance"):
        launcher.write_script()


def test_a_batch_controller_is_asked_after_once_a_poll_interval_and_seen_to_end(request, tmp_path, monkeypatch):
    """`cluster start` in the foreground asks controller_ended every 0.5 s: for a controller in a
    batch job that must not become a status command every 0.5 s to the site's scheduler."""
    system = use_batch_system("pbs", request, tmp_path, monkeypatch)
    log = shim(tmp_path, monkeypatch, ["qstat"])
    pdir = make_profile(tmp_path, '[cluster]\ncontroller = "%s"\npoll_interval = 5.0\n' % system)
    cluster = minipar.Cluster(profile_dir=str(pdir), n=1, controller_args=FAST_HEARTBEAT)
    cluster.start_cluster_sync()
    rc = cluster.connect_client_sync()
    try:
        rc.wait_for_engines(1, timeout=60)
        seen, started = len(logged(log)), time.monotonic()
        checks = 0
        while time.monotonic() - started < 5.0:  # as often as the foreground loop, 50 times
            assert not cluster.controller_ended
            checks += 1
            time.sleep(0.1)
        asked = len(logged(log)) - seen
        assert checks >= 40 and asked <= 2, "%d status commands for %d checks in 5 s" % (asked, checks)
        subprocess.run(CANCEL[system] + [cluster.controller.job_id], check=True, capture_output=True)
        wait_for(lambda: cluster.controller_ended, 15, "the cluster to see its controller's job end")
    finally:
        rc.close()
        cluster.stop_cluster_sync()
