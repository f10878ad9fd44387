"""Client, DirectView, LoadBalancedView and AsyncResult against a real controller and engines."""
from __future__ import annotations

import concurrent.futures
import os
import time
from datetime import datetime

import pytest

import minipar
from minipar import CompositeError, RemoteError


def test_ids_and_indexing(cluster):
    rc = cluster
    assert rc.ids == [0, 1]
    assert len(rc) == 2
    assert rc[:].targets == [0, 1]
    assert rc[0].targets == 0
    assert rc[-1].targets == 1
    assert rc[::2].targets == [0]
    with pytest.raises(IndexError, match="engine 7 is not registered"):
        rc[7]
    with pytest.raises(TypeError, match="selected by int"):
        rc["x"]


def test_each_engine_is_its_own_process(cluster):
    pids = cluster[:].apply_sync(os.getpid)
    assert len(set(pids)) == 2
    assert os.getpid() not in pids
    assert sorted(cluster[:].apply_sync(os.getppid)) == sorted(p.pid for p in cluster.engine_procs)


def test_apply_variants_and_block_flag(cluster):
    view = cluster[0]
    assert view.apply_sync(pow, 2, 10) == 1024
    ar = view.apply_async(pow, 3, 3)
    assert isinstance(ar, minipar.AsyncResult)
    assert isinstance(ar, concurrent.futures.Future)
    assert ar.get(10) == 27
    assert isinstance(view.apply(pow, 2, 2), minipar.AsyncResult)
    view.block = True
    assert view.apply(pow, 2, 5) == 32
    assert cluster[:].apply_sync(lambda x, y=1: x + y, 1, y=2) == [3, 3]


def test_lambdas_closures_and_kwargs(cluster):
    offset = 100

    def add(x):
        return x + offset

    square = lambda x: x * x  # noqa: E731
    compose = lambda x: add(square(x))  # noqa: E731
    assert cluster[0].apply_sync(compose, 3) == 109
    assert cluster.load_balanced_view().apply_sync(add, 1) == 101


def test_map(cluster):
    dv = cluster[:]
    assert dv.map_sync(lambda x: x * 2, range(10)) == [x * 2 for x in range(10)]
    assert dv.map_sync(lambda x, y: x + y, [1, 2, 3], [10, 20, 30, 40]) == [11, 22, 33]
    assert dv.map_sync(str, []) == []
    lv = cluster.load_balanced_view()
    assert lv.map_sync(lambda x: x ** 2, range(50)) == [x ** 2 for x in range(50)]
    assert lv.map_sync(lambda x: -x, range(23), chunksize=5) == [-x for x in range(23)]
    ar = lv.map_async(abs, [-1, -2])
    assert isinstance(ar, minipar.AsyncMapResult)
    assert list(ar) == [1, 2]
    with pytest.raises(ValueError, match="chunksize"):
        lv.map_async(abs, [1], chunksize=0)


def slow_pid(x):
    import os
    import time
    time.sleep(0.02)
    return os.getpid()


def test_map_spreads_over_engines(cluster):
    """Globals of a function from a module the engines can't import resolve in their namespace,
    as in ipyparallel: so the functions sent here import what they use."""
    engines = cluster.load_balanced_view().map_sync(slow_pid, range(20))
    assert len(set(engines)) == 2
    pids = cluster[:].apply_sync(os.getpid)
    assert cluster[:].map_sync(slow_pid, range(4)) == [pids[0], pids[0], pids[1], pids[1]]


def test_execute_push_pull(cluster):
    dv = cluster[:]
    dv.execute("a = 10\nb = a * 2", block=True)
    assert dv.pull("b", block=True) == [20, 20]
    dv.push({"c": [1, 2], "d": "x"}, block=True)
    assert dv.pull(["c", "d"], block=True) == [[[1, 2], "x"], [[1, 2], "x"]]
    assert cluster[1].pull("d", block=True) == "x"
    dv["e"] = 5
    assert dv["e"] == [5, 5]
    with pytest.raises(CompositeError) as info:
        dv.pull("nothing_here", block=True)
    assert [e.ename for e in info.value.elist] == ["NameError", "NameError"]
    with pytest.raises(TypeError, match="dict"):
        dv.push([1, 2])


def test_functions_see_the_engine_namespace(cluster):
    cluster[:].execute("import math\nfactor = 3", block=True)
    scaled = minipar.interactive(lambda: math.floor(factor * 2.5))  # noqa: F821
    assert cluster[0].apply_sync(scaled) == 7


