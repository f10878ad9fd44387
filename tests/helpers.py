"""Plain helpers the tests share: paths, waiting, processes, and throwaway profiles.

Fixtures and pytest hooks are in conftest.py and in the plugins of fixtures/ it registers."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
TEST_DIRS = ("client", "controller", "engine", "cluster", "common", "docs", "services")
"""The folders of test modules, by the role of the process they exercise (README.md)."""
TEST_PYTHONPATH = os.pathsep.join([str(ROOT), str(TESTS)] + [str(TESTS / d) for d in TEST_DIRS])
"""PYTHONPATH for the processes tests start: minipar from this checkout, these helpers, and every
test module, since a function a test sends to an engine is pickled by reference to its module."""
FAST_HEARTBEAT = ["--controller.heartbeat_period=0.2", "--controller.heartbeat_misses=4"]


def wait_for(condition, timeout=20.0, what="condition", interval=0.02):
    """Poll until condition() is truthy; fail naming what was awaited."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %gs waiting for %s" % (timeout, what))
        time.sleep(interval)


def announce_then_sleep(seconds, value="slept"):
    """A task that says it started (its output streams to the client), then takes its time."""
    import time
    print("started", flush=True)
    time.sleep(seconds)
    return value


def print_pid_then_sleep(seconds):
    """A task that prints its engine's pid (so a test can kill it mid-task), then sleeps."""
    import os
    import time
    print(os.getpid(), flush=True)
    time.sleep(seconds)
    return os.getpid()


def pid_gone(pid: int) -> bool:
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except (FileNotFoundError, ProcessLookupError):  # a read of a vanishing process fails with ESRCH
        return True


def assert_all_gone(pids):
    for pid in pids:
        wait_for(lambda: pid_gone(pid), 10, "pid %d to be gone" % pid)


def sleeper(seconds):
    """Runs on an engine: says it started, then sleeps."""
    import time
    print("sleeping", flush=True)
    time.sleep(seconds)


def with_children(pids) -> list:
    """``pids`` and the children of each (an engine's nanny has the engine as its child)."""
    parents = set(pids)
    children = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open("/proc/%s/stat" % entry) as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            if ppid in parents:
                children.append(int(entry))
    return list(pids) + children


class Proc:
    """A minipar process started by a test (on this Python, or ``python``), with its combined
    output in a file."""

    def __init__(self, args, env, log_path, cwd=None, python=None):
        self.args = args
        self.log_path = Path(log_path)
        self._log = open(self.log_path, "wb")
        self.popen = subprocess.Popen([str(python or sys.executable), *args], env=env, stdout=self._log,
                                      stderr=subprocess.STDOUT, cwd=cwd or str(ROOT), start_new_session=True)
        self.pid = self.popen.pid

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait(self, timeout=20.0) -> int:
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError("%s did not exit within %gs; output:\n%s"
                                 % (" ".join(self.args), timeout, self.output())) from None

    def signal(self, sig):
        if self.popen.poll() is None:
            os.kill(self.pid, sig)

    def stop(self):
        if self.popen.poll() is None:
            self.signal(signal.SIGTERM)
            try:
                self.popen.wait(5)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)
        self._log.close()


class Profile:
    """A profile dir in tmp_path, and the processes started in it."""

    def __init__(self, tmp_path: Path):
        self.root = tmp_path / "minipar"
        self.dir = self.root / "profile_default"
        self.env = dict(os.environ, MINIPAR_DIR=str(self.root),
                        PYTHONPATH=TEST_PYTHONPATH)
        self.procs: list = []
        self.clients: list = []
        self.tmp = tmp_path

    def security(self, name: str) -> Path:
        return self.dir / "security" / name

    def client_file(self, cluster_id="") -> Path:
        return self.security("controller%s-client.json" % ("-" + cluster_id if cluster_id else ""))

    def engine_file(self, cluster_id="") -> Path:
        return self.security("controller%s-engine.json" % ("-" + cluster_id if cluster_id else ""))

    def run(self, module, *args, name=None, python=None) -> Proc:
        name = name or "%s-%d" % (module.rsplit(".", 1)[-1], len(self.procs))
        proc = Proc(["-m", module, *args], self.env, self.tmp / ("%s.out" % name), python=python)
        self.procs.append(proc)
        return proc

    def controller(self, *args, cluster_id="", wait=True) -> Proc:
        if cluster_id:
            args = args + ("--cluster-id", cluster_id)
        proc = self.run("minipar.controller", *FAST_HEARTBEAT, *args)
        if wait:
            pid_file = self.dir / "pid" / ("controller%s.pid" % ("-" + cluster_id if cluster_id else ""))
            wait_for(lambda: pid_file.exists() or proc.popen.poll() is not None, what="controller to start")
            assert proc.popen.poll() is None, "controller exited:\n" + proc.output()
        return proc

    def engine(self, *args, python=None) -> Proc:
        return self.run("minipar.engine", *args, python=python)

    def client(self, cluster_id="", **kwargs):
        import minipar
        rc = minipar.Client(url_file=str(self.client_file(cluster_id)), **kwargs)
        self.clients.append(rc)
        return rc

    def stop_all(self):
        for rc in self.clients:
            rc.close()
        for proc in reversed(self.procs):
            proc.stop()
        for proc in self.procs:
            wait_for(lambda: pid_gone(proc.pid), 5, "pid %d to be gone" % proc.pid)


def start_cluster(p: Profile, n: int, *controller_args):
    p.controller(*controller_args)
    engines = [p.engine() for _ in range(n)]
    rc = p.client()
    rc.wait_for_engines(n, timeout=30)
    return rc, engines


def read_json(path) -> dict:
    return json.loads(Path(path).read_text())
