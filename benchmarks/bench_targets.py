"""Every figure of issue 9's target table, minipar beside ipyparallel, in one run.

    python benchmarks/bench_targets.py [--rounds 3] [--quick] [--only rtt,fairness,...]
                                       [--no-ipyparallel] [--engines 2]

Run it with a Python that has both (``/tmp/ippvenv/bin/python benchmarks/bench_targets.py``):
minipar is imported from this checkout. The 2-engine clusters of both systems stay up
side by side; each round measures every cluster figure on one system and then on the
other, the order swapping every round, so both see the same machine load. Figures that
need a process of their own (import time, cluster start/stop, controller memory) start
it per round. Prints medians over the rounds as::

    figure | ipyparallel | minipar | target | met?

Figures (``--only`` names): rtt, lb_rtt, apply_rate, map1, map100, push_pull, push_all,
memory, import, cluster, fairness. ``fairness`` is the burst of the issue: right after
other work, ``lv.map_async(f, [2.0] + [0.01] * 100, ordered=False)`` where f sleeps its
argument; reported as wall time / 2 s and how many rounds ended with the long task.
``memory`` runs once per system (30k tasks at ipyparallel's ~300/s take minutes; memory
is not the noisy figure): the summed RSS of the controller's processes after 30,000
tiny load-balanced tasks with the default DictDB.
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
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

from bench_cluster import measure as measure_cluster  # noqa: E402
from bench_memory import total_rss_mb  # noqa: E402

MB = 1e6
ARRAY_MB = 100


def noop():
    pass


def identity(x):
    return x


def sleep_for(d):
    import time
    time.sleep(d)
    return d


# -- figures on a running cluster ------------------------------------------------------
# Each takes the cluster's state (rc, views, quick) and returns one number.

def fig_rtt(s):
    e0 = s.rc[s.rc.ids[0]]
    for _ in range(50):
        e0.apply_sync(noop)
    return _median_us(e0.apply_sync, noop, s.samples)


def fig_lb_rtt(s):
    for _ in range(50):
        s.lview.apply_sync(noop)
    return _median_us(s.lview.apply_sync, noop, s.samples)


def _median_us(call, f, n):
    samples = []
    for _ in range(n):
        t0 = time.perf_counter()
        call(f)
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples) * 1e6


def fig_apply_rate(s):
    s.lview.map_sync(identity, range(200))
    n = s.tasks
    t0 = time.perf_counter()
    ars = [s.lview.apply_async(noop) for _ in range(n)]
    for ar in ars:
        ar.get(300)
    rate = n / (time.perf_counter() - t0)
    s.rc.purge_hub_results("all")
    return rate


def _map_rate(s, chunksize):
    n = s.tasks
    t0 = time.perf_counter()
    s.lview.map_sync(identity, range(n), chunksize=chunksize)
    rate = n / (time.perf_counter() - t0)
    s.rc.purge_hub_results("all")
    return rate


def fig_map1(s):
    return _map_rate(s, 1)


def fig_map100(s):
    return _map_rate(s, 100)


def fig_push_pull(s):
    """(push MB/s, pull MB/s) of one 100 MB array to/from one engine."""
    view = s.rc[s.rc.ids[0]]
    view.push({"payload": None}, block=True)
    t0 = time.perf_counter()
    view.push({"payload": s.array}, block=True)
    push = ARRAY_MB / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    back = view.pull("payload", block=True)
    pull = ARRAY_MB / (time.perf_counter() - t0)
    assert back.shape == s.array.shape
    del back
    view.push({"payload": None}, block=True)
    s.rc.purge_hub_results("all")
    return (push, pull)


def fig_push_all(s):
    """(MB/s delivered to engines = 100 MB x engines / s, as bench_broadcast counts it; 100 MB / s)."""
    view = s.rc[:]
    t0 = time.perf_counter()
    view.push({"payload": s.array}, block=True)
    took = time.perf_counter() - t0
    rate = (ARRAY_MB * len(s.rc.ids) / took, ARRAY_MB / took)
    view.push({"payload": None}, block=True)
    s.rc.purge_hub_results("all")
    return rate


def fig_fairness(s):
    """(wall / longest task, 1 if the long task was the unordered map's last result)."""
    s.lview.map_sync(identity, range(200))
    durations = [2.0] + [0.01] * 100
    t0 = time.perf_counter()
    amr = s.lview.map_async(sleep_for, durations, ordered=False)
    order = list(amr)
    wall = time.perf_counter() - t0
    return (wall / max(durations), 1.0 if order[-1] == max(durations) else 0.0)


# -- figures with processes of their own -----------------------------------------------

def fig_import(system, quick):
    """Seconds of ``python -c "import <system>"``, median of several runs."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    runs = []
    for _ in range(3 if quick else 7):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import %s" % system], env=env, check=True)
        runs.append(time.perf_counter() - t0)
    return statistics.median(runs)


def fig_cluster(system, quick):
    """(start s, stop s) of a 2-engine Cluster, as benchmarks/bench_cluster.py times it."""
    r = measure_cluster(_cluster_factory(system), 2, 1)
    return (r["start_s"], r["stop_s"])


def fig_memory(system, quick):
    """MB of RSS summed over the controller and its child processes after 30k tiny tasks."""
    n = 3000 if quick else 30000
    cluster = _cluster_factory(system)(2)
    rc = cluster.start_and_connect_sync()
    try:
        rc.wait_for_engines(2, timeout=120)
        lview = rc.load_balanced_view()
        done = 0
        while done < n:
            batch = min(5000, n - done)
            ars = [lview.apply_async(noop) for _ in range(batch)]
            for ar in ars:
                ar.get(300)
            done += batch
        time.sleep(0.5)
        return total_rss_mb(cluster.controller.pid)
    finally:
        rc.close()
        cluster.stop_cluster_sync()


def _cluster_factory(system):
    if system == "minipar":
        import minipar
        return lambda n: minipar.Cluster(n=n, log_level="WARNING")
    import ipyparallel as ipp
    return lambda n: ipp.Cluster(n=n, log_level=40)


# -- the table ---------------------------------------------------------------------------

# name: (label, unit, format, target text, met(value), kind) ; kind "cluster" or "own"
FIGURES = {
    "rtt": ("rc[0].apply_sync(noop) round trip", "µs", "{:,.0f}", "≤ 600 µs", lambda v: v <= 600, fig_rtt),
    "lb_rtt": ("load-balanced apply_sync round trip", "µs", "{:,.0f}", "≤ 700 µs", lambda v: v <= 700, fig_lb_rtt),
    "apply_rate": ("10,000 lview.apply_async, submit all, wait all", "/s", "{:,.0f}", "≥ 10,000 /s",
                   lambda v: v >= 10000, fig_apply_rate),
    "map1": ("lview.map_sync(f, range(10000)) chunksize 1", "/s", "{:,.0f}", "≥ 10,000 /s",
             lambda v: v >= 10000, fig_map1),
    "map100": ("lview.map_sync(f, range(10000)) chunksize 100", "/s", "{:,.0f}", "≥ 600,000 /s",
               lambda v: v >= 600000, fig_map100),
    "push_pull": ("push / pull 100 MB numpy, one engine", "MB/s", "{:,.0f} / {:,.0f}", "≥ 850 / ≥ 850 MB/s",
                  lambda v: v[0] >= 850 and v[1] >= 850, fig_push_pull),
    "push_all": ("push 100 MB to both engines: delivered (array) MB/s", "MB/s", "{:,.0f} ({:,.0f})",
                 "≥ 550 MB/s", lambda v: v[0] >= 550, fig_push_all),
    "memory": ("controller RSS after 30k tasks (DictDB)", "MB", "{:,.0f}", "≤ 60 MB", lambda v: v <= 60, fig_memory),
    "import": ('python -c "import <pkg>"', "s", "{:.3f}", "≤ 0.06 s", lambda v: v <= 0.06, fig_import),
    "cluster": ("cluster start 2 engines / stop", "s", "{:.2f} / {:.2f}", "≤ 0.4 / ≤ 0.2 s",
                lambda v: v[0] <= 0.4 and v[1] <= 0.2, fig_cluster),
    "fairness": ("burst 1x2 s + 100x10 ms: wall / longest, long last", "", "{:.3f}, last {:.0%}", "≤ 1.02, last",
                 lambda v: v[0] <= 1.02 and v[1] == 1.0, fig_fairness),
}
OWN_PROCESS = {"memory", "import", "cluster"}


class ClusterState:
    def __init__(self, system, quick, need_array, engines):
        self.system = system
        self.samples = 200 if quick else 1000
        self.tasks = 10000
        self.engines = engines
        self.cluster = _cluster_factory(system)(engines)
        self.rc = self.cluster.start_and_connect_sync()
        self.rc.wait_for_engines(engines, timeout=120)
        self.lview = self.rc.load_balanced_view()
        self.array = None
        if need_array:
            import numpy
            self.array = numpy.random.default_rng(0).random(int(ARRAY_MB * MB / 8))

    def close(self):
        try:
            self.rc.close()
        finally:
            self.cluster.stop_cluster_sync()


def median_of(values):
    if isinstance(values[0], tuple):
        return tuple(statistics.median(v[i] for v in values) for i in range(len(values[0])))
    return statistics.median(values)


def run(args):
    names = list(FIGURES) if not args.only else [n.strip() for n in args.only.split(",")]
    unknown = [n for n in names if n not in FIGURES]
    if unknown:
        raise SystemExit("unknown figure(s) %s; choose from %s" % (", ".join(unknown), ", ".join(FIGURES)))
    systems = ["minipar"]
    if not args.no_ipyparallel:
        try:
            import ipyparallel  # noqa: F401
            systems.append("ipyparallel")
        except ImportError:
            print("(ipyparallel not importable: minipar figures only)")
    rounds = 1 if args.quick else args.rounds
    values = {s: {n: [] for n in names} for s in systems}
    cluster_names = [n for n in names if n not in OWN_PROCESS]
    need_array = any(n in ("push_pull", "push_all") for n in cluster_names)
    states = {}
    try:
        if cluster_names:
            for s in systems:
                states[s] = ClusterState(s, args.quick, need_array, args.engines)
        for r in range(rounds):
            order = systems if r % 2 == 0 else systems[::-1]
            for s in order:
                for n in names:
                    if n == "memory" and r > 0:
                        continue
                    fn = FIGURES[n][5]
                    v = fn(s, args.quick) if n in OWN_PROCESS else fn(states[s])
                    values[s][n].append(v)
                    print("round %d %-11s %-10s %s" % (r + 1, s, n, _fmt(n, v)), flush=True)
    finally:
        for st in states.values():
            st.close()
    return names, systems, rounds, {s: {n: median_of(v) for n, v in values[s].items()} for s in systems}


def _fmt(name, v):
    fmt = FIGURES[name][2]
    return fmt.format(*v) if isinstance(v, tuple) else fmt.format(v)


def print_table(names, systems, rounds, medians):
    print()
    print("medians of %d round(s); %d engines" % (rounds, 2))
    print("| figure | ipyparallel | minipar | target | met? |")
    print("|---|---|---|---|---|")
    for n in names:
        label, unit, _, target, met, _ = FIGURES[n]
        m = medians["minipar"][n]
        i = medians.get("ipyparallel", {}).get(n)
        ipp_text = (_fmt(n, i) + " " + unit) if i is not None else "-"
        print("| %s | %s | %s %s | %s | %s |" % (label, ipp_text, _fmt(n, m), unit, target, "yes" if met(m) else "NO"))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--quick", action="store_true", help="one round, fewer round-trip samples, 3k tasks for memory")
    p.add_argument("--only", help="comma-separated figures: " + ",".join(FIGURES))
    p.add_argument("--engines", type=int, default=2)
    p.add_argument("--no-ipyparallel", action="store_true")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["MINIPAR_DIR"] = tmp
        print_table(*run(args))


if __name__ == "__main__":
    main()
