"""Engines as the ranks of one MPI job: pi summed over MPI between the engines.

    python examples/mpi_pi.py [--engines 4] [--mpiexec mpiexec] [--intervals 2000000]

The cluster's engines are started as `mpiexec -n N python -m minipar.engine` ([cluster]
engines = "mpi"), and [engine] mpi = "mpi4py" initialises MPI in each before it registers, so
every engine has `MPI`, `mpi_rank` and `mpi_size` in its namespace and its engine id is its
rank. One DirectView call runs the function on all ranks at once; each integrates its share of
4 / (1 + x*x) over [0, 1] and MPI.COMM_WORLD.allreduce adds the shares up between the engines,
over MPI, not through the controller. Needs mpi4py and an MPI (Open MPI as root also needs
OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 in the environment).
"""
import argparse
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))   # run from a clone, installed or not
import minipar as ipp  # noqa: E402


def pi_share(intervals):
    """This rank's share of the midpoint rule for pi, summed over all ranks with allreduce."""
    comm = MPI.COMM_WORLD                  # noqa: F821 - MPI is in the engine's namespace
    h = 1.0 / intervals
    share = sum(4.0 / (1.0 + ((i + 0.5) * h) ** 2) for i in range(comm.rank, intervals, comm.size)) * h
    return comm.allreduce(share, op=MPI.SUM)  # noqa: F821


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--engines", type=int, default=4)
    p.add_argument("--mpiexec", default="mpiexec", help="the MPI launcher command")
    p.add_argument("--intervals", type=int, default=2000000)
    args = p.parse_args()

    settings = {"engine.mpi": "mpi4py", "launcher.mpi.mpi_command": [args.mpiexec]}
    with ipp.Cluster(n=args.engines, engines="mpi", config_overrides=settings, log_level="WARNING") as rc:
        dv = rc[:]
        ranks = dv.apply_sync(lambda: (mpi_rank, mpi_size))  # noqa: F821 - names on the engines
        print("engine ids:", rc.ids, "MPI (rank, size):", ranks)
        print("MPI library:", dv.apply_sync(lambda: MPI.Get_library_version().split(",")[0])[0])  # noqa: F821
        results = dv.apply_sync(pi_share, args.intervals)
        print("every rank has the same sum:", len(set(results)) == 1)
        print("pi ~= %.12f (error %.1e)" % (results[0], abs(results[0] - math.pi)))


if __name__ == "__main__":
    main()
