"""The fake PBS/Torque, LSF, HTCondor and Windows HPC commands (tests/fakes/batch) behave like
the real ones where launchers can tell: output formats, exit codes, job environment and working
directory, arrays, states, and removal that really kills every process of every task.

Every job runs the script from job_script(): it starts a child in its process group, writes
its pid, cwd, arguments and environment to <dir>/<index>.env, then waits for <dir>/release.
It waits with the ``wait`` builtin, which a signal interrupts at once; a shell waiting for a
foreground command may drop a SIGINT when that command exits normally at the same moment.
"""
from __future__ import annotations

import os
import pwd
import re
import signal
import subprocess
from pathlib import Path

import pytest

from fakes.batch import BIN_DIR, fake_batch_env, stop_all_jobs
from fakes.batch.common import alive, read_json, start_time
from helpers import pid_gone, wait_for

KILL_DELAY = 0.3
MARKER = "FAKE_BATCH_TEST_MARKER"
HOME = pwd.getpwuid(os.getuid()).pw_dir


@pytest.fixture
def env(tmp_path):
    environment = fake_batch_env(tmp_path, kill_delay=KILL_DELAY)
    environment[MARKER] = "from-the-submitter"
    yield environment
    stop_all_jobs(environment)


def run(env, *args, stdin=None, cwd=None, check_rc=None):
    cwd = cwd or os.path.dirname(env.get("FAKE_BATCH_SPOOL", "/"))  # PBS copies output back to where qsub ran
    done = subprocess.run(list(args), env=env, input=stdin, cwd=cwd, capture_output=True, text=True, timeout=30)
    if check_rc is not None:
        assert done.returncode == check_rc, (args, done.returncode, done.stdout, done.stderr)
    return done


def job_script(directory: Path, index_var: str = "", header: str = "", trap: str = "") -> str:
    index = "${%s:-0}" % index_var if index_var else "0"
    return "\n".join([
        "#!/bin/sh", header, trap,
        "d=%s; i=%s" % (directory, index),
        "echo hello-out; echo hello-err >&2",
        "sleep 60 & echo $! > $d/$i.child",
        '{ echo "PID=$$"; echo "CWD=$(pwd)"; printf "ARG=%s\\n" "$@"; env; } > $d/$i.tmp',
        "mv $d/$i.tmp $d/$i.env",
        "while [ ! -e $d/release ]; do sleep 0.05 & wait $!; done",
        "kill $(cat $d/$i.child)",
        ""])


def task_info(directory: Path, index=0, timeout=15.0) -> dict:
    path = directory / ("%s.env" % index)
    wait_for(path.exists, timeout, "task %s of the job to write %s" % (index, path))
    info = {"ARG": []}
    for line in path.read_text().splitlines():
        match = re.match(r"^([A-Za-z_][A-Za-z0-9_]*)=(.*)$", line)
        if match and match.group(1) == "ARG":
            info["ARG"].append(match.group(2))
        elif match:
            info.setdefault(match.group(1), match.group(2))
    info["CHILD"] = int((directory / ("%s.child" % index)).read_text())
    return info


def assert_gone(*pids):
    for pid in pids:
        wait_for(lambda: pid_gone(int(pid)), 5, "pid %s to be gone" % pid)


def table(stdout: str):
    """Header words and row words of a qstat or bjobs table (qstat has a line of dashes)."""
    lines = stdout.splitlines()
    first = 2 if lines[1].startswith("-") else 1
    return lines[0].split(), [line.split() for line in lines[first:]]


@pytest.fixture
def jobdir(tmp_path):
    directory = tmp_path / "job"
    directory.mkdir()
    return directory


# ------------------------------------------------------------------ PBS / Torque


