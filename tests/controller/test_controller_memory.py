"""The controller's memory: compact DictDB records, and no growth per task with --nodb
beyond what the scheduler remembers of finished tasks."""
from __future__ import annotations

import time
import tracemalloc
from datetime import datetime, timezone

import pytest
import zmq

from helpers import start_cluster, wait_for
from minipar.controller.db.memory import SLOT, DictDB
from minipar.protocol import Session, recv_frames, send_frames
from minipar.serialize import pack_apply_message

UTC = timezone.utc


def noop():
    pass


def utc(ts):
    return datetime.fromtimestamp(ts, UTC)


def hub_records(db, n, sockets, client, engine):
    """Write n tasks' records as the hub does: a request, then its reply, both received as
    real frames (so buffers are zmq.Frames) and parsed by a Session."""
    a, b = sockets
    hub = Session("key")
    payload = pack_apply_message(noop, (), {})
    for _ in range(n):
        _, frames = client.build("apply_request", {}, None, {})
        send_frames(a, [b"client"] + frames, payload)
        msg = hub.parse(recv_frames(b))
        db.add_record(msg.msg_id, {
            "header": msg.parts[0], "metadata": msg.parts[2], "content": msg.parts[3], "buffers": msg.buffers,
            "submitted": utc(msg.header["date"]), "client_uuid": client.id, "queue": "task"})
        now = time.time()
        md = {"started": now, "completed": now, "stdout": "", "stderr": "", "status": "ok", "engine_id": 0,
              "engine_uuid": engine.id}
        content = {"status": "ok", "engine_info": {"engine_id": 0, "engine_uuid": engine.id, "method": "apply"}}
        _, frames = engine.build("apply_reply", content, msg.header, md)
        send_frames(a, [b"engine"] + frames, [b"\x80\x05N."])
        reply = hub.parse(recv_frames(b))
        rmd = reply.metadata
        db.update_record(msg.msg_id, {
            "result_header": reply.parts[0], "result_content": reply.parts[3], "result_metadata": reply.parts[2],
            "result_buffers": reply.buffers, "started": utc(rmd["started"]), "completed": utc(rmd["completed"]),
            "received": datetime.now(UTC), "engine_uuid": rmd["engine_uuid"], "stdout": rmd["stdout"],
            "stderr": rmd["stderr"], "error": None})
        last = msg.msg_id
    return last


def test_a_finished_tiny_task_costs_dictdb_about_two_kilobytes_not_five():
    """Records of decoded dicts took ~4.7 KB each (and pinned libzmq receive buffers besides); now ~1.9 KB."""
    ctx = zmq.Context()
    a, b = ctx.socket(zmq.PAIR), ctx.socket(zmq.PAIR)
    a.bind("inproc://records")
    b.connect("inproc://records")
    client, engine = Session("key"), Session("key")
    db = DictDB()
    try:
        hub_records(db, 200, (a, b), client, engine)
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        last = hub_records(db, 2000, (a, b), client, engine)
        per_record = (tracemalloc.get_traced_memory()[0] - before) / 2000
        tracemalloc.stop()
        rec = db.get_record(last)
    finally:
        a.close()
        b.close()
        ctx.term()
    assert per_record < 2500, "%.0f bytes per record" % per_record
    assert rec["header"]["msg_id"] == last and rec["metadata"] == {} and rec["content"] == {}
    assert rec["result_content"]["engine_info"]["engine_uuid"] == engine.id
    assert rec["result_metadata"]["status"] == "ok" and rec["result_buffers"] == [b"\x80\x05N."]
    assert all(type(buf) is bytes for buf in db._records[last][SLOT["buffers"]])


def rss_kb(pid: int) -> int:
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS for pid %d" % pid)


def run_tasks(lview, n):
    for _ in range(n // 1000):
        ars = [lview.apply_async(noop) for _ in range(1000)]
        for ar in ars:
            ar.get(60)


@pytest.mark.slow
def test_nodb_controller_memory_is_flat_from_10k_to_100k_tasks(profile):
    """Between 5k and 25k tasks the --nodb controller grew ~12 MB (~600 bytes a task: replay
    signatures at ~170 bytes each, two per task, and the scheduler's finished-task memory).
    Now the replay guard takes a few bytes a signature (2**16 at most) and the scheduler
    remembers 10,000 finished tasks at most, so past 10k tasks nothing grows."""
    rc, _ = start_cluster(profile, 2, "--nodb")
    ctl = profile.procs[0]
    lview = rc.load_balanced_view()
    run_tasks(lview, 10000)
    wait_for(lambda: rc.queue_status()["unassigned"] == 0, what="the queue to drain")
    at_10k = rss_kb(ctl.pid)
    run_tasks(lview, 90000)
    wait_for(lambda: rc.queue_status()["unassigned"] == 0, what="the queue to drain")
    grown = rss_kb(ctl.pid) - at_10k
    assert grown < 6 * 1024, "the controller grew %d KB from 10k to 100k tasks (%d KB at 10k)" % (grown, at_10k)


def test_return_free_memory_gives_a_freed_heap_back_to_the_kernel():
    import ctypes
    import os

    from minipar.heap import return_free_memory
    try:
        libc = ctypes.CDLL(None)
        libc.malloc_trim
    except AttributeError:
        pytest.skip("not glibc: no malloc_trim to call")

    def rss_mb():
        with open("/proc/%d/statm" % os.getpid()) as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

    libc.malloc.restype = ctypes.c_void_p
    libc.free.argtypes = [ctypes.c_void_p]
    chunks = [libc.malloc(32 * 1024) for _ in range(3000)]  # below the mmap threshold: heap memory
    for c in chunks:
        ctypes.memset(c, 1, 32 * 1024)
    before = rss_mb()
    for c in chunks[:-1]:  # the last one pins the heap's top: free() alone cannot shrink it
        libc.free(c)
    assert rss_mb() > before - 20
    assert return_free_memory() is True
    assert rss_mb() < before - 60
    libc.free(chunks[-1])
