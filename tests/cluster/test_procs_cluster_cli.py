"""``python -m minipar.cluster``: --SECTION.KEY=VALUE, --reuse, --engine-args, and ``engines``
in the foreground or with --daemonize, for a cluster or a controller started by hand."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import pid_gone, read_json, wait_for
from minipar.cluster.__main__ import build_parser, cluster_kwargs, split_by_owner
from minipar.config import load_config


def cli(profile, *args, timeout=120):
    return subprocess.run([sys.executable, "-m", "minipar.cluster", *args], env=profile.env, capture_output=True,
                          text=True, timeout=timeout)


def popen_cli(profile, *args):
    log = open(profile.tmp / "cluster-cli.out", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "minipar.cluster", *args], env=profile.env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    proc.output = lambda: (profile.tmp / "cluster-cli.out").read_text()
    return proc


def state_of(profile, cluster_id=""):
    return read_json(profile.dir / "security" / ("cluster-%s.json" % cluster_id))


def engine_pids(state) -> list:
    return [p["pid"] for s in state["engines"].values() for p in s["processes"]]


def cmdline(pid) -> list:
    return Path("/proc/%d/cmdline" % pid).read_text().split("\0")


def test_overrides_go_to_whoever_reads_them():
    own, controller, engine = split_by_owner({
        "cluster.n": "3", "launcher.slurm.queue": "short", "controller.heartbeat_period": "0.5",
        "db.sqlite.table": "t", "engine.startup_command": "x = 1", "controller.reuse": True})
    assert own == {"cluster.n": "3", "launcher.slurm.queue": "short"}
    assert controller == ["--controller.heartbeat_period=0.5", "--db.sqlite.table=t", "--controller.reuse=true"]
    assert engine == ["--engine.startup_command=x = 1"]
    args = build_parser().parse_args(["start", "--engine-args=--work-dir=/tmp '--startup-command=y = 2'"])
    kwargs = cluster_kwargs(args, {"engine.log_level": "DEBUG"}, load_config(None))
    assert kwargs["engine_args"] == ["--engine.log_level=DEBUG", "--work-dir=/tmp", "--startup-command=y = 2"]
    assert "controller_args" not in kwargs


def test_start_passes_settings_and_engine_args_on_and_reuse_keeps_files(profile):
    out = cli(profile, "start", "-n", "1", "--daemonize", "--reuse", "--cluster.engine_timeout=60",
              "--controller.heartbeat_period=0.3", "--engine.startup_command=marker = 42",
              "--engine-args=--startup-script=%s" % write_script(profile, "other = 7"))
    assert out.returncode == 0, out.stderr
    state = state_of(profile)
    controller_pid = state["controller"]["processes"][0]["pid"]
    assert "--controller.heartbeat_period=0.3" in cmdline(controller_pid)
    assert "--controller.reuse=true" in cmdline(controller_pid)
    rc = profile.client()
    rc.wait_for_engines(1, timeout=20)
    assert rc[0].pull(["marker", "other"], block=True) == [42, 7]
    before = read_json(profile.client_file())
    rc.close()
    stopped = cli(profile, "stop")
    assert stopped.returncode == 0, stopped.stderr
    wait_for(lambda: pid_gone(controller_pid), 10, "the controller to be gone")
    assert read_json(profile.client_file()) == before and profile.engine_file().exists()


def write_script(profile, code) -> str:
    path = profile.tmp / "startup.py"
    path.write_text(code + "\n")
    return str(path)


@pytest.mark.parametrize("args, message", [
    (["--cluster.nn=3"], "command line: cluster.nn: unknown setting; did you mean 'cluster.n'?"),
    (["--engine.registration_timeout=soon"], "engine.registration_timeout: expected a number"),
    (["--launcher.nosuch.queue=x"], "launcher.nosuch.queue: unknown"),
    (["--engine-args=--startup-command='x = 1"], "--engine-args \"--startup-command='x = 1\": No closing quotation"),
])
def test_bad_settings_are_clear_errors_and_start_nothing(profile, args, message):
    out = cli(profile, "start", "-n", "1", "--daemonize", *args)
    assert out.returncode == 1 and message in out.stderr, out.stderr
    assert "Traceback" not in out.stderr
    assert not (profile.dir / "security" / "cluster-.json").exists()


def test_daemonized_engines_for_a_controller_started_by_hand(profile):
    ctl = profile.controller()
    out = cli(profile, "engines", "-n", "2", "--daemonize", "--engine.startup_command=tag = 'bg'")
    assert out.returncode == 0, out.stderr
    assert "started 2 engine(s) for the controller of %s" % profile.engine_file() in out.stdout
    state = state_of(profile)
    assert state["controller"] is None
    pids = engine_pids(state)
    rc = profile.client()
    rc.wait_for_engines(2, timeout=30)
    assert rc[:].pull("tag", block=True) == ["bg", "bg"]
    listing = cli(profile, "list").stdout.splitlines()
    assert listing[1].split()[:4] == ["default", "''", "elsewhere", "2/2"]
    stopped = cli(profile, "stop")
    assert stopped.returncode == 0, stopped.stderr
    for pid in pids:
        wait_for(lambda: pid_gone(pid), 10, "engine %d to be gone" % pid)
    wait_for(lambda: rc.ids == [], 20, "the engines to unregister")
    assert ctl.popen.poll() is None
    assert profile.client_file().exists() and profile.engine_file().exists()
    assert not (profile.dir / "security" / "cluster-.json").exists()


def test_foreground_engines_stop_on_sigint(profile):
    profile.controller(cluster_id="fg")
    proc = popen_cli(profile, "engines", "-n", "1", "--cluster-id", "fg")
    try:
        rc = profile.client(cluster_id="fg")
        rc.wait_for_engines(1, timeout=30)
        pids = engine_pids(state_of(profile, "fg"))
        wait_for(lambda: "Ctrl-C to stop them" in proc.output(), what="the command to wait")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0, proc.output()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert "stopped 1 engine(s)" in proc.output()
    for pid in pids:
        wait_for(lambda: pid_gone(pid), 10, "engine %d to be gone" % pid)
    assert not (profile.dir / "security" / "cluster-fg.json").exists()


def test_cluster_stop_ends_foreground_engines_added_to_a_cluster(profile):
    out = cli(profile, "start", "-n", "1", "--daemonize")
    assert out.returncode == 0, out.stderr
    proc = popen_cli(profile, "engines", "-n", "1")
    try:
        rc = profile.client()
        rc.wait_for_engines(2, timeout=30)
        pids = engine_pids(state_of(profile))
        assert len(pids) == 2
        stopped = cli(profile, "stop")
        assert stopped.returncode == 0, stopped.stderr
        assert proc.wait(30) == 0, proc.output()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert "the engines were stopped from elsewhere" in proc.output()
    for pid in pids:
        wait_for(lambda: pid_gone(pid), 10, "engine %d to be gone" % pid)


def test_engines_without_a_controller_is_a_clear_error(profile):
    profile.dir.mkdir(parents=True)
    out = cli(profile, "engines", "-n", "1", "--daemonize")
    assert out.returncode == 1 and "no cluster with id '' in %s and no engine connection file" % profile.dir \
        in out.stderr, out.stderr
    assert "Traceback" not in out.stderr


def test_start_refuses_a_cluster_id_whose_engines_run(profile):
    profile.controller()
    assert cli(profile, "engines", "-n", "1", "--daemonize").returncode == 0
    pids = engine_pids(state_of(profile))
    try:
        out = cli(profile, "start", "-n", "1", "--daemonize")
        assert out.returncode == 1 and "engines started by `engines` run under cluster id ''" in out.stderr
    finally:
        assert cli(profile, "stop").returncode == 0
    for pid in pids:
        wait_for(lambda: pid_gone(pid), 10, "engine %d to be gone" % pid)
    assert os.path.exists(profile.client_file())