def test_pbs_job_runs_in_home_with_pbs_variables_and_output_copied_back_at_the_end(env, jobdir, tmp_path):
    script = tmp_path / "job.sh"
    script.write_text(job_script(jobdir, header="#PBS -N envjob"))
    submitted = run(env, "qsub", str(script), cwd=str(tmp_path), check_rc=0)
    assert submitted.stdout == "1.fakeserver\n"
    info = task_info(jobdir)
    assert info["PBS_JOBID"] == "1.fakeserver" and info["PBS_JOBNAME"] == "envjob"
    assert info["PBS_O_WORKDIR"] == str(tmp_path) and info["PBS_QUEUE"] == "batch"
    assert info["CWD"] == HOME and info["HOME"] == HOME
    assert info["PATH"] == "%s:/bin:/usr/bin" % BIN_DIR and MARKER not in info, "only -V exports the submitter's environment"
    assert Path(info["PBS_NODEFILE"]).read_text().split() == [os.uname().nodename]

    header, rows = table(run(env, "qstat", cwd=str(tmp_path), check_rc=0).stdout)
    assert header == ["Job", "ID", "Name", "User", "Time", "Use", "S", "Queue"]
    assert [(r[0], r[1], r[4], r[5]) for r in rows] == [("1.fakeserver", "envjob", "R", "batch")]
    assert run(env, "qstat", "1", check_rc=0).stdout.splitlines()[1].startswith("-" * 25 + " " + "-" * 16 + " ")
    full = run(env, "qstat", "-f", "1.fakeserver", check_rc=0).stdout
    assert full.startswith("Job Id: 1.fakeserver\n") and "    job_state = R\n" in full
    assert not (tmp_path / "envjob.o1").exists(), "PBS copies output back when the job ends"

    (jobdir / "release").touch()
    wait_for(lambda: run(env, "qstat", "1").returncode == 153, 10, "the finished job to leave qstat")
    gone = run(env, "qstat", "1")
    assert gone.stderr == "qstat: Unknown Job Id 1.fakeserver\n" and gone.stdout == ""
    assert (tmp_path / "envjob.o1").read_text() == "hello-out\n"
    assert (tmp_path / "envjob.e1").read_text() == "hello-err\n"
    assert_gone(info["PID"], info["CHILD"])
    assert run(env, "qstat", check_rc=0).stdout == "", "qstat prints nothing without jobs"


def test_pbs_command_line_wins_over_directives_and_V_exports_the_environment(env, jobdir, tmp_path):
    script = tmp_path / "job.sh"
    out = tmp_path / "logs" / "joined.txt"
    out.parent.mkdir()
    script.write_text(job_script(jobdir, header="#PBS -N fromheader  # a comment\n#PBS -q headerq\n#PBS -j oe"))
    run(env, "qsub", "-N", "fromcli", "-V", "-o", "host:%s" % out, "-v", "EXTRA=1", str(script), check_rc=0)
    info = task_info(jobdir)
    assert (info["PBS_JOBNAME"], info["PBS_QUEUE"]) == ("fromcli", "headerq")
    assert info[MARKER] == "from-the-submitter" and info["EXTRA"] == "1" and info["CWD"] == HOME
    (jobdir / "release").touch()
    wait_for(out.exists, 10, "the joined output file")
    assert out.read_text() == "hello-out\nhello-err\n"


def test_torque_array_runs_every_index_at_once_in_its_own_group(env, jobdir, tmp_path):
    script = tmp_path / "array.sh"
    script.write_text(job_script(jobdir, "PBS_ARRAYID", "#PBS -N arr\n#PBS -t 1-3"))
    assert run(env, "qsub", str(script), cwd=str(tmp_path), check_rc=0).stdout == "1[].fakeserver\n"
    infos = [task_info(jobdir, i) for i in (1, 2, 3)]
    assert [i["PBS_JOBID"] for i in infos] == ["1[%d].fakeserver" % i for i in (1, 2, 3)]
    assert [i["PBS_JOBNAME"] for i in infos] == ["arr-1", "arr-2", "arr-3"]
    pids = [int(i["PID"]) for i in infos]
    assert len(set(pids)) == 3 and all(os.getpgid(pid) == pid for pid in pids)

    _, rows = table(run(env, "qstat", check_rc=0).stdout)
    assert [(r[0], r[4]) for r in rows] == [("1[].fakeserver", "R")]
    _, rows = table(run(env, "qstat", "-t", check_rc=0).stdout)
    assert [(r[0], r[1], r[4]) for r in rows] == [("1[%d].fakeserver" % i, "arr-%d" % i, "R") for i in (1, 2, 3)]
    assert run(env, "qstat", "1").returncode == 153, "an array is named with its brackets"
    assert "job_array_request = 1-3" in run(env, "qstat", "-f", "1[]", check_rc=0).stdout

    (jobdir / "release").touch()
    wait_for(lambda: run(env, "qstat", "1[]").returncode == 153, 10, "the array to finish")
    assert [(tmp_path / ("arr.o1-%d" % i)).read_text() for i in (1, 2, 3)] == ["hello-out\n"] * 3


