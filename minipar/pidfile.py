"""Pid files, and telling a live process from a dead one or a zombie."""
from __future__ import annotations

import os
from pathlib import Path


def pid_alive(pid: int) -> bool:
    """True if pid runs; a zombie counts as dead, since it will never do anything again."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open("/proc/%d/stat" % pid) as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        return state not in ("Z", "X")
    except (FileNotFoundError, ProcessLookupError):  # gone between kill(0) and the read
        return False
    except (OSError, IndexError):
        return True


def read_pid(path) -> int | None:
    try:
        return int(Path(path).read_text().strip())
    except (OSError, ValueError):
        return None


def write_pid(path) -> None:
    """Write this process's pid atomically: whoever sees the file sees the whole pid (tests and
    ``cluster`` wait for the file to appear, then read it)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(".%s.%d.tmp" % (path.name, os.getpid()))
    tmp.write_text("%d\n" % os.getpid())
    os.replace(str(tmp), str(path))


def remove_pid(path) -> None:
    if read_pid(path) == os.getpid():
        try:
            os.unlink(str(path))
        except OSError:
            pass


def start_time(pid: int) -> int | None:
    """When pid started, in clock ticks since boot (/proc/PID/stat), to tell it from a later
    process given the same pid; None where there is no /proc or no such process."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return int(f.read().rsplit(")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def same_process(pid: int, started) -> bool:
    """Whether pid still runs and is the process that started at ``started`` (start_time())."""
    return pid_alive(pid) and (started is None or start_time(pid) == started)
