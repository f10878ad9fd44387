"""Bulk data bandwidth: push and pull of a large numpy array, minipar vs ipyparallel.

    python benchmarks/bench_data.py [--mb 100] [--rounds 7] [--engines 2]

Starts a minipar controller and engines (real processes, through minipar.Cluster, in a
throwaway profile) and, when ipyparallel is importable, an ipyparallel cluster, then
alternates rounds between them so both see the same machine load. Each round times, with ``block=True``:

- push: ``rc[0].push({"a": array})``
- pull: ``rc[0].pull("a")``
- push-both: ``rc[:].push({"a": array})`` (every engine gets the array)
- push-both/1 (minipar only): the same with the DirectView's fan-out turned off
  (``view.FANOUT_BYTES``), i.e. one message per engine from the client, as before it

MB/s is the array's size over the wall time of one call (for push-both too), median of
the rounds. For reference, the same run measures one zmq frame of that size over tcp
localhost straight to a receiver (1 hop) and through a Python relay that forwards it
with copy=False (2 hops: a push or pull goes client -> controller -> engine).
Results are purged from the controllers between rounds, outside the timing. With
--huge-pages-too a second minipar cluster runs with glibc's huge pages for large blocks
(GLIBC_TUNABLES=glibc.malloc.hugetlb=1; see minipar/cluster/launchers/base.py child_env).
"""
from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

FIGURES = ("push", "pull", "push-both", "push-both/1")


