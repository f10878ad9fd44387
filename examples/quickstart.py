"""Quickstart: a local cluster, code on every engine, tasks balanced over them, and the end.

    python examples/quickstart.py [--engines 4]

What an ipyparallel user does first, with `import minipar as ipp`: start a controller and
engines with the Cluster API, run a function on every engine with a DirectView, move data
(push, scatter, pull), then hand tasks to whichever engine is free with a load-balanced view.
Leaving the `with` block stops every process it started.
"""
import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))   # run from a clone, installed or not
import minipar as ipp  # noqa: E402


def collatz_steps(n):
    """How many steps the Collatz sequence from n takes to reach 1."""
    steps = 0
    while n != 1:
        n = 3 * n + 1 if n % 2 else n // 2
        steps += 1
    return steps


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--engines", type=int, default=4)
    args = p.parse_args()

    with ipp.Cluster(n=args.engines, log_level="WARNING") as rc:
        print("engine ids:", rc.ids)

        dv = rc[:]                                        # a DirectView: every engine
        dv.block = True                                   # calls wait for their results
        print("engine pids:", dv.apply(os.getpid))
        dv.execute("import math")                         # runs in each engine's namespace
        dv.push({"scale": 10})
        print("sqrt(scale) on each:", dv.apply(lambda: round(math.sqrt(scale), 3)))
        dv.scatter("part", list(range(12)))               # each engine gets a slice
        print("parts:", dv.pull("part"))
        print("sum of each part:", dv.apply(lambda: sum(part)))

        lview = rc.load_balanced_view()                   # tasks go to whichever engine is free
        steps = lview.map_sync(collatz_steps, range(1, 1001))
        longest = max(range(1, 1001), key=lambda n: steps[n - 1])
        print("longest Collatz sequence below 1000 starts at %d: %d steps" % (longest, steps[longest - 1]))
        ar = lview.apply_async(collatz_steps, 27)         # an AsyncResult: a Future
        print("27 takes %d steps (engine %d)" % (ar.get(timeout=30), ar.engine_id))


if __name__ == "__main__":
    main()
