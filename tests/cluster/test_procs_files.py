"""Connection files go away with a controller that stops cleanly, unless it runs with --reuse."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

from helpers import read_json


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


def test_a_connection_file_others_can_read_warns(profile, caplog):
    import logging
    import os

    import minipar
    profile.controller()
    path = profile.client_file()
    with caplog.at_level(logging.WARNING, logger="minipar.connection"):
        minipar.Client(url_file=str(path)).close()
    assert not caplog.records
    os.chmod(path, 0o644)
    with caplog.at_level(logging.WARNING, logger="minipar.connection"):
        rc = minipar.Client(url_file=str(path))
        rc.close()
    assert [r.getMessage() for r in caplog.records] == [
        "connection file %s can be read or written by other users (mode 0644): anyone who can read its key can "
        "run code on your engines. Make it private: chmod 600 %s" % (path, path)]


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0,
                    reason="making a directory another user owns needs root")
def test_a_profile_dir_another_user_owns_is_refused(tmp_path):
    import pwd

    from minipar.profile import ProfileError, locate_profile_dir
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    nobody = pwd.getpwnam("nobody")
    os.chown(theirs, nobody.pw_uid, nobody.pw_gid)
    with pytest.raises(ProfileError) as info:
        locate_profile_dir(profile_dir=theirs)
    assert str(info.value) == (
        "profile dir %s belongs to user nobody (uid %d), not to you (user root (uid 0)): whoever owns it can "
        "change the connection files and configuration your controller, clients and engines trust. Use a "
        "profile dir of your own (--profile-dir, or MINIPAR_DIR)" % (theirs, nobody.pw_uid))
    assert not (theirs / "security").exists()
    started = subprocess.run([sys.executable, "-m", "minipar.controller", "--profile-dir", str(theirs)],
                             capture_output=True, text=True, timeout=60)
    assert started.returncode == 2
    assert "profile dir %s belongs to user nobody" % theirs in started.stderr
    assert "Traceback" not in started.stderr
