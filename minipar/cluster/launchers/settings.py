"""What a launcher reads from the profile: its section and its role's, as one typed object.

A launcher names its section (``settings_section = "launcher.slurm"``); the Cluster hands it
that section merged with the role's sub-section (``[launcher.slurm.engines]``) as
``self.settings``, read by attribute (``self.settings.queue``, ``self.settings.batch_template``).

The state file keeps plain data: ``to_dict()`` writes both sections' fields as one table plus
``configured``, the keys of the launcher's section set in the profile or on the command line
(ssh's to_send: an explicit ``[]`` means "send nothing", the default "send the connection
file"). ``from_dict()`` rebuilds the typed object from such a table, from any minipar's state
file: a key missing takes its default, a key no section has any more is dropped. Values are
taken as they are: they were checked when the profile was loaded.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Iterable, Optional

from ...config import sections


class LauncherSettings:
    """A launcher's section and its role's sub-section, read as one; see the module docstring."""

    def __init__(self, section: Any = None, role_section: Any = None, configured: Iterable[str] = ()):
        self.section = section
        self.role_section = role_section
        self.configured = tuple(configured)

    def __getattr__(self, name: str) -> Any:
        if not name.startswith("_"):
            for part in (self.__dict__.get("role_section"), self.__dict__.get("section")):
                if part is not None and name in part.__dataclass_fields__:
                    return getattr(part, name)
        raise AttributeError("%s has no setting %r" % (self._names(), name))

    def _names(self) -> str:
        parts = [type(p).__name__ for p in (self.section, self.role_section) if p is not None]
        return " + ".join(parts) or "a launcher without settings"

    def to_dict(self) -> dict:
        """The state file's form: every field of both sections, and ``configured``; ``{}`` if none."""
        if self.section is None:
            return {}
        data = dataclasses.asdict(self.section)
        if self.role_section is not None:
            data.update(dataclasses.asdict(self.role_section))
        data["configured"] = list(self.configured)
        return data

    @classmethod
    def from_dict(cls, section_name: str, role: str, data: Optional[dict]) -> "LauncherSettings":
        """The typed settings of ``[section_name]`` and ``[section_name.role]`` from to_dict()'s table."""
        data = dict(data or {})
        configured = data.pop("configured", ())
        if not section_name:
            return cls()
        registered = sections()
        section = _build(registered[section_name], data)
        role_cls = registered.get("%s.%s" % (section_name, role))
        return cls(section, _build(role_cls, data) if role_cls is not None else None, configured)

    def __repr__(self) -> str:
        return "<LauncherSettings %s>" % self.to_dict()


def _build(cls: type, data: dict) -> Any:
    """An instance of a section class from a table, defaults for what it lacks."""
    return cls(**{key: value for key, value in data.items() if key in cls.__dataclass_fields__})


def launcher_settings(config, cls, role: str) -> LauncherSettings:
    """The settings a launcher class reads in ``role`` ("engines" or "controller"), from a loaded
    config: copies, so a launcher never shares a list with the config or another launcher."""
    name = getattr(cls, "settings_section", "")
    if not name:
        return LauncherSettings()
    section = _copy(config.section(name))
    configured = [f.name for f in dataclasses.fields(section)
                  if config.source_of("%s.%s" % (name, f.name)) != "default"]
    sub = "%s.%s" % (name, role)
    role_section = _copy(config.section(sub)) if sub in sections() else None
    return LauncherSettings(section, role_section, configured)


def _copy(section: Any) -> Any:
    return type(section)(**dataclasses.asdict(section))
