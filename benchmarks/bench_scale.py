"""How the controller's cost grows with engines and with tasks, minipar beside ipyparallel.

    python benchmarks/bench_scale.py [--engines 1 2 8 32] [--tasks 10000] [--samples 500]
                                     [--nodb-tasks 100000] [--only engines|nodb] [--no-ipyparallel]

``engines``: for each engine count, real engine processes (32 on a 2-core machine are
oversubscribed: what is measured is the controller's overhead per engine, not compute) and
the median round trip of ``rc[0].apply_sync(noop)`` and of a load-balanced ``apply_sync``,
the rate of ``--tasks`` no-op ``apply_async`` submitted at once and waited for, and of
``map_sync(f, range(tasks))``; for minipar also the controller's CPU µs per task (utime +
stime from /proc over the apply_async run). The two systems alternate per engine count.

``nodb``: ``--nodb-tasks`` no-op tasks through a ``--nodb`` controller with 2 engines, in
batches of 10,000, the controller's RSS after each batch: with no records kept it should be
flat from 10k on. minipar only (ipyparallel runs ~300 tasks/s: 100k would take minutes).
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from bench_memory import total_rss_mb  # noqa: E402
from bench_targets import _median_us  # noqa: E402
from sim_engines import Controller, cpu_seconds  # noqa: E402


def noop():
    pass


def identity(x):
    return x


def measure(rc, tasks, samples, controller_pid=None):
    e0 = rc[rc.ids[0]]
    lview = rc.load_balanced_view()
    for _ in range(50):
        e0.apply_sync(noop)
        lview.apply_sync(noop)
    r = {"rtt_us": _median_us(e0.apply_sync, noop, samples), "lb_rtt_us": _median_us(lview.apply_sync, noop, samples)}
    lview.map_sync(identity, range(200))
    cpu0 = cpu_seconds(controller_pid) if controller_pid else 0.0
    t0 = time.perf_counter()
    ars = [lview.apply_async(noop) for _ in range(tasks)]
    for ar in ars:
        ar.get(600)
    r["apply_per_s"] = tasks / (time.perf_counter() - t0)
    if controller_pid:
        r["controller_us_per_task"] = 1e6 * (cpu_seconds(controller_pid) - cpu0) / tasks
    r["engines_used"] = len({ar.engine_id for ar in ars})
    t0 = time.perf_counter()
    lview.map_sync(identity, range(tasks))
    r["map_per_s"] = tasks / (time.perf_counter() - t0)
    rc.purge_hub_results("all")
    return r


class MiniparEngines:
    """A controller and n engine processes in a throwaway profile."""

    def __init__(self, n, controller_args=()):
        import minipar

        self.tmp = tempfile.TemporaryDirectory()
        self.ctl = Controller(self.tmp.name, controller_args)
        env = dict(self.ctl_env())
        self.engines = [subprocess.Popen([sys.executable, "-m", "minipar.engine", "--log-level=WARNING"], env=env,
                                         cwd=str(HERE.parent)) for _ in range(n)]
        self.rc = minipar.Client(url_file=str(self.ctl.client_file))
        self.rc.wait_for_engines(n, timeout=300)

    def ctl_env(self):
        import os
        return dict(os.environ, MINIPAR_DIR=self.tmp.name, PYTHONPATH=str(HERE.parent))

    def close(self):
        try:
            self.rc.shutdown(hub=False)
        except Exception:  # noqa: BLE001 - stopping what we started matters more
            pass
        self.rc.close()
        for p in self.engines:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.ctl.stop()
        self.tmp.cleanup()


def run_minipar(n, tasks, samples):
    m = MiniparEngines(n)
    try:
        return measure(m.rc, tasks, samples, m.ctl.pid)
    finally:
        m.close()


def run_ipyparallel(n, tasks, samples):
    import ipyparallel as ipp

    with ipp.Cluster(n=n, log_level=40) as rc:
        rc.wait_for_engines(n, timeout=600)
        return measure(rc, tasks, samples)


def scale_engines(args):
    systems = {"minipar": run_minipar}
    if not args.no_ipyparallel:
        try:
            import ipyparallel  # noqa: F401
            systems["ipyparallel"] = run_ipyparallel
        except ImportError:
            print("(ipyparallel not importable: minipar figures only)")
    rows = []
    for i, n in enumerate(args.engines):
        names = list(systems) if i % 2 == 0 else list(systems)[::-1]
        for name in names:
            r = systems[name](n, args.tasks, args.samples)
            r.update(system=name, engines=n)
            print(r, flush=True)
            rows.append(r)
    print()
    print("| engines | system | rc[0] round trip | lb round trip | %d apply_async | map_sync chunksize 1 "
          "| controller CPU/task | engines used |" % args.tasks)
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        cpu = "%.0f µs" % r["controller_us_per_task"] if "controller_us_per_task" in r else "-"
        print("| %d | %s | %.0f µs | %.0f µs | %.0f /s | %.0f /s | %s | %d |" % (
            r["engines"], r["system"], r["rtt_us"], r["lb_rtt_us"], r["apply_per_s"], r["map_per_s"], cpu,
            r["engines_used"]))


def nodb_memory(args):
    m = MiniparEngines(2, ["--nodb"])
    try:
        lview = m.rc.load_balanced_view()
        lview.map_sync(identity, range(200))
        rows = [(0, total_rss_mb(m.ctl.pid))]
        done = 0
        t0 = time.perf_counter()
        while done < args.nodb_tasks:
            batch = min(10000, args.nodb_tasks - done)
            ars = [lview.apply_async(noop) for _ in range(batch)]
            for ar in ars:
                ar.get(600)
            del ars
            m.rc.purge_results("all")
            done += batch
            rows.append((done, total_rss_mb(m.ctl.pid)))
            print("%d tasks: controller RSS %.1f MB" % rows[-1], flush=True)
        rate = done / (time.perf_counter() - t0)
    finally:
        m.close()
    print()
    print("--nodb, 2 engines, %d tasks at %.0f /s; controller RSS:" % (args.nodb_tasks, rate))
    print("| tasks | " + " | ".join("%dk" % (d // 1000) for d, _ in rows) + " |")
    print("|---|" + "---|" * len(rows))
    print("| RSS MB | " + " | ".join("%.1f" % mb for _, mb in rows) + " |")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--engines", type=int, nargs="+", default=[1, 2, 8, 32])
    p.add_argument("--tasks", type=int, default=10000)
    p.add_argument("--samples", type=int, default=500, help="round trips timed per figure")
    p.add_argument("--nodb-tasks", type=int, default=100000)
    p.add_argument("--only", choices=("engines", "nodb"))
    p.add_argument("--no-ipyparallel", action="store_true")
    args = p.parse_args()
    if args.only != "nodb":
        scale_engines(args)
    if args.only != "engines":
        nodb_memory(args)


if __name__ == "__main__":
    main()
