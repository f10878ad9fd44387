"""rc.broadcast_view(): one message from the client, fanned out to the engines by the controller."""
from __future__ import annotations

import os
import signal
import time

import pytest

import minipar
from helpers import Profile, announce_then_sleep, start_cluster, wait_for
from minipar.controller.broadcast import Coalescer, broadcast_targets

N = 3


@pytest.fixture(scope="module")
def rc(tmp_path_factory):
    p = Profile(tmp_path_factory.mktemp("bcast"))
    client, _ = start_cluster(p, N)
    client.profile = p
    yield client
    p.stop_all()


def sends(rc):
    """Count the messages the client sends (every one goes through Client._send)."""
    sent = []
    original = rc._send

    def counting(frames, buffers=(), *args, **kwargs):
        sent.append(frames)
        return original(frames, buffers, *args, **kwargs)

    rc._send = counting
    return sent


def replies(rc):
    """Record the msg_type of every reply the client's I/O thread takes from the controller."""
    seen = []
    original = rc._on_reply

    def recording(msg):
        seen.append(msg.msg_type)
        return original(msg)

    rc._on_reply = recording
    return seen


def fail_on(bad_pids):
    import os
    if os.getpid() in bad_pids:
        raise ValueError("process %d refuses" % os.getpid())
    return os.getpid()


def nap_on(victim, seconds):
    import os
    import time
    if os.getpid() == victim:
        print("started", flush=True)
        time.sleep(seconds)
    return os.getpid()


@pytest.fixture(params=[False, True], ids=["forwarding", "coalescing"])
def coalescing(request):
    return request.param


def test_apply_push_pull_execute_give_what_a_direct_view_gives(rc, coalescing):
    bv = rc.broadcast_view(is_coalescing=coalescing)
    dv = rc[:]
    assert bv.targets == rc.ids and len(bv) == N and bv.is_coalescing is coalescing
    assert isinstance(bv, minipar.DirectView) and isinstance(bv, minipar.BroadcastView)
    ar = bv.apply_async(os.getpid)
    assert ar.get(10) == dv.apply_sync(os.getpid)
    assert ar.engine_id == rc.ids
    assert [md["engine_id"] for md in ar.metadata] == rc.ids
    assert all(md["status"] == "ok" and md["completed"] is not None for md in ar.metadata)
    base = ar.msg_ids[0].rsplit("_", 1)[0]
    assert ar.msg_ids == ["%s_%d" % (base, i) for i in rc.ids]
    assert bv.push({"a": 5, "b": [1, 2]}, block=True) == [None] * N
    assert bv.pull("a", block=True) == dv.pull("a", block=True) == [5] * N
    assert bv.pull(["a", "b"], block=True) == dv.pull(["a", "b"], block=True) == [[5, [1, 2]]] * N
    assert bv["b"] == [[1, 2]] * N
    executed = bv.execute("c = a * 2", block=True)
    assert list(map(repr, executed.get(5))) == list(map(repr, dv.execute("pass", block=True).get(5)))
    shown = bv.execute("a + 1", silent=False, block=True).get(5)
    assert [r.data["text/plain"] for r in shown] == ["6"] * N
    assert dv.pull("c", block=True) == [10] * N
    assert bv.apply_sync(lambda x, y=1: x + y, 2, y=3) == [5] * N


def test_map_scatter_and_gather_work_as_on_a_direct_view(rc, coalescing):
    bv = rc.broadcast_view(is_coalescing=coalescing)
    dv = rc[:]
    assert bv.map_sync(lambda x: x * 2, range(10)) == dv.map_sync(lambda x: x * 2, range(10)) == \
        [x * 2 for x in range(10)]
    bv.scatter("part", list(range(7)), block=True)
    assert dv.pull("part", block=True) == [[0, 1, 2], [3, 4], [5, 6]]
    assert bv.gather("part", block=True) == dv.gather("part", block=True) == list(range(7))
    assert isinstance(bv.gather("part"), minipar.AsyncMapResult)


def test_one_message_from_the_client_and_one_task_record_per_engine(rc, coalescing):
    bv = rc.broadcast_view(is_coalescing=coalescing)
    sent = sends(rc)
    try:
        ar = bv.push({"big": b"x" * 200_000})
        ar.get(10)
        assert len(sent) == 1, "a broadcast is one message from the client"
        rc[:].push({"big": b"y"}, block=True)
        assert len(sent) == 1 + N, "a DirectView sends one message per engine"
    finally:
        del rc._send
    records = rc.db_query({"msg_id": {"$in": ar.msg_ids}}, keys=["msg_id", "engine_uuid", "queue", "completed",
                                                                  "metadata"])
    by_id = {r["msg_id"]: r for r in records}
    assert sorted(by_id) == sorted(ar.msg_ids)
    assert [by_id[m]["engine_uuid"] for m in ar.msg_ids] == [rc._engines[i] for i in rc.ids]
    assert {r["queue"] for r in records} == {"broadcast"}
    assert all(r["completed"] is not None for r in records)
    assert [by_id[m]["metadata"]["dest"] for m in ar.msg_ids] == rc.ids


