"""Processes on other hosts through the system ssh client, found again by their remote pid.

ssh runs ``sh -c 'echo minipar-remote-pid $$; exec CMD'``, so the first line it prints is
the pid the command then runs as. Everything else the process prints comes back through
the local ssh client into a local log file. stop, signal and running use ``kill`` over
ssh with that pid, so they work from any process that has the state file, and even after
the local ssh client is gone (without a tty a remote process outlives it).

Files move with scp. A copy whose source and target are the same file (this machine, same
path) is skipped, since copying a file onto itself can truncate it; a copy to the same
path on another host (maybe a shared file system) goes to a temporary name and is renamed
into place.
"""
from __future__ import annotations

import concurrent.futures
import logging
import os
import posixpath
import re
import shlex
import signal
import socket
import subprocess
import threading
import time
import uuid
from pathlib import Path

from ...error import describe_exit
from ...error import LauncherError
from .base import Process, signal_name

log = logging.getLogger(__name__)

SSH_TIMEOUT = 60.0
"""Seconds one ssh or scp command may take (logging in included)."""
START_TIMEOUT = 60.0
"""Seconds a remote command gets to report its pid after ssh starts."""
ALIVE_CACHE_SECONDS = 2.0
"""How long an answer to 'which of these pids still run?' is reused, so polling from
another process costs one ssh per host every few seconds, not one per check."""
CLIENT_EXIT_SECONDS = 3.0
"""Seconds a local ssh client gets to end by itself once its remote process is gone."""
POLL = 0.02
PID_MARKER = "minipar-remote-pid"
PID_LINE = re.compile(rb"^%s (\d+)\s*$" % PID_MARKER.encode(), re.M)
LEFT_MARKER = "minipar-left:"
SSH_DEFAULT_OPTIONS = (("BatchMode", "yes"), ("ConnectTimeout", "20"))


# ---------------------------------------------------------------------------------- hosts

def host_name(host: str) -> str:
    """'user@host' -> 'host'."""
    return host.rpartition("@")[2].strip("[]")


def host_user(host: str) -> str:
    return host.rpartition("@")[0]


def is_this_machine(host: str) -> bool:
    name = host_name(host).lower()
    if name in ("localhost", "::1") or name.startswith("127."):
        return True
    try:
        return name in (socket.gethostname().lower(), socket.getfqdn().lower())
    except OSError:
        return False


def same_file(host: str, remote_path: str, local_path) -> bool:
    """Whether host:remote_path is local_path itself: this machine, and the same file."""
    if not is_this_machine(host):
        return False
    home = os.path.expanduser("~" + host_user(host))
    remote = os.path.join(home, os.path.expanduser(remote_path))
    return os.path.realpath(remote) == os.path.realpath(os.fspath(local_path))


def scp_location(host: str, path: str) -> str:
    user, _, name = host.rpartition("@")
    if ":" in name and not name.startswith("["):
        name = "[%s]" % name
    return "%s%s:%s" % (user + "@" if user else "", name, path)


def file_tag(host: str) -> str:
    """The host as a piece of a file name."""
    return re.sub(r"[^A-Za-z0-9._@-]", "_", host)


def with_default_options(command) -> list:
    """The user's ssh/scp command, plus BatchMode and ConnectTimeout unless it sets them:
    a password prompt or a dead host must fail, not hang."""
    command = list(command)
    given = " ".join(command).lower()
    for key, value in SSH_DEFAULT_OPTIONS:
        if key.lower() not in given:
            command += ["-o", "%s=%s" % (key, value)]
    return command


def shell_line(script: str) -> str:
    """What ssh sends: the script run by sh, whatever the login shell is."""
    return "sh -c " + shlex.quote(script)


def alive_function(pids) -> str:
    """A shell function printing which of pids still run; a zombie counts as gone."""
    return ("pids='%s'\n"
            "alive() { for p in $pids; do if kill -0 $p 2>/dev/null; then s=; "
            "{ read -r s < /proc/$p/stat; } 2>/dev/null; "
            "case \"$s\" in *') Z '*|*') X '*) ;; *) printf '%%s ' $p;; esac; fi; done; }\n"
            % " ".join(str(int(p)) for p in pids))


