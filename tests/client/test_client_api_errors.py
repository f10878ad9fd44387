"""ipyparallel's exception taxonomy and CompositeError's shape, against real engines.

EXPECTED_TREE is ipyparallel 9.2.0's ipyparallel/error.py, written out by hand so the test
holds without ipyparallel installed; when it is importable the live tree is compared too.
"""
from __future__ import annotations

import builtins
import inspect
import io
import pickle

import pytest

import minipar
import minipar.error

EXPECTED_TREE = {
    "IPythonError": ("Exception",),
    "KernelError": ("IPythonError",),
    "EngineError": ("KernelError",),
    "NoEnginesRegistered": ("KernelError",),
    "TaskAborted": ("KernelError",),
    "TaskTimeout": ("KernelError",),
    "UnmetDependency": ("KernelError",),
    "ImpossibleDependency": ("UnmetDependency",),
    "DependencyTimeout": ("ImpossibleDependency",),
    "InvalidDependency": ("ImpossibleDependency",),
    "RemoteError": ("KernelError",),
    "TaskRejectError": ("KernelError",),
    "CompositeError": ("RemoteError",),
    "AlreadyDisplayedError": ("RemoteError",),
}
"""ipyparallel.error's classes and their bases (TimeoutError, the builtin, is checked apart)."""

EXPECTED_FUNCTIONS = ("collect_exceptions", "wrap_exception", "unwrap_exception")


def resolve(name):
    return getattr(minipar.error, name, None) or getattr(builtins, name)


@pytest.mark.parametrize("name", sorted(EXPECTED_TREE))
def test_every_ipyparallel_error_class_has_the_same_bases(name):
    cls = getattr(minipar.error, name)
    assert cls.__bases__ == tuple(resolve(b) for b in EXPECTED_TREE[name])
    assert getattr(minipar, name) is cls, "minipar does not export %s at top level" % name


def test_the_live_ipyparallel_tree_matches_when_installed():
    ipp_error = pytest.importorskip("ipyparallel.error")
    classes = {n: c for n, c in vars(ipp_error).items()
               if inspect.isclass(c) and issubclass(c, BaseException) and c.__module__ == ipp_error.__name__}
    assert {n: tuple(b.__name__ for b in c.__bases__) for n, c in classes.items()} == EXPECTED_TREE
    assert ipp_error.TimeoutError is builtins.TimeoutError


def test_timeout_error_is_caught_as_the_builtin():
    assert issubclass(minipar.TimeoutError, builtins.TimeoutError)
    assert issubclass(minipar.TimeoutError, minipar.MiniparError)


def test_minipar_error_is_ipythonerror_and_the_old_names_remain():
    assert minipar.MiniparError is minipar.IPythonError
    assert minipar.DependencyError is minipar.UnmetDependency
    for extra in (minipar.TaskNotFound, minipar.error.ProtocolMismatch, minipar.error.ConnectionFileError):
        assert issubclass(extra, minipar.MiniparError)
    assert issubclass(minipar.TaskNotFound, minipar.RemoteError) and issubclass(minipar.TaskNotFound, KeyError)


@pytest.mark.parametrize("name", EXPECTED_FUNCTIONS)
def test_the_error_helpers_are_exported(name):
    assert callable(getattr(minipar, name)) and getattr(minipar, name) is getattr(minipar.error, name)


@pytest.mark.parametrize("ename, catches", [
    ("ImpossibleDependency", ("ImpossibleDependency", "UnmetDependency", "KernelError")),
    ("InvalidDependency", ("InvalidDependency", "ImpossibleDependency", "UnmetDependency")),
    ("DependencyTimeout", ("DependencyTimeout", "ImpossibleDependency", "UnmetDependency")),
    ("TaskTimeout", ("TaskTimeout", "DependencyTimeout", "ImpossibleDependency", "KernelError")),
    ("EngineError", ("EngineError", "KernelError")),
    ("TaskAborted", ("TaskAborted", "KernelError")),
])
def test_controller_reported_errors_are_caught_by_class_and_as_remote_errors(ename, catches):
    err = minipar.unwrap_exception({"ename": ename, "evalue": "why", "traceback": []})
    assert isinstance(err, minipar.RemoteError) and err.ename == ename
    for name in catches:
        assert isinstance(err, getattr(minipar, name)), name
    again = pickle.loads(pickle.dumps(err))
    assert type(again) is type(err) and (again.ename, again.evalue) == (ename, "why")


def test_a_user_exception_stays_a_plain_remote_error():
    err = minipar.unwrap_exception({"ename": "ValueError", "evalue": "x", "traceback": ["a\n", "b"]})
    assert type(err) is minipar.RemoteError and err.traceback == "a\n\nb"


def test_wrap_then_unwrap_keeps_name_value_and_traceback():
    try:
        raise KeyError("gone")
    except KeyError:
        content = minipar.wrap_exception({"engine_id": 3, "method": "apply"})
    assert content["status"] == "error" and isinstance(content["traceback"], list)
    err = minipar.unwrap_exception(content)
    assert str(err) == "[3:apply] KeyError: 'gone'"
    assert "raise KeyError" in err.traceback


def test_collect_exceptions_flattens_and_passes_clean_results_through():
    ok = [1, 2]
    assert minipar.collect_exceptions(ok, "f") is ok
    one = minipar.RemoteError("ValueError", "a", "tb", {"engine_id": 0, "method": "apply"})
    inner = minipar.CompositeError("inner", [("KeyError", "b", "", {"engine_id": 1, "method": "apply"})])
    with pytest.raises(minipar.CompositeError) as info:
        minipar.collect_exceptions({0: one, 1: inner, 2: 5}, "f")
    assert str(info.value).splitlines()[0] == "one or more exceptions raised in: f"
    assert [e[0] for e in info.value.elist] == ["ValueError", "KeyError"]


