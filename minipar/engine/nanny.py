"""The engine's nanny: the process ``python -m minipar.engine`` starts as, with the engine as its child.

Only a parent learns how a process ended. An engine SIGKILLed by a user, the out-of-memory
killer or a batch system cannot say why it died, and without a witness the controller learns
only that heartbeats stopped, seconds later. So the launched process forks once its settings
are read, before MPI is initialised or any socket exists: the child is the engine, the parent
(the pid launchers, mpiexec and batch systems know) waits for it.

- Signals the nanny gets (SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2) go on to the
  engine's process group, so signalling the launched pid means what it did without a nanny.
  The engine leads its own group, so a signal sent to the nanny's group arrives once.
- Each time the engine registers it writes one JSON line to a pipe: its id and uuid, and how
  to reach and sign for the controller; once it has unregistered, another line says so.
- When the engine ends without unregistering (a signal, or a non-zero exit), the nanny sends
  the controller ``engine_died`` with why, so its tasks fail at once and say why, or go to
  another engine per ``retries`` (without using one up when a SIGTERM in a batch job, the
  job's end, came first). Then the nanny exits as the engine did (same code, same
  signal), so a launcher sees the engine's status.
- If the nanny dies, the kernel SIGKILLs the engine (``PR_SET_PDEATHSIG`` on Linux; elsewhere
  the engine notices its parent changed), so ``kill -9`` on the launched pid still ends it.

``[engine] nanny = false`` (ipyparallel: ``IPEngine.enable_nanny``) runs the engine in the
launched process itself, as before.
"""
from __future__ import annotations

import json
import logging
import os
import re
import signal
import socket
import sys
import threading
from typing import Optional

from ..signals import start_without_signals
from ..jobs import current_job, in_batch_job

log = logging.getLogger("minipar.engine")

RELAYED_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGINT", "SIGHUP", "SIGQUIT",
                                                           "SIGUSR1", "SIGUSR2") if hasattr(signal, name))
REPORT_LINGER_MS = 2000
"""How long the nanny tries to deliver ``engine_died`` before it exits anyway."""


class NannyLink:
    """The engine's end of the pipe to its nanny."""

    def __init__(self, fd: int, nanny_pid: int):
        self.fd = fd
        self.nanny_pid = nanny_pid

    def tell(self, **fields) -> None:
        try:
            os.write(self.fd, (json.dumps(fields) + "\n").encode())
        except OSError:
            pass  # the nanny is gone, and the kernel ends this process

    def registered(self, engine) -> None:
        info = engine.info
        self.tell(uuid=engine.uuid, id=engine.id, url=engine.url, key=info["key"],
                  curve_serverkey=info.get("curve_serverkey"), unregistered=False)

    def nanny_alive(self) -> bool:
        return os.getppid() == self.nanny_pid


def fork_engine() -> Optional[NannyLink]:
    """In the engine (the child): its link to the nanny. The parent becomes the nanny and
    never returns from here. None where there is no fork."""
    if not hasattr(os, "fork"):
        return None
    read_end, write_end = os.pipe()
    oom_kills_before = oom_kill_count()
    sys.stdout.flush()
    sys.stderr.flush()
    child = os.fork()
    if child == 0:
        os.close(read_end)
        os.setpgid(0, 0)
        nanny_pid = os.getppid()
        _die_with_parent()
        link = NannyLink(write_end, nanny_pid)
        if not link.nanny_alive():  # the nanny died before prctl took effect
            os._exit(1)
        return link
    os.close(write_end)
    try:
        os.setpgid(child, child)  # also here, so a signal relayed at once finds the group
    except OSError:
        pass  # the child did it first, or is gone already
    Nanny(child, read_end, oom_kills_before).run()
    raise AssertionError("unreachable")  # pragma: no cover


def _die_with_parent() -> None:
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        PR_SET_PDEATHSIG = 1
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass


