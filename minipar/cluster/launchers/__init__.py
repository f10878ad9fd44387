"""Launchers by short name, and custom ones by dotted path.

Short names map to dotted paths so that a launcher's module (and whatever it needs) is
imported only when a cluster uses it.

A launcher setting may also be spelled as ipyparallel and IPython 0.13 users write it
(see ``launcher_key``): a short name in any case (``MPI``, ``Slurm``, ipyparallel's
``winhpc``, 0.13's ``MPIExec``), a class name (``SSHEngineSetLauncher``,
``PBSControllerLauncher``) or that class's dotted path in ipyparallel
(``ipyparallel.cluster.launcher.SlurmEngineSetLauncher``, also as an entry point
``ipyparallel.cluster.launcher:SlurmEngineSetLauncher``) or IPython
(``IPython.parallel.apps.launcher.X``). Each means the minipar launcher of that name.
"""
from __future__ import annotations

import importlib

from ...config import ConfigError
from .base import ControllerLauncher, EngineSetLauncher, Launcher
from .settings import LauncherSettings, launcher_settings  # noqa: F401

_HERE = __name__

CONTROLLER_LAUNCHERS = {
    "local": _HERE + ".local.LocalControllerLauncher",
    "ssh": _HERE + ".ssh.SSHControllerLauncher",
    "mpi": _HERE + ".mpi.MPIControllerLauncher",
    "pbs": _HERE + ".pbs.PBSControllerLauncher",
    "sge": _HERE + ".sge.SGEControllerLauncher",
    "lsf": _HERE + ".lsf.LSFControllerLauncher",
    "slurm": _HERE + ".slurm.SlurmControllerLauncher",
    "htcondor": _HERE + ".htcondor.HTCondorControllerLauncher",
    "windowshpc": _HERE + ".windowshpc.WindowsHPCControllerLauncher",
}
ENGINE_LAUNCHERS = {
    "local": _HERE + ".local.LocalEngineSetLauncher",
    "ssh": _HERE + ".ssh.SSHEngineSetLauncher",
    "sshproxy": _HERE + ".ssh.SSHProxyEngineSetLauncher",
    "mpi": _HERE + ".mpi.MPIEngineSetLauncher",
    "pbs": _HERE + ".pbs.PBSEngineSetLauncher",
    "sge": _HERE + ".sge.SGEEngineSetLauncher",
    "lsf": _HERE + ".lsf.LSFEngineSetLauncher",
    "slurm": _HERE + ".slurm.SlurmEngineSetLauncher",
    "htcondor": _HERE + ".htcondor.HTCondorEngineSetLauncher",
    "windowshpc": _HERE + ".windowshpc.WindowsHPCEngineSetLauncher",
}

ALIASES = {"winhpc": "windowshpc", "mpiexec": "mpi", "condor": "htcondor"}
"""Other short names: ipyparallel's entry point name for Windows HPC, IPython 0.13's
MPIExec launchers (ipyparallel's deprecated ones), and HTCondor's old name."""

FOREIGN_MODULES = ("ipyparallel.cluster.launcher", "ipyparallel.apps.launcher", "IPython.parallel.apps.launcher")
"""Where ipyparallel (8+, then 4-7) and IPython 0.13 kept their launchers."""

ROLE_SUFFIXES = (("enginesetlauncher", "engines"), ("enginelauncher", "engines"),
                 ("controllerlauncher", "controller"), ("launcher", None))
"""Class-name endings and the role they name; a bare ``XLauncher`` names no role."""


def launcher_key(name: str):
    """(short name, role or None) for a name as ipyparallel or IPython 0.13 spell it, or
    (None, None) if it is none of those (then it may be a dotted path to a custom class)."""
    text = name.strip()
    for module in FOREIGN_MODULES:
        for sep in (".", ":"):
            if text.startswith(module + sep):
                text = text[len(module) + 1:]
    if "." in text or ":" in text:
        return None, None
    key = text.lower()
    role = None
    for suffix, suffix_role in ROLE_SUFFIXES:
        if key.endswith(suffix) and len(key) > len(suffix):
            key, role = key[:-len(suffix)], suffix_role
            break
    key = ALIASES.get(key, key)
    if key in ENGINE_LAUNCHERS or key in CONTROLLER_LAUNCHERS:
        return key, role
    return None, None


def launcher_class(name: str, role: str, source: str = "configuration"):
    """The class for a launcher setting: a short name (or an ipyparallel spelling of one,
    see the module docstring), or a dotted pkg.mod.Class."""
    role = "controller" if role == "controller" else "engines"
    registry = CONTROLLER_LAUNCHERS if role == "controller" else ENGINE_LAUNCHERS
    base = ControllerLauncher if role == "controller" else EngineSetLauncher
    setting = "cluster.%s" % role
    short, named_role = launcher_key(name)
    if short is not None and named_role not in (None, role) and short in registry:
        raise ConfigError(source, setting, "%r starts %s, not %s; write %r (or %s)"
                          % (name, "engines" if named_role == "engines" else "the controller",
                             "engines" if role == "engines" else "the controller", short,
                             class_name(registry, short)))
    if short is not None and short not in registry:
        raise ConfigError(source, setting, "there is no %s launcher for %s; choose one of %s"
                          % (short, "the controller" if role == "controller" else "engines", ", ".join(registry)))
    if short is not None:
        return import_launcher(registry[short], base, source, setting)
    if "." not in name or name.strip().startswith(FOREIGN_MODULES):
        raise ConfigError(source, setting, "unknown launcher %r; choose one of %s (in any case, or as a class name "
                          "such as %s), or a dotted pkg.mod.Class"
                          % (name, ", ".join(registry), class_name(registry, "ssh")))
    return import_launcher(name, base, source, setting)


def class_name(registry: dict, short: str) -> str:
    return registry[short].rpartition(".")[2]


def import_launcher(path: str, base=Launcher, source="state file", key="class"):
    module, _, cls = path.rpartition(".")
    try:
        found = getattr(importlib.import_module(module), cls)
    except (ImportError, AttributeError, ValueError) as e:
        raise ConfigError(source, key, "cannot load launcher %r: %s" % (path, e)) from None
    if not (isinstance(found, type) and issubclass(found, base)):
        raise ConfigError(source, key, "%r is not a %s subclass" % (path, base.__name__))
    return found
