"""Log files in the profile's log/ dir: --log-to-file and log_level for controller, engine, cluster."""
from __future__ import annotations

import subprocess
import sys

from helpers import wait_for


def engine_logs(profile, pattern="engine-*.log"):
    return sorted((profile.dir / "log").glob(pattern))


def test_engine_started_by_hand_logs_to_the_profile_and_stderr(profile):
    profile.controller()
    eng = profile.engine()
    rc = profile.client()
    rc.wait_for_engines(1, timeout=20)
    path = profile.dir / "log" / ("engine-%d.log" % eng.pid)
    wait_for(lambda: path.exists() and "registered as engine 0" in path.read_text(), what="the engine's log file")
    assert "registered as engine 0" in eng.output()
    assert rc[0].apply_sync(lambda: 1) == 1


def test_engine_log_file_names_its_cluster_id_and_follows_log_level(profile):
    profile.controller(cluster_id="x")
    eng = profile.engine("--cluster-id=x", "--engine.log_level=DEBUG")
    profile.client(cluster_id="x").wait_for_engines(1, timeout=20)
    path = profile.dir / "log" / ("engine-x-%d.log" % eng.pid)
    wait_for(lambda: path.exists() and "registered as engine" in path.read_text(), what="the engine's log file")
    assert "DEBUG asked the controller at" in path.read_text()
    assert "logging to %s as well" % path in eng.output()


def test_no_log_to_file_logs_to_stderr_only(profile):
    profile.controller("--no-log-to-file")
    eng = profile.engine("--no-log-to-file")
    eng2 = profile.engine("--engine.log_to_file=false")
    profile.client().wait_for_engines(2, timeout=20)
    for e in (eng, eng2):
        wait_for(lambda: "registered as engine" in e.output(), what="the engine's log line on stderr")
    assert engine_logs(profile) == [] and not (profile.dir / "log" / "controller.log").exists()


def test_engine_with_only_a_file_logs_to_the_default_profile(profile, tmp_path):
    profile.controller()
    copy = tmp_path / "engine.json"
    copy.write_text(profile.engine_file().read_text())
    eng = profile.engine("--file=%s" % copy)
    profile.client().wait_for_engines(1, timeout=20)
    path = profile.dir / "log" / ("engine-%d.log" % eng.pid)
    wait_for(lambda: path.exists() and "registered as engine" in path.read_text(), what="the engine's log file")


def test_controller_log_level_reaches_its_file(profile):
    ctl = profile.controller("--log-level=WARNING", "--log-to-file")
    ctl2 = profile.controller("--controller.log_level=ERROR", cluster_id="e")
    ctl3 = profile.controller("--controller.log_level=INFO", cluster_id="i")
    assert (profile.dir / "log" / "controller.log").read_text() == ""
    assert (profile.dir / "log" / "controller-e.log").read_text() == ""
    assert "Hub listening" in (profile.dir / "log" / "controller-i.log").read_text()
    assert all(c.popen.poll() is None for c in (ctl, ctl2, ctl3))


def test_local_cluster_engines_keep_one_log_each(profile):
    out = cluster_cli(profile, "start", "-n", "2", "--daemonize", "--log-to-file", "--log-level=DEBUG")
    try:
        assert out.returncode == 0, out.stderr
        assert sorted(p.name for p in engine_logs(profile)) == ["engine-default-0.log", "engine-default-1.log"]
        text = (profile.dir / "log" / "cluster.log").read_text()
        assert "logging to %s" % (profile.dir / "log" / "cluster.log") in text
        assert "starting cluster ''" in text and " DEBUG " in text
    finally:
        stopped = cluster_cli(profile, "stop", "--log-to-file")
    assert stopped.returncode == 0, stopped.stderr
    assert "stopped cluster ''" in (profile.dir / "log" / "cluster.log").read_text()


def test_cluster_logs_to_stderr_only_by_default(profile):
    out = cluster_cli(profile, "start", "-n", "1", "--daemonize")
    try:
        assert out.returncode == 0, out.stderr
        assert "starting cluster ''" in out.stderr
        assert not (profile.dir / "log" / "cluster.log").exists()
    finally:
        assert cluster_cli(profile, "stop").returncode == 0


def cluster_cli(profile, *args, timeout=120):
    return subprocess.run([sys.executable, "-m", "minipar.cluster", *args], env=profile.env, capture_output=True,
                          text=True, timeout=timeout)
