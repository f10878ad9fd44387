"""The ipyparallel view API on real processes: scatter/gather, Reference, sync_imports, flags,
remote/parallel functions, imap, wait, load-balanced map options, require/depend, the executor."""
from __future__ import annotations

import concurrent.futures
import re
import subprocess
import sys

import numpy as np
import pytest

import minipar
from minipar import CompositeError, Dependency, Reference, RemoteError
from helpers import ROOT


def sleep_and_return(t):
    import time
    time.sleep(t)
    return t


def wait_for_file(path, value=None):
    import os
    import time
    while not os.path.exists(path):
        time.sleep(0.01)
    return value


def my_pid(*args):
    import os
    return os.getpid()


def double(x):
    return 2 * x


@minipar.interactive
def rank_is(want):
    return globals().get("rank") == want


@minipar.require("colorsys")
def to_hls(r, g, b):
    return colorsys.rgb_to_hls(r, g, b)  # noqa: F821 - bound by @require on the engine


@pytest.fixture
def dv(cluster):
    view = cluster[:]
    view.scatter("rank", cluster.ids, flatten=True, block=True)
    return view


# -- scatter / gather ------------------------------------------------------------------


def test_scatter_uneven_list_first_engines_get_more(cluster):
    dv = cluster[:]
    dv.scatter("x", list(range(5)), block=True)
    assert cluster[0]["x"] == [0, 1, 2]
    assert cluster[1]["x"] == [3, 4]
    assert dv.gather("x", block=True) == [0, 1, 2, 3, 4]


def test_scatter_block_returns_none_and_async_returns_result(cluster):
    dv = cluster[:]
    assert dv.scatter("s", [1, 2], block=True) is None
    ar = dv.scatter("s", [3, 4], block=False)
    assert isinstance(ar, minipar.AsyncResult)
    assert ar.get(10) == [None, None]
    amr = dv.gather("s", block=False)
    assert isinstance(amr, minipar.AsyncMapResult)
    assert amr.get(10) == [3, 4]


def test_scatter_tuple_and_range_keep_their_type_on_the_engines(cluster):
    dv = cluster[:]
    dv.scatter("t", (1, 2, 3), block=True)
    assert dv.pull("t", block=True) == [(1, 2), (3,)]
    assert dv.gather("t", block=True) == [1, 2, 3]
    dv.scatter("r", range(7), block=True)
    assert dv.pull("r", block=True) == [range(0, 4), range(4, 7)]
    assert dv.gather("r", block=True) == list(range(7))


def test_scatter_gather_numpy_concatenates(cluster):
    dv = cluster[:]
    data = np.arange(10.0).reshape(5, 2)
    dv.scatter("a", data, block=True)
    shapes = dv.apply_sync(minipar.interactive(lambda: a.shape))  # noqa: F821
    assert shapes == [(3, 2), (2, 2)]
    back = dv.gather("a", block=True)
    assert isinstance(back, np.ndarray)
    np.testing.assert_array_equal(back, data)


def test_scatter_flatten(cluster):
    dv = cluster[:]
    dv.scatter("one", [10, 20], flatten=True, block=True)
    assert dv["one"] == [10, 20]
    assert dv.gather("one", block=True) == [10, 20]
    dv.scatter("one", [10, 20], block=True)
    assert dv["one"] == [[10], [20]]
    dv.scatter("odd", [1, 2, 3], flatten=True, block=True)
    assert dv["odd"] == [[1, 2], 3]
    assert dv.gather("odd", block=True) == [1, 2, 3]


def test_scatter_more_engines_than_items_and_target_subsets(cluster):
    dv = cluster[:]
    dv.scatter("few", [7], block=True)
    assert dv["few"] == [[7], []]
    assert dv.gather("few", block=True) == [7]
    dv.scatter("sub", "abc", targets=[1], block=True)
    assert cluster[1]["sub"] == "abc"
    assert dv.gather("sub", targets=[1], block=True) == ["abc"]  # a str part is an item, as in ipyparallel
    with pytest.raises(ValueError, match="dist='b'"):
        dv.scatter("x", [1], dist="r")