def test_pbs_pro_flavour_uses_J_and_its_own_table(tmp_path, jobdir):
    env = fake_batch_env(tmp_path, kill_delay=KILL_DELAY, pbs_flavor="pbspro")
    try:
        script = tmp_path / "array.sh"
        script.write_text(job_script(jobdir, "PBS_ARRAY_INDEX", "#PBS -N pro"))
        refused = run(env, "qsub", "-t", "1-2", str(script))
        assert refused.returncode == 2 and "invalid option -- 't'" in refused.stderr
        assert run(env, "qsub", "-J", "1-2", str(script), cwd=str(tmp_path), check_rc=0).stdout == "1[].fakeserver\n"
        infos = [task_info(jobdir, i) for i in (1, 2)]
        assert [(i["PBS_ARRAY_INDEX"], i["PBS_ARRAY_ID"], i["PBS_JOBNAME"]) for i in infos] == \
            [("1", "1[].fakeserver", "pro"), ("2", "1[].fakeserver", "pro")]
        out = run(env, "qstat", "-t", check_rc=0).stdout.splitlines()
        assert out[0].split() == ["Job", "id", "Name", "User", "Time", "Use", "S", "Queue"]
        assert out[1] == "----------------  ---------------- ----------------  -------- - -----"
        assert [(r.split()[0], r.split()[4]) for r in out[2:]] == \
            [("1[].fakeserver", "B"), ("1[1].fakeserver", "R"), ("1[2].fakeserver", "R")]
        (jobdir / "release").touch()
        wait_for(lambda: run(env, "qstat", "1[]").returncode == 153, 10, "the array to finish")
        assert (tmp_path / "pro.o1.2").read_text() == "hello-out\n"
    finally:
        stop_all_jobs(env)


def test_qdel_terms_every_task_group_then_kills_what_ignores_it(env, jobdir, tmp_path):
    script = tmp_path / "stubborn.sh"
    script.write_text(job_script(jobdir, "PBS_ARRAYID", "#PBS -t 1-2", trap="trap 'touch $d/$i.term' TERM"))
    run(env, "qsub", str(script), check_rc=0)
    infos = [task_info(jobdir, i) for i in (1, 2)]
    deleted = run(env, "qdel", "1[].fakeserver", check_rc=0)
    assert deleted.stdout == deleted.stderr == ""
    assert_gone(*[p for i in infos for p in (i["PID"], i["CHILD"])])
    tasks = Path(env["FAKE_BATCH_SPOOL"]) / "pbs" / "jobs" / "1" / "tasks"
    for i in (1, 2):
        wait_for((tasks / ("%d.json" % i)).exists, 5, "task %d's end to be recorded" % i)
        assert (jobdir / ("%d.term" % i)).exists(), "SIGTERM came first"
        wait_for(lambda: "signal" in read_json(tasks / ("%d.json" % i), {}), 5, "task %d's exit" % i)
        assert read_json(tasks / ("%d.json" % i))["signal"] == signal.SIGKILL, "then SIGKILL"
    wait_for(lambda: run(env, "qstat", "1[]").returncode == 153, 5, "the deleted job to leave qstat")
    again = run(env, "qdel", "1[]")
    assert (again.returncode, again.stderr) == (153, "qdel: Unknown Job Id 1[].fakeserver\n")


def test_qsig_signals_every_task(env, jobdir, tmp_path):
    script = tmp_path / "sig.sh"
    script.write_text(job_script(jobdir, "PBS_ARRAYID", "#PBS -t 1-2", trap="trap 'touch %s/$PBS_ARRAYID.usr1' USR1"
                                 % jobdir))
    run(env, "qsub", str(script), check_rc=0)
    infos = [task_info(jobdir, i) for i in (1, 2)]
    assert run(env, "qsig", "-s", "SIGUSR1", "1[]", check_rc=0).stdout == ""
    for i in (1, 2):
        wait_for((jobdir / ("%d.usr1" % i)).exists, 5, "task %d to get SIGUSR1" % i)
    run(env, "qsig", "-s", "INT", "1[]", check_rc=0)
    assert_gone(*[i["PID"] for i in infos])
    unknown = run(env, "qsig", "-s", "10", "7")
    assert (unknown.returncode, unknown.stderr) == (153, "qsig: Unknown Job Id 7.fakeserver\n")


def test_walltime_ends_a_pbs_job(env, jobdir, tmp_path):
    script = tmp_path / "slow.sh"
    script.write_text(job_script(jobdir, header="#PBS -l walltime=00:00:01"))
    run(env, "qsub", str(script), check_rc=0)
    info = task_info(jobdir)
    assert_gone(info["PID"], info["CHILD"])
    wait_for(lambda: run(env, "qstat", "1").returncode == 153, 5, "the job to leave qstat")


def test_state_comes_from_live_pids_when_the_supervisor_is_killed(env, jobdir, tmp_path):
    script = tmp_path / "job.sh"
    script.write_text(job_script(jobdir))
    run(env, "qsub", str(script), check_rc=0)
    info = task_info(jobdir)
    supervisor = read_json(Path(env["FAKE_BATCH_SPOOL"]) / "pbs" / "jobs" / "1" / "supervisor.json")
    os.kill(supervisor["pid"], signal.SIGKILL)
    assert_gone(supervisor["pid"])
    assert table(run(env, "qstat", "1", check_rc=0).stdout)[1][0][4] == "R"
    run(env, "qdel", "1", check_rc=0)
    assert_gone(info["PID"], info["CHILD"])
    assert run(env, "qstat", "1").returncode == 153


