"""The client's threads: a waiting caller receives replies itself, the I/O thread otherwise.

These prove what that hand-over must keep: every thread gets its own results, a reply
nobody waits for still completes its AsyncResult (and runs its callbacks), and output
still streams while a caller is receiving.
"""
from __future__ import annotations

import threading

from helpers import wait_for


def wait_for_file(path, value):
    import os
    import time
    while not os.path.exists(path):
        time.sleep(0.01)
    return value


def talk_then_wait(path):
    import os
    import sys
    import time
    print("halfway", flush=True)
    sys.stdout.flush()
    while not os.path.exists(path):
        time.sleep(0.01)
    return "done"


def echo(x):
    return x


def test_many_threads_submitting_and_waiting_get_their_own_results(cluster):
    lview = cluster.load_balanced_view()
    errors, results = [], {}

    def worker(n):
        try:
            got = []
            for i in range(40):
                tag = (n, i)
                if i % 4 == 0:
                    got.append(cluster[i % 2].apply_sync(echo, tag))
                elif i % 4 == 1:
                    got.append(lview.apply_sync(echo, tag))
                elif i % 4 == 2:
                    got.append(lview.apply_async(echo, tag).get(30))
                else:
                    got.extend(lview.map_sync(echo, [tag]))
            results[n] = got
        except Exception as e:  # noqa: BLE001 - reported by the assertion below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors
    assert not any(t.is_alive() for t in threads)
    assert results == {n: [(n, i) for i in range(40)] for n in range(8)}


def test_a_reply_nobody_waits_for_completes_its_result(cluster, tmp_path):
    cluster[0].apply_sync(echo, 1)  # a blocking call: its caller received the reply itself
    gate = str(tmp_path / "gate")
    ar = cluster[0].apply_async(wait_for_file, gate, 42)
    called = threading.Event()
    ar.add_done_callback(lambda f: called.set())
    open(gate, "w").close()
    assert called.wait(30), "the result of an apply_async nobody waited for never arrived"
    assert ar.done() and ar.get(0) == 42


def test_a_reply_for_another_thread_arrives_while_one_caller_receives(cluster, tmp_path):
    slow_gate, fast_gate = str(tmp_path / "slow"), str(tmp_path / "fast")
    box = []
    waiter = threading.Thread(target=lambda: box.append(cluster[1].apply_sync(wait_for_file, slow_gate, "slow")))
    waiter.start()
    try:
        wait_for(lambda: cluster.outstanding, what="the blocking call to be submitted")
        fast = cluster[0].apply_async(wait_for_file, fast_gate, "fast")
        called = threading.Event()
        fast.add_done_callback(lambda f: called.set())
        open(fast_gate, "w").close()
        assert called.wait(30)
        assert fast.get(0) == "fast"
        assert cluster[0].apply_sync(echo, "also") == "also"
        assert waiter.is_alive()
    finally:
        open(slow_gate, "w").close()
        waiter.join(30)
    assert box == ["slow"]


def test_output_streams_while_the_caller_receives_its_own_reply(cluster, tmp_path):
    gate = str(tmp_path / "gate")
    ar = cluster[1].apply_async(talk_then_wait, gate)
    box = []
    waiter = threading.Thread(target=lambda: box.append(ar.get(30)))
    waiter.start()
    try:
        wait_for(lambda: "halfway" in ar.stdout, what="output streamed while a thread waits in get()")
        assert not ar.done()
    finally:
        open(gate, "w").close()
        waiter.join(30)
    assert box == ["done"]
    assert ar.stdout == "halfway\n"


def test_a_timed_out_wait_hands_receiving_back(cluster, tmp_path):
    gate = str(tmp_path / "gate")
    ar = cluster[0].apply_async(wait_for_file, gate, "late")
    assert ar.wait(0.2) is False
    called = threading.Event()
    ar.add_done_callback(lambda f: called.set())
    open(gate, "w").close()
    assert called.wait(30), "after a timed-out wait the I/O thread did not take the reply"
    assert ar.get(0) == "late"


