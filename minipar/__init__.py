"""minipar: IPython Parallel rebuilt on the standard library and pyzmq.

``import minipar as ipp`` gives the names ipyparallel users know.
"""
from .client.asyncresult import ALL_COMPLETED, FIRST_COMPLETED, FIRST_EXCEPTION, AsyncMapResult, AsyncResult
from .client.client import Client
from .client.executor import ViewExecutor
from .client.remote import (Dependency, ParallelFunction, Reference, RemoteFunction, depend, dependent, interactive,
                            parallel, remote, require)
from .client.view import BroadcastView, DirectView, LoadBalancedView, View
from .cluster.cluster import Cluster
from .error import (AlreadyDisplayedError, CompositeError, DependencyError, DependencyTimeout, EngineError,
                    ImpossibleDependency, InvalidDependency, IPythonError, KernelError, MiniparError,
                    NoEnginesRegistered, RemoteError, TaskAborted, TaskNotFound, TaskRejectError, TaskTimeout,
                    TimeoutError, UnmetDependency, collect_exceptions, unwrap_exception, wrap_exception)

from .serialize import use_cloudpickle, use_dill, use_pickle

__version__ = "0.1.0"
version_info = tuple(int(part) for part in __version__.split("."))


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
