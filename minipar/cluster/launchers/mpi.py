"""MPI launchers: engines as the ranks of one ``mpiexec -n N`` job, or the controller under mpiexec.

What mpiexec does with its processes differs between implementations, and a launcher that only
signals mpiexec would leave engines behind (both seen here with Open MPI 4.1 and MPICH 4.0):

- Open MPI puts each local rank in its own process group; MPICH's hydra puts them, under a
  ``hydra_pmi_proxy``, each in its own session. Signalling mpiexec's group reaches mpiexec only.
- SIGTERM to mpiexec ends the job under both (Open MPI: SIGCONT, SIGTERM, later SIGKILL to the
  ranks; hydra forwards SIGTERM). But a SIGKILLed or crashed Open MPI mpiexec leaves its ranks
  running, orphaned.

So every process of the job carries an environment variable unique to the launch
(``MINIPAR_MPI_JOB``; both implementations pass the environment to local ranks), and ``stop()``
finds what is left through /proc, from this process or from another one (``python -m
<package>.cluster stop``). Ranks on other hosts (``mpi_args = ["--hostfile", ...]``) are
mpiexec's to end.

Signals: Open MPI ends the job on SIGINT, SIGTERM and SIGHUP; hydra forwards SIGTERM and the
first SIGINT but ends the job on a second SIGINT, and dies itself of SIGUSR2 and SIGHUP. Only
the signals both pass on as they are go through mpiexec; for any other, ``signal()`` raises
CannotSignal and the Cluster asks the controller to have the engines signal themselves (which
also interrupts a task with SIGINT without ending the job).
"""
from __future__ import annotations

import os
import signal
import time
import uuid

from ...error import CannotSignal, LauncherError
from .base import (POLL_INTERVAL, ControllerLauncher, EngineSetLauncher, Process, child_env, python_command,
                   signal_name)

JOB_VARIABLE = "MINIPAR_MPI_JOB"
"""Set, with a value unique to one launch, in the environment of mpiexec and so of its ranks."""

FORWARDED_SIGNALS = frozenset({signal.SIGUSR1, signal.SIGALRM})
"""Signals that both Open MPI's and MPICH's mpiexec pass on to every rank and nothing more."""

KILL_WAIT = 5.0
"""Seconds to wait for processes to go after SIGKILL."""


def job_pids(marker: str) -> list:
    """Live processes of this machine whose environment carries ``JOB_VARIABLE=marker``.

    A zombie's environment reads as empty, so zombies (which PID 1 reaps lazily) are not listed.
    Without /proc (not Linux) nothing is found: stopping then relies on mpiexec alone."""
    try:
        entries = os.listdir("/proc") if marker else []
    except OSError:
        return []
    needle = ("\0%s=%s\0" % (JOB_VARIABLE, marker)).encode()
    me = os.getpid()
    pids = []
    for entry in entries:
        if not entry.isdigit() or int(entry) == me:
            continue
        try:
            with open("/proc/%s/environ" % entry, "rb") as f:
                environ = f.read()
        except OSError:  # gone meanwhile, or another user's
            continue
        if needle in b"\0" + environ:
            pids.append(int(entry))
    return pids


def kill_pids(pids, sig) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


class MPIJobMixin:
    """One mpiexec process and the job it started; see the module docstring."""

    settings_section = "launcher.mpi"
    mpiexec = None
    marker = ""

    def mpiexec_command(self, n: int) -> list:
        command = list(self.settings.mpi_command)
        if not command or not command[0]:
            raise LauncherError("launcher.mpi.mpi_command is empty; set it to the MPI launcher and its "
                                "options, e.g. mpi_command = [\"mpiexec\"]")
        return command + ["-n", str(n)] + list(self.settings.mpi_args)

    def spawn(self, cmd: list, log_file: str) -> None:
        self.marker = "%s-%s" % (self.cluster_id or "default", uuid.uuid4().hex)
        try:
            self.mpiexec = Process.spawn(cmd, log_file, env=child_env({JOB_VARIABLE: self.marker}))
        except OSError as e:
            raise LauncherError("cannot run %s (launcher.mpi.mpi_command = %r): %s; install MPI or set "
                                "launcher.mpi.mpi_command to its mpiexec"
                                % (cmd[0], self.settings.mpi_command, e.strerror or e)) from None

    @property
    def running(self) -> bool:
        if self.mpiexec is None:
            return False
        return self.mpiexec.running or bool(job_pids(self.marker))

    def signal(self, sig) -> None:
        if sig not in FORWARDED_SIGNALS:
            raise CannotSignal("mpiexec does not pass %s on to every rank as it is (only %s); it may end "
                               "the job instead" % ("SIG" + signal_name(sig), ", ".join(
                                   sorted("SIG" + signal_name(s) for s in FORWARDED_SIGNALS))))
        if self.mpiexec is not None:
            self.mpiexec.signal(sig)

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM mpiexec (or, if it is gone, the ranks it left), SIGKILL what is left after
        timeout; returns once no process of the job runs here, or KILL_WAIT after the SIGKILL."""
        if self.mpiexec is None:
            return
        if self.mpiexec.running:
            self.mpiexec.kill_group(signal.SIGTERM)
        else:
            kill_pids(job_pids(self.marker), signal.SIGTERM)
        if self._wait_gone(timeout):
            return
        self.mpiexec.kill_group(signal.SIGKILL)
        kill_pids(job_pids(self.marker), signal.SIGKILL)
        self._wait_gone(KILL_WAIT)

    def _wait_gone(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while self.mpiexec.running or job_pids(self.marker):
            if time.monotonic() > deadline:
                return False
            time.sleep(POLL_INTERVAL)
        return True

    def exited(self) -> list:
        """mpiexec, once, when it has ended (the job ended or failed)."""
        p = self.mpiexec
        if p is None or p.reported or p.running:
            return []
        p.reported = True
        return [p]

    @property
    def output_files(self) -> list:
        return [] if self.mpiexec is None else [self.mpiexec.log_file]

    def to_dict(self) -> dict:
        return dict(super().to_dict(), mpiexec=self.mpiexec.to_dict() if self.mpiexec else None,
                    marker=self.marker)

    def restore(self, d: dict) -> None:
        self.mpiexec = Process.from_dict(d["mpiexec"]) if d.get("mpiexec") else None
        self.marker = d.get("marker", "")


class MPIEngineSetLauncher(MPIJobMixin, EngineSetLauncher):
    """n engines as the ranks of ``mpiexec -n n [mpi_args] python -m <package>.engine ...``."""

    name = "mpi"

    @property
    def log_file(self) -> str:
        return str(self.log_dir / ("engine-%s-mpi-%d.log" % (self.cluster_id or "default",
                                                             self.options.get("first_index", 0))))

    def start(self) -> None:
        cmd = self.mpiexec_command(self.n) + python_command("engine") + self.common_args() + self.args
        self.spawn(cmd, self.log_file)


class MPIControllerLauncher(MPIJobMixin, ControllerLauncher):
    """The controller as the one rank of ``mpiexec -n 1 [mpi_args] python -m <package>.controller ...``."""

    name = "mpi"

    @property
    def log_file(self) -> str:
        return str(self.log_dir / ("controller-%s-mpi.log" % (self.cluster_id or "default")))

    def start(self) -> None:
        cmd = self.mpiexec_command(1) + python_command("controller") + self.common_args() + self.args
        self.spawn(cmd, self.log_file)
