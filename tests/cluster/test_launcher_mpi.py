"""The MPI launchers and ``[engine] mpi = "mpi4py"``, under real Open MPI and real MPICH
(engine ids from ranks, the stagger and ``mpi = "init_script"``: test_mpi_ids).

scripts/services/mpi.sh brings both up (through the ``mpi`` fixture of fixtures/services.py); each
implementation runs with the environment it needs (/etc/minipar-testbed/*.env), set before the
Cluster is made, since engines inherit the environment of the process that starts them.
"""
from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import minipar
from fixtures.mpi_bed import IMPLEMENTATIONS, STARTED_HERE, Bed, assert_nothing_left, use
from helpers import ROOT, assert_all_gone, pid_gone, sleeper, wait_for
from minipar.cluster.cluster import ClusterError
from minipar.error import CannotSignal, LauncherError
from minipar.cluster.launchers.mpi import MPIEngineSetLauncher, job_pids

@minipar.interactive
def allreduce_rank():
    """Runs in the engine namespace, where engine.mpi put MPI."""
    import os
    mpi = MPI  # noqa: F821 - from the engine's namespace
    comm = mpi.COMM_WORLD
    return comm.Get_rank(), comm.Get_size(), comm.allreduce(comm.Get_rank()), mpi.get_vendor()[0], os.getpid()


@minipar.interactive
def catch_usr1():
    import signal
    global usr1
    usr1 = 0

    def count(signum, frame):
        global usr1
        usr1 += 1
    signal.signal(signal.SIGUSR1, count)


# ---------------------------------------------------------------- one cluster per implementation

@pytest.fixture(scope="module", params=sorted(IMPLEMENTATIONS))
def mpi_cluster(request, mpi, tmp_path_factory):
    """Three mpi4py engines under one mpiexec, and a local controller."""
    bed = Bed(request.param, tmp_path_factory.mktemp("mpi-" + request.param),
              mpi_args=IMPLEMENTATIONS[request.param][3])
    with pytest.MonkeyPatch.context() as mp:
        use(mp, bed)
        cluster = minipar.Cluster(profile_dir=bed.profile_dir, n=3, engines="mpi",
                                  engine_args=["--engine.mpi=mpi4py"],
                                  controller_args=["--controller.heartbeat_period=0.2"])
        rc = cluster.start_and_connect_sync(timeout=60)
        try:
            yield bed, cluster, rc
        finally:
            cluster.stop_cluster_sync()
        assert_nothing_left(bed.root)


def the_launcher(cluster) -> MPIEngineSetLauncher:
    (launcher,) = cluster.engine_sets.values()
    return launcher


def test_engines_are_the_ranks_of_one_job_and_reduce_together(mpi_cluster):
    bed, cluster, rc = mpi_cluster
    said = rc[:].apply_async(allreduce_rank).get(30)
    assert [rank for rank, *_ in said] == [0, 1, 2] and rc.ids == [0, 1, 2]  # engine i is rank i
    assert {(size, total, vendor) for _, size, total, vendor, _ in said} == {(3, 0 + 1 + 2, bed.vendor)}
    pids = [pid for *_, pid in said]
    launcher = the_launcher(cluster)
    assert len(set(pids)) == 3 and set(pids) <= set(job_pids(launcher.marker))
    assert launcher.mpiexec.pid not in pids
    assert rc[:].apply_sync(os.getenv, "PASSED_BY_MPI_ARGS") == ["yes"] * 3  # mpi_args reach mpiexec


def test_one_process_one_log_with_each_rank_named(mpi_cluster):
    bed, cluster, rc = mpi_cluster
    launcher = the_launcher(cluster)
    log = bed.profile_dir / "log" / ("engine-%s-mpi-0.log" % cluster.cluster_id)
    assert launcher.output_files == [str(log)]
    text = log.read_text()
    for rank in range(3):
        assert "[Engine rank %d] INFO MPI initialised (%s): rank %d of 3" % (rank, bed.vendor, rank) in text
        assert "[Engine rank %d] INFO registered as engine" % rank in text
    state = json.loads(cluster.state_file.read_text())
    (saved,) = state["engines"].values()
    assert saved["mpiexec"]["pid"] == launcher.mpiexec.pid and saved["marker"] == launcher.marker
    assert saved["options"]["settings"]["mpi_command"] == [bed.mpiexec]


