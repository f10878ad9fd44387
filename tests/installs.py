"""Installing minipar as a user would, for the tests of installed copies: a copy of the source
tree to build from, and pip run with nothing but what a test gives it."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

from helpers import ROOT


def source_tree(dest: Path) -> Path:
    """What a clone holds for building minipar (no .venv, caches or build dirs) copied to ``dest``,
    so a build writes nothing into the checkout."""
    dest.mkdir(parents=True)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, dest)
    shutil.copytree(ROOT / "minipar", dest / "minipar", ignore=shutil.ignore_patterns("__pycache__"))
    return dest


def isolated_env(**extra) -> dict:
    """The environment of a machine where pip knows no index, no find-links and no config file of
    this one (PIP_CONFIG_FILE=/dev/null reads none), and PYTHONPATH is unset."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_") and k != "PYTHONPATH"}
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_DISABLE_PIP_VERSION_CHECK="1", **extra)
    return env
