"""The replay guard: a signature seen among the last ``window`` messages is refused.

A controller checks two signed messages per task, so what it remembers per signature is
what its memory grows by. A set and a deque of hex signatures cost about 170 bytes each
(some 11 MB once 2**16 are remembered, 45 MB for 2**18). Here a signature is remembered as a 64-bit key,
its hash (or its first 16 hex digits where hashes are narrower; only checked signatures get
here, so two different messages share a key with odds of 2**-64 per pair), in open-addressing
tables of 8-byte slots at most half full: 16 to 32 bytes per signature, allocated as the
traffic grows and never more than about ``4 * window * 8`` bytes (2 MB for 2**16).

The newest keys go into the current table. It doubles while small (its entries move over
a few per insert, so there is never a pause to rehash them all); once it holds ``window``
keys it becomes the previous table, dropping the one before, and a new one starts. A
lookup probes every live table, so each of the last ``window`` signatures (and up to twice
as many) is refused.
"""
from __future__ import annotations

import sys
from array import array

FIRST_SLOTS = 1024
"""Slots of the first table (8 KB): an engine or client that sees little traffic stays small."""

MOVE_EVERY = 32
MOVED_AT_ONCE = 128
"""Slots of the outgrown table moved every MOVE_EVERY inserts (4 per insert; 2 would do: it has
half the slots, and must be empty before the new table is half full)."""


_HASH_KEYS = sys.hash_info.width >= 64
"""Keys are the signature's hash where that has 64 bits (four times cheaper than parsing hex)."""
_KEY_MASK = (1 << 64) - 1


def _table(slots: int) -> array:
    return array("Q", [0]) * slots


def _find(table, mask, key) -> bool:
    i = key & mask
    k = table[i]
    while k:
        if k == key:
            return True
        i = (i + 1) & mask
        k = table[i]
    return False


def _put(table, mask, key) -> None:
    i = key & mask
    while table[i]:
        i = (i + 1) & mask
    table[i] = key


class ReplayGuard:
    """Remembers message signatures; :meth:`first_time` says whether one is new."""

    def __init__(self, window: int):
        self.window = window
        self._cur = _table(FIRST_SLOTS)
        self._mask = FIRST_SLOTS - 1
        self._count = 0
        self._moving = None
        self._moved = 0
        self._prev = None
        self._prev_mask = 0

    def __len__(self) -> int:
        """Keys remembered: the current generation's, plus the previous one's."""
        return self._count + (self.window if self._prev is not None else 0)

    def first_time(self, signature: bytes) -> bool:
        """True, and remembered, if this (checked, hex) signature was not seen before."""
        key = (hash(signature) & _KEY_MASK if _HASH_KEYS else int(signature[:16], 16)) or 1
        cur, mask = self._cur, self._mask
        i = key & mask
        k = cur[i]
        while k:
            if k == key:
                return False
            i = (i + 1) & mask
            k = cur[i]
        moving = self._moving
        if moving is not None and _find(moving, len(moving) - 1, key):
            return False
        if self._prev is not None and _find(self._prev, self._prev_mask, key):
            return False
        cur[i] = key
        self._count += 1
        if moving is not None and not self._count % MOVE_EVERY:
            self._move(MOVED_AT_ONCE)
        if self._count >= self.window:
            self._next_generation()
        elif 2 * self._count > mask + 1:
            self._grow()
        return True

    def _move(self, n: int) -> None:
        moving, cur, mask = self._moving, self._cur, self._mask
        start = self._moved
        stop = min(start + n, len(moving))
        for i in range(start, stop):
            k = moving[i]
            if k:
                _put(cur, mask, k)
        self._moved = stop
        if stop == len(moving):
            self._moving = None

    def _grow(self) -> None:
        if self._moving is not None:
            self._move(len(self._moving))
        slots = 2 * (self._mask + 1)
        self._moving, self._moved = self._cur, 0
        self._cur = _table(slots)
        self._mask = slots - 1

    def _next_generation(self) -> None:
        if self._moving is not None:
            self._move(len(self._moving))
        self._prev, self._prev_mask = self._cur, self._mask
        self._cur = _table(self._mask + 1)
        self._count = 0
