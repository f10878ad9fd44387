"""TOML profiles: every setting declared once, loaded, checked, given on a command line, rendered.

Each section of ``minipar.toml`` is a dataclass whose fields carry a default, a help string
and, for some, a short command-line flag. That one declaration validates the file, coerces
``--section.key=value`` strings and flags from the command line, and renders the commented
file that ``profile create`` writes, so none of them can disagree.

- ``types``: the types a setting may have; checking and coercing values, writing them as TOML.
- ``schema``: ``option``, ``Flag`` and ``@section``, the registry of sections, close-match hints.
- ``builtin_sections``: every section of minipar itself, written out.
- ``model``: ``Config``, a loaded configuration and where each value came from.
- ``load``: ``load_config``: defaults < ``<profile_dir>/minipar.toml`` < overrides.
- ``command_line``: ``--section.key=value`` overrides and the declared short flags.
- ``render``: the commented ``minipar.toml``.
"""
from __future__ import annotations

from ..error import ConfigError
from .schema import Flag, option, section, sections
from .builtin_sections import (  # noqa: F401  (importing registers them)
    BatchConfig,
    BatchTemplateConfig,
    ClusterConfig,
    ControllerConfig,
    DictDBConfig,
    EngineConfig,
    MongoDBConfig,
    MPILauncherConfig,
    SQLiteDBConfig,
    SSHLauncherConfig,
)
from .model import Config
from .load import CONFIG_FILE, load_config
from .command_line import add_flags, flag_keys, flag_overrides, override_arg, split_overrides
from .render import render_profile

__all__ = [
    "CONFIG_FILE",
    "Config",
    "ConfigError",
    "Flag",
    "add_flags",
    "flag_keys",
    "flag_overrides",
    "load_config",
    "option",
    "override_arg",
    "render_profile",
    "section",
    "sections",
    "split_overrides",
]
