"""The Cluster API, its state files, and ``python -m minipar.cluster`` with real processes."""
from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import signal
import subprocess
import sys
import time

import pytest

import minipar
from helpers import TEST_PYTHONPATH, assert_all_gone, sleeper, wait_for
from minipar.cluster.cluster import ClusterError, Progress
from minipar.cluster.launchers.local import LocalEngineSetLauncher
from minipar.config import ConfigError


@pytest.fixture
def mpdir(tmp_path, monkeypatch):
    root = tmp_path / "mp"
    monkeypatch.setenv("MINIPAR_DIR", str(root))
    monkeypatch.setenv("PYTHONPATH", TEST_PYTHONPATH)
    return root


def all_pids(cluster):
    pids = [p.pid for p in cluster.engine_processes]
    if cluster.controller is not None:
        pids += [p.pid for p in cluster.controller.processes]
    return pids


def test_context_manager_starts_and_stops_everything(mpdir):
    cluster = minipar.Cluster(n=2, controller_args=["--controller.heartbeat_period=0.2"])
    with cluster as rc:
        assert len(rc.ids) == 2
        launched = sorted(rc[:].apply_sync(os.getppid))  # each engine's nanny
        assert launched == sorted(p.pid for p in cluster.engine_processes)
        state = json.loads(cluster.state_file.read_text())
        assert state["cluster_id"] == cluster.cluster_id and state["n"] == 2
        assert sorted(p["pid"] for s in state["engines"].values() for p in s["processes"]) == launched
        assert state["controller"]["processes"][0]["pid"] == cluster.controller.pid
        pids = all_pids(cluster) + rc[:].apply_sync(os.getpid)
    assert_all_gone(pids)
    assert not cluster.state_file.exists()
    assert not cluster.client_file.exists()


def test_exception_inside_the_block_still_stops(mpdir):
    cluster = minipar.Cluster(n=1)
    with pytest.raises(ZeroDivisionError):
        with cluster as rc:
            pids = all_pids(cluster)
            assert rc.ids == [0]
            1 / 0
    assert_all_gone(pids)
    assert not cluster.state_file.exists()


def test_async_with_and_awaitable_methods(mpdir):
    async def main():
        cluster = minipar.Cluster(n=1)
        async with cluster as rc:
            value = await rc[0].apply_async(sum, [1, 2, 3])
            await cluster.start_engines(1)
            await cluster.wait_for_engines(2)
            return value, len(rc.ids), all_pids(cluster)

    value, count, pids = asyncio.run(main())
    assert (value, count) == (6, 2)
    assert_all_gone(pids)


def test_sync_methods_work_inside_a_running_event_loop(mpdir):
    async def notebook_cell():
        cluster = minipar.Cluster(n=1)
        rc = cluster.start_and_connect_sync()
        try:
            return rc[0].apply_sync(pow, 2, 8)
        finally:
            cluster.stop_cluster_sync()

    assert asyncio.run(notebook_cell()) == 256


def test_two_clusters_in_one_profile(mpdir):
    a = minipar.Cluster(n=1, cluster_id="a")
    b = minipar.Cluster(n=2, cluster_id="b")
    rca = a.start_and_connect_sync()
    rcb = b.start_and_connect_sync()
    try:
        assert a.profile_dir == b.profile_dir
        assert (len(rca.ids), len(rcb.ids)) == (1, 2)
        assert set(rca[:].apply_sync(os.getpid)).isdisjoint(rcb[:].apply_sync(os.getpid))
        found = minipar.Cluster.from_file(cluster_id="b")
        assert sorted(p.pid for p in found.engine_processes) == sorted(p.pid for p in b.engine_processes)
        b_pids = all_pids(b)
        found.stop_cluster_sync()
        assert_all_gone(b_pids)
        assert rca[0].apply_sync(sum, [4, 5]) == 9
    finally:
        a.stop_cluster_sync()
        b.stop_cluster_sync()


def test_generated_cluster_ids_differ(mpdir):
    assert minipar.Cluster(n=1).cluster_id != minipar.Cluster(n=1).cluster_id


