"""The controller, engines and clients on different hosts, for real: tbh1 and tbh2 are network
namespaces with their own address, hostname and sshd, and the root namespace is the host tbroot
at 10.99.0.1 (scripts/services/netns.sh). Engines and clients on tbh1/tbh2 are started through
ssh, so they see their host's hostname and reach tbroot only over the bridge; tbroot's loopback
is out of their reach except through an ssh tunnel.

These hosts share pids and files with this one. The tests use that on purpose only to put the
connection files and scripts where the other host reads them (as scp or a shared file system
would) and to check that pids are gone; everything else goes through ssh and the network.
"""
from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

import minipar
from fixtures.services import read_env
from helpers import ROOT, pid_gone, read_json, wait_for
from wire import CAN_CAPTURE, Capture

ROOT_HOST, ROOT_IP = "tbroot", "10.99.0.1"
HOST_IPS = {"tbh1": "10.99.0.11", "tbh2": "10.99.0.12"}
NET = "10.99.0.0/24"
BRIDGE = "tbbr0"
WIRE_SECRET = "a-payload-for-tbh1-that-no-one-on-the-bridge-reads-4d1a"
SSH = ["ssh", "-o", "BatchMode=yes", "-o", "ConnectTimeout=10"]
PID_MARKER = "multihost-test-pid"


def remote_script(argv) -> str:
    """What ssh runs on the other host: say the pid the command will have, then become it."""
    return "sh -c %s" % shlex.quote("echo %s $$; cd %s && export PYTHONPATH=%s && exec %s" % (
        PID_MARKER, shlex.quote(str(ROOT)), shlex.quote(str(ROOT)), " ".join(shlex.quote(str(a)) for a in argv)))


def on_host(host: str, argv, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(SSH + [host, remote_script(argv)], stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=timeout)


class RemoteProc:
    """A process started on another host through ssh; the local ssh client carries its output."""

    def __init__(self, host: str, argv, log_path: Path):
        self.host = host
        self.log_path = log_path
        self._log = open(str(log_path), "wb")
        self.started = time.monotonic()
        self.client = subprocess.Popen(SSH + [host, remote_script(argv)], stdin=subprocess.DEVNULL,
                                       stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    @property
    def pid(self) -> int:
        found = wait_for(lambda: re.search(r"^%s (\d+)$" % PID_MARKER, self.output(), re.M)
                         or self.client.poll() is not None, 30, "the pid of the process on %s" % self.host)
        assert found is not True, "ssh %s ended before the command started:\n%s" % (self.host, self.output())
        return int(found.group(1))

    def wait(self, timeout: float) -> int:
        try:
            return self.client.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError("the process on %s still runs after %gs:\n%s"
                                 % (self.host, timeout, self.output())) from None

    def stop(self):
        """SIGTERM over ssh, as for a real remote host; the local ssh client then ends by itself."""
        pid = None
        try:
            if self.client.poll() is None:
                pid = self.pid
                on_host(self.host, ["kill", "-TERM", str(pid)], timeout=30)
                wait_for(lambda: pid_gone(pid), 10, "pid %d on %s to end" % (pid, self.host))
        finally:
            if pid is not None and not pid_gone(pid):  # shared pids: a last resort so nothing outlives the test
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            try:
                self.client.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.client.pid, signal.SIGKILL)
                self.client.wait(5)
            self._log.close()


def left_on_hosts() -> dict:
    """Live processes in the hosts' network namespaces but their sshd listeners: {pid: what}."""
    spaces = {"net:[%d]" % os.stat("/run/netns/%s" % h).st_ino: h for h in HOST_IPS}
    listeners = set()
    for h in HOST_IPS:
        try:
            listeners.add(int(Path("/run/sshd-%s.pid" % h).read_text()))
        except (OSError, ValueError):
            pass
    left = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) in listeners:
            continue
        try:
            host = spaces.get(os.readlink("/proc/%s/ns/net" % entry))
            if host and not pid_gone(int(entry)):
                with open("/proc/%s/cmdline" % entry, "rb") as f:
                    left[int(entry)] = "%s: %s" % (host, f.read().replace(b"\0", b" ").decode(errors="replace"))
        except OSError:
            continue
    return left


@pytest.fixture(autouse=True)
def nothing_left_on_the_hosts(netns_hosts):
    """After each test (and its other finalizers), only the sshds run on the hosts; what else
    is there is killed, so the next test starts clean, and reported."""
    yield
    try:
        wait_for(lambda: not left_on_hosts(), 15, "the hosts to run nothing but their sshd")
    except AssertionError:
        left = left_on_hosts()
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if left:
            raise AssertionError("left running on the hosts after the test: %s" % left) from None


