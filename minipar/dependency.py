"""Dependencies: between tasks, and of a task on the engine it runs on.

One implementation serves both roles. A client builds a Dependency for ``after``/``follow``
(ipyparallel's class, with ``check`` and ``unreachable``) and sends it in request metadata
as :meth:`Dependency.as_dict` or a plain list; the controller's scheduler rebuilds it from
there (:meth:`Dependency.from_metadata`) and asks its :meth:`state` as tasks finish.

``@depend`` and ``@require`` wrap a function in :class:`dependent`, whose check runs on the
engine before the task: a failed check raises UnmetDependency, and the scheduler tries
another engine.
"""
from __future__ import annotations

from types import ModuleType

from .engine_calls import _EngineNamespace
from .error import UnmetDependency

MET, UNMET, IMPOSSIBLE = "met", "unmet", "impossible"


def msg_ids(jobs) -> list:
    """msg_ids from a msg_id, an AsyncResult, or any nesting of lists/sets of them."""
    if jobs is None:
        return []
    if isinstance(jobs, str):
        return [jobs]
    ids = getattr(jobs, "msg_ids", None)
    if ids is not None:
        return list(ids)
    if isinstance(jobs, (list, tuple, set, frozenset)):
        out = []
        for job in jobs:
            out.extend(msg_ids(job))
        return out
    raise TypeError("a dependency is a msg_id, an AsyncResult or a collection of them, not %s"
                    % type(jobs).__name__)


class Dependency(set):
    """A set of msg_ids a task depends on, with how to count them.

    ``all``: met when all (True) or any (False) of them finished; ``success`` and
    ``failure``: which outcomes count. With the defaults a failed dependency makes the
    task impossible.
    """

    def __init__(self, dependencies=(), all=True, success=True, failure=False):
        if isinstance(dependencies, dict):
            all = dependencies.get("all", all)
            success = dependencies.get("success", success)
            failure = dependencies.get("failure", failure)
            dependencies = dependencies.get("dependencies", dependencies.get("ids", ()))
        super().__init__(msg_ids(dependencies))
        if not (success or failure):
            raise ValueError("a Dependency must count successes, failures or both")
        self.all = bool(all)
        self.success = bool(success)
        self.failure = bool(failure)

    @classmethod
    def from_metadata(cls, value):
        """The Dependency a request's ``after`` or ``follow`` carries, or None without one."""
        return cls(value) if value else None

    def check(self, completed, failed=()) -> bool:
        """Whether the dependency is met, given finished msg_ids by outcome."""
        if not self:
            return True
        against = set()
        if self.success:
            against |= set(completed)
        if self.failure:
            against |= set(failed)
        return self.issubset(against) if self.all else not self.isdisjoint(against)

    def unreachable(self, completed, failed=()) -> bool:
        """Whether the dependency can never be met, given finished msg_ids by outcome."""
        if not self:
            return False
        against = set()
        if not self.success:
            against |= set(completed)
        if not self.failure:
            against |= set(failed)
        return not self.isdisjoint(against) if self.all else self.issubset(against)

    def state(self, finished) -> str:
        """MET, UNMET (still possible) or IMPOSSIBLE, given ``finished``: ``{msg_id: (engine
        id, ok)}`` of the tasks that have finished (the scheduler's memory)."""
        completed, failed = [], []
        for msg_id in self:
            outcome = finished.get(msg_id)
            if outcome is not None:
                (completed if outcome[1] else failed).append(msg_id)
        if self.check(completed, failed):
            return MET
        return IMPOSSIBLE if self.unreachable(completed, failed) else UNMET

    def engines(self, finished) -> set:
        """The engines the finished ones among these tasks ran on (for ``follow``)."""
        return {finished[m][0] for m in self if m in finished}

    def as_dict(self) -> dict:
        return {"dependencies": sorted(self), "all": self.all, "success": self.success,
                "failure": self.failure}

    def __repr__(self):
        return "Dependency(%r, all=%r, success=%r, failure=%r)" % (sorted(self), self.all, self.success,
                                                                   self.failure)


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
