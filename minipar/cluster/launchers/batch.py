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

Whether jobs still run is asked by a JobPoller, for all of a cluster's jobs on one system with one
command (``squeue --jobs=1,2,3``, one plain ``qstat``...), at most once per ``[cluster]
poll_interval``: the scheduler answers such questions for every user of the site.
"""
from __future__ import annotations

import getpass
import logging
import os
import re
import secrets
import shlex
import subprocess
import sys
import threading
import time
from pathlib import Path

from ...error import CannotSignal, LauncherError
from .base import PACKAGE, ControllerLauncher, EngineSetLauncher, Launcher, child_env, signal_name, tail
from .template import BatchTemplate

log = logging.getLogger(__name__)

COMMAND_TIMEOUT = 60.0
"""Seconds a submit/status/delete command may take; busy schedulers answer slowly."""

STATUS_CACHE = 1.0
"""Seconds a job state is reused by ``running``, so progress loops don't flood the scheduler."""

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


def job_number(job_id: str) -> str:
    """The number a job id starts with: '42' of '42', '42_3', '42[].server' or '42.0'."""
    m = re.match(r"\d*", str(job_id).strip())
    return m.group()


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
        self._observed = ""
        self._restored_without_id = False
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
        return [line % getattr(s, key) for key, line in self.header_lines.items() if getattr(s, key)]

    def fields(self) -> dict:
        s = self.settings
        program = [sys.executable, "-m", self.module]
        args = self.program_args()
        pythonpath = child_env()["PYTHONPATH"]
        fields = dict(s.context)
        fields.update(
            n=getattr(self, "n", 1), queue=s.queue, account=s.account, timelimit=s.timelimit,
            qos=getattr(s, "qos", ""),  # Slurm's only; "" in every other system's templates
            options="\n".join(self.header_options() + list(s.options)),
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
        if s.batch_template_file:
            path = Path(s.batch_template_file).expanduser()
            if not path.is_absolute():
                path = self.profile_dir / path
            try:
                return BatchTemplate(path.read_text(), str(path))
            except OSError as e:
                raise LauncherError("%s.batch_template_file: cannot read %s: %s" % (key, path, e.strerror or e)) \
                    from None
        if s.batch_template:
            return BatchTemplate(s.batch_template, key + ".batch_template")
        return BatchTemplate(self.default_template, "the built-in %s %s template" % (self.system, self.role))

    @property
    def script_path(self) -> Path:
        return self.profile_dir / "batch" / ("%s-%s-%s-%d%s" % (self.system, self.role, self.cluster_id or "default",
                                                                self.index, self.script_suffix))

    def script_text(self) -> str:
        """The job script as start() writes and submits it (``cluster render`` prints it)."""
        return self.template().render(self.fields())

    def write_script(self) -> Path:
        path = self.script_path
        text = self.script_text()
        path.parent.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
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

    def listing(self, cmd, unknown: str) -> str:
        """What a status command lists of the jobs it was asked about and knows. Most systems
        print the known ones and complain of the others (``unknown`` is their words for a job
        that is over), with a failing exit code: that is no error here."""
        proc = self.run(cmd, check=False)
        if proc.returncode != 0 and unknown not in proc.stderr + proc.stdout:
            raise command_failed(cmd, proc)
        return proc.stdout

    def classify_rows(self, job_ids, rows) -> dict:
        """{job id: state} from (job number, state word) rows: a job's state is that of its tasks
        (classify); a job not listed is over. Rows name jobs by number, as some systems cut ids."""
        words: dict = {}
        for number, word in rows:
            words.setdefault(number, []).append(word)
        return {job_id: self.classify(words.get(job_number(job_id), ())) for job_id in job_ids}

    def parse_job_id(self, output: str) -> str:
        raise NotImplementedError

    def find_job_ids_by_name(self) -> list:
        """Ids of this user's pending or running jobs named job_name, as the system lists them."""
        raise NotImplementedError

    def job_states(self, job_ids) -> dict:
        """{job id: PENDING, RUNNING or DONE (finished, deleted or unknown to the system)} for
        jobs of this system, asked with as few commands as the system allows; systems that can
        list several jobs at once override it, the others answer job_state_of() for each."""
        return {job_id: self.job_state_of(job_id) for job_id in job_ids}

    def job_state_of(self, job_id: str) -> str:
        raise NotImplementedError

    def job_state(self) -> str:
        """This launcher's job's state, as job_states() gives it."""
        return self.job_states([self.job_id]).get(self.job_id, DONE)

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

    def leftover(self) -> bool:
        """After start() failed: whether a job may exist all the same (the submit command printed
        no id I could read), so the launcher must stay recorded for stop()."""
        return bool(self.job_id or self.submit_output)

    def stop(self, timeout: float = 5.0) -> None:
        """Delete the job and wait (bounded) until the system no longer lists it. Without a job
        id, the job is looked up by its name: after a submit whose output had none (it may have
        been listed too late for start()), and in a launcher read from a state file written
        while its submit command ran (the Cluster records a job before submitting it)."""
        self._stopped = True
        if self.job_id:
            self.delete(timeout)
            return
        if not (self.submit_output or self._restored_without_id):
            return
        for job_id in self.find_job_ids_by_name():
            log.warning("deleting %s job %s, found by its name %s; its submit command printed %r",
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

    def note_state(self, state: str) -> None:
        """A state a JobPoller saw, for exited() and (while fresh) running."""
        self._observed = state
        self._state = (time.monotonic(), state)

    @property
    def watched(self) -> bool:
        """Whether a poll should ask about this job: submitted, not stopped, not seen to end."""
        return bool(self.job_id) and not self.ended and not self._stopped

    def exited(self) -> list:
        """The job, once, when a poll saw it over though stop() was never called."""
        if self._observed != DONE or not self.watched:
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
        self._restored_without_id = not self.job_id and not self.ended


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


class JobPoller:
    """Asks each batch system whether a cluster's jobs still run: one command for all the jobs
    of a system, ``interval`` seconds at least after its last answer. Safe to share between
    threads."""

    def __init__(self, interval: float):
        self.interval = interval
        self._last = {}
        self._problems = {}
        self._lock = threading.Lock()

    def poll(self, launchers) -> dict:
        """{launcher: state} for the batch launchers among ``launchers`` whose system is due for
        a question; each launcher also notes its state. A failing command is logged (once while
        it keeps failing with the same message) and its jobs are left out."""
        groups: dict = {}
        for launcher in launchers:
            if isinstance(launcher, BatchLauncher) and launcher.watched:
                groups.setdefault(launcher.system, []).append(launcher)
        states = {}
        with self._lock:
            for system, group in groups.items():
                if time.monotonic() - self._last.get(system, float("-inf")) < self.interval:
                    continue
                states.update(self._ask(system, group))
                self._last[system] = time.monotonic()  # from the answer: a slow scheduler is asked less
        return states

    def _ask(self, system: str, group: list) -> dict:
        job_ids = unique(launcher.job_id for launcher in group)
        try:
            found = group[0].job_states(job_ids)
        except LauncherError as e:
            if self._problems.get(system) != str(e):
                log.warning("cannot tell whether %s jobs %s still run: %s", system, ", ".join(job_ids), e)
            self._problems[system] = str(e)
            return {}
        self._problems.pop(system, None)
        states = {}
        for launcher in group:
            states[launcher] = found.get(launcher.job_id, DONE)
            launcher.note_state(states[launcher])
        return states


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
