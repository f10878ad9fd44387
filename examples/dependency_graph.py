"""Run a task graph on a running cluster: each task starts only once its parents are done.

    python -m minipar.cluster start -n 4 --daemonize          # or any controller + engines
    python examples/dependency_graph.py [--profile NAME | --url-file FILE]

The graph is a diamond with a tail, plus a branch whose root fails:

    load -> (left, right) -> merge -> report          broken -> never_runs

Every task is submitted at once, each with ``lview.temp_flags(after=[parents])``; the
controller holds a task until its parents finished, and answers one whose parent failed
with ImpossibleDependency instead of running it. The schedule printed at the end comes
from each task's metadata (started/completed on its engine).
"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import minipar as ipp  # noqa: E402

GRAPH = {                      # task: its parents
    "load": [],
    "left": ["load"],
    "right": ["load"],
    "merge": ["left", "right"],
    "report": ["merge"],
    "broken": [],
    "never_runs": ["broken"],
}


def step(name, seconds, *parents):
    """Stand-in work: sleep, then say which task this was and what it waited for."""
    import time
    if name == "broken":
        raise RuntimeError("this branch fails on purpose")
    time.sleep(seconds)
    return "%s after %s" % (name, "+".join(parents)) if parents else name


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    where = p.add_mutually_exclusive_group()
    where.add_argument("--profile", help="profile name of the running cluster (default: default)")
    where.add_argument("--url-file", help="the controller's client connection file")
    p.add_argument("--cluster-id", default="", help="cluster id, if the controller was started with one")
    p.add_argument("--seconds", type=float, default=0.2, help="how long each task works")
    args = p.parse_args()

    with ipp.Client(url_file=args.url_file, profile=args.profile, cluster_id=args.cluster_id or None) as rc:
        rc.wait_for_engines(1, timeout=60)
        lview = rc.load_balanced_view()
        results = {}
        for name, parents in GRAPH.items():     # parents come first in GRAPH
            with lview.temp_flags(after=[results[p] for p in parents]):
                results[name] = lview.apply_async(step, name, args.seconds, *parents)
        rc.wait(list(results.values()), timeout=120)

        for name, ar in results.items():
            try:
                value = ar.get(0)
            except ipp.RemoteError as e:
                print("%-10s %s: %s" % (name, e.ename, e.evalue))
            else:
                print("%-10s ok on engine %s: %s" % (name, ar.metadata["engine_id"], value))
        done = {n: ar.metadata for n, ar in results.items() if ar.successful()}
        for name, parents in GRAPH.items():
            for parent in parents:
                if name in done and done[name]["started"] < done[parent]["completed"]:
                    sys.exit("%s started before its parent %s finished" % (name, parent))
        order = sorted(done, key=lambda n: done[n]["started"])
        print("start order:", " ".join(order))
        print("every task started after its parents finished")


if __name__ == "__main__":
    main()
