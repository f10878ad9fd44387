"""HTCondor: a submit description (not a shell script), condor_submit, condor_q, condor_rm.

Engines are the ``n`` processes of one cluster (``queue n``). HTCondor has no command to
signal a running job, so signals go through the controller. The description names the
interpreter as the executable and passes the arguments in HTCondor's quoted syntax. A job
cannot ask HTCondor when it will be removed, so a ``timelimit`` also becomes the engines'
``engine.end_time``, for them to drain before it.
"""
from __future__ import annotations

import re

from ...error import LauncherError
from .batch import BatchControllerLauncher, BatchEngineSetLauncher, BatchLauncher, current_user, job_number, unique

HEADER = """universe = vanilla
executable = {python}
arguments = "{condor_arguments}"
environment = "PYTHONPATH={condor_pythonpath}"
getenv = False
batch_name = {job_name}
"""

ENGINES_TEMPLATE = HEADER + """output = {output_file}.$(Process)
error = {output_file}.$(Process)
{options}
queue {n}
"""

CONTROLLER_TEMPLATE = HEADER + """output = {output_file}
error = {output_file}
{options}
queue 1
"""

JOB_ID = re.compile(r"submitted to cluster (\d+)\.")


def condor_quote(arg: str) -> str:
    """One argument in HTCondor's new argument syntax (inside the outer double quotes)."""
    arg = arg.replace('"', '""')
    if not arg or any(c in arg for c in " \t'"):
        return "'%s'" % arg.replace("'", "''")
    return arg


class HTCondorLauncher(BatchLauncher):
    system = name = "htcondor"
    settings_section = "launcher.htcondor"
    submit_command = ("condor_submit",)
    delete_command = ("condor_rm",)
    script_suffix = ".condor"

    header_lines = {"account": "accounting_group = %s"}
    running_states = frozenset({"R", "S", "<", ">"})
    pending_states = frozenset({"I", "H"})

    def header_options(self) -> list:
        lines = super().header_options()
        if self.settings.timelimit:
            lines.append("periodic_remove = (time() - EnteredCurrentStatus) > %s && JobStatus == 2"
                         % seconds(self.settings.timelimit))
        return lines

    def fields(self) -> dict:
        fields = super().fields()
        args = ["-m", self.module] + self.program_args()
        fields["condor_arguments"] = " ".join(condor_quote(a) for a in args)
        fields["condor_pythonpath"] = condor_quote(fields["pythonpath"])
        return fields

    def parse_job_id(self, output: str) -> str:
        m = JOB_ID.search(output)
        return m.group(1) if m else ""

    def find_job_ids_by_name(self) -> list:
        # batch_name in the description sets the job ad's JobBatchName. condor_q OWNER
        # -constraint EXPR -af ClusterId prints the ClusterId of each of this owner's jobs in the
        # queue that match, one a line (a line per process), nothing if none.
        output = self.run(["condor_q", current_user(), "-constraint", 'JobBatchName == "%s"' % self.job_name,
                           "-af", "ClusterId"]).stdout
        return unique(word for word in output.split() if word.isdigit())

    def job_states(self, job_ids) -> dict:
        # condor_q -nobatch CLUSTER...: one row per process, "ID OWNER SUBMITTED RUN_TIME ST PRI
        # SIZE CMD" with ID "cluster.process" and SUBMITTED two words, so ST is the sixth;
        # finished processes leave the queue.
        output = self.listing(["condor_q", "-nobatch"] + list(job_ids), unknown="not found")
        rows = [row.split() for row in output.splitlines()]
        return self.classify_rows(job_ids, ((job_number(row[0]), row[5]) for row in rows
                                            if len(row) > 5 and re.match(r"\d+\.\d+$", row[0])))


def seconds(timelimit: str, setting: str = "launcher.htcondor.timelimit") -> int:
    """'HH:MM:SS', 'MM:SS' or seconds, as HTCondor expressions (and Windows HPC) need them."""
    total = 0
    try:
        for part in str(timelimit).split(":"):
            total = total * 60 + int(part)
    except ValueError:
        raise LauncherError("%s: expected HH:MM:SS, MM:SS or seconds, got %r" % (setting, timelimit)) from None
    return total


def end_time_args(launcher, setting: str) -> list:
    """``--engine.end_time=+SECONDS`` from the launcher's timelimit, for systems whose jobs
    cannot ask when they end (HTCondor, Windows HPC): their engines then drain before the limit
    as they do under Slurm. Nothing if the engines are given an end time already."""
    limit = launcher.settings.timelimit
    if not limit or any(a.startswith(("--end-time", "--engine.end_time")) for a in launcher.args):
        return []
    return ["--engine.end_time=+%d" % seconds(limit, setting)]


class HTCondorControllerLauncher(HTCondorLauncher, BatchControllerLauncher):
    default_template = CONTROLLER_TEMPLATE


class HTCondorEngineSetLauncher(HTCondorLauncher, BatchEngineSetLauncher):
    default_template = ENGINES_TEMPLATE

    def program_args(self) -> list:
        return super().program_args() + end_time_args(self, "launcher.htcondor.timelimit")
