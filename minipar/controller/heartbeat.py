"""Heartbeats: how the hub tells a dead engine from a busy one.

The hub PUBlishes a numbered ping every period; each engine's heart device, a zmq
device thread running in C without the GIL, echoes it on a DEALER, so an engine stuck in
a long GIL-holding call keeps answering while a SIGKILLed one goes silent. Misses are
counted in pings sent, not seconds, so a hub that was itself stalled never blames its
engines for its own delay; and before judging, the monitor reads every echo already
waiting on its socket, so a hub busy elsewhere (thousands of engines, a burst of tasks)
never counts an answer it has not read yet as a miss.

Cost per beat is one ping and one echo per engine: an echo of the newest ping is matched
by comparing bytes, without parsing its number.
"""
from __future__ import annotations

import zmq

REGISTRATION_GRACE_BEATS = 5
"""Extra periods a new engine gets for its first echo: its SUB may still be joining."""


class HeartMonitor:
    def __init__(self, ping_socket, session_id: bytes, misses: int, pong_socket=None):
        self.ping_socket = ping_socket
        self.pong_socket = pong_socket
        self.prefix = session_id + b":"
        self.misses = misses
        self.counter = 0
        self.current = b""
        self.last_answered: dict = {}

    def add(self, heart: bytes) -> None:
        self.last_answered[heart] = self.counter + REGISTRATION_GRACE_BEATS

    def remove(self, heart: bytes) -> None:
        self.last_answered.pop(heart, None)

    def beat(self) -> list:
        """Send the next ping; return the hearts that missed too many."""
        if self.pong_socket is not None:
            self.drain()
        limit = self.counter + 1 - self.misses
        dead = [h for h, n in self.last_answered.items() if n < limit]
        self.counter += 1
        self.current = self.prefix + str(self.counter).encode()
        self.ping_socket.send(self.current)
        return dead

    def drain(self) -> None:
        """Read every echo waiting on the pong socket."""
        recv = self.pong_socket.recv
        more = self.pong_socket.getsockopt
        while True:
            try:
                heart = recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            frames = [heart]
            while more(zmq.RCVMORE):
                frames.append(recv())
            self.handle_pong(frames)

    def handle_pong(self, frames: list) -> None:
        if len(frames) != 2:
            return
        heart, payload = frames
        last = self.last_answered.get(heart)
        if last is None:
            return
        if payload == self.current:
            n = self.counter
        elif payload.startswith(self.prefix):
            try:
                n = int(payload[len(self.prefix):])
            except ValueError:
                return
        else:
            return
        if n > last:
            self.last_answered[heart] = n
