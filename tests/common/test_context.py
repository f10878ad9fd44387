"""The I/O threads of a minipar ZeroMQ context run SCHED_BATCH; the threads that make the
context, and so the user's code on an engine, keep their own policy."""
from __future__ import annotations

import os
import sys
import threading

import pytest
import zmq

from minipar.context import new_context

from helpers import wait_for

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="scheduling policies of threads: Linux")


def threads_of(pid="self") -> dict:
    """{tid: name} of a process's threads."""
    found = {}
    for tid in os.listdir("/proc/%s/task" % pid):
        try:
            with open("/proc/%s/task/%s/comm" % (pid, tid)) as f:
                found[int(tid)] = f.read().strip()
        except FileNotFoundError:
            continue
    return found


def new_threads(make):
    """What make() returns, and the threads it started, once ZeroMQ has named them (each
    names itself when it runs)."""
    before = threads_of()
    made = make()

    def named():
        new = {tid: name for tid, name in threads_of().items() if tid not in before}
        return new if len(new) >= 2 and "python" not in new.values() else None
    return made, wait_for(named, what="the context's threads to name themselves")


def io_threads(threads: dict) -> list:
    return [tid for tid, name in threads.items() if name.startswith("ZMQbg/IO")]


def test_the_io_threads_run_sched_batch_and_the_caller_keeps_its_policy():
    assert os.sched_getscheduler(0) == os.SCHED_OTHER
    ctx, made = new_threads(new_context)
    try:
        assert io_threads(made), "no ZeroMQ I/O thread started: %s" % made
        for tid in io_threads(made):
            assert os.sched_getscheduler(tid) == os.SCHED_BATCH
        assert os.sched_getscheduler(0) == os.SCHED_OTHER
        a, b = ctx.socket(zmq.PAIR), ctx.socket(zmq.PAIR)
        port = a.bind_to_random_port("tcp://127.0.0.1")
        b.connect("tcp://127.0.0.1:%d" % port)
        b.send(b"through the batch threads")
        assert a.poll(5000) and a.recv() == b"through the batch threads"
        a.close(0)
        b.close(0)
    finally:
        ctx.term()


def test_a_caller_under_another_policy_is_left_alone():
    seen = {}

    def caller():
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
        ctx, made = new_threads(new_context)
        seen["caller"] = os.sched_getscheduler(0)
        seen["io"] = [os.sched_getscheduler(tid) for tid in io_threads(made)]
        ctx.term()

    t = threading.Thread(target=caller)
    t.start()
    t.join(30)
    assert seen["caller"] == os.SCHED_IDLE
    assert seen["io"] and set(seen["io"]) == {os.SCHED_IDLE}


def test_a_refused_policy_leaves_a_plain_working_context(monkeypatch):
    def refuse(pid, policy, param):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "sched_setscheduler", refuse)
    ctx, made = new_threads(new_context)
    try:
        assert io_threads(made)
        assert {os.sched_getscheduler(tid) for tid in io_threads(made)} == {os.SCHED_OTHER}
        assert os.sched_getscheduler(0) == os.SCHED_OTHER
    finally:
        ctx.term()


def test_without_the_policy_the_context_is_plain(monkeypatch):
    monkeypatch.delattr(os, "SCHED_BATCH")
    ctx, made = new_threads(new_context)
    try:
        assert {os.sched_getscheduler(tid) for tid in io_threads(made)} == {os.SCHED_OTHER}
    finally:
        ctx.term()


def test_a_running_controller_and_engine_batch_only_their_io_threads(cluster):
    """The engine's heartbeat device has a context of its own, made by its thread: its I/O
    thread keeps the default policy, so a pong answers at once however busy the node."""
    controller = cluster.profile.procs[0].pid
    engine = cluster[cluster.ids[0]].apply_sync(os.getpid)
    for pid, batch_threads in ((controller, 1), (engine, 1)):
        threads = threads_of(pid)
        policies = {tid: os.sched_getscheduler(tid) for tid in threads}
        batched = [tid for tid in io_threads(threads) if policies[tid] == os.SCHED_BATCH]
        assert len(batched) == batch_threads, (pid, threads, policies)
        assert policies[pid] == os.SCHED_OTHER
        assert all(policies[tid] == os.SCHED_OTHER for tid, name in threads.items()
                   if not name.startswith("ZMQbg/")), (pid, threads, policies)
    assert os.sched_getscheduler(0) == os.SCHED_OTHER  # the client made its context here
