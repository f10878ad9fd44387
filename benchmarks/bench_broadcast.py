"""Pushing one large array to every engine: rc.broadcast_view() against rc[:].

    python benchmarks/bench_broadcast.py [--mb 100] [--engines 8] [--rounds 5]

A DirectView sends the array to the controller once per engine; a broadcast view sends it
once and the controller fans it out. Each round pushes a ``--mb`` MB numpy array to
``--engines`` engines through each view in turn (alternating, so both see the same machine
load) and waits until every engine has it. Reports the median seconds per push and the
rate in MB/s of array delivered to engines (size x engines / time), then the ratio
broadcast/direct. When ipyparallel is importable the same runs on an ipyparallel cluster.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def measure(rc, views, array, rounds):
    """Median seconds per push through each view, views alternating within a round."""
    times = {name: [] for name in views}
    for name, view in views.items():
        view.push({"payload": array}, block=True)
    for _ in range(rounds):
        for name, view in views.items():
            view.push({"payload": None}, block=True)
            t0 = time.perf_counter()
            view.push({"payload": array}, block=True)
            times[name].append(time.perf_counter() - t0)
            rc.purge_hub_results("all")
    return {name: statistics.median(ts) for name, ts in times.items()}


def run_minipar(args, array):
    import minipar

    with tempfile.TemporaryDirectory() as tmp:
        os.environ["MINIPAR_DIR"] = tmp
        with minipar.Cluster(n=args.engines, log_level="WARNING") as rc:
            rc.wait_for_engines(args.engines, timeout=120)
            views = {"broadcast": rc.broadcast_view(), "direct": rc[:]}
            return measure(rc, views, array, args.rounds)


def run_ipyparallel(args, array):
    import ipyparallel as ipp

    with ipp.Cluster(n=args.engines, log_level=40) as rc:
        rc.wait_for_engines(args.engines, timeout=120)
        views = {"broadcast": rc.broadcast_view(), "direct": rc[:]}
        return measure(rc, views, array, args.rounds)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--mb", type=float, default=100)
    p.add_argument("--engines", type=int, default=8)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--no-ipyparallel", action="store_true")
    args = p.parse_args()
    import numpy

    array = numpy.random.default_rng(0).random(int(args.mb * 1e6 / 8))
    size_mb = array.nbytes / 1e6
    results = {"minipar": run_minipar(args, array)}
    if not args.no_ipyparallel:
        try:
            import ipyparallel  # noqa: F401
        except ImportError:
            print("(ipyparallel not installed: minipar figures only)")
        else:
            results["ipyparallel"] = run_ipyparallel(args, array)
    print("push of %.0f MB to %d engines, median of %d rounds (MB/s = MB delivered to engines per second)"
          % (size_mb, args.engines, args.rounds))
    print("%-12s %-10s %10s %10s" % ("", "view", "s/push", "MB/s"))
    for system, times in results.items():
        for view, t in times.items():
            print("%-12s %-10s %10.3f %10.0f" % (system, view, t, size_mb * args.engines / t))
        print("%-12s broadcast is %.2fx the speed of rc[:]" % (system, times["direct"] / times["broadcast"]))
    if "ipyparallel" in results:
        for view in ("broadcast", "direct"):
            print("minipar %s is %.2fx the speed of ipyparallel's" % (view, results["ipyparallel"][view]
                                                                     / results["minipar"][view]))


if __name__ == "__main__":
    main()