def one_round(rc, array):
    """Seconds for each figure, on a cluster whose engine 0 may hold an old 'a'."""
    e0, every = rc[rc.ids[0]], rc[:]
    out = {}
    e0.push({"a": None}, block=True)
    t0 = time.perf_counter()
    e0.push({"a": array}, block=True)
    out["push"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    back = e0.pull("a", block=True)
    out["pull"] = time.perf_counter() - t0
    assert back.shape == array.shape
    del back
    every.push({"a": None}, block=True)
    t0 = time.perf_counter()
    every.push({"a": array}, block=True)
    out["push-both"] = time.perf_counter() - t0
    every.push({"a": None}, block=True)
    fanout = getattr(sys.modules.get(type(every).__module__), "FANOUT_BYTES", None)
    if fanout is not None:  # minipar: the same push with one message per engine (fan-out off)
        sys.modules[type(every).__module__].FANOUT_BYTES = float("inf")
        try:
            t0 = time.perf_counter()
            every.push({"a": array}, block=True)
            out["push-both/1"] = time.perf_counter() - t0
        finally:
            sys.modules[type(every).__module__].FANOUT_BYTES = fanout
        every.push({"a": None}, block=True)
    rc.purge_hub_results("all")
    return out


class MiniparCluster:
    """A controller and engines started by minipar.Cluster (real processes, own profile),
    so they get the environment its launchers give them. ``env`` is set while they start."""

    def __init__(self, engines, env=None):
        import minipar

        self.tmp = tempfile.TemporaryDirectory()
        saved = {k: os.environ.get(k) for k in (env or {})}
        os.environ.update(env or {})
        try:
            self.cluster = minipar.Cluster(n=engines, profile_dir=self.tmp.name, log_level="WARNING")
            self.rc = self.cluster.start_and_connect_sync()
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        self.rc.wait_for_engines(engines, timeout=60)

    def close(self):
        self.rc.close()
        self.cluster.stop_cluster_sync()
        self.tmp.cleanup()


class IpyparallelCluster:
    def __init__(self, engines):
        import ipyparallel as ipp

        self.cluster = ipp.Cluster(n=engines, log_level=40)
        self.rc = self.cluster.start_and_connect_sync()
        self.rc.wait_for_engines(engines, timeout=120)

    def close(self):
        self.rc.close()
        self.cluster.stop_cluster_sync()


# -- raw zmq reference: the same bytes with nothing but zmq (and a Python relay) --------


def _raw_sink(ports):
    import zmq

    s = zmq.Context().socket(zmq.ROUTER)
    ports.put(s.bind_to_random_port("tcp://127.0.0.1"))
    while True:
        ident, frame = s.recv_multipart(copy=False)
        if len(frame) == 1:
            return
        s.send_multipart([ident.bytes, b"ok"])


def _raw_relay(url_out, ports):
    import zmq

    ctx = zmq.Context()
    front, back = ctx.socket(zmq.ROUTER), ctx.socket(zmq.DEALER)
    ports.put(front.bind_to_random_port("tcp://127.0.0.1"))
    back.connect(url_out)
    poller = zmq.Poller()
    poller.register(front, zmq.POLLIN)
    poller.register(back, zmq.POLLIN)
    sender = None
    while True:
        for sock, _ in poller.poll():
            if sock is front:
                ident, frame = front.recv_multipart(copy=False)
                sender = ident.bytes
                back.send(frame, copy=False)
                if len(frame) == 1:
                    return
            else:
                front.send_multipart([sender] + back.recv_multipart())


class RawZmq:
    """A sender in this process, a sink process, and (for 2 hops) a relay process between."""

    def __init__(self, hops):
        import zmq

        mp = multiprocessing.get_context("spawn")
        ports = mp.Queue()
        self.procs = [mp.Process(target=_raw_sink, args=(ports,), daemon=True)]
        self.procs[0].start()
        url = "tcp://127.0.0.1:%d" % ports.get(timeout=30)
        if hops == 2:
            self.procs.append(mp.Process(target=_raw_relay, args=(url, ports), daemon=True))
            self.procs[1].start()
            url = "tcp://127.0.0.1:%d" % ports.get(timeout=30)
        self.sock = zmq.Context.instance().socket(zmq.DEALER)
        self.sock.connect(url)
        self.sock.send(b"warm-up")
        self.sock.recv()

    def once(self, array):
        t0 = time.perf_counter()
        self.sock.send(array, copy=False)
        self.sock.recv()
        return time.perf_counter() - t0

    def close(self):
        self.sock.send(b"x")
        for p in self.procs:
            p.join(10)
            if p.is_alive():
                p.kill()
        self.sock.close()


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--mb", type=float, default=100)
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--engines", type=int, default=2)
    p.add_argument("--no-ipyparallel", action="store_true")
    p.add_argument("--no-raw", action="store_true", help="skip the raw zmq reference figures")
    p.add_argument("--huge-pages-too", action="store_true",
                   help="also run a minipar cluster whose processes ask glibc for huge pages "
                        "(GLIBC_TUNABLES=glibc.malloc.hugetlb=1)")
    args = p.parse_args()
    import numpy

    array = numpy.random.default_rng(0).random(int(args.mb * 1e6 / 8))
    size_mb = array.nbytes / 1e6
    systems = {}
    raws = {}
    try:
        systems["minipar"] = MiniparCluster(args.engines)
        if args.huge_pages_too:
            systems["minipar-huge"] = MiniparCluster(args.engines, {"GLIBC_TUNABLES": "glibc.malloc.hugetlb=1"})
        if not args.no_ipyparallel:
            try:
                import ipyparallel  # noqa: F401
            except ImportError:
                print("(ipyparallel not installed: minipar figures only)")
            else:
                systems["ipyparallel"] = IpyparallelCluster(args.engines)
        if not args.no_raw:
            raws = {"zmq 1 hop": RawZmq(1), "zmq 2 hops": RawZmq(2)}
        times = {name: {f: [] for f in FIGURES} for name in systems}
        raw_times = {name: [] for name in raws}
        for name, system in systems.items():  # warm-up: imports, first allocations
            one_round(system.rc, array)
        for name, raw in raws.items():
            raw.once(array)
        for _ in range(args.rounds):
            for name, system in systems.items():
                for f, t in one_round(system.rc, array).items():
                    times[name][f].append(t)
            for name, raw in raws.items():
                raw_times[name].append(raw.once(array))
    finally:
        for system in systems.values():
            system.close()
        for raw in raws.values():
            raw.close()
    rate = {name: {f: size_mb / statistics.median(ts) for f, ts in figs.items() if ts}
            for name, figs in times.items()}
    print("%.0f MB numpy array, %d engines, MB/s (array size / wall time), median of %d rounds"
          % (size_mb, args.engines, args.rounds))
    names = list(rate)
    print("%-12s" % "figure" + "".join("%13s" % n for n in names) + ("%10s" % "ratio" if "ipyparallel" in rate else ""))
    for f in FIGURES:
        row = "%-12s" % f + "".join("%13.0f" % rate[n][f] if f in rate[n] else "%13s" % "-" for n in names)
        if "ipyparallel" in rate and f in rate["ipyparallel"]:
            row += "%9.2fx" % (rate["minipar"][f] / rate["ipyparallel"][f])
        print(row)
    for name, ts in raw_times.items():
        print("%-12s %13.0f   (reference: one %.0f MB zmq frame, tcp localhost)"
              % (name, size_mb / statistics.median(ts), size_mb))
    if "ipyparallel" in rate:
        print("(ratio: minipar / ipyparallel; higher is better)")


if __name__ == "__main__":
    main()
