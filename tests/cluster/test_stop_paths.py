"""Every way of stopping a cluster leaves nothing behind: no process (checked by pid), no pid
file, no state file, no connection file, no curve key."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

import minipar
from helpers import TEST_PYTHONPATH, pid_gone, wait_for, with_children


def cli(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "minipar.cluster", *args], capture_output=True, text=True,
                          timeout=timeout)


def cluster_pids(security) -> list:
    state = json.loads((security / "cluster-.json").read_text())
    return with_children([state["controller"]["processes"][0]["pid"]] + [
        p["pid"] for s in state["engines"].values() for p in s["processes"]])


def nothing_left(profile_dir, pids):
    for pid in pids:
        wait_for(lambda: pid_gone(pid), 15, "pid %d to be gone" % pid)
    security = profile_dir / "security"
    left = lambda: sorted(p.name for p in security.iterdir())  # noqa: E731
    wait_for(lambda: not left(), 10, "security/ to be empty")
    assert not list((profile_dir / "pid").iterdir())


@pytest.fixture
def profile_dir(tmp_path, monkeypatch):
    root = tmp_path / "mp"
    monkeypatch.setenv("MINIPAR_DIR", str(root))
    monkeypatch.setenv("PYTHONPATH", TEST_PYTHONPATH)
    pdir = root / "profile_default"
    pdir.mkdir(parents=True)
    (pdir / "minipar.toml").write_text('[controller]\ncurve = "true"\n')
    return pdir


def daemonized(profile_dir):
    started = cli("start", "-n", "2", "--daemonize")
    assert started.returncode == 0, started.stderr
    security = profile_dir / "security"
    assert (security / "controller-curve.key").exists()
    return cluster_pids(security)


def test_rc_shutdown_hub(profile_dir):
    pids = daemonized(profile_dir)
    with minipar.Client(profile="default") as rc:
        rc.wait_for_engines(2, timeout=30)
        rc.shutdown(hub=True)
    nothing_left(profile_dir, pids)


def test_sigterm_to_the_controller(profile_dir):
    pids = daemonized(profile_dir)
    os.kill(pids[0], signal.SIGTERM)
    nothing_left(profile_dir, pids)


def test_cluster_stop_from_another_shell(profile_dir):
    pids = daemonized(profile_dir)
    stopped = cli("stop")
    assert stopped.returncode == 0, stopped.stderr
    nothing_left(profile_dir, pids)


def test_ctrl_c_on_cluster_start(profile_dir):
    proc = subprocess.Popen([sys.executable, "-m", "minipar.cluster", "start", "-n", "2"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    security = profile_dir / "security"
    wait_for(lambda: (security / "cluster-.json").exists()
             and len(json.loads((security / "cluster-.json").read_text())["engines"]) > 0, 60, "the state file")
    with minipar.Client(profile="default") as rc:
        rc.wait_for_engines(2, timeout=30)
    pids = cluster_pids(security) + [proc.pid]
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    nothing_left(profile_dir, pids)


def test_the_context_manager_left_on_an_exception(profile_dir):
    cluster = minipar.Cluster(n=2)
    with pytest.raises(ZeroDivisionError):
        with cluster as rc:
            rc.wait_for_engines(2, timeout=30)
            pids = with_children([p.pid for p in cluster.engine_processes] + [p.pid for p in cluster.controller.processes])
            1 / 0
    nothing_left(profile_dir, pids)
