"""Launchers by short name, and custom ones by dotted path."""
from __future__ import annotations

import importlib

from ...config import ConfigError
from .base import ControllerLauncher, EngineSetLauncher, Launcher, LauncherError  # noqa: F401
from .local import LocalControllerLauncher, LocalEngineSetLauncher

CONTROLLER_LAUNCHERS = {"local": LocalControllerLauncher}
ENGINE_LAUNCHERS = {"local": LocalEngineSetLauncher}


def launcher_class(name: str, role: str, source: str = "configuration"):
    """The class for a launcher setting: a short name, or a dotted pkg.mod.Class."""
    registry = CONTROLLER_LAUNCHERS if role == "controller" else ENGINE_LAUNCHERS
    base = ControllerLauncher if role == "controller" else EngineSetLauncher
    key = "cluster.%s" % ("controller" if role == "controller" else "engines")
    if name in registry:
        return registry[name]
    if "." not in name:
        raise ConfigError(source, key, "unknown launcher %r; choose one of %s or a dotted pkg.mod.Class"
                          % (name, ", ".join(sorted(registry))))
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
