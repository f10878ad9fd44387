"""Thousands of malformed messages on every socket an engine connects, interleaved with real
tasks: the tasks run once each with the right results, the engine stays up with bounded
memory, and its log counts what it dropped.

The engine only connects, so the test plays its controller: it binds the engine, ping and
pong ports, writes the engine connection file, answers registration, pings, and sends real
apply requests built as the controller builds them.
"""
from __future__ import annotations

import json
import os
import random
import time

import zmq

from fuzzing import hostile, rss_kb
from helpers import wait_for
from minipar.protocol import Session, envelope_parts, recv_frames, send_frames
from minipar.serialize import deserialize_object, pack_apply_message

KEY = "engine-fuzz-key"
PING_EVERY = 0.2


class FakeController:
    """Just enough of a controller for one engine, driven from the test's thread."""

    def __init__(self, profile_dir):
        self.ctx = zmq.Context()
        self.session = Session(KEY)
        self.engine_socket = self.bind(zmq.ROUTER)
        self.pings = self.bind(zmq.PUB)
        self.pongs = self.bind(zmq.ROUTER)
        self.unused = self.bind(zmq.ROUTER)  # the clients' ports, which engines never use
        self.ping_count = 0
        self.last_ping = 0.0
        self.engine_ident = None
        self.engine_pid = None
        self.registrations = 0
        self.replies: dict = {}
        security = profile_dir / "security"
        security.mkdir(parents=True, exist_ok=True)
        os.chmod(str(security), 0o700)
        info = {"key": KEY, "location": "127.0.0.1", "transport": "tcp", "signature_scheme": "hmac-sha256",
                "protocol": "2", "ports": {name: self.port(s) for name, s in
                                           (("engine", self.engine_socket), ("hb_ping", self.pings),
                                            ("hb_pong", self.pongs), ("client", self.unused),
                                            ("notification", self.unused))}}
        path = security / "controller-engine.json"
        path.write_text(json.dumps(info))
        os.chmod(str(path), 0o600)

    def bind(self, kind):
        s = self.ctx.socket(kind)
        s.setsockopt(zmq.LINGER, 0)
        s.setsockopt(zmq.SNDHWM, 0)
        s.setsockopt(zmq.RCVHWM, 0)
        s.bind_to_random_port("tcp://127.0.0.1")
        return s

    @staticmethod
    def port(s) -> int:
        return int(s.getsockopt(zmq.LAST_ENDPOINT).decode().rsplit(":", 1)[1])

    def ping(self, payload=None):
        self.ping_count += 1
        self.pings.send(payload if payload is not None else b"%s:%d" % (self.session.bid, self.ping_count))

    def pump(self, seconds=0.05):
        """Ping on time, answer registrations, record replies, for about ``seconds``."""
        deadline = time.monotonic() + seconds
        while True:
            now = time.monotonic()
            if now - self.last_ping >= PING_EVERY:
                self.last_ping = now
                self.ping()
            while recv_frames(self.pongs, zmq.NOBLOCK) is not None:
                pass
            raw = recv_frames(self.engine_socket, zmq.NOBLOCK)
            if raw is not None:
                self.handle(raw)
                continue
            if now > deadline:
                return
            self.engine_socket.poll(10)

    def handle(self, raw):
        msg = self.session.parse(raw)
        if msg.msg_type == "registration_request":
            self.engine_ident = raw[0]
            self.engine_pid = msg.content["pid"]
            self.registrations += 1
            self.session.send(self.engine_socket, "registration_reply",
                              {"status": "ok", "id": 0, "heartbeat_period": PING_EVERY,
                               "controller": self.session.id}, parent=msg.header, idents=[raw[0]])
        elif msg.msg_type in ("apply_reply", "execute_reply"):
            self.replies.setdefault(msg.parent.get("msg_id"), []).append(msg)

    def apply(self, f, *args) -> tuple:
        """Send a real apply request; its msg_id and frames (for a replay)."""
        header, frames = self.session.build("apply_request", {}, None, {})
        frames = [self.engine_ident] + frames + [bytes(b) for b in pack_apply_message(f, args, {})]
        send_frames(self.engine_socket, frames)
        return header["msg_id"], frames

    def result(self, msg_id, timeout=20):
        wait_for(lambda: self.pump() or msg_id in self.replies, timeout, "the reply to %s" % msg_id)
        [reply] = self.replies[msg_id]
        assert reply.content["status"] == "ok", reply.content
        return deserialize_object(reply.buffers)

    def close(self):
        for s in (self.engine_socket, self.pings, self.pongs, self.unused):
            s.close(linger=0)
        self.ctx.term()


