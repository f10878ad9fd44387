"""The types a setting may have, and turning values into them and back into TOML.

A field's type is read from the *text* of its annotation, never evaluated: ``str``, ``int``,
``float``, ``bool``, ``list``, ``list[T]`` / ``List[T]`` with ``T`` one of the scalars, and
``dict`` / ``Dict[...]`` (any TOML table). Reading text means ``list[int]`` works under
``from __future__ import annotations`` on Python 3.8, where evaluating it
(``typing.get_type_hints``) would fail, and that a declaration with an unsupported type
fails at import time, not at load time.

Values arrive two ways: typed, from a TOML file or Python keyword arguments (``check``), or
as text from a command line (``coerce``). Both raise ``Mismatch`` with the problem only;
the caller knows the source and key and turns it into a ConfigError.
"""
from __future__ import annotations

import copy
import json
import math
import os
import re
from typing import Any, Optional

try:
    import tomllib
except ImportError:  # Python < 3.11
    import tomli as tomllib

SCALARS = ("str", "int", "float", "bool")
_WHAT = {
    "str": "a string",
    "int": "an integer",
    "float": "a number",
    "bool": "true or false",
    "list": "a list",
    "dict": "a table",
}
_PLURAL = {"str": "strings", "int": "integers", "float": "numbers", "bool": "booleans"}
TRUE_WORDS = ("true", "yes", "on", "1")
FALSE_WORDS = ("false", "no", "off", "0")


class FieldType:
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


def parse_annotation(annotation: Any) -> FieldType:
    """The FieldType an annotation (a type or its text) names; TypeError if unsupported."""
    text = annotation.__name__ if isinstance(annotation, type) else str(annotation)
    norm = text.replace(" ", "").replace("typing.", "")
    norm = re.sub(r"\bList\b", "list", re.sub(r"\bDict\b", "dict", norm))
    m = _ANNOTATION.fullmatch(norm)
    if m:
        base, inner = m.groups()
        if inner is None:
            return FieldType(base)
        if base == "list" and inner in SCALARS:
            return FieldType("list", inner)
        if base == "dict":
            return FieldType("dict")
    raise TypeError(
        "unsupported option type %r: use str, int, float, bool, list, "
        "list[str|int|float|bool] or dict" % text
    )


class Mismatch(Exception):
    """A value that doesn't fit a field; the caller adds source and key."""


def describe(value: Any) -> str:
    """A value as an error message shows it: its TOML kind and a shortened text."""
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
        return toml_value(value)
    except TypeError:
        return repr(value)


def check(value: Any, t: FieldType) -> Any:
    """Accept a typed value (from TOML or Python) for a field, or raise Mismatch.

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
            return _each_item(value, t, value, check)
    elif base == "dict":
        if isinstance(value, dict):
            return copy.deepcopy(value)
    raise Mismatch("expected %s, got %s" % (t.what(), describe(value)))


def _each_item(items, t, whole, convert) -> list:
    """convert(item, item type) for each item of a typed list; a failure names the item."""
    item_type = FieldType(t.item)
    out = []
    for i, item in enumerate(items):
        try:
            out.append(convert(item, item_type))
        except Mismatch:
            raise Mismatch(_bad_item(t, whole, i, item)) from None
    return out


def _bad_item(t: FieldType, whole: Any, index: int, item: Any) -> str:
    return "expected %s, got %s (item %d is %s)" % (
        t.what(), describe(whole), index, describe(item)
    )


def coerce(text: str, t: FieldType) -> Any:
    """Turn a command-line string into a value for a field, or raise Mismatch."""
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
        if stripped.lower() in TRUE_WORDS:
            return True
        if stripped.lower() in FALSE_WORDS:
            return False
        raise Mismatch("expected true or false (or yes/no, 1/0), got %s" % describe(text))
    elif base == "list":
        if stripped.startswith("["):
            return check(_parse_toml_value(text, t), t)
        items = [p.strip() for p in stripped.split(",") if p.strip()]
        if t.item is None:
            return items
        return _each_item(items, t, text, coerce)
    elif base == "dict":
        if stripped.startswith("{"):
            return check(_parse_toml_value(text, t), t)
        raise Mismatch(
            "expected a table like {name = \"value\", n = 1}, got %s" % describe(text)
        )
    raise Mismatch("expected %s, got %s" % (t.what(), describe(text)))


def _parse_toml_value(text: str, t: FieldType) -> Any:
    try:
        doc = tomllib.loads("v = " + text)
    except tomllib.TOMLDecodeError as e:
        raise Mismatch(
            "expected %s, got %s (not valid TOML: %s)" % (t.what(), describe(text), e)
        ) from None
    if list(doc) != ["v"]:
        raise Mismatch("expected %s, got %s" % (t.what(), describe(text)))
    return doc["v"]


_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def toml_value(value: Any) -> str:
    """A Python value as a TOML value (inline form): for the rendered profile, error
    messages and settings passed on to a child process's command line."""
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
        return "[%s]" % ", ".join(toml_value(v) for v in value)
    if isinstance(value, dict):
        if not value:
            return "{}"
        return "{ %s }" % ", ".join(
            "%s = %s" % (_toml_key(str(k)), toml_value(v)) for k, v in value.items()
        )
    raise TypeError("can't write %s as TOML" % describe(value))


def _toml_key(key: str) -> str:
    return key if _BARE_KEY.fullmatch(key) else toml_value(key)
