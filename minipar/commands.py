"""The commands ``pip install`` puts on PATH, and how each program names itself.

``minipar-controller``, ``minipar-engine``, ``minipar-cluster``, ``minipar-profile`` and
``minipar-doctor`` are the same programs as ``python -m minipar.controller`` and friends
(pyproject.toml's ``[project.scripts]`` points at the functions below). A vendored copy has no
commands, only the ``python -m`` form under its own package name, so its help does not mention
them.
"""
from __future__ import annotations

import os
import sys

PACKAGE = __package__ or "minipar"
ROLES = ("controller", "engine", "cluster", "profile", "doctor")


def command_name(role: str) -> str:
    return "minipar-" + role


def program_name(role: str) -> str:
    """How --help and error messages name this program: as the user ran it."""
    if PACKAGE == "minipar" and os.path.basename(sys.argv[0]) == command_name(role):
        return command_name(role)
    return "python -m %s.%s" % (PACKAGE, role)


def both_forms(role: str):
    """The --help epilog naming both ways to run the program (None when vendored)."""
    if PACKAGE != "minipar":
        return None
    return ("Run it as `%s` (installed with pip) or as `python -m minipar.%s` (any copy, vendored ones "
            "too): the same program." % (command_name(role), role))


def controller() -> None:
    from .controller.__main__ import main
    sys.exit(main())


def engine() -> None:
    from .engine.__main__ import main
    from .engine.engine import exit_engine
    exit_engine(main())


def cluster() -> None:
    import logging

    from .cluster.__main__ import main
    logging.captureWarnings(True)
    sys.exit(main())


def profile() -> None:
    from .profile.__main__ import main
    sys.exit(main())


def doctor() -> None:
    from .doctor.__main__ import main
    sys.exit(main())
