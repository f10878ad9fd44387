"""AsyncResult and the remote errors, on real processes: the Future interface, progress and
timings, metadata, live output, display, wait_interactive, split/join, indexing."""
from __future__ import annotations

import asyncio
import concurrent.futures
import io
import threading
import time
from datetime import datetime

import pytest

import minipar
from minipar import AsyncResult, CompositeError, RemoteError
from helpers import wait_for


def wait_for_file(path, value=None):
    import os
    import time
    while not os.path.exists(path):
        time.sleep(0.01)
    return value


def talk_then_wait(path):
    import sys
    print("halfway")
    print("warning", file=sys.stderr)
    wait_for_file(path)
    return "done"


def talk(n):
    import sys
    print("out", n)
    print("err", n, file=sys.stderr)
    return n


def fail_on_2(n):
    if n == 2:
        raise ValueError("two!")
    return n


def my_pid(*args):
    import os
    return os.getpid()


class TTY(io.StringIO):
    def isatty(self):
        return True


@pytest.fixture
def gate(tmp_path):
    """A file tasks wait for; opened at teardown too, so a failed test leaves no engine blocked."""
    path = str(tmp_path / "gate")
    yield path
    open_gate(path)


def open_gate(path):
    open(path, "w").close()


# -- the Future interface ----------------------------------------------------------------


def test_future_interface_and_callbacks(cluster, gate):
    ar = cluster[0].apply_async(wait_for_file, gate, 42)
    assert isinstance(ar, concurrent.futures.Future)
    assert not ar.ready() and not ar.done()
    with pytest.raises(RuntimeError, match="not done yet"):
        ar.successful()
    called = threading.Event()
    seen = []
    ar.add_done_callback(lambda f: (seen.append(f.result()), called.set()))
    assert ar.wait(0.05) is False
    open_gate(gate)
    assert called.wait(10)
    assert seen == [42]
    assert ar.ready() and ar.done() and ar.successful()
    assert ar.result() == ar.get() == ar.r == 42
    assert ar.exception() is None
    late = []
    ar.add_done_callback(lambda f: late.append(f))
    assert late == [ar]


def test_await_and_errors_as_exceptions(cluster):
    async def both():
        return await cluster[0].apply_async(pow, 2, 3), await cluster[1].apply_async(pow, 3, 2)

    assert asyncio.run(both()) == (8, 9)
    bad = cluster[0].apply_async(lambda: 1 / 0)
    assert isinstance(bad.exception(10), RemoteError)
    assert not bad.successful()


def test_timeout_is_a_futures_timeout_too(cluster, gate):
    ar = cluster[0].apply_async(wait_for_file, gate)
    with pytest.raises(concurrent.futures.TimeoutError):
        ar.get(0.05)
    with pytest.raises(minipar.TimeoutError, match="0 of 1 results arrived"):
        ar.get(0.01)
    open_gate(gate)
    ar.get(10)


def test_abort_a_queued_task(cluster, gate):
    running = cluster[0].apply_async(wait_for_file, gate, "ran")
    queued = cluster[0].apply_async(abs, -3)
    queued.abort()
    open_gate(gate)  # the engine reads control messages between tasks
    with pytest.raises(RemoteError) as info:
        queued.get(10)
    assert info.value.ename == "TaskAborted"
    assert queued.metadata["status"] == "aborted"
    assert running.get(10) == "ran"
    with pytest.raises(RuntimeError, match="already done"):
        running.abort()


# -- progress and timings ------------------------------------------------------------------


def test_progress_counts_finished_tasks(cluster, gate):
    lv = cluster.load_balanced_view()
    amr = lv.map_async(wait_for_file, ["/", "/", gate, gate], range(4))
    assert len(amr) == 4
    wait_for(lambda: amr.progress == 2, what="the two ungated tasks")
    assert not amr.done()
    before = amr.elapsed
    assert before > 0
    open_gate(gate)
    assert amr.get(10) == [0, 1, 2, 3]
    assert amr.progress == 4
    chunked = lv.map_async(abs, range(-5, 0), chunksize=2)
    chunked.get(10)
    assert (len(chunked), chunked.progress, len(chunked.msg_ids)) == (5, 5, 3)