def test_dict_style_and_multi_name_push_pull(cluster):
    dv = cluster[:]
    dv["k"] = {"a": 1}
    assert dv["k"] == [{"a": 1}, {"a": 1}]
    dv.push({"p": 1, "q": "two"}, block=True)
    assert dv.pull(("p", "q"), block=True) == [[1, "two"], [1, "two"]]
    with pytest.raises(TypeError, match="names must be str"):
        dv.pull(["p", 3])


# -- Reference ---------------------------------------------------------------------------


def test_reference_resolves_in_each_engines_namespace(dv, cluster):
    assert dv.apply_sync(lambda r, k: r * k, Reference("rank"), 10) == [0, 10]
    assert dv.apply_sync(lambda r=None: r, r=Reference("rank + 100")) == [100, 101]
    assert dv.apply_sync(lambda rs: rs, [Reference("rank"), 5]) == [[0, 5], [1, 5]]
    lv = cluster.load_balanced_view()
    assert lv.apply_sync(lambda r: r, Reference("rank")) in (0, 1)
    with pytest.raises(CompositeError) as info:
        dv.apply_sync(lambda x: x, Reference("not_defined_anywhere"))
    assert [e.ename for e in info.value.elist] == ["NameError", "NameError"]
    assert "not_defined_anywhere" in info.value.elist[0].evalue
    assert repr(Reference("rank")) == "<Reference: 'rank'>"
    assert Reference("a + 1").get_object({"a": 1}) == 2
    with pytest.raises(TypeError):
        Reference(3)


# -- sync_imports --------------------------------------------------------------------------


def test_sync_imports_imports_here_and_there(cluster, capsys):
    dv = cluster[:]
    with dv.sync_imports():
        import json  # noqa: F401
        from os.path import basename  # noqa: F401
        import xml.dom  # noqa: F401
    out = capsys.readouterr().out
    assert "importing json on engine(s)" in out
    assert "importing basename from os.path on engine(s)" in out
    assert "importing xml.dom on engine(s)" in out
    dv.execute("r = json.dumps([1]), basename('/a/b'), xml.dom.__name__", block=True)
    assert dv.pull("r", block=True) == [("[1]", "b", "xml.dom")] * 2
    with dv.sync_imports(quiet=True):
        import colorsys  # noqa: F401
    assert capsys.readouterr().out == ""
    dv.execute("r = colorsys.__name__", block=True)
    assert dv["r"] == ["colorsys"] * 2


def test_sync_imports_raises_a_remote_import_error(cluster, tmp_path):
    (tmp_path / "only_on_the_client.py").write_text("VALUE = 1\n")
    sys.path.insert(0, str(tmp_path))
    try:
        with pytest.raises(CompositeError) as info:
            with cluster[:].sync_imports(quiet=True):
                import only_on_the_client  # noqa: F401
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("only_on_the_client", None)
    assert {e.ename for e in info.value.elist} == {"ModuleNotFoundError"}
    import builtins
    assert builtins.__import__.__name__ == "__import__"


# -- flags ---------------------------------------------------------------------------------


def test_targets_and_block_flags(cluster):
    dv = cluster[:]
    assert dv.targets == [0, 1]
    assert dv.block is False
    dv.set_flags(block=True, targets=[1])
    assert dv.apply(my_pid) == [cluster[1].apply_sync(my_pid)]
    with dv.temp_flags(block=False, targets=0):
        ar = dv.apply(my_pid)
        assert isinstance(ar, minipar.AsyncResult)
        assert ar.get(10) == cluster[0].apply_sync(my_pid)
    assert dv.block is True and dv.targets == [1]
    with pytest.raises(KeyError, match="'color' is not a flag"):
        dv.set_flags(color="red")
    with pytest.raises(ZeroDivisionError):
        with dv.temp_flags(block=False):
            1 / 0
    assert dv.block is True


# -- remote / parallel -----------------------------------------------------------------------


def test_remote_decorators(cluster):
    dv = cluster[:]

    @dv.remote(block=True)
    def where(x):
        import os
        return x, os.getpid()

    pids = dv.apply_sync(my_pid)
    assert where(3) == [(3, pids[0]), (3, pids[1])]
    assert where.__name__ == "where"

    @minipar.remote(cluster[1], block=False)
    def add(a, b=0):
        return a + b

    ar = add(1, b=2)
    assert isinstance(ar, minipar.AsyncResult)
    assert ar.get(10) == 3

    lv = cluster.load_balanced_view()

    @lv.remote(block=True, targets=[0])
    def lb_pid():
        import os
        return os.getpid()

    assert lb_pid() == pids[0]


