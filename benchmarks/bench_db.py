"""Load-balanced throughput with each task database, relative to DictDB.

    python benchmarks/bench_db.py [--tasks 10000]

Runs bench_core's workloads with the controller's db set to each backend (mongodb only
when MINIPAR_TEST_MONGODB_URL names a server) and prints tasks/s and the ratio to dict.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_core import run_minipar  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tasks", type=int, default=10000)
    p.add_argument("--rounds", type=int, default=200)
    p.add_argument("--engines", type=int, default=2)
    args = p.parse_args()
    backends = {"dict": [], "nodb": ["--nodb"], "sqlite": ["--db=sqlite"]}
    url = os.environ.get("MINIPAR_TEST_MONGODB_URL")
    if url:
        backends["mongodb"] = ["--db=mongodb", "--db.mongodb.connection_args=%s" % json.dumps([url])]
    results = {name: run_minipar(args, extra) for name, extra in backends.items()}
    base = results["dict"]
    print("%-8s %14s %7s %14s %7s" % ("db", "apply tasks/s", "ratio", "map tasks/s", "ratio"))
    for name, r in results.items():
        print("%-8s %14.0f %7.2f %14.0f %7.2f" % (
            name, r["lb_apply_tasks_per_s"], r["lb_apply_tasks_per_s"] / base["lb_apply_tasks_per_s"],
            r["lb_map_tasks_per_s"], r["lb_map_tasks_per_s"] / base["lb_map_tasks_per_s"]))


if __name__ == "__main__":
    main()