def test_the_supervisor_reaps_tasks_as_they_end(env, jobdir, tmp_path):
    script = tmp_path / "job.sh"
    script.write_text("#!/bin/sh\n[ $PBS_ARRAYID = 1 ] && exit 0\n" + job_script(jobdir, "PBS_ARRAYID"))
    run(env, "qsub", "-t", "1-2", str(script), check_rc=0)
    task_info(jobdir, 2)
    job_dir = Path(env["FAKE_BATCH_SPOOL"]) / "pbs" / "jobs" / "1"
    wait_for(lambda: "returncode" in read_json(job_dir / "tasks" / "1.json", {}), 5, "task 1's exit to be recorded")
    supervisor = read_json(job_dir / "supervisor.json")["pid"]
    children = [p for p in os.listdir("/proc") if p.isdigit() and stat_fields(p)[:2] == ["Z", str(supervisor)]]
    assert children == [], "the supervisor leaves no zombies"
    assert table(run(env, "qstat", "-t", check_rc=0).stdout)[1][0][0] == "1[2].fakeserver"


def stat_fields(pid: str) -> list:
    try:
        return Path("/proc/%s/stat" % pid).read_text().rsplit(")", 1)[1].split()
    except OSError:
        return []


def test_process_identity_includes_its_start_time():
    me = os.getpid()
    assert alive(me, start_time(me)) and not alive(me, start_time(me) + 1)


# ------------------------------------------------------------------ LSF


def test_lsf_job_from_stdin_keeps_environment_and_cwd_and_writes_output_live(env, jobdir, tmp_path):
    script = job_script(jobdir, header="#BSUB -J lsfjob\n#BSUB -o out.%J")
    submitted = run(env, "bsub", stdin=script, cwd=str(tmp_path), check_rc=0)
    assert submitted.stdout == "Job <1> is submitted to default queue <normal>.\n"
    info = task_info(jobdir)
    assert (info["LSB_JOBID"], info["LSB_JOBINDEX"], info["LSB_JOBNAME"]) == ("1", "0", "lsfjob")
    assert info["CWD"] == str(tmp_path) and info[MARKER] == "from-the-submitter"
    assert (tmp_path / "out.1").read_text() == "hello-out\nhello-err\n", "written while the job runs"

    header, rows = table(run(env, "bjobs", check_rc=0).stdout)
    assert header == ["JOBID", "USER", "STAT", "QUEUE", "FROM_HOST", "EXEC_HOST", "JOB_NAME", "SUBMIT_TIME"]
    assert [(r[0], r[2], r[3], r[6]) for r in rows] == [("1", "RUN", "normal", "lsfjob")]
    (jobdir / "release").touch()
    wait_for(lambda: "DONE" in run(env, "bjobs", "1").stdout, 10, "the job to be DONE")
    none = run(env, "bjobs")
    assert (none.returncode, none.stdout, none.stderr) == (255, "", "No unfinished job found\n")
    assert "Successfully completed." in (tmp_path / "out.1").read_text()
    assert_gone(info["PID"], info["CHILD"])


def test_lsf_array_from_the_command_line_runs_each_index(env, jobdir, tmp_path):
    script = tmp_path / "run.sh"
    script.write_text(job_script(jobdir, "LSB_JOBINDEX", "#BSUB -q ignored-unless-on-stdin"))
    script.chmod(0o755)
    submitted = run(env, "bsub", "-q", "short", "-J", "arr[1-3]", "-o", "out.%J.%I", str(script),
                    cwd=str(tmp_path), check_rc=0)
    assert submitted.stdout == "Job <1> is submitted to queue <short>.\n"
    infos = [task_info(jobdir, i) for i in (1, 2, 3)]
    assert [(i["LSB_JOBNAME"], i["LSB_QUEUE"]) for i in infos] == [("arr[%d]" % i, "short") for i in (1, 2, 3)]
    _, rows = table(run(env, "bjobs", "-w", check_rc=0).stdout)
    assert [(r[0], r[2], r[6]) for r in rows] == [("1", "RUN", "arr[%d]" % i) for i in (1, 2, 3)]
    _, rows = table(run(env, "bjobs", "1[2]", check_rc=0).stdout)
    assert [r[6] for r in rows] == ["arr[2]"]
    assert [(tmp_path / ("out.1.%d" % i)).exists() for i in (1, 2, 3)] == [True] * 3


def test_lsf_exit_codes_show_as_done_or_exit(env):
    run(env, "bsub", "true", check_rc=0)
    run(env, "bsub", "exit 3", check_rc=0)
    wait_for(lambda: run(env, "bjobs", "-a").stdout.count("DONE") + run(env, "bjobs", "-a").stdout.count("EXIT") == 2,
             10, "both jobs to finish")
    _, rows = table(run(env, "bjobs", "1", "2", check_rc=0).stdout)
    assert [(r[0], r[2]) for r in rows] == [("1", "DONE"), ("2", "EXIT")]