def test_parallel_decorator_runs_on_parts_and_maps_items(cluster):
    dv = cluster[:]

    @dv.parallel(block=True)
    def part_lengths(part):
        return len(part)

    assert part_lengths(range(9)) == [5, 4]

    @dv.parallel(block=True)
    def doubled(part):
        return [2 * x for x in part]

    assert doubled(list(range(9))) == [2 * x for x in range(9)]
    assert dv.parallel(block=True)(double).map(range(5)) == [0, 2, 4, 6, 8]

    @minipar.parallel(dv, block=True)
    def pmul(a, b):
        return a * b

    a = np.arange(12.0).reshape(6, 2)
    np.testing.assert_array_equal(pmul(a, a), a * a)
    with pytest.raises(ValueError, match="equal length"):
        pmul([1, 2], [1, 2, 3])
    ar = dv.parallel(block=False)(double).map([1, 2, 3])
    assert isinstance(ar, minipar.AsyncMapResult)
    assert ar.get(10) == [2, 4, 6]

    lv = cluster.load_balanced_view()
    chunked = lv.parallel(block=True, chunksize=3)(part_lengths.func)
    assert chunked(range(7)) == [3, 3, 1]


# -- map, imap, wait -------------------------------------------------------------------------


def test_map_several_sequences_and_imap(cluster):
    dv = cluster[:]
    assert dv.map_sync(pow, [2, 3, 4], [2, 2, 2, 9]) == [4, 9, 16]
    it = dv.imap(double, range(6))
    assert iter(it) is it
    assert list(it) == [0, 2, 4, 6, 8, 10]
    with pytest.raises(TypeError, match="block"):
        dv.map_async(double, [1], block=True)
    lv = cluster.load_balanced_view()
    assert list(lv.imap(double, range(5), chunksize=2)) == [0, 2, 4, 6, 8]


def test_view_wait_and_outstanding(cluster, tmp_path):
    dv = cluster[:]
    gate = str(tmp_path / "gate")
    ar = dv.apply_async(wait_for_file, gate, 1)
    quick = cluster[0].apply_async(double, 2)
    assert dv.wait(timeout=0.05) is False
    assert set(ar.msg_ids) <= dv.outstanding
    assert dv.wait([ar.msg_ids[0]], timeout=0.05) is False
    open(gate, "w").close()
    assert dv.wait(timeout=10) is True
    assert dv.outstanding == set()
    assert quick.get(10) == 4
    assert dv.wait([ar, quick.msg_ids[0]], timeout=0) is True
    assert ar.get() == [1, 1]


# -- load-balanced map --------------------------------------------------------------------------


def test_lb_map_chunksize(cluster):
    lv = cluster.load_balanced_view()
    amr = lv.map_async(double, range(10), chunksize=4)
    assert len(amr.msg_ids) == 3
    assert len(amr) == 10
    assert amr.get(10) == [2 * x for x in range(10)]
    assert lv.map_sync(double, range(10), chunksize=20) == [2 * x for x in range(10)]
    assert lv.map(double, [], block=True) == []


def test_lb_map_unordered_yields_in_completion_order(cluster):
    lv = cluster.load_balanced_view()
    amr = lv.map_async(sleep_and_return, [1.0, 0.05, 0.1], ordered=False)
    it = iter(amr)
    first = next(it)
    assert first == 0.05
    assert not amr.done()
    assert sorted([first, *it]) == [0.05, 0.1, 1.0]
    ordered = lv.map_async(sleep_and_return, [0.5, 0.05, 0.1])
    assert list(ordered) == [0.5, 0.05, 0.1]


def test_iterating_a_map_yields_before_it_is_done(cluster, tmp_path):
    lv = cluster.load_balanced_view()
    gate = str(tmp_path / "gate")
    amr = lv.map_async(wait_for_file, ["/", gate], [1, 2])
    it = iter(amr)
    assert next(it) == 1
    assert not amr.done()
    open(gate, "w").close()
    assert list(it) == [2]


# -- task flags in the request metadata -----------------------------------------------------------


