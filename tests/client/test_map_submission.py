"""A load-balanced map pickles its chunks as it sends them: what happens when one cannot be
pickled, before and after the first tasks have gone out."""
from __future__ import annotations

import threading

import pytest

import minipar

from helpers import wait_for


def echo(x):
    return x


def outstanding(rc) -> set:
    return set(rc._futures)


def test_a_chunk_that_cannot_be_pickled_stops_the_map_and_aborts_what_was_sent(cluster):
    lview = cluster.load_balanced_view()
    before_futures, before_history = outstanding(cluster), len(cluster.history)
    with pytest.raises(TypeError, match="pickle"):
        lview.map_async(echo, [1, 2, threading.Lock(), 4])
    sent = cluster.history[before_history:]
    assert len(sent) == 2, "the two chunks before the lock were sent: %s" % sent
    assert outstanding(cluster) <= before_futures, "the failed map left results to wait for"

    def settled():
        status = cluster.result_status(sent)
        return not status["pending"] and status

    wait_for(settled, what="the sent tasks to run or be aborted")
    for msg_id, expected in zip(sent, (1, 2)):
        try:
            assert cluster.get_result(msg_id).get(10) == [expected]  # a chunk's result
        except minipar.TaskAborted:
            pass
    assert lview.map_sync(echo, range(3)) == [0, 1, 2]


def test_a_function_that_cannot_be_pickled_sends_nothing(cluster):
    lock = threading.Lock()

    def holds_a_lock(x):
        return lock, x

    lview = cluster.load_balanced_view()
    before_futures, before_history = outstanding(cluster), list(cluster.history)
    with pytest.raises(TypeError, match="pickle"):
        lview.map_async(holds_a_lock, range(5))
    assert cluster.history == before_history
    assert outstanding(cluster) <= before_futures
    assert lview.map_sync(echo, range(3), chunksize=2) == [0, 1, 2]


def test_fewer_items_than_announced_raise_instead_of_leaving_a_result_that_never_ends(cluster):
    from minipar.client.asyncresult import AsyncResult
    from minipar.serialize import pack_apply_message
    before = outstanding(cluster)
    one = iter([({}, {}, pack_apply_message(echo, (1,), {}))])
    with pytest.raises(ValueError, match="3 messages to send, but only 1 were given"):
        cluster._submit("apply_request", one, lambda m: AsyncResult(cluster, m, "echo"), count=3)
    assert outstanding(cluster) <= before