def test_bkill_s_signals_and_bkill_sends_int_term_then_kill_to_every_element(env, jobdir):
    traps = "trap 'touch $d/$i.usr1' USR1; trap 'echo INT >> $d/$i.sigs' INT; trap 'echo TERM >> $d/$i.sigs' TERM"
    run(env, "bsub", stdin=job_script(jobdir, "LSB_JOBINDEX", "#BSUB -J sig[1-2]", trap=traps), check_rc=0)
    infos = [task_info(jobdir, i) for i in (1, 2)]
    assert run(env, "bkill", "-s", "USR1", "1", check_rc=0).stdout == "Job <1> is being signaled\n"
    for i in (1, 2):
        wait_for((jobdir / ("%d.usr1" % i)).exists, 5, "element %d to get SIGUSR1" % i)
    assert run(env, "bkill", "1", check_rc=0).stdout == "Job <1> is being terminated\n"
    assert_gone(*[p for i in infos for p in (i["PID"], i["CHILD"])])
    wait_for(lambda: run(env, "bjobs", "1").stdout.count("EXIT") == 2, 5, "both elements to show EXIT")
    tasks = Path(env["FAKE_BATCH_SPOOL"]) / "lsf" / "jobs" / "1" / "tasks"
    for i in (1, 2):
        assert sorted((jobdir / ("%d.sigs" % i)).read_text().split()) == ["INT", "TERM"]
        assert read_json(tasks / ("%d.json" % i))["signal"] == signal.SIGKILL
    again = run(env, "bkill", "1")
    assert (again.returncode, again.stdout, again.stderr) == (255, "", "Job <1>: Job has already finished\n")


# ------------------------------------------------------------------ HTCondor


SUBMIT = '''# a job per process
universe   = vanilla
executable = {script}
arguments  = "$(Process) 'two words' ""quoted"""
environment = "FOO=bar BAZ='x y'"
initialdir = {iwd}
output     = out.$(Cluster).$(Process)
error      = err.$(Cluster).$(Process)
log        = job.log
{extra}
queue 2
'''


def condor_job(env, tmp_path, jobdir, extra="", trap=""):
    script = tmp_path / "condor.sh"
    script.write_text(job_script(jobdir, "PROCESS", 'PROCESS="$1"', trap=trap))
    script.chmod(0o755)
    iwd = tmp_path / "iwd"
    iwd.mkdir()
    (tmp_path / "job.sub").write_text(SUBMIT.format(script=script.name, iwd="iwd", extra=extra))
    submitted = run(env, "condor_submit", "job.sub", cwd=str(tmp_path), check_rc=0)
    assert submitted.stdout == "Submitting job(s)..\n2 job(s) submitted to cluster 1.\n"
    return iwd, [task_info(jobdir, i) for i in (0, 1)]


def test_condor_job_runs_with_arguments_environment_and_initialdir(env, jobdir, tmp_path):
    iwd, infos = condor_job(env, tmp_path, jobdir)
    assert [i["ARG"] for i in infos] == [["0", "two words", '"quoted"'], ["1", "two words", '"quoted"']]
    assert all(i["CWD"] == str(iwd) and (i["FOO"], i["BAZ"]) == ("bar", "x y") for i in infos)
    assert MARKER not in infos[0] and "PATH" not in infos[0], "no getenv: the submitter's variables stay behind"
    assert "ProcId = 1" in Path(infos[1]["_CONDOR_JOB_AD"]).read_text()
    assert (iwd / "out.1.1").read_text() == "hello-out\n" and (iwd / "err.1.1").read_text() == "hello-err\n"

    batch = run(env, "condor_q", check_rc=0).stdout.splitlines()
    assert batch[2].startswith("-- Schedd: ")
    assert batch[3].split() == ["OWNER", "BATCH_NAME", "SUBMITTED", "DONE", "RUN", "IDLE", "TOTAL", "JOB_IDS"]
    row = batch[4].split()
    assert row[1:3] == ["ID:", "1"] and row[5:] == ["_", "2", "_", "2", "1.0-1"]
    assert "Total for query: 2 jobs; 0 completed, 0 removed, 0 idle, 2 running, 0 held, 0 suspended" in batch[6]
    listing = run(env, "condor_q", "-nobatch", "1", check_rc=0).stdout.splitlines()
    assert listing[3].split() == ["ID", "OWNER", "SUBMITTED", "RUN_TIME", "ST", "PRI", "SIZE", "CMD"]
    assert [(r.split()[0], r.split()[5]) for r in listing[4:6]] == [("1.0", "R"), ("1.1", "R")]
    assert run(env, "condor_q", "-af", "ClusterId", "ProcId", "JobStatus", check_rc=0).stdout == "1 0 2\n1 1 2\n"

    (jobdir / "release").touch()
    wait_for(lambda: "Total for query: 0 jobs" in run(env, "condor_q").stdout, 10, "the jobs to leave the queue")
    log = (iwd / "job.log").read_text()
    assert log.count("Job terminated.") == 2 and "(1) Normal termination (return value 0)" in log


