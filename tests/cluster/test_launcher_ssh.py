"""The ssh, sshproxy and ssh-controller launchers against the real sshd on localhost.

This machine shares pids with its "remote" host, so a remote pid could be killed locally by
mistake and still look stopped. The tests guard against that: ssh and scp run through
wrappers that log every command, stop is checked in that log (``kill -s TERM <pids>``),
remote processes are checked to run under sshd, and one test kills the local ssh clients
first and stops the cluster from a fresh process that has only the state file.
"""
from __future__ import annotations

import os
import re
import signal
import socket
import sys
from pathlib import Path

import pytest

import minipar
from fixtures.ssh_bed import cmdline, run_cli, state_processes
from helpers import assert_all_gone, pid_gone, wait_for
from minipar.error import LauncherError
from minipar.cluster.launchers.ssh import SSHEngineSetLauncher, same_file
from minipar.config import ConfigError


def parent(pid: int) -> int:
    with open("/proc/%d/stat" % pid) as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])


def command_name(pid: int) -> str:
    with open("/proc/%d/comm" % pid) as f:
        return f.read().strip()


def started_by_sshd(pid: int) -> bool:
    """Whether sshd is among the process's nearest ancestors: it came through an ssh login."""
    for _ in range(3):
        pid = parent(pid)
        if pid <= 1:
            return False
        if command_name(pid) == "sshd":
            return True
    return False


SLEEP = "import time\nprint('sleeping', flush=True)\ntime.sleep(60)"
"""Code, not a function of this module: remote engines do not import the tests."""


# --------------------------------------------------------------------------- no sshd needed


def interrupt_both_engines(cluster, rc):
    """SIGINT through the cluster interrupts a sleeping task on both engines."""
    ar = rc[:].execute(SLEEP, block=False)
    wait_for(lambda: ar.stdout == ["sleeping\n", "sleeping\n"], 20, "both tasks to start")
    cluster.signal_engines_sync(signal.SIGINT)
    with pytest.raises(minipar.CompositeError) as info:
        ar.get(15)
    assert [e.ename for e in info.value.elist] == ["KeyboardInterrupt", "KeyboardInterrupt"]


def test_empty_or_bad_engines_map_is_a_clear_config_error(mpdir):
    cluster = minipar.Cluster(engines="ssh", n=3)
    try:
        with pytest.raises(ConfigError) as info:
            cluster.start_engines_sync()
    finally:
        cluster.stop_cluster_sync()
    message = str(info.value)
    assert "[launcher.ssh] engines names no hosts" in message
    assert '[launcher.ssh.engines]\n"host1" = 2' in message
    for engines, problem in (({"h": -1}, 'launcher.ssh.engines."h": the number of engines must be an integer'),
                             ({"h": {"m": 1}}, 'launcher.ssh.engines."h": unknown key(s) m'),
                             ({"h": {"n": 1, "engine_args": "x"}}, "engine_args: must be a list of strings"),
                             ("host1", "must be a table")):
        with pytest.raises(ConfigError) as info:
            SSHEngineSetLauncher(mpdir, settings={"engines": engines})
        assert problem in str(info.value)


def test_the_engine_count_comes_from_the_map():
    launcher = SSHEngineSetLauncher("/p", n=7, settings={"engines": {"a": 2, "b": [1, ["--x"]], "c": {"n": 3},
                                                                     "d": 0}})
    assert launcher.n == 6
    assert [(h.host, h.n, h.args) for h in launcher.hosts] == [("a", 2, None), ("b", 1, ["--x"]), ("c", 3, None)]


def test_same_file_is_detected_only_on_this_machine(tmp_path):
    f = tmp_path / "f.json"
    f.write_text("{}")
    for host in ("localhost", "127.0.0.1", socket.gethostname(), "%s@localhost" % os.environ.get("USER", "root")):
        assert same_file(host, str(f), f), host
    assert not same_file("localhost", str(tmp_path / "other.json"), f)
    assert not same_file("elsewhere.example", str(f), f)
    home_file = Path.home() / (".minipar-same-file-test-%d" % os.getpid())
    assert same_file("localhost", home_file.name, home_file)


