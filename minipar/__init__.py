"""minipar: IPython Parallel rebuilt on the standard library and pyzmq.

``import minipar as ipp`` gives the names ipyparallel users know.
"""
from .client.asyncresult import AsyncMapResult, AsyncResult
from .client.client import Client
from .client.remote import interactive
from .client.view import DirectView, LoadBalancedView, View
from .cluster.cluster import Cluster
from .error import (CompositeError, DependencyError, DependencyTimeout, EngineError, ImpossibleDependency,
                    InvalidDependency, MiniparError, NoEnginesRegistered, RemoteError, TimeoutError,
                    UnmetDependency)

__version__ = "0.1.0"

__all__ = [
    "AsyncMapResult", "AsyncResult", "Client", "Cluster", "CompositeError", "DependencyError", "DependencyTimeout",
    "DirectView", "EngineError", "ImpossibleDependency", "InvalidDependency", "LoadBalancedView",
    "MiniparError", "NoEnginesRegistered", "RemoteError", "TimeoutError", "UnmetDependency", "View",
    "interactive",
]
