"""What runs on an engine on a client's behalf: the functions behind push, pull, map,
sync_imports and %px, and the objects that become something else when an engine unpickles
them. Both roles import it: a client sends these, an engine resolves them.

``interactive`` marks a function as if it had been typed at the prompt: it is sent by
value and its globals are the engine's namespace, which is what push and pull need.
:class:`Reference` becomes the value of a name in the engine's namespace, and
``_EngineNamespace`` becomes that namespace itself. serialize.py sets the namespace while it
unpacks a request, so neither needs anything from the engine's code.
"""
from __future__ import annotations

import sys

from .serialize import _namespace


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


@interactive
def _import(name, fromlist, level):
    """The engine's half of sync_imports: the same import, bound in its namespace."""
    g = globals()
    module = __import__(name, g, None, fromlist or (), level)
    if not fromlist:
        g[name.partition(".")[0]] = module
        return
    for key in fromlist:
        if key == "*":
            public = getattr(module, "__all__", None)
            if public is None:
                public = [k for k in vars(module) if not k.startswith("_")]
            for k in public:
                g[k] = getattr(module, k)
        else:
            g[key] = getattr(module, key)


@interactive
def _execute_cell(code):
    """Run a cell like a prompt does: the repr of a last bare expression is its result."""
    import ast
    tree = ast.parse(code, "<px>", "exec")
    last = None
    if tree.body and isinstance(tree.body[-1], ast.Expr):
        last = ast.Expression(tree.body.pop().value)
    exec(compile(tree, "<px>", "exec"), globals())
    if last is not None:
        value = eval(compile(last, "<px>", "eval"), globals())
        if value is not None:
            return repr(value)
    return None


# --- resolved on the engine ---------------------------------------------------


def _engine_namespace() -> dict:
    ns = _namespace.get()
    return ns if ns is not None else sys.modules["__main__"].__dict__


class _EngineNamespace:
    """Stands for the engine's user namespace; unpickles as that dict."""

    def __reduce__(self):
        return _engine_namespace, ()


def _resolve_reference(name):
    return eval(name, _engine_namespace())


class Reference:
    """An argument that is the value of ``name`` in the engine's namespace.

    ``view.apply(f, Reference('a'))`` calls ``f(a)`` with each engine's own ``a``, without
    sending its value; the name is evaluated there as an expression, so ``'a.b'`` and
    ``'a[0]'`` work too. A missing name fails the task with NameError.
    """

    def __init__(self, name):
        if not isinstance(name, str):
            raise TypeError("a Reference names a variable as a str, not %s" % type(name).__name__)
        self.name = name

    def __repr__(self):
        return "<Reference: %r>" % self.name

    def get_object(self, namespace=None):
        return eval(self.name, {} if namespace is None else namespace)

    def __reduce__(self):
        return _resolve_reference, (self.name,)
