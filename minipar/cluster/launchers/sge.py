"""Grid Engine: qsub -terse, qstat, qdel.

Engines are the tasks of an array job (``-t 1-n``), one engine each. SGE has no way to
signal a running job (no qsig; qmod only suspends), so signals go through the controller.
Jobs get a bare environment without ``-V`` and the queue's shell unless ``-S``: the
templates name /bin/sh and the command carries its own interpreter path and PYTHONPATH.
"""
from __future__ import annotations

import re

from .batch import (DONE, PENDING, RUNNING, BatchControllerLauncher, BatchEngineSetLauncher, BatchLauncher,
                    command_failed, current_user, unique)

HEADER = """#!/bin/sh
#$ -S /bin/sh
#$ -N {job_name}
#$ -j y
#$ -o {output_file}
"""

ENGINES_TEMPLATE = HEADER + """#$ -t 1-{n}
{options}
exec {program_and_args}
"""

CONTROLLER_TEMPLATE = HEADER + """{options}
exec {program_and_args}
"""

JOB_ID = re.compile(r"^(\d+)")


class SGELauncher(BatchLauncher):
    system = name = "sge"
    settings_section = "launcher.sge"
    submit_command = ("qsub", "-terse")
    delete_command = ("qdel",)

    header_lines = {"queue": "#$ -q %s", "account": "#$ -A %s", "timelimit": "#$ -l h_rt=%s"}

    def parse_job_id(self, output: str) -> str:
        m = JOB_ID.match(output.strip())
        return m.group(1) if m else ""

    def find_job_ids_by_name(self) -> list:
        # qstat -j NAME prints, per pending or running job of that name (any user's), a block of
        # "key:   value" lines under a line of '=', among them job_number, owner and job_name;
        # with none it says "Following jobs do not exist" on stderr and exits 1. Plain qstat
        # would not do: it cuts names to 10 characters.
        cmd = ["qstat", "-j", self.job_name]
        proc = self.run(cmd, check=False)
        if proc.returncode != 0:
            if "do not exist" in proc.stderr + proc.stdout:
                return []
            raise command_failed(cmd, proc)
        jobs, job = [], {}
        for line in proc.stdout.splitlines():
            key, sep, value = line.partition(":")
            if not sep:
                continue
            if key.strip() == "job_number":
                job = {}
                jobs.append(job)
            job[key.strip()] = value.strip()
        user = current_user()
        return unique(j.get("job_number", "") for j in jobs
                      if j.get("owner") == user and j.get("job_name") == self.job_name)

    def job_states(self, job_ids) -> dict:
        # Plain qstat lists all of this user's jobs, one row per running array task, with a
        # state like qw, hqw, r, t, dr or Eqw. A job not listed has finished or was deleted.
        rows = [row.split() for row in self.run(["qstat"]).stdout.splitlines()[2:]]
        states: dict = {}
        for row in rows:
            if len(row) > 4:
                states.setdefault(row[0], []).append(row[4])
        return {job_id: sge_state(states.get(job_id, [])) for job_id in job_ids}


def sge_state(states) -> str:
    """A job's state from its tasks' qstat states: a task in error (Eqw) counts only while no
    other runs."""
    if not states:
        return DONE
    if any("E" in s for s in states) and not any("r" in s or "t" in s for s in states):
        return DONE
    if any("r" in s or "t" in s or "d" in s for s in states):
        return RUNNING
    return PENDING


class SGEControllerLauncher(SGELauncher, BatchControllerLauncher):
    default_template = CONTROLLER_TEMPLATE


class SGEEngineSetLauncher(SGELauncher, BatchEngineSetLauncher):
    default_template = ENGINES_TEMPLATE
