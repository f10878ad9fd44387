"""``python -m minipar.controller``: files, flags, configuration and stopping."""
from __future__ import annotations

import os
import signal
import socket
import stat

import pytest

import minipar
from helpers import pid_gone, read_json, wait_for


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_writes_connection_files_pid_and_log(profile):
    ctl = profile.controller()
    client = read_json(profile.client_file())
    engine = read_json(profile.engine_file())
    assert mode(profile.client_file()) == 0o600
    assert mode(profile.engine_file()) == 0o600
    assert mode(profile.dir / "security") == 0o700
    assert client["key"] == engine["key"] and len(client["key"]) >= 32
    assert client["location"] == "127.0.0.1" and client["ip"] == "127.0.0.1"
    assert set(client["ports"]) == {"client", "engine", "notification", "hb_ping", "hb_pong"}
    assert len(set(client["ports"].values())) == 5
    assert client["signature_scheme"] == "hmac-sha256"
    pid_file = profile.dir / "pid" / "controller.pid"
    assert int(pid_file.read_text()) == ctl.pid
    log = (profile.dir / "log" / "controller.log").read_text()
    assert "writing connection info to %s" % profile.client_file() in log
    assert "writing connection info to %s" % profile.engine_file() in log
    assert "Creating pid file: %s" % pid_file in log
    assert client["key"] not in log and client["key"] not in ctl.output()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_stops_cleanly_on_signals(profile, sig):
    ctl = profile.controller()
    ctl.signal(sig)
    assert ctl.wait() == 0
    assert not (profile.dir / "pid" / "controller.pid").exists()
    assert "controller stopped" in ctl.output()


def test_stops_on_shutdown_request_and_takes_engines_along(profile):
    ctl = profile.controller()
    eng = profile.engine()
    rc = profile.client()
    rc.wait_for_engines(1, timeout=20)
    rc.shutdown(hub=True)
    assert ctl.wait() == 0
    assert eng.wait() == 0
    assert not (profile.dir / "pid" / "controller.pid").exists()


def test_cluster_id_names_the_files(profile):
    profile.controller(cluster_id="abc")
    assert profile.client_file("abc").exists() and profile.engine_file("abc").exists()
    assert (profile.dir / "pid" / "controller-abc.pid").exists()
    assert (profile.dir / "log" / "controller-abc.log").exists()
    assert read_json(profile.client_file("abc"))["cluster_id"] == "abc"
    profile.engine("--cluster-id", "abc")
    rc = profile.client(cluster_id="abc")
    rc.wait_for_engines(1, timeout=20)
    assert rc[0].apply_sync(sum, [1, 2]) == 3
    with minipar.Client(profile_dir=str(profile.dir), cluster_id="abc") as rc2:
        assert rc2.ids == [0]


def test_second_controller_for_same_profile_is_refused(profile):
    first = profile.controller()
    second = profile.controller(wait=False)
    assert second.wait() == 1
    assert "already running (pid %d" % first.pid in second.output()


def test_all_interfaces_location_and_ssh_fields(profile):
    profile.controller("--ip=*", "--ssh=me@login.example", "--enginessh=me@gateway.example")
    client = read_json(profile.client_file())
    engine = read_json(profile.engine_file())
    assert client["ip"] == "*"
    assert client["location"] == socket.gethostname()
    assert client["ssh"] == "me@login.example"
    assert engine["ssh"] == "me@gateway.example"


def test_location_flag(profile):
    profile.controller("--location=10.0.1.5")
    assert read_json(profile.client_file())["location"] == "10.0.1.5"


def free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def test_ports_from_the_profile_file(profile):
    ports = free_ports(5)
    profile.dir.mkdir(parents=True)
    (profile.dir / "minipar.toml").write_text("[controller]\nports = %s\n" % ports)
    profile.controller()
    info = read_json(profile.client_file())
    assert [info["ports"][n] for n in ("client", "engine", "notification", "hb_ping", "hb_pong")] == ports


def test_port_range(profile):
    low = free_ports(1)[0]
    low = min(low, 60000)
    profile.controller("--controller.port_range=%d-%d" % (low, low + 40))
    ports = read_json(profile.client_file())["ports"].values()
    assert all(low <= p <= low + 40 for p in ports)