def test_remote_error_single(cluster):
    ar = cluster[0].apply_async(lambda: 1 / 0)
    with pytest.raises(RemoteError) as info:
        ar.get(10)
    err = info.value
    assert err.ename == "ZeroDivisionError"
    assert err.evalue == "division by zero"
    assert "ZeroDivisionError" in err.traceback and "line" in err.traceback
    assert err.engine_info["engine_id"] == 0
    assert ar.ready() and not ar.successful()
    assert isinstance(ar.exception(), RemoteError)


def test_composite_error(cluster):
    def fail_on_one(ids):
        import os
        if os.getpid() == ids:
            raise ValueError("bad engine")
        return "fine"

    target_pid = cluster[1].apply_sync(os.getpid)
    ar = cluster[:].apply_async(fail_on_one, target_pid)
    with pytest.raises(CompositeError) as info:
        ar.get(10)
    assert len(info.value.elist) == 1
    assert info.value.elist[0].ename == "ValueError"
    assert info.value.elist[0].engine_info["engine_id"] == 1
    assert "[1:apply]ValueError: bad engine" in str(info.value)
    with pytest.raises(RemoteError, match="bad engine"):
        info.value.raise_exception()


def test_async_result_interface(cluster):
    ar = cluster[0].apply_async(time.sleep, 0.5)
    assert not ar.ready()
    with pytest.raises(minipar.TimeoutError, match="0 of 1 results arrived within 0.05s"):
        ar.get(0.05)
    with pytest.raises(TimeoutError):
        ar.get(0.01)
    assert ar.wait(0.01) is False
    assert ar.wait(10) is True
    assert ar.ready() and ar.successful()
    assert ar.get() is None
    assert len(ar.msg_ids) == 1
    md = ar.metadata
    assert md["engine_id"] == 0
    assert isinstance(md["submitted"], datetime)
    assert md["submitted"] <= md["started"] <= md["completed"]
    assert (md["completed"] - md["started"]).total_seconds() >= 0.45
    assert 0.45 <= ar.elapsed < 10


def test_stdout_and_stderr_are_captured(cluster):
    def talk(n):
        import sys
        print("out", n)
        print("err", n, file=sys.stderr)
        return n

    ar = cluster[:].apply_async(talk, 7)
    assert ar.get(10) == [7, 7]
    assert ar.stdout == ["out 7\n", "out 7\n"]
    assert ar.stderr == ["err 7\n", "err 7\n"]
    single = cluster[1].apply_async(talk, 1)
    single.get(10)
    assert single.stdout == "out 1\n"
    assert single.metadata["engine_id"] == 1


def test_direct_tasks_run_in_order(cluster):
    view = cluster[0]
    view.execute("order = []", block=True)
    append = minipar.interactive(lambda i: order.append(i))  # noqa: F821
    ars = [view.apply_async(append, i) for i in range(40)]
    for ar in ars:
        ar.get(10)
    assert view.pull("order", block=True) == list(range(40))


def test_load_balanced_goes_to_least_loaded(cluster):
    lv = cluster.load_balanced_view()
    busy = lv.apply_async(time.sleep, 1.5)
    time.sleep(0.2)
    quick = [lv.apply_async(os.getpid) for _ in range(3)]
    quick_engines = {ar.get(10) for ar in quick}
    busy.get(10)
    assert busy.metadata["engine_id"] is not None
    other_pid = cluster[1 - busy.metadata["engine_id"]].apply_sync(os.getpid)
    assert quick_engines == {other_pid}


def test_futures_interop(cluster):
    import asyncio

    ars = [cluster.load_balanced_view().apply_async(pow, 2, i) for i in range(5)]
    done, _ = concurrent.futures.wait(ars, timeout=10)
    assert len(done) == 5

    async def gather():
        return await asyncio.gather(*(cluster[0].apply_async(pow, 3, i) for i in range(3)))

    assert asyncio.run(gather()) == [1, 3, 9]


def test_no_engines_selected_error(cluster):
    with pytest.raises(minipar.NoEnginesRegistered):
        cluster[5:]


def test_wait_for_engines_timeout_names_the_count(cluster):
    with pytest.raises(minipar.TimeoutError, match="2 of 5 engines registered"):
        cluster.wait_for_engines(5, timeout=0.3)