def test_coalescing_answers_with_one_message_and_forwarding_with_one_per_engine(rc):
    seen = replies(rc)
    try:
        assert rc.broadcast_view(is_coalescing=True).apply_sync(os.getpid) == rc[:].apply_sync(os.getpid)
        assert seen.count("broadcast_reply") == 1 and seen.count("apply_reply") == N
        del seen[:]
        rc.broadcast_view(is_coalescing=False).apply_sync(os.getpid)
        assert seen == ["apply_reply"] * N
        del seen[:]
        rc.broadcast_view(is_coalescing=True).execute("x = 1", block=True)
        assert seen == ["broadcast_reply"]
    finally:
        del rc._on_reply


def test_forwarded_parts_arrive_as_each_engine_finishes_coalesced_ones_together(rc):
    slow = rc[rc.ids[-1]].apply_sync(os.getpid)
    for coalescing in (False, True):
        ar = rc.broadcast_view(is_coalescing=coalescing).apply_async(nap_on, slow, 1.0)
        assert ar.get(10)[-1] == slow
        first, last = ar.metadata[0], ar.metadata[-1]
        assert (first["received"] > last["completed"]) is coalescing, \
            "a coalesced part reaches the client only once the slow engine is done"


def test_a_subset_of_targets_and_a_single_engine(rc, coalescing):
    ids = [rc.ids[0], rc.ids[2]]
    bv = rc.broadcast_view(ids, is_coalescing=coalescing)
    assert bv.targets == ids and len(bv) == 2
    ar = bv.apply_async(os.getpid)
    assert ar.get(10) == rc[ids].apply_sync(os.getpid)
    assert ar.engine_id == ids
    one = rc.broadcast_view(rc.ids[1], is_coalescing=coalescing)
    assert one.targets == [rc.ids[1]]
    assert one.apply_sync(os.getpid) == [rc[rc.ids[1]].apply_sync(os.getpid)], "a list, as ipyparallel gives"
    assert bv.push({"only": 1}, targets=[rc.ids[1]], block=True) == [None], "a per-call target"
    assert bv.pull("only", targets=[rc.ids[1]], block=True) == [1]
    with pytest.raises(minipar.CompositeError, match="name 'only' is not defined"):
        bv.pull("only", block=True)
    with pytest.raises(IndexError, match="not registered"):
        rc.broadcast_view([0, 99])


def test_errors_on_some_engines_are_a_composite_error_as_on_a_direct_view(rc, coalescing):
    pids = rc[:].apply_sync(os.getpid)
    bad = [pids[0], pids[2]]
    bv = rc.broadcast_view(is_coalescing=coalescing)
    with pytest.raises(minipar.CompositeError) as direct:
        rc[:].apply_sync(fail_on, bad)
    with pytest.raises(minipar.CompositeError) as broadcast:
        bv.apply_sync(fail_on, bad)
    assert str(broadcast.value) == str(direct.value)
    assert "[%s:apply]ValueError: process %d refuses" % (rc.ids[0], bad[0]) in str(broadcast.value)
    mixed = bv.apply_async(fail_on, bad).get(10, return_exceptions=True)
    assert [type(x) for x in mixed] == [minipar.RemoteError, int, minipar.RemoteError]
    assert [x.ename for x in mixed if isinstance(x, Exception)] == ["ValueError", "ValueError"]
    assert mixed[1] == pids[1]
    with pytest.raises(minipar.CompositeError, match="name 'nope' is not defined"):
        bv.execute("nope", block=True)
    assert bv.apply_sync(os.getpid) == rc[:].apply_sync(os.getpid), "the engines carry on"


def test_a_part_for_an_engine_the_controller_does_not_know_fails_at_once(rc, coalescing):
    rc._engines.news(True, 77, "fake", None)  # the client believes in an engine the controller lacks
    try:
        ar = rc.broadcast_view([rc.ids[0], 77], is_coalescing=coalescing).apply_async(os.getpid)
        parts = ar.get(5, return_exceptions=True)
    finally:
        rc._engines.news(False, 77, "fake", None)
    assert parts[0] == rc[rc.ids[0]].apply_sync(os.getpid)
    assert isinstance(parts[1], minipar.EngineError) and "engine 77 is not registered" in parts[1].evalue


def test_a_malformed_broadcast_is_answered_for_every_part(rc, coalescing):
    from minipar.serialize import pack_apply_message
    ar = rc._submit_broadcast("apply_request", {}, pack_apply_message(os.getpid, (), {}), ["zero", "one"],
                              coalescing, lambda m: minipar.AsyncResult(rc, m, "getpid", single=False))
    with pytest.raises(minipar.CompositeError, match="broadcast engine ids are ints, not 'zero'"):
        ar.get(5)
    assert rc.broadcast_view().apply_sync(os.getpid) == rc[:].apply_sync(os.getpid)


