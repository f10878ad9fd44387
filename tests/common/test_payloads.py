"""What travels: big arrays zero-copy, and functions defined in a user's __main__ script."""
from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from helpers import ROOT, start_cluster


def test_100mb_numpy_array_round_trips(cluster):
    np = pytest.importorskip("numpy")
    rng = np.random.default_rng(42)
    a = rng.random(100 * 1024 * 1024 // 8)
    assert a.nbytes == 100 * 1024 * 1024
    back = cluster[0].apply_sync(lambda x: x, a)
    assert back.dtype == a.dtype and back.shape == a.shape
    assert np.array_equal(back, a)
    assert back.flags.writeable
    summary = cluster[0].apply_sync(lambda x: (x.dtype.str, x.shape, float(x.sum()), x.flags.writeable), a)
    assert summary == (a.dtype.str, a.shape, pytest.approx(float(a.sum())), True)


def test_arrays_of_several_shapes_and_large_bytes(cluster):
    np = pytest.importorskip("numpy")
    arrays = [np.arange(12, dtype="int16").reshape(3, 4), np.ones((200, 300), dtype="float32")[::2, ::3],
              np.array(3.5), np.zeros(0, dtype="complex128")]
    for a in arrays:
        back = cluster[1].apply_sync(lambda x: x, a)
        assert back.dtype == a.dtype and back.shape == a.shape and np.array_equal(back, a)
    blob = bytes(range(256)) * 4096
    assert cluster[0].apply_sync(lambda b: (type(b).__name__, len(b), b[:3]), blob) == ("bytes", len(blob), b"\x00\x01\x02")
    assert cluster[0].apply_sync(lambda b: b, blob) == blob


MAIN_SCRIPT = textwrap.dedent("""
    import sys
    import minipar as ipp

    scale = 10

    def work(x):
        return x * scale          # 'scale' resolves on the engine: pushed below

    def make_adder(n):
        def add(x):
            return x + n
        return add

    class Point:
        def __init__(self, x, y):
            self.x, self.y = x, y
        def norm2(self):
            return self.x ** 2 + self.y ** 2

    if __name__ == "__main__":
        rc = ipp.Client(url_file=sys.argv[1])
        rc.wait_for_engines(2, timeout=30)
        dv = rc[:]
        dv.push({"scale": 10}, block=True)
        lv = rc.load_balanced_view()
        print("main-func", lv.map_sync(work, range(5)))
        print("lambda", dv.apply_sync(lambda: 7))
        print("closure", rc[0].apply_sync(make_adder(5), 1))
        print("class", rc[1].apply_sync(lambda p: p.norm2(), Point(3, 4)))
        back = rc[0].apply_sync(lambda p: p, Point(1, 2))
        print("roundtrip", type(back) is Point, back.norm2())
        rc.close()
""")


def test_functions_from_a_main_script(profile, tmp_path):
    start_cluster(profile, 2)
    script = tmp_path / "user_script.py"
    script.write_text(MAIN_SCRIPT)
    out = subprocess.run([sys.executable, str(script), str(profile.client_file())], capture_output=True,
                         text=True, timeout=120, env=dict(profile.env, PYTHONPATH=str(ROOT)))
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines == [
        "main-func [0, 10, 20, 30, 40]",
        "lambda [7, 7]",
        "closure 6",
        "class 25",
        "roundtrip True 5",
    ]


def test_unpicklable_result_is_a_clear_remote_error(cluster):
    import minipar
    with pytest.raises(minipar.RemoteError) as info:
        cluster[0].apply_sync(lambda: __import__("threading").Lock())
    assert "could not be pickled to send back" in info.value.evalue


def test_unpicklable_argument_fails_on_the_client(cluster):
    import threading
    with pytest.raises(TypeError):
        cluster[0].apply_async(lambda x: x, threading.Lock())