def test_foreground_engines_cli_errors(mpdir):
    out = run_cli("engines", "--foreground", "-n", "2", "--profile-dir", str(mpdir / "elsewhere"))
    assert out.returncode == 1 and "no engine connection file" in out.stderr and "Traceback" not in out.stderr
    out = run_cli("engines", "-n", "1")
    assert out.returncode == 1 and "no cluster with id ''" in out.stderr and "--foreground" in out.stderr


# ------------------------------------------------------------------------------ with sshd

def test_ssh_engines_do_real_work_and_stop_over_ssh(ssh_bed):
    extra = ssh_bed.tmp / "data.txt"
    extra.write_text("payload")
    remote_extra = ssh_bed.remote_dir / "inputs" / "data.txt"
    own_cmd = [sys.executable, "-X", "utf8", "-m", "minipar.engine"]
    ssh_bed.configure({"localhost": 1,
                   "127.0.0.1": {"n": 1, "engine_args": ["--startup-command=marker = 'own'"], "engine_cmd": own_cmd}},
                  cluster={"engine_args": ["--startup-command=marker = 'shared'"]},
                  # an explicit list replaces the default, so it names the connection file too
                  to_send=[[str(extra), str(remote_extra)],
                           [str(ssh_bed.profile_dir / "security" / "controller-w1-engine.json"),
                            str(ssh_bed.remote_dir / "security" / "controller-w1-engine.json")]])
    cluster = ssh_bed.cluster(n=5, cluster_id="w1")
    with cluster as rc:
        assert sum(s.n for s in cluster.engine_sets.values()) == 2
        pids = rc[:].apply_sync(os.getppid)  # the launched processes (each engine's nanny)
        markers = dict(zip(pids, rc[:].pull("marker", block=True)))
        recorded = {p["pid"]: p for p in state_processes(cluster)}
        assert sorted(recorded) == sorted(pids)
        by_host = {p["host"]: pid for pid, p in recorded.items()}
        assert set(by_host) == {"localhost", "127.0.0.1"}
        assert markers[by_host["localhost"]] == "shared" and markers[by_host["127.0.0.1"]] == "own"
        assert cmdline(by_host["127.0.0.1"])[:len(own_cmd)] == own_cmd
        assert "-X" not in cmdline(by_host["localhost"])
        for pid, p in recorded.items():
            assert p["client_pid"] != pid and command_name(p["client_pid"]) == "ssh"
            assert started_by_sshd(pid)
            args = cmdline(pid)
            assert args[args.index("--profile-dir") + 1] == str(ssh_bed.remote_dir)
            assert "minipar-remote-pid %d" % pid in Path(p["log_file"]).read_text()
        assert sorted(Path(p["log_file"]).name for p in recorded.values()) == [
            "engine-%s-%s.log" % (cluster.cluster_id, tag) for tag in ("127.0.0.1-1", "localhost-0")]
        local_file = ssh_bed.profile_dir / "security" / ("controller-%s-engine.json" % cluster.cluster_id)
        remote_file = ssh_bed.remote_dir / "security" / local_file.name
        assert remote_file.read_bytes() == local_file.read_bytes()
        assert (remote_file.parent.stat().st_mode & 0o777) == 0o700
        assert remote_extra.read_text() == "payload"
        assert "localhost:%s" % remote_file in ssh_bed.scp_commands()
    assert_all_gone(pids)
    for host, pid in by_host.items():
        assert any("kill -s TERM %d " % pid in command for command in ssh_bed.sent_to(host)), ssh_bed.sent_to(host)


