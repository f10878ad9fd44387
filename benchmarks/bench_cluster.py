"""Cluster start-up and shut-down time, minipar vs ipyparallel.

    python benchmarks/bench_cluster.py [--engines 2] [--repeat 5] [--launcher slurm]

Times ``Cluster(n).start_and_connect_sync()`` until n engines are registered, and
``stop_cluster_sync()`` until every process is gone; reports the median of the repeats.
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


def measure(make_cluster, n, repeat):
    starts, stops = [], []
    for _ in range(repeat):
        cluster = make_cluster(n)
        t0 = time.perf_counter()
        rc = cluster.start_and_connect_sync()
        rc.wait_for_engines(n, timeout=120)
        starts.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        cluster.stop_cluster_sync()
        stops.append(time.perf_counter() - t0)
    return {"start_s": statistics.median(starts), "stop_s": statistics.median(stops)}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--engines", type=int, default=2)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--launcher", default="local", help="engine launcher for both: local, mpi, slurm, sge...")
    p.add_argument("--no-ipyparallel", action="store_true")
    args = p.parse_args()
    import minipar

    with tempfile.TemporaryDirectory() as tmp:
        os.environ["MINIPAR_DIR"] = tmp
        results = {"minipar": measure(lambda n: minipar.Cluster(n=n, engines=args.launcher, log_level="WARNING"), args.engines,
                                      args.repeat)}
    if not args.no_ipyparallel:
        try:
            import ipyparallel as ipp
        except ImportError:
            print("(ipyparallel not installed: minipar figures only)")
        else:
            results["ipyparallel"] = measure(lambda n: ipp.Cluster(n=n, engines=args.launcher, log_level=40),
                                             args.engines, args.repeat)
    print("%-10s %12s %12s %8s" % ("metric", "minipar", "ipyparallel", "ratio"))
    for k, m in results["minipar"].items():
        i = results.get("ipyparallel", {}).get(k)
        if i is None:
            print("%-10s %12.3f" % (k, m))
        else:
            print("%-10s %12.3f %12.3f %7.1fx" % (k, m, i, i / m))
    print("(seconds, median of %d; ratio: how many times faster minipar is)" % args.repeat)


if __name__ == "__main__":
    main()