def test_condor_getenv_and_old_argument_syntax(env, jobdir, tmp_path):
    iwd, infos = condor_job(env, tmp_path, jobdir, extra="getenv = True\narguments = $(Process) plain\\\"q")
    assert infos[1]["ARG"] == ["1", 'plain"q'] and infos[0][MARKER] == "from-the-submitter"


def test_condor_rm_removes_every_process_of_the_cluster(env, jobdir, tmp_path):
    iwd, infos = condor_job(env, tmp_path, jobdir, trap="trap 'touch $d/$i.term' TERM")
    removed = run(env, "condor_rm", "1", check_rc=0)
    assert removed.stdout == "All jobs in cluster 1 have been marked for removal\n"
    assert_gone(*[p for i in infos for p in (i["PID"], i["CHILD"])])
    wait_for(lambda: run(env, "condor_q", "-nobatch").stdout.count("1.") == 0, 5, "the cluster to leave the queue")
    assert (iwd / "job.log").read_text().count("Job was aborted.") == 2
    again = run(env, "condor_rm", "1")
    assert (again.returncode, again.stderr) == (1, "Couldn't find/remove all jobs in cluster 1\n")


# ------------------------------------------------------------------ Windows HPC

JOB_XML = """<?xml version="1.0" encoding="utf-8"?>
<Job Version="2.000" Name="sweep" Priority="Highest" %(job)s xmlns="http://schemas.microsoft.com/HPCS2008/scheduler/">
  <Dependencies />
  <Tasks>
    <Task Name="t" IsParametric="true" StartValue="1" EndValue="2" IncrementValue="1"
          CommandLine="%(script)s * word" WorkDirectory="%(cwd)s" StdOutFilePath="out.*" StdErrFilePath="err.*">
      <EnvironmentVariables><Variable><Name>GIVEN</Name><Value>a &amp; b</Value></Variable></EnvironmentVariables>
    </Task>
  </Tasks>
</Job>
"""


def winhpc_job(tmp_path, jobdir, job_attributes="") -> Path:
    script = tmp_path / "job.sh"
    script.write_text(job_script(jobdir, "CCP_TASKINSTANCEID"))
    script.chmod(0o755)
    path = tmp_path / "job.xml"
    path.write_text(JOB_XML % {"job": job_attributes, "script": script, "cwd": tmp_path})
    return path


def winhpc_state(env, job_id="1") -> str:
    return re.search(r"^State\s*:\s*(\w+)$", run(env, "job", "view", job_id, check_rc=0).stdout, re.M).group(1)


def test_winhpc_parametric_job_runs_every_instance_with_its_variables_and_finishes(env, jobdir, tmp_path):
    jobfile = winhpc_job(tmp_path, jobdir)
    done = run(env, "job", "submit", "/jobfile:%s" % jobfile, "/scheduler:localhost", check_rc=0)
    assert done.stdout == "Job has been submitted. ID: 1.\n"
    infos = [task_info(jobdir, i) for i in (1, 2)]
    for i, info in zip((1, 2), infos):
        assert info["ARG"] == [str(i), "word"] and info["CWD"] == str(tmp_path)
        assert (info["CCP_JOBID"], info["CCP_TASKID"], info["CCP_TASKINSTANCEID"]) == ("1", "1", str(i))
        assert info["GIVEN"] == "a & b" and MARKER not in info
    assert winhpc_state(env) == "Running"
    (jobdir / "release").write_text("")
    wait_for(lambda: winhpc_state(env) == "Finished", 10, "the job to finish")
    assert (tmp_path / "out.2").read_text() == "hello-out\n" and (tmp_path / "err.1").read_text() == "hello-err\n"
    late = run(env, "job", "cancel", "1")
    assert (late.returncode, late.stderr) == (1, "The job cannot be canceled in its current state (Finished).\n")


def test_winhpc_cancel_terms_every_task_then_kills_what_ignores_it(env, jobdir, tmp_path):
    script = tmp_path / "job.sh"
    script.write_text(job_script(jobdir, "CCP_TASKINSTANCEID", trap="trap '' TERM"))
    script.chmod(0o755)
    jobfile = tmp_path / "job.xml"
    jobfile.write_text(JOB_XML % {"job": "", "script": script, "cwd": tmp_path})
    run(env, "job", "submit", "/jobfile:%s" % jobfile, check_rc=0)
    infos = [task_info(jobdir, i) for i in (1, 2)]
    assert run(env, "job", "cancel", "1", check_rc=0).stdout == ""
    assert_gone(*[p for i in infos for p in (i["PID"], i["CHILD"])])
    wait_for(lambda: winhpc_state(env) == "Canceled", 5, "the job to show Canceled")