def test_cli_daemonized_ssh_engines_stopped_from_a_fresh_process(ssh_bed):
    ssh_bed.configure({"localhost": 2})
    out = run_cli("start", "--daemonize")
    assert out.returncode == 0, out.stderr
    assert "running: 2 engines" in out.stdout
    state_file = ssh_bed.profile_dir / "security" / "cluster-.json"
    engines = state_processes(state_file)
    pids = [p["pid"] for p in engines]
    controller = state_processes(state_file, "controller")[0]["pid"]
    # the local ssh clients go first: nothing here leads to the engines but ssh and the state file
    for p in engines:
        os.killpg(p["client_pid"], signal.SIGKILL)
    assert_all_gone([p["client_pid"] for p in engines])
    assert not any(pid_gone(pid) for pid in pids), "the remote engines died with their ssh clients"
    listing = run_cli("list").stdout.splitlines()
    assert listing[1].split()[3:5] == ["2/2", "local/ssh"], listing
    before = ssh_bed.ssh_commands()
    stopped = run_cli("stop")
    assert stopped.returncode == 0, stopped.stderr
    assert_all_gone(pids + [controller])
    assert "kill -s TERM %s" % " ".join(map(str, pids)) in ssh_bed.ssh_commands()[len(before):]
    assert not state_file.exists()


def test_no_self_copy_and_signals_over_ssh(ssh_bed):
    shared = ssh_bed.tmp / "shared.txt"
    shared.write_text("do not truncate me")
    ssh_bed.configure({"localhost": 2}, remote_profile_dir="", to_send=[[str(shared), str(shared)]])
    cluster = ssh_bed.cluster()
    cluster.start_controller_sync()
    engine_file = ssh_bed.profile_dir / "security" / ("controller-%s-engine.json" % cluster.cluster_id)
    content, mtime = engine_file.read_bytes(), engine_file.stat().st_mtime_ns
    cluster.start_engines_sync()
    rc = cluster.wait_for_engines_sync(2, timeout=30)
    assert engine_file.read_bytes() == content and engine_file.stat().st_mtime_ns == mtime
    assert shared.read_text() == "do not truncate me"
    assert ssh_bed.scp_commands() == ""
    pids = [p["pid"] for p in state_processes(cluster)]
    assert sorted(rc[:].apply_sync(os.getppid)) == sorted(pids)

    interrupt_both_engines(cluster, rc)
    assert "kill -s INT %s" % " ".join(map(str, pids)) in ssh_bed.ssh_commands()
    assert rc[:].apply_sync(sum, [1, 1]) == [2, 2]
    cluster.stop_cluster_sync()
    assert_all_gone(pids)


def test_ssh_controller_and_ssh_engines(ssh_bed):
    fetched = ssh_bed.tmp / "fetched" / "controller.log"
    ssh_bed.configure({"localhost": 2}, cluster={"controller": "ssh"}, controller_host="localhost",
                  to_fetch=[[str(ssh_bed.remote_dir / "log" / "controller-c1.log"), str(fetched)]] + [
                      [str(ssh_bed.remote_dir / "security" / name), str(ssh_bed.profile_dir / "security" / name)]
                      for name in ("controller-c1-client.json", "controller-c1-engine.json")])
    cluster = ssh_bed.cluster(cluster_id="c1")
    with cluster as rc:
        controller = state_processes(cluster, "controller")[0]
        pid = controller["pid"]
        assert controller["host"] == "localhost" and started_by_sshd(pid)
        args = cmdline(pid)
        assert "--ip=*" in args and "--location=localhost" in args
        assert args[args.index("--profile-dir") + 1] == str(ssh_bed.remote_dir)
        for role in ("client", "engine"):
            name = "controller-c1-%s.json" % role
            local = ssh_bed.profile_dir / "security" / name
            assert local.read_bytes() == (ssh_bed.remote_dir / "security" / name).read_bytes()
            assert local.stat().st_mode & 0o777 == 0o600
        assert "Controller ready" in fetched.read_text()
        assert sum(rc[:].apply_sync(pow, 2, 3)) == 16
        engine_pids = [p["pid"] for p in state_processes(cluster)]
        found = minipar.Cluster.from_file(cluster_id="c1")
        assert found.controller.processes[0].popen is None and found.controller_running
    assert_all_gone(engine_pids + [pid])
    wait_for(lambda: not found.controller_running, 10, "another process to see the controller gone")
    assert "kill -s TERM %d" % pid in ssh_bed.ssh_commands()
    assert not list((ssh_bed.remote_dir / "security").glob("controller-c1-*.json"))
    assert not cluster.state_file.exists()