def test_already_displayed_error_shows_only_the_count():
    comp = minipar.CompositeError("m", [("A", "1", "", {}), ("B", "2", "", {})])
    err = minipar.AlreadyDisplayedError(comp)
    assert str(err) == "2 errors" and err.render_traceback() == ["2 errors"]
    assert repr(err) == "<AlreadyDisplayedError(2 errors)>"


# -- CompositeError from real engines -----------------------------------------------------------


def fail_with(x):
    raise ValueError("bad %s" % x)


def test_elist_holds_plain_tuples_as_in_ipyparallel(cluster):
    with pytest.raises(minipar.CompositeError) as info:
        cluster[:].apply_sync(fail_with, 1)
    err = info.value
    assert all(type(e) is not tuple and isinstance(e, tuple) and len(e) == 4 for e in err.elist)
    assert [e[0] for e in err.elist] == ["ValueError", "ValueError"]
    for i, (ename, evalue, tb, info_) in enumerate(err.elist):
        assert (ename, evalue) == ("ValueError", "bad 1")
        assert "fail_with" in tb and 'raise ValueError("bad %s" % x)' in tb
        assert info_["engine_id"] == i and info_["method"] == "apply" and info_["engine_uuid"]
    assert err.args == ("ValueError", "ValueError")
    assert repr(err) == "CompositeError(2)"
    again = pickle.loads(pickle.dumps(err))
    assert again.elist == err.elist and str(again) == str(err)


def test_print_shows_each_error_on_a_line(cluster, capsys):
    with pytest.raises(minipar.CompositeError) as info:
        cluster[:].apply_sync(fail_with, 2)
    print(info.value)
    assert capsys.readouterr().out.splitlines() == [
        "one or more exceptions raised in: fail_with",
        "[0:apply]ValueError: bad 2",
        "[1:apply]ValueError: bad 2",
    ]


def test_raise_exception_raises_one_remote_error(cluster):
    with pytest.raises(minipar.CompositeError) as info:
        cluster[:].apply_sync(fail_with, 3)
    with pytest.raises(minipar.RemoteError) as first:
        info.value.raise_exception()
    assert first.type is minipar.RemoteError
    assert str(first.value) == "[0:apply] ValueError: bad 3"
    assert repr(first.value) == "<RemoteError[0]:ValueError(bad 3)>"
    with pytest.raises(minipar.RemoteError, match=r"^\[1:apply\] ValueError: bad 3$"):
        info.value.raise_exception(1)
    with pytest.raises(IndexError, match="an exception with index 2 does not exist"):
        info.value.raise_exception(2)


def test_only_tb_limit_errors_and_tracebacks_are_shown(cluster):
    lview = cluster.load_balanced_view()
    with pytest.raises(minipar.CompositeError) as info:
        lview.map_sync(fail_with, range(6), chunksize=1)
    err = info.value
    assert err.tb_limit == minipar.CompositeError.tb_limit == 4
    assert len(err.elist) == 6
    lines = str(err).splitlines()
    assert lines[0] == "one or more exceptions raised in: fail_with"
    assert [line.split("]", 1)[1] for line in lines[1:5]] == ["ValueError: bad %d" % i for i in range(4)]
    assert lines[5:] == [".... 2 more exceptions ..."]
    tb = err.render_traceback()
    assert sum(1 for line in tb if line.endswith(":apply]:")) == 4
    assert sum(1 for line in tb if line.startswith("ValueError: bad")) == 4
    assert tb[-1] == "... 2 more exceptions ..."
    assert err._render_traceback_() == tb
    one = err.render_traceback(5)
    assert one[0].endswith(":apply]:") and one[-1] == "ValueError: bad 5"
    out = io.StringIO()
    err.print_traceback(file=out)
    assert out.getvalue() == "\n".join(tb) + "\n"


def test_a_dead_engines_error_is_engine_error_and_remote_error():
    err = minipar.unwrap_exception({"ename": "EngineError", "evalue": "engine 4 died",
                                    "engine_info": {"engine_id": 4, "method": "apply"}})
    assert str(err) == "[4:apply] EngineError: engine 4 died"
    comp = minipar.CompositeError("m", [err])
    with pytest.raises(minipar.EngineError):
        comp.raise_exception(0)


def test_an_error_without_an_engine_is_labelled_as_in_ipyparallel():
    err = minipar.unwrap_exception({"ename": "ImpossibleDependency", "evalue": "never",
                                    "engine_info": {"engine_id": None, "method": "apply"}})
    assert str(err) == "[Engine Exception] ImpossibleDependency: never"
    assert err.render_traceback() == ["[Engine Exception]", "No traceback available"]


def test_future_result_timeout_is_minipars_timeout_error(cluster):
    from helpers import announce_then_sleep
    ar = cluster[0].apply_async(announce_then_sleep, 1.0)
    with pytest.raises(minipar.TimeoutError):
        ar.result(timeout=0.05)
    assert ar.result(timeout=10) == "slept"


def test_a_result_the_client_cannot_unpickle_is_a_labelled_remote_error(cluster):
    cluster[0].execute("class FailsToUnpickle:\n    def __reduce__(self):\n        return (eval, ('1/0',))\n"
                       "made = FailsToUnpickle()", block=True)
    with pytest.raises(minipar.RemoteError) as info:
        cluster[0].pull("made", block=True)
    assert info.value.ename == "ZeroDivisionError"
    assert "could not be unpickled on the client" in info.value.evalue
    assert str(info.value).startswith("[0:apply] ZeroDivisionError: ")
