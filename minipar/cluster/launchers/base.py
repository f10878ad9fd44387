"""The launcher interface: how a Cluster starts, signals and stops one group of processes.

A launcher owns processes (or a batch job) for one role: the controller, or a set of
engines. Everything it needs to find them again goes into ``to_dict()``, which the
Cluster writes to its state file before ``start()`` returns, so another process (``python
-m minipar.cluster stop``) can rebuild the launcher with ``from_dict`` and stop what it
started.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from ...error import LauncherError, describe_exit
from ...pidfile import pid_alive
from .settings import LauncherSettings

PACKAGE = __package__.rsplit(".", 2)[0]
"""This package's import name: 'minipar', or e.g. 'tools._vendor.minipar' when vendored."""

PACKAGE_ROOT = str(Path(__file__).resolve().parents[len(PACKAGE.split(".")) + 2])
"""The directory the package imports from, put on children's PYTHONPATH."""

POLL_INTERVAL = 0.05
"""Seconds between checks while waiting for processes to go."""


def signal_name(sig) -> str:
    """'INT' for SIGINT: the spelling kill -s, scancel, qsig and bkill all take."""
    try:
        return signal.Signals(sig).name[3:]
    except ValueError:
        raise LauncherError("cannot send signal %r: not a known signal" % (sig,)) from None


def python_command(role: str) -> list:
    """Run this very package's <role> module with this interpreter."""
    return [sys.executable, "-m", "%s.%s" % (PACKAGE, role)]


def child_env(extra=None) -> dict:
    """The environment of a process started here: this one's, with this package importable.

    Nothing else is added. In particular glibc's huge-pages tunable (``GLIBC_TUNABLES=
    glibc.malloc.hugetlb=1``) is left to the user: it speeds up repeated 100 MB transfers into
    a long-lived engine, but makes the first ones into a fresh process 2-4x slower and erratic
    while the kernel compacts memory for the huge pages (benchmarks/RESULTS.md, 2026-12-06)."""
    env = dict(os.environ)
    paths = [PACKAGE_ROOT] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    env.update(extra or {})
    return env


def tail(path, lines: int = 10) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 8192))
            text = f.read().decode(errors="replace")
    except OSError as e:
        return "(cannot read %s: %s)" % (path, e)
    return "\n".join(text.splitlines()[-lines:])


class Process:
    """One local process: its pid, the Popen when we started it, and its log file."""

    def __init__(self, pid: int, log_file: str, popen=None, returncode=None):
        self.pid = pid
        self.log_file = log_file
        self.popen = popen
        self.returncode = returncode
        self.reported = False

    @classmethod
    def spawn(cls, cmd, log_file, env=None, cwd=None):
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        with open(log_file, "ab") as log:
            popen = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                     env=env, cwd=cwd, start_new_session=True)
        return cls(popen.pid, str(log_file), popen)

    @property
    def running(self) -> bool:
        if self.returncode is not None:
            return False
        if self.popen is not None:
            self.returncode = self.popen.poll()
            return self.returncode is None
        return pid_alive(self.pid)

    def signal(self, sig) -> None:
        if self.running:
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass

    def kill_group(self, sig) -> None:
        """Signal the process's session, so helpers it started (ssh tunnels) go too."""
        if not self.running:
            return
        try:
            os.killpg(self.pid, sig)
        except (ProcessLookupError, PermissionError):
            self.signal(sig)

    def describe(self) -> str:
        return "pid %d, %s" % (self.pid, describe_exit(self.returncode) if self.returncode is not None
                               else ("running" if self.running else "gone"))

    def describe_end(self, role: str) -> str:
        """The warning for a process that exited on its own, as exited() reported it."""
        return "%s process %d exited on its own (%s); last lines of %s:\n%s" % (
            role, self.pid, describe_exit(self.returncode), self.log_file, tail(self.log_file))

    def to_dict(self) -> dict:
        return {"pid": self.pid, "log_file": self.log_file, "returncode": self.returncode}

    @classmethod
    def from_dict(cls, d) -> "Process":
        return cls(d["pid"], d.get("log_file", ""), returncode=d.get("returncode"))


