"""Windows HPC (Microsoft HPC Pack): a job description XML, ``job submit /jobfile:``,
``job view``, ``job cancel``.

IPython 0.13's WindowsHPC launchers, rendered from a template like the other systems. The
engines are one parametric task of the job (instances 1..n, ``*`` in the task's paths
replaced by the instance number); the controller is a job of one task. Each task's command
line names this interpreter and gets PYTHONPATH as an environment variable of the task,
since tasks do not inherit the submitting environment. ``[launcher.windowshpc] scheduler``
names the head node (``/scheduler:``; empty: the client's default, the CCP_SCHEDULER
variable).

The command line is written for a shell, as HPC Pack 2016 and later run tasks on Linux
nodes, and execs the program: cancelling the job then signals the program itself, not a shell
whose end takes the rest of the task down before the engine can say why it stops. For Windows
nodes give a template whose CommandLine suits cmd.exe. The job command cannot signal a task,
so signals go through the controller; ``job list /jobname:`` finds a job by its name.
"""
from __future__ import annotations

import re
import shlex
import sys
from xml.sax.saxutils import escape

from ...error import LauncherError
from .batch import BatchControllerLauncher, BatchEngineSetLauncher, BatchLauncher, unique
from .htcondor import end_time_args, seconds

SCHEMA = "http://schemas.microsoft.com/HPCS2008/scheduler/"

ENGINES_TEMPLATE = """<?xml version="1.0" encoding="utf-8"?>
<Job Version="2.000" Name="{job_name}" UnitType="Core" MinCores="{n}" MaxCores="{n}" IsExclusive="false"
{options}
     xmlns="%s">
  <Dependencies />
  <Tasks>
    <Task Version="2.000" Name="{job_name}" UnitType="Core" MinCores="1" MaxCores="1"
          IsParametric="true" StartValue="1" EndValue="{n}" IncrementValue="1" IsRerunnable="false"
          CommandLine="{command_line}" WorkDirectory="{profile_dir}"
          StdOutFilePath="{output_file}.*" StdErrFilePath="{output_file}.*">
      <EnvironmentVariables>
        <Variable><Name>PYTHONPATH</Name><Value>{pythonpath}</Value></Variable>
      </EnvironmentVariables>
    </Task>
  </Tasks>
</Job>
""" % SCHEMA

CONTROLLER_TEMPLATE = """<?xml version="1.0" encoding="utf-8"?>
<Job Version="2.000" Name="{job_name}" UnitType="Core" MinCores="1" MaxCores="1" IsExclusive="false"
{options}
     xmlns="%s">
  <Dependencies />
  <Tasks>
    <Task Version="2.000" Name="{job_name}" UnitType="Core" MinCores="1" MaxCores="1" IsRerunnable="false"
          CommandLine="{command_line}" WorkDirectory="{profile_dir}"
          StdOutFilePath="{output_file}" StdErrFilePath="{output_file}">
      <EnvironmentVariables>
        <Variable><Name>PYTHONPATH</Name><Value>{pythonpath}</Value></Variable>
      </EnvironmentVariables>
    </Task>
  </Tasks>
</Job>
""" % SCHEMA

JOB_ID = re.compile(r"ID:\s*(\d+)")
STATE = re.compile(r"^State\s*:\s*(\w+)", re.M)


def attribute(value) -> str:
    """A value as the text of a double-quoted XML attribute."""
    return escape(str(value), {'"': "&quot;", "\n": "&#10;"})


class WindowsHPCLauncher(BatchLauncher):
    system = name = "windowshpc"
    settings_section = "launcher.windowshpc"
    submit_command = ("job", "submit")
    delete_command = ("job", "cancel")
    script_suffix = ".xml"

    header_lines = {"queue": 'NodeGroups="%s"', "account": 'Project="%s"'}
    running_states = frozenset({"Running", "Finishing", "Canceling"})
    pending_states = frozenset({"Configuring", "Submitted", "Validating", "ExternalValidation", "Queued"})
    gone_text = "{system} shows it as finished, failed or canceled"

    def scheduler_option(self) -> list:
        scheduler = self.settings.scheduler
        return ["/scheduler:%s" % scheduler] if scheduler else []

    def header_options(self) -> list:
        s = self.settings
        lines = [line % attribute(getattr(s, key)) for key, line in self.header_lines.items() if getattr(s, key)]
        if s.timelimit:
            lines.append('RuntimeSeconds="%d"' % seconds(s.timelimit, "launcher.windowshpc.timelimit"))
        return lines

    def fields(self) -> dict:
        fields = super().fields()
        program = [sys.executable, "-m", self.module]
        command_line = shlex.join(program + self.program_args())
        if self.role == "engines" and "*" in command_line:
            raise LauncherError("launcher.windowshpc: the engines' command line %r contains '*', which Windows HPC "
                                "replaces by the task's instance number; leave it out of engine_args" % command_line)
        fields["command_line"] = "exec " + command_line
        fields = {k: attribute(v) if isinstance(v, str) else v for k, v in fields.items()}
        fields["options"] = "\n".join(self.header_options() + list(self.settings.options))
        return fields

    def submit_argv(self, script) -> list:
        return list(self.submit_command) + ["/jobfile:%s" % script] + self.scheduler_option()

    def delete_argv(self) -> list:
        return list(self.delete_command) + [self.job_id] + self.scheduler_option()

    def parse_job_id(self, output: str) -> str:
        m = JOB_ID.search(output)
        return m.group(1) if m else ""

    def find_job_ids_by_name(self) -> list:
        # job list /jobname:NAME lists the current user's Queued and Running jobs of that name
        # (without /all, /state or /user), as a table whose rows start with the job's Id.
        output = self.run(["job", "list", "/jobname:%s" % self.job_name] + self.scheduler_option()).stdout
        return unique(line.split()[0] for line in output.splitlines() if line.split()[:1] and line.split()[0].isdigit())

    def job_state_of(self, job_id: str) -> str:
        # job view ID: "Name : value" lines, one of them "State : Running"; finished and
        # canceled jobs stay listed (Finished, Failed, Canceled) until the scheduler drops them.
        output = self.listing(["job", "view", job_id] + self.scheduler_option(), unknown="does not exist")
        return self.classify(STATE.findall(output))


class WindowsHPCControllerLauncher(WindowsHPCLauncher, BatchControllerLauncher):
    default_template = CONTROLLER_TEMPLATE


class WindowsHPCEngineSetLauncher(WindowsHPCLauncher, BatchEngineSetLauncher):
    default_template = ENGINES_TEMPLATE

    def program_args(self) -> list:
        return super().program_args() + end_time_args(self, "launcher.windowshpc.timelimit")
