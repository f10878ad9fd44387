"""Large buffers travel without copies: out of the pickle, onto the socket, and into the
engine's (and the pulling client's) arrays, which sit on the received zmq message."""
from __future__ import annotations

import pytest
import zmq

from minipar import interactive, protocol
from minipar.client import view as view_module
from minipar.serialize import BUFFER_THRESHOLD, deserialize_object, pack_apply_message, serialize_object

np = pytest.importorskip("numpy")

MB20 = 20 * 1024 * 1024


def big(dtype="float64", order="C"):
    n = MB20 // np.dtype(dtype).itemsize
    return np.asarray(np.random.default_rng(9).integers(0, 100, n).astype(dtype), order=order)


# -- serialize: the buffers are the array's own memory ---------------------------------------


def test_a_pushed_array_leaves_the_pickle_as_a_view_of_its_own_memory():
    a = big()
    frames = pack_apply_message(len, ({"a": a},), {})
    assert len(frames) == 2 and len(frames[0]) < 1024
    assert isinstance(frames[1], memoryview) and frames[1].obj is a
    assert frames[1].nbytes == a.nbytes


def test_fortran_order_arrays_also_travel_out_of_band():
    f = np.asfortranarray(big().reshape(1024, -1))
    frames = serialize_object(f)
    assert len(frames) == 2 and np.shares_memory(np.asarray(frames[1].obj), f)
    back = deserialize_object([frames[0], zmq.Frame(frames[1])])
    assert back.flags.f_contiguous and np.array_equal(back, f)


