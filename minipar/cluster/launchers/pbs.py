"""PBS / Torque: qsub, qstat, qdel, qsig.

Engines are the tasks of an array job. The built-in template writes Torque's ``-t 1-n``
(as ipyparallel did); on PBS Pro / OpenPBS, whose arrays are ``-J 1-n``, give your own
``[launcher.pbs.engines] batch_template``.
"""
from __future__ import annotations

from .batch import BatchControllerLauncher, BatchEngineSetLauncher, BatchLauncher, current_user, job_number, unique

HEADER = """#!/bin/sh
#PBS -N {job_name}
#PBS -j oe
#PBS -o {output_file}
"""

ENGINES_TEMPLATE = HEADER + """#PBS -t 1-{n}
{options}
exec {program_and_args}
"""

CONTROLLER_TEMPLATE = HEADER + """{options}
exec {program_and_args}
"""


class PBSLauncher(BatchLauncher):
    system = name = "pbs"
    settings_section = "launcher.pbs"
    submit_command = ("qsub",)
    delete_command = ("qdel",)
    signal_command = ("qsig", "-s", "SIG{signal}")

    header_lines = {"queue": "#PBS -q %s", "account": "#PBS -A %s", "timelimit": "#PBS -l walltime=%s"}
    running_states = frozenset("RBESU")
    pending_states = frozenset("QHWT")

    def parse_job_id(self, output: str) -> str:
        lines = output.strip().splitlines()
        return lines[-1].strip() if lines and lines[-1].strip()[:1].isdigit() else ""

    def find_job_ids_by_name(self) -> list:
        # qselect (Torque, PBS Pro, OpenPBS, POSIX) prints the ids of the selected jobs, one a
        # line ("12.server", "13[].server" for an array), and nothing, exit 0, if none match.
        output = self.run(["qselect", "-N", self.job_name, "-u", current_user()]).stdout
        return unique(line.strip() for line in output.splitlines() if line.strip()[:1].isdigit())

    def job_states(self, job_ids) -> dict:
        # qstat ID... prints a header, a dashes line and a row per job it knows, the state
        # letter in the fifth column and the id cut to the column's width (PBS Pro marks the cut
        # with '*'); each id the server no longer knows is an error ("Unknown Job Id").
        output = self.listing(["qstat"] + list(job_ids), unknown="Unknown Job Id")
        rows = [row.split() for row in output.splitlines()]
        return self.classify_rows(job_ids, ((job_number(row[0]), row[4]) for row in rows
                                            if len(row) > 5 and row[0][:1].isdigit()))


class PBSControllerLauncher(PBSLauncher, BatchControllerLauncher):
    default_template = CONTROLLER_TEMPLATE


class PBSEngineSetLauncher(PBSLauncher, BatchEngineSetLauncher):
    default_template = ENGINES_TEMPLATE
