"""Estimate pi on a local minipar cluster started with the Cluster API.

    python examples/pi_cluster.py [--engines 4] [--samples 20000000] [--launcher slurm]

`with minipar.Cluster(n=...) as rc` starts a controller and the engines as local
processes, waits until they are registered and hands back a connected Client; leaving
the block (also through Ctrl-C or an error) stops every process it started. On a login
node, `--launcher slurm` (or mpi, sge, pbs, lsf, htcondor) starts the engines that way
instead, with the controller listening on every interface so compute nodes reach it.
"""
import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import minipar as ipp  # noqa: E402


def count_inside(seed_and_n):
    """Draw n points in the unit square; count those inside the quarter circle."""
    import random
    seed, n = seed_and_n
    rng = random.Random(seed)
    inside = 0
    for _ in range(n):
        x, y = rng.random(), rng.random()
        inside += x * x + y * y <= 1.0
    return inside


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--engines", type=int, default=4)
    p.add_argument("--samples", type=int, default=20_000_000)
    p.add_argument("--launcher", default="local", help="how engines start: local, mpi, slurm, sge, ...")
    args = p.parse_args()

    where = {} if args.launcher == "local" else {"engines": args.launcher, "controller_ip": "*"}
    with ipp.Cluster(n=args.engines, log_level="WARNING", **where) as rc:
        print("engines:", rc.ids, "pids:", rc[:].apply_sync(os.getpid))
        chunks = 4 * args.engines
        per_chunk = args.samples // chunks
        t0 = time.perf_counter()
        inside = rc.load_balanced_view().map_sync(count_inside, [(seed, per_chunk) for seed in range(chunks)])
        elapsed = time.perf_counter() - t0
        pi = 4.0 * sum(inside) / (per_chunk * chunks)
        print("pi ~= %.6f from %d samples on %d engines in %.2fs" % (pi, per_chunk * chunks, args.engines,
                                                                      elapsed))


if __name__ == "__main__":
    main()