def test_signal_engines_interrupts_every_engine(mpdir):
    with minipar.Cluster(n=2) as rc:
        cluster = rc.cluster
        ar = rc[:].apply_async(sleeper, 60)
        wait_for(lambda: ar.stdout == ["sleeping\n", "sleeping\n"], 20, "both tasks to start")
        cluster.signal_engines_sync(signal.SIGINT)
        with pytest.raises(minipar.CompositeError) as info:
            ar.get(15)
        assert [e.ename for e in info.value.elist] == ["KeyboardInterrupt", "KeyboardInterrupt"]
        assert rc[:].apply_sync(sum, [1, 1]) == [2, 2]


def test_restart_engines_gives_new_processes_and_ids(mpdir):
    with minipar.Cluster(n=2) as rc:
        cluster = rc.cluster
        rc[:].execute("marker = 1", block=True)
        old_pids = set(rc[:].apply_sync(os.getpid))
        old_ids = set(rc.ids)
        cluster.restart_engines_sync()
        wait_for(lambda: len(rc.ids) == 2 and not set(rc.ids) & old_ids, 20, "only the new engines listed")
        new_pids = set(rc[:].apply_sync(os.getpid))
        assert new_pids.isdisjoint(old_pids)
        assert_all_gone(old_pids)
        with pytest.raises(minipar.CompositeError):
            rc[:].pull("marker", block=True)


def test_engine_crash_is_reported_and_recorded(mpdir, caplog):
    caplog.set_level(logging.WARNING, logger="minipar.cluster")
    with minipar.Cluster(n=2, controller_args=["--controller.heartbeat_period=0.2"]) as rc:
        cluster = rc.cluster
        victim = cluster.engine_processes[0]
        victim_id = [i for i in rc.ids if rc[i].apply_sync(os.getppid) == victim.pid][0]
        engine_pid = rc[victim_id].apply_sync(os.getpid)  # the nanny's child
        ar = rc[victim_id].apply_async(sleeper, 60)
        wait_for(lambda: ar.stdout == "sleeping\n", 20, "the task to start")
        os.kill(engine_pid, signal.SIGKILL)
        wait_for(lambda: "engine process %d exited on its own (killed by signal SIGKILL (9))" % victim.pid
                 in caplog.text, 10, "the crash to be logged")
        assert "last lines of %s" % victim.log_file in caplog.text
        assert "registered as engine" in caplog.text
        state = json.loads(cluster.state_file.read_text())
        recorded = {p["pid"]: p["returncode"] for s in state["engines"].values() for p in s["processes"]}
        assert recorded[victim.pid] == -signal.SIGKILL, "the nanny ends as its engine did"
        with pytest.raises(minipar.EngineError, match="engine process %d on .* was killed by signal 9" % engine_pid):
            ar.get(15)


def test_engines_that_never_register_fail_with_their_logs_and_leave_nothing(mpdir):
    cluster = minipar.Cluster(n=2, engine_args=["--startup-command=import time; time.sleep(60)"],
                              engine_timeout=2)
    with pytest.raises(minipar.TimeoutError) as info:
        cluster.start_and_connect_sync()
    message = str(info.value)
    assert "engines did not register within 2s (cluster.engine_timeout): 0 of 2 registered" in message
    assert "last lines of %s" % (cluster.profile_dir / "log" / ("engine-%s-0.log" % cluster.cluster_id)) in message
    assert_all_gone([p.pid for p in cluster.engine_processes] or [0])
    assert cluster.controller is None and not cluster.engine_sets
    assert not cluster.state_file.exists()


def test_engines_that_die_at_once_fail_fast(mpdir):
    cluster = minipar.Cluster(n=2, engine_args=["--startup-command=raise SystemExit(3)"])
    t0 = time.monotonic()
    with pytest.raises(ClusterError) as info:
        cluster.start_and_connect_sync()
    assert time.monotonic() - t0 < 30
    message = str(info.value)
    assert "every engine process exited: 0 of 2 registered" in message
    assert "exit code 1" in message and "start-up code failed: SystemExit" in message


