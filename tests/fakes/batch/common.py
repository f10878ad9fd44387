"""What the fake batch systems share: the spool, job ids, the supervisor that runs a job's
tasks, process liveness read from /proc, and removal with signal escalation.

The real client commands are short-lived processes talking to a server; here the "server" is
a spool directory named by FAKE_BATCH_SPOOL, one sub-directory per system:

    <spool>/<system>/last_id                last job id handed out (ids start at 1)
    <spool>/<system>/jobs/<id>/job.json     the submission, written once
    .../supervisor.json                     pid and /proc start time of the job's supervisor
    .../tasks/<index>.json                  per task: pid and start time, then its exit status
    .../removed.json                        which tasks qdel / bkill / condor_rm removed
    .../done                                the supervisor has finished everything

Submitting forks a detached supervisor (its own session, stdio on /dev/null). It starts every
task of the job at once, each in its own process group, waits for them so none is left a
zombie, kills whatever a task left behind in its group when the task ends (as a batch
system's execution daemon does) and records exit statuses. The commands never trust those
records alone: a task is running while its recorded pid is alive with the recorded start
time, so states stay right if the supervisor is killed or a pid is reused.

Settings, all from the environment: FAKE_BATCH_SPOOL (required), FAKE_BATCH_KILL_DELAY
(seconds between the polite signals and SIGKILL, default 2), FAKE_BATCH_START_DELAY (seconds a
job stays queued before it starts, default 0). FAKE_BATCH_PYTHON is read by the bin/ shims:
the interpreter that runs the fakes (default python3 from PATH).
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import pwd
import signal
import sys
import time
import traceback
from pathlib import Path

QUEUED, RUNNING, EXITING, DONE = "queued", "running", "exiting", "done"
POLL = 0.02


class CommandError(Exception):
    """Ends a command with a message on stderr and an exit code, as the real tool would."""

    def __init__(self, message: str, code: int):
        super().__init__(message)
        self.message = message
        self.code = code


def run_command(main, argv) -> int:
    try:
        return main(argv) or 0
    except CommandError as e:
        if e.message:
            sys.stderr.write(e.message.rstrip("\n") + "\n")
        return e.code


def seconds_setting(name: str, default: float) -> float:
    value = os.environ.get(name, "")
    try:
        return float(value) if value else default
    except ValueError:
        raise CommandError("%s must be a number of seconds, not %r" % (name, value), 2) from None


def user() -> str:
    return pwd.getpwuid(os.getuid()).pw_name


def hostname() -> str:
    return os.uname().nodename


def parse_signal(text: str):
    """A signal given as INT, SIGINT or 2; None if there is no such signal."""
    name = text.upper()
    if name.isdigit():
        try:
            return signal.Signals(int(name))
        except ValueError:
            return None
    if not name.startswith("SIG"):
        name = "SIG" + name
    return getattr(signal.Signals, name, None) if name.isidentifier() else None


# ------------------------------------------------------------------ files


def write_json(path: Path, data) -> None:
    tmp = path.with_name("%s.tmp%d" % (path.name, os.getpid()))
    tmp.write_text(json.dumps(data))
    os.replace(str(tmp), str(path))


def read_json(path: Path, default=None):
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return default


@contextlib.contextmanager
def locked(path: Path):
    with open(str(path), "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


# ------------------------------------------------------------------ /proc


def proc_stat(pid: int):
    """(state, process group, start time, cpu ticks) of a process, or None if there is none."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return fields[0], int(fields[2]), int(fields[19]), int(fields[11]) + int(fields[12])


def start_time(pid: int):
    stat = proc_stat(pid)
    return stat[2] if stat else None


def alive(pid, start) -> bool:
    """The process is there, is the one that was recorded (same start time) and is no zombie."""
    stat = proc_stat(pid) if pid else None
    return bool(stat) and stat[2] == start and stat[0] not in "ZX"


def group_alive(pgid: int, leader_start) -> bool:
    """Some live process is still in the group a task's leader created.

    A group id is never reused while a member is left, so once the leader is gone any member
    with that group id is one of ours; a leader pid that shows another start time means the
    pid (and so the group) was reused after the group emptied."""
    stat = proc_stat(pgid)
    if stat is not None:
        if stat[2] != leader_start:
            return False
        if stat[0] not in "ZX":
            return True
    for name in os.listdir("/proc"):
        if name.isdigit():
            other = proc_stat(int(name))
            if other is not None and other[1] == pgid and other[0] not in "ZX":
                return True
    return False


