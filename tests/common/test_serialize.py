from __future__ import annotations

import functools
import json
import math
import os
import pickle
import struct
import subprocess
import sys
import textwrap
import types
import weakref
from array import array

import pytest

from helpers import ROOT
from minipar import serialize
from minipar.serialize import (
    BUFFER_THRESHOLD,
    SerializationError,
    deserialize_object,
    pack_apply_message,
    serialize_object,
    set_pickler,
    unpack_apply_message,
)

REPO = str(ROOT)
BIG = BUFFER_THRESHOLD * 2


def roundtrip(obj, namespace=None, **kw):
    return deserialize_object(serialize_object(obj, **kw), namespace)


def received(frames):
    """Frames as a zmq receiver would hand them over: writeable memoryviews."""
    return [memoryview(bytearray(f)) for f in frames]


def in_main(source, namespace=None):
    """Run source as if typed into an interactive session (module ``__main__``)."""
    ns = {"__name__": "__main__"} if namespace is None else namespace
    exec(textwrap.dedent(source), ns)
    return ns


def square(x):
    return x * x


def add_offset(x):
    return x + OFFSET


OFFSET = 1000


# --- plain values and buffers -------------------------------------------------


@pytest.mark.parametrize("obj", [
    0, -5, 2**100, 3.5, "héllo", None, True, [1, [2, 3]], (1, "a"), {"a": 1, 2: [3]},
    {1, 2}, frozenset([3]), 1 + 2j, b"", bytearray(b"ab"), range(3), Ellipsis,
])
def test_plain_values(obj):
    frames = serialize_object(obj)
    assert len(frames) == 1
    out = deserialize_object(frames)
    assert out == obj and type(out) is type(obj)


def test_small_bytes_stay_in_band():
    data = os.urandom(BUFFER_THRESHOLD - 1)
    frames = serialize_object(data)
    assert len(frames) == 1
    assert deserialize_object(frames) == data


def test_large_bytes_go_out_of_band():
    data = os.urandom(BIG)
    frames = serialize_object(data)
    assert len(frames) == 2 and len(frames[0]) < 200
    assert bytes(frames[1]) == data
    out = deserialize_object(received(frames))
    assert type(out) is bytes and out == data


def test_bytearray_stays_bytearray_and_writeable():
    for size in (10, BIG):
        data = bytearray(os.urandom(size))
        frames = serialize_object(data)
        assert len(frames) == (2 if size == BIG else 1)
        out = deserialize_object(received(frames))
        assert type(out) is bytearray and out == data
        out[0] ^= 0xFF
        assert out != data


