"""The ZeroMQ context of a controller, an engine or a client: its I/O threads run SCHED_BATCH.

ZeroMQ moves every message through an I/O thread of its own, which wakes for each batch
of messages a Python thread sends or is sent. Under Linux's default policy a thread that
wakes preempts the one running on its CPU, so on a busy node each wake-up stopped the very
Python thread that produces or consumes the messages, and a task's four messages cost four
to six context switches. SCHED_BATCH is the policy Linux offers for threads that should not
preempt on waking (they run when the CPU's running thread yields or its time slice ends);
no privilege is needed for it. With the I/O threads of the three processes under it, 10,000
no-op load-balanced tasks on 2 CPUs cost 170-179 µs of CPU each instead of 230-248 and ran at
8,700-11,100/s instead of 7,000-8,200; the controller's I/O thread spent 6 µs per task
instead of 22 (``benchmarks/RESULTS.md``, 2026-12-07). A round trip is unchanged: a CPU is
then idle for the woken thread. An engine's heartbeat device makes a context of its own in its
thread, under the default policy, so its pong goes out at once however busy the node.

libzmq starts a context's threads with its first socket, and a new thread inherits its
creator's policy: the creating thread takes SCHED_BATCH only while it makes that socket,
and only from the default policy (one that runs under another was set so on purpose). The
Python threads, and so the user's code on an engine, keep the default. Where the platform
has no such policy, or refuses it (a seccomp profile), the context is a plain one.
"""
from __future__ import annotations

import os

import zmq


def new_context() -> zmq.Context:
    ctx = zmq.Context()
    batch = getattr(os, "SCHED_BATCH", None)
    try:
        switch = batch is not None and os.sched_getscheduler(0) == os.SCHED_OTHER
        if switch:
            os.sched_setscheduler(0, batch, os.sched_param(0))
    except (AttributeError, OSError):
        switch = False
    try:
        ctx.socket(zmq.PUB).close(linger=0)
    finally:
        if switch:
            os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
    return ctx
