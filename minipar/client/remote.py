"""Functions that run on engines on the client's behalf, and the decorators users apply.

``interactive`` marks a function as if it had been typed at the prompt: it is sent by
value and its globals are the engine's namespace, which is what push and pull need.

Some objects here change into something else when an engine unpickles them:
:class:`Reference` becomes the value of a name in the engine's namespace, and
``_EngineNamespace`` becomes that namespace itself. serialize.py sets the namespace
while it unpacks a request, so neither needs anything from the engine's code.
"""
from __future__ import annotations

import sys
from types import ModuleType

from ..dependency import Dependency, msg_ids  # noqa: F401 - part of this module's public names
from ..error import UnmetDependency
from ..serialize import _namespace


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


# --- dependencies -------------------------------------------------------------


class dependent:
    """A function that runs only where its check passes; the check runs on the engine.

    A class, not a closure, so it pickles by reference and the wrapped functions travel
    as its state.
    """

    def __init__(self, _wrapped_f, _wrapped_df, *dargs, **dkwargs):
        self.f = _wrapped_f
        self.df = _wrapped_df
        self.dargs = dargs
        self.dkwargs = dkwargs
        self.__name__ = getattr(_wrapped_f, "__name__", "f")
        self.__doc__ = getattr(_wrapped_f, "__doc__", None)

    def check_dependency(self):
        if self.df(*self.dargs, **self.dkwargs) is False:
            raise UnmetDependency("%s: dependency %s(...) is not met on this engine"
                                  % (self.__name__, getattr(self.df, "__name__", "check")))

    def __call__(self, *args, **kwargs):
        self.check_dependency()
        return self.f(*args, **kwargs)

    def __repr__(self):
        return "<dependent %s on %s>" % (self.__name__, getattr(self.df, "__name__", self.df))


class depend:
    """Decorator: ``@depend(check, *args, **kwargs)`` runs ``check(*args, **kwargs)`` on the
    engine before the task; if it returns False or raises UnmetDependency the task fails
    there with UnmetDependency (which the scheduler uses to try another engine, and to wait,
    up to the task's timeout, for a new one when every engine has refused it)."""

    def __init__(self, _wrapped_f, *args, **kwargs):
        self.f = _wrapped_f
        self.args = args
        self.kwargs = kwargs

    def __call__(self, f):
        return dependent(f, self.f, *self.args, **self.kwargs)


def _require(ns, modules, objects, f):
    """Import modules and define objects on the engine; the names are bound in the engine
    namespace and, without overriding anything, in the task function's own globals (a
    function from an importable module doesn't see the engine namespace)."""
    while isinstance(f, dependent):
        f = f.f
    scopes = [ns]
    g = getattr(f, "__globals__", None)
    if g is not None and g is not ns:
        scopes.append(g)
    bound = {}
    for name in modules:
        try:
            bound[name.partition(".")[0]] = __import__(name)
        except ImportError as e:
            raise UnmetDependency("module %r cannot be imported on this engine (%s)" % (name, e)) from None
    bound.update(objects)
    ns.update(bound)
    for scope in scopes[1:]:
        for key, value in bound.items():
            scope.setdefault(key, value)
    return True


def require(*objects, **mapping):
    """Decorator: make modules and objects available where the function runs.

    Modules (by name or module object) are imported on the engine before the call; a
    missing one fails the task with UnmetDependency. Functions given positionally are
    sent along and defined under their ``__name__``; other objects go by keyword.
    """
    modules = []
    for obj in objects:
        if isinstance(obj, ModuleType):
            obj = obj.__name__
        if isinstance(obj, str):
            modules.append(obj)
        elif hasattr(obj, "__name__"):
            mapping[obj.__name__] = obj
        else:
            raise TypeError("require() takes modules, module names and named functions; pass other "
                            "objects by keyword (name=value), not %s" % type(obj).__name__)

    def decorate(f):
        return dependent(f, _require, _EngineNamespace(), tuple(modules), dict(mapping), f)
    return decorate


# --- remote and parallel functions ----------------------------------------------


def _name(f) -> str:
    return getattr(f, "__name__", None) or getattr(f, "name", None) or str(f)


class RemoteFunction:
    """A function whose calls run on a view: ``f(*args)`` is ``view.apply(f, *args)`` with
    this function's block flag and view flags."""

    def __init__(self, view, f, block=None, **flags):
        self.view = view
        self.func = f
        self.block = block
        self.flags = flags
        self.__name__ = _name(f)
        self.__doc__ = getattr(f, "__doc__", None)
        self.__wrapped__ = f

    def __call__(self, *args, **kwargs):
        return self.view._apply(self.func, args, kwargs, block=self.block, **self.flags)

    def __repr__(self):
        return "<%s %s on %r>" % (type(self).__name__, self.__name__, self.view)


class ParallelFunction(RemoteFunction):
    """A function called on parts of sequences: ``f(seq)`` runs ``f`` on one contiguous part
    per engine (per ``chunksize`` items on a load-balanced view) and joins the results;
    ``f.map(seq)`` calls ``f`` on each item."""

    def __init__(self, view, f, dist="b", block=None, chunksize=None, ordered=True,
                 return_exceptions=False, **flags):
        if dist != "b":
            raise ValueError("only dist='b' (contiguous parts) is supported, not %r" % (dist,))
        super().__init__(view, f, block=block, **flags)
        self.chunksize = chunksize
        self.ordered = ordered
        self.return_exceptions = return_exceptions

    def _run(self, sequences, mapping):
        return self.view._map(self.func, sequences, mapping=mapping, block=self.block,
                              chunksize=self.chunksize, ordered=self.ordered,
                              return_exceptions=self.return_exceptions, **self.flags)

    def __call__(self, *sequences):
        return self._run(sequences, mapping=False)

    def map(self, *sequences):
        return self._run(sequences, mapping=True)


def remote(view, block=None, **flags):
    """Decorator: calls of the function run on ``view`` (``@remote(rc[:], block=True)``)."""
    def decorate(f):
        return RemoteFunction(view, f, block=block, **flags)
    return decorate


def parallel(view, dist="b", block=None, ordered=True, **flags):
    """Decorator: the function is called on parts of its sequence arguments, on ``view``."""
    def decorate(f):
        return ParallelFunction(view, f, dist=dist, block=block, ordered=ordered, **flags)
    return decorate
