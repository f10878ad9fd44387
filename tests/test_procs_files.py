"""Connection files go away with a controller that stops cleanly, unless it runs with --reuse."""
from __future__ import annotations

import json
import signal
import subprocess
import sys

import pytest

from conftest import read_json


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_stop_removes_connection_files(profile, sig):
    ctl = profile.controller()
    key = read_json(profile.client_file())["key"]
    ctl.signal(sig)
    assert ctl.wait() == 0
    assert not profile.client_file().exists() and not profile.engine_file().exists()
    log = (profile.dir / "log" / "controller.log").read_text()
    assert "removed %s" % profile.client_file() in log and key not in log


def test_shutdown_request_removes_connection_files_of_its_cluster_id(profile):
    ctl = profile.controller(cluster_id="x")
    other = profile.controller()
    rc = profile.client(cluster_id="x")
    rc.shutdown(hub=True)
    assert ctl.wait() == 0
    assert not profile.client_file("x").exists() and not profile.engine_file("x").exists()
    assert profile.client_file().exists() and profile.engine_file().exists()
    assert other.popen.poll() is None


def test_reuse_leaves_connection_files(profile):
    ctl = profile.controller("--reuse")
    before = profile.client_file().read_text()
    ctl.signal(signal.SIGTERM)
    assert ctl.wait() == 0
    assert profile.client_file().read_text() == before and profile.engine_file().exists()
    assert "leaving the connection files for --reuse" in ctl.output()


def test_a_file_rewritten_by_another_controller_is_left_alone(profile):
    ctl = profile.controller()
    info = read_json(profile.client_file())
    newer = dict(info, key="k" * 64)
    profile.client_file().write_text(json.dumps(newer))
    ctl.signal(signal.SIGINT)
    assert ctl.wait() == 0
    assert read_json(profile.client_file())["key"] == "k" * 64
    assert not profile.engine_file().exists()


def test_cluster_stop_leaves_no_connection_files(tmp_path, profile):
    env = profile.env
    run = lambda *a: subprocess.run([sys.executable, "-m", "minipar.cluster", *a], env=env,  # noqa: E731
                                    capture_output=True, text=True, timeout=120)
    out = run("start", "-n", "1", "--daemonize")
    assert out.returncode == 0, out.stderr
    assert profile.client_file().exists()
    out = run("stop")
    assert out.returncode == 0, out.stderr
    assert not profile.client_file().exists() and not profile.engine_file().exists()
    log = (profile.dir / "log" / "controller.log").read_text()
    assert "removed %s" % profile.engine_file() in log
