"""Other Pythons for the tests that cross versions: pyenv's interpreters, each in a venv of its
own with minipar's runtime dependencies, running minipar from this checkout (PYTHONPATH).

A Python that is missing skips those tests, except in CI (``CI=true``), where it fails them:
scripts/run-tests relies on pyenv's 3.8 and 3.13 being there.
"""
from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from pathlib import Path

import pytest

PYENV_VERSIONS = Path.home() / ".pyenv" / "versions"


def pyenv_python(minor: str):
    """The newest pyenv interpreter of a minor version ("3.8"), or None."""
    found = []
    for path in PYENV_VERSIONS.glob(minor + ".*"):
        patch = path.name[len(minor) + 1:]
        if patch.isdigit() and (path / "bin" / "python").exists():
            found.append((int(patch), path / "bin" / "python"))
    return max(found)[1] if found else None


def require_python(minor: str) -> Path:
    """pyenv's Python of that minor version; skips without it, but fails in CI."""
    python = pyenv_python(minor)
    if python is None:
        why = "no Python %s under %s (pyenv install %s)" % (minor, PYENV_VERSIONS, minor)
        if os.environ.get("CI") == "true":
            pytest.fail(why + ": CI needs it")
        pytest.skip(why)
    return python


def shared_tmp(tmp_path_factory) -> Path:
    """A directory every xdist worker of this run shares (the run's own one without xdist)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


RUNTIME_DEPENDENCIES = ["pyzmq", "tomli>=1.1; python_version < '3.11'"]


def venv_with_runtime_deps(minor: str, tmp_path_factory) -> Path:
    """The python of a venv of pyenv's Python ``minor`` with pyzmq (and tomli below 3.11), installed
    by its own pip (another Python's pip may not know it) from the index or its cache: made once
    per test run, by whichever xdist worker asks first."""
    base = shared_tmp(tmp_path_factory)
    venv = base / ("venv-python%s" % minor)
    python = venv / "bin" / "python"
    with open(base / ("venv-python%s.lock" % minor), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (venv / "ready").exists():
            subprocess.run([str(require_python(minor)), "-m", "venv", "--clear", str(venv)], check=True, timeout=300)
            install = subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                                      *RUNTIME_DEPENDENCIES], capture_output=True, text=True, timeout=600)
            assert install.returncode == 0, "pip install for Python %s:\n%s" % (minor, install.stderr)
            (venv / "ready").write_text("")
    return python


def other_minors() -> tuple:
    """Two Python minor versions other than this one's, from those CI runs: the peers of a test
    that crosses versions."""
    this = "%d.%d" % sys.version_info[:2]
    return tuple(m for m in ("3.8", "3.13", "3.11") if m != this)[:2]