def stop_script(pids, timeout: float, then: str = "") -> str:
    """TERM pids, wait up to timeout, KILL what is left, wait for that; say what survived."""
    return alive_function(pids) + (
        "kill -s TERM %s 2>/dev/null\n"
        "i=0; left=$(alive)\n"
        "while [ -n \"$left\" ] && [ $i -lt %d ]; do sleep 0.1; i=$((i+1)); left=$(alive); done\n"
        "if [ -n \"$left\" ]; then kill -s KILL $left 2>/dev/null; i=0\n"
        "  while [ -n \"$left\" ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); pids=$left; left=$(alive); done\n"
        "fi\n"
        "echo %s $left\n%s" % (" ".join(str(int(p)) for p in pids), max(1, int(timeout * 10)), LEFT_MARKER, then))


def command_text(cmd) -> str:
    """A command as one would type it; an ssh command's remote line is shown as sent."""
    if cmd and cmd[-1].startswith("sh -c "):
        return shlex.join(cmd[:-1]) + " " + cmd[-1]
    return shlex.join(cmd)


def failure(host: str, what: str, cmd, returncode, output: str) -> LauncherError:
    why = " (ssh could not connect or log in)" if returncode == 255 else ""
    return LauncherError("cannot %s on host %r: `%s` ended with %s%s:\n%s"
                         % (what, host, command_text(cmd), describe_exit(returncode), why,
                            output.strip() or "(no output)"))


def run_command(cmd, host: str, what: str, timeout: float = SSH_TIMEOUT) -> str:
    """Run an ssh or scp command; its stdout, or a LauncherError naming host, command and stderr."""
    try:
        done = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              timeout=timeout, start_new_session=True)
    except subprocess.TimeoutExpired:
        raise LauncherError("cannot %s on host %r: `%s` did not finish within %gs"
                            % (what, host, command_text(cmd), timeout)) from None
    except OSError as e:
        raise LauncherError("cannot %s on host %r: cannot run `%s`: %s (see [launcher.ssh] ssh_command and "
                            "scp_command)" % (what, host, command_text(cmd), e)) from None
    if done.returncode != 0:
        raise failure(host, what, cmd, done.returncode, done.stderr.decode(errors="replace")
                      or done.stdout.decode(errors="replace"))
    return done.stdout.decode(errors="replace")


def in_parallel(function, items) -> list:
    """function(item) for each item at once; the results, or the first error once all ended."""
    items = list(items)
    if len(items) <= 1:
        return [function(item) for item in items]
    with concurrent.futures.ThreadPoolExecutor(max_workers=min(16, len(items))) as pool:
        futures = [pool.submit(function, item) for item in items]
        concurrent.futures.wait(futures)
    return [f.result() for f in futures]


