"""Connection files: what a client or engine needs to find and trust a controller.

The controller writes two files into the profile's security dir, readable by the
owner only, because the key in them is the whole trust boundary:
``controller[-ID]-client.json`` for clients, ``controller[-ID]-engine.json`` for engines.
Both carry every port, so ``--reuse`` can rebuild the controller from either. A
controller that stops (SIGINT, SIGTERM, a client's shutdown) removes both unless it runs
with ``--reuse``, so a client or engine never picks up a dead controller's file.
"""
from __future__ import annotations

import json
import logging
import os
import stat
import time
from pathlib import Path

from .error import ConnectionFileError

PORT_NAMES = ("client", "engine", "notification", "hb_ping", "hb_pong")
REQUIRED_FIELDS = ("location", "ports", "key")

log = logging.getLogger("minipar.connection")


def connection_file_name(role: str, cluster_id: str = "") -> str:
    return "controller%s-%s.json" % ("-" + cluster_id if cluster_id else "", role)


def connection_file_path(profile_dir, role: str, cluster_id: str = "") -> Path:
    return Path(profile_dir) / "security" / connection_file_name(role, cluster_id)


def engine_file_path(file_setting: str, profile_dir, cluster_id: str = "") -> str:
    """The engine connection file an engine (or the doctor) reads: ``engine.file`` (``--file``)
    made absolute, else the profile's ``security/controller[-ID]-engine.json``."""
    if file_setting:
        return os.path.abspath(os.path.expanduser(file_setting))
    return str(connection_file_path(profile_dir, "engine", cluster_id))


def default_location(ip: str) -> str:
    """Where peers should connect: the bound ip, or this host's name when bound to all."""
    if ip in ("*", "0.0.0.0", ""):
        import socket  # here, not at the top: a client never needs it
        return socket.gethostname()
    return ip


def bind_address(ip: str) -> str:
    return "*" if ip in ("*", "0.0.0.0", "") else ip


def url(info: dict, port_name: str, host: str | None = None) -> str:
    return "%s://%s:%d" % (info.get("transport", "tcp"), host or info["location"], info["ports"][port_name])


def write_connection_file(path, info: dict) -> None:
    """Write atomically with mode 0600 so no reader ever sees a partial file or the key."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(".%s.%d.tmp" % (path.name, os.getpid()))
    fd = os.open(str(tmp), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(info, f, indent=2, sort_keys=True)
        f.write("\n")
    os.chmod(str(tmp), 0o600)
    os.replace(str(tmp), str(path))


def read_connection_file(path, hint: str = "", warn_if_shared: bool = True) -> dict:
    """The checked info of a connection file; a ConnectionFileError naming the file and what is
    wrong. ``warn_if_shared`` logs a warning when others can read it (the doctor reports that
    itself)."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConnectionFileError(
            "connection file %s does not exist. %s" % (path, hint or "Is the controller running?")
        ) from None
    except OSError as e:
        raise ConnectionFileError("cannot read connection file %s: %s" % (path, e)) from None
    if warn_if_shared:
        _warn_if_others_can_read(path)
    try:
        info = json.loads(text)
    except ValueError as e:
        raise ConnectionFileError("connection file %s is not valid JSON: %s" % (path, e)) from None
    return check_connection_info(info, "connection file %s" % path)


def shared_mode(path) -> int | None:
    """The file's mode when users other than its owner may read or write it, else None: the
    key in a connection file lets whoever reads it run code on the engines."""
    if os.name != "posix":
        return None
    try:
        mode = stat.S_IMODE(Path(path).stat().st_mode)
    except OSError:
        return None
    return mode if mode & 0o077 else None


def _warn_if_others_can_read(path: Path) -> None:
    mode = shared_mode(path)
    if mode is not None:
        log.warning("connection file %s can be read or written by other users (mode %04o): anyone who can "
                    "read its key can run code on your engines. Make it private: chmod 600 %s",
                    path, mode, path)


def check_connection_info(info, source: str = "connection info") -> dict:
    """The info of a connection file (or the dict given in its place), checked."""
    if not isinstance(info, dict):
        raise ConnectionFileError("%s does not hold a JSON object" % source)
    missing = [k for k in REQUIRED_FIELDS if k not in info]
    if missing:
        raise ConnectionFileError("%s lacks %s" % (source, ", ".join(missing)))
    wrong = [k for k in ("location", "key") if not isinstance(info[k], str)]
    if wrong:
        raise ConnectionFileError("%s: %s must be a string" % (source, " and ".join(wrong)))
    ports = info["ports"]
    if not isinstance(ports, dict) or not all(isinstance(ports.get(p), int) for p in PORT_NAMES):
        raise ConnectionFileError("%s: 'ports' must map %s to integers" % (source, ", ".join(PORT_NAMES)))
    return info


def remove_connection_files(profile_dir, cluster_id: str, key: str) -> list:
    """Remove this controller's two files; returns the paths removed.

    A file whose key differs belongs to another controller that has since written it
    (a second profile user, a restarted controller) and is left alone."""
    removed = []
    for role in ("client", "engine"):
        path = connection_file_path(profile_dir, role, cluster_id)
        try:
            if json.loads(path.read_text()).get("key") != key:
                continue
            path.unlink()
        except (OSError, ValueError):
            continue
        removed.append(path)
    return removed


FILE_POLL_INTERVAL = 0.1
"""Seconds between looks for a connection file that is not there yet."""


def wait_for_connection_file(path, timeout: float) -> bool:
    """Wait until ``path`` exists, for up to ``timeout`` seconds (0: no limit).

    An engine may start before its controller (a batch job, a shared file system, ``--reuse``
    after a clean stop without it): the controller writes the file atomically, so seeing it
    means it is complete."""
    path = Path(path)
    deadline = time.monotonic() + timeout if timeout > 0 else None
    while not path.exists():
        if deadline is not None and time.monotonic() >= deadline:
            return False
        time.sleep(FILE_POLL_INTERVAL)
    return True