def hostile_control(rng, good: Session) -> list:
    """A correctly signed control message (what only a key holder could send) whose content
    has the wrong shape for its type."""
    msg_type, content = rng.choice([
        ("abort_request", {"msg_ids": 5}), ("abort_request", {"msg_ids": [1, {}]}),
        ("steal_request", {"msg_ids": "abc"}), ("steal_request", {"msg_ids": [[1]]}),
        ("signal_request", {"signal": "loud"}), ("signal_request", {"signal": 99999}),
        ("signal_request", {"signal": [2]}),
        ("registration_reply", {"status": "ok"}), ("registration_reply", {"status": "ok", "id": "x",
                                                                          "controller": 5}),
        ("execute_request", {"code": 5, "silent": "no"}), ("clear_request", {"all": "of it"}),
    ])
    _, frames = good.build(msg_type, content, None, {})
    if rng.random() < 0.2:
        header, parent, metadata, _ = envelope_parts(frames[1])[1]
        frames[1] = good.envelope([header, parent, metadata, b"[1, 2]"])  # content JSON but not an object
    return frames


def test_thousands_of_malformed_messages_to_an_engine_never_hurt(profile):
    fake = FakeController(profile.dir)
    engine = profile.engine("--engine.log_to_file=false", "--log-level", "INFO")
    try:
        wait_for(lambda: fake.pump() or fake.registrations, 30, "the engine to register")
        rng = random.Random(2)
        good, wrong = Session(KEY), Session("not-the-key")
        msg_id, first_frames = fake.apply(pow, 2, 0)
        assert fake.result(msg_id) == 1
        rss_before = rss_kb(fake.engine_pid)
        sent = 0
        for round_ in range(1, 11):
            for _ in range(300):
                frames = hostile(rng, good, wrong) if rng.random() < 0.8 else hostile_control(rng, good)
                ident = fake.engine_ident + (b":out" if rng.random() < 0.3 else b"")
                send_frames(fake.engine_socket, [ident] + list(frames))
                sent += 1
                if sent % 30 == 0:
                    fake.ping(rng.choice([os.urandom(12), b"", b":" * 5, b"x" * 5000, b"%s:nan" % good.bid]))
                    fake.pump(0)
            send_frames(fake.engine_socket, first_frames)  # a replay of a real request
            ids = [fake.apply(pow, 3, round_ + k)[0] for k in range(3)]
            assert [fake.result(i) for i in ids] == [3 ** (round_ + k) for k in range(3)]
        fake.pump(0.5)
        assert len(fake.replies[msg_id]) == 1, "the replayed request never ran again"
        assert engine.popen.poll() is None, engine.output()
        grown = rss_kb(fake.engine_pid) - rss_before
        assert grown < 40 * 1024, "the engine grew %d KB over %d hostile messages" % (grown, sent)
        assert fake.registrations == 1, "malformed pings never made it register again"
        fake.session.send(fake.engine_socket, "shutdown_request", {}, idents=[fake.engine_ident])
        wait_for(lambda: fake.pump() or engine.popen.poll() is not None, 20, "the engine to stop")
    finally:
        engine.stop()
        fake.close()
    assert engine.popen.returncode == 0, engine.output()
    log = engine.output()
    warnings = [line for line in log.splitlines() if " WARNING " in line or " ERROR " in line]
    assert len(warnings) < 80, "%d warnings for %d hostile messages:\n%s" % (len(warnings), sent,
                                                                            "\n".join(warnings[:80]))
    assert any("more messages in the last" in line for line in warnings), warnings[-5:]
    assert "Traceback" not in log