class Remote:
    """One host, reached with the configured ssh and scp commands."""

    def __init__(self, host: str, settings):
        """``settings``: the ssh launcher's (launcher.ssh's ssh_command and scp_command)."""
        self.host = host
        self.ssh_command = list(settings.ssh_command or ["ssh"])
        self.scp_command = list(settings.scp_command or ["scp"])
        self.watched: set = set()
        self._alive = (0.0, frozenset(), set())
        self._lock = threading.Lock()

    def ssh(self, script: str) -> list:
        return with_default_options(self.ssh_command) + [self.host, shell_line(script)]

    def run(self, script: str, what: str, timeout: float = SSH_TIMEOUT) -> str:
        return run_command(self.ssh(script), self.host, what, timeout)

    def scp(self, source: str, target: str, what: str) -> None:
        run_command(with_default_options(self.scp_command) + ["-q", source, target], self.host, what)

    def send(self, pairs) -> None:
        """Copy [(local, remote path)] here; remote paths equal to the local ones go through
        a temporary name and a rename, so a shared file is never truncated under a reader."""
        renames = []
        for local, remote in pairs:
            if same_file(self.host, remote, local):
                continue
            target = remote
            if posixpath.normpath(remote) == os.path.normpath(os.path.abspath(local)):
                target = "%s.minipar-%s.tmp" % (remote, uuid.uuid4().hex)  # unique per host sharing the file
                renames.append((target, remote))
            self.scp(str(local), scp_location(self.host, target), "copy %s to %s" % (local, remote))
        if renames:
            self.run("\n".join("mv -f %s %s" % (shlex.quote(a), shlex.quote(b)) for a, b in renames),
                     "move the copied files into place")

    def fetch(self, pairs, mode=None) -> None:
        """Copy [(remote path, local)] from here, each into place by a local rename."""
        for remote, local in pairs:
            if same_file(self.host, remote, local):
                continue
            local = Path(local)
            local.parent.mkdir(parents=True, exist_ok=True)
            tmp = local.with_name(".%s.minipar-%s.tmp" % (local.name, uuid.uuid4().hex))
            try:
                self.scp(scp_location(self.host, remote), str(tmp), "copy %s here to %s" % (remote, local))
                if mode is not None:
                    os.chmod(str(tmp), mode)
                os.replace(str(tmp), str(local))
            finally:
                if tmp.exists():
                    tmp.unlink()

    def spawn(self, command, env: dict, log_file) -> "Starting":
        """Start command there through ssh, its output appended to log_file here; env maps
        names to shell words (they may expand the remote environment)."""
        assignments = "".join("%s=%s; export %s\n" % (k, v, k) for k, v in env.items())
        script = "echo %s $$\n%sexec %s" % (PID_MARKER, assignments, shlex.join(command))
        cmd = self.ssh(script)
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        offset = os.path.getsize(log_file) if os.path.exists(log_file) else 0
        return Starting(self, cmd, Process.spawn(cmd, log_file), offset)

    def alive(self, pids, fresh: bool = False) -> set:
        """Which of pids run there; answers for the watched pids are reused for a moment.
        When the host cannot be asked, every pid counts as running (we cannot tell)."""
        pids = set(pids)
        with self._lock:
            self.watched |= pids
            when, asked, alive = self._alive
            if not fresh and pids <= asked and time.monotonic() - when < ALIVE_CACHE_SECONDS:
                return alive & pids
            asked = frozenset(self.watched)
            try:
                out = self.run(alive_function(asked) + "alive", "check which processes run")
            except LauncherError as e:
                log.warning("%s", e)
                return pids
            alive = {int(p) for p in out.split() if p.isdigit()}
            self._alive = (time.monotonic(), asked, alive)
            return alive & pids

    def watch(self, pid: int) -> None:
        with self._lock:
            self.watched.add(pid)

    def forget(self) -> None:
        self._alive = (0.0, frozenset(), set())

    def signal(self, pids, sig) -> None:
        self.forget()
        self.run("kill -s %s %s 2>/dev/null; exit 0" % (signal_name(sig), " ".join(str(p) for p in pids)),
                 "send SIG%s to pids %s" % (signal_name(sig), " ".join(str(p) for p in pids)))

    def stop(self, pids, timeout: float, then: str = "") -> set:
        """TERM, wait, KILL; the pids that survived even that."""
        self.forget()
        out = self.run(stop_script(pids, timeout, then), "stop pids %s" % " ".join(str(p) for p in pids),
                       timeout + 5 + SSH_TIMEOUT)
        for line in out.splitlines():
            if line.startswith(LEFT_MARKER):
                return {int(p) for p in line[len(LEFT_MARKER):].split()}
        return set()