@pytest.fixture
def sent_metadata(cluster, monkeypatch):
    """The metadata of every request submitted, as the controller receives it."""
    sent = []
    submit = cluster._submit

    def spy(msg_type, items, factory, **kwargs):
        items = list(items)
        sent.extend(md for _, md, _ in items)
        return submit(msg_type, items, factory, **kwargs)

    monkeypatch.setattr(cluster, "_submit", spy)
    return sent


def test_lb_task_flags_travel_in_metadata(cluster, sent_metadata):
    lv = cluster.load_balanced_view()
    first = cluster[1].apply_async(double, 1)
    second = cluster[1].apply_async(double, 2)
    first.get(10)
    second.get(10)
    sent_metadata.clear()
    lv.set_flags(after=first, follow=[second, [first.msg_ids[0]]], timeout=5, retries=2, targets=[1])
    assert lv.apply_sync(double, 3) == 6
    md = sent_metadata[-1]
    assert md == {"after": first.msg_ids, "follow": second.msg_ids + first.msg_ids, "timeout": 5.0, "retries": 2,
                  "targets": [1]}
    with lv.temp_flags(after=Dependency(first, all=False, failure=True), retries=0, timeout=None):
        lv.apply_sync(double, 4)
    assert sent_metadata[-1]["after"] == {"dependencies": first.msg_ids, "all": False, "success": True,
                                          "failure": True}
    assert "retries" not in sent_metadata[-1]
    assert lv.retries == 2 and lv.after is first
    assert lv.map_sync(double, range(4), chunksize=2) == [0, 2, 4, 6]
    assert all(m["targets"] == [1] and m["retries"] == 2 for m in sent_metadata[-2:])
    plain = cluster.load_balanced_view()
    plain.apply_sync(double, 1)
    assert sent_metadata[-1] == {}


def test_lb_flag_validation(cluster):
    lv = cluster.load_balanced_view()
    with pytest.raises(ValueError, match="invalid dependency"):
        lv.set_flags(after=3)
    with pytest.raises(ValueError, match="negative"):
        lv.set_flags(timeout=-1)
    with pytest.raises(TypeError, match="timeout"):
        lv.set_flags(timeout="soon")
    with pytest.raises(TypeError, match="retries"):
        lv.set_flags(retries=1.5)
    with pytest.raises(KeyError, match="'flavor' is not a flag of LoadBalancedView"):
        lv.set_flags(flavor=1)
    assert (lv.after, lv.follow, lv.timeout, lv.retries) == (None, None, None, 0)


def test_lb_targets_restrict_engines(cluster):
    pid1 = cluster[1].apply_sync(my_pid)
    lv = cluster.load_balanced_view(targets=[1])
    assert set(lv.map_sync(my_pid, range(6))) == {pid1}


# -- require / depend / Dependency --------------------------------------------------------------------


def test_require_imports_modules_on_the_engine(cluster):
    lv = cluster.load_balanced_view()
    cs = __import__("colorsys")  # not bound as 'colorsys' here: the functions must get it from @require
    assert lv.apply_sync(to_hls, 1.0, 0.0, 0.0) == cs.rgb_to_hls(1.0, 0.0, 0.0)

    @minipar.require(cs)
    @minipar.interactive
    def interactive_hls():
        return colorsys.rgb_to_hls(0.0, 1.0, 0.0)  # noqa: F821

    cluster[0].execute("colorsys = None", block=True)
    assert cluster[0].apply_sync(interactive_hls) == cs.rgb_to_hls(0.0, 1.0, 0.0)

    @minipar.require("no_such_module_here")
    def never():
        return 1

    with pytest.raises(RemoteError) as info:
        cluster[0].apply_sync(never)
    assert info.value.ename == "UnmetDependency"
    assert "no_such_module_here" in info.value.evalue
    with pytest.raises(RemoteError) as info, lv.temp_flags(targets=cluster.ids):
        lv.apply_sync(never)
    assert info.value.ename == "ImpossibleDependency"  # the controller tried every engine it may use


def test_require_sends_functions_and_objects(cluster):
    helper = minipar.interactive(lambda x: x + 1)
    helper.__name__ = "helper"

    @minipar.require(helper, scale=10)
    @minipar.interactive
    def use():
        return helper(1) * scale  # noqa: F821

    assert cluster[1].apply_sync(use) == 20
    with pytest.raises(TypeError, match="by keyword"):
        minipar.require(3)


