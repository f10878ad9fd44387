"""Slurm: sbatch --parsable, squeue, scancel.

Engines run as the tasks of one ``srun`` step, so ``scancel --signal`` reaches them
(and only them, not the batch shell) and they end with the job.
"""
from __future__ import annotations

import re

from .batch import BatchControllerLauncher, BatchEngineSetLauncher, BatchLauncher, current_user, job_number, unique

HEADER = """#!/bin/sh
#SBATCH --job-name={job_name}
#SBATCH --output={output_file}
"""

ENGINES_TEMPLATE = HEADER + """#SBATCH --ntasks={n}
{options}
srun {program_and_args}
"""

CONTROLLER_TEMPLATE = HEADER + """#SBATCH --ntasks=1
{options}
exec {program_and_args}
"""


class SlurmLauncher(BatchLauncher):
    system = name = "slurm"
    settings_section = "launcher.slurm"
    submit_command = ("sbatch", "--parsable")
    delete_command = ("scancel",)
    signal_command = ("scancel", "--signal={signal}")
    header_lines = {"queue": "#SBATCH --partition=%s", "account": "#SBATCH --account=%s",
                    "timelimit": "#SBATCH --time=%s", "qos": "#SBATCH --qos=%s"}
    running_states = frozenset({"RUNNING", "CONFIGURING", "COMPLETING", "SUSPENDED", "STOPPED", "SIGNALING",
                                "STAGE_OUT", "RESIZING"})
    pending_states = frozenset({"PENDING", "REQUEUED"})

    def parse_job_id(self, output: str) -> str:
        first = output.strip().split(";")[0]
        return first if first.isdigit() else ""

    def find_job_ids_by_name(self) -> list:
        # squeue --name lists this user's pending and running jobs of that name (finished ones
        # only with --states), one "%i" a line: "42", or "42_3" for an array task.
        output = self.run(["squeue", "--noheader", "--user=%s" % current_user(), "--name=%s" % self.job_name,
                           "--format=%i"]).stdout
        return unique(re.match(r"\d*", word).group() for word in output.split())

    def job_states(self, job_ids) -> dict:
        # squeue --jobs=1,2,3 prints "%i %T" per job it lists ("42_3 RUNNING" per array task).
        # It leaves finished jobs out, and, after MinJobAge, a single id it no longer knows is
        # an error (exit 1, "Invalid job id"): either way the job is over.
        output = self.listing(["squeue", "--noheader", "--jobs=%s" % ",".join(job_ids), "--format=%i %T"],
                              unknown="Invalid job id")
        rows = [line.split() for line in output.splitlines()]
        return self.classify_rows(job_ids, ((job_number(row[0]), row[1]) for row in rows if len(row) == 2))


class SlurmControllerLauncher(SlurmLauncher, BatchControllerLauncher):
    default_template = CONTROLLER_TEMPLATE


class SlurmEngineSetLauncher(SlurmLauncher, BatchEngineSetLauncher):
    default_template = ENGINES_TEMPLATE
