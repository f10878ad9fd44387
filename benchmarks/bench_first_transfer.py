"""The first large transfers into a fresh cluster, with and without glibc's huge pages.

    python benchmarks/bench_first_transfer.py [--mb 100] [--rounds 4]

What a user sees right after starting a cluster: each round starts a cluster of one engine
(minipar.Cluster, real processes) once with ``GLIBC_TUNABLES=glibc.malloc.hugetlb=1`` and
once with ``hugetlb=0``, imports numpy on the engine (outside the timing), then times a push
of the array, a pull of it and a second push, in MB/s. The launchers set neither (see
minipar/cluster/launchers/base.py child_env); this is the measurement behind that choice.
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

SETTINGS = ("glibc.malloc.hugetlb=1", "glibc.malloc.hugetlb=0")
STEPS = ("first push", "first pull", "second push")


def one_cluster(array, tunables: str) -> list:
    import minipar

    saved = os.environ.get("GLIBC_TUNABLES")
    os.environ["GLIBC_TUNABLES"] = tunables
    try:
        with tempfile.TemporaryDirectory() as profile_dir:
            cluster = minipar.Cluster(n=1, profile_dir=profile_dir, log_level="WARNING")
            rc = cluster.start_and_connect_sync()
            try:
                rc.wait_for_engines(1, timeout=60)
                rc[0].execute("import numpy", block=True)
                times = []
                for step in (lambda: rc[0].push({"a": array}, block=True), lambda: rc[0].pull("a", block=True),
                             lambda: rc[0].push({"b": array}, block=True)):
                    t0 = time.perf_counter()
                    step()
                    times.append(time.perf_counter() - t0)
                return [array.nbytes / 1e6 / t for t in times]
            finally:
                rc.close()
                cluster.stop_cluster_sync()
    finally:
        if saved is None:
            os.environ.pop("GLIBC_TUNABLES", None)
        else:
            os.environ["GLIBC_TUNABLES"] = saved


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--mb", type=float, default=100)
    p.add_argument("--rounds", type=int, default=4)
    args = p.parse_args()
    import numpy

    array = numpy.random.default_rng(0).random(int(args.mb * 1e6 / 8))
    rates = {s: [] for s in SETTINGS}
    for _ in range(args.rounds):
        for setting in SETTINGS:  # alternating, so both see the same machine
            rates[setting].append(one_cluster(array, setting))
    print("%.0f MB array into a fresh 1-engine cluster, MB/s per round (median)" % (array.nbytes / 1e6))
    for setting, rounds in rates.items():
        for i, step in enumerate(STEPS):
            values = [r[i] for r in rounds]
            print("%-24s %-12s %s (%.0f)" % (setting, step, " ".join("%5.0f" % v for v in values),
                                              statistics.median(values)))


if __name__ == "__main__":
    main()