def test_serial_and_wall_time(cluster):
    ar = cluster[:].apply_async(time.sleep, 0.3)
    with pytest.raises(minipar.TimeoutError, match="not ready"):
        ar.serial_time
    ar.get(10)
    assert 0.55 <= ar.serial_time < 1.5
    assert 0.3 <= ar.wall_time < ar.serial_time
    assert ar.elapsed == ar.wall_time


def test_metadata(cluster):
    ar = cluster[0].apply_async(talk, 1)
    ar.get(10)
    md = ar.metadata
    assert set(md) >= {"engine_id", "engine_uuid", "submitted", "started", "completed", "received", "status",
                       "stdout", "stderr", "error"}
    assert md["engine_id"] == 0
    assert md["engine_uuid"] == cluster._engines[0]
    assert md["submitted"] <= md["started"] <= md["completed"] <= md["received"]
    assert all(isinstance(md[k], datetime) for k in ("submitted", "started", "completed", "received"))
    assert (md["status"], md["error"], md["stdout"], md["stderr"]) == ("ok", None, "out 1\n", "err 1\n")
    bad = cluster[:].apply_async(fail_on_2, 2)
    bad.wait(10)
    assert [m["status"] for m in bad.metadata] == ["error", "error"]
    assert all(isinstance(m["error"], RemoteError) for m in bad.metadata)
    assert bad.engine_id == [0, 1]
    assert bad["engine_id"] == [0, 1]
    assert bad.status == ["error", "error"]
    assert isinstance(bad.submitted[0], datetime)


# -- output --------------------------------------------------------------------------------


def test_stdout_streams_while_the_task_runs(cluster, gate):
    ar = cluster[1].apply_async(talk_then_wait, gate)
    live = io.StringIO()
    with ar.stream_output(file=live):
        wait_for(lambda: "halfway" in ar.stdout, what="output streamed before the task ends")
        wait_for(lambda: "warning" in ar.stderr, what="stderr streamed before the task ends")
        assert not ar.done()
        wait_for(lambda: "[stdout:1] \nhalfway" in live.getvalue(), what="labelled live output")
        open_gate(gate)
        assert ar.get(10) == "done"
    assert ar.stdout == "halfway\n"
    assert ar.stderr == "warning\n"


def test_display_outputs_labels_each_engine(cluster, capsys):
    ar = cluster[:].apply_async(talk, 7)
    with pytest.raises(minipar.TimeoutError):
        cluster[0].apply_async(time.sleep, 0.5).display_outputs()
    ar.get(10)
    capsys.readouterr()
    ar.display_outputs()
    cap = capsys.readouterr()
    assert cap.out == "[stdout:0] \nout 7\n[stdout:1] \nout 7\n"
    assert cap.err == "[stderr:0] \nerr 7\n[stderr:1] \nerr 7\n"
    ar.display_outputs(groupby="engine")
    cap = capsys.readouterr()
    assert cap.out == "[stdout:0] \nout 7\n[stdout:1] \nout 7\n"
    multi = cluster[:].execute("print('a')\nprint('b')", block=True)
    capsys.readouterr()
    multi.display_outputs()
    assert capsys.readouterr().out == "[stdout:0] \na\nb\n[stdout:1] \na\nb\n"
    single = cluster[1].apply_async(talk, 3)
    single.get(10)
    capsys.readouterr()
    single.display_outputs()
    assert capsys.readouterr().out == "out 3\n"
    with pytest.raises(ValueError, match="groupby"):
        ar.display_outputs(groupby="color")