class Nanny:
    def __init__(self, child: int, reports_fd: int, oom_kills_before: Optional[int]):
        self.child = child
        self.reports_fd = reports_fd
        self.oom_kills_before = oom_kills_before
        self.engine: dict = {}
        self.terminated = False  # a SIGTERM came, which in a batch job is the job ending

    def run(self):
        for sig in RELAYED_SIGNALS:
            signal.signal(sig, self.relay)
        reader = threading.Thread(target=self.read_reports, name="nanny-reports", daemon=True)
        start_without_signals(reader)
        while True:
            try:
                _, status = os.waitpid(self.child, 0)
                break
            except ChildProcessError:
                status = 1 << 8
                break
        reader.join(1.0)
        if self.engine.get("uuid") and not self.engine.get("unregistered") and status != 0:
            reason = self.why(status)
            log.error("engine %s: %s", self.engine.get("id"), reason)
            self.tell_controller(reason)
        exit_as(status)

    def relay(self, signum, frame):
        self.terminated = self.terminated or signum == signal.SIGTERM
        try:
            os.killpg(self.child, signum)
        except OSError:
            try:
                os.kill(self.child, signum)
            except OSError:
                pass

    def read_reports(self):
        with os.fdopen(self.reports_fd, "rb") as f:
            for line in f:
                try:
                    self.engine.update(json.loads(line))
                except ValueError:
                    pass

    def why(self, status: int) -> str:
        """What ended the engine, in words a user can act on."""
        process = "engine process %d on %s" % (self.child, socket.gethostname())
        if os.WIFSIGNALED(status):
            sig = os.WTERMSIG(status)
            name = signal_name(sig)
            if sig == signal.SIGKILL:
                evidence = self.oom_evidence()
                if evidence:
                    return ("%s was killed by the out-of-memory killer (SIGKILL; %s): give the job more memory "
                            "or make the task use less" % (process, evidence))
            return "%s was killed by signal %d (%s)%s" % (process, sig, name, in_batch_job(name))
        return "%s exited with code %d without unregistering" % (process, os.WEXITSTATUS(status))

    def oom_evidence(self) -> str:
        after = oom_kill_count()
        if after is not None and self.oom_kills_before is not None and after > self.oom_kills_before:
            return "the kernel counted %d out-of-memory kill%s in its memory cgroup" % (
                after - self.oom_kills_before, "" if after - self.oom_kills_before == 1 else "s")
        if kernel_log_mentions_oom_kill(self.child):
            return "the kernel log says so"
        return ""

    def tell_controller(self, reason: str) -> None:
        import zmq
        from ..curve import ClientKeys
        from ..protocol import Session
        e = self.engine
        ctx = zmq.Context()
        try:
            sock = ctx.socket(zmq.DEALER)
            ClientKeys(e).apply(sock.setsockopt)
            sock.setsockopt(zmq.LINGER, REPORT_LINGER_MS)
            sock.connect(e["url"])
            job_ended = self.terminated and current_job() is not None
            Session(e["key"]).send(sock, "engine_died", {"uuid": e["uuid"], "id": e.get("id"), "reason": reason,
                                                         "job_ended": job_ended})
            sock.close()
        except Exception as exc:  # noqa: BLE001 - the heartbeat tells the controller anyway
            log.warning("could not tell the controller that engine %s died: %s", e.get("id"), exc)
        finally:
            ctx.term()


def exit_as(status: int):
    """End this process the way the engine ended: the same signal, or the same code."""
    sys.stdout.flush()
    sys.stderr.flush()
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        try:
            import resource
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # the engine's core, if any, is the useful one
        except (ImportError, ValueError, OSError):
            pass
        try:
            signal.signal(sig, signal.SIG_DFL)
        except (OSError, ValueError):
            pass  # SIGKILL has no handler to reset
        os.kill(os.getpid(), sig)
        os._exit(128 + sig)
    os._exit(os.WEXITSTATUS(status) if os.WIFEXITED(status) else 1)


def signal_name(sig: int) -> str:
    try:
        return signal.Signals(sig).name
    except ValueError:
        return "signal %d" % sig


def oom_kill_count() -> Optional[int]:
    """The kernel's count of out-of-memory kills in this process's memory cgroup (v1's
    memory.oom_control, v2's memory.events), or None where neither can be read."""
    try:
        with open("/proc/self/cgroup") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    candidates = []
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        hierarchy, controllers, path = parts
        if "memory" in controllers.split(","):
            candidates.insert(0, "/sys/fs/cgroup/memory%s/memory.oom_control" % path.rstrip("/"))
        elif hierarchy == "0" and not controllers:
            for root in ("/sys/fs/cgroup", "/sys/fs/cgroup/unified"):
                candidates.append("%s%s/memory.events" % (root, path.rstrip("/")))
    for path in candidates:
        try:
            with open(path) as f:
                found = re.search(r"^oom_kill (\d+)$", f.read(), re.M)
        except OSError:
            continue
        if found:
            return int(found.group(1))
    return None


def kernel_log_mentions_oom_kill(pid: int) -> bool:
    """True when the kernel log (``/dev/kmsg``, readable by root) records killing ``pid``."""
    try:
        fd = os.open("/dev/kmsg", os.O_RDONLY | os.O_NONBLOCK)
    except OSError:
        return False
    wanted = re.compile(rb"Killed process %d\b" % pid)
    try:
        while True:
            try:
                record = os.read(fd, 8192)
            except BlockingIOError:
                return False
            except OSError:  # EPIPE: a record was overwritten while reading; go on with the next
                continue
            if not record:
                return False
            if wanted.search(record):
                return True
    finally:
        os.close(fd)
