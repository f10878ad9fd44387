"""TOML profiles: section declarations, load, merge, validate, render.

Each section of ``minipar.toml`` is declared once, as a dataclass whose fields
carry a default and a help string. That one declaration validates the file,
coerces ``--section.key=value`` strings from the command line, and renders the
commented file that ``profile create`` writes, so the three can never disagree.

Precedence: field defaults < ``<profile_dir>/minipar.toml`` < overrides
(command line or keyword arguments).

A field's type is read from the *text* of its annotation, never evaluated:
``str``, ``int``, ``float``, ``bool``, ``list``, ``list[T]`` / ``List[T]`` with
``T`` one of the scalars, and ``dict`` / ``Dict[...]`` (any TOML table). Reading
text means ``list[int]`` works under ``from __future__ import annotations`` on
Python 3.8, where evaluating it (``typing.get_type_hints``) would fail, and that
a declaration with an unsupported type fails at import time, not at load time.

Modules that declare sections (cluster, launchers) must be imported before
``load_config`` runs; a table for a section nobody has registered yet is an error.
"""
from __future__ import annotations

import copy
import dataclasses
import difflib
import functools
import json
import math
import os
import re
import textwrap
from dataclasses import field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from .error import MiniparError

try:
    import tomllib
except ImportError:  # Python < 3.11
    import tomli as tomllib

__all__ = [
    "CONFIG_FILE",
    "Config",
    "ConfigError",
    "load_config",
    "option",
    "render_profile",
    "section",
    "sections",
    "split_overrides",
    "flag_overrides",
    "override_arg",
]

CONFIG_FILE = "minipar.toml"
DEFAULT = "default"
COMMAND_LINE = "command line"


class ConfigError(MiniparError):
    """Raised for a bad setting; names where it came from and the key so it can be fixed."""

    def __init__(self, source: str, key: Optional[str], problem: str):
        self.source = source
        self.key = key
        self.problem = problem
        where = "%s: %s" % (source, key) if key else source
        super().__init__("%s: %s" % (where, problem))

    def __reduce__(self):
        return (type(self), (self.source, self.key, self.problem))


# ---------------------------------------------------------------- field types

_SCALARS = ("str", "int", "float", "bool")
_WHAT = {
    "str": "a string",
    "int": "an integer",
    "float": "a number",
    "bool": "true or false",
    "list": "a list",
    "dict": "a table",
}
_PLURAL = {"str": "strings", "int": "integers", "float": "numbers", "bool": "booleans"}
_TRUE = ("true", "yes", "on", "1")
_FALSE = ("false", "no", "off", "0")


class _Type:
    """A field's type as parsed from its annotation: base kind, plus item kind for lists."""

    __slots__ = ("base", "item")

    def __init__(self, base: str, item: Optional[str] = None):
        self.base = base
        self.item = item

    def what(self) -> str:
        if self.item:
            return "a list of " + _PLURAL[self.item]
        return _WHAT[self.base]


_ANNOTATION = re.compile(r"(str|int|float|bool|list|dict)(?:\[(.*)\])?")


def _parse_annotation(annotation: Any) -> _Type:
    text = annotation.__name__ if isinstance(annotation, type) else str(annotation)
    norm = text.replace(" ", "").replace("typing.", "")
    norm = re.sub(r"\bList\b", "list", re.sub(r"\bDict\b", "dict", norm))
    m = _ANNOTATION.fullmatch(norm)
    if m:
        base, inner = m.groups()
        if inner is None:
            return _Type(base)
        if base == "list" and inner in _SCALARS:
            return _Type("list", inner)
        if base == "dict":
            return _Type("dict")
    raise TypeError(
        "unsupported option type %r: use str, int, float, bool, list, "
        "list[str|int|float|bool] or dict" % text
    )


class _Mismatch(Exception):
    """A value that doesn't fit a field; the caller adds source and key."""


