"""Settings on a command line: ``--section.key=value`` for any of them, short flags for some.

Every program takes any setting as ``--section.key=value`` (``split_overrides`` pulls those
out before argparse sees the rest). The settings people type most also have a short flag
(``--ip``, ``--reuse``, ``--nodb``, ``-n``), declared with the setting in builtin_sections.py
(``option(..., flag=Flag(...))``): a program adds the flags of its section with ``add_flags``
and reads what was given back with ``flag_overrides``, so a flag, its help and the setting it
sets are written once. A flag's value goes to ``load_config`` as any override does, so it is
checked, and named in errors, as the setting it stands for.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from ..error import ConfigError
from .load import COMMAND_LINE
from .schema import REGISTRY, Flag, setting
from .types import FALSE_WORDS, TRUE_WORDS, FieldType, toml_value

_ARGPARSE_TYPES = {"int": int, "float": float}
"""Number flags are parsed by argparse (``--id x`` is a usage error, as it always was); any
other value stays text, which ``load_config`` coerces (``--tags a,b`` becomes a list)."""


def split_overrides(argv: Sequence[str]) -> Tuple[List[str], Dict[str, str]]:
    """Pull ``--section.key=value`` / ``--section.key value`` out of argv for argparse.

    Only dotted options whose first part is a registered section root are taken,
    so ``--ip`` and friends stay for argparse; ``--`` ends option parsing. Dashes in
    the name count as underscores (``--controller.heartbeat-period``). A bool may be
    given bare (``--controller.reuse``) and then takes the next argument only if it
    is a yes/no word. Keys aren't checked here: ``load_config`` reports unknown ones.
    """
    roots = {name.split(".")[0] for name in REGISTRY}
    rest: List[str] = []
    overrides: Dict[str, str] = {}
    args = list(argv)
    i = 0
    while i < len(args):
        arg = args[i]
        i += 1
        if arg == "--":
            rest.extend(args[i - 1:])
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
            sec = REGISTRY.get(owner)
            is_bool = sec is not None and leaf in sec.types and sec.types[leaf].base == "bool"
            if is_bool:
                if i < len(args) and args[i].lower() in TRUE_WORDS + FALSE_WORDS:
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


def override_arg(key: str, value: Any) -> str:
    """``--section.key=value`` for a child process's command line: strings as given (they
    came from a command line), anything else as TOML, which the child coerces back."""
    return "--%s=%s" % (key, value if isinstance(value, str) else toml_value(value))


# ------------------------------------------------------------------------- short flags


def flag_keys(section_name: str) -> List[str]:
    """The ``section.key`` of every setting of a section that declares a flag, in declaration order."""
    sec = REGISTRY[section_name]
    return ["%s.%s" % (section_name, f.name) for f in dataclasses.fields(sec.cls) if f.metadata.get("flags")]


def declared_flags(key: str) -> Tuple[FieldType, Tuple[Flag, ...]]:
    """A setting's type and the flags declared for it (none: an empty tuple)."""
    sec, leaf = setting(key)
    return sec.types[leaf], sec.field(leaf).metadata.get("flags", ())


def add_flags(parser, keys: Sequence[str], help: Optional[Mapping[str, str]] = None) -> None:
    """Add the flags declared for these settings to an argparse parser (or group), in order.

    ``help`` maps a flag name to the help this program gives it instead of the declared one
    (the doctor's ``--ssh`` checks a tunnel rather than making one). A flag's default is None,
    so a flag not given is no override; a bool one with a ``--no-`` twin gets a mutually
    exclusive group, as ``--log-to-file | --no-log-to-file``.
    """
    help = help or {}
    for key in keys:
        t, flags = declared_flags(key)
        for flag in flags:
            _add_flag(parser, flag, t, help)


def _add_flag(parser, flag: Flag, t: FieldType, help: Mapping[str, str]) -> None:
    text = next((help[name] for name in flag.names if name in help), flag.help)
    if flag.const is not None:
        parser.add_argument(*flag.names, dest=flag.dest, action="store_const", const=flag.const, default=None,
                            help=text)
    elif t.base == "bool":
        target = parser.add_mutually_exclusive_group() if flag.negative_name else parser
        target.add_argument(*flag.names, dest=flag.dest, action="store_true", default=None, help=text)
        if flag.negative_name:
            target.add_argument(flag.negative_name, dest=flag.dest, action="store_false", default=None,
                                help=help.get(flag.negative_name, flag.negative_help))
    else:
        parser.add_argument(*flag.names, dest=flag.dest, type=_ARGPARSE_TYPES.get(t.base), metavar=flag.metavar,
                            default=None, help=text)


def flag_overrides(args, keys: Sequence[str]) -> Dict[str, Any]:
    """``{"section.key": value}`` for the flags of these settings given on the command line.

    Of two flags of one setting given together, the later declared wins (``--nodb`` over
    ``--db``). Flags the parser does not have count as not given, so one list of keys serves
    subcommands that add only some of them.
    """
    overrides: Dict[str, Any] = {}
    for key in keys:
        for flag in declared_flags(key)[1]:
            value = getattr(args, flag.dest, None)
            if value is not None:
                overrides[key] = value
    return overrides
