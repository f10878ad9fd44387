"""Task record stores for the hub, chosen by ``[controller] db``."""
from __future__ import annotations

import importlib

from ...config import ConfigError

BUILTIN = {
    "dict": ("memory", "DictDB"),
    "nodb": ("memory", "NoDB"),
}


def db_class(name: str, source: str = "configuration"):
    """The class for a ``db`` setting: a short name or a dotted ``pkg.mod.Class``."""
    if name in BUILTIN:
        module, cls = BUILTIN[name]
        return getattr(importlib.import_module("." + module, __name__), cls)
    if "." not in name:
        raise ConfigError(source, "controller.db", "unknown backend %r; choose one of %s or a dotted "
                          "pkg.mod.Class" % (name, ", ".join(sorted(BUILTIN))))
    module, _, cls = name.rpartition(".")
    try:
        return getattr(importlib.import_module(module), cls)
    except (ImportError, AttributeError) as e:
        raise ConfigError(source, "controller.db", "cannot load %r: %s" % (name, e)) from None
