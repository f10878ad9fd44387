"""scripts/services/sge.sh brings up real Son of Grid Engine on this host, idempotently, and jobs run on it."""
from __future__ import annotations

import glob
import os
import re
import subprocess
from pathlib import Path

from fixtures.services import SGE_OK_LINE, run_sge_script
from helpers import pid_gone, wait_for

QMASTER_PID = Path("/var/spool/gridengine/qmaster/qmaster.pid")
EXECD_PIDS = "/var/spool/gridengine/execd/*/execd.pid"  # execd names its dir after its reverse lookup

def live_pid(path) -> int | None:
    try:
        pid = int(Path(path).read_text().strip())
    except (OSError, ValueError):
        return None
    return None if pid_gone(pid) else pid


def daemon_pids() -> tuple:
    execd = [pid for pid in map(live_pid, glob.glob(EXECD_PIDS)) if pid]
    return live_pid(QMASTER_PID), execd[0] if execd else None


def test_script_prints_exactly_one_ok_line_naming_the_running_daemons(sge):
    lines = sge.stdout.splitlines()
    assert len(lines) == 1, sge.stdout
    host, qmaster, execd = SGE_OK_LINE.match(lines[0]).groups()
    assert host == os.uname().nodename
    assert (int(qmaster), int(execd)) == daemon_pids()


def test_second_run_is_idempotent(sge):
    before = daemon_pids()
    assert None not in before, before
    again = run_sge_script()
    assert again.returncode == 0, again.stdout + again.stderr
    assert len(again.stdout.splitlines()) == 1 and SGE_OK_LINE.match(again.stdout), again.stdout
    assert daemon_pids() == before  # neither daemon was started twice or restarted


def test_job_round_trip(sge, tmp_path):
    # -b y: the command's words go as separate arguments (a single quoted string fails, TESTBED 4f)
    submit = subprocess.run(["qsub", "-terse", "-w", "e", "-b", "y", "-cwd", "-N", "minipar-test", "-j", "y",
                             "-o", "out.txt", "/usr/bin/printenv", "JOB_ID", "SGE_O_WORKDIR", "NSLOTS"],
                            cwd=str(tmp_path), stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    assert submit.returncode == 0, submit.stderr
    job_id = submit.stdout.strip()
    assert re.fullmatch(r"\d+", job_id), submit.stdout

    def finished():
        # a finished job is unknown to qstat -j: "Following jobs do not exist: N", exit 1
        q = subprocess.run(["qstat", "-j", job_id], stdin=subprocess.DEVNULL, capture_output=True, text=True,
                           timeout=30)
        return q.returncode != 0 and "do not exist" in q.stdout + q.stderr

    wait_for(finished, 60, "SGE job %s to finish" % job_id, interval=0.2)
    assert (tmp_path / "out.txt").read_text().split("\n") == [job_id, str(tmp_path), "1", ""]