def test_parts_are_tasks_other_clients_can_fetch_and_resubmit(rc):
    ar = rc.broadcast_view(is_coalescing=True).apply_async(os.getpid)
    pids = ar.get(10)
    other = rc.profile.client()
    try:
        assert other.get_result(ar.msg_ids).get(10) == pids
        again = other.resubmit(ar.msg_ids[1]).get(10)
        assert again in (pids[1], [pids[1]]), "resubmitted on the engine it ran on"
    finally:
        other.close()


def test_parts_queued_behind_other_work_can_be_aborted(rc, coalescing):
    busy = rc[:].apply_async(announce_then_sleep, 1.0)
    wait_for(lambda: busy.stdout == ["started\n"] * N, what="every engine to be busy")
    ar = rc.broadcast_view(is_coalescing=coalescing).apply_async(os.getpid)
    ar.abort()
    parts = ar.get(10, return_exceptions=True)
    assert [isinstance(x, minipar.TaskAborted) for x in parts] == [True] * N
    assert busy.get(10) == ["slept"] * N


def test_a_load_balanced_task_can_wait_for_a_broadcast(rc):
    ar = rc.broadcast_view(is_coalescing=True).apply_async(announce_then_sleep, 0.3, "done")
    lview = rc.load_balanced_view()
    with lview.temp_flags(after=ar):
        later = lview.apply_async(os.getpid)
    assert later.get(10) in rc[:].apply_sync(os.getpid)
    assert ar.get(1) == ["done"] * N
    assert later.metadata["started"] >= max(md["completed"] for md in ar.metadata)


def test_engine_killed_mid_broadcast_answers_its_part_with_engine_error(tmp_path, coalescing):
    p = Profile(tmp_path)
    try:
        rc, _ = start_cluster(p, N)
        pids = rc[:].apply_sync(os.getpid)
        victim = pids[1]
        ar = rc.broadcast_view(is_coalescing=coalescing).apply_async(nap_on, victim, 60)
        wait_for(lambda: ar.stdout[1] == "started\n", what="the victim's part to start (its output streams)")
        t0 = time.monotonic()
        os.kill(victim, signal.SIGKILL)
        parts = ar.get(15, return_exceptions=True)
        assert time.monotonic() - t0 < 5, "answered within a few heartbeat periods"
        assert parts[0] == pids[0] and parts[2] == pids[2]
        assert isinstance(parts[1], minipar.EngineError) and "engine 1 died" in parts[1].evalue
        with pytest.raises(minipar.CompositeError):
            ar.get(1)
        wait_for(lambda: rc.ids == [0, 2], 10, "engine 1 to be unregistered")
        assert rc.broadcast_view(is_coalescing=coalescing).apply_sync(os.getpid) == [pids[0], pids[2]]
    finally:
        p.stop_all()


def peak_rss(pid) -> int:
    with open("/proc/%d/status" % pid) as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))


def test_the_controller_holds_one_copy_of_a_broadcast_payload(tmp_path):
    """The parts share the frames that arrived (zero-copy fan-out); a DirectView's push
    arrives, and is held, once per engine."""
    p = Profile(tmp_path)
    try:
        rc, _ = start_cluster(p, N)
        hub = p.procs[0].pid
        size = 64 << 20
        data = b"x" * size
        before = peak_rss(hub)
        rc.broadcast_view().push({"data": data}, block=True)
        grown = peak_rss(hub) - before
        assert grown < 1.5 * size, "the controller's peak memory grew by %.1f payloads" % (grown / size)
        before = peak_rss(hub)
        rc[:].push({"data": data}, block=True)
        grown = peak_rss(hub) - before
        assert grown > 2 * size, "control: a DirectView's copies grew it by %.1f payloads" % (grown / size)
        assert rc.broadcast_view().apply_sync(len, minipar.Reference("data")) == [size] * N
    finally:
        p.stop_all()


def test_the_policy_checks_targets_and_keeps_parts_in_order():
    assert broadcast_targets({"broadcast": [2, 0]}) == [2, 0]
    for bad, what in (([], "non-empty list"), ("0", "non-empty list"), ([0, "1"], "are ints"), ([1, True], "are ints"),
                      ([1, 1], "each engine once")):
        with pytest.raises(ValueError, match=what):
            broadcast_targets({"broadcast": bad})
    c = Coalescer({"msg_id": "m"}, b"client", ["m_2", "m_0"])
    assert not c.add("m_0", "apply_reply", {"status": "ok"}, {"engine_id": 0}, [b"a", b"b"])
    assert c.add("m_2", "apply_reply", {"status": "error"}, {"engine_id": 2}, [])
    content, md, buffers = c.reply()
    assert [r["msg_id"] for r in content["replies"]] == ["m_2", "m_0"]
    assert [r["nbuffers"] for r in content["replies"]] == [0, 2] and buffers == [b"a", b"b"]
    assert content["status"] == md["status"] == "error" and md["engine_ids"] == [2, 0]
