"""Task record stores for the hub, chosen by ``[controller] db``.

Every backend takes ``(options, *, session, profile_dir)``: its ``[db.<name>]`` section (named
by the class's ``config_section``), the controller's session id and the profile dir.
:func:`open_db` does that from a loaded config.
"""
from __future__ import annotations

import importlib

from ...config import ConfigError
from .base import BaseDB, NoRecords
from .records import decode_json_text

BUILTIN = {
    "dict": ("memory", "DictDB"),
    "nodb": ("memory", "NoDB"),
    "sqlite": ("sqlite", "SQLiteDB"),
    "mongodb": ("mongodb", "MongoDB"),
}

__all__ = ["BUILTIN", "BaseDB", "NoRecords", "db_class", "open_db"]


def db_class(name: str, source: str = "configuration"):
    """The class for a ``db`` setting: a short name or a dotted ``pkg.mod.Class``."""
    if name in BUILTIN:
        module, cls = BUILTIN[name]
        mod = importlib.import_module("." + module, __name__)
        if name == "mongodb" and mod.pymongo is None:
            raise ConfigError(source, "controller.db", mod.MISSING)
        return getattr(mod, cls)
    if "." not in name:
        raise ConfigError(source, "controller.db", "unknown backend %r; choose one of %s or a dotted "
                          "pkg.mod.Class" % (name, ", ".join(sorted(BUILTIN))))
    module, _, cls = name.rpartition(".")
    try:
        found = getattr(importlib.import_module(module), cls)
    except (ImportError, AttributeError) as e:
        raise ConfigError(source, "controller.db", "cannot load %r: %s" % (name, e)) from None
    if isinstance(found, type) and not getattr(found, "takes_json_text", False):
        return decoding(found)
    return found


def decoding(cls):
    """A backend that expects JSON parts as values, given them so: the hub hands over JSON text
    (:mod:`records`), which a backend says it takes with ``takes_json_text = True``."""

    def add_record(self, msg_id, rec):
        cls.add_record(self, msg_id, decode_json_text(rec))

    def update_record(self, msg_id, changes):
        cls.update_record(self, msg_id, decode_json_text(changes))

    return type(cls.__name__, (cls,), {"add_record": add_record, "update_record": update_record,
                                       "takes_json_text": True, "__module__": cls.__module__,
                                       "__qualname__": cls.__qualname__, "__doc__": cls.__doc__})


def open_db(config, *, session: str = "", profile_dir=None) -> BaseDB:
    """The backend a loaded config asks for, built with its ``[db.*]`` options."""
    cls = db_class(config.controller.db, config.source_of("controller.db"))
    section = getattr(cls, "config_section", None)
    options = config.section(section) if section else None
    return cls(options, session=session, profile_dir=profile_dir)