def test_bad_controller_args_fail_with_its_log(mpdir):
    cluster = minipar.Cluster(n=1, controller_args=["--controller.nosuchkey=1"])
    with pytest.raises(ClusterError) as info:
        cluster.start_controller_sync()
    assert "the controller exited before writing" in str(info.value)
    assert "controller.nosuchkey: unknown setting" in str(info.value)


def test_cluster_section_of_the_profile(mpdir):
    pdir = mpdir / "profile_default"
    pdir.mkdir(parents=True)
    (pdir / "minipar.toml").write_text('[cluster]\nn = 3\nengine_args = ["--startup-command=x = 7"]\n')
    with minipar.Cluster() as rc:
        assert len(rc.ids) == 3
        assert rc[:].pull("x", block=True) == [7, 7, 7]
    with minipar.Cluster(n=1) as rc:
        assert len(rc.ids) == 1


class MarkedLauncher(LocalEngineSetLauncher):
    """A custom launcher chosen by dotted path: adds a startup command."""

    def start(self):
        self.args = self.args + ["--startup-command=launched_by = 'MarkedLauncher'"]
        super().start()


def test_custom_launcher_by_dotted_path(mpdir):
    with minipar.Cluster(n=1, engines="test_cluster.MarkedLauncher") as rc:
        assert rc[0].pull("launched_by", block=True) == "MarkedLauncher"
        state = json.loads(rc.cluster.state_file.read_text())
        assert list(state["engines"].values())[0]["class"] == "test_cluster.MarkedLauncher"


def test_unknown_launcher_names(mpdir):
    with pytest.raises(ConfigError, match="cluster.engines: unknown launcher 'slrum'"):
        minipar.Cluster(engines="slrum")
    with pytest.raises(ConfigError, match="cannot load launcher 'nosuch.module.Launcher'"):
        minipar.Cluster(engines="nosuch.module.Launcher")
    with pytest.raises(TypeError, match="unexpected keyword argument"):
        minipar.Cluster(n=1, engine=1)


def test_progress_on_a_terminal_and_silence_otherwise():
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    tty = Terminal()
    p = Progress(4, tty)
    for count in (0, 1, 1, 3, 4):
        p.show(count)
    p.done()
    assert tty.getvalue() == ("\rengines registered 0/4\rengines registered 1/4\rengines registered 3/4"
                              "\rengines registered 4/4\n")
    plain = io.StringIO()
    p = Progress(4, plain)
    p.show(2)
    p.done()
    assert plain.getvalue() == ""


def run_cli(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "minipar.cluster", *args], capture_output=True, text=True,
                          timeout=timeout)


def test_cli_start_daemonize_list_connect_engines_stop(mpdir):
    out = run_cli("start", "-n", "2", "--daemonize")
    assert out.returncode == 0, out.stderr
    assert "cluster '' running: 2 engines" in out.stdout
    listing = run_cli("list").stdout.splitlines()
    assert listing[0].split() == ["PROFILE", "CLUSTER", "ID", "CONTROLLER", "ENGINES", "LAUNCHERS", "AGE"]
    assert listing[1].split()[:5] == ["default", "''", "running", "2/2", "local/local"]
    state = json.loads((mpdir / "profile_default" / "security" / "cluster-.json").read_text())
    pids = [state["controller"]["processes"][0]["pid"]] + [
        p["pid"] for s in state["engines"].values() for p in s["processes"]]
    with minipar.Client(profile="default") as rc:
        rc.wait_for_engines(2, timeout=20)
        assert out.returncode == 0
        added = run_cli("engines", "-n", "1", "--daemonize")
        assert added.returncode == 0, added.stderr
        rc.wait_for_engines(3, timeout=20)
        assert sorted(rc[:].apply_sync(os.getpid))[0] > 0
    assert run_cli("list").stdout.splitlines()[1].split()[3] == "3/3"
    state = json.loads((mpdir / "profile_default" / "security" / "cluster-.json").read_text())
    pids += [p["pid"] for s in state["engines"].values() for p in s["processes"]]
    stopped = run_cli("stop")
    assert stopped.returncode == 0 and "stopped cluster ''" in stopped.stdout
    assert_all_gone(set(pids))
    assert len(run_cli("list").stdout.splitlines()) == 1


