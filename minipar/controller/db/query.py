"""One query language for every backend: the part of MongoDB's that task records need.

A query is a dict whose conditions must all hold::

    {"engine_uuid": u}                         equality; None matches an unset key
    {"completed": {"$gte": t0, "$lt": t1}}     several operators on one key, all must hold
    {"client_uuid": c, "completed": None}      several keys, all must hold
    {"result_content.status": "error"}         a dotted path into a dict-valued key

Operators: ``$eq $ne $lt $lte $gt $gte $in $nin $exists``. :func:`parse` checks a query
against the record schema (:mod:`records`) before any backend sees it, which is what keeps
the backends' answers identical: a comparison must compare like with like (dates with
datetimes, strings with strings; ``$lt`` and friends never take None), so no backend's own
rules for mixed types (SQLite's, BSON's) ever come into play. ``$exists`` asks whether a
key is set to something other than None. Inside dict-valued keys anything goes, and the
in-memory rules below are the reference; MongoDB applies its own rules to lists there
(a list equals any of its items).

:func:`matcher` is the pure-Python evaluation, used by DictDB and by SQLite for the
conditions SQL can't express (dict-valued keys).
"""
from __future__ import annotations

import difflib
from datetime import datetime

from .records import BYTES, DATE, JSON, KINDS, STR, as_utc, unknown_keys

COMPARISONS = ("$lt", "$lte", "$gt", "$gte")
OPERATORS = ("$eq", "$ne", "$in", "$nin", "$exists") + COMPARISONS


class Cond:
    """One checked condition: ``key`` (a record key), ``path`` (sub-keys inside a dict
    value, usually empty), ``op`` and ``value`` (dates already in UTC)."""

    __slots__ = ("key", "path", "op", "value")

    def __init__(self, key, path, op, value):
        self.key = key
        self.path = path
        self.op = op
        self.value = value

    @property
    def kind(self):
        return KINDS[self.key] if not self.path else JSON

    def __repr__(self):
        return "Cond(%s %s %r)" % (".".join((self.key,) + self.path), self.op, self.value)


def parse(query) -> list:
    """The conditions of a query, checked; ValueError naming the culprit otherwise."""
    if query is None:
        return []
    if not isinstance(query, dict):
        raise ValueError("a query is a dict like {'completed': None}, got %r" % (query,))
    conds = []
    for name, spec in query.items():
        if not isinstance(name, str):
            raise ValueError("query keys are record keys (strings), got %r" % (name,))
        if name.startswith("$"):
            raise _bad_operator(name, None)
        key, _, rest = name.partition(".")
        if key not in KINDS:
            raise unknown_keys([key], "query")
        path = tuple(rest.split(".")) if rest else ()
        if path and KINDS[key] != JSON:
            raise ValueError("query key %r: only dict-valued keys (%s) have sub-keys"
                             % (name, ", ".join(k for k, kind in KINDS.items() if kind == JSON)))
        kind = KINDS[key] if not path else JSON
        if isinstance(spec, dict) and any(isinstance(k, str) and k.startswith("$") for k in spec):
            for op, value in spec.items():
                if op not in OPERATORS:
                    raise _bad_operator(op, name)
                conds.append(Cond(key, path, op, _check(name, kind, op, value)))
        else:
            conds.append(Cond(key, path, "$eq", _check(name, kind, "$eq", spec)))
    return conds


def _bad_operator(op, name) -> ValueError:
    close = difflib.get_close_matches(str(op), OPERATORS, n=1)
    where = " on %r" % name if name else ""
    if isinstance(op, str) and not op.startswith("$"):
        return ValueError("query on %r mixes operators and sub-keys (%r); use either "
                          "{'$op': value, ...} or a dotted key" % (name, op))
    return ValueError("unknown query operator %r%s%s (supported: %s)" % (
        op, where, "; did you mean %r?" % close[0] if close else "", ", ".join(OPERATORS)))


_KIND_WANTS = {STR: "a string", DATE: "a datetime", JSON: "a number or a string"}


def _check(name, kind, op, value):
    if op == "$exists":
        if not isinstance(value, bool):
            raise ValueError("query on %r: $exists takes true or false, got %r" % (name, value))
        return value
    if op in ("$in", "$nin"):
        if not isinstance(value, (list, tuple, set, frozenset)):
            raise ValueError("query on %r: %s takes a list, got %r" % (name, op, value))
        return [_check(name, kind, "$eq", v) for v in value]
    if kind == BYTES:
        if op in ("$eq", "$ne") and value is None:
            return None
        raise ValueError("query on %r: buffers can only be tested for None or with $exists" % name)
    if op in COMPARISONS:
        ok = (kind == STR and isinstance(value, str)
              or kind == DATE and isinstance(value, datetime)
              or kind == JSON and isinstance(value, (int, float, str)) and not isinstance(value, bool))
        if not ok:
            raise ValueError("query on %r: %s needs %s, got %r" % (name, op, _KIND_WANTS[kind], value))
    elif value is not None:
        if kind == STR and not isinstance(value, str):
            raise ValueError("query on %r: %s needs a string or None, got %r" % (name, op, value))
        if kind == DATE and not isinstance(value, datetime):
            raise ValueError("query on %r: %s needs a datetime or None, got %r" % (name, op, value))
    if kind == DATE and value is not None:
        return as_utc(value)
    return value


# ---------------------------------------------------------------- evaluation


def same(a, b) -> bool:
    """Equality as BSON has it for the values records hold: True is not 1."""
    if a is None or b is None:
        return a is b
    if type(a) is bool or type(b) is bool:
        return type(a) is type(b) and a == b
    return a == b


def _comparable(stored, wanted) -> bool:
    if isinstance(wanted, str):
        return type(stored) is str
    if isinstance(wanted, datetime):
        return isinstance(stored, datetime)
    return type(stored) in (int, float)


def _getter(cond):
    key, path = cond.key, cond.path
    if cond.kind == DATE:
        def get(rec):
            v = rec.get(key)
            if v is not None and v.tzinfo is None:
                v = as_utc(v)
            return v
    elif path:
        def get(rec):
            v = rec.get(key)
            for p in path:
                v = v.get(p) if isinstance(v, dict) else None
            return v
    else:
        def get(rec):
            return rec.get(key)
    return get


def _test(cond):
    op, x = cond.op, cond.value
    if op == "$eq":
        return lambda v: same(v, x)
    if op == "$ne":
        return lambda v: not same(v, x)
    if op == "$in":
        return lambda v: any(same(v, y) for y in x)
    if op == "$nin":
        return lambda v: not any(same(v, y) for y in x)
    if op == "$exists":
        return lambda v: (v is not None) is x
    if op == "$lt":
        return lambda v: v is not None and _comparable(v, x) and v < x
    if op == "$lte":
        return lambda v: v is not None and _comparable(v, x) and v <= x
    if op == "$gt":
        return lambda v: v is not None and _comparable(v, x) and v > x
    return lambda v: v is not None and _comparable(v, x) and v >= x


def matcher(conds):
    """A predicate on stored records for checked conditions (all must hold)."""
    pairs = [(_getter(c), _test(c)) for c in conds]
    if not pairs:
        return lambda rec: True
    if len(pairs) == 1:
        (get, test), = pairs
        return lambda rec: test(get(rec))
    return lambda rec: all(test(get(rec)) for get, test in pairs)
