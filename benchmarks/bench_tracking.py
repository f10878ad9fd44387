"""What tracking zero-copy buffers costs: ``send_frames`` with and without MessageTrackers.

    python benchmarks/bench_tracking.py [--rounds 5]

The client tracks every buffer it sends zero-copy (64 KiB and up), so that ``ar.sent`` and
``ar.wait_for_send()`` are always true (ipyparallel tracks only with ``track=True``). This
sends messages of a small signed header and one buffer of each size over tcp on localhost to
a receiver thread, alternating tracked and untracked runs, and prints the median µs per
message of each and their ratio. A tracked frame costs pyzmq a threading.Event, set when
libzmq frees the message.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import zmq  # noqa: E402

from minipar.protocol import recv_frames, send_frames  # noqa: E402

SIZES = {"64 KiB": 64 * 1024, "1 MiB": 1024 * 1024, "100 MB": 100 * 1000 * 1000}
BYTES_PER_RUN = 400 * 1000 * 1000


def run(sender, count, buffer, tracked):
    t0 = time.perf_counter()
    for _ in range(count):
        trackers = [] if tracked else None
        send_frames(sender, [b"header"], [buffer], trackers)
    return t0


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=5)
    args = p.parse_args()
    ctx = zmq.Context()
    sender, receiver = ctx.socket(zmq.PUSH), ctx.socket(zmq.PULL)
    port = receiver.bind_to_random_port("tcp://127.0.0.1")
    sender.connect("tcp://127.0.0.1:%d" % port)
    sender.setsockopt(zmq.SNDHWM, 16)
    print("| buffer | untracked µs/msg | tracked µs/msg | tracked / untracked |")
    print("|---|---|---|---|")
    for name, size in SIZES.items():
        buffer = memoryview(bytearray(size))
        count = max(3, BYTES_PER_RUN // size)
        times = {False: [], True: []}
        for r in range(args.rounds):
            for tracked in ((False, True) if r % 2 == 0 else (True, False)):
                got = []
                t = threading.Thread(target=lambda: got.extend(recv_frames(receiver) and 1 for _ in range(count)))
                t.start()
                t0 = run(sender, count, buffer, tracked)
                t.join()
                times[tracked].append((time.perf_counter() - t0) / count * 1e6)
        plain, tracked = statistics.median(times[False]), statistics.median(times[True])
        print("| %s | %.1f | %.1f | %.3f |" % (name, plain, tracked, tracked / plain))
    sender.close(0)
    receiver.close(0)
    ctx.term()


if __name__ == "__main__":
    main()