def test_depend_runs_its_check_on_the_engine(dv, cluster):
    @minipar.depend(rank_is, 1)
    def on_one():
        return "ran"

    assert on_one.__name__ == "on_one"
    assert cluster[1].apply_sync(on_one) == "ran"
    with pytest.raises(RemoteError) as info:
        cluster[0].apply_sync(on_one)
    assert info.value.ename == "UnmetDependency"
    assert "rank_is" in info.value.evalue
    lv = cluster.load_balanced_view()
    ranks = lv.map_sync(minipar.depend(rank_is, 1)(minipar.interactive(lambda i: rank)), range(4))  # noqa: F821
    assert ranks == [1, 1, 1, 1]


def test_dependency_semantics():
    ar_like = type("AR", (), {"msg_ids": ["a", "b"]})()
    d = Dependency([ar_like, "c"])
    assert d == {"a", "b", "c"} and d.all and d.success and not d.failure
    assert not d.check({"a", "b"}) and d.check({"a", "b", "c"})
    assert d.unreachable({"a"}, failed={"b"})
    anyone = Dependency(["a", "b"], all=False, success=False, failure=True)
    assert anyone.check(set(), failed={"b"}) and not anyone.check({"a", "b"})
    assert anyone.unreachable({"a", "b"}) and not anyone.unreachable({"a"})
    assert Dependency(anyone.as_dict()) == anyone and Dependency(anyone.as_dict()).all is False
    assert Dependency().check(set())
    with pytest.raises(ValueError):
        Dependency(["a"], success=False, failure=False)


# -- executor -------------------------------------------------------------------------------------


def test_executor_over_a_view(cluster):
    lv = cluster.load_balanced_view()
    ex = lv.executor
    assert isinstance(ex, concurrent.futures.Executor)
    fut = ex.submit(pow, 2, 5)
    assert isinstance(fut, concurrent.futures.Future)
    assert fut.result(10) == 32
    assert list(ex.map(pow, [2, 3, 4], [2, 2, 2])) == [4, 9, 16]
    assert list(ex.map(double, range(7), chunksize=3)) == [2 * x for x in range(7)]
    done = list(concurrent.futures.as_completed([ex.submit(double, i) for i in range(4)], timeout=10))
    assert sorted(f.result() for f in done) == [0, 2, 4, 6]
    with pytest.raises(RemoteError) as info:
        list(ex.map(lambda x: 1 / x, [1, 0]))
    assert info.value.ename == "ZeroDivisionError"
    results = ex.map(sleep_and_return, [0.05, 2.0], timeout=0.5)
    assert next(results) == 0.05
    with pytest.raises(concurrent.futures.TimeoutError):
        next(results)
    with lv.executor as scoped:
        slow = scoped.submit(sleep_and_return, 0.3)
    assert slow.done() and slow.result() == 0.3
    with pytest.raises(RuntimeError, match="after shutdown"):
        scoped.submit(double, 1)
    assert cluster[:].executor.submit(double, 4).result(10) == [8, 8]
    assert list(cluster[:].executor.map(double, range(3))) == [0, 2, 4]


# -- the example --------------------------------------------------------------------------------------


def test_lb_montecarlo_example(cluster):
    out = subprocess.run([sys.executable, str(ROOT / "examples" / "lb_montecarlo.py"), "--url-file",
                          str(cluster.profile.client_file()), "--samples", "200000", "--tasks", "20",
                          "--chunksize", "4"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    m = re.search(r"pi ~= ([\d.]+) from 200000 samples in 20 tasks \(5 messages of up to 4\) on 2 engines",
                  out.stdout)
    assert m, out.stdout
    assert abs(float(m.group(1)) - 3.14159) < 0.03


def test_dependency_graph_example(cluster):
    out = subprocess.run([sys.executable, str(ROOT / "examples" / "dependency_graph.py"), "--url-file",
                          str(cluster.profile.client_file()), "--seconds", "0.1"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    lines = out.stdout.splitlines()
    assert re.match(r"merge +ok on engine \d: merge after left\+right$", lines[3])
    assert lines[5] == "broken     RuntimeError: this branch fails on purpose"
    assert lines[6].startswith("never_runs ImpossibleDependency: ")
    order = lines[7].split()[2:]
    assert order[0] == "load" and order[-2:] == ["merge", "report"] and set(order[1:3]) == {"left", "right"}
    assert lines[8] == "every task started after its parents finished"
