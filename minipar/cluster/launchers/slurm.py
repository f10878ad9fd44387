"""Slurm: sbatch --parsable, squeue, scancel.

Engines run as the tasks of one ``srun`` step, so ``scancel --signal`` reaches them
(and only them, not the batch shell) and they end with the job.
"""
from __future__ import annotations

import re

from .batch import BatchControllerLauncher, BatchEngineSetLauncher, BatchLauncher, current_user, unique

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

    def job_state(self) -> str:
        # squeue forgets finished jobs (empty output, exit 0) or, after MinJobAge, does not know
        # the id at all (exit 1, "Invalid job id"): both mean the job is over.
        output = self.status_output(["squeue", "--noheader", "--jobs", self.job_id, "--format=%T"],
                                    unknown="Invalid job id")
        return self.classify((output or "").split())


class SlurmControllerLauncher(SlurmLauncher, BatchControllerLauncher):
    default_template = CONTROLLER_TEMPLATE


class SlurmEngineSetLauncher(SlurmLauncher, BatchEngineSetLauncher):
    default_template = ENGINES_TEMPLATE
