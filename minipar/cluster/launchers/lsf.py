"""LSF: bsub (the script on stdin), bjobs, bkill.

Engines are the elements of a job array (``-J name[1-n]``). ``bkill -s`` delivers a
signal to every element.
"""
from __future__ import annotations

import re

from .batch import BatchControllerLauncher, BatchEngineSetLauncher, BatchLauncher, command_failed, job_number, unique

ENGINES_TEMPLATE = """#!/bin/sh
#BSUB -J {job_name}[1-{n}]
#BSUB -o {output_file}
{options}
exec {program_and_args}
"""

CONTROLLER_TEMPLATE = """#!/bin/sh
#BSUB -J {job_name}
#BSUB -o {output_file}
{options}
exec {program_and_args}
"""

JOB_ID = re.compile(r"Job <(\d+)> is submitted")


class LSFLauncher(BatchLauncher):
    system = name = "lsf"
    settings_section = "launcher.lsf"
    submit_command = ("bsub",)
    submit_reads_stdin = True
    delete_command = ("bkill",)
    signal_command = ("bkill", "-s", "{signal}")

    header_lines = {"queue": "#BSUB -q %s", "account": "#BSUB -P %s", "timelimit": "#BSUB -W %s"}
    running_states = frozenset({"RUN", "USUSP", "SSUSP"})
    pending_states = frozenset({"PEND", "PSUSP", "WAIT"})
    gone_text = "{system} shows it as finished (DONE or EXIT) or no longer knows it"

    def parse_job_id(self, output: str) -> str:
        m = JOB_ID.search(output)
        return m.group(1) if m else ""

    def find_job_ids_by_name(self) -> list:
        # bjobs -J NAME: this user's jobs of that name (an array by its name without indices),
        # the usual table with JOBID first and STAT third (-w: nothing cut); "Job <NAME> is not
        # found" on stderr, exit 255, if there are none. Finished jobs may be listed for a while.
        cmd = ["bjobs", "-w", "-J", self.job_name]
        proc = self.run(cmd, check=False)
        if proc.returncode != 0:
            if "is not found" in proc.stderr or "job found" in proc.stderr:
                return []
            raise command_failed(cmd, proc)
        rows = [row.split() for row in proc.stdout.splitlines()[1:]]
        return unique(row[0] for row in rows if len(row) > 2 and row[0].isdigit() and row[2] not in ("DONE", "EXIT"))

    def job_states(self, job_ids) -> dict:
        # bjobs ID...: a header, then one row per array element with JOBID first and STAT
        # third; finished elements stay listed as DONE or EXIT for a while, then an id is
        # unknown ("Job <ID> is not found" on stderr, while the others are listed).
        output = self.listing(["bjobs"] + list(job_ids), unknown="is not found")
        rows = [row.split() for row in output.splitlines()[1:]]
        return self.classify_rows(job_ids, ((job_number(row[0]), row[2]) for row in rows if len(row) > 2))


class LSFControllerLauncher(LSFLauncher, BatchControllerLauncher):
    default_template = CONTROLLER_TEMPLATE


class LSFEngineSetLauncher(LSFLauncher, BatchEngineSetLauncher):
    default_template = ENGINES_TEMPLATE