class Starting:
    """A remote command whose ssh client runs here, until it reports its pid there."""

    def __init__(self, remote: Remote, cmd: list, client: Process, offset: int):
        self.remote = remote
        self.cmd = cmd
        self.client = client
        self.offset = offset
        self.pid = None
        self.problem = ""

    def poll(self) -> bool:
        """True once the pid is known or the start has failed."""
        if self.pid is not None or self.problem:
            return True
        running = self.client.running
        self.pid = self.read_pid()
        if self.pid is None and not running:
            self.problem = str(failure(self.remote.host, "start a process", self.cmd, self.client.returncode,
                                       self.output()))
        return self.pid is not None or not running

    def read_pid(self):
        try:
            with open(self.client.log_file, "rb") as f:
                f.seek(self.offset)
                m = PID_LINE.search(f.read(65536))
        except OSError:
            return None
        return int(m.group(1)) if m else None

    def output(self) -> str:
        try:
            with open(self.client.log_file, "rb") as f:
                f.seek(self.offset)
                return f.read(8192).decode(errors="replace")
        except OSError as e:
            return "(cannot read %s: %s)" % (self.client.log_file, e)

    def give_up(self) -> None:
        self.problem = "cannot start a process on host %r: `%s` did not report its pid within %gs" % (
            self.remote.host, command_text(self.cmd), START_TIMEOUT)
        end_clients([self.client], 0)


def wait_started(starting: list, timeout: float = START_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not all(s.poll() for s in starting):
        if time.monotonic() > deadline:
            for s in starting:
                if not s.poll():
                    s.give_up()
            return
        time.sleep(POLL)


def end_clients(clients, wait: float = CLIENT_EXIT_SECONDS) -> None:
    """End local ssh clients: they go by themselves once their remote process has; the
    rest get TERM, then KILL. Only each client's own session is signalled."""
    deadline = time.monotonic() + wait
    while any(c.running for c in clients) and time.monotonic() < deadline:
        time.sleep(POLL)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for c in clients:
            if c.running:
                try:
                    os.killpg(c.pid, sig)
                except (ProcessLookupError, PermissionError):
                    pass
        deadline = time.monotonic() + 2
        while any(c.running for c in clients) and time.monotonic() < deadline:
            time.sleep(POLL)


# ------------------------------------------------------------------------------ processes

class RemoteProcess(Process):
    """A process on another host: its pid there, and the local ssh client whose output is
    its log. Signals always go over ssh; the pid is never signalled here (on a test bed
    sharing pids with its 'hosts' that would kill the right process the wrong way)."""

    def __init__(self, remote: Remote, pid: int, log_file: str, client=None, returncode=None, stopped=False):
        super().__init__(pid, log_file, popen=client.popen if client is not None else None, returncode=returncode)
        self.remote = remote
        self.client = client
        self.stopped = stopped
        remote.watch(pid)

    @property
    def host(self) -> str:
        return self.remote.host

    @property
    def running(self) -> bool:
        """While its ssh client runs, so does the process; after that, and from another
        process, ssh is asked, unless the client's exit code says how the process ended."""
        if self.popen is not None and self.returncode is None:
            self.returncode = self.popen.poll()
            if self.returncode is None:
                return True
        if not self.may_run_there:
            return False
        return self.pid in self.remote.alive([self.pid])

    @property
    def may_run_there(self) -> bool:
        """False once ssh has passed on the process's own exit code. 255 (ssh failed, or the
        process was killed by a signal) or a killed ssh client say nothing about it."""
        if self.stopped:
            return False
        return self.returncode is None or self.returncode == 255 or self.returncode < 0

    def signal(self, sig) -> None:
        self.remote.signal([self.pid], sig)

    def kill_group(self, sig) -> None:
        self.signal(sig)

    def describe(self) -> str:
        return "pid %d on %s (%s)" % (self.pid, self.host, describe_exit(self.returncode)
                                      if self.returncode is not None else ("running" if self.running else "gone"))

    def to_dict(self) -> dict:
        return dict(super().to_dict(), host=self.host, client_pid=self.client.pid if self.client else None,
                    stopped=self.stopped)


def restore_process(d: dict, remote_for) -> RemoteProcess:
    client = Process(d["client_pid"], d.get("log_file", "")) if d.get("client_pid") else None
    return RemoteProcess(remote_for(d["host"]), d["pid"], d.get("log_file", ""), client, d.get("returncode"),
                         d.get("stopped", False))
