"""Giving memory freed after a burst back to the system.

A burst of tasks leaves the controller's C heap (zmq frames, the records' bytes) full of
free chunks that glibc keeps for reuse, so its RSS stays at the burst's high-water mark:
10 MB and more after 5,000 tasks in flight at once. ``malloc_trim`` returns the free pages
to the kernel; the hub calls it only when a poll finds nothing to do, so never under load."""
from __future__ import annotations

import ctypes

TRIM_INTERVAL = 1.0
"""Seconds between two trims at most: a trim is cheap, but one per idle poll would be waste."""


try:
    _malloc_trim = ctypes.CDLL(None).malloc_trim
except (OSError, AttributeError):  # not glibc: musl, macOS
    _malloc_trim = None


def return_free_memory() -> bool:
    """Give the C heap's free pages back to the kernel, where the C library can (glibc)."""
    if _malloc_trim is None:
        return False
    _malloc_trim(0)
    return True
