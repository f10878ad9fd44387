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

A job is never left untracked. Each launcher names its job ``minipar-engine-<tag>`` or
``minipar-ctrl-<tag>`` (a random tag kept in the state file), so when a submit command succeeds
but prints nothing parse_job_id() can read (a site wrapper, a changed message), the job is looked
up by that name; and a job that ends on its own (walltime, cancelled from outside) is reported by
exited(), as a local engine process's exit is.
"""
from __future__ import annotations

import getpass
import logging
import os
import secrets
import shlex
import subprocess
import sys
import time
from pathlib import Path

from .base import (PACKAGE, CannotSignal, ControllerLauncher, EngineSetLauncher, Launcher, LauncherError, child_env,
                   signal_name, tail)
from .template import BatchTemplate

log = logging.getLogger(__name__)

COMMAND_TIMEOUT = 60.0
"""Seconds a submit/status/delete command may take; busy schedulers answer slowly."""

STATUS_CACHE = 1.0
"""Seconds a job state is reused by ``running``, so progress loops don't flood the scheduler."""

JOB_POLL_INTERVAL = 10.0
"""Seconds between the watcher's questions whether a job still runs (exited()): each is a
squeue/qstat/bjobs that the scheduler answers for every user of the site, so a cluster of many
engine sets must not ask twice a second as it does for local processes."""

FIND_BY_NAME_TIMEOUT = 5.0
"""Seconds to keep looking a job up by its name when the submit command printed no job id I
could read: some schedulers list a new job a moment after the submit command returns."""

FIND_BY_NAME_INTERVAL = 0.5

PENDING, RUNNING, DONE = "pending", "running", "done"


def current_user() -> str:
    """The login name the batch system knows this process's jobs by (the uid's, not $USER's)."""
    try:
        import pwd
        return pwd.getpwuid(os.getuid()).pw_name
    except (ImportError, KeyError):
        return getpass.getuser()


def unique(items) -> list:
    return list(dict.fromkeys(i for i in items if i))


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
    gone_text = "{system} no longer lists it"
    """How a job that is over shows, for the warning that it ended on its own."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.job_id = ""
        self.script_file = ""
        self.tag = secrets.token_hex(4)
        self.submit_output = ""
        """What the submit command printed when parse_job_id() could not read it; kept in the
        state file, since it is all anyone has to go on if the job was not found by its name."""
        self.ended = False
        self._stopped = False
        self._polled = 0.0
        self._poll_failed = ""
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
        """Unique per launcher, so the job can be found by it; short (at most 24 characters) and
        of letters, digits and '-' only, starting with a letter, which every system accepts."""
        return "minipar-%s-%s" % ("engine" if self.role == "engines" else "ctrl", self.tag)

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

    @property
    def script_path(self) -> Path:
        return self.profile_dir / "batch" / ("%s-%s-%s-%d%s" % (self.system, self.role, self.cluster_id or "default",
                                                               self.index, self.script_suffix))

    def write_script(self) -> Path:
        path = self.script_path
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

    def find_job_ids_by_name(self) -> list:
        """Ids of this user's pending or running jobs named job_name, as the system lists them."""
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
        argv = self.submit_argv(script)
        proc = self.run(argv, stdin=script.read_text() if self.submit_reads_stdin else None)
        self._state = (0.0, "")
        self._polled = time.monotonic()
        job_id = self.parse_job_id(proc.stdout)
        if not job_id:
            job_id = self.find_submitted_job(argv, proc)
        self.job_id = job_id
        log.info("submitted %s job %s (%s)", self.system, job_id, script)

    def find_submitted_job(self, argv, proc) -> str:
        """The id of the job a submit command made but printed no readable id for, found by its
        name; a LauncherError if none is listed within FIND_BY_NAME_TIMEOUT."""
        command = " ".join(str(a) for a in argv)
        self.submit_output = "\n".join(t.strip() for t in (proc.stdout, proc.stderr) if t.strip())
        deadline = time.monotonic() + FIND_BY_NAME_TIMEOUT
        found, problem = [], ""
        while True:
            try:
                found, problem = self.find_job_ids_by_name(), ""
            except LauncherError as e:
                problem = "; looking it up by name failed: %s" % e
            if found or time.monotonic() > deadline:
                break
            time.sleep(FIND_BY_NAME_INTERVAL)
        if len(found) == 1:
            log.warning("%s printed no job id I could read: %r; using %s job %s, found by its name %s",
                        command, self.submit_output, self.system, found[0], self.job_name)
            return found[0]
        if found:
            raise LauncherError("%s printed no job id I could read: %r, and %s lists %d jobs named %s (%s); "
                                "stopping the cluster cancels them" % (command, self.submit_output, self.system,
                                                                       len(found), self.job_name, ", ".join(found)))
        raise LauncherError("%s printed no job id I could read: %r, and %s lists no job named %s within %gs%s; "
                            "if it made a job, that job is named %s and runs untracked: cancel it by hand"
                            % (command, self.submit_output, self.system, self.job_name, FIND_BY_NAME_TIMEOUT,
                               problem, self.job_name))

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
        """Delete the job and wait (bounded) until the system no longer lists it. Without a job
        id, but after a submit whose output had none, the job is looked up by its name again:
        it may have been listed too late for start()."""
        self._stopped = True
        if self.job_id:
            self.delete(timeout)
            return
        if not self.submit_output:
            return
        for job_id in self.find_job_ids_by_name():
            log.warning("deleting %s job %s, found by its name %s after the submit command printed %r",
                        self.system, job_id, self.job_name, self.submit_output)
            self.job_id, self._state = job_id, (0.0, "")
            self.delete(timeout)

    def delete(self, timeout: float) -> None:
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

    def exited(self) -> list:
        """The job, once, when it is over though stop() was never called: asks the system at
        most every JOB_POLL_INTERVAL seconds."""
        if self.ended or self._stopped or not self.job_id:
            return []
        now = time.monotonic()
        if now - self._polled < JOB_POLL_INTERVAL:
            return []
        self._polled = now
        try:
            state = self.state(fresh=True)
        except LauncherError as e:
            if str(e) != self._poll_failed:
                log.warning("cannot tell whether %s job %s still runs: %s", self.system, self.job_id, e)
            self._poll_failed = str(e)
            return []
        self._poll_failed = ""
        if state != DONE or self._stopped:
            return []
        self.ended = True
        return [EndedJob(self)]

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
        return dict(super().to_dict(), job_id=self.job_id, script_file=self.script_file, tag=self.tag,
                    submit_output=self.submit_output, ended=self.ended)

    def restore(self, d: dict) -> None:
        self.job_id = d.get("job_id", "")
        self.script_file = d.get("script_file", "")
        self.tag = d.get("tag") or self.tag
        self.submit_output = d.get("submit_output", "")
        self.ended = bool(d.get("ended", False))


class EndedJob:
    """What BatchLauncher.exited() reports: a job that is over though nobody here stopped it."""

    def __init__(self, launcher: BatchLauncher):
        self.launcher = launcher
        self.job_id = launcher.job_id

    def describe_end(self, role: str) -> str:
        launcher = self.launcher
        gone = launcher.gone_text.format(system=launcher.system)
        logs = "".join("; last lines of %s:\n%s" % (f, tail(f)) for f in launcher.output_files)
        return ("%s job %s (%s) ended on its own: %s (walltime reached, cancelled from outside, or finished)%s"
                % (role, self.job_id, launcher.system, gone, logs))


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

