"""Signals in processes with threads.

CPython runs signal handlers only in the main thread, but the kernel hands a process-directed
signal to any thread that does not block it. A signal taken by a helper thread therefore waits
until the main thread next runs Python code: if that thread sits in a long blocking call (a
task's ``time.sleep``, a C extension), SIGINT or SIGTERM does nothing until it returns. The
kernel picks the main thread while it has no signal pending, so one signal arrives, but a second
right behind it (SIGINT then SIGTERM, as ``bkill`` or a batch system's walltime sends) goes to
another thread. Helper threads started through ``start_without_signals`` block them all.
"""
from __future__ import annotations

import os
import signal
import threading


def start_without_signals(thread: threading.Thread) -> None:
    """Start thread with every signal blocked in it (a new thread inherits its creator's
    mask), so signals for this process go to the main thread."""
    if not hasattr(signal, "pthread_sigmask"):
        thread.start()
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
    try:
        thread.start()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def signal_wakeup_fd() -> int:
    """A pipe that signals write to, for a poll loop to watch: a signal then ends the poll
    at once instead of after its timeout. Returns the read end."""
    r, w = os.pipe()
    os.set_blocking(r, False)
    os.set_blocking(w, False)
    signal.set_wakeup_fd(w)
    return r


def drain_fd(fd: int) -> None:
    try:
        os.read(fd, 4096)
    except BlockingIOError:
        pass
