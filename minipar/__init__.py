"""minipar: IPython Parallel rebuilt on the standard library and pyzmq.

``import minipar as ipp`` gives the names ipyparallel users know. They are imported on
first use (PEP 562), so ``import minipar`` costs next to nothing, and a process that needs
only part of the package (an engine, a controller, a client without ``Cluster``) never
loads the rest: ``ipp.Client`` brings in the client and pyzmq, ``ipp.Cluster`` the
launchers, asyncio and the configuration schema.
"""
import importlib

__version__ = "0.1.0"
version_info = tuple(int(part) for part in __version__.split("."))

_SOURCES = {
    ".client.asyncresult": ("ALL_COMPLETED", "FIRST_COMPLETED", "FIRST_EXCEPTION", "AsyncMapResult", "AsyncResult"),
    ".client.client": ("Client",),
    ".client.executor": ("ViewExecutor",),
    ".client.remotefunction": ("ParallelFunction", "RemoteFunction", "parallel", "remote"),
    ".dependency": ("Dependency", "depend", "dependent", "require"),
    ".engine_calls": ("Reference", "interactive"),
    ".client.view": ("BroadcastView", "DirectView", "LoadBalancedView", "View"),
    ".cluster.cluster": ("Cluster",),
    ".error": ("AlreadyDisplayedError", "CompositeError", "DependencyError", "DependencyTimeout", "EngineError",
               "ImpossibleDependency", "InvalidDependency", "IPythonError", "KernelError", "MiniparError",
               "NoEnginesRegistered", "RemoteError", "TaskAborted", "TaskNotFound", "TaskRejectError",
               "TaskTimeout", "TimeoutError", "UnmetDependency", "collect_exceptions", "unwrap_exception",
               "wrap_exception"),
    ".serialize": ("use_cloudpickle", "use_dill", "use_pickle"),
}
_LAZY = {name: module for module, names in _SOURCES.items() for name in names}

_SUBMODULES = frozenset((
    "client", "cluster", "commands", "config", "connection", "controller", "engine", "error", "jsonutil",
    "logs", "pidfile", "profile", "protocol", "serialize", "tunnel",
))
"""Subpackages and modules reachable as attributes after a bare ``import minipar``, as they
were when this file imported everything."""


def __getattr__(name):
    module = _LAZY.get(name)
    if module is not None:
        value = getattr(importlib.import_module(module, __name__), name)
    elif name in _SUBMODULES:
        value = importlib.import_module("." + name, __name__)
    else:
        raise AttributeError("module %r has no attribute %r" % (__name__, name))
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY) | _SUBMODULES)


def load_ipython_extension(ip):
    """``%load_ext minipar``: %px, %%px, %pxresult, %pxconfig and %autopx (IPython imported only here)."""
    from .client.magics import load_ipython_extension as load
    load(ip)


__all__ = [
    "AsyncMapResult", "AsyncResult", "Client", "Cluster", "CompositeError", "DependencyError", "DependencyTimeout",
    "DirectView", "EngineError", "ImpossibleDependency", "InvalidDependency", "LoadBalancedView",
    "MiniparError", "NoEnginesRegistered", "RemoteError", "TaskAborted", "TaskNotFound", "TimeoutError", "UnmetDependency", "View",
    "interactive",
    "BroadcastView",
    "ALL_COMPLETED", "FIRST_COMPLETED", "FIRST_EXCEPTION", "Dependency", "ParallelFunction", "Reference",
    "RemoteFunction", "ViewExecutor", "depend", "dependent", "load_ipython_extension", "parallel", "remote",
    "require", "use_cloudpickle", "use_dill", "use_pickle", "version_info",
    "AlreadyDisplayedError", "IPythonError", "KernelError", "TaskRejectError", "TaskTimeout", "collect_exceptions",
    "unwrap_exception", "wrap_exception",
]
