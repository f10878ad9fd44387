"""Fixtures that start real controllers and engines as processes, in throwaway profiles."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import weakref
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
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
                        PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "tests")]))
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


_clients = weakref.WeakSet()
_left_open = []


def _track_clients():
    from minipar.client.client import Client

    init = Client.__init__

    def tracked(self, *args, **kwargs):
        _clients.add(self)
        init(self, *args, **kwargs)

    Client.__init__ = tracked


_track_clients()


@pytest.fixture(autouse=True)
def close_clients_left_open(request):
    """A Client left open keeps reconnecting, every 100 ms for the rest of the session, to
    the ports of a controller long gone. When the kernel hands one of those port numbers to
    a new listener, such as MPICH's mpiexec, the stale client's ZeroMQ greeting reaches it
    ("HYD_pmcd_pmiserv_proxy_init_cb: cannot find proxy with ID 255": 0xff opens a ZMTP
    greeting) and kills that test's job. Clients a test opened are closed when it ends;
    those of module-scoped fixtures were opened before it and are left alone."""
    before = set(_clients)
    yield
    for rc in list(_clients):
        if rc not in before and not getattr(rc, "_closed", True):
            note = request.node.nodeid
            try:
                rc.close()
            except Exception as e:  # noqa: BLE001 - one half made by a failed __init__
                note = "%s (close failed: %r)" % (request.node.nodeid, e)
            request.node.user_properties.append(("left_client_open", note))


def pytest_runtest_logreport(report):
    """Collects the notes of clients left open from each test's report: with pytest-xdist the
    tests run in workers, and only their reports reach the process that prints the summary."""
    if report.when == "teardown":
        _left_open.extend(value for name, value in report.user_properties if name == "left_client_open")


def pytest_terminal_summary(terminalreporter):
    if _left_open:
        terminalreporter.write_line("%d test(s) left a minipar.Client open (closed after them): %s"
                                    % (len(_left_open), ", ".join(sorted(set(_left_open))[:20])))


@pytest.fixture
def profile(tmp_path):
    p = Profile(tmp_path)
    yield p
    p.stop_all()


def start_cluster(p: Profile, n: int, *controller_args):
    p.controller(*controller_args)
    engines = [p.engine() for _ in range(n)]
    rc = p.client()
    rc.wait_for_engines(n, timeout=30)
    return rc, engines


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """One controller and two engines shared by a module's tests."""
    p = Profile(tmp_path_factory.mktemp("cluster"))
    rc, engines = start_cluster(p, 2)
    rc.profile = p
    rc.engine_procs = engines
    yield rc
    p.stop_all()


def read_json(path) -> dict:
    return json.loads(Path(path).read_text())


SERVICE_FIXTURES = {"sshd", "netns_hosts", "mpi", "slurm", "sge"}
"""Fixtures that bring up a system service (tests/services.py)."""
REAL_BATCH_SYSTEMS = {"slurm", "sge"}
"""Parameter values that name the test bed's real Slurm and Grid Engine."""


def pytest_collection_modifyitems(items):
    """Mark the tests that need a system service (ssh, MPI, Slurm, Grid Engine, the network
    namespaces) ``service``: run-tests runs them on one Python only (``-m "not service"`` on
    the others), which keeps the whole suite within CI's time."""
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        if set(getattr(item, "fixturenames", ())) & SERVICE_FIXTURES or \
                REAL_BATCH_SYSTEMS & {v for v in params.values() if isinstance(v, str)}:
            item.add_marker(pytest.mark.service)
