"""AsyncResult as a concurrent.futures.Future whose Condition is made only when a thread may
wait on it: results settled from one thread while others wait, poll or add callbacks. No
processes: a result is settled by calling what the client's I/O thread calls."""
from __future__ import annotations

import asyncio
import concurrent.futures
import threading

import pytest

from minipar import AsyncResult, RemoteError


class NoClient:
    """What an AsyncResult needs of its client when nothing is sent: nothing."""


def new_result(n=1, **kwargs):
    return AsyncResult(NoClient(), ["m%d" % i for i in range(n)], "f", **kwargs)


def settle(ar, value="v"):
    for m in ar.msg_ids:
        ar._deliver(m, value)


def test_a_result_nobody_waited_for_is_read_without_a_condition():
    ar = new_result()
    settle(ar, 42)
    assert ar.done() and ar.get() == 42 and ar.result(0) == 42 and ar.exception() is None
    assert ar._cond is None


def test_a_thread_blocked_in_result_wakes_when_another_settles_it():
    ar = new_result()
    got, waiting = [], threading.Event()

    def waiter():
        waiting.set()
        got.append(ar.result(30))

    t = threading.Thread(target=waiter)
    t.start()
    waiting.wait(10)
    while ar._cond is None and t.is_alive():  # the waiter made the Condition: now it sleeps on it
        t.join(0.001)
    settle(ar, "late")
    t.join(30)
    assert not t.is_alive() and got == ["late"]


def test_futures_wait_and_as_completed_race_the_settling_thread():
    for _ in range(20):
        ars = [new_result() for _ in range(200)]
        settler = threading.Thread(target=lambda: [settle(ar, i) for i, ar in enumerate(ars)])
        settler.start()
        done, pending = concurrent.futures.wait(ars, timeout=30)
        assert not pending and len(done) == 200
        assert sorted(f.result() for f in concurrent.futures.as_completed(ars, timeout=30)) == list(range(200))
        settler.join(30)


def test_callbacks_before_and_after_settling_run_once_each():
    ar = new_result()
    calls = []
    ar.add_done_callback(lambda f: calls.append(("before", f.result())))
    settle(ar, 7)
    ar.add_done_callback(lambda f: calls.append(("after", f.result())))
    assert calls == [("before", 7), ("after", 7)]
    with pytest.raises(concurrent.futures.InvalidStateError):
        ar.set_result(8)
    assert ar.get() == 7


def test_an_error_raises_from_get_and_result_and_is_the_futures_exception():
    ar = new_result()
    err = RemoteError("ValueError", "bad", "", {"engine_id": 0})
    ar._deliver("m0", None, err)
    with pytest.raises(RemoteError, match="bad"):
        ar.get()
    with pytest.raises(RemoteError, match="bad"):
        ar.result()
    assert ar.exception() is err and ar.done() and not ar.cancel()


def test_awaiting_a_result_settled_from_another_thread():
    ar = new_result(2)

    async def main():
        threading.Timer(0.01, settle, (ar, 1)).start()
        return await ar

    assert asyncio.run(main()) == [1, 1]
