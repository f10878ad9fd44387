"""Round-trip latency and load-balanced throughput, minipar vs ipyparallel.

    python benchmarks/bench_core.py [--tasks 10000] [--rounds 1000] [--engines 2]

Starts a controller and engines (as real processes) in a throwaway profile, then
measures the median and 95th percentile of ``rc[0].apply_sync(noop)`` and of a
load-balanced ``lview.apply_sync(noop)``, the rate of ``tasks`` no-op tasks submitted with
``apply_async`` to a load-balanced view and waited for, and the rate of ``lview.map_sync``
over ``tasks`` items (chunksize 1) and ``10 * tasks`` items (chunksize 100). When ipyparallel is importable, the same workloads run on an ipyparallel cluster
and the ratios are printed side by side.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))


def noop():
    pass


def measure(rc, lview, rounds, tasks):
    e0 = rc[rc.ids[0]]
    for _ in range(50):
        e0.apply_sync(noop)
    samples = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        e0.apply_sync(noop)
        samples.append(time.perf_counter() - t0)
    samples.sort()
    for _ in range(50):
        lview.apply_sync(noop)
    lb_samples = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        lview.apply_sync(noop)
        lb_samples.append(time.perf_counter() - t0)
    lb_samples.sort()
    lview.map_sync(noop_arg, range(200))
    t0 = time.perf_counter()
    ars = [lview.apply_async(noop) for _ in range(tasks)]
    for ar in ars:
        ar.get(120)
    apply_rate = tasks / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    lview.map_sync(noop_arg, range(tasks))
    map_rate = tasks / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    lview.map_sync(noop_arg, range(tasks * 10), chunksize=100)
    map100_rate = tasks * 10 / (time.perf_counter() - t0)
    return {
        "rtt_median_ms": statistics.median(samples) * 1e3,
        "rtt_p95_ms": samples[int(len(samples) * 0.95)] * 1e3,
        "rtt_lb_median_ms": statistics.median(lb_samples) * 1e3,
        "rtt_lb_p95_ms": lb_samples[int(len(lb_samples) * 0.95)] * 1e3,
        "lb_apply_tasks_per_s": apply_rate,
        "lb_map_tasks_per_s": map_rate,
        "lb_map_chunk100_per_s": map100_rate,
    }


def noop_arg(x):
    return x


def run_minipar(args, controller_args=()):
    import minipar

    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, MINIPAR_DIR=tmp, PYTHONPATH=os.pathsep.join([str(HERE.parent), str(HERE)]))
        py = sys.executable
        ctl = subprocess.Popen([py, "-m", "minipar.controller", "--log-level=WARNING", *controller_args], env=env,
                               cwd=str(HERE.parent))
        procs = [ctl]
        try:
            client_file = Path(tmp, "profile_default", "security", "controller-client.json")
            deadline = time.monotonic() + 30
            while not client_file.exists():
                if time.monotonic() > deadline:
                    raise RuntimeError("controller did not start")
                time.sleep(0.05)
            for _ in range(args.engines):
                procs.append(subprocess.Popen([py, "-m", "minipar.engine", "--log-level=WARNING"], env=env,
                                              cwd=str(HERE.parent)))
            rc = minipar.Client(url_file=str(client_file))
            rc.wait_for_engines(args.engines, timeout=60)
            result = measure(rc, rc.load_balanced_view(), args.rounds, args.tasks)
            rc.shutdown(hub=True)
            rc.close()
        finally:
            for p in procs:
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
    return result


def run_ipyparallel(args):
    import ipyparallel as ipp

    with ipp.Cluster(n=args.engines, log_level=40) as rc:
        rc.wait_for_engines(args.engines, timeout=60)
        return measure(rc, rc.load_balanced_view(), args.rounds, args.tasks)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tasks", type=int, default=10000)
    p.add_argument("--rounds", type=int, default=1000)
    p.add_argument("--engines", type=int, default=2)
    p.add_argument("--no-ipyparallel", action="store_true")
    args = p.parse_args()
    results = {"minipar": run_minipar(args)}
    if not args.no_ipyparallel:
        try:
            import ipyparallel  # noqa: F401
        except ImportError:
            print("(ipyparallel not installed: minipar figures only)")
        else:
            results["ipyparallel"] = run_ipyparallel(args)
    keys = list(results["minipar"])
    print("%-24s %12s %12s %8s" % ("metric", "minipar", "ipyparallel", "ratio"))
    for k in keys:
        m = results["minipar"][k]
        i = results.get("ipyparallel", {}).get(k)
        if i is None:
            print("%-24s %12.3f" % (k, m))
        else:
            better = i / m if k.startswith("rtt") else m / i
            print("%-24s %12.3f %12.3f %7.1fx" % (k, m, i, better))
    print("(ratio: how many times better minipar is)")


if __name__ == "__main__":
    main()
