"""A loaded configuration: one instance per registered section, and where each value came from."""
from __future__ import annotations

import dataclasses
from typing import Any, Dict

from .schema import REGISTRY, children, setting, suggest

DEFAULT = "default"
"""The source of a value nobody set."""


class Config:
    """One instance per registered section, plus where each value came from.

    ``cfg.section("db.sqlite")`` always works; ``cfg.controller.ip`` and
    ``cfg.db.sqlite.table`` are the same lookups spelled as attributes.
    """

    def __init__(self) -> None:
        self._values: Dict[str, Any] = {}
        self._sources: Dict[str, str] = {}
        for name in REGISTRY:
            self.section(name)

    def section(self, name: str) -> Any:
        """The instance for section ``name``; defaults if it was registered after load."""
        try:
            return self._values[name]
        except KeyError:
            pass
        sec = REGISTRY.get(name)
        if sec is None:
            raise KeyError("unknown section %r%s" % (name, suggest(name, is_section=True)))
        inst = self._values[name] = sec.cls()
        for other, value in self._values.items():
            if other.startswith(name + ".") and "." not in other[len(name) + 1:]:
                object.__setattr__(inst, other[len(name) + 1:], value)
        parent, _, leaf = name.rpartition(".")
        if parent in self._values:
            object.__setattr__(self._values[parent], leaf, inst)
        return inst

    def source_of(self, key: str) -> str:
        """Where ``section.key`` got its value: "default", a file path, or "command line"."""
        setting(key)
        return self._sources.get(key, DEFAULT)

    def to_dict(self) -> Dict[str, Dict[str, Any]]:
        """``{section: {key: value}}`` with copies, for state files or passing to a subprocess."""
        return {name: dataclasses.asdict(self.section(name)) for name in REGISTRY}

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return _lookup(self, name)

    def __repr__(self) -> str:
        changed = {k: v for k, v in self._sources.items() if v != DEFAULT}
        return "<Config %s>" % (", ".join("%s from %s" % kv for kv in changed.items()) or "defaults")

    def _set(self, key: str, value: Any, source: str) -> None:
        """Store an already checked value (see load.py) and note its source."""
        owner, _, leaf = key.rpartition(".")
        setattr(self.section(owner), leaf, value)
        self._sources[key] = source


class _Group:
    """A dotted prefix like ``db`` that holds only sub-sections (``db.sqlite``...)."""

    __slots__ = ("_config", "_path")

    def __init__(self, config: Config, path: str):
        self._config = config
        self._path = path

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return _lookup(self._config, "%s.%s" % (self._path, name))

    def __repr__(self) -> str:
        return "<config group %s: %s>" % (self._path, ", ".join(children(self._path)))


def _lookup(config: Config, path: str) -> Any:
    if path in REGISTRY:
        return config.section(path)
    if children(path):
        return _Group(config, path)
    raise AttributeError("no config section %r%s" % (path, suggest(path, is_section=True)))
