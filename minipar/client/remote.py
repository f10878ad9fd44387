"""Functions that run on engines on the client's behalf, and the decorators users apply.

``interactive`` marks a function as if it had been typed at the prompt: it is sent by
value and its globals are the engine's namespace, which is what push and pull need.
"""
from __future__ import annotations


def interactive(f):
    """Run ``f`` with the engine's namespace as its globals (ipyparallel's @interactive)."""
    f.__module__ = "__main__"
    return f


@interactive
def _push(ns):
    globals().update(ns)


@interactive
def _pull(keys):
    g = globals()
    if isinstance(keys, str):
        if keys not in g:
            raise NameError("name %r is not defined on this engine" % keys)
        return g[keys]
    missing = [k for k in keys if k not in g]
    if missing:
        raise NameError("name(s) %s not defined on this engine" % ", ".join(repr(k) for k in missing))
    return [g[k] for k in keys]


@interactive
def _map_chunk(f, *columns):
    return list(map(f, *columns))
