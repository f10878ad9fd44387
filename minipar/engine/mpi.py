"""``[engine] mpi = "mpi4py"``: initialise MPI when the engine starts, before it connects.

Importing ``mpi4py.MPI`` calls MPI_Init, so every engine of an ``mpiexec`` job joins
``MPI.COMM_WORLD`` before user code runs; the module goes into the engine's namespace, so
tasks can use ``MPI.COMM_WORLD`` without importing it. mpi4py stays an optional import: an
engine without this setting never touches it.
"""
from __future__ import annotations

import sys

from ..error import MiniparError


class MPIStartError(MiniparError):
    """Raised when engine.mpi asks for MPI and it cannot be initialised."""


def init_mpi(kind: str):
    """Initialise MPI as ``engine.mpi`` says; returns the ``MPI`` module."""
    setting = "engine.mpi = %r" % kind
    try:
        import mpi4py
    except ImportError as e:
        raise MPIStartError("%s needs the mpi4py package, which %s cannot import (%s); install it there or "
                            "unset engine.mpi" % (setting, sys.executable, e)) from None
    try:
        from mpi4py import MPI
    except (ImportError, OSError, RuntimeError) as e:
        raise MPIStartError("%s: mpi4py %s is installed but cannot load an MPI library: %s"
                            % (setting, getattr(mpi4py, "__version__", "?"), e)) from None
    return MPI
