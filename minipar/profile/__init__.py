"""Profile directories: where a cluster's config, keys, logs and pids live.

A profile is ``$MINIPAR_DIR/profile_<name>`` (``MINIPAR_DIR`` defaults to
``~/.minipar``), or any directory given as ``profile_dir``, which HPC users use
to keep state on a shared filesystem that engines on other nodes can read::

    minipar.toml   configuration (see minipar.config)
    security/      connection files and cluster state (0700: they hold the key)
    log/           controller, engine and launcher logs
    pid/           controller pid files
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

from ..error import ProfileError

__all__ = [
    "ENV_VAR",
    "ProfileError",
    "locate_profile_dir",
    "log_dir",
    "minipar_dir",
    "pid_dir",
    "security_dir",
]

ENV_VAR = "MINIPAR_DIR"
DEFAULT_DIR = "~/.minipar"
PROFILE_PREFIX = "profile_"
_PACKAGE = (__package__ or "minipar.profile").rsplit(".", 1)[0]


def _absolute(path: os.PathLike[str] | str) -> Path:
    # abspath, not resolve: keep the user's symlinks (shared filesystems mount oddly)
    return Path(os.path.abspath(os.path.expanduser(os.fspath(path))))


def minipar_dir() -> Path:
    """The directory holding every ``profile_<name>``: ``$MINIPAR_DIR`` or ``~/.minipar``."""
    return _absolute(os.environ.get(ENV_VAR) or DEFAULT_DIR)


def _check_name(profile: str) -> None:
    if not profile or any(s and s in profile for s in ("/", os.sep, os.altsep, "\0")):
        raise ProfileError(
            "bad profile name %r: it must be non-empty and contain no path separator; "
            "to use a directory anywhere, pass it as profile_dir (--profile-dir)" % profile
        )


def locate_profile_dir(
    profile: Optional[str] = None,
    profile_dir: os.PathLike[str] | str | None = None,
    create: bool = True,
) -> Path:
    """The absolute profile directory: ``profile_dir`` if given, else the named profile.

    With ``create`` the directory and its subdirectories are made (and an existing
    ``security/`` is tightened to 0700), so a first ``Cluster()`` just works; without
    it a missing profile is an error, for commands that only read (``cluster list``).
    """
    if profile_dir is not None:
        if not os.fspath(profile_dir):
            raise ProfileError("empty profile dir: pass a directory path, or a profile name")
        path = _absolute(profile_dir)
        how = "--profile-dir %s" % path
    else:
        name = "default" if profile is None else profile
        _check_name(name)
        path = minipar_dir() / (PROFILE_PREFIX + name)
        how = "--profile %s" % name
    _check_owner(path)
    if create:
        _create(path)
    elif not path.is_dir():
        if path.exists():
            raise ProfileError("profile dir %s exists but is not a directory" % path)
        raise ProfileError(
            "profile dir %s does not exist; create it with: python -m %s.profile create %s"
            % (path, _PACKAGE, how)
        )
    return path


def _check_owner(path: Path) -> None:
    """Refuse a profile another user owns: they can rewrite its connection files and config,
    and so point this user's clients and engines at a controller of theirs, which then runs
    its code as this user. A shared filesystem is fine; someone else's directory is not."""
    if os.name != "posix":
        return
    try:
        owner = path.stat().st_uid
    except OSError:
        return  # not there yet: it will be made, and be ours
    if owner != os.getuid():
        raise ProfileError(
            "profile dir %s belongs to %s, not to you (%s): whoever owns it can change the connection "
            "files and configuration your controller, clients and engines trust. Use a profile dir of "
            "your own (--profile-dir, or MINIPAR_DIR)" % (path, _user(owner), _user(os.getuid())))


def _user(uid: int) -> str:
    try:
        import pwd
        return "user %s (uid %d)" % (pwd.getpwuid(uid).pw_name, uid)
    except (ImportError, KeyError):
        return "uid %d" % uid


def _create(path: Path) -> None:
    security = security_dir(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        log_dir(path).mkdir(exist_ok=True)
        pid_dir(path).mkdir(exist_ok=True)
        security.mkdir(mode=0o700, exist_ok=True)
    except FileExistsError as e:
        raise ProfileError(
            "can't create profile dir %s: %s exists and is not a directory" % (path, e.filename)
        ) from None
    except OSError as e:
        raise ProfileError(
            "can't create profile dir %s: %s" % (path, e.strerror or e)
        ) from None
    _restrict(security)


def _restrict(security: Path) -> None:
    """Make security/ private: it holds the exec key, and the key is code execution.

    Only a directory we own is changed (a profile another user owns is refused before this).
    """
    if os.name != "posix":
        return
    st = security.stat()
    if st.st_mode & 0o077 and st.st_uid == os.getuid():
        os.chmod(security, 0o700)


def security_dir(profile_dir: os.PathLike[str] | str) -> Path:
    """Connection files and cluster state files."""
    return Path(profile_dir) / "security"


def log_dir(profile_dir: os.PathLike[str] | str) -> Path:
    """Controller, engine and launcher logs."""
    return Path(profile_dir) / "log"


def pid_dir(profile_dir: os.PathLike[str] | str) -> Path:
    """Controller pid files."""
    return Path(profile_dir) / "pid"