def test_small_and_object_payloads_stay_in_the_pickle():
    assert len(serialize_object(np.zeros(BUFFER_THRESHOLD // 16))) == 1
    obj = np.array([{"x": 1}, None, "s"] * 1000, dtype=object)
    frames = serialize_object(obj)
    assert len(frames) == 1
    assert list(deserialize_object(frames)) == list(obj)


def test_received_arrays_are_built_on_the_zmq_frame_not_a_copy():
    a = big("int32")
    pickled, buf = serialize_object(a)
    frame = zmq.Frame(buf)
    back = deserialize_object([pickled, frame])
    assert np.shares_memory(back, np.frombuffer(frame.buffer, dtype=np.uint8))
    assert back.flags.writeable and np.array_equal(back, a)


# -- the send path: big buffers go to zmq uncopied ------------------------------------------


class RecordingSocket:
    """Stands in for a zmq socket: send_frames calls pyzmq's compiled send on it, patched here."""

    def __init__(self):
        self.sent = []


def record_send(sock, data, flags=0, copy=True, track=False):
    sock.sent.append((data, flags, copy))


def test_send_frames_hands_big_buffers_to_zmq_without_copying(monkeypatch):
    monkeypatch.setattr(protocol, "_send", record_send)
    a = big()
    frames = serialize_object({"a": a, "small": b"x" * 100})
    sock = RecordingSocket()
    protocol.send_frames(sock, [b"id", protocol.DELIM, b"sig\n{}\n{}\n{}\n{}"], frames)
    pickle_part, array_part = sock.sent[-2], sock.sent[-1]
    assert array_part[0] is frames[1] and array_part[0].obj is a and array_part[2] is False
    assert array_part[1] == 0 and pickle_part[1] == zmq.SNDMORE
    assert pickle_part[2] is True  # a small frame: a memcpy is cheaper than zero-copy bookkeeping
    assert all(flags == zmq.SNDMORE for _, flags, _ in sock.sent[:-1])


# -- end to end, real processes ----------------------------------------------------------------


@interactive
def _describe(name):
    """On the engine: what the array bound to name sits on."""
    import numpy

    x = globals()[name]
    base = x
    while isinstance(base, numpy.ndarray) and base.base is not None:
        base = base.base
    owner = type(base.obj).__name__ if isinstance(base, memoryview) else type(base).__name__
    return type(base).__name__, owner, x.flags.writeable, x.dtype.str, x.shape


def test_pushed_array_sits_on_the_received_frame_and_pulls_back_bit_exact(cluster):
    a = big()
    e0 = cluster[0]
    e0.push({"a": a}, block=True)
    base, owner, writeable, dtype, shape = e0.apply_sync(_describe, "a")
    assert (base, owner) == ("memoryview", "Frame")
    assert writeable and dtype == a.dtype.str and tuple(shape) == a.shape
    back = e0.pull("a", block=True)
    assert back.dtype == a.dtype and back.shape == a.shape and np.array_equal(back, a)
    root = back
    while isinstance(root, np.ndarray) and root.base is not None:
        root = root.base
    assert isinstance(root, memoryview) and isinstance(root.obj, zmq.Frame)
    assert back.flags.writeable
    e0.push({"a": None}, block=True)


@pytest.mark.parametrize("make", [
    lambda: big("int16").reshape(64, -1),
    lambda: np.asfortranarray(big("float32").reshape(2048, -1)),
    lambda: big("uint8").reshape(4096, -1)[::3, 1::2],      # a non-contiguous view: copied in-band
    lambda: np.array(2.5),                                 # 0-d
    lambda: np.array([1, "two", None, 3.0] * 50000, dtype=object),  # object dtype: plain pickle
    lambda: big("complex128")[: MB20 // 32].view("float64"),
], ids=["int16-2d", "fortran", "strided-view", "0-d", "object", "view-cast"])
def test_arrays_round_trip_bit_exact(cluster, make):
    a = make()
    e1 = cluster[1]
    e1.push({"b": a}, block=True)
    back = e1.pull("b", block=True)
    assert back.dtype == a.dtype and back.shape == a.shape
    if a.flags.c_contiguous or a.flags.f_contiguous:
        assert (back.flags.c_contiguous, back.flags.f_contiguous) == (a.flags.c_contiguous, a.flags.f_contiguous)
    if a.dtype == object:
        assert back.tolist() == a.tolist()
    else:
        assert back.tobytes() == a.tobytes()
    e1.push({"b": None}, block=True)


def test_a_large_push_to_several_engines_leaves_the_client_once(cluster, monkeypatch):
    sends = []
    real_send = cluster._send

    def counting_send(frames, buffers=(), *args, **kwargs):
        sends.append(len(buffers))
        return real_send(frames, buffers, *args, **kwargs)

    monkeypatch.setattr(cluster, "_send", counting_send)
    a = np.arange(view_module.FANOUT_BYTES // 8 + 1, dtype="float64")
    ar = cluster[:].push({"c": a}, block=False)
    ar.get(30)
    assert sends == [2]
    assert len(ar.msg_ids) == 2 and all(m.endswith("_%d" % e) for m, e in zip(ar.msg_ids, cluster.ids))
    assert all(np.array_equal(x, a) for x in cluster[:].pull("c", block=True))
    sends.clear()
    cluster[:].push({"c": a[:10]}, block=True)  # small: one message per engine, as ever
    assert sends == [1, 1]
    cluster[:].push({"c": None}, block=True)


# -- what you pass is what arrives: ar.sent and ar.wait_for_send() ---------------------------


@interactive
def _first_and_sum(name):
    a = globals()[name]
    return float(a[0]), float(a.sum())


def test_after_wait_for_send_an_edit_in_place_never_reaches_the_engine(cluster):
    e0 = cluster[0]
    for attempt in range(5):
        a = np.ones(50 * 1024 * 1024 // 8)
        ar = e0.push({"edited": a}, block=False)
        ar.wait_for_send(30)
        assert ar.sent
        a[:] = -1.0
        ar.get(30)
        assert e0.apply_sync(_first_and_sum, "edited") == (1.0, float(a.size)), attempt
    e0.push({"edited": None}, block=True)


def test_after_a_blocking_push_or_apply_an_edit_is_the_callers_alone(cluster):
    e0 = cluster[0]
    a = np.ones(MB20 // 8)
    e0.push({"blocked": a}, block=True)
    a[:] = -1.0
    assert e0.apply_sync(_first_and_sum, "blocked") == (1.0, float(a.size))
    b = np.ones(MB20 // 8)
    total = e0.apply_sync(lambda x: float(x.sum()), b)
    b[:] = 0.0
    assert total == float(b.size)
    e0.push({"blocked": None}, block=True)


def test_messages_the_io_thread_sends_are_tracked_too(cluster, monkeypatch):
    """Past MAX_THREAD_SOCKETS threads a message waits in the I/O thread's queue: it is the
    caller's memory until that thread has sent it and ZeroMQ is done with it."""
    import threading

    from minipar.client import client as client_module
    monkeypatch.setattr(client_module, "MAX_THREAD_SOCKETS", 0)
    a = np.ones(MB20 // 8)
    out = {}

    def in_a_new_thread():
        ar = cluster[1].push({"queued": a}, block=False)
        out["queued"] = cluster._local.socket is False
        ar.wait_for_send(30)
        out["sent"] = ar.sent
        a[:] = -1.0
        ar.get(30)

    t = threading.Thread(target=in_a_new_thread)
    t.start()
    t.join(60)
    assert out == {"queued": True, "sent": True}
    assert cluster[1].apply_sync(_first_and_sum, "queued") == (1.0, float(a.size))
    cluster[1].push({"queued": None}, block=True)


def test_wait_for_send_times_out_while_zeromq_still_holds_the_buffer(profile):
    """A stopped controller reads nothing: the kernel's socket buffers fill and ZeroMQ keeps
    the rest of a 200 MB array, the caller's own memory, until it resumes."""
    import signal

    from minipar.error import TimeoutError as MiniparTimeout
    from helpers import start_cluster
    rc, _ = start_cluster(profile, 1)
    controller = profile.procs[0]
    a = np.ones(200 * 1024 * 1024 // 8)
    controller.signal(signal.SIGSTOP)
    try:
        ar = rc[0].push({"held": a}, block=False, track=True)
        assert not ar.sent
        with pytest.raises(MiniparTimeout) as info:
            ar.wait_for_send(0.3)
        assert str(info.value) == "_push: ZeroMQ still holds the buffers to send after 0.3s"
        with pytest.raises(MiniparTimeout):
            ar.wait_for_send(0)
    finally:
        controller.signal(signal.SIGCONT)
    ar.wait_for_send(60)
    assert ar.sent
    a[:] = -1.0
    ar.get(60)
    assert rc[0].apply_sync(_first_and_sum, "held") == (1.0, float(a.size))


def test_track_is_accepted_as_ipyparallel_spells_it(cluster):
    dv, lv = cluster[:], cluster.load_balanced_view()
    assert dv.track is False and lv.track is False
    with dv.temp_flags(track=True):
        assert dv.track is True
    lv.set_flags(track=True)
    assert lv.map_sync(abs, [-1, -2], track=True) == [1, 2]
    assert dv.map_sync(abs, [-3, -4], track=False) == [3, 4]
    ar = dv.push({"t": 1}, block=False, track=True)
    ar.get(30)
    assert ar.sent
    ar.wait_for_send(0)


# -- glibc's malloc settings are the user's ----------------------------------------------------


def test_launched_processes_keep_the_users_glibc_tunables_and_get_none_of_their_own(monkeypatch):
    from minipar.cluster.launchers.base import child_env

    monkeypatch.delenv("GLIBC_TUNABLES", raising=False)
    assert "GLIBC_TUNABLES" not in child_env()
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.hugetlb=1:glibc.malloc.arena_max=2")
    assert child_env()["GLIBC_TUNABLES"] == "glibc.malloc.hugetlb=1:glibc.malloc.arena_max=2"


def _peak_rss_mb(pid) -> float:
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM for pid %d" % pid)


@interactive
def _sum_of(name):
    return float(globals()[name].sum())


@pytest.mark.slow
def test_a_1_gb_push_completes_without_doubling_memory_anywhere(profile):
    """The array crosses client -> controller -> engine with no copy in Python: each process
    peaks at about one array (zmq's receive buffer is the engine's array), not two."""
    import os

    from helpers import start_cluster
    rc, [engine] = start_cluster(profile, 1)
    gb = 1024 * 1024 * 1024
    a = np.ones(gb // 8)
    rc[0].push({"big": a}, block=True)
    assert rc[0].apply_sync(_sum_of, "big") == float(a.size)
    peaks = {"client": _peak_rss_mb(os.getpid()), "controller": _peak_rss_mb(profile.procs[0].pid),
             "engine": _peak_rss_mb(engine.pid)}
    assert all(mb < 1.5 * gb / 2**20 for mb in peaks.values()), peaks
