"""What encryption costs: the same cluster with ``[controller] curve`` "false" and "true".

    python benchmarks/bench_curve.py [--rounds 5] [--engines 2]

Two minipar clusters (real processes, own throwaway profiles), one encrypted, alternating
rounds; per round: the ``rc[0].apply_sync`` round trip (median of 300), 5,000 no-op
``lview.apply_async`` (submit all, wait all), and a 100 MB push to one engine. Prints the
medians and curve / plain ratios.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def noop():
    pass


class EncryptedOrNot:
    def __init__(self, setting, engines):
        import minipar

        self.tmp = tempfile.TemporaryDirectory()
        Path(self.tmp.name, "minipar.toml").write_text('[controller]\ncurve = "%s"\n' % setting)
        self.cluster = minipar.Cluster(n=engines, profile_dir=self.tmp.name, log_level="WARNING")
        self.rc = self.cluster.start_and_connect_sync()
        self.rc.wait_for_engines(engines, timeout=60)
        assert ("curve_serverkey" in self.rc._info) == (setting == "true")
        self.lview = self.rc.load_balanced_view()

    def round(self, array):
        e0 = self.rc[self.rc.ids[0]]
        samples = []
        for _ in range(300):
            t0 = time.perf_counter()
            e0.apply_sync(noop)
            samples.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        for ar in [self.lview.apply_async(noop) for _ in range(5000)]:
            ar.get(60)
        rate = 5000 / (time.perf_counter() - t0)
        e0.push({"a": None}, block=True)
        t0 = time.perf_counter()
        e0.push({"a": array}, block=True)
        push = array.nbytes / 1e6 / (time.perf_counter() - t0)
        e0.push({"a": None}, block=True)
        self.rc.purge_results("all")
        return {"rtt_us": statistics.median(samples) * 1e6, "tasks_per_s": rate, "push_MB_s": push}

    def close(self):
        self.rc.close()
        self.cluster.stop_cluster_sync()
        self.tmp.cleanup()


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--engines", type=int, default=2)
    args = p.parse_args()
    import numpy
    array = numpy.ones(100 * 1000 * 1000 // 8)
    systems = {"plain": EncryptedOrNot("false", args.engines), "curve": EncryptedOrNot("true", args.engines)}
    results = {name: [] for name in systems}
    try:
        for r in range(args.rounds):
            for name in (list(systems) if r % 2 == 0 else list(systems)[::-1]):
                results[name].append(systems[name].round(array))
    finally:
        for s in systems.values():
            s.close()
    print("| figure | plain | curve | curve / plain |")
    print("|---|---|---|---|")
    for key in ("rtt_us", "tasks_per_s", "push_MB_s"):
        plain = statistics.median(r[key] for r in results["plain"])
        enc = statistics.median(r[key] for r in results["curve"])
        print("| %s | %.0f | %.0f | %.2f |" % (key, plain, enc, enc / plain))


if __name__ == "__main__":
    main()
