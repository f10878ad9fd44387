"""The replay guard refuses every signature among the last ``window``, in bounded, compact memory."""
from __future__ import annotations

import hashlib
import os
import tracemalloc

import pytest

from minipar.protocol import REPLAY_HISTORY, ProtocolError, Session
from minipar import replay
from minipar.replay import ReplayGuard


def signatures(n):
    return [hashlib.sha256(os.urandom(16)).hexdigest().encode() for _ in range(n)]


@pytest.mark.parametrize("window", [1, 7, 1000, 5000])
def test_every_signature_of_the_window_is_refused_across_growth_and_generations(window):
    guard = ReplayGuard(window)
    seen = []
    for sig in signatures(4 * window + 3000):
        assert guard.first_time(sig), "a new signature was taken for a replay"
        seen.append(sig)
        n = len(seen)
        if n % 997 == 0 or n in (window, window + 1, 2 * window, 2 * window + 1):
            assert not any(guard.first_time(bytes(s)) for s in seen[-window:]), "a replay got through"
            assert len(guard) >= min(n, window)
    assert not guard.first_time(bytes(seen[-1]))


def test_the_last_window_is_refused_after_the_table_has_grown_to_full_size():
    guard = ReplayGuard(1 << 12)
    seen = signatures(3 * (1 << 12) + 123)
    assert all(guard.first_time(s) for s in seen)
    assert [s for s in seen[-(1 << 12):] if guard.first_time(bytes(s))] == []


def guard_bytes() -> int:
    snap = tracemalloc.take_snapshot().filter_traces([tracemalloc.Filter(True, replay.__file__)])
    return sum(stat.size for stat in snap.statistics("filename"))


def test_memory_is_a_few_bytes_per_signature_and_bounded():
    """A set and a deque of hex signatures took ~170 bytes each: 40 MB and more when full."""
    sigs = signatures(60000)
    tracemalloc.start()
    try:
        guard = ReplayGuard(REPLAY_HISTORY)
        for s in sigs:
            guard.first_time(s)
        at_60k = guard_bytes()
        peak = 0
        for _ in range(6):
            for s in signatures(REPLAY_HISTORY // 4):
                guard.first_time(s)
            peak = max(peak, guard_bytes())
    finally:
        tracemalloc.stop()
    assert at_60k < 40 * 60000
    assert peak <= 4 * REPLAY_HISTORY * 8 * 1.01


def test_session_refuses_a_replayed_message_and_takes_a_resigned_one():
    sender, receiver = Session("k"), Session("k")
    header, frames = sender.build("apply_request", {"x": 1})
    raw = [b"peer"] + frames
    assert receiver.parse(list(raw)).msg_id == header["msg_id"]
    with pytest.raises(ProtocolError, match="replayed message"):
        receiver.parse(list(raw))
    again = sender.with_header(frames, dict(header, attempt=1))
    assert receiver.parse([b"peer"] + again).header["attempt"] == 1
