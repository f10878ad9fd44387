"""Calls that take msg_ids answer in ipyparallel's shapes: one value for one id, a list for a
list (resubmit: always a list), and the same argument checks."""
from __future__ import annotations

import pytest

import minipar
from helpers import announce_then_sleep, wait_for


def square(x):
    return x * x


def fail(message):
    raise ValueError(message)


@pytest.fixture(scope="module")
def done(cluster):
    """Two finished load-balanced tasks and a failed one."""
    lview = cluster.load_balanced_view()
    a, b, bad = lview.apply_async(square, 3), lview.apply_async(square, 4), lview.apply_async(fail, "no")
    assert cluster.wait([a, b, bad], timeout=20)
    return a, b, bad


@pytest.mark.parametrize("arg, expected", [
    (lambda a, b: a.msg_ids[0], [9]),
    (lambda a, b: a.msg_ids, [9]),
    (lambda a, b: a, [9]),
    (lambda a, b: a.msg_ids + b.msg_ids, [9, 16]),
    (lambda a, b: [a, b], [9, 16]),
])
def test_resubmit_is_always_a_list_with_one_result_per_task(cluster, done, arg, expected):
    a, b, _ = done
    ar = cluster.resubmit(arg(a, b))
    assert isinstance(ar, minipar.AsyncResult)
    assert ar.get(20) == expected
    assert len(ar.msg_ids) == len(expected) and not set(ar.msg_ids) & set(a.msg_ids + b.msg_ids)


def test_resubmit_with_block_waits_and_still_returns_the_async_result(cluster, done):
    ar = cluster.resubmit(done[0].msg_ids, block=True)
    assert isinstance(ar, minipar.AsyncResult) and ar.ready()
    assert ar.get(0) == [9]


@pytest.mark.parametrize("local", [True, False], ids=["this-client", "other-client"])
def test_get_result_shape_follows_the_argument(cluster, done, local):
    a, b, _ = done
    rc = cluster if local else cluster.profile.client()
    try:
        assert rc.get_result(a.msg_ids[0]).get(20) == 9
        assert rc.get_result(a.msg_ids).get(20) == [9]
        assert rc.get_result(a.msg_ids + b.msg_ids).get(20) == [9, 16]
        assert rc.get_result([a.msg_ids[0], b.msg_ids[0]]).get(20) == [9, 16]
        assert rc.get_result(a).get(20) == 9
        both = minipar.AsyncResult.join(a, b)
        assert rc.get_result(both).get(20) == [9, 16]
        blocked = rc.get_result(b.msg_ids[0], block=True)
        assert isinstance(blocked, minipar.AsyncResult) and blocked.ready() and blocked.get(0) == 16
    finally:
        if rc is not cluster:
            rc.close()


def test_get_result_by_history_index(cluster, done):
    a, b, bad = done
    lview = cluster.load_balanced_view()
    last = lview.apply_async(square, 5)
    assert cluster.get_result(-1).get(20) == 25
    assert cluster.get_result([-1]).get(20) == [25]
    assert lview.get_result().get(20) == 25
    assert lview.get_result([0]).get(20) == [last.get(20)]


def test_result_status_with_results_raises_failures_as_ipyparallel(cluster, done):
    a, b, bad = done
    status = cluster.result_status(a.msg_ids + b.msg_ids, status_only=False)
    assert status["completed"] == a.msg_ids + b.msg_ids and status["pending"] == []
    assert status[a.msg_ids[0]] == 9 and status[b.msg_ids[0]] == 16
    with pytest.raises(minipar.RemoteError) as one:
        cluster.result_status(bad.msg_ids, status_only=False)
    assert not isinstance(one.value, minipar.CompositeError) and one.value.evalue == "no"
    with pytest.raises(minipar.CompositeError) as several:
        cluster.result_status(a.msg_ids + bad.msg_ids, status_only=False)
    assert [e[0] for e in several.value.elist] == ["ValueError"]
    assert str(several.value).startswith("one or more exceptions raised in: result_status")
    only = cluster.result_status(bad.msg_ids[0])
    assert only["completed"] == bad.msg_ids and "missing" not in only


def test_purge_results_needs_jobs_or_targets_and_refuses_pending_ones(cluster):
    with pytest.raises(ValueError, match="needs jobs"):
        cluster.purge_results()
    with pytest.raises(ValueError, match="needs jobs"):
        cluster.load_balanced_view().purge_results()
    ar = cluster[0].apply_async(announce_then_sleep, 0.5, "late")
    wait_for(lambda: ar.stdout == "started\n", 20, "the task to start")
    with pytest.raises(RuntimeError, match="still outstanding: %s" % ar.msg_ids[0]):
        cluster.purge_results(ar)
    assert ar.get(20) == "late"
    cluster.purge_results([ar])
    assert ar.msg_ids[0] not in cluster.results
    with cluster.profile.client() as other, pytest.raises(KeyError, match="no task"):
        other.get_result(ar.msg_ids[0]).get(20)


def test_abort_and_queue_status_take_lists_of_ids(cluster):
    blocker = cluster[1].apply_async(announce_then_sleep, 0.5)
    wait_for(lambda: blocker.stdout == "started\n", 20, "the blocker to start")
    queued = [cluster[1].apply_async(square, i) for i in range(3)]
    cluster.abort([queued[0].msg_ids[0], queued[1]], targets=1)
    for ar in queued[:2]:
        with pytest.raises(minipar.TaskAborted):
            ar.get(20)
    assert queued[2].get(20) == 4
    assert blocker.get(20) == "slept"
    status = cluster.queue_status([0, 1])
    assert set(status) == {0, 1, "unassigned"}
    assert set(cluster.queue_status(1)) == {"queue", "tasks", "completed"}