def test_a_blocking_call_interrupted_before_it_receives_leaves_its_reply_to_the_io_thread(cluster, monkeypatch):
    from minipar.client.asyncresult import AsyncResult
    # Park the I/O thread as a blocking caller does: it finds the reply lock taken.
    with cluster._reply_lock:
        ar = cluster[0].apply_async(echo, 0)
        wait_for(lambda: cluster._io_parked, what="the I/O thread to leave replies to the lock's holder")
    assert ar.get(10) == 0  # received here; nothing outstanding, so the I/O thread stays parked
    assert cluster._io_parked

    def interrupted(self, timeout):
        raise KeyboardInterrupt

    monkeypatch.setattr(AsyncResult, "_receive", interrupted)
    try:
        cluster[0].apply_sync(echo, 5)
    except KeyboardInterrupt:
        pass
    else:
        raise AssertionError("the patched wait did not interrupt the call")
    monkeypatch.undo()
    msg_id = cluster.history[-1]
    assert cluster.wait([msg_id], timeout=10), "nobody received the reply of the interrupted call"
    assert cluster.results[msg_id] == 5


def test_a_caller_polls_briefly_then_sleeps_while_its_task_runs(cluster, tmp_path):
    """The spin before sleeping (RECEIVE_SPIN) is bounded per wait: waiting out a task that
    runs a while costs the waiting thread almost no CPU, however long the task."""
    import time
    from minipar.client import client as client_module
    assert cluster._spin == client_module.RECEIVE_SPIN > 0 or not client_module._can_spin()
    gate = str(tmp_path / "gate")
    ar = cluster[0].apply_async(wait_for_file, gate, "ran")
    opener = threading.Timer(0.5, lambda: open(gate, "w").close())
    opener.start()
    try:
        cpu0, wall0 = time.thread_time(), time.monotonic()
        assert ar.get(30) == "ran"
        cpu, wall = time.thread_time() - cpu0, time.monotonic() - wall0
    finally:
        opener.cancel()
    assert wall >= 0.3, "the task ended before the gate opened"
    assert cpu < 0.1, "the waiting thread used %.3f s of CPU in a %.3f s wait" % (cpu, wall)


def test_a_timeout_shorter_than_the_spin_is_kept(cluster, tmp_path):
    import time
    from minipar.error import TimeoutError
    gate = str(tmp_path / "gate")
    ar = cluster[0].apply_async(wait_for_file, gate, "ran")
    t0 = time.monotonic()
    try:
        ar.get(cluster._spin / 4)
    except TimeoutError:
        pass
    else:
        raise AssertionError("get() returned before the task could end")
    assert time.monotonic() - t0 < 0.5
    open(gate, "w").close()
    assert ar.get(30) == "ran"


def test_a_client_with_one_cpu_does_not_spin(monkeypatch):
    import os
    from minipar.client import client as client_module
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0}, raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 1)
    assert client_module._can_spin() is False
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    assert client_module._can_spin() is True


def test_a_blocking_map_sends_each_task_as_it_is_built_and_leaves_early_replies_to_the_io_thread(cluster, monkeypatch):
    """The first tasks run while the rest are signed; the replies that come meanwhile are
    the I/O thread's to take, as only a single-message blocking call receives its own."""
    events = []
    build, send = cluster.session.build, cluster._send

    def building(*args, **kwargs):
        events.append("build")
        return build(*args, **kwargs)

    def sending(frames, buffers=(), *args, **kwargs):
        events.append(("send", kwargs.get("caller_waits", False)))
        return send(frames, buffers, *args, **kwargs)

    monkeypatch.setattr(cluster.session, "build", building)
    monkeypatch.setattr(cluster, "_send", sending)
    lview = cluster.load_balanced_view()
    assert lview.map_sync(echo, range(5)) == list(range(5))
    assert events == ["build", ("send", False)] * 5
    events.clear()
    assert lview.apply_sync(echo, 7) == 7
    assert events == ["build", ("send", True)]
