"""Declaring settings: ``option()`` for a field, ``Flag`` for its command-line flag,
``@section`` to register a dataclass as a table of ``minipar.toml``.

The registry is the one place that knows every setting: loading, the command line, the
rendered profile and error hints all read it. Conflicts are refused at declaration (at
import), so that a dotted path in a file or on the command line always has exactly one
meaning, and a flag exactly one setting.

Modules that declare sections (cluster, launchers) must be imported before ``load_config``
runs; a table for a section nobody has registered yet is an error.
"""
from __future__ import annotations

import copy
import dataclasses
import difflib
import functools
import re
import textwrap
from typing import Any, Dict, List, Optional, Sequence, Tuple

from .types import FieldType, Mismatch, check, describe, parse_annotation


class Flag:
    """A short command-line flag for one setting (``--ip`` for controller.ip), declared with it.

    A flag takes the setting's value as its argument; for a bool setting it is a switch, which
    with ``negative_help`` comes with a ``--no-`` twin that turns the setting off. A flag with
    ``const`` takes no argument and sets the setting to that value (``--nodb`` sets
    controller.db = "nodb"). ``help`` is the one-line text of ``--help``; a program may word
    it for its own use when it adds the flag (see ``command_line.add_flags``).
    """

    __slots__ = ("names", "help", "metavar", "const", "negative_help")

    def __init__(self, *names: str, help: str, metavar: Optional[str] = None, const: Any = None,
                 negative_help: str = ""):
        if not names or not all(n.startswith("-") and n.strip("-") for n in names):
            raise ValueError("flag names start with '-', like '--ip' or '-n': %r" % (names,))
        self.names = names
        self.help = help
        self.metavar = metavar
        self.const = const
        self.negative_help = negative_help

    @property
    def dest(self) -> str:
        """The attribute argparse stores the flag's value in (as argparse derives it)."""
        long_names = [n for n in self.names if n.startswith("--")]
        return (long_names or list(self.names))[0].lstrip("-").replace("-", "_")

    @property
    def negative_name(self) -> str:
        """``--no-NAME``, the switch that turns a bool setting off; "" if there is none."""
        if not self.negative_help:
            return ""
        return "--no-" + self.dest.replace("_", "-")

    def all_names(self) -> Tuple[str, ...]:
        return self.names + ((self.negative_name,) if self.negative_name else ())

    def __repr__(self) -> str:
        return "Flag(%s)" % ", ".join(repr(n) for n in self.names)


def option(default: Any, help: str, choices: Optional[Sequence[str]] = None, flag: Any = None) -> Any:
    """A field with a default and the help text shown in the rendered profile.

    Lists and dicts get a fresh deep copy per instance, so no two configs share one.
    ``choices`` restricts a string option; a typo then fails at load with a close match.
    ``flag`` is the setting's short command-line flag (a ``Flag``, or a tuple of them).
    """
    metadata: Dict[str, Any] = {"help": help}
    if choices is not None:
        metadata["choices"] = tuple(choices)
    if flag is not None:
        metadata["flags"] = (flag,) if isinstance(flag, Flag) else tuple(flag)
    if isinstance(default, (list, dict)):
        return dataclasses.field(
            default_factory=functools.partial(copy.deepcopy, default), metadata=metadata
        )
    return dataclasses.field(default=default, metadata=metadata)


class SectionInfo:
    """What the registry knows about one section."""

    __slots__ = ("name", "cls", "types", "doc")

    def __init__(self, name: str, cls: type, types: Dict[str, FieldType], doc: str):
        self.name = name
        self.cls = cls
        self.types = types
        self.doc = doc

    def field(self, key: str) -> dataclasses.Field:
        return self.cls.__dataclass_fields__[key]


REGISTRY: Dict[str, SectionInfo] = {}
"""Section name -> SectionInfo, in declaration order (the order of the rendered file)."""

_SECTION_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")


