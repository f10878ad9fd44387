"""Malformed messages for the fuzz tests of the controller and the engine."""
from __future__ import annotations

import json
import os
import pickle

import zmq

from minipar.protocol import Session


class RaisesOnLoad:
    def __reduce__(self):
        return (int, ("not a number",))


def rss_kb(pid: int) -> int:
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def hostile(rng, good: Session, wrong: Session) -> list:
    """One malformed message (a list of frames) of a random kind."""
    kind = rng.randrange(12)
    header_fields = {"msg_id": 1, "msg_type": ["x"], "session": None, "date": "yesterday", "username": {}}
    if kind == 0:
        return [os.urandom(rng.randrange(1, 64)) for _ in range(rng.randrange(1, 9))]
    if kind == 1:
        return [b"<IDS|MSG>"] + [os.urandom(8) for _ in range(rng.randrange(0, 4))]
    if kind == 2:
        _, frames = wrong.build("apply_request", {}, None, {})
        return frames
    if kind == 3:
        _, frames = good.build("apply_request", {}, None, {})
        frames = list(frames)
        frames[1] = frames[1].replace(b"apply_request", b"execute_request")
        return frames
    if kind == 4:
        broken = b"{\"msg_id\": " + os.urandom(6)
        return [b"<IDS|MSG>", good.envelope([broken, b"{}", b"{}", b"{}"])]
    if kind == 5:
        field = rng.choice(list(header_fields))
        header = {"msg_id": "m%d" % rng.randrange(10**9), "msg_type": "apply_request", "session": "s",
                  "date": "2026-01-01T00:00:00Z", "username": "u", "version": "5.3"}
        header[field] = header_fields[field]
        return [b"<IDS|MSG>", good.envelope([json.dumps(header).encode(), b"{}", b"{}", b"{}"])]
    if kind == 6:
        _, frames = good.build(rng.choice(["no_such_request", "", "x" * 300]), {}, None, {})
        return frames
    if kind == 7:
        _, frames = good.build("apply_request", {}, None, {"retries": "many", "targets": "everyone",
                                                            "after": 7, "timeout": "soon"})
        return frames
    if kind == 8:
        _, frames = good.build("apply_request", {}, None, {})
        return list(frames) + [pickle.dumps(RaisesOnLoad())]
    if kind == 9:
        return [b"<IDS|MSG>", good.envelope([b"{" + b"\"k\": 1, " * 20000 + b"\"z\": 0}", b"{}", b"{}", b"{}"])]
    if kind == 10:
        _, frames = good.build(rng.choice(["queue_request", "result_request", "purge_request", "db_request",
                                           "abort_request", "registration_request"]),
                               {"targets": {"x": 1}, "msg_ids": 5, "query": [], "id": "x", "uuid": 3}, None, {})
        return frames
    return [b"<IDS|MSG>", b"\n".join([b"0" * 64, os.urandom(2 * 1024 * 1024)] + [b"{}"] * 3)]


def dealers(ctx, info: dict, names) -> list:
    """A DEALER connected to each named port of the controller in a connection file."""
    sockets = []
    for name in names:
        s = ctx.socket(zmq.DEALER)
        s.setsockopt(zmq.LINGER, 0)
        s.setsockopt(zmq.SNDHWM, 0)
        s.connect("tcp://127.0.0.1:%d" % info["ports"][name])
        sockets.append(s)
    return sockets