def test_sigint_goes_through_the_controller_and_interrupts_every_engine(mpi_cluster):
    bed, cluster, rc = mpi_cluster
    with pytest.raises(CannotSignal, match="mpiexec does not pass SIGINT on"):
        the_launcher(cluster).signal(signal.SIGINT)
    ar = rc[:].apply_async(sleeper, 60)
    wait_for(lambda: ar.stdout == ["sleeping\n"] * 3, 20, "the three tasks to start")
    cluster.signal_engines_sync(signal.SIGINT)
    with pytest.raises(minipar.CompositeError) as info:
        ar.get(15)
    assert [e.ename for e in info.value.elist] == ["KeyboardInterrupt"] * 3
    assert the_launcher(cluster).mpiexec.running
    said = rc[:].apply_async(allreduce_rank).get(30)
    assert [total for _, _, total, _, _ in said] == [3, 3, 3]


def test_sigusr1_goes_through_mpiexec(mpi_cluster):
    bed, cluster, rc = mpi_cluster
    rc[:].apply_sync(catch_usr1)
    cluster.signal_engines_sync(signal.SIGUSR1)  # delivered by mpiexec: no CannotSignal
    wait_for(lambda: rc[:].pull("usr1", block=True) == [1, 1, 1], 10, "every engine to get SIGUSR1 once")


def test_clear_keeps_MPI_in_the_namespace(mpi_cluster):
    bed, cluster, rc = mpi_cluster
    rc[:].execute("x = 1", block=True)
    rc[:].clear()
    rc[:].execute("has_x = 'x' in globals(); size = MPI.COMM_WORLD.Get_size()", block=True)
    assert rc[:].pull(["has_x", "size"], block=True) == [[False, 3]] * 3


# ---------------------------------------------------------------- stopping

def test_a_killed_mpiexec_is_reported_and_stop_still_ends_its_engines(mpi_bed, caplog):
    caplog.set_level(logging.WARNING, logger="minipar.cluster")
    # engines that have not initialised MPI: Open MPI then leaves them running when mpiexec dies
    cluster = minipar.Cluster(profile_dir=mpi_bed.profile_dir, n=2, engines="mpi")
    rc = cluster.start_and_connect_sync(timeout=60)
    try:
        pids = rc[:].apply_sync(os.getpid) + rc[:].apply_sync(os.getppid)  # engines and their nannies
        launcher = the_launcher(cluster)
        os.kill(launcher.mpiexec.pid, signal.SIGKILL)
        wait_for(lambda: "engine process %d exited on its own (killed by signal SIGKILL (9))" % launcher.mpiexec.pid
                 in caplog.text, 10, "the watcher to log mpiexec's end")
        state = json.loads(cluster.state_file.read_text())
        assert [s["mpiexec"]["returncode"] for s in state["engines"].values()] == [-signal.SIGKILL]
        if mpi_bed.name == "openmpi":
            assert not any(pid_gone(pid) for pid in pids)
            assert launcher.running and sorted(job_pids(launcher.marker)) == sorted(pids)
    finally:
        cluster.stop_cluster_sync()
    assert_all_gone(pids)


def run_cli(bed: Bed, *args, timeout=120):
    return subprocess.run([sys.executable, "-m", "minipar.cluster", *args, "--profile-dir", str(bed.profile_dir)],
                          capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
                          cwd=str(bed.root.parent))


def test_cli_start_daemonized_then_stop_from_another_process(mpi_bed):
    engine_pids, mpiexec_pids, controller_pid = [], [], []
    started = run_cli(mpi_bed, "start", "-n", "2", "--daemonize", "--engines", "mpi", "--controller", "mpi")
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        assert "cluster '' running: 2 engines" in started.stdout
        with minipar.Client(url_file=str(mpi_bed.profile_dir / "security" / "controller-client.json")) as rc:
            engine_pids = rc[:].apply_sync(os.getpid)
        state = json.loads((mpi_bed.profile_dir / "security" / "cluster-.json").read_text())
        assert state["controller"]["class"] == "minipar.cluster.launchers.mpi.MPIControllerLauncher"
        mpiexec_pids = [state["controller"]["mpiexec"]["pid"]] + [
            s["mpiexec"]["pid"] for s in state["engines"].values()]
        controller_pid = [int((mpi_bed.profile_dir / "pid" / "controller.pid").read_text())]
        assert not set(engine_pids) & set(mpiexec_pids + controller_pid)
        assert all(not pid_gone(pid) for pid in engine_pids + mpiexec_pids + controller_pid)
    finally:
        stopped = run_cli(mpi_bed, "stop")
    assert stopped.returncode == 0 and "stopped cluster ''" in stopped.stdout, stopped.stdout + stopped.stderr
    assert_all_gone(engine_pids + mpiexec_pids + controller_pid)


