"""Thousands of malformed messages on every socket the controller binds, interleaved with
real work: the work completes correctly, the controller stays up, its memory stays bounded,
and its log counts what it dropped instead of writing a line for each."""
from __future__ import annotations

import json
import os
import pickle
import random

import zmq

from conftest import read_json, start_cluster, wait_for
from minipar.protocol import Session, send_frames


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
        frames[2] = frames[2].replace(b"apply_request", b"execute_request")
        return frames
    if kind == 4:
        broken = b"{\"msg_id\": " + os.urandom(6)
        return [b"<IDS|MSG>", good.sign([broken, b"{}", b"{}", b"{}"]), broken, b"{}", b"{}", b"{}"]
    if kind == 5:
        field = rng.choice(list(header_fields))
        header = {"msg_id": "m%d" % rng.randrange(10**9), "msg_type": "apply_request", "session": "s",
                  "date": "2026-01-01T00:00:00Z", "username": "u", "version": "5.3"}
        header[field] = header_fields[field]
        parts = [json.dumps(header).encode(), b"{}", b"{}", b"{}"]
        return [b"<IDS|MSG>", good.sign(parts)] + parts
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
        parts = [b"{" + b"\"k\": 1, " * 20000 + b"\"z\": 0}", b"{}", b"{}", b"{}"]
        return [b"<IDS|MSG>", good.sign(parts)] + parts
    if kind == 10:
        _, frames = good.build(rng.choice(["queue_request", "result_request", "purge_request", "db_request",
                                           "abort_request", "registration_request"]),
                               {"targets": {"x": 1}, "msg_ids": 5, "query": [], "id": "x", "uuid": 3}, None, {})
        return frames
    return [b"<IDS|MSG>", b"0" * 64] + [os.urandom(2 * 1024 * 1024)] + [b"{}"] * 3


def work(rc, lview, i):
    assert lview.map_sync(abs, [-i, -i - 1]) == [i, i + 1]
    assert rc[0].apply_sync(pow, 2, i % 20) == 2 ** (i % 20)


def test_thousands_of_malformed_messages_on_every_socket_never_hurt(profile):
    rc, _ = start_cluster(profile, 2)
    ctl = profile.procs[0]
    info = read_json(profile.client_file())
    good, wrong = Session(info["key"]), Session("not-the-key")
    lview = rc.load_balanced_view()
    rng = random.Random(1)
    ctx = zmq.Context()
    sockets = []
    try:
        for name in ("client", "engine", "hb_pong"):
            s = ctx.socket(zmq.DEALER)
            s.setsockopt(zmq.LINGER, 0)
            s.setsockopt(zmq.SNDHWM, 0)
            s.connect("tcp://127.0.0.1:%d" % info["ports"][name])
            sockets.append(s)
        for name in ("notification", "hb_ping"):
            s = ctx.socket(zmq.DEALER)  # a PUB reads nothing, but must shrug off a peer that sends
            s.setsockopt(zmq.LINGER, 0)
            s.connect("tcp://127.0.0.1:%d" % info["ports"][name])
            s.send(b"noise")
            sockets.append(s)
        work(rc, lview, 0)
        rss_before = rss_kb(ctl.pid)
        sent = 0
        for round_ in range(1, 11):
            for _ in range(300):
                send_frames(rng.choice(sockets[:3]), hostile(rng, good, wrong))
                sent += 1
            work(rc, lview, round_)
        wait_for(lambda: rc.queue_status()["unassigned"] == 0, 30, "the queue to drain")
        work(rc, lview, 99)
        assert ctl.popen.poll() is None
        grown = rss_kb(ctl.pid) - rss_before
        assert grown < 40 * 1024, "the controller grew %d KB over %d hostile messages" % (grown, sent)
    finally:
        for s in sockets:
            s.close(linger=0)
        ctx.term()
    assert rc.ids == [0, 1]
    ctl.stop()
    log = (profile.dir / "log" / "controller.log").read_text()
    warnings = [line for line in log.splitlines() if " WARNING " in line]
    assert len(warnings) < 150, "%d warnings for %d hostile messages" % (len(warnings), sent)
    drop_lines = [line for line in warnings if " dropped " in line]
    assert any("more messages in the last" in line for line in drop_lines), drop_lines[-5:]
    assert "Traceback" not in log


def test_the_drop_log_logs_each_kind_once_then_counts_in_summaries(caplog):
    import logging

    from minipar.logs import DropLog
    logger = logging.getLogger("minipar.test-drops")
    drops = DropLog(logger, interval=3600)
    with caplog.at_level(logging.WARNING, logger="minipar.test-drops"):
        for i in range(1000):
            drops.drop("bad signature", "a message: bad signature")
            drops.drop("truncated message", "a message: truncated message: %d frames" % i)
        for i in range(DropLog.MAX_KINDS + 10):
            drops.drop("kind %d" % i, "kind %d" % i)
        drops.flush()
        drops.flush()
    lines = [r.getMessage() for r in caplog.records]
    assert lines[:2] == [
        "dropped a message: bad signature (1 dropped so far; more of this kind are counted, not logged)",
        "dropped a message: truncated message: 0 frames (2 dropped so far; more of this kind are counted, "
        "not logged)"]
    assert len(lines) == 2 + DropLog.MAX_KINDS - 2 + 1
    assert lines[-1].startswith("dropped 2010 more messages in the last ")
    assert lines[-1].endswith("(bad signature: 999, truncated message: 999, other: 12); 2074 dropped in all")