@pytest.fixture
def remote(netns_hosts, profile):
    """Start processes on the hosts; all are stopped afterwards (before the profile's controller)."""
    started = []

    def start(host: str, argv, name: str) -> RemoteProc:
        proc = RemoteProc(host, argv, profile.tmp / ("%s-%s.out" % (name, host)))
        started.append(proc)
        return proc

    yield start
    problems = []
    for proc in started:
        try:
            proc.stop()
        except Exception as e:  # noqa: B902 - stop the others first, then report
            problems.append(e)
    if problems:
        raise problems[0]


def engine_argv(*args) -> list:
    return [sys.executable, "-m", "minipar.engine", "--engine.log_level=DEBUG", *args]


def copied(path: Path, to: Path) -> Path:
    """The file where a user would have scp'd it."""
    to.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(str(path), str(to))
    return to


def peers_on_port(port: int) -> set:
    """Addresses with an established TCP connection to this host's port (ss, root namespace)."""
    out = subprocess.run(["ss", "-Htn", "state", "established", "( sport = :%d )" % port],
                         capture_output=True, text=True, timeout=10).stdout
    return {line.split()[-1].rsplit(":", 1)[0] for line in out.splitlines() if line.strip()}


def where(rc) -> list:
    """Each engine's hostname and the address that name resolves to there. (Code, not a function
    of this module: the engines on other hosts cannot import the tests.)"""
    rc[:].execute("import socket\nhere = (socket.gethostname(), socket.gethostbyname(socket.gethostname()))",
                  block=True)
    return [tuple(h) for h in rc[:].pull("here", block=True)]


# ------------------------------------------------------------ engines on other hosts

def test_engines_on_two_hosts_join_a_controller_on_tbroot(profile, remote, tmp_path):
    profile.controller("--ip=*", "--location=%s" % ROOT_IP)
    engine_file = copied(profile.engine_file(), tmp_path / "scp" / "controller-engine.json")
    assert read_json(engine_file)["location"] == ROOT_IP
    engines = {host: remote(host, engine_argv("--file", engine_file), "engine") for host in HOST_IPS}
    rc = profile.client()
    rc.wait_for_engines(2, timeout=30)

    seen = dict(zip(rc.ids, where(rc)))
    assert sorted(seen.values()) == sorted(HOST_IPS.items())
    pids = dict(zip(rc.ids, rc[:].apply_sync(os.getppid)))
    assert {seen[i][0]: pid for i, pid in pids.items()} == {h: e.pid for h, e in engines.items()}
    assert rc.load_balanced_view().map_sync(pow, range(20), [2] * 20) == [i * i for i in range(20)]
    rc[:].scatter("part", list(range(10)), block=True)
    assert sum(rc[:].apply_sync(lambda: sum(part))) == 45  # noqa: F821 - the engines' namespace
    # the engines' connections to the controller come over the bridge, from their hosts' addresses
    assert set(HOST_IPS.values()) <= peers_on_port(read_json(engine_file)["ports"]["engine"])


@pytest.mark.skipif(not CAN_CAPTURE, reason="capturing packets needs root and AF_PACKET (Linux)")
@pytest.mark.parametrize("curve", ["auto", "false"])
def test_a_task_crosses_the_bridge_encrypted_by_default(profile, remote, tmp_path, curve):
    """Listening beyond loopback turns curve on: what an engine on tbh1 is sent and answers is
    not readable on the bridge between the hosts; with curve off it is (so the capture works)."""
    profile.controller("--ip=*", "--location=%s" % ROOT_IP, "--controller.curve=%s" % curve)
    engine_file = copied(profile.engine_file(), tmp_path / "scp" / "controller-engine.json")
    assert ("curve_serverkey" in read_json(engine_file)) == (curve == "auto")
    remote("tbh1", engine_argv("--file", engine_file), "engine")
    rc = profile.client()
    rc.wait_for_engines(1, timeout=30)
    with Capture(BRIDGE, read_json(engine_file)["ports"].values()) as captured:
        assert rc[0].apply_sync(lambda text: text[::-1], WIRE_SECRET) == WIRE_SECRET[::-1]
        assert rc.load_balanced_view().apply_sync(lambda text: text.upper(), WIRE_SECRET) == WIRE_SECRET.upper()
    assert captured.packets, "the capture saw the engine's traffic on %s" % BRIDGE
    for text in (WIRE_SECRET, WIRE_SECRET[::-1], WIRE_SECRET.upper()):
        assert (text.encode() in captured.data) == (curve == "false"), text


