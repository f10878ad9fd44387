"""Logging set-up shared by the controller, engine and cluster programs."""
from __future__ import annotations

import logging
import sys
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


def add_log_to_file_args(parser, key: str) -> None:
    """--log-to-file / --no-log-to-file, as ipyparallel's flag; None when neither is given."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--log-to-file", dest="log_to_file", action="store_true", default=None,
                       help="also log to a file in the profile's log/ dir (%s = true)" % key)
    group.add_argument("--no-log-to-file", dest="log_to_file", action="store_false", default=None,
                       help="log to stderr only (%s = false)" % key)


def level_number(level) -> int:
    if isinstance(level, int):
        return level
    value = logging.getLevelName(str(level).upper())
    if not isinstance(value, int):
        raise ValueError("unknown log level %r (use DEBUG, INFO, WARNING, ERROR)" % level)
    return value