def default_of(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return f.default_factory()  # type: ignore[misc]
    return dataclasses.MISSING


def section(name: str):
    """Register a dataclass (or a plain class, made one) as section ``[name]``."""
    if not _SECTION_NAME.fullmatch(name):
        raise ValueError("bad section name %r: use dotted identifiers like 'launcher.slurm'" % name)

    def register(cls: type) -> type:
        own_doc = cls.__dict__.get("__doc__") or ""
        if "__dataclass_fields__" not in cls.__dict__:
            cls = dataclasses.dataclass(cls)
        if own_doc.startswith(cls.__name__ + "("):  # dataclass's generated signature
            own_doc = ""
        types = {f.name: _checked_field(name, f) for f in dataclasses.fields(cls)}
        _check_flags(name, cls)
        _check_place(name, cls, types)
        REGISTRY[name] = SectionInfo(name, cls, types, textwrap.dedent(own_doc).strip())
        return cls

    return register


def _checked_field(name: str, f: dataclasses.Field) -> FieldType:
    """The field's type, once its declaration is known to be complete and its default valid."""
    where = "%s.%s" % (name, f.name)
    if "help" not in f.metadata:
        raise TypeError("%s: declare it with option(default, help)" % where)
    try:
        t = parse_annotation(f.type)
    except TypeError as e:
        raise TypeError("%s: %s" % (where, e)) from None
    default = default_of(f)
    if default is dataclasses.MISSING:
        raise TypeError("%s: needs a default" % where)
    try:
        check(default, t)
        check_choice(default, f)
    except Mismatch as e:
        raise TypeError("%s: bad default: %s" % (where, e)) from None
    for flag in f.metadata.get("flags", ()):
        if not isinstance(flag, Flag):
            raise TypeError("%s: flag=%r: give a Flag or a tuple of them" % (where, flag))
        if flag.negative_help and t.base != "bool":
            raise TypeError("%s: %s: only a bool setting has a --no- flag" % (where, flag.names[0]))
        if flag.const is not None:
            try:
                check(flag.const, t)
                check_choice(flag.const, f)
            except Mismatch as e:
                raise TypeError("%s: %s: bad const: %s" % (where, flag.names[0], e)) from None
    return t


def _check_flags(name: str, cls: type) -> None:
    """No two settings of a section may share a flag name, nor the attribute argparse keeps
    its value in (a program reads flags back by that attribute)."""
    owners: Dict[str, str] = {}
    for f in dataclasses.fields(cls):
        for flag in f.metadata.get("flags", ()):
            for used in flag.all_names() + (flag.dest,):
                owner = owners.setdefault(used, f.name)
                if owner != f.name:
                    raise ValueError("%s.%s: flag %s clashes with %s.%s's" % (name, f.name, used, name, owner))


def _check_place(name: str, cls: type, types: Dict[str, FieldType]) -> None:
    """A section may not be declared twice, nor clash with a setting of its parent or children."""
    old = REGISTRY.get(name)
    if old is not None and (old.cls.__module__, old.cls.__qualname__) != (cls.__module__, cls.__qualname__):
        raise ValueError(
            "section [%s] is already declared by %s.%s" % (name, old.cls.__module__, old.cls.__qualname__)
        )
    for other in REGISTRY.values():
        if other.name.startswith(name + "."):
            child = other.name[len(name) + 1:].split(".")[0]
            if child in types:
                raise ValueError("%s.%s: clashes with section [%s]" % (name, child, other.name))
        elif name.startswith(other.name + "."):
            child = name[len(other.name) + 1:].split(".")[0]
            if child in other.types:
                raise ValueError("section [%s] clashes with setting %s.%s" % (name, other.name, child))


def sections() -> Dict[str, type]:
    """Registered sections, in declaration order (the order of the rendered file)."""
    return {name: sec.cls for name, sec in REGISTRY.items()}


def check_choice(value: Any, f: dataclasses.Field) -> None:
    """Raise Mismatch, with the closest choice, if the field has choices and value isn't one."""
    choices = f.metadata.get("choices")
    if choices is None or value in choices:
        return
    folded = {c.lower(): c for c in choices}
    close = difflib.get_close_matches(str(value).lower(), list(folded), n=1)
    hint = "; did you mean %r?" % folded[close[0]] if close else ""
    raise Mismatch(
        "expected one of %s, got %s%s"
        % (", ".join(repr(c) for c in choices), describe(value), hint)
    )


def setting(key: str) -> Tuple[SectionInfo, str]:
    """(section, leaf) of a declared ``section.key``; KeyError naming a close match if undeclared."""
    owner, _, leaf = key.rpartition(".")
    sec = REGISTRY.get(owner)
    if sec is None or leaf not in sec.types:
        raise KeyError("unknown setting %r%s" % (key, suggest(key)))
    return sec, leaf


# ------------------------------------------------------------ hints for unknown names


def children(path: str) -> List[str]:
    """Registered sections under a dotted prefix (``db`` -> ``db.sqlite``, ...)."""
    return [n for n in REGISTRY if n.startswith(path + ".")]


def _all_keys() -> List[str]:
    return ["%s.%s" % (n, k) for n, sec in REGISTRY.items() for k in sec.types]


def suggest(path: str, is_section: bool = False) -> str:
    """A '; did you mean ...?' hint for an unknown section or key, or ''."""
    if is_section:
        close = difflib.get_close_matches(path, list(REGISTRY), n=1)
    else:
        keys = _all_keys()
        owner, _, leaf = path.rpartition(".")
        # a bare or misplaced key ("ip", "engine.reuse"): point at where it lives
        close = [k for k in keys if k.rpartition(".")[2] == leaf][:3]
        if not close and owner in REGISTRY:
            close = [
                "%s.%s" % (owner, k)
                for k in difflib.get_close_matches(leaf, list(REGISTRY[owner].types), n=1)
            ]
        elif not close:
            close = difflib.get_close_matches(path, keys, n=1)
    if close:
        return "; did you mean %s?" % " or ".join(repr(c) for c in close)
    return ""


def unknown_problem(path: str, is_table: bool = False) -> str:
    """What to say about a path that names no setting (or, as a table, no section)."""
    owner = path.rpartition(".")[0]
    if owner in REGISTRY and not is_table:
        return "unknown setting" + (
            suggest(path) or "; [%s] has: %s" % (owner, ", ".join(REGISTRY[owner].types))
        )
    if is_table:
        return "unknown section" + (
            suggest(path, is_section=True) or "; known sections: %s" % ", ".join(REGISTRY)
        )
    return "unknown setting" + (suggest(path) or "; settings are named section.key")
