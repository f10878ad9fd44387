"""Heartbeats: how the hub tells a dead engine from a busy one.

The hub PUBlishes a numbered ping every period; each engine's heart device, a zmq
device thread running in C without the GIL, echoes it on a DEALER, so an engine stuck in
a long GIL-holding call keeps answering while a SIGKILLed one goes silent. Misses are
counted in pings sent, not seconds, so a hub that was itself stalled never blames its
engines for its own delay.
"""
from __future__ import annotations

REGISTRATION_GRACE_BEATS = 5
"""Extra periods a new engine gets for its first echo: its SUB may still be joining."""


class HeartMonitor:
    def __init__(self, ping_socket, session_id: bytes, misses: int):
        self.ping_socket = ping_socket
        self.prefix = session_id + b":"
        self.misses = misses
        self.counter = 0
        self.last_answered: dict = {}

    def add(self, heart: bytes) -> None:
        self.last_answered[heart] = self.counter + REGISTRATION_GRACE_BEATS

    def remove(self, heart: bytes) -> None:
        self.last_answered.pop(heart, None)

    def beat(self) -> list:
        """Send the next ping; return the hearts that missed too many."""
        self.counter += 1
        self.ping_socket.send(self.prefix + str(self.counter).encode())
        limit = self.counter - self.misses
        return [h for h, n in self.last_answered.items() if n < limit]

    def handle_pong(self, frames: list) -> None:
        if len(frames) != 2:
            return
        heart, payload = frames
        if heart not in self.last_answered or not payload.startswith(self.prefix):
            return
        try:
            n = int(payload[len(self.prefix):])
        except ValueError:
            return
        if n > self.last_answered[heart]:
            self.last_answered[heart] = n
