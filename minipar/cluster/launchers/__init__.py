"""Launchers by short name, and custom ones by dotted path.

Short names map to dotted paths so that a launcher's module (and whatever it needs) is
imported only when a cluster uses it.
"""
from __future__ import annotations

import dataclasses
import importlib

from ...config import ConfigError, sections
from .base import CannotSignal, ControllerLauncher, EngineSetLauncher, Launcher, LauncherError  # noqa: F401

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
}


def launcher_class(name: str, role: str, source: str = "configuration"):
    """The class for a launcher setting: a short name, or a dotted pkg.mod.Class."""
    registry = CONTROLLER_LAUNCHERS if role == "controller" else ENGINE_LAUNCHERS
    base = ControllerLauncher if role == "controller" else EngineSetLauncher
    key = "cluster.%s" % ("controller" if role == "controller" else "engines")
    if name in registry:
        return import_launcher(registry[name], base, source, key)
    if "." not in name:
        raise ConfigError(source, key, "unknown launcher %r; choose one of %s or a dotted pkg.mod.Class"
                          % (name, ", ".join(registry)))
    return import_launcher(name, base, source, key)


def import_launcher(path: str, base=Launcher, source="state file", key="class"):
    module, _, cls = path.rpartition(".")
    try:
        found = getattr(importlib.import_module(module), cls)
    except (ImportError, AttributeError, ValueError) as e:
        raise ConfigError(source, key, "cannot load launcher %r: %s" % (path, e)) from None
    if not (isinstance(found, type) and issubclass(found, base)):
        raise ConfigError(source, key, "%r is not a %s subclass" % (path, base.__name__))
    return found


def launcher_settings(config, cls, role: str) -> dict:
    """The launcher's section of the profile (``[launcher.slurm]``) merged with its role's
    sub-section (``[launcher.slurm.engines]``), as plain data for the state file."""
    name = getattr(cls, "settings_section", "")
    if not name:
        return {}
    settings = dataclasses.asdict(config.section(name))
    sub = "%s.%s" % (name, role)
    if sub in sections():
        settings.update(dataclasses.asdict(config.section(sub)))
    return settings
