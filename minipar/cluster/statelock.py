"""An exclusive lock on a cluster's state file, across processes and threads.

``cluster stop`` holds it from reading the state file until it has stopped everything and
removed the file, and a pool holds it from recording a replacement until its job id is
recorded, so a stop never misses a job submitted while it ran: whichever comes second sees
all the first one did. It is ``flock`` on ``security/cluster-<id>.lock`` (where fcntl is
missing it only serialises this process's threads), re-entrant within a thread.
"""
from __future__ import annotations

import contextlib
import os
import threading
import time
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: no flock
    fcntl = None

RETRY_INTERVAL = 0.05
"""Seconds between attempts at a lock another process holds."""

_held: dict = {}
"""Lock file path -> [thread lock, open fd or None, depth] for this process."""
_guard = threading.Lock()


def lock_path(state_file) -> Path:
    return Path(state_file).with_suffix(".lock")


@contextlib.contextmanager
def state_file_lock(state_file, timeout: float):
    """Hold the lock of ``state_file`` while the block runs; yields whether it was acquired within
    ``timeout`` seconds (0: one attempt). The block runs either way: callers that need the
    lock check what it yields."""
    path = lock_path(state_file)
    with _guard:
        entry = _held.setdefault(str(path), [threading.RLock(), None, 0])
    deadline = time.monotonic() + timeout
    acquired = entry[0].acquire(timeout=timeout) if timeout > 0 else entry[0].acquire(blocking=False)
    if not acquired:
        yield False
        return
    try:
        if entry[2] == 0 and not path.exists() and not Path(state_file).exists():
            yield True  # no cluster to coordinate about: leave no lock file behind
            return
        if entry[2] == 0:
            entry[1] = _lock_file(path, deadline)
            if entry[1] is None:
                yield False
                return
        entry[2] += 1
        try:
            yield True
        finally:
            entry[2] -= 1
            if entry[2] == 0:
                os.close(entry[1])
                entry[1] = None
    finally:
        entry[0].release()


def _lock_file(path: Path, deadline: float):
    """An fd of path holding its flock, or None if another process keeps it past deadline."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(str(path), os.O_RDWR | os.O_CREAT, 0o600)
    except OSError:
        return None
    if fcntl is None:
        return fd
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except OSError:
            if time.monotonic() >= deadline:
                os.close(fd)
                return None
            time.sleep(RETRY_INTERVAL)
