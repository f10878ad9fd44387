"""Engine ids from MPI ranks, staggered registration and ``engine.mpi = "init_script"``, under
real Open MPI and real MPICH (the test bed: fixtures/mpi_bed.py)."""
from __future__ import annotations

import re
from datetime import datetime

import pytest

import minipar
from fixtures.mpi_bed import IMPLEMENTATIONS, Bed, assert_nothing_left, use
from helpers import wait_for

RANKS = 64
"""The most ranks this test bed starts comfortably: 2 cores, oversubscribed, ~10s per job with
the default 20ms stagger (rank 63 waits 1.26s). Each rank costs ~0.3s of CPU to start."""

DEFAULT_DELAY = 0.02
"""engine.mpi_registration_delay's default, which the big job runs with."""

LINE = re.compile(r"^(\S+ \S+) \[Engine rank (\d+)\] (\w+) (.*)$")


@minipar.interactive
def ranks():
    """Runs in the engine namespace, where engine.mpi = "mpi4py" put MPI, mpi_rank and mpi_size."""
    return mpi_rank, mpi_size, MPI.COMM_WORLD.Get_rank()  # noqa: F821


def log_lines(path) -> dict:
    """{rank: [(seconds since the epoch, level, message)]} from a job's combined log."""
    by_rank: dict = {}
    for line in path.read_text().splitlines():
        m = LINE.match(line)
        if m:
            stamp = datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S.%f").timestamp()
            by_rank.setdefault(int(m.group(2)), []).append((stamp, m.group(3), m.group(4)))
    return by_rank


def first(lines, prefix):
    found = [(t, msg) for t, _, msg in lines if msg.startswith(prefix)]
    assert found, "no %r line in %r" % (prefix, lines)
    return found[0]


@pytest.fixture(scope="module", params=sorted(IMPLEMENTATIONS))
def big_job(request, mpi, tmp_path_factory):
    """RANKS mpi4py engines under one mpiexec, with the default registration delay."""
    bed = Bed(request.param, tmp_path_factory.mktemp("ids-" + request.param))
    with pytest.MonkeyPatch.context() as mp:
        use(mp, bed)
        cluster = minipar.Cluster(profile_dir=bed.profile_dir, n=RANKS, engines="mpi",
                                  engine_args=["--engine.mpi=mpi4py"])
        rc = cluster.start_and_connect_sync(timeout=240)
        try:
            yield bed, cluster, rc
        finally:
            cluster.stop_cluster_sync()
        assert_nothing_left(bed.root)


def job_log(bed, cluster, index=0):
    return bed.profile_dir / "log" / ("engine-%s-mpi-%d.log" % (cluster.cluster_id, index))


def test_engine_ids_are_the_mpi_ranks(big_job):
    bed, cluster, rc = big_job
    assert rc.ids == list(range(RANKS))
    assert rc[:].apply_sync(ranks) == [(i, RANKS, i) for i in range(RANKS)]
    assert [rc[i].apply_sync(ranks)[0] for i in (0, 1, RANKS - 1)] == [0, 1, RANKS - 1]


def test_each_rank_waits_its_share_before_registering(big_job):
    bed, cluster, rc = big_job
    lines = log_lines(job_log(bed, cluster))
    assert sorted(lines) == list(range(RANKS))
    for rank in range(RANKS):
        initialised, _ = first(lines[rank], "MPI initialised")
        registered, said = first(lines[rank], "registered as engine")
        assert said.startswith("registered as engine %d " % rank)
        assert registered - initialised >= rank * DEFAULT_DELAY - 0.002, (rank, lines[rank])
        waits = [msg for _, _, msg in lines[rank] if msg.startswith("waiting")]
        if rank == 0:
            assert waits == []
        else:
            assert waits == ["waiting %.3fs before registering: rank %d x engine.mpi_registration_delay (0.02s)"
                             % (rank * DEFAULT_DELAY, rank)]
        assert not [msg for _, level, msg in lines[rank] if level in ("WARNING", "ERROR")]


def test_a_second_job_gets_free_ids_when_its_ranks_are_taken(big_job):
    bed, cluster, rc = big_job
    second = cluster.start_engines_sync(2)
    try:
        rc.wait_for_engines(RANKS + 2, timeout=60)
        assert rc.ids == list(range(RANKS + 2))
        new = [rc[i].apply_sync(ranks)[0] for i in (RANKS, RANKS + 1)]
        assert sorted(new) == [0, 1]
        warned = [msg for _, level, msg in sum(log_lines(job_log(bed, cluster, RANKS)).values(), [])
                  if level == "WARNING"]
        assert sorted(warned) == sorted(
            "asked for engine id %d (the MPI rank) but another engine holds it; registered as engine %d"
            % (rank, RANKS + i) for i, rank in enumerate(new))
    finally:
        cluster.stop_engines_sync(second)
    wait_for(lambda: rc.ids == list(range(RANKS)), 30, "the second job's engines to unregister")


# ---------------------------------------------------------------- another binding: init_script

INIT_SCRIPT = '''\
"""MPI through ctypes, no mpi4py: the kind of other binding engine.mpi_init_script is for."""
import ctypes, os
open_mpi = "OMPI_COMM_WORLD_RANK" in os.environ
libmpi = ctypes.CDLL("libmpi.so.40" if open_mpi else "libmpich.so.12", mode=ctypes.RTLD_GLOBAL)
assert libmpi.MPI_Init(None, None) == 0
if open_mpi:
    COMM_WORLD = ctypes.c_void_p(ctypes.addressof(ctypes.c_char.in_dll(libmpi, "ompi_mpi_comm_world")))
else:
    COMM_WORLD = ctypes.c_int(0x44000000)

def world_rank():
    rank = ctypes.c_int(-1)
    assert libmpi.MPI_Comm_rank(COMM_WORLD, ctypes.byref(rank)) == 0
    return rank.value
'''


def test_an_init_script_initialises_another_binding_and_the_ranks_are_still_the_ids(mpi_bed, tmp_path):
    script = tmp_path / "ctypes_mpi.py"
    script.write_text(INIT_SCRIPT)
    cluster = minipar.Cluster(profile_dir=mpi_bed.profile_dir, n=3, engines="mpi",
                              engine_args=["--engine.mpi=init_script", "--engine.mpi_init_script=%s" % script])
    rc = cluster.start_and_connect_sync(timeout=60)
    try:
        assert rc.ids == [0, 1, 2]
        rc[:].execute("x = 1", block=True)
        rc[:].clear()  # what the script defined stays; what tasks defined goes
        rc[:].execute("has_x = 'x' in globals(); rank = world_rank(); has_MPI = 'MPI' in globals()", block=True)
        assert rc[:].pull(["has_x", "rank", "has_MPI"], block=True) == [[False, i, False] for i in range(3)]
        text = job_log(mpi_bed, cluster).read_text()
        for rank in range(3):
            assert ("[Engine rank %d] INFO MPI initialised (engine.mpi_init_script %s): rank %d of 3"
                    % (rank, script, rank)) in text
    finally:
        cluster.stop_cluster_sync()
