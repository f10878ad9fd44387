"""Loading: defaults, then ``<profile_dir>/minipar.toml``, then overrides, each value checked.

Precedence: field defaults < ``<profile_dir>/minipar.toml`` < overrides (command line or
keyword arguments). Every value is checked against its declaration as it is set; a bad one is
a ConfigError naming the file (or "command line"), the key, the problem and a close match.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Dict, Mapping, Optional

from ..error import ConfigError
from .model import Config
from .schema import REGISTRY, SectionInfo, check_choice, children, unknown_problem
from .types import Mismatch, check, coerce, describe, tomllib

CONFIG_FILE = "minipar.toml"
COMMAND_LINE = "command line"
"""The source named for overrides unless the caller names another ("Cluster()")."""


def load_config(
    profile_dir: Optional[os.PathLike] = None,
    overrides: Optional[Mapping[str, Any]] = None,
    source: str = COMMAND_LINE,
) -> Config:
    """Defaults, then ``<profile_dir>/minipar.toml`` if it exists, then ``overrides``.

    ``overrides`` maps ``"section.key"`` to a typed value (keyword arguments) or a
    string (command line, coerced to the field's type); ``None`` means "not given",
    so argparse defaults can be passed straight through. ``source`` names the
    overrides in error messages and in ``source_of``.
    """
    config = Config()
    if profile_dir is not None:
        path = Path(profile_dir) / CONFIG_FILE
        if path.exists():
            _apply_document(config, _read_toml(path), str(path))
    for key, value in (overrides or {}).items():
        if value is None:
            continue
        owner, _, leaf = key.rpartition(".")
        sec = REGISTRY.get(owner)
        if sec is None or leaf not in sec.types:
            raise ConfigError(source, key, unknown_problem(key))
        _set_checked(config, sec, leaf, value, source, from_text=isinstance(value, str))
    return config


def _read_toml(path: Path) -> Dict[str, Any]:
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as e:
        raise ConfigError(str(path), None, "can't read: %s" % (e.strerror or e)) from None
    except UnicodeDecodeError as e:
        raise ConfigError(str(path), None, "not UTF-8 text: %s" % e) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(str(path), None, _syntax_problem(e)) from None


def _syntax_problem(exc: Exception) -> str:
    text = str(exc)
    m = re.search(r"\s*\(at line (\d+), column (\d+)\)$", text)
    if m:
        return "line %s, column %s: invalid TOML: %s" % (m.group(1), m.group(2), text[: m.start()])
    lineno = getattr(exc, "lineno", None)
    if lineno:
        return "line %s: invalid TOML: %s" % (lineno, getattr(exc, "msg", text))
    return "invalid TOML: %s" % text


def _apply_document(config: Config, doc: Dict[str, Any], source: str) -> None:
    for key, value in doc.items():
        _apply(config, key, value, source)


def _apply(config: Config, path: str, value: Any, source: str) -> None:
    owner, _, leaf = path.rpartition(".")
    sec = REGISTRY.get(owner)
    if sec is not None and leaf in sec.types:
        _set_checked(config, sec, leaf, value, source, from_text=False)
    elif path in REGISTRY or children(path):
        if not isinstance(value, dict):
            raise ConfigError(
                source, path, "expected a table ([%s]), got %s" % (path, describe(value))
            )
        for key, item in value.items():
            _apply(config, "%s.%s" % (path, key), item, source)
    else:
        raise ConfigError(source, path, unknown_problem(path, is_table=isinstance(value, dict)))


def _set_checked(
    config: Config, sec: SectionInfo, leaf: str, value: Any, source: str, from_text: bool
) -> None:
    key = "%s.%s" % (sec.name, leaf)
    t = sec.types[leaf]
    try:
        checked = coerce(value, t) if from_text else check(value, t)
        check_choice(checked, sec.field(leaf))
    except Mismatch as e:
        raise ConfigError(source, key, str(e)) from None
    config._set(key, checked, source)