def _describe(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean " + ("true" if value else "false")
    if isinstance(value, int):
        return "integer %d" % value
    if isinstance(value, float):
        return "float %r" % value
    if isinstance(value, str):
        return "string %s" % _short(repr(value))
    if isinstance(value, (list, tuple)):
        return "list %s" % _short(_toml_or_repr(list(value)))
    if isinstance(value, dict):
        return "table %s" % _short(_toml_or_repr(value))
    return "%s %s" % (type(value).__name__, _short(str(value)))


def _short(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _toml_or_repr(value: Any) -> str:
    try:
        return _toml(value)
    except TypeError:
        return repr(value)


def _check(value: Any, t: _Type) -> Any:
    """Accept a typed value (from TOML or Python) for a field, or raise _Mismatch.

    Returns a private copy so a caller's list or dict isn't aliased by the config.
    """
    base = t.base
    if base == "str":
        if isinstance(value, os.PathLike):
            value = os.fspath(value)
        if isinstance(value, str):
            return value
    elif base == "int":
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif base == "float":
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif base == "bool":
        if isinstance(value, bool):
            return value
    elif base == "list":
        if isinstance(value, (list, tuple)):
            if t.item is None:
                return copy.deepcopy(list(value))
            return _each_item(value, t, value, _check)
    elif base == "dict":
        if isinstance(value, dict):
            return copy.deepcopy(value)
    raise _Mismatch("expected %s, got %s" % (t.what(), _describe(value)))


def _each_item(items, t, whole, convert) -> list:
    """convert(item, item type) for each item of a typed list; a failure names the item."""
    item_type = _Type(t.item)
    out = []
    for i, item in enumerate(items):
        try:
            out.append(convert(item, item_type))
        except _Mismatch:
            raise _Mismatch(_bad_item(t, whole, i, item)) from None
    return out


def _bad_item(t: _Type, whole: Any, index: int, item: Any) -> str:
    return "expected %s, got %s (item %d is %s)" % (
        t.what(), _describe(whole), index, _describe(item)
    )


def _coerce(text: str, t: _Type) -> Any:
    """Turn a command-line string into a value for a field, or raise _Mismatch."""
    base = t.base
    stripped = text.strip()
    if base == "str":
        return text
    if base == "int":
        try:
            return int(stripped)
        except ValueError:
            pass
    elif base == "float":
        try:
            return float(stripped)
        except ValueError:
            pass
    elif base == "bool":
        if stripped.lower() in _TRUE:
            return True
        if stripped.lower() in _FALSE:
            return False
        raise _Mismatch("expected true or false (or yes/no, 1/0), got %s" % _describe(text))
    elif base == "list":
        if stripped.startswith("["):
            return _check(_parse_toml_value(text, t), t)
        items = [p.strip() for p in stripped.split(",") if p.strip()]
        if t.item is None:
            return items
        return _each_item(items, t, text, _coerce)
    elif base == "dict":
        if stripped.startswith("{"):
            return _check(_parse_toml_value(text, t), t)
        raise _Mismatch(
            "expected a table like {name = \"value\", n = 1}, got %s" % _describe(text)
        )
    raise _Mismatch("expected %s, got %s" % (t.what(), _describe(text)))


def _parse_toml_value(text: str, t: _Type) -> Any:
    try:
        doc = tomllib.loads("v = " + text)
    except tomllib.TOMLDecodeError as e:
        raise _Mismatch(
            "expected %s, got %s (not valid TOML: %s)" % (t.what(), _describe(text), e)
        ) from None
    if list(doc) != ["v"]:
        raise _Mismatch("expected %s, got %s" % (t.what(), _describe(text)))
    return doc["v"]


# ------------------------------------------------------------- declarations


class _Section:
    """What the registry knows about one section."""

    __slots__ = ("name", "cls", "types", "doc")

    def __init__(self, name: str, cls: type, types: Dict[str, _Type], doc: str):
        self.name = name
        self.cls = cls
        self.types = types
        self.doc = doc


_SECTIONS: Dict[str, _Section] = {}
_SECTION_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")


def option(default: Any, help: str, choices: Optional[Sequence[str]] = None) -> Any:
    """A field with a default and the help text shown in the rendered profile.

    Lists and dicts get a fresh deep copy per instance, so no two configs share one.
    ``choices`` restricts a string option; a typo then fails at load with a close match.
    """
    metadata = {"help": help}
    if choices is not None:
        metadata["choices"] = tuple(choices)
    if isinstance(default, (list, dict)):
        return field(
            default_factory=functools.partial(copy.deepcopy, default), metadata=metadata
        )
    return field(default=default, metadata=metadata)


def _default_of(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return f.default_factory()  # type: ignore[misc]
    return dataclasses.MISSING


def section(name: str):
    """Register a dataclass (or a plain class, made one) as section ``[name]``.

    Conflicts are refused here, at import, so that a dotted path in a file or on
    the command line always has exactly one meaning.
    """
    if not _SECTION_NAME.fullmatch(name):
        raise ValueError("bad section name %r: use dotted identifiers like 'launcher.slurm'" % name)

    def register(cls: type) -> type:
        own_doc = cls.__dict__.get("__doc__") or ""
        if "__dataclass_fields__" not in cls.__dict__:
            cls = dataclasses.dataclass(cls)
        if own_doc.startswith(cls.__name__ + "("):  # dataclass's generated signature
            own_doc = ""
        types = {}
        for f in dataclasses.fields(cls):
            where = "%s.%s" % (name, f.name)
            if "help" not in f.metadata:
                raise TypeError("%s: declare it with option(default, help)" % where)
            try:
                types[f.name] = _parse_annotation(f.type)
            except TypeError as e:
                raise TypeError("%s: %s" % (where, e)) from None
            default = _default_of(f)
            if default is dataclasses.MISSING:
                raise TypeError("%s: needs a default" % where)
            try:
                _check(default, types[f.name])
                _check_choice(default, f)
            except _Mismatch as e:
                raise TypeError("%s: bad default: %s" % (where, e)) from None
        old = _SECTIONS.get(name)
        if old is not None and (old.cls.__module__, old.cls.__qualname__) != (
            cls.__module__,
            cls.__qualname__,
        ):
            raise ValueError(
                "section [%s] is already declared by %s.%s"
                % (name, old.cls.__module__, old.cls.__qualname__)
            )
        for other in _SECTIONS.values():
            if other.name.startswith(name + "."):
                child = other.name[len(name) + 1 :].split(".")[0]
                if child in types:
                    raise ValueError(
                        "%s.%s: clashes with section [%s]" % (name, child, other.name)
                    )
            elif name.startswith(other.name + "."):
                child = name[len(other.name) + 1 :].split(".")[0]
                if child in other.types:
                    raise ValueError(
                        "section [%s] clashes with setting %s.%s" % (name, other.name, child)
                    )
        _SECTIONS[name] = _Section(name, cls, types, textwrap.dedent(own_doc).strip())
        return cls

    return register


def sections() -> Dict[str, type]:
    """Registered sections, in declaration order (the order of the rendered file)."""
    return {name: sec.cls for name, sec in _SECTIONS.items()}


def _check_choice(value: Any, f: dataclasses.Field) -> None:
    choices = f.metadata.get("choices")
    if choices is None or value in choices:
        return
    folded = {c.lower(): c for c in choices}
    close = difflib.get_close_matches(str(value).lower(), list(folded), n=1)
    hint = "; did you mean %r?" % folded[close[0]] if close else ""
    raise _Mismatch(
        "expected one of %s, got %s%s"
        % (", ".join(repr(c) for c in choices), _describe(value), hint)
    )


# ------------------------------------------------------------------ the model


class Config:
    """One instance per registered section, plus where each value came from.

    ``cfg.section("db.sqlite")`` always works; ``cfg.controller.ip`` and
    ``cfg.db.sqlite.table`` are the same lookups spelled as attributes.
    """

    def __init__(self) -> None:
        self._values: Dict[str, Any] = {}
        self._sources: Dict[str, str] = {}
        for name in _SECTIONS:
            self.section(name)

    def section(self, name: str) -> Any:
        """The instance for section ``name``; defaults if it was registered after load."""
        try:
            return self._values[name]
        except KeyError:
            pass
        sec = _SECTIONS.get(name)
        if sec is None:
            raise KeyError("unknown section %r%s" % (name, _suggest(name, is_section=True)))
        inst = self._values[name] = sec.cls()
        for other, value in self._values.items():
            if other.startswith(name + ".") and "." not in other[len(name) + 1 :]:
                object.__setattr__(inst, other[len(name) + 1 :], value)
        parent, _, leaf = name.rpartition(".")
        if parent in self._values:
            object.__setattr__(self._values[parent], leaf, inst)
        return inst

    def source_of(self, key: str) -> str:
        """Where ``section.key`` got its value: "default", a file path, or "command line"."""
        owner, _, leaf = key.rpartition(".")
        sec = _SECTIONS.get(owner)
        if sec is None or leaf not in sec.types:
            raise KeyError("unknown setting %r%s" % (key, _suggest(key)))
        return self._sources.get(key, DEFAULT)

    def to_dict(self) -> Dict[str, Dict[str, Any]]:
        """``{section: {key: value}}`` with copies, for state files or passing to a subprocess."""
        return {name: dataclasses.asdict(self.section(name)) for name in _SECTIONS}

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return _lookup(self, name)

    def __repr__(self) -> str:
        changed = {k: v for k, v in self._sources.items() if v != DEFAULT}
        return "<Config %s>" % (", ".join("%s from %s" % kv for kv in changed.items()) or "defaults")

    def _set(self, key: str, value: Any, source: str) -> None:
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
        return "<config group %s: %s>" % (self._path, ", ".join(_children(self._path)))


def _lookup(config: Config, path: str) -> Any:
    if path in _SECTIONS:
        return config.section(path)
    if _children(path):
        return _Group(config, path)
    raise AttributeError("no config section %r%s" % (path, _suggest(path, is_section=True)))


def _children(path: str) -> List[str]:
    return [n for n in _SECTIONS if n.startswith(path + ".")]


def _all_keys() -> List[str]:
    return ["%s.%s" % (n, k) for n, sec in _SECTIONS.items() for k in sec.types]


def _suggest(path: str, is_section: bool = False) -> str:
    """A '; did you mean ...?' hint for an unknown section or key, or ''."""
    if is_section:
        close = difflib.get_close_matches(path, list(_SECTIONS), n=1)
    else:
        keys = _all_keys()
        owner, _, leaf = path.rpartition(".")
        # a bare or misplaced key ("ip", "engine.reuse"): point at where it lives
        close = [k for k in keys if k.rpartition(".")[2] == leaf][:3]
        if not close and owner in _SECTIONS:
            close = [
                "%s.%s" % (owner, k)
                for k in difflib.get_close_matches(leaf, list(_SECTIONS[owner].types), n=1)
            ]
        elif not close:
            close = difflib.get_close_matches(path, keys, n=1)
    if close:
        return "; did you mean %s?" % " or ".join(repr(c) for c in close)
    return ""


def _unknown(path: str, is_table: bool = False) -> str:
    owner = path.rpartition(".")[0]
    if owner in _SECTIONS and not is_table:
        return "unknown setting" + (
            _suggest(path) or "; [%s] has: %s" % (owner, ", ".join(_SECTIONS[owner].types))
        )
    if is_table:
        return "unknown section" + (
            _suggest(path, is_section=True) or "; known sections: %s" % ", ".join(_SECTIONS)
        )
    return "unknown setting" + (_suggest(path) or "; settings are named section.key")


# -------------------------------------------------------------------- loading


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
        sec = _SECTIONS.get(owner)
        if sec is None or leaf not in sec.types:
            raise ConfigError(source, key, _unknown(key))
        _set_checked(config, sec, leaf, value, source, coerce=isinstance(value, str))
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
    sec = _SECTIONS.get(owner)
    if sec is not None and leaf in sec.types:
        _set_checked(config, sec, leaf, value, source, coerce=False)
    elif path in _SECTIONS or _children(path):
        if not isinstance(value, dict):
            raise ConfigError(
                source, path, "expected a table ([%s]), got %s" % (path, _describe(value))
            )
        for key, item in value.items():
            _apply(config, "%s.%s" % (path, key), item, source)
    else:
        raise ConfigError(source, path, _unknown(path, is_table=isinstance(value, dict)))


def _set_checked(
    config: Config, sec: _Section, leaf: str, value: Any, source: str, coerce: bool
) -> None:
    key = "%s.%s" % (sec.name, leaf)
    t = sec.types[leaf]
    try:
        checked = _coerce(value, t) if coerce else _check(value, t)
        _check_choice(checked, sec.cls.__dataclass_fields__[leaf])
    except _Mismatch as e:
        raise ConfigError(source, key, str(e)) from None
    config._set(key, checked, source)


def split_overrides(argv: Sequence[str]) -> Tuple[List[str], Dict[str, str]]:
    """Pull ``--section.key=value`` / ``--section.key value`` out of argv for argparse.

    Only dotted options whose first part is a registered section root are taken,
    so ``--ip`` and friends stay for argparse; ``--`` ends option parsing. Dashes in
    the name count as underscores (``--controller.heartbeat-period``). A bool may be
    given bare (``--controller.reuse``) and then takes the next argument only if it
    is a yes/no word. Keys aren't checked here: ``load_config`` reports unknown ones.
    """
    roots = {name.split(".")[0] for name in _SECTIONS}
    rest: List[str] = []
    overrides: Dict[str, str] = {}
    args = list(argv)
    i = 0
    while i < len(args):
        arg = args[i]
        i += 1
        if arg == "--":
            rest.extend(args[i - 1 :])
            break
        if not arg.startswith("--"):
            rest.append(arg)
            continue
        name, eq, value = arg[2:].partition("=")
        name = name.replace("-", "_")
        if "." not in name or name.split(".")[0] not in roots:
            rest.append(arg)
            continue
        if not eq:
            owner, _, leaf = name.rpartition(".")
            sec = _SECTIONS.get(owner)
            is_bool = sec is not None and leaf in sec.types and sec.types[leaf].base == "bool"
            if is_bool:
                if i < len(args) and args[i].lower() in _TRUE + _FALSE:
                    value = args[i]
                    i += 1
                else:
                    value = "true"
            elif i < len(args):
                value = args[i]
                i += 1
            else:
                raise ConfigError(COMMAND_LINE, name, "needs a value: --%s=VALUE" % name)
        overrides[name] = value
    return rest, overrides


# ------------------------------------------------------------------ rendering

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")

_PACKAGE = __package__ or "minipar"
_HEADER = """\
## minipar profile configuration.
##
## Every setting is listed with its default, commented out: uncomment a line and
## change the value to override it. Command-line options override this file, e.g.
##   python -m %s.controller --controller.ip='*'
""" % _PACKAGE


def _toml(value: Any) -> str:
    """A Python value as a TOML value (inline form), for the rendered profile."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")
    if isinstance(value, (list, tuple)):
        return "[%s]" % ", ".join(_toml(v) for v in value)
    if isinstance(value, dict):
        if not value:
            return "{}"
        return "{ %s }" % ", ".join(
            "%s = %s" % (_toml_key(str(k)), _toml(v)) for k, v in value.items()
        )
    raise TypeError("can't write %s as TOML" % _describe(value))


def _toml_key(key: str) -> str:
    return key if _BARE_KEY.fullmatch(key) else _toml(key)


def flag_overrides(args, flag_keys: Mapping[str, str]) -> Dict[str, Any]:
    """``{"section.key": value}`` for the argparse flags that were given (not None)."""
    return {key: getattr(args, flag) for flag, key in flag_keys.items() if getattr(args, flag) is not None}


def override_arg(key: str, value: Any) -> str:
    """``--section.key=value`` for a child process's command line: strings as given (they
    came from a command line), anything else as TOML, which the child coerces back."""
    return "--%s=%s" % (key, value if isinstance(value, str) else _toml(value))


def render_profile() -> str:
    """The commented ``minipar.toml`` that ``profile create`` writes.

    Section headers stay live (an empty table loads as defaults) so that
    uncommenting any ``# key = value`` line gives a valid file on its own. Prose
    starts with ``##`` (as in Jupyter's generated configs) so a wrapped help line
    can never be mistaken for a setting, by a reader or by a script.
    """
    lines = _HEADER.splitlines()
    for name, sec in _SECTIONS.items():
        lines.append("")
        if sec.doc:
            first = " ".join(sec.doc.split("\n\n")[0].split())
            lines.extend("## " + w for w in textwrap.wrap(first, 76))
        lines.append("[%s]" % name)
        for f in dataclasses.fields(sec.cls):
            help_text = f.metadata["help"]
            if "choices" in f.metadata:
                help_text += " One of: %s." % ", ".join(_toml(c) for c in f.metadata["choices"])
            lines.append("")
            lines.extend("## " + w for w in textwrap.wrap(help_text, 76))
            lines.append("# %s = %s" % (f.name, _toml(_default_of(f))))
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------- built-in sections


@section("controller")
@dataclasses.dataclass
class ControllerConfig:
    """The controller process: where it listens, what it writes into connection files,
    how it schedules and when it declares an engine dead."""

    ip: str = option("127.0.0.1", "Interface to bind; \"*\" means all interfaces.")
    location: str = option(
        "",
        "Host or IP written into connection files for clients and engines to connect to; "
        "empty means the hostname when ip is \"*\", else ip.",
    )
    ports: List[int] = option(
        [],
        "Explicit ports [client, engine, notification, heartbeat_ping, heartbeat_pong]; "
        "empty means random free ports.",
    )
    port_range: str = option(
        "", "\"LOW-HIGH\": pick random free ports in this range (for firewalls)."
    )
    reuse: bool = option(False, "Reuse ports and key from existing connection files.")
    curve: str = option(
        "auto",
        "Encrypt every connection (CurveZMQ): \"auto\" when listening beyond loopback (and "
        "libzmq has curve), \"true\" always, \"false\" never. The server key travels in the "
        "connection files.",
        choices=("auto", "true", "false"),
    )
    db: str = option(
        "dict",
        "Where task records are kept: dict (in memory), nodb (not kept), sqlite, mongodb, "
        "or an importable pkg.mod.Class.",
    )
    ssh_server: str = option(
        "", "ssh server that clients tunnel through (written to the client connection file)."
    )
    engine_ssh_server: str = option(
        "", "ssh server that engines tunnel through (written to the engine connection file)."
    )
    cluster_id: str = option(
        "", "Cluster id; names the connection files (controller-<id>-client.json)."
    )
    scheme: str = option(
        "leastload",
        "How the load-balanced scheduler picks an engine.",
        choices=("leastload", "lru", "twobin", "weighted", "plainrandom"),
    )
    heartbeat_period: float = option(1.0, "Seconds between heartbeat pings to engines.")
    heartbeat_misses: int = option(
        3, "Missed heartbeat periods before an engine is declared dead."
    )
    engine_hwm: int = option(
        16,
        "Load-balanced tasks in flight per engine: more keeps engines fed; tasks queued behind "
        "a long one are taken back by engines that go idle, so balance does not suffer.",
    )
    log_level: str = option(
        "INFO", "Log level.", choices=("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
    )
    log_to_file: bool = option(
        True, "Also log to log/controller[-<id>].log in the profile, besides stderr."
    )


@section("engine")
@dataclasses.dataclass
class EngineConfig:
    """An engine process: how it finds the controller, what it runs first, and when it
    gives up on a controller that has gone away."""

    file: str = option(
        "", "Engine connection file; empty means look in the profile's security dir."
    )
    ssh_server: str = option("", "ssh server to tunnel the connection to the controller through.")
    startup_script: str = option("", "Python file to run in the engine namespace at startup.")
    startup_command: str = option("", "Python code to run in the engine namespace at startup.")
    work_dir: str = option("", "Directory to change to at startup; empty means stay put.")
    mpi: str = option(
        "",
        "Initialise MPI when the engine starts (the chapter's c.MPI.use): \"mpi4py\" imports "
        "mpi4py.MPI and puts MPI, mpi_rank and mpi_size in the namespace; \"init_script\" runs "
        "the file engine.mpi_init_script instead, for another MPI binding. Under mpiexec the "
        "engine then asks for its MPI rank as its engine id.",
        choices=("", "mpi4py", "init_script"),
    )
    mpi_init_script: str = option(
        "",
        "Python file run in the engine namespace at start when engine.mpi = \"init_script\" (the "
        "chapter's c.MPI.init_script). It should set mpi_rank and mpi_size; if it does not, they "
        "are read from mpiexec's environment (Open MPI, MPICH).",
    )
    mpi_registration_delay: float = option(
        0.02,
        "Seconds per MPI rank an engine waits before registering (rank r waits r times this), "
        "so a large mpiexec job does not flood the controller; 0 registers all at once.",
    )
    id: int = option(
        -1,
        "Engine id to ask the controller for; registration fails if a live engine holds it. "
        "-1: an MPI engine asks for its rank (and takes another id if that one is held), any "
        "other gets the next free id.",
    )
    registration_timeout: float = option(
        20.0,
        "Seconds to wait for the controller: for its engine connection file to appear, then "
        "for it to accept the registration; 0 means no limit, so an engine can start before "
        "its controller (with --reuse files, or on a shared file system).",
    )
    controller_timeout: float = option(
        60.0,
        "Seconds without controller heartbeats before the engine gives up and exits, "
        "so a lost controller doesn't burn an allocation.",
    )
    cluster_id: str = option("", "Cluster id, to pick controller-<id>-engine.json.")
    tags: List[str] = option(
        [],
        "Labels of this engine (\"gpu\", \"bigmem\"): rc.load_balanced_view(tags=[...]) runs tasks "
        "only on engines that have every tag named, rc.direct_view(tags=[...]) addresses them.",
    )
    end_time: str = option(
        "",
        "When this engine's allocation ends, for a batch system minipar cannot ask (HTCondor, "
        "Windows HPC, a reservation): seconds since the epoch, an ISO date and time (local "
        "unless it names a zone) or +DURATION from the engine's start (+3600, +2:00:00). Empty: "
        "asked of Slurm, PBS, Grid Engine or LSF when the engine runs in one of their jobs.",
    )
    drain_before: float = option(
        300.0,
        "Seconds before its job's end (end_time, or the batch job's walltime) when the engine "
        "drains: it takes no new tasks, gives back those it has not started, finishes the one it "
        "runs and leaves, so the batch system never kills work; 0 never drains.",
    )
    nanny: bool = option(
        True,
        "Run the engine as a child of the launched process (its nanny), which passes signals on "
        "and, when the engine dies, tells the controller why (the signal, the exit code, the "
        "out-of-memory killer) at once; false runs the engine in the launched process "
        "(ipyparallel: IPEngine.enable_nanny).",
    )
    log_level: str = option(
        "INFO", "Log level.", choices=("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
    )
    log_to_file: bool = option(
        True,
        "Also log to log/engine[-<id>]-<pid>.log in the profile, besides stderr. Engines "
        "started by the local launcher have their output in log/ already and skip it.",
    )


@section("cluster")
@dataclasses.dataclass
class ClusterConfig:
    """A managed cluster (minipar.Cluster, python -m minipar.cluster): which launchers
    start the controller and engines, how many, and how long to wait for them."""

    n: int = option(0, "Number of engines; 0 means one per CPU core of this machine.")
    engines: str = option(
        "local",
        "Engine launcher: local, mpi, ssh, sshproxy, pbs, sge, lsf, slurm, htcondor, windowshpc "
        "(in any case, or as ipyparallel's class name or dotted path), or a dotted "
        "pkg.mod.Class. Each reads its [launcher.NAME] section.",
    )
    controller: str = option(
        "local",
        "Controller launcher: local, mpi, ssh, pbs, sge, lsf, slurm, htcondor, windowshpc "
        "(as for engines), or a dotted pkg.mod.Class.",
    )
    controller_ip: str = option("", "Interface the controller listens on; empty keeps controller.ip.")
    controller_location: str = option(
        "", "Address written into connection files; empty keeps controller.location."
    )
    controller_args: List[str] = option([], "Extra command-line arguments for the controller.")
    engine_args: List[str] = option([], "Extra command-line arguments for each engine.")
    log_level: str = option(
        "INFO", "Log level of the cluster's processes.",
        choices=("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"),
    )
    log_to_file: bool = option(
        False,
        "python -m minipar.cluster also logs to log/cluster[-<id>].log in the profile, "
        "besides stderr (as ipyparallel, off unless asked for: --log-to-file).",
    )
    shutdown_atexit: bool = option(
        True, "Stop the cluster when the Python process that started it exits."
    )
    controller_timeout: float = option(
        30.0, "Seconds to wait for the controller to write its connection files."
    )
    engine_timeout: float = option(
        120.0, "Seconds to wait for engines to register before giving up and stopping them."
    )
    stop_timeout: float = option(
        5.0, "Seconds a stopped process gets after SIGTERM before SIGKILL."
    )
    jobs: int = option(
        1,
        "How many jobs (engine sets) the n engines are split into, their sizes differing by at "
        "most one: with a batch launcher, smaller jobs fit a site's queue and array limits and "
        "start as nodes free up.",
    )
    keep_engines: bool = option(
        False,
        "Keep the engines at their number while the cluster runs: a job that ends (walltime, "
        "cancelled from outside) gets a replacement of the same size, launcher and tags, and a "
        "job whose engines drain before its walltime (engine.drain_before) gets one early, so it "
        "can queue while the old one finishes. Needs a process that stays: the Python process "
        "that made the Cluster, or `cluster start` (with --daemonize it stays in the background).",
    )
    max_jobs: int = option(
        0,
        "Most jobs (engine sets) the cluster has at once, replacements included; 0 means no "
        "limit. A split that needs more is refused; a replacement waits for a job to end.",
    )
    max_array_size: int = option(
        0,
        "Most engines in one job (a site's array or job size limit): n is split into more jobs "
        "than cluster.jobs if needed; 0 means no limit.",
    )
    submit_interval: float = option(
        0.0,
        "Seconds at least between two submissions of the cluster's jobs, first ones and "
        "replacements, for sites that limit how fast a user may submit; 0 submits at once.",
    )
    poll_interval: float = option(
        10.0,
        "Seconds between the cluster's questions to a batch system whether its jobs still run "
        "(one squeue/qstat/bjobs/condor_q for all of them): the scheduler answers them for every "
        "user of the site, so a big cluster must not ask often.",
    )


@section("db.sqlite")
@dataclasses.dataclass
class SQLiteDBConfig:
    """Task records in SQLite, used when controller.db is "sqlite". Writes are committed
    in batches by a background thread; a crash loses at most the last fraction of a second."""

    filename: str = option(
        "",
        "Database file; empty means tasks.db in the profile's security dir, and a relative "
        "name is taken from there too. \":memory:\" keeps it in memory.",
    )
    table: str = option(
        "",
        "Table name; empty means one named after the controller session (a new table each "
        "run, but a --reuse restart keeps its predecessor's). Set a fixed name to keep task "
        "history across every controller restart.",
    )


@section("db.mongodb")
@dataclasses.dataclass
class MongoDBConfig:
    """Task records in MongoDB (needs pymongo), used when controller.db is "mongodb"."""

    database: str = option(
        "",
        "Database name; empty means one named after the controller session (a new database "
        "each run). Set a fixed name to keep task history across controller restarts.",
    )
    connection_args: list = option([], "Positional arguments for pymongo.MongoClient.")
    connection_kwargs: Dict[str, Any] = option(
        {}, "Keyword arguments for pymongo.MongoClient, e.g. { host = \"mongo.example\", port = 27017 }."
    )


@section("db.dict")
@dataclasses.dataclass
class DictDBConfig:
    """Task records in the controller's memory, used when controller.db is "dict" (the
    default). The oldest completed records are dropped to stay within the limits; records
    of pending tasks never are."""

    record_limit: int = option(
        10000,
        "Most records kept (0: no limit). A record costs about 2 KB besides its buffers, so "
        "10000 is about 20 MB: enough to fetch the results of a large map from another "
        "client, small enough for a shared login node. ipyparallel kept 1024.",
    )
    size_limit: int = option(
        256 * 1024 * 1024,
        "Most bytes of buffers (arguments and results) kept, in bytes (0: no limit); "
        "268435456 is 256 MiB. ipyparallel kept 1 GiB; use db = \"sqlite\" to keep big "
        "results on disk instead.",
    )
    cull_fraction: float = option(
        0.1,
        "Fraction of the limit dropped at once when a limit is hit, oldest completed first, "
        "so culling happens in batches rather than on every new task.",
    )


# ------------------------------------------------------------------ launchers


@section("launcher.ssh")
@dataclasses.dataclass
class SSHLauncherConfig:
    """Engines (cluster.engines = "ssh" or "sshproxy") and the controller (cluster.controller
    = "ssh") started on other hosts through the system ssh client."""

    engines: Dict[str, Any] = option(
        {},
        "Engines per host: { \"host1\" = 2, \"user@host2\" = { n = 1, engine_args = [...], "
        "engine_cmd = [...] } }.",
    )
    controller_host: str = option("", "[user@]host the controller is started on (cluster.controller = \"ssh\").")
    ssh_command: List[str] = option(["ssh"], "The ssh client and its options.")
    scp_command: List[str] = option(["scp"], "The scp client and its options.")
    remote_python: str = option("python3", "Python interpreter on the remote hosts.")
    remote_pythonpath: str = option(
        "",
        "PYTHONPATH on the remote hosts; empty means the directory this minipar is imported "
        "from (right on a shared file system).",
    )
    remote_profile_dir: str = option(
        "", "Profile directory on the remote hosts; empty means the same path as here."
    )
    to_send: list = option(
        [], "Files copied to each host before starting: [[\"local\", \"remote\"], ...]. Unset: the engine "
        "connection file; set, it replaces that (list the connection file if it should still go), "
        "and [] (a shared file system) copies nothing."
    )
    to_fetch: list = option(
        [], "Files copied back from each host after starting: [[\"remote\", \"local\"], ...]. Unset: the "
        "controller's connection files; set, it replaces them, and [] copies nothing."
    )


@section("launcher.mpi")
@dataclasses.dataclass
class MPILauncherConfig:
    """Engines (cluster.engines = "mpi") or the controller started with mpiexec."""

    mpi_command: List[str] = option(["mpiexec"], "The MPI launcher command.")
    mpi_args: List[str] = option(
        [], "Extra arguments for mpiexec, before the program, e.g. [\"--hostfile\", \"hosts\"]."
    )


@dataclasses.dataclass
class BatchConfig:
    queue: str = option("", "Queue (Slurm: partition) to submit to; empty means the system's default.")
    account: str = option("", "Account or project to charge; empty means none.")
    timelimit: str = option("", "Wall-clock limit as the system writes it (e.g. \"01:00:00\"); empty means none.")
    options: List[str] = option(
        [], "Extra header lines written as they are into the batch script (e.g. \"#SBATCH --mem=4G\")."
    )
    context: Dict[str, Any] = option(
        {}, "Extra template fields: { scratch = \"/scratch/me\" } makes {scratch} usable in templates."
    )


@dataclasses.dataclass
class SlurmConfig(BatchConfig):
    qos: str = option("", "Quality of service (--qos); empty means none.")


@dataclasses.dataclass
class WindowsHPCConfig(BatchConfig):
    scheduler: str = option("", "Head node to submit to (job /scheduler:); empty means the client's default.")


@dataclasses.dataclass
class BatchTemplateConfig:
    batch_template: str = option(
        "", "The batch script as a template with {fields}; empty means the built-in one."
    )
    batch_template_file: str = option(
        "", "File holding the template (relative paths are in the profile dir); wins over batch_template."
    )


BATCH_SYSTEMS = {
    "pbs": "PBS / Torque (qsub, qstat, qdel)",
    "sge": "Grid Engine (qsub, qstat, qdel)",
    "lsf": "LSF (bsub, bjobs, bkill)",
    "slurm": "Slurm (sbatch, squeue, scancel)",
    "htcondor": "HTCondor (condor_submit, condor_q, condor_rm)",
    "windowshpc": "Windows HPC (job submit, job view, job cancel; queue is the node group, account the project)",
}
_BATCH_BASES = {"slurm": SlurmConfig, "windowshpc": WindowsHPCConfig}

for _system, _title in BATCH_SYSTEMS.items():
    # One declaration per system and role, all from the two shapes above.
    _base = _BATCH_BASES.get(_system, BatchConfig)
    section("launcher.%s" % _system)(type(
        "%sLauncherConfig" % _system.upper(), (_base,),
        {"__module__": __name__, "__doc__": "Jobs submitted to %s (cluster.engines or cluster.controller = "
                                            "\"%s\")." % (_title, _system)}))
    for _role in ("engines", "controller"):
        section("launcher.%s.%s" % (_system, _role))(type(
            "%s%sTemplateConfig" % (_system.upper(), _role.capitalize()), (BatchTemplateConfig,),
            {"__module__": __name__, "__doc__": "The batch script that starts the %s on %s." % (_role, _system)}))