def test_winhpc_queued_job_shows_queued_and_a_canceled_one_never_starts(tmp_path, jobdir):
    env = fake_batch_env(tmp_path, kill_delay=KILL_DELAY, start_delay=30)
    try:
        run(env, "job", "submit", "/jobfile:%s" % winhpc_job(tmp_path, jobdir), check_rc=0)
        assert winhpc_state(env) == "Queued"
        run(env, "job", "cancel", "1", "/scheduler:localhost", check_rc=0)
        wait_for(lambda: winhpc_state(env) == "Canceled", 5, "the job to show Canceled")
        wait_for(lambda: (Path(env["FAKE_BATCH_SPOOL"]) / "windowshpc" / "jobs" / "1" / "done").exists(), 5,
                 "the job's supervisor to finish")
        assert list(jobdir.iterdir()) == [], "no canceled task ever started"
    finally:
        stop_all_jobs(env)


@pytest.mark.parametrize("args, message", [
    (["/scheduler:elsewhere"], "Unable to connect to the head node elsewhere.\n"),
    (["/nosuch:1"], "job submit: unknown option /nosuch"),
])
def test_winhpc_refuses_other_schedulers_and_unknown_options(env, jobdir, tmp_path, args, message):
    done = run(env, "job", "submit", "/jobfile:%s" % winhpc_job(tmp_path, jobdir), *args)
    assert done.returncode == 1 and done.stderr.startswith(message) and done.stdout == ""


@pytest.mark.parametrize("attributes, message", [
    ('Bogus="1"', "The job file is not valid: unknown Job attribute Bogus\n"),
    ('RunUntilCanceled="false" JobTemplate="Default" NodeGroups="g"', None),
])
def test_winhpc_validates_the_job_file(env, jobdir, tmp_path, attributes, message):
    done = run(env, "job", "submit", "/jobfile:%s" % winhpc_job(tmp_path, jobdir, attributes))
    if message is None:
        assert done.returncode == 0, done.stderr
    else:
        assert (done.returncode, done.stdout, done.stderr) == (1, "", message)


# ------------------------------------------------------------------ all systems


def test_queued_jobs_show_as_queued_and_removal_means_they_never_start(tmp_path, jobdir):
    env = fake_batch_env(tmp_path, kill_delay=KILL_DELAY, start_delay=30)
    try:
        script = tmp_path / "job.sh"
        script.write_text(job_script(jobdir))
        script.chmod(0o755)
        (tmp_path / "job.sub").write_text("executable = job.sh\nqueue\n")
        run(env, "qsub", str(script), check_rc=0)
        run(env, "bsub", str(script), check_rc=0)
        run(env, "condor_submit", "job.sub", cwd=str(tmp_path), check_rc=0)
        assert table(run(env, "qstat", check_rc=0).stdout)[1][0][4] == "Q"
        assert table(run(env, "bjobs", check_rc=0).stdout)[1][0][2] == "PEND"
        assert run(env, "condor_q", "-nobatch").stdout.splitlines()[4].split()[5] == "I"
        not_running = run(env, "qsig", "-s", "USR1", "1")
        assert (not_running.returncode, not_running.stderr) == (170, "qsig: Request invalid for state of job 1\n")
        run(env, "qdel", "1", check_rc=0)
        run(env, "bkill", "1", check_rc=0)
        run(env, "condor_rm", "1", check_rc=0)
        wait_for(lambda: run(env, "qstat", "1").returncode == 153, 5, "the PBS job to go")
        wait_for(lambda: "EXIT" in run(env, "bjobs", "1").stdout, 5, "the LSF job to show EXIT")
        wait_for(lambda: "0 jobs" in run(env, "condor_q").stdout, 5, "the HTCondor job to go")
        assert list(jobdir.iterdir()) == [], "no removed job ever started"
    finally:
        stop_all_jobs(env)


