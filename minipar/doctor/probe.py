"""The key check: a signed ``probe_request`` on the controller's engine port.

The controller drops a badly signed message without a word (a peer without the key learns
nothing), so silence is all a wrong key ever gets. What tells the causes of silence apart is the
connection itself, watched with a ZeroMQ socket monitor: a TCP connection whose security
handshake never succeeds means the curve server key is not the controller's (or one side
encrypts and the other does not); a handshake that succeeded, then no answer, means the HMAC
key differs (or the peer is not a minipar controller that knows ``probe_request``); no
connection at all means nothing that speaks ZeroMQ was reached.
"""
from __future__ import annotations

import time
import uuid

import zmq

from ..curve import ClientKeys
from ..error import CurveError
from ..error import ProtocolError
from ..protocol import PROTOCOL_VERSION, Session, python_version

HANDSHAKE_SUCCEEDED = getattr(zmq, "EVENT_HANDSHAKE_SUCCEEDED", 0)
HANDSHAKE_FAILED = (getattr(zmq, "EVENT_HANDSHAKE_FAILED_NO_DETAIL", 0) | getattr(zmq, "EVENT_HANDSHAKE_FAILED_PROTOCOL", 0)
                    | getattr(zmq, "EVENT_HANDSHAKE_FAILED_AUTH", 0))
"""Connection events (libzmq 4.3+) that say whether the security handshake went through."""

ANSWERED, REFUSED_HANDSHAKE, UNANSWERED, NOT_REACHED, CANNOT_TRY = (
    "answered", "handshake failed", "unanswered", "not reached", "cannot try")


class KeyProbe:
    """How the signed probe went: ``outcome`` (a module constant), the controller's reply
    content when it answered, and a note (why it could not be tried, a bad reply)."""

    __slots__ = ("outcome", "reply", "note")

    def __init__(self, outcome: str, reply=None, note: str = ""):
        self.outcome = outcome
        self.reply = reply or {}
        self.note = note


def probe_key(url: str, info: dict, timeout: float) -> KeyProbe:
    """Send one signed probe_request to ``url`` and wait up to ``timeout`` for its reply."""
    try:
        keys = ClientKeys(info)
    except CurveError as e:
        return KeyProbe(CANNOT_TRY, note=str(e))
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    monitor = None
    try:
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.IDENTITY, ("doctor-%s" % uuid.uuid4().hex[:12]).encode())
        keys.apply(sock.setsockopt)
        if HANDSHAKE_SUCCEEDED:
            monitor = sock.get_monitor_socket(zmq.EVENT_CONNECTED | HANDSHAKE_SUCCEEDED | HANDSHAKE_FAILED)
        sock.connect(url)
        session = Session(info["key"])
        request = session.send(sock, "probe_request", {"protocol": PROTOCOL_VERSION, "python": python_version()})
        return _await_reply(sock, monitor, session, request["msg_id"], timeout)
    except zmq.ZMQError as e:
        return KeyProbe(CANNOT_TRY, note="ZeroMQ refused the address %s: %s" % (url, e))
    finally:
        if monitor is not None:
            sock.disable_monitor()
            monitor.close(0)
        sock.close(0)
        ctx.term()


def _await_reply(sock, monitor, session, msg_id: str, timeout: float) -> KeyProbe:
    from zmq.utils.monitor import recv_monitor_message

    handshake = ""
    note = ""
    poller = zmq.Poller()
    poller.register(sock, zmq.POLLIN)
    if monitor is not None:
        poller.register(monitor, zmq.POLLIN)
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        for ready, _ in poller.poll(left * 1000):
            if ready is monitor:
                event = recv_monitor_message(monitor)["event"]
                if event == HANDSHAKE_SUCCEEDED:
                    handshake = "ok"
                elif not handshake:  # connected (TCP), or a failed handshake: not ok until it succeeds
                    handshake = "pending"
                continue
            try:
                msg = session.recv(sock, zmq.NOBLOCK)
            except ProtocolError as e:
                note = "a reply failed the checks: %s" % e
                continue
            if msg is not None and msg.msg_type == "probe_reply" and msg.parent.get("msg_id") == msg_id:
                return KeyProbe(ANSWERED, msg.content)
    if handshake == "pending":  # TCP connected, but the security handshake never went through
        return KeyProbe(REFUSED_HANDSHAKE, note=note)
    if handshake == "ok" or monitor is None:
        return KeyProbe(UNANSWERED, note=note)
    return KeyProbe(NOT_REACHED, note=note)