def test_engine_cannot_reach_a_loopback_controller_and_says_where_it_looked(profile, remote, tmp_path):
    profile.controller()  # listens on 127.0.0.1 only
    info = read_json(profile.engine_file())
    engine_file = copied(profile.engine_file(), tmp_path / "scp" / "controller-engine.json")
    engine = remote("tbh1", engine_argv("--file", engine_file, "--engine.registration_timeout=3"), "engine")
    code = engine.wait(30)
    took = time.monotonic() - engine.started
    assert code not in (0, 255), engine.output()  # 255: ssh itself failed
    assert ("no controller answered at tcp://127.0.0.1:%d within 3s (engine.registration_timeout)"
            % info["ports"]["engine"]) in engine.output()
    assert "use --ssh to tunnel" in engine.output()
    assert "Traceback" not in engine.output()
    assert took < 20, "the engine gave up only after %.1fs" % took


def test_engine_tunnels_to_a_loopback_controller_through_tbroot(profile, remote, tmp_path):
    profile.controller()
    engine_file = copied(profile.engine_file(), tmp_path / "scp" / "controller-engine.json")
    engine = remote("tbh1", engine_argv("--file", engine_file, "--ssh", ROOT_HOST), "engine")
    rc = profile.client()
    rc.wait_for_engines(1, timeout=30)
    assert where(rc) == [("tbh1", HOST_IPS["tbh1"])]
    assert rc[:].apply_sync(os.getppid) == [engine.pid]
    assert rc.load_balanced_view().map_sync(pow, range(5), [3] * 5) == [i ** 3 for i in range(5)]
    tunnel = int(re.search(r"tunnelling through %s \(ssh pid (\d+)\)" % ROOT_HOST, engine.output()).group(1))
    assert not pid_gone(tunnel)
    engine.stop()
    wait_for(lambda: pid_gone(tunnel), 10, "the engine's ssh tunnel (pid %d) to end with it" % tunnel)


# ------------------------------------------------------------ a client on another host

CLIENT_SCRIPT = """\
import json, socket, sys
import minipar
url_file, ssh = sys.argv[1], sys.argv[2] or None
result = {"client_host": socket.gethostname()}
if ssh:  # first without the tunnel: the controller's loopback is out of reach from here
    try:
        minipar.Client(url_file=url_file, timeout=2).close()
        result["direct"] = "connected"
    except TimeoutError as e:
        result["direct"] = str(e)
rc = minipar.Client(url_file=url_file, sshserver=ssh, timeout=20)
try:
    rc.wait_for_engines(1, timeout=30)
    result["engine_hosts"] = rc[:].apply_sync(socket.gethostname)
    result["cubes"] = rc.load_balanced_view().map_sync(pow, range(6), [3] * 6)
    result["tunnel"] = rc._tunnel.pid if rc._tunnel is not None else None
finally:
    rc.close()
print("RESULT " + json.dumps(result))
"""


@pytest.mark.parametrize("controller_args, sshserver, tunnel", [
    (["--ip=*", "--location=%s" % ROOT_IP], "", False),
    ([], ROOT_HOST, True),
    (["--ssh", ROOT_HOST], "", True),
], ids=["direct", "sshserver-argument", "ssh-in-the-client-file"])
def test_client_on_tbh1_uses_a_controller_on_tbroot(profile, netns_hosts, tmp_path, controller_args, sshserver,
                                                    tunnel):
    profile.controller(*controller_args)
    profile.engine()
    client_file = copied(profile.client_file(), tmp_path / "scp" / "controller-client.json")
    script = tmp_path / "client_on_tbh1.py"
    script.write_text(CLIENT_SCRIPT)
    run = on_host("tbh1", [sys.executable, script, client_file, sshserver])
    said = re.search(r"^RESULT (.*)$", run.stdout, re.M)
    assert run.returncode == 0 and said, run.stdout + run.stderr
    result = json.loads(said.group(1))
    assert result["client_host"] == "tbh1"
    assert result["engine_hosts"] == [socket.gethostname()]
    assert result["cubes"] == [i ** 3 for i in range(6)]
    assert (result["tunnel"] is not None) == tunnel
    if sshserver:
        port = read_json(client_file)["ports"]["client"]
        assert result["direct"].startswith("no controller answered at tcp://127.0.0.1:%d within 2s" % port)
    if tunnel:
        wait_for(lambda: pid_gone(result["tunnel"]), 10, "the client's ssh tunnel to end")