def test_jobs_are_looked_up_by_name_as_the_real_tools_do(env, jobdir, tmp_path):
    """qselect -N, bjobs -J, condor_q OWNER -constraint ... -af ClusterId and job list /jobname:
    list this user's unfinished jobs of that name, as launchers ask when a submit printed no id."""
    user = pwd.getpwuid(os.getuid()).pw_name

    def script(system, name):
        directory = jobdir / system / name
        directory.mkdir(parents=True)
        path = directory / "job.sh"
        path.write_text(job_script(directory, "PROCESS", 'PROCESS="$1"'))
        path.chmod(0o755)
        return str(path)

    for name in ("wanted", "other"):
        run(env, "qsub", "-N", name, script("pbs", name), check_rc=0)
        run(env, "bsub", "-J", name, script("lsf", name), check_rc=0)
        (tmp_path / ("%s.sub" % name)).write_text("executable = %s\narguments = $(Process)\nbatch_name = %s\n"
                                                  "queue 2\n" % (script("htcondor", name), name))
        run(env, "condor_submit", "%s.sub" % name, cwd=str(tmp_path), check_rc=0)
        run(env, "job", "submit", "/jobname:%s" % name, "sh", script("windowshpc", name), check_rc=0)

    assert run(env, "qselect", "-N", "wanted", "-u", user, check_rc=0).stdout == "1.fakeserver\n"
    assert run(env, "qselect", "-N", "wanted", "-s", "R", check_rc=0).stdout == "1.fakeserver\n"
    assert run(env, "qselect", "-N", "wanted", "-s", "Q", check_rc=0).stdout == ""
    assert run(env, "qselect", "-N", "nope", check_rc=0).stdout == ""
    assert run(env, "qselect", check_rc=0).stdout == "1.fakeserver\n2.fakeserver\n"
    _, rows = table(run(env, "bjobs", "-w", "-J", "wanted", check_rc=0).stdout)
    assert [(r[0], r[2], r[6]) for r in rows] == [("1", "RUN", "wanted")]
    missing = run(env, "bjobs", "-w", "-J", "nope")
    assert (missing.returncode, missing.stdout, missing.stderr) == (255, "", "Job <nope> is not found\n")
    condor = ["condor_q", user, "-constraint", 'JobBatchName == "wanted"', "-af", "ClusterId", "ProcId"]
    assert run(env, *condor, check_rc=0).stdout == "1 0\n1 1\n"
    assert run(env, "condor_q", "-constraint", 'JobBatchName == "nope"', "-af", "ClusterId", check_rc=0).stdout == ""
    assert run(env, "condor_q", "nobody", "-constraint", 'JobBatchName == "wanted"', "-af", "ClusterId",
               check_rc=0).stdout == ""
    odd = run(env, "condor_q", "-constraint", "regexp(\"w\", JobBatchName)", "-af", "ClusterId")
    assert odd.returncode == 1 and "evaluates only" in odd.stderr
    listing = run(env, "job", "list", "/jobname:wanted", check_rc=0).stdout.splitlines()
    assert listing[0].split() == ["Id", "Owner", "Name", "State", "Priority"] and set(listing[1]) <= {"-", " "}
    assert [row.split()[:4] for row in listing[2:]] == [["1", user, "wanted", "Running"]]
    assert run(env, "job", "list", "/jobname:nope", check_rc=0).stdout.count("\n") == 2, "the header only"
    assert "Id                      : 1\n" in run(env, "job", "list", "/jobname:want*", "/format:list",
                                                   check_rc=0).stdout

    for directory in jobdir.glob("*/*"):
        (directory / "release").touch()
    wait_for(lambda: run(env, "qselect", "-N", "wanted").stdout == "", 10, "the PBS job to finish")
    wait_for(lambda: run(env, "condor_q", *condor[1:]).stdout == "", 10, "the HTCondor job to leave the queue")
    wait_for(lambda: len(run(env, "job", "list", "/jobname:wanted").stdout.splitlines()) == 2, 10,
             "the Windows HPC job to finish")
    ended = run(env, "job", "list", "/jobname:wanted", "/state:All", check_rc=0).stdout.splitlines()[2:]
    assert [row.split()[:4] for row in ended] == [["1", user, "wanted", "Finished"]], "/state:All lists it"
    wait_for(lambda: "DONE" in run(env, "bjobs", "-w", "-J", "wanted").stdout, 10, "the LSF job to show DONE")


@pytest.mark.parametrize("command, message, code", [
    (["qstat", "99"], "qstat: Unknown Job Id 99.fakeserver\n", 153),
    (["qstat", "-f", "99.fakeserver"], "qstat: Unknown Job Id 99.fakeserver\n", 153),
    (["qdel", "99"], "qdel: Unknown Job Id 99.fakeserver\n", 153),
    (["bjobs", "99"], "Job <99> is not found\n", 255),
    (["bkill", "99"], "Job <99>: No matching job found\n", 255),
    (["condor_rm", "99"], "Couldn't find/remove all jobs in cluster 99\n", 1),
    (["job", "view", "99"], "Job 99 does not exist.\n", 1),
    (["job", "cancel", "99"], "Job 99 does not exist.\n", 1),
])
def test_unknown_job_ids(env, command, message, code):
    done = run(env, *command)
    assert (done.returncode, done.stdout, done.stderr) == (code, "", message)


@pytest.mark.parametrize("command", sorted(p.name for p in BIN_DIR.iterdir()))
def test_spool_is_required(command, tmp_path):
    env = fake_batch_env(tmp_path)
    del env["FAKE_BATCH_SPOOL"]
    done = run(env, command, "1", stdin="")
    assert done.returncode == 2 and "FAKE_BATCH_SPOOL is not set" in done.stderr, done.stderr
