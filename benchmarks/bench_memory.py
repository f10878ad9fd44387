"""Controller memory after many tiny load-balanced tasks, minipar vs ipyparallel.

    python benchmarks/bench_memory.py [--tasks 30000] [--nodb-tasks 10000,100000] [--engines 2]

Starts a controller and engines (real processes, in a throwaway profile), runs no-op
``lview.apply_async`` tasks in batches of 1000 (each batch waited for), and prints the
controller's resident memory (VmRSS from /proc) at each checkpoint: with the default
DictDB after ``--tasks``, and with ``--nodb`` at each of ``--nodb-tasks`` (flat is the
goal there). With ``--source DIR`` the minipar processes run the copy in DIR (say, a
checkout of an earlier commit), for a before/after in one run. When ipyparallel is
importable, its controller (the sum of its processes: hub and schedulers) runs the DictDB
case side by side.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BATCH = 1000


def noop():
    pass


def rss_mb(pid: int) -> float:
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def descendants(pid: int) -> list:
    """pid and every process below it (ipyparallel's controller forks its schedulers)."""
    children: dict = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open("/proc/%s/stat" % entry) as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        todo.extend(children.get(p, ()))
    return found


def total_rss_mb(pid: int) -> float:
    total = 0.0
    for p in descendants(pid):
        try:
            total += rss_mb(p)
        except OSError:
            pass
    return total


def run_tasks(lview, checkpoints, measure) -> list:
    done, figures = 0, []
    for target in checkpoints:
        while done < target:
            ars = [lview.apply_async(noop) for _ in range(min(BATCH, target - done))]
            for ar in ars:
                ar.get(120)
            done += len(ars)
        time.sleep(0.5)
        figures.append((done, measure()))
    return figures


def run_minipar(source: Path, engines: int, controller_args, checkpoints) -> list:
    sys.path.insert(0, str(source))
    import minipar

    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, MINIPAR_DIR=tmp, PYTHONPATH=str(source))
        py = sys.executable
        # cwd=tmp: `python -m` puts the working directory first on sys.path
        ctl = subprocess.Popen([py, "-m", "minipar.controller", "--log-level=WARNING", *controller_args],
                               env=env, cwd=tmp)
        procs = [ctl]
        try:
            client_file = Path(tmp, "profile_default", "security", "controller-client.json")
            deadline = time.monotonic() + 30
            while not client_file.exists():
                if time.monotonic() > deadline:
                    raise RuntimeError("controller did not start")
                time.sleep(0.05)
            for _ in range(engines):
                procs.append(subprocess.Popen([py, "-m", "minipar.engine", "--log-level=WARNING"], env=env, cwd=tmp))
            rc = minipar.Client(url_file=str(client_file))
            rc.wait_for_engines(engines, timeout=60)
            lview = rc.load_balanced_view()
            lview.apply_sync(noop)
            figures = [(0, rss_mb(ctl.pid))] + run_tasks(lview, checkpoints, lambda: rss_mb(ctl.pid))
            rc.shutdown(hub=True)
            rc.close()
        finally:
            for p in procs:
                try:
                    p.wait(20)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
    return figures


def run_ipyparallel(engines: int, checkpoints) -> list:
    import ipyparallel as ipp

    cluster = ipp.Cluster(n=engines, log_level=40)
    with cluster as rc:
        rc.wait_for_engines(engines, timeout=60)
        pid = cluster.controller.pid
        lview = rc.load_balanced_view()
        lview.apply_sync(noop)
        return [(0, total_rss_mb(pid))] + run_tasks(lview, checkpoints, lambda: total_rss_mb(pid))


def show(label, figures):
    print("%-34s %s" % (label, "   ".join("%6d tasks: %6.1f MB" % f for f in figures)), flush=True)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tasks", type=int, default=30000, help="tasks for the DictDB case")
    p.add_argument("--nodb-tasks", default="10000,100000", help="checkpoints for the --nodb case")
    p.add_argument("--engines", type=int, default=2)
    p.add_argument("--source", type=Path, default=HERE.parent, help="minipar tree to run (default: this one)")
    p.add_argument("--no-ipyparallel", action="store_true")
    args = p.parse_args()
    source = args.source.resolve()
    nodb = [int(n) for n in args.nodb_tasks.split(",") if n]
    print("controller RSS (VmRSS) after N tiny load-balanced tasks, %d engines; minipar from %s"
          % (args.engines, source))
    show("minipar, DictDB (default)", run_minipar(source, args.engines, [], [args.tasks]))
    if nodb:
        show("minipar, --nodb", run_minipar(source, args.engines, ["--nodb"], nodb))
    if not args.no_ipyparallel:
        try:
            import ipyparallel  # noqa: F401
        except ImportError:
            print("(ipyparallel not installed: minipar figures only)")
        else:
            show("ipyparallel, DictDB (all procs)", run_ipyparallel(args.engines, [args.tasks]))


if __name__ == "__main__":
    main()
