"""Load-balanced Monte-Carlo: estimate pi with lview.map and a chunksize, on a running cluster.

    python -m minipar.cluster start -n 4 --daemonize          # or any controller + engines
    python examples/lb_montecarlo.py [--profile NAME | --url-file FILE] [--samples N]
                                     [--tasks T] [--chunksize C]

The samples are split into T tasks, each drawing its points with its own seed (so a
run is reproducible whatever engine gets what). The load-balanced view sends C tasks
per message: with many short tasks, a larger chunksize saves round trips; with uneven
ones, a smaller one balances better. Results are summed as they arrive
(ordered=False), and the timings show the parallel speed-up (serial / wall).
"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import minipar as ipp  # noqa: E402


def count_inside(seed, n):
    """Draw n points in the unit square; count those inside the quarter circle."""
    import random
    rng = random.Random(seed)
    inside = 0
    for _ in range(n):
        x, y = rng.random(), rng.random()
        inside += x * x + y * y <= 1.0
    return inside


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    where = p.add_mutually_exclusive_group()
    where.add_argument("--profile", help="profile name of the running cluster (default: default)")
    where.add_argument("--url-file", help="the controller's client connection file")
    p.add_argument("--cluster-id", default="", help="cluster id, if the controller was started with one")
    p.add_argument("--samples", type=int, default=10_000_000)
    p.add_argument("--tasks", type=int, default=200)
    p.add_argument("--chunksize", type=int, default=10)
    args = p.parse_args()

    per_task = args.samples // args.tasks
    with ipp.Client(url_file=args.url_file, profile=args.profile, cluster_id=args.cluster_id or None) as rc:
        rc.wait_for_engines(1, timeout=60)
        lview = rc.load_balanced_view()
        amr = lview.map_async(count_inside, range(args.tasks), [per_task] * args.tasks,
                              chunksize=args.chunksize, ordered=False)
        inside = 0
        for count in amr:
            inside += count
        total = per_task * args.tasks
        print("pi ~= %.6f from %d samples in %d tasks (%d messages of up to %d) on %d engines"
              % (4.0 * inside / total, total, args.tasks, len(amr.msg_ids), args.chunksize, len(rc.ids)))
        print("wall %.2fs, serial %.2fs: speed-up %.1fx" % (amr.wall_time, amr.serial_time,
                                                           amr.serial_time / max(amr.wall_time, 1e-9)))


if __name__ == "__main__":
    main()
