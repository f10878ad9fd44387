"""``[engine] mpi``: initialise MPI when the engine starts, before it connects.

Two ways, as in the chapter (``c.MPI.use`` / ``c.MPI.init_script``):

- ``mpi = "mpi4py"``: importing ``mpi4py.MPI`` calls MPI_Init, so every engine of an
  ``mpiexec`` job joins ``MPI.COMM_WORLD`` before user code runs. ``MPI``, ``mpi_rank`` and
  ``mpi_size`` go into the engine's namespace (the names ipyparallel's default init defines).
- ``mpi = "init_script"``: the file ``engine.mpi_init_script`` is run in the engine's namespace
  instead, to initialise another binding. What it defines stays there; it should set
  ``mpi_rank`` and ``mpi_size``, and when it does not they are read from the environment
  mpiexec gives its ranks (:data:`RANK_VARIABLES`).

Either way the names survive ``clear()``, and the rank decides two things before the engine
registers: the engine id it asks for (so ``rc[i]`` is rank i, as ipyparallel's ``use_mpi``
does) and how long it waits first (``engine.mpi_registration_delay`` per rank). mpi4py stays an
optional import: an engine without ``engine.mpi`` never touches it.
"""
from __future__ import annotations

import os
import sys
from typing import Optional

from ..error import InitScriptFailed, MPIStartError

RANK_VARIABLES = (("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE"), ("PMI_RANK", "PMI_SIZE"))
"""Where Open MPI's and MPICH's (hydra's) mpiexec tell each process its rank and the job size."""


class MPISetup:
    """What initialising MPI gave: names for the engine's namespace, and rank and size if known."""

    def __init__(self, how: str, names: dict, rank: Optional[int], size: Optional[int]):
        self.how = how
        self.names = names
        self.rank = rank
        self.size = size

    @property
    def in_a_job(self) -> bool:
        """True for one of several ranks; a lone process (no mpiexec, or -n 1) has no rank to ask for."""
        return self.rank is not None and self.size is not None and self.size > 1

    def registration_delay(self, per_rank: float) -> float:
        return self.rank * per_rank if self.in_a_job and per_rank > 0 else 0.0


def init_mpi(cfg, namespace: dict) -> MPISetup:
    """Initialise MPI as ``engine.mpi`` says, adding its names to ``namespace``."""
    if cfg.mpi == "init_script":
        return run_init_script(cfg.mpi_init_script, namespace)
    setup = init_mpi4py(cfg.mpi)
    namespace.update(setup.names)
    return setup


def init_mpi4py(kind: str = "mpi4py") -> MPISetup:
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
    rank, size = MPI.COMM_WORLD.Get_rank(), MPI.COMM_WORLD.Get_size()
    return MPISetup(MPI.get_vendor()[0], {"MPI": MPI, "mpi_rank": rank, "mpi_size": size}, rank, size)


def run_init_script(path: str, namespace: dict) -> MPISetup:
    if not path:
        raise MPIStartError("engine.mpi = 'init_script' needs engine.mpi_init_script, the Python file that "
                            "initialises MPI; set it, or use engine.mpi = 'mpi4py'")
    full = os.path.abspath(os.path.expanduser(path))
    try:
        with open(full) as f:
            code = compile(f.read(), full, "exec")
    except OSError as e:
        raise MPIStartError("engine.mpi_init_script: cannot read %s: %s" % (full, e.strerror or e)) from None
    except SyntaxError as e:
        raise MPIStartError("engine.mpi_init_script: %s is not valid Python: %s (line %s)"
                            % (full, e.msg, e.lineno)) from None
    before = dict(namespace)
    try:
        exec(code, namespace)
    except BaseException as e:  # noqa: B902 - any failure of the user's init code ends the engine
        raise InitScriptFailed("engine.mpi_init_script %s failed: %s: %s" % (full, type(e).__name__, e)) from e
    names = {k: v for k, v in namespace.items()
             if not k.startswith("__") and (k not in before or before[k] is not v)}
    rank, size = whole_number(names.get("mpi_rank")), whole_number(names.get("mpi_size"))
    if rank is None or size is None:
        rank, size = rank_from_environment()
    return MPISetup("engine.mpi_init_script %s" % full, names, rank, size)


def rank_from_environment():
    for rank_name, size_name in RANK_VARIABLES:
        rank, size = whole_number(os.environ.get(rank_name)), whole_number(os.environ.get(size_name))
        if rank is not None and size is not None:
            return rank, size
    return None, None


def whole_number(value) -> Optional[int]:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value >= 0 else None
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None
