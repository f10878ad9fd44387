"""Batch launchers: a script rendered from a template, submitted as one job, found by its id.

A subclass per system (slurm.py, sge.py, pbs.py, lsf.py, htcondor.py, windowshpc.py) says how to submit,
read the job id, ask for the job's state, delete and signal it, and brings the default
templates. Everything else — fields, templates from the profile, the script file, the
state file entry, waiting for the job to go — is here, so the systems differ only where
the systems differ.

Jobs run where the batch system puts them, often without the submitting environment:
the command in the script therefore names this interpreter by absolute path and sets
PYTHONPATH as local engines get it (where this package imports from, then the submitting
PYTHONPATH; a shared file system, as on every HPC site), so a vendored minipar and the
user's modules import in the job as they would locally.
"""
from __future__ import annotations

import logging
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

from .base import (PACKAGE, CannotSignal, ControllerLauncher, EngineSetLauncher, Launcher, LauncherError, child_env,
                   signal_name)
from .template import BatchTemplate

log = logging.getLogger(__name__)

COMMAND_TIMEOUT = 60.0
"""Seconds a submit/status/delete command may take; busy schedulers answer slowly."""

STATUS_CACHE = 1.0
"""Seconds a job state is reused by ``running``, so progress loops don't flood the scheduler."""

PENDING, RUNNING, DONE = "pending", "running", "done"