# ------------------------------------------------------------ the Cluster API

def state_engines(state_file: Path) -> dict:
    state = json.loads(state_file.read_text())
    return {p["pid"]: p["host"] for s in state["engines"].values() for p in s["processes"]}


def pids_in(value) -> list:
    """Every process a state file records (controller, engines, ssh clients, mpiexec), not its owner."""
    if isinstance(value, dict):
        return [v for k, v in value.items() if k in ("pid", "client_pid") and isinstance(v, int)] + [
            p for v in value.values() for p in pids_in(v)]
    if isinstance(value, list):
        return [p for v in value for p in pids_in(v)]
    return []


def cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "minipar.cluster", *args], stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=120)


def toml_lines(section: str, values: dict) -> list:
    return ["[%s]" % section] + ["%s = %s" % (k, json.dumps(v)) for k, v in values.items()]


class ClusterProfile:
    """A profile whose cluster runs its controller here, on all interfaces, and its engines on the hosts."""

    def __init__(self, root: Path):
        self.dir = root / "profile_default"
        self.dir.mkdir(parents=True)
        self.clusters: list = []

    def configure(self, engines: str, **sections):
        cluster = {"engines": engines, "controller_ip": "*", "controller_location": ROOT_IP,
                   "controller_args": ["--controller.heartbeat_period=0.2"]}
        lines = toml_lines("cluster", dict(cluster, **sections.pop("cluster", {})))
        for name, values in sections.items():
            lines += toml_lines("launcher." + name.replace("_", "."), values)
        (self.dir / "minipar.toml").write_text("\n".join(lines) + "\n")

    def configure_ssh(self, engines: dict, **ssh):
        self.configure("ssh", ssh=dict({"remote_python": sys.executable}, **ssh), ssh_engines=engines)

    def cluster(self, cluster_id: str) -> minipar.Cluster:
        c = minipar.Cluster(profile_dir=str(self.dir), cluster_id=cluster_id, shutdown_atexit=False)
        self.clusters.append(c)
        return c

    def clean_up(self):
        for c in self.clusters:
            c.stop_cluster_sync()
            if c.state_file.exists():
                cli("stop", "--profile-dir", str(self.dir), "--cluster-id", c.cluster_id)


@pytest.fixture
def hosts_cluster(netns_hosts, tmp_path, monkeypatch):
    monkeypatch.setenv("MINIPAR_DIR", str(tmp_path / "mp"))
    p = ClusterProfile(tmp_path / "mp")
    yield p
    p.clean_up()


def run_and_stop_from_the_cli(p: ClusterProfile, cluster_id: str, hosts: list, pids_in_state: bool = True):
    """Start the cluster, check where its engines run and that they work, then stop it with
    ``python -m minipar.cluster stop`` from a new process and see every process end."""
    cluster = p.cluster(cluster_id)
    rc = cluster.start_and_connect_sync(timeout=60)
    try:
        engines = dict(zip(rc[:].apply_sync(os.getppid), rc[:].apply_sync(socket.gethostname)))  # nanny pids
        children = rc[:].apply_sync(os.getpid)
        if pids_in_state:
            assert engines == state_engines(cluster.state_file)
        assert sorted(engines.values()) == sorted(hosts)
        assert rc.load_balanced_view().map_sync(pow, range(10), [2] * 10) == [i * i for i in range(10)]
    finally:
        rc.close()
    assert read_json(p.dir / "security" / ("controller-%s-engine.json" % cluster_id))["location"] == ROOT_IP
    recorded = pids_in(json.loads(cluster.state_file.read_text()))
    assert cluster.controller.processes[0].pid in recorded
    stopped = cli("stop", "--profile-dir", str(p.dir), "--cluster-id", cluster_id)
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert "stopped cluster %r" % cluster_id in stopped.stdout
    for pid in list(engines) + children + recorded:
        wait_for(lambda: pid_gone(pid), 10, "pid %d to be gone" % pid)
    listing = cli("list", "--profile-dir", str(p.dir))
    assert listing.returncode == 0, listing.stderr
    assert [row.split()[1] for row in listing.stdout.splitlines()[1:] if not row.startswith("removed ")] == []


def test_cluster_starts_ssh_engines_on_another_host_and_cli_stop_ends_them(hosts_cluster):
    hosts_cluster.configure_ssh({"tbh2": 2})
    run_and_stop_from_the_cli(hosts_cluster, "mh1", ["tbh2", "tbh2"])