def test_a_bad_mpi_command_is_a_clear_error_and_leaves_nothing(tmp_path, monkeypatch):
    pdir = tmp_path / "mp" / "profile_bad"
    pdir.mkdir(parents=True)
    (pdir / "minipar.toml").write_text('[launcher.mpi]\nmpi_command = ["no-such-mpiexec", "--verbose"]\n')
    monkeypatch.setenv(STARTED_HERE, str(tmp_path / "mp"))
    cluster = minipar.Cluster(profile_dir=pdir, n=2, engines="mpi")
    with pytest.raises(LauncherError) as info:
        cluster.start_and_connect_sync(timeout=30)
    message = str(info.value)
    assert "cannot run no-such-mpiexec" in message
    assert "launcher.mpi.mpi_command = ['no-such-mpiexec', '--verbose']" in message
    assert "No such file or directory" in message
    assert cluster.controller is None and not cluster.engine_sets and not cluster.state_file.exists()
    assert_nothing_left(tmp_path / "mp")


def test_an_mpiexec_that_refuses_to_run_fails_the_start_with_its_output(mpi, tmp_path, monkeypatch):
    bed = Bed("openmpi", tmp_path / "mp")
    use(monkeypatch, bed)
    for key in bed.env:  # as root, Open MPI then refuses to start anything
        monkeypatch.delenv(key)
    cluster = minipar.Cluster(profile_dir=bed.profile_dir, n=2, engines="mpi")
    with pytest.raises(ClusterError) as info:
        cluster.start_and_connect_sync(timeout=60)
    message = str(info.value)
    assert message.startswith("every engine job ended: 0 of 2 registered with the controller.")
    assert "last lines of %s" % (bed.profile_dir / "log" / ("engine-%s-mpi-0.log" % cluster.cluster_id)) in message
    assert "OMPI_ALLOW_RUN_AS_ROOT=1" in message
    assert_nothing_left(bed.root)


def run_engine(env: dict, tmp_path: Path) -> subprocess.CompletedProcess:
    (tmp_path / "profile").mkdir(exist_ok=True)
    return subprocess.run([sys.executable, "-m", "minipar.engine", "--profile-dir", str(tmp_path / "profile"),
                           "--engine.mpi=mpi4py"], capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL, env=env, cwd=str(tmp_path))


def test_an_engine_without_mpi4py_says_so_in_one_line(tmp_path):
    hide = tmp_path / "hide"
    hide.mkdir()
    # what a Python without mpi4py raises, from a module that shadows the installed one
    (hide / "mpi4py.py").write_text("raise ModuleNotFoundError(\"No module named 'mpi4py'\", name='mpi4py')\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(hide), str(ROOT)]))
    r = run_engine(env, tmp_path)
    assert r.returncode == 1
    assert r.stderr.splitlines() == [
        "python -m minipar.engine: error: engine.mpi = 'mpi4py' needs the mpi4py package, which %s cannot "
        "import (No module named 'mpi4py'); install it there or unset engine.mpi" % sys.executable]


def test_an_mpi4py_that_cannot_load_its_mpi_library_says_so_in_one_line(mpi, tmp_path):
    # the MPICH flavour of the mpi4py wheel without the libmpi.so.12 shim (TESTBED.md, MPI)
    env = dict(os.environ, PYTHONPATH=str(ROOT), MPI4PY_MPIABI="mpich", LD_LIBRARY_PATH=str(tmp_path))
    r = run_engine(env, tmp_path)
    assert r.returncode == 1
    (line,) = r.stderr.splitlines()
    assert line.startswith("python -m minipar.engine: error: engine.mpi = 'mpi4py': mpi4py 4.")
    assert "is installed but cannot load an MPI library" in line and "libmpi.so.12" in line