def test_memoryview_comes_back_as_memoryview():
    data = array("d", range(BIG // 8))
    frames = serialize_object(memoryview(data))
    assert len(frames) == 2
    out = deserialize_object(received(frames))
    assert isinstance(out, memoryview)
    assert out.format == "d" and out.tolist() == data.tolist()

    small = memoryview(b"abcdef")[::2]  # not contiguous
    out = roundtrip(small)
    assert out.tobytes() == b"ace"

    grid = memoryview(bytearray(range(12))).cast("B", (3, 4))
    out = roundtrip(grid)
    assert out.shape == (3, 4) and out.tolist() == grid.tolist()


def test_large_bytes_inside_containers_go_out_of_band():
    big = os.urandom(BIG)
    for obj in ([1, big], (big, 2), {"x": big, "y": 1}):
        frames = serialize_object(obj)
        assert len(frames) == 2 and len(frames[0]) < 200
        assert deserialize_object(received(frames)) == obj
    deep = [[big]]
    assert deserialize_object(serialize_object(deep)) == deep


def test_threshold_is_a_parameter():
    frames = serialize_object(b"x" * 100, buffer_threshold=10)
    assert len(frames) == 2
    assert deserialize_object(frames) == b"x" * 100


def test_accepts_zmq_frames():
    zmq = pytest.importorskip("zmq")
    data = os.urandom(BIG)
    frames = [zmq.Frame(f) for f in serialize_object({"d": data})]
    assert deserialize_object(frames) == {"d": data}


# --- numpy --------------------------------------------------------------------


def numpy_cases(np):
    rng = np.random.default_rng(0)
    big = rng.random((300, 300))
    return [
        np.arange(10, dtype=np.int32),
        rng.random(BIG // 8),
        big,
        big.T,  # Fortran-ordered
        big[::2, ::3],  # not contiguous
        np.array(3.5),  # 0-d
        np.zeros((0, 4)),
        (rng.random(BIG) * 1000).astype(np.uint16),
        (rng.random(50) + 1j * rng.random(50)).astype(np.complex64),
        rng.random(BIG) > 0.5,
        np.array([(1, 2.0), (3, 4.0)], dtype=[("a", "i4"), ("b", "f8")]),
        np.array(["ab", "cde"]),
    ]


def test_numpy_arrays_roundtrip():
    np = pytest.importorskip("numpy")
    for arr in numpy_cases(np):
        frames = serialize_object(arr)
        if arr.nbytes >= BUFFER_THRESHOLD and (arr.flags.c_contiguous or arr.flags.f_contiguous):
            assert len(frames) == 2 and len(frames[0]) < 400
        out = deserialize_object(received(frames))
        assert out.dtype == arr.dtype and out.shape == arr.shape
        np.testing.assert_array_equal(out, arr)


def test_numpy_100mb_array_out_of_band_and_writeable():
    np = pytest.importorskip("numpy")
    arr = np.random.default_rng(1).random(100 * 2**20 // 8)
    frames = serialize_object(arr)
    assert len(frames) == 2 and len(frames[0]) < 400
    assert np.shares_memory(np.frombuffer(frames[1], dtype=arr.dtype), arr)  # zero-copy send
    wire = received(frames)
    del frames
    out = deserialize_object(wire)
    assert out.dtype == arr.dtype and out.shape == arr.shape
    assert np.array_equal(out, arr)
    assert out.flags.writeable
    assert np.shares_memory(out, np.frombuffer(wire[1], dtype=np.uint8))  # zero-copy receive
    out[0] = -1.0
    assert wire[1][:8].cast("d")[0] == -1.0


def test_numpy_from_bytes_frames_is_readonly():
    np = pytest.importorskip("numpy")
    arr = np.arange(BIG)
    out = deserialize_object([bytes(f) for f in serialize_object(arr)])
    assert np.array_equal(out, arr) and not out.flags.writeable


def test_numpy_in_apply_args():
    np = pytest.importorskip("numpy")
    arr = np.ones(BIG)
    frames = pack_apply_message(square, (arr,), {"b": arr * 2})
    assert len(frames) == 3
    f, args, kwargs = unpack_apply_message(received(frames), {})
    assert np.array_equal(f(args[0]), arr) and np.array_equal(kwargs["b"], arr * 2)


# --- functions ----------------------------------------------------------------


def test_lambda():
    f = roundtrip(lambda x, y=2: x * y)
    assert f(3) == 6 and f.__name__ == "<lambda>"


def test_closures():
    inner = lambda x: x + 1  # noqa: E731
    k = 10

    def outer(x):
        return inner(x) * k

    f = roundtrip(outer)
    assert f(1) == 20
    assert f.__qualname__ == outer.__qualname__

    compose = (lambda g, h: lambda x: g(h(x)))(lambda x: x * 3, lambda x: x - 1)
    assert roundtrip(compose)(5) == 12


def test_nested_and_recursive_functions():
    def make():
        def fact(n):
            return 1 if n <= 1 else n * fact(n - 1)
        return fact

    assert roundtrip(make())(5) == 120


def test_unassigned_closure_cell():
    def make():
        def f():
            return later  # noqa: F821
        frames = serialize_object(f)
        later = 1  # noqa: F841
        return frames

    f = deserialize_object(make())
    with pytest.raises(NameError):
        f()


def test_defaults_kwdefaults_and_attributes():
    def f(a, b=[1, 2], *, c=3, d):  # noqa: B006
        return a, b, c, d

    f.tag = "x"
    g = roundtrip(f)
    assert g(0, d=4) == (0, [1, 2], 3, 4)
    assert g.__defaults__ == ([1, 2],) and g.__kwdefaults__ == {"c": 3}
    assert g.tag == "x"


def test_partial():
    p = functools.partial(lambda a, b, c=0: (a, b, c), 1, c=3)
    q = roundtrip(p)
    assert isinstance(q, functools.partial) and q(2) == (1, 2, 3)
    assert roundtrip(functools.partial(square, 4))() == 16


def test_wrapped_function_is_canned():
    def deco(fn):
        @functools.wraps(fn)
        def wrapper(*a):
            return fn(*a) + 1
        return wrapper

    def double(x):
        """Twice x."""
        return x * 2

    w = roundtrip(deco(double))
    assert w(3) == 7 and w.__wrapped__(3) == 6
    assert w.__name__ == "double" and w.__doc__ == "Twice x."


def test_importable_functions_go_by_reference():
    for f in (os.getpid, math.sqrt, json.dumps, square, os.path.join):
        frames = serialize_object(f)
        assert len(frames[0]) < 100
        assert f.__name__.encode() in frames[0]
        assert b"_make_function" not in frames[0]
        assert deserialize_object(frames) is f


def test_module_function_closure_uses_module_globals():
    def make():
        return lambda x: add_offset(x)

    f = roundtrip(make(), namespace={"add_offset": None})
    assert f.__globals__ is globals()
    assert f(1) == 1001


def test_main_function_resolves_globals_in_namespace():
    ns = in_main("""
        def scaled(x):
            return x * factor
    """)
    assert ns["scaled"].__module__ == "__main__"
    frames = serialize_object(ns["scaled"])
    assert b"_make_function" in frames[0]

    engine_ns = {"factor": 7}
    f = deserialize_object(frames, engine_ns)
    assert f.__globals__ is engine_ns
    assert f.__module__ == "__main__"
    assert f(3) == 21
    engine_ns["factor"] = 2
    assert f(3) == 6


def test_main_function_uses_builtins():
    ns = in_main("def total(xs): return sum(map(abs, xs))")
    assert deserialize_object(serialize_object(ns["total"]), {})([-1, 2]) == 3


def test_unimportable_module_falls_back_to_namespace():
    ns = in_main("def g(): return value", {"__name__": "no_such_module_for_minipar"})
    f = deserialize_object(serialize_object(ns["g"]), {"value": 5})
    assert f() == 5


def test_rebound_module_attribute_still_serializes(monkeypatch):
    mod = types.ModuleType("minipar_test_rebind")
    monkeypatch.setitem(sys.modules, mod.__name__, mod)
    exec("def f(): return 1", mod.__dict__)
    old = mod.f
    assert deserialize_object(serialize_object(old)) is old  # by reference, cached
    exec("def f(): return 2", mod.__dict__)
    copy = deserialize_object(serialize_object(old))
    assert copy is not old and copy() == 1


def test_other_python_version_is_a_clear_error(monkeypatch):
    f = lambda: 1  # noqa: E731
    monkeypatch.setattr(serialize, "_PYVER", (2, 7))
    frames = serialize_object(f)
    monkeypatch.undo()
    with pytest.raises(SerializationError) as info:
        deserialize_object(frames)
    here = "%d.%d" % sys.version_info[:2]
    msg = str(info.value)
    assert "2.7" in msg and here in msg and "module" in msg


def test_unloadable_bytecode_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(serialize, "_dump_code", lambda code: b"\xff not marshal")
    frames = serialize_object(lambda: 1)
    monkeypatch.undo()
    with pytest.raises(SerializationError) as info:
        deserialize_object(frames)
    here = "%d.%d" % sys.version_info[:2]
    assert str(info.value).count(here) == 2


def test_pack_apply_message():
    big = os.urandom(BIG)
    frames = pack_apply_message(lambda a, n, b=None, **kw: (len(a), b, sorted(kw)),
                                [big, 1], {"b": big, "c": 2})
    assert len(frames) == 3 and len(frames[0]) < 1000
    f, args, kwargs = unpack_apply_message(received(frames), {})
    assert type(args) is tuple and args == (big, 1)
    assert kwargs == {"b": big, "c": 2}
    assert f(*args, **kwargs) == (BIG, big, ["c"])


def test_pack_apply_message_main_function_namespace():
    ns = in_main("def noop(): return hidden")
    f, args, kwargs = unpack_apply_message(pack_apply_message(ns["noop"], (), {}), {"hidden": 4})
    assert (f(), args, kwargs) == (4, (), {})


# --- classes ------------------------------------------------------------------

CLASS_SOURCE = """
    class Base:
        def __init__(self, x):
            self.x = x

        def value(self):
            return self.x

    class Point(Base):
        '''doc'''
        scale = 2

        def value(self):
            return super().value() * self.scale

        @classmethod
        def make(cls, x):
            return cls(x)

        @staticmethod
        def twice(x):
            return 2 * x

        @property
        def neg(self):
            return -self.x

    class Slotted:
        __slots__ = ("a",)

        def __init__(self, a):
            self.a = a
"""


def test_main_class_instances_and_methods():
    ns = in_main(CLASS_SOURCE)
    Point = ns["Point"]
    # this process made the class, so it gets its own class back
    assert roundtrip(Point(3)).__class__ is Point

    p = roundtrip(Point.make(3))
    assert p.value() == 6 and p.neg == -3 and p.twice(4) == 8
    assert roundtrip(p.value)() == 6
    s = roundtrip(ns["Slotted"](5))
    assert s.a == 5


def test_main_class_rebuilt_once_per_receiver(monkeypatch):
    ns = in_main(CLASS_SOURCE)
    Point = ns["Point"]
    frames1 = serialize_object(Point(1))
    frames2 = serialize_object([Point(2), Point])
    # forget the sender's registration, as if frames arrived from another process
    monkeypatch.setattr(serialize, "_classes", weakref.WeakValueDictionary())
    monkeypatch.setattr(serialize, "_class_tokens", weakref.WeakKeyDictionary())
    a = deserialize_object(frames1, {})
    b, cls = deserialize_object(frames2, {})
    assert a.__class__ is not Point
    assert a.__class__ is b.__class__ is cls
    assert cls.__doc__ == "doc" and cls.__qualname__ == "Point"
    assert (a.value(), b.value(), b.neg, cls.make(5).value()) == (2, 4, -2, 10)
    assert cls.__mro__[1].__name__ == "Base"


def test_unsupported_metaclass_is_a_clear_error():
    ns = in_main("""
        import enum
        class Color(enum.Enum):
            RED = 1
    """)
    with pytest.raises(SerializationError, match="Color"):
        serialize_object(ns["Color"].RED)


def test_builtin_types_are_left_to_pickle():
    for t in (type(None), type(Ellipsis), type(NotImplemented), int, dict):
        assert roundtrip(t) is t
    with pytest.raises((pickle.PicklingError, TypeError, AttributeError)):
        serialize_object(types.FunctionType)


def test_importable_class_goes_by_reference():
    frames = serialize_object(SerializationError)
    assert b"_make_class" not in frames[0]
    assert deserialize_object(frames) is SerializationError


# --- picklers -----------------------------------------------------------------


def test_set_pickler_rejects_unknown_name():
    with pytest.raises(ValueError, match="one of 'pickle', 'cloudpickle', 'dill', not 'marshal'"):
        set_pickler("marshal")


@pytest.mark.parametrize("name, cached", [("dill", "_dill_pickler"), ("cloudpickle", "_cloud_pickler")])
def test_a_missing_pickler_is_a_clear_error(monkeypatch, name, cached):
    monkeypatch.setattr(serialize, cached, None)
    monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(ImportError, match="%s is not installed" % name):
        set_pickler(name)
    assert serialize._pickler_name == "pickle"


@pytest.mark.parametrize("name", ["dill", "cloudpickle"])
def test_a_closure_over_main_travels_with_the_pickler_that_can(name):
    pytest.importorskip(name)
    ns = in_main("""
        base = 10
        def shifted(x):
            return x + base
    """)
    big = os.urandom(BIG)
    frames = serialize_object((ns["shifted"], big, memoryview(big)), pickler=name)
    assert len(frames) == 3
    f, data, view = deserialize_object(received(frames), {})
    assert f(1) == 11 and data == big and view.tobytes() == big


def test_cloudpickle_set_as_the_default_pickles_a_lambda():
    pytest.importorskip("cloudpickle")
    try:
        set_pickler("cloudpickle")
        assert deserialize_object(serialize_object(lambda: 3))() == 3
    finally:
        set_pickler("pickle")


# --- another process ----------------------------------------------------------

CHILD = """
import struct, sys
sys.path.insert(0, sys.argv[1])
from minipar.serialize import deserialize_object, serialize_object

def read(path):
    with open(path, "rb") as fh:
        data = fh.read()
    n, = struct.unpack_from("<I", data)
    sizes = struct.unpack_from("<%dI" % n, data, 4)
    pos, frames = 4 + 4 * n, []
    for size in sizes:
        frames.append(memoryview(bytearray(data[pos:pos + size])))
        pos += size
    return frames

def write(path, frames):
    with open(path, "wb") as fh:
        sizes = [memoryview(f).nbytes for f in frames]
        fh.write(struct.pack("<I%dI" % len(sizes), len(sizes), *sizes))
        for f in frames:
            fh.write(f)

namespace = {"__name__": "__main__", "offset": 100}
funcs, point, blob = deserialize_object(read(sys.argv[2]), namespace)
results = [f(2) for f in funcs]
point.x += 1
write(sys.argv[3], serialize_object((results, point, point.value(), len(blob), blob[:3])))
"""


def write_frames(path, frames):
    views = [memoryview(f) for f in frames]
    with open(path, "wb") as fh:
        fh.write(struct.pack("<I%dI" % len(views), len(views), *(v.nbytes for v in views)))
        for v in views:
            fh.write(v)


def read_frames(path):
    with open(path, "rb") as fh:
        data = fh.read()
    (n,) = struct.unpack_from("<I", data)
    sizes = struct.unpack_from("<%dI" % n, data, 4)
    pos, frames = 4 + 4 * n, []
    for size in sizes:
        frames.append(data[pos:pos + size])
        pos += size
    return frames


def test_canned_functions_work_in_another_process(tmp_path):
    ns = in_main("""
        def add(x):
            return x + offset
    """)
    ns = in_main(CLASS_SOURCE, ns)
    double = lambda x: 2 * x  # noqa: E731
    k = 5

    def closure(x):
        return double(x) + k

    funcs = [ns["add"], closure, functools.partial(lambda a, b: a * b, 7), math.factorial,
             (lambda g: lambda x: g(g(x)))(double)]
    point = ns["Point"](20)
    blob = os.urandom(BIG)
    frames = serialize_object((funcs, point, blob))
    assert len(frames) == 2

    script = tmp_path / "child.py"
    script.write_text(CHILD)
    write_frames(tmp_path / "in.bin", frames)
    proc = subprocess.run(
        [sys.executable, str(script), REPO, str(tmp_path / "in.bin"), str(tmp_path / "out.bin")],
        capture_output=True, text=True, timeout=60, cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr

    results, back, value, size, head = deserialize_object(read_frames(tmp_path / "out.bin"))
    assert results == [102, 9, 14, 2, 8]
    # the class the child rebuilt comes back as ours
    assert type(back) is ns["Point"] and back.x == 21 and value == 42
    assert (size, head) == (BIG, blob[:3])


def test_pickle_frame_is_plain_pickle():
    frames = serialize_object({"a": [1, 2]})
    assert pickle.loads(frames[0]) == {"a": [1, 2]}


def test_through_zmq_zero_copy():
    zmq = pytest.importorskip("zmq")
    np = pytest.importorskip("numpy")
    ctx = zmq.Context.instance()
    a, b = ctx.socket(zmq.PAIR), ctx.socket(zmq.PAIR)
    try:
        a.bind("inproc://minipar-serialize-test")
        b.connect("inproc://minipar-serialize-test")
        arr = np.arange(BIG, dtype=np.float32).reshape(-1, 4)
        a.send_multipart(pack_apply_message(lambda x, y: x.sum() + len(y), (arr,),
                                            {"y": b"z" * BIG}), copy=False)
        assert b.poll(5000)
        frames = b.recv_multipart(copy=False)
        assert len(frames) == 3
        f, args, kwargs = unpack_apply_message(frames, {})
        assert np.array_equal(args[0], arr) and args[0].flags.writeable
        assert f(*args, **kwargs) == arr.sum() + BIG
    finally:
        a.close(0)
        b.close(0)