def stop_processes(processes, timeout: float) -> None:
    """SIGTERM each, wait up to timeout for all to go, SIGKILL the rest; never hangs."""
    for p in processes:
        p.kill_group(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while any(p.running for p in processes) and time.monotonic() < deadline:
        time.sleep(POLL_INTERVAL)
    for p in processes:
        if p.running:
            p.kill_group(signal.SIGKILL)
    deadline = time.monotonic() + 5
    while any(p.running for p in processes) and time.monotonic() < deadline:
        time.sleep(POLL_INTERVAL)


class ProcessesMixin:
    """For launchers whose handle is a list of Process objects, here or on other hosts."""

    processes: list

    @property
    def running(self) -> bool:
        return any(p.running for p in self.processes)

    def engines_running(self) -> int:
        return sum(p.running for p in self.processes)

    def exited(self) -> list:
        ended = [p for p in self.processes if not p.reported and not p.running]
        for p in ended:
            p.reported = True
        return ended

    def leftover(self) -> bool:
        return bool(self.processes)

    @property
    def output_files(self) -> list:
        return [p.log_file for p in self.processes]

    def to_dict(self) -> dict:
        return dict(super().to_dict(), processes=[p.to_dict() for p in self.processes])

    def restore(self, d: dict) -> None:
        self.processes = [self.process_from_dict(p) for p in d.get("processes", [])]

    def process_from_dict(self, d: dict) -> Process:
        return Process.from_dict(d)


class Launcher:
    """Starts, signals and stops the processes of one role; see the module docstring."""

    name = ""
    settings_section = ""
    """The profile section this launcher reads (``launcher.slurm``); the Cluster passes it,
    merged with the role's sub-section, as the ``settings`` option (see settings.py)."""

    def __init__(self, profile_dir, cluster_id: str = "", log_level: str = "INFO", args=(), *, settings=None,
                 **options):
        """``settings``: a LauncherSettings, or its to_dict() table (from a state file); none
        gives the section's defaults."""
        self.profile_dir = Path(profile_dir)
        self.cluster_id = cluster_id
        self.log_level = log_level
        self.args = list(args)
        self.options = options
        if not isinstance(settings, LauncherSettings):
            role = "controller" if isinstance(self, ControllerLauncher) else "engines"
            settings = LauncherSettings.from_dict(self.settings_section, role, settings)
        self.settings = settings

    @property
    def log_dir(self) -> Path:
        return self.profile_dir / "log"

    def start(self) -> None:
        raise NotImplementedError

    def stop(self, timeout: float = 5.0) -> None:
        raise NotImplementedError

    def signal(self, sig) -> None:
        raise NotImplementedError

    @property
    def running(self) -> bool:
        raise NotImplementedError

    def exited(self) -> list:
        """What has ended on its own since the last call (processes, or a batch job): each has
        ``describe_end(role)``, the warning the Cluster logs."""
        return []

    def leftover(self) -> bool:
        """After start() failed: whether anything it started may still run, so the Cluster
        must keep the launcher recorded for stop()."""
        return True

    @property
    def output_files(self) -> list:
        return []

    def to_dict(self) -> dict:
        return {"class": "%s.%s" % (type(self).__module__, type(self).__qualname__),
                "profile_dir": str(self.profile_dir), "cluster_id": self.cluster_id,
                "log_level": self.log_level, "args": self.args,
                "options": dict(self.options, settings=self.settings.to_dict())}

    @classmethod
    def from_dict(cls, d: dict) -> "Launcher":
        launcher = cls(d["profile_dir"], d.get("cluster_id", ""), d.get("log_level", "INFO"), d.get("args", ()),
                       **d.get("options", {}))
        launcher.restore(d)
        return launcher

    def restore(self, d: dict) -> None:
        """Take back what to_dict saved about running processes or jobs."""

    def common_args(self) -> list:
        args = ["--profile-dir", str(self.profile_dir), "--log-level", self.log_level]
        if self.cluster_id:
            args += ["--cluster-id", self.cluster_id]
        return args


class ControllerLauncher(Launcher):
    """Starts the controller."""


class EngineSetLauncher(Launcher):
    """Starts ``n`` engines."""

    def __init__(self, profile_dir, cluster_id="", log_level="INFO", args=(), n: int = 1, **options):
        super().__init__(profile_dir, cluster_id, log_level, args, **options)
        self.n = n

    def engines_running(self) -> int:
        """How many of the n engines still run, as far as the launcher can tell."""
        return self.n if self.running else 0

    def to_dict(self) -> dict:
        return dict(super().to_dict(), n=self.n)

    @classmethod
    def from_dict(cls, d: dict) -> "EngineSetLauncher":
        launcher = cls(d["profile_dir"], d.get("cluster_id", ""), d.get("log_level", "INFO"), d.get("args", ()),
                       n=d.get("n", 1), **d.get("options", {}))
        launcher.restore(d)
        return launcher
