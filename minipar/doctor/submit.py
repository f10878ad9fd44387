"""``--submit SYSTEM``: the doctor as a tiny batch job, where the engines' jobs would run.

The job is the engines' job with one task: the batch system's engine-set launcher, its
``[launcher.SYSTEM]`` settings (queue, account, options...) and its engines template, only
running ``python -m minipar.doctor`` instead of the engine. So it lands on the nodes, in the
environment and behind the firewalls engines would, and a template that loads modules or
activates an environment for the engines does so for the doctor too. Nothing here submits,
polls or cancels by itself: the launcher does, as it does for a cluster.

The submitting doctor waits (bounded) for the job to start, then to end, reads its output file
and ends with its verdict. A job still queued after ``--submit-timeout`` is cancelled and says
so; so is one that runs far longer than its checks can take.
"""
from __future__ import annotations

import time
from pathlib import Path

from ..cluster.launchers import launcher_class, launcher_settings
from ..cluster.launchers.base import PACKAGE
from ..cluster.launchers.batch import DONE, PENDING
from .report import NO_VERDICT, verdict_in

SUBMIT_SYSTEMS = ("slurm", "sge", "pbs", "lsf", "htcondor")
"""Batch systems the doctor can be submitted to (their engine-set launchers)."""

JOB_POLL_INTERVAL = 0.5
"""Seconds between questions about the doctor's one job: a short wait, so often enough to
end soon after the job does, and rarely enough to spare a busy scheduler."""

RUN_ALLOWANCE = 60.0
"""Seconds a started doctor job may take beyond its checks' timeouts (interpreter start on a
shared file system, a slow login shell) before it counts as hung and is cancelled."""

CHECKS_AT_MOST = 15
"""Timeouts a doctor's run can add up to (every check waiting its full time)."""

OUTPUT_TIMEOUT = 30.0
"""Seconds to wait for a finished job's verdict to show in its output file: PBS copies the
file back only at the end, and shared file systems show a new file late."""


class DoctorJob:
    """Mixed in before a batch system's engine-set launcher: one task that runs the doctor."""

    @property
    def module(self) -> str:
        return PACKAGE + ".doctor"

    @property
    def job_name(self) -> str:
        return "minipar-doctor-%s" % self.tag

    @property
    def output_file(self) -> str:
        return str(self.log_dir / ("doctor-%s-%s.out" % (self.system, self.tag)))

    @property
    def script_path(self) -> Path:
        """Beside the engines' scripts, never over one of them."""
        return self.profile_dir / "batch" / ("doctor-%s-%s%s" % (self.system, self.tag, self.script_suffix))

    def program_args(self) -> list:
        return list(self.args)


def doctor_job(system: str, profile_dir, config, doctor_args):
    """The launcher of a one-task ``system`` job running the doctor with ``doctor_args``."""
    base = launcher_class(system, "engines", "--submit")
    cls = type("Doctor" + base.__name__, (DoctorJob, base), {"__module__": __name__})
    return cls(profile_dir, config.engine.cluster_id, args=doctor_args, n=1,
               settings=launcher_settings(config, base, "engines"))


def run_timeout(check_timeout: float) -> float:
    return RUN_ALLOWANCE + CHECKS_AT_MOST * check_timeout


def wait_until(condition, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(JOB_POLL_INTERVAL)
    return True


def run_as_job(job, start_timeout: float, check_timeout: float, tell) -> tuple:
    """Submit, wait, read: ``(output, verdict line)``; the verdict opens with NO_VERDICT when
    the job did not run to the end. ``tell`` gets progress lines. The job is never left behind:
    any way out of here but its end cancels it."""
    job.start()
    what = "%s job %s" % (job.system, job.job_id)
    tell("submitted the doctor as %s (%s); waiting up to %gs for it to start" % (what, job.script_file, start_timeout))
    finished = False
    try:
        if not wait_until(lambda: job.state(fresh=True) != PENDING, start_timeout):
            return "", "%s: the %s did not start within %gs (--submit-timeout): cancelled it" % (
                NO_VERDICT, what, start_timeout)
        tell("%s started; waiting for it to end" % what)
        limit = run_timeout(check_timeout)
        if not wait_until(lambda: job.state(fresh=True) == DONE, limit):
            return "", "%s: the %s still ran after %gs: cancelled it" % (NO_VERDICT, what, limit)
        finished = True
    finally:
        if not finished:
            job.stop()
    return read_verdict(job, what)


def read_verdict(job, what: str) -> tuple:
    output = ""
    deadline = time.monotonic() + OUTPUT_TIMEOUT
    while True:
        output = "".join(read_text(f) for f in job.output_files)
        line = verdict_in(output)
        if line or time.monotonic() > deadline:
            break
        time.sleep(JOB_POLL_INTERVAL)
    if line:
        return output, line
    last = "\n".join(output.strip().splitlines()[-5:]) or "(nothing)"
    return output, "%s: the %s ended without one; its output (%s) ends with: %s" % (
        NO_VERDICT, what, ", ".join(job.output_files), last)


def read_text(path) -> str:
    try:
        return Path(path).read_text(errors="replace")
    except OSError:
        return ""