def signal_group(pgid: int, leader_start, sig) -> bool:
    if not group_alive(pgid, leader_start):
        return False
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def cpu_time(pid, start) -> str:
    stat = proc_stat(pid) if pid else None
    seconds = stat[3] // os.sysconf("SC_CLK_TCK") if stat and stat[2] == start else 0
    return "%02d:%02d:%02d" % (seconds // 3600, seconds // 60 % 60, seconds % 60)


# ------------------------------------------------------------------ spool


class Spool:
    """One system's part of the spool."""

    def __init__(self, system: str, command: str):
        spool = os.environ.get("FAKE_BATCH_SPOOL", "")
        if not spool:
            raise CommandError("%s: FAKE_BATCH_SPOOL is not set; it must name the directory that "
                               "holds the fake batch system's jobs" % command, 2)
        self.root = Path(spool) / system
        (self.root / "jobs").mkdir(parents=True, exist_ok=True)

    def new_job_dir(self):
        with locked(self.root / "lock"):
            counter = self.root / "last_id"
            job_id = int(counter.read_text()) + 1 if counter.exists() else 1
            counter.write_text(str(job_id))
        job_dir = self.root / "jobs" / str(job_id)
        (job_dir / "tasks").mkdir(parents=True)
        return job_id, job_dir

    def job_ids(self) -> list:
        return sorted(int(p.parent.name) for p in (self.root / "jobs").glob("*/job.json"))

    def job(self, job_id):
        """The job's record with ``dir`` and ``states`` ({index: (state, task record)}), or None."""
        job_dir = self.root / "jobs" / str(job_id)
        job = read_json(job_dir / "job.json")
        if job is not None:
            job["dir"] = str(job_dir)
            job["states"] = task_states(job_dir, job)
        return job


def task_states(job_dir: Path, job: dict) -> dict:
    finished = (job_dir / "done").exists()
    supervisor = read_json(job_dir / "supervisor.json", {})
    supervised = not finished and alive(supervisor.get("pid"), supervisor.get("start"))
    states = {}
    for task in job["tasks"]:
        record = read_json(job_dir / "tasks" / ("%s.json" % task["index"]), {})
        if "returncode" in record or finished:
            state = DONE
        elif record.get("pid") and alive(record["pid"], record["start"]):
            state = RUNNING
        elif supervised:
            state = EXITING if record.get("pid") else QUEUED
        else:
            state = DONE
        states[task["index"]] = (state, record)
    return states


def finished(job: dict) -> bool:
    return all(state == DONE for state, _ in job["states"].values())


def removed_indices(job_dir: Path) -> set:
    return set(read_json(Path(job_dir) / "removed.json", {}).get("indices", []))


# ------------------------------------------------------------------ submission and supervision


def submit(job_id: int, job_dir: Path, job: dict, on_start=None, on_finish=None,
           stop_signals=(signal.SIGTERM,), walltime=None) -> None:
    """Start the job's supervisor, then record the job: once job.json exists, the job is
    listed, and its supervisor is known by then."""
    pid = spawn_detached(lambda: supervise(job_dir, job, on_start, on_finish, stop_signals, walltime),
                         job_dir / "supervisor.log")
    write_json(job_dir / "supervisor.json", {"pid": pid, "start": start_time(pid)})
    job.update(id=job_id, submitted_at=job.get("submitted_at") or time.time())
    write_json(job_dir / "job.json", job)


def spawn_detached(work, log_path: Path) -> int:
    """Run work() in a forked child in its own session, with default signal dispositions (the
    jobs it starts must not inherit a submitter's ignored SIGINT), stdio on /dev/null and no
    other inherited descriptors (a caller capturing our output must not wait for it). A
    traceback goes to log_path. The command exits soon after, so the child is re-parented."""
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid:
        return pid
    code = 1
    try:
        os.setsid()
        for sig in (signal.SIGINT, signal.SIGQUIT, signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2):
            signal.signal(sig, signal.SIG_DFL)
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        for name in os.listdir("/proc/self/fd"):
            if int(name) > 2:
                with contextlib.suppress(OSError):
                    os.close(int(name))
        work()
        code = 0
    except BaseException:
        with contextlib.suppress(BaseException):
            with open(str(log_path), "a") as log:
                log.write(traceback.format_exc())
    finally:
        os._exit(code)


def supervise(job_dir: Path, job: dict, on_start, on_finish, stop_signals, walltime) -> None:
    """The life of a job: queued for FAKE_BATCH_START_DELAY, all tasks started under the job's
    lock (so a removal either sees them or stops them starting), reaped one by one. The hooks
    are what differs per system (event logs, copying output back, job reports)."""
    deadline = time.monotonic() + seconds_setting("FAKE_BATCH_START_DELAY", 0.0)
    all_indices = {task["index"] for task in job["tasks"]}
    while time.monotonic() < deadline and not all_indices <= removed_indices(job_dir):
        time.sleep(POLL)
    running = {}
    with locked(job_dir / "lock"):
        removed = removed_indices(job_dir)
        for task in job["tasks"]:
            if task["index"] in removed:
                write_task(job_dir, task, {"returncode": None, "signal": None, "removed": True})
                continue
            try:
                popen = start_task(task)
            except OSError as e:
                write_task(job_dir, task, {"returncode": 127, "signal": None, "error": str(e)})
                continue
            record = {"pid": popen.pid, "start": start_time(popen.pid), "started_at": time.time()}
            write_task(job_dir, task, record)
            running[popen.pid] = (task, record, popen)
            if on_start:
                with contextlib.suppress(OSError):
                    on_start(task, record)
    if walltime and running:
        import threading
        timer = threading.Timer(walltime, stop_tasks, (job_dir, job, stop_signals))
        timer.daemon = True
        timer.start()
    while running:
        try:
            pid, status = os.waitpid(-1, 0)
        except ChildProcessError:
            break
        if pid not in running:
            continue
        task, record, popen = running.pop(pid)
        signal_group(pid, record["start"], signal.SIGKILL)
        if os.WIFSIGNALED(status):
            result = {"returncode": None, "signal": os.WTERMSIG(status)}
        else:
            result = {"returncode": os.WEXITSTATUS(status), "signal": None}
        popen.returncode = result["returncode"] if result["signal"] is None else -result["signal"]
        result.update(record, finished_at=time.time(), removed=task["index"] in removed_indices(job_dir),
                      walltime_exceeded=(job_dir / "walltime_exceeded").exists())
        if on_finish:
            with contextlib.suppress(OSError):
                on_finish(task, result)
        write_task(job_dir, task, result)
    (job_dir / "done").write_text("%f\n" % time.time())


def write_task(job_dir: Path, task: dict, record: dict) -> None:
    write_json(job_dir / "tasks" / ("%s.json" % task["index"]), record)


def start_task(task: dict):
    """A task's subprocess.Popen, leading its own session and process group."""
    import subprocess
    files = []
    try:
        stdin = open(task["stdin"], "rb") if task.get("stdin") else subprocess.DEVNULL
        files.append(stdin)
        stdout = open(task["stdout"], task.get("stdout_mode", "wb"))
        files.append(stdout)
        if task.get("stderr") in (None, task["stdout"]):
            stderr = stdout
        else:
            stderr = open(task["stderr"], task.get("stderr_mode", "wb"))
            files.append(stderr)
        return subprocess.Popen(task["argv"], cwd=task["cwd"], env=task["env"], stdin=stdin,
                                stdout=stdout, stderr=stderr, start_new_session=True)
    finally:
        for f in files:
            if f is not subprocess.DEVNULL:
                f.close()


# ------------------------------------------------------------------ removal and signals


def live_groups(job: dict, indices=None) -> list:
    return [(record["pid"], record["start"]) for index, (state, record) in job["states"].items()
            if state in (RUNNING, EXITING) and record.get("pid") and (indices is None or index in indices)]


def remove(job: dict, indices, signals) -> None:
    """Mark tasks removed (queued ones never start), send ``signals`` to the running ones'
    groups, and leave a detached process that sends SIGKILL to what is left after the kill
    delay. The lock orders this against the supervisor starting tasks."""
    job_dir = Path(job["dir"])
    with locked(job_dir / "lock"):
        removed = removed_indices(job_dir) | set(indices)
        write_json(job_dir / "removed.json", {"indices": sorted(removed), "time": time.time()})
    job["states"] = task_states(job_dir, job)
    groups = live_groups(job, set(indices))
    for sig in signals:
        for pgid, start in groups:
            signal_group(pgid, start, sig)
    if groups:
        delay = seconds_setting("FAKE_BATCH_KILL_DELAY", 2.0)
        spawn_detached(lambda: kill_after(groups, delay), job_dir / "killer.log")


def kill_after(groups, delay: float) -> None:
    deadline = time.monotonic() + delay
    while time.monotonic() < deadline:
        if not any(group_alive(pgid, start) for pgid, start in groups):
            return
        time.sleep(POLL)
    for pgid, start in groups:
        signal_group(pgid, start, signal.SIGKILL)


def stop_tasks(job_dir: Path, job: dict, signals) -> None:
    """What a run-time limit does: the polite signals, then SIGKILL after the kill delay."""
    states = task_states(job_dir, job)
    groups = [(r["pid"], r["start"]) for s, r in states.values() if s in (RUNNING, EXITING) and r.get("pid")]
    (job_dir / "walltime_exceeded").write_text("%f\n" % time.time())
    for sig in signals:
        for pgid, start in groups:
            signal_group(pgid, start, sig)
    kill_after(groups, seconds_setting("FAKE_BATCH_KILL_DELAY", 2.0))


def signal_tasks(job: dict, indices, sig) -> int:
    return sum(signal_group(pgid, start, sig) for pgid, start in live_groups(job, indices))


# ------------------------------------------------------------------ scripts and options


def script_shell_argv(script_path: str, shell: str = "") -> list:
    """How a job script runs: under ``shell`` if given, else by its #! line, else /bin/sh."""
    if shell:
        return [shell, script_path]
    with open(script_path, "rb") as f:
        if f.read(2) == b"#!":
            return [script_path]
    return ["/bin/sh", script_path]


def save_script(job_dir: Path, text: str) -> str:
    path = job_dir / "script"
    path.write_text(text)
    path.chmod(0o700)
    return str(path)


def directive_args(text: str, prefix: str) -> list:
    """Option words of ``prefix`` lines (#PBS, #BSUB) at the top of a script: they are read up
    to the first line that is neither blank nor a comment, as the real tools do."""
    import shlex
    words = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            break
        if stripped.startswith(prefix + " ") or stripped.startswith(prefix + "\t"):
            words.extend(shlex.split(stripped[len(prefix):], comments=True))
    return words


def parse_options(argv: list, with_value, flags, command: str, attached: bool = False):
    """[(option, value)] and the operands after them, getopt style: options stop at the first
    operand or ``--``. ``attached`` allows "-Nname" for single-letter options."""
    found = []
    i = 0
    while i < len(argv):
        word = argv[i]
        if word == "--":
            return found, argv[i + 1:]
        if not word.startswith("-") or word == "-":
            break
        if word in flags:
            found.append((word, ""))
        elif word in with_value:
            if i + 1 >= len(argv):
                raise CommandError("%s: option requires an argument -- '%s'" % (command, word[1:]), 2)
            found.append((word, argv[i + 1]))
            i += 1
        elif attached and word[:2] in with_value:
            found.append((word[:2], word[2:]))
        else:
            raise CommandError("%s: invalid option -- '%s' (the fake knows %s)"
                               % (command, word[1:], " ".join(sorted(set(with_value) | set(flags)))), 2)
        i += 1
    return found, argv[i:]


def index_ranges(spec: str, command: str) -> list:
    """Indices of an array spec: "1-4", "1,3,5-9:2" (a step after ':'), with an optional
    "%limit" of concurrent tasks, which the fake accepts and ignores."""
    indices = []
    for part in spec.split("%")[0].split(","):
        try:
            span, _, step = part.partition(":")
            first, _, last = span.partition("-")
            indices.extend(range(int(first), int(last or first) + 1, int(step or 1)))
        except ValueError:
            raise CommandError("%s: illegal array index list %r" % (command, spec), 2) from None
    if not indices:
        raise CommandError("%s: empty array index list %r" % (command, spec), 2)
    return sorted(set(indices))


def ctime(t: float) -> str:
    return time.strftime("%a %b %d %H:%M:%S %Y", time.localtime(t))