def test_a_cluster_stopped_from_another_process_is_not_recorded_again_by_its_owner(hosts_cluster):
    hosts_cluster.configure_ssh({"tbh2": 1})
    cluster = hosts_cluster.cluster("mh3")
    cluster.start_and_connect_sync(timeout=60).close()
    # the watcher looks only after the stop here; in real life it looks whenever its 0.5 s come round
    cluster._watch_stop.set()
    cluster._watcher.join(10)
    assert not cluster._watcher.is_alive()
    recorded = pids_in(json.loads(cluster.state_file.read_text()))
    stopped = cli("stop", "--profile-dir", str(hosts_cluster.dir), "--cluster-id", "mh3")
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    for pid in recorded:
        wait_for(lambda: pid_gone(pid), 10, "pid %d to be gone" % pid)
    assert not cluster.state_file.exists()
    assert cluster.check_processes()  # the controller, a child of this process, is seen to have ended
    assert not cluster.state_file.exists()


BOTH_COPIES_FIRST = """\
#!/bin/sh
# scp, once both hosts' copies have begun (at most 20 s): they overlap, as they do when the
# launcher prepares its hosts in parallel
touch "%(dir)s/copy.$$"
i=0
while [ "$(ls "%(dir)s" | grep -c '^copy[.]')" -lt 2 ] && [ $i -lt 200 ]; do sleep 0.1; i=$((i + 1)); done
exec scp "$@"
"""


def test_cluster_starts_ssh_engines_on_two_hosts_sharing_files_and_cli_stop_ends_them(hosts_cluster, tmp_path):
    barrier = tmp_path / "copies"
    barrier.mkdir()
    scp = tmp_path / "scp-when-both-copy"
    scp.write_text(BOTH_COPIES_FIRST % {"dir": barrier})
    scp.chmod(0o755)
    hosts_cluster.configure_ssh({"tbh1": 1, "tbh2": 1}, scp_command=[str(scp)])
    run_and_stop_from_the_cli(hosts_cluster, "mh2", ["tbh1", "tbh2"])


# ------------------------------------------------------------ MPI across hosts

def test_open_mpi_engines_span_two_hosts(hosts_cluster, mpi, monkeypatch):
    for key, value in read_env("openmpi.env").items():
        monkeypatch.setenv(key, value)
    hosts_cluster.configure("mpi", cluster={"n": 2}, mpi={
        "mpi_command": ["mpiexec.openmpi"],
        # ranks on other hosts get only what -x passes; mpiexec and its orteds talk over the bridge;
        # its ssh must fail, not ask, if a host cannot be logged in to
        "mpi_args": ["--host", "tbh1,tbh2", "-x", "PYTHONPATH", "--mca", "oob_tcp_if_include", NET,
                     "--mca", "btl_tcp_if_include", NET,
                     "--mca", "plm_rsh_args", "-o BatchMode=yes -o ConnectTimeout=10"]})
    run_and_stop_from_the_cli(hosts_cluster, "mpi", ["tbh1", "tbh2"], pids_in_state=False)


# ------------------------------------------------------------ ssh: where the files go

def test_ssh_engine_with_its_own_profile_dir_gets_the_file_there_on_another_host(hosts_cluster, tmp_path):
    away = tmp_path / "different" / "location"
    remote = tmp_path / "remote"
    hosts_cluster.configure_ssh({"tbh1": 1, "tbh2": [1, ["--profile-dir=%s" % away]]}, remote_profile_dir=str(remote))
    run_and_stop_from_the_cli(hosts_cluster, "mh4", ["tbh1", "tbh2"])
    name = "controller-mh4-engine.json"
    assert json.loads((away / "security" / name).read_text())["location"] == ROOT_IP
    assert json.loads((remote / "security" / name).read_text())["location"] == ROOT_IP


def test_empty_to_send_and_to_fetch_copy_nothing_to_hosts_sharing_the_files(hosts_cluster, tmp_path):
    refuse = tmp_path / "scp-must-not-run"
    refuse.write_text("#!/bin/sh\necho scp was run: \"$@\" >&2\nexit 1\n")
    refuse.chmod(0o755)
    hosts_cluster.configure_ssh({"tbh1": 1, "tbh2": 1}, to_send=[], to_fetch=[], scp_command=[str(refuse)])
    run_and_stop_from_the_cli(hosts_cluster, "mh5", ["tbh1", "tbh2"])