def test_wait_interactive_draws_a_bar_on_a_terminal(cluster):
    lv = cluster.load_balanced_view()
    amr = lv.map_async(time.sleep, [0.0, 0.0, 0.4, 0.4])
    tty = TTY()
    amr.wait_interactive(interval=0.05, file=tty)
    out = tty.getvalue()
    assert amr.done()
    assert out.count("\r") >= 3
    assert "\n" not in out[:-1] and out.endswith("\n")
    last = out.rsplit("\r", 1)[1]
    assert last.startswith("sleep: [" + "#" * 30 + "] 100% 4/4 tasks")


def test_wait_interactive_prints_lines_elsewhere(cluster, gate):
    lv = cluster.load_balanced_view()
    amr = lv.map_async(wait_for_file, ["/", gate], [0, 1])
    log = io.StringIO()
    wait_for(lambda: amr.progress == 1, what="the ungated task")
    with pytest.raises(minipar.TimeoutError, match="1 of 2 tasks done within 0.3s"):
        amr.wait_interactive(interval=0.05, timeout=0.3, file=log)
    assert "\r" not in log.getvalue()
    assert log.getvalue().splitlines() == ["wait_for_file: 1/2 tasks done after 0.0s"]
    open_gate(gate)
    log = io.StringIO()
    amr.wait_interactive(file=log)
    assert log.getvalue().splitlines()[-1].startswith("wait_for_file: 2/2 tasks done after ")


def test_wait_interactive_first_exception(cluster, gate):
    lv = cluster.load_balanced_view()
    amr = lv.map_async(fail_on_2, [2, 0])
    amr2 = lv.map_async(wait_for_file, [gate])
    joined = AsyncResult.join(amr, amr2)
    joined.wait_interactive(interval=0.05, return_when=minipar.FIRST_EXCEPTION, file=io.StringIO())
    assert not joined.done()
    open_gate(gate)
    joined.wait(10)


# -- split, join, wait(return_when) ----------------------------------------------------------


def test_split_and_join(cluster):
    dv = cluster[:]
    parent = dv.apply_async(my_pid)
    children = parent.split()
    assert [len(c.msg_ids) for c in children] == [1, 1]
    assert children[0].split() == (children[0],)
    result = parent.get(10)
    assert [c.get(10) for c in children] == result
    assert [c.metadata["engine_id"] for c in children] == [0, 1]
    assert AsyncResult.join(*children).get(10) == result
    amr = cluster.load_balanced_view().map_async(abs, [-1, -2, -3])
    parts = amr.split()
    assert all(type(p) is AsyncResult for p in parts)
    assert [p.get(10) for p in parts] == [[[1]], [[2]], [[3]]]
    assert minipar.AsyncMapResult.join(*parts).get(10) == [1, 2, 3]
    with pytest.raises(ValueError):
        AsyncResult.join()
    with pytest.raises(ValueError, match="share"):
        AsyncResult.join(children[0], parent)


def test_join_results_that_are_still_running(cluster, gate):
    one = cluster[0].apply_async(wait_for_file, gate, "a")
    two = cluster[1].apply_async(wait_for_file, gate, "b")
    joined = AsyncResult.join(one, two)
    assert not joined.done() and len(joined) == 2
    open_gate(gate)
    assert joined.get(10) == ["a", "b"]
    assert joined.engine_id == [0, 1]


def test_wait_return_when(cluster, gate):
    quick = cluster.load_balanced_view().apply_async(abs, -1)
    quick.get(10)
    ar = cluster[:].apply_async(wait_for_file, gate, 1)
    done, pending = AsyncResult.join(quick, ar).wait(10, return_when=minipar.FIRST_COMPLETED)
    assert [d.msg_ids for d in done] == [quick.msg_ids] and len(pending) == 2
    open_gate(gate)
    done, pending = ar.wait(10, return_when=minipar.ALL_COMPLETED)
    assert len(done) == 2 and not pending


# -- indexing, iteration, dicts, return_exceptions --------------------------------------------------