class BatchLauncher(Launcher):
    """One batch job; see the module docstring."""

    system = ""
    """Short name: the settings section is [launcher.<system>]."""
    role = ""
    """"engines" or "controller": the module run and the template sub-section."""
    submit_command: tuple = ()
    submit_reads_stdin = False
    delete_command: tuple = ()
    signal_command: tuple = ()
    """With {signal} (a name like INT) and the job id appended; empty: the system cannot signal jobs."""
    default_template = ""
    script_suffix = ".sh"
    header_lines: dict = {}
    """Setting -> the header line that carries it, e.g. {"queue": "#SBATCH --partition=%s"}."""
    running_states: frozenset = frozenset()
    pending_states: frozenset = frozenset()
    """The system's words for a job (or array task) that runs, or waits to; any other is over."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.job_id = ""
        self.script_file = ""
        self._state = (0.0, "")

    # -- what goes into the script ---------------------------------------------------------

    @property
    def module(self) -> str:
        return "%s.%s" % (PACKAGE, "engine" if self.role == "engines" else "controller")

    @property
    def index(self) -> int:
        return self.options.get("first_index", 0)

    @property
    def job_name(self) -> str:
        return "minipar-%s" % ("engine" if self.role == "engines" else "controller")

    @property
    def output_file(self) -> str:
        return str(self.log_dir / ("%s-%s-%s-%d.out" % (self.system, self.role, self.cluster_id or "default",
                                                       self.index)))

    def program_args(self) -> list:
        return self.common_args() + self.args

    def header_options(self) -> list:
        """The system's header lines for queue, account, timelimit..., before the user's own."""
        s = self.settings
        return [line % s[key] for key, line in self.header_lines.items() if s.get(key)]

    def fields(self) -> dict:
        s = self.settings
        program = [sys.executable, "-m", self.module]
        args = self.program_args()
        pythonpath = child_env()["PYTHONPATH"]
        fields = dict(s.get("context", {}))
        fields.update(
            n=getattr(self, "n", 1), queue=s.get("queue", ""), account=s.get("account", ""),
            timelimit=s.get("timelimit", ""), qos=s.get("qos", ""),
            options="\n".join(self.header_options() + list(s.get("options", []))),
            profile_dir=str(self.profile_dir), cluster_id=self.cluster_id, log_level=self.log_level,
            job_name=self.job_name, output_file=self.output_file, python=sys.executable, pythonpath=pythonpath,
            program=shlex.join(program), args=shlex.join(args),
            program_and_args="env PYTHONPATH=%s${PYTHONPATH:+:$PYTHONPATH} %s" % (
                shlex.quote(pythonpath), shlex.join(program + args)),
        )
        return fields

    def template(self) -> BatchTemplate:
        s = self.settings
        key = "launcher.%s.%s" % (self.system, self.role)
        if s.get("batch_template_file"):
            path = Path(s["batch_template_file"]).expanduser()
            if not path.is_absolute():
                path = self.profile_dir / path
            try:
                return BatchTemplate(path.read_text(), str(path))
            except OSError as e:
                raise LauncherError("%s.batch_template_file: cannot read %s: %s" % (key, path, e.strerror or e)) \
                    from None
        if s.get("batch_template"):
            return BatchTemplate(s["batch_template"], key + ".batch_template")
        return BatchTemplate(self.default_template, "the built-in %s %s template" % (self.system, self.role))

    def write_script(self) -> Path:
        path = self.profile_dir / "batch" / ("%s-%s-%s-%d%s" % (self.system, self.role, self.cluster_id or "default",
                                                               self.index, self.script_suffix))
        path.parent.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(self.template().render(self.fields()))
        path.chmod(0o700)
        return path

    # -- talking to the batch system ----------------------------------------------------------

    def run(self, cmd, stdin=None, check=True) -> subprocess.CompletedProcess:
        """Run a batch command; a missing command or a failure is a LauncherError saying so."""
        cmd = [str(c) for c in cmd]
        try:
            proc = subprocess.run(cmd, input=stdin, stdin=None if stdin is not None else subprocess.DEVNULL,
                                  capture_output=True, text=True, timeout=COMMAND_TIMEOUT, cwd=str(self.profile_dir))
        except FileNotFoundError:
            raise LauncherError("%s: command not found; is this a %s submit host (PATH=%s)?"
                                % (cmd[0], self.system, os.environ.get("PATH", ""))) from None
        except subprocess.TimeoutExpired:
            raise LauncherError("%s did not answer within %gs" % (" ".join(cmd), COMMAND_TIMEOUT)) from None
        if check and proc.returncode != 0:
            raise command_failed(cmd, proc)
        return proc

    def status_output(self, cmd, unknown: str):
        """The output of a status command, or None when it says the job is unknown (over)."""
        proc = self.run(cmd, check=False)
        if proc.returncode != 0:
            if unknown in proc.stderr or unknown in proc.stdout:
                return None
            raise command_failed(cmd, proc)
        return proc.stdout

    def parse_job_id(self, output: str) -> str:
        raise NotImplementedError

    def job_state(self) -> str:
        """PENDING, RUNNING, or DONE (finished, deleted or unknown to the system)."""
        raise NotImplementedError

    def classify(self, states) -> str:
        """The job's state from those of its tasks: running if any runs, else pending if any waits."""
        states = set(states)
        if states & self.running_states:
            return RUNNING
        if states & self.pending_states:
            return PENDING
        return DONE

    def submit_argv(self, script: Path) -> list:
        """The submit command for this script (read from stdin when submit_reads_stdin)."""
        return list(self.submit_command) + ([] if self.submit_reads_stdin else [str(script)])

    def delete_argv(self) -> list:
        return list(self.delete_command) + [self.job_id]

    def start(self) -> None:
        script = self.write_script()
        self.script_file = str(script)
        proc = self.run(self.submit_argv(script), stdin=script.read_text() if self.submit_reads_stdin else None)
        job_id = self.parse_job_id(proc.stdout)
        if not job_id:
            raise LauncherError("%s printed no job id I could read: %r" % (" ".join(self.submit_command),
                                                                           proc.stdout.strip()))
        self.job_id = job_id
        self._state = (0.0, "")
        log.info("submitted %s job %s (%s)", self.system, job_id, script)

    def state(self, fresh: bool = False) -> str:
        if not self.job_id:
            return DONE
        at, state = self._state
        if fresh or not state or time.monotonic() - at > STATUS_CACHE:
            state = self.job_state()
            self._state = (time.monotonic(), state)
        return state

    @property
    def running(self) -> bool:
        try:
            return self.state() != DONE
        except LauncherError as e:
            log.warning("cannot tell whether %s job %s runs: %s", self.system, self.job_id, e)
            return True

    def stop(self, timeout: float = 5.0) -> None:
        """Delete the job and wait (bounded) until the system no longer lists it."""
        if not self.job_id:
            return
        cmd = self.delete_argv()
        proc = self.run(cmd, check=False)
        if proc.returncode != 0 and self.state(fresh=True) != DONE:
            raise command_failed(cmd, proc)
        deadline = time.monotonic() + max(timeout, 1.0) + 10.0
        while self.state(fresh=True) != DONE:
            if time.monotonic() > deadline:
                log.warning("%s job %s is still listed after it was deleted; %s will finish it",
                            self.system, self.job_id, self.system)
                return
            time.sleep(0.2)

    def signal(self, sig) -> None:
        if not self.signal_command:
            raise CannotSignal("%s cannot signal a running job" % self.system)
        if not self.job_id or self.state() == DONE:
            return
        cmd = [part.format(signal=signal_name(sig)) for part in self.signal_command] + [self.job_id]
        self.run(cmd)

    @property
    def output_files(self) -> list:
        """The job's output file, or the per-task files some systems write beside it."""
        base = Path(self.output_file)
        found = sorted(str(p) for p in base.parent.glob(base.name + "*"))
        return found or [self.output_file]

    def to_dict(self) -> dict:
        return dict(super().to_dict(), job_id=self.job_id, script_file=self.script_file)

    def restore(self, d: dict) -> None:
        self.job_id = d.get("job_id", "")
        self.script_file = d.get("script_file", "")


def command_failed(cmd, proc) -> LauncherError:
    return LauncherError("%s failed (exit %d): %s" % (" ".join(cmd), proc.returncode,
                                                      (proc.stderr or proc.stdout).strip()))


class BatchControllerLauncher(BatchLauncher, ControllerLauncher):
    """The controller as a job: it listens on every interface, since engines and clients
    reach it from other nodes, unless the arguments say otherwise."""

    role = "controller"

    def program_args(self) -> list:
        args = super().program_args()
        if not any(a == "--ip" or a.startswith("--ip=") or a.startswith("--controller.ip") for a in args):
            args.append("--ip=*")
        return args


class BatchEngineSetLauncher(BatchLauncher, EngineSetLauncher):
    role = "engines"