def test_cli_foreground_until_interrupted(mpdir):
    proc = subprocess.Popen([sys.executable, "-m", "minipar.cluster", "start", "-n", "1", "--cluster-id", "fg"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    state_file = mpdir / "profile_default" / "security" / "cluster-fg.json"
    wait_for(lambda: state_file.exists() and json.loads(state_file.read_text())["engines"], 60, "the state file")
    with minipar.Client(profile="default", cluster_id="fg") as rc:
        rc.wait_for_engines(1, timeout=30)
    state = json.loads(state_file.read_text())
    pids = [state["controller"]["processes"][0]["pid"]] + [
        p["pid"] for s in state["engines"].values() for p in s["processes"]]
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out
    assert "cluster 'fg' stopped" in out
    assert_all_gone(pids)
    assert not state_file.exists()


def test_cli_stale_state_files_are_reported_and_removed(mpdir):
    security = mpdir / "profile_default" / "security"
    security.mkdir(parents=True)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (security / "cluster-old.json").write_text(json.dumps({
        "cluster_id": "old", "profile_dir": str(mpdir / "profile_default"), "n": 1, "start_time": time.time(),
        "controller": {"class": "minipar.cluster.launchers.local.LocalControllerLauncher",
                       "profile_dir": str(mpdir / "profile_default"), "cluster_id": "old",
                       "processes": [{"pid": dead.pid, "log_file": ""}]},
        "engines": {}}))
    out = run_cli("list").stdout
    assert "removed stale state file %s" % (security / "cluster-old.json") in out
    assert not (security / "cluster-old.json").exists()


def test_cli_errors_and_help(mpdir):
    stop = run_cli("stop", "--cluster-id", "nope", "--profile-dir", str(mpdir / "p"))
    assert stop.returncode == 1 and "does not exist" in stop.stderr and "Traceback" not in stop.stderr
    (mpdir / "profile_default").mkdir(parents=True)
    stop = run_cli("stop", "--cluster-id", "nope")
    assert stop.returncode == 1 and "no cluster with id 'nope'" in stop.stderr
    for command in ("start", "stop", "list", "engines"):
        out = run_cli(command, "--help")
        assert out.returncode == 0 and "usage: python -m minipar.cluster %s" % command in out.stdout


def test_profile_create_list_locate(mpdir):
    def profile_cli(*args):
        return subprocess.run([sys.executable, "-m", "minipar.profile", *args], capture_output=True, text=True)

    out = profile_cli("create", "--profile", "pbs")
    path = mpdir / "profile_pbs" / "minipar.toml"
    assert out.returncode == 0 and str(path) in out.stdout
    text = path.read_text()
    for section in ("[controller]", "[engine]", "[cluster]", "[db.sqlite]"):
        assert section in text
    assert "# heartbeat_period = 1.0" in text
    from minipar.config import Config, load_config
    assert load_config(mpdir / "profile_pbs").to_dict() == Config().to_dict()
    path.write_text(text.replace("# engine_timeout = 120.0", "engine_timeout = 9.5"))
    assert profile_cli("create", "--profile", "pbs").returncode == 0
    assert "engine_timeout = 9.5" in path.read_text()
    assert load_config(mpdir / "profile_pbs").cluster.engine_timeout == 9.5
    assert profile_cli("list").stdout.split() == ["profiles", "in", "%s:" % mpdir, "pbs"]
    assert profile_cli("locate", "pbs").stdout.strip() == str(mpdir / "profile_pbs")
    missing = profile_cli("locate", "nope")
    assert missing.returncode == 1 and "create it with: python -m minipar.profile create --profile nope" in missing.stderr


def test_shutdown_atexit_stops_a_forgotten_cluster(mpdir, tmp_path):
    script = tmp_path / "forget.py"
    script.write_text("import json, minipar\n"
                      "c = minipar.Cluster(n=1)\n"
                      "rc = c.start_and_connect_sync()\n"
                      "print(json.dumps([p.pid for p in c.engine_processes] + [c.controller.pid]))\n")
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert_all_gone(json.loads(out.stdout))
    assert list((mpdir / "profile_default" / "security").glob("cluster-*.json")) == []