def test_port_in_use_is_a_clear_error(profile):
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    taken = busy.getsockname()[1]
    ports = free_ports(4)
    ctl = profile.controller("--controller.ports=[%d,%s]" % (taken, ",".join(map(str, ports))), wait=False)
    assert ctl.wait() == 1
    assert "cannot bind the client port tcp://127.0.0.1:%d" % taken in ctl.output()
    assert "Traceback" not in ctl.output()
    busy.close()


def test_profile_file_configures_and_flags_win(profile):
    profile.dir.mkdir(parents=True)
    (profile.dir / "minipar.toml").write_text('[controller]\nlocation = "from-file.example"\nssh_server = "f"\n')
    profile.controller("--ssh=from-flag")
    info = read_json(profile.client_file())
    assert info["location"] == "from-file.example"
    assert info["ssh"] == "from-flag"


@pytest.mark.parametrize("toml, message", [
    ("[controller]\nhearbeat_period = 1\n", "controller.hearbeat_period: unknown setting; did you mean "
                                            "'controller.heartbeat_period'?"),
    ("[controler]\nip = '*'\n", "did you mean 'controller'"),
    ("[controller]\nheartbeat_period = 'fast'\n", "controller.heartbeat_period: expected a number, got string"),
    ("[controller\n", "line 1"),
])
def test_bad_profile_file_is_a_clean_error(profile, toml, message):
    profile.dir.mkdir(parents=True)
    (profile.dir / "minipar.toml").write_text(toml)
    ctl = profile.controller(wait=False)
    assert ctl.wait() == 2
    out = ctl.output()
    assert str(profile.dir / "minipar.toml") in out
    assert message in out
    assert "Traceback" not in out


def test_bad_flag_value_is_a_clean_error(profile):
    ctl = profile.controller("--db=nosuchdb", wait=False)
    assert ctl.wait() == 1
    assert "controller.db: unknown backend 'nosuchdb'" in ctl.output()
    assert "Traceback" not in ctl.output()


def test_nodb_still_runs_tasks(profile):
    ctl = profile.controller("--nodb")
    profile.engine()
    rc = profile.client()
    rc.wait_for_engines(1, timeout=20)
    assert rc.load_balanced_view().map_sync(abs, [-1, -2, -3]) == [1, 2, 3]
    assert "Hub using DB backend: NoDB" in ctl.output()


def test_generic_override_for_engine_section(profile, tmp_path):
    profile.controller()
    workdir = tmp_path / "scratch"
    workdir.mkdir()
    profile.engine("--engine.work_dir=%s" % workdir)
    rc = profile.client()
    rc.wait_for_engines(1, timeout=20)
    assert rc[0].apply_sync(os.getcwd) == str(workdir)


def test_controller_gone_means_pid_gone(profile):
    ctl = profile.controller()
    ctl.signal(signal.SIGTERM)
    ctl.wait()
    wait_for(lambda: pid_gone(ctl.pid), 5, "controller pid gone")


def test_thousands_of_connections_at_once_wait_in_the_backlog_not_in_syn_retries(profile):
    """A big allocation starts thousands of engines at once. With ZeroMQ's default backlog of
    100 the kernel drops the SYNs past it and those engines retry only after 1, 3, 7 s...
    While the controller is stopped nothing accepts, so the kernel alone completes handshakes,
    as many as the backlog holds."""
    ctl = profile.controller()
    port = read_json(profile.engine_file())["ports"]["engine"]
    import resource
    wanted = min(1000, int(open("/proc/sys/net/core/somaxconn").read()) - 1,
                 resource.getrlimit(resource.RLIMIT_NOFILE)[0] - 200)
    peers = []
    ctl.signal(signal.SIGSTOP)
    try:
        for _ in range(wanted):
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", port))
            peers.append(s)

        def established():
            return sum(1 for s in peers if _connected(s))
        wait_for(lambda: established() == wanted, 10, "%d handshakes completed by the kernel" % wanted)
    finally:
        ctl.signal(signal.SIGCONT)
        for s in peers:
            s.close()
    assert ctl.popen.poll() is None


def _connected(s) -> bool:
    try:
        s.getpeername()
        return True
    except OSError:
        return False