def test_getitem_iteration_and_get_dict(cluster, gate):
    pending = cluster[0].apply_async(wait_for_file, gate)
    with pytest.raises(minipar.TimeoutError):
        pending[0]
    open_gate(gate)
    pending.get(10)
    ar = cluster[:].apply_async(lambda x: [x, x + 1], 5)
    ar.get(10)
    assert ar[0] == [5, 6]
    assert ar[1:] == [[5, 6]]
    assert ar["engine_id"] == [0, 1]
    with pytest.raises(KeyError):
        ar["colour"]
    with pytest.raises(TypeError):
        ar[1.5]
    assert list(ar) == [[5, 6], [5, 6]]
    with pytest.raises(TypeError, match="single result is not iterable"):
        iter(cluster[0].apply_async(abs, 1))
    pids = cluster[:].apply_async(my_pid)
    assert pids.get_dict(10) == {0: pids[0], 1: pids[1]}
    with pytest.raises(AttributeError):
        ar.not_a_thing
    many = cluster.load_balanced_view().map_async(my_pid, range(6))
    many.get(10)
    with pytest.raises(ValueError, match="several"):
        many.get_dict()


def test_return_exceptions(cluster):
    lv = cluster.load_balanced_view()
    values = lv.map(fail_on_2, range(4), block=True, return_exceptions=True)
    assert values[:2] == [0, 1] and values[3] == 3
    assert isinstance(values[2], RemoteError) and values[2].ename == "ValueError"
    amr = lv.map_async(fail_on_2, range(4))
    with pytest.raises(CompositeError):
        amr.get(10)
    assert amr.get(return_exceptions=True)[2].evalue == "two!"
    it = iter(lv.map_async(fail_on_2, range(4)))
    assert [next(it), next(it)] == [0, 1]
    with pytest.raises(CompositeError, match="two!|one or more"):
        next(it)


# -- errors ---------------------------------------------------------------------------------------


def test_remote_error(cluster):
    with pytest.raises(RemoteError) as info:
        cluster[1].apply_sync(fail_on_2, 2)
    err = info.value
    assert (err.ename, err.evalue) == ("ValueError", "two!")
    assert "Traceback" in err.traceback and "fail_on_2" in err.traceback and 'raise ValueError("two!")' in err.traceback
    assert str(err) == "[1:apply] ValueError: two!"
    with pytest.raises(RemoteError) as again:
        err.raise_exception()
    assert again.value is err
    assert err.render_traceback() == ["[1:apply]"] + err.traceback.splitlines()
    assert err._render_traceback_() == err.render_traceback()
    out = io.StringIO()
    err.print_traceback(file=out)
    assert out.getvalue() == "[1:apply]\n" + err.traceback.rstrip("\n") + "\n"


def test_composite_error_has_every_engine(cluster):
    with pytest.raises(CompositeError) as info:
        cluster[:].apply_sync(lambda: 1 / 0)
    err = info.value
    assert len(err.elist) == 2
    assert [e[3]["engine_id"] for e in err.elist] == [0, 1]
    text = str(err)
    assert text.splitlines() == ["one or more exceptions raised in: <lambda>",
                                 "[0:apply]ZeroDivisionError: division by zero",
                                 "[1:apply]ZeroDivisionError: division by zero"]
    with pytest.raises(RemoteError) as second:
        err.raise_exception(1)
    assert tuple(second.value.args) == err.elist[1][:2] and second.value.engine_info["engine_id"] == 1
    with pytest.raises(IndexError, match="index 5 does not exist"):
        err.raise_exception(5)
    tb = err.render_traceback()
    assert sum("ZeroDivisionError" in line for line in tb) >= 2
    assert tb.index("[0:apply]:") < tb.index("[1:apply]:")
    only = err.render_traceback(1)
    assert only[0] == "[1:apply]:" and "[0:apply]:" not in only
    out = io.StringIO()
    err.print_traceback(0, file=out)
    assert out.getvalue().startswith("[0:apply]:\n")
    assert err._render_traceback_() == tb
    assert isinstance(err, RemoteError) and err.ename == "ZeroDivisionError"
