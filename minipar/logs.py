"""Logging set-up shared by the controller, engine and cluster programs."""
from __future__ import annotations

import logging
import re
import sys
import time
from pathlib import Path

FORMAT = "%(asctime)s.%(msecs)03d [%(role)s] %(levelname)s %(message)s"
DATEFMT = "%Y-%m-%d %H:%M:%S"


class _RoleFilter(logging.Filter):
    def __init__(self, role):
        super().__init__()
        self.role = role

    def filter(self, record):
        record.role = self.role
        return True


def setup_logging(role: str, level: str = "INFO", logfile=None) -> logging.Logger:
    """Log to stderr and, when given, to a file in the profile's log dir."""
    root = logging.getLogger("minipar")
    root.handlers[:] = []
    handlers = [logging.StreamHandler(sys.stderr)]
    if logfile is not None:
        Path(logfile).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(str(logfile), mode="a"))
    for h in handlers:
        h.setFormatter(logging.Formatter(FORMAT, DATEFMT))
        h.addFilter(_RoleFilter(role))
        root.addHandler(h)
    root.setLevel(level_number(level))
    root.propagate = False
    return root


def level_number(level) -> int:
    if isinstance(level, int):
        return level
    value = logging.getLevelName(str(level).upper())
    if not isinstance(value, int):
        raise ValueError("unknown log level %r (use DEBUG, INFO, WARNING, ERROR)" % level)
    return value


def problem_kind(error) -> str:
    """What a ProtocolError says, without its particulars: 'truncated message: 3 frames' ->
    'truncated message'."""
    return re.split(r"[:(]", str(error), 1)[0].strip()


class DropLog:
    """Counts the messages a process drops, by kind, and logs them without flooding.

    A peer without the key (or a broken one) can send thousands of bad messages a second:
    a log line for each would fill the disk and hide everything else. The first of each
    kind is logged in full; after that drops are only counted, and a summary with the
    counts of the last ``interval`` seconds is logged at the next drop once that has passed
    (and at :meth:`flush`). Kinds are bounded, since a message's text is the sender's."""

    MAX_KINDS = 64

    def __init__(self, logger, interval: float = 10.0):
        self.logger = logger
        self.interval = interval
        self.total = 0
        self.seen: set = set()
        self.window: dict = {}
        self.window_start = None

    def drop(self, kind: str, detail: str) -> None:
        self.total += 1
        now = time.monotonic()
        if kind not in self.seen and len(self.seen) < self.MAX_KINDS:
            self.seen.add(kind)
            self.logger.warning("dropped %s (%d dropped so far; more of this kind are counted, not logged)",
                                detail, self.total)
            return
        if kind not in self.seen:
            kind = "other"
        if self.window_start is None:
            self.window_start = now
        self.window[kind] = self.window.get(kind, 0) + 1
        if now - self.window_start >= self.interval:
            self.flush(now)

    def flush(self, now=None) -> None:
        if not self.window:
            return
        now = time.monotonic() if now is None else now
        counts = ", ".join("%s: %d" % kv for kv in sorted(self.window.items(), key=lambda kv: -kv[1]))
        self.logger.warning("dropped %d more messages in the last %.0fs (%s); %d dropped in all",
                            sum(self.window.values()), now - self.window_start, counts, self.total)
        self.window = {}
        self.window_start = None