def test_ssh_controller_that_exits_at_once_fails_with_its_output(ssh_bed):
    ssh_bed.configure({"localhost": 1}, cluster={"controller": "ssh", "controller_args": ["--controller.nosuchkey=1"]},
                  controller_host="localhost")
    cluster = ssh_bed.cluster(cluster_id="c2")
    with pytest.raises(LauncherError) as info:
        cluster.start_and_connect_sync()
    message = str(info.value)
    assert "the controller on host 'localhost'" in message and "exited before writing its connection files" in message
    assert "controller.nosuchkey: unknown setting" in message
    wait_for(lambda: not ssh_bed.leftovers(), 10, "every process of this test to end")
    assert not cluster.state_file.exists()


def test_sshproxy_starts_engines_through_cluster_engines_on_the_host(ssh_bed):
    ssh_bed.configure({"localhost": 2}, cluster={"engines": "sshproxy",
                                             "engine_args": ["--startup-command=marker = 'via proxy'"]})
    cluster = ssh_bed.cluster(cluster_id="px")
    with cluster as rc:
        assert rc[:].pull("marker", block=True) == ["via proxy", "via proxy"]
        proxy = state_processes(cluster)[0]
        assert len(state_processes(cluster)) == 1 and proxy["host"] == "localhost"
        assert started_by_sshd(proxy["pid"])
        assert cmdline(proxy["pid"])[1:6] == ["-m", "minipar.cluster", "engines", "--foreground", "-n"]
        engine_pids = rc[:].apply_sync(os.getppid)  # the launched processes (each engine's nanny)
        assert len(set(engine_pids)) == 2 and {parent(p) for p in engine_pids} == {proxy["pid"]}
        assert [s.engines_running() for s in cluster.engine_sets.values()] == [2]
        interrupt_both_engines(cluster, rc)
    assert_all_gone(engine_pids + [proxy["pid"]])
    assert "kill -s TERM %d" % proxy["pid"] in ssh_bed.ssh_commands()
    assert "stopped 2 engine(s)" in Path(proxy["log_file"]).read_text()


@pytest.mark.parametrize("engines, ssh, host, says", [
    ({"nosuchhost.invalid": 1}, None, "nosuchhost.invalid", "Could not resolve hostname nosuchhost.invalid"),
    ({"localhost": 2}, ["ssh", "-p", "1"], "localhost", "port 1: Connection refused"),
    ({"localhost": 2, "nosuchhost.invalid": 1}, None, "nosuchhost.invalid", "Could not resolve hostname"),
], ids=["unknown-host", "closed-port", "one-bad-host-of-two"])
def test_unreachable_host_fails_clearly_and_leaves_nothing(ssh_bed, engines, ssh, host, says):
    ssh_bed.configure(engines, **({"ssh_command": ssh} if ssh else {}))
    cluster = ssh_bed.cluster(cluster_id="bad")
    with pytest.raises(LauncherError) as info:
        cluster.start_and_connect_sync()
    message = str(info.value)
    assert "cannot start engines over ssh: cannot create the directories" in message
    assert "on host %r" % host in message and says in message
    assert "ssh -p 1 -o BatchMode=yes" in message if ssh else "ssh -o BatchMode=yes" in message
    assert "ended with exit code 255 (ssh could not connect or log in)" in message
    started = [int(m) for f in (ssh_bed.profile_dir / "log").glob("engine-bad-localhost-*.log")
               for m in re.findall(r"minipar-remote-pid (\d+)", f.read_text())]
    if len(engines) == 2:
        assert len(started) == 2, "the reachable host's engines should have started (and then stopped)"
        assert "kill -s TERM" in ssh_bed.ssh_commands()
    assert_all_gone(started)
    wait_for(lambda: not ssh_bed.leftovers(), 10, "every process of this test to end")
    assert cluster.controller is None and not cluster.state_file.exists()
