"""Every exception minipar raises, by family, with ipyparallel's names.

Messages name the cause and the setting or log file to look at: the error is often
read by someone who did not start the cluster.
"""
from __future__ import annotations

import builtins
import concurrent.futures
import signal


class MiniparError(Exception):
    """Base of every minipar error."""


# Before Python 3.11 concurrent.futures has its own TimeoutError; results are Futures, so
# a timeout should be caught by either name.
_TIMEOUT_BASES = (builtins.TimeoutError,) if concurrent.futures.TimeoutError is builtins.TimeoutError \
    else (builtins.TimeoutError, concurrent.futures.TimeoutError)


class TimeoutError(MiniparError, *_TIMEOUT_BASES):
    """Raised when a wait with a timeout (``get``, ``wait_for_engines``...) runs out."""


class NoEnginesRegistered(MiniparError):
    """Raised when work is submitted to a view but no engine is registered."""


class ProtocolMismatch(MiniparError):
    """Raised when the controller refuses a peer speaking another protocol version."""


class ConnectionFileError(MiniparError):
    """Raised when a connection file is missing or unreadable."""


class SerializationError(MiniparError):
    """Raised when a payload cannot be pickled here or unpickled there."""


class RemoteError(MiniparError):
    """Raised for an exception that happened on an engine; carries its name, value and
    traceback text."""

    def __init__(self, ename, evalue, traceback="", engine_info=None):
        self.ename = ename
        self.evalue = evalue
        self.traceback = traceback or ""
        self.engine_info = engine_info or {}
        super().__init__(ename, evalue)

    def __str__(self):
        where = ""
        if self.engine_info.get("engine_id") is not None:
            where = "[engine %s] " % self.engine_info["engine_id"]
        return "%s%s(%s)" % (where, self.ename, self.evalue)

    def __repr__(self):
        return "<RemoteError %s: %s>" % (self.ename, self.evalue)

    def render_traceback(self) -> str:
        return self.traceback or "%s: %s" % (self.ename, self.evalue)

    def print_traceback(self, file=None):
        print(self.render_traceback(), file=file)

    def _render_traceback_(self):
        """IPython shows these lines instead of the local traceback: the engine's is the useful one."""
        return self.render_traceback().splitlines()

    def raise_exception(self, excid=0):
        raise self

    def __reduce__(self):
        return (type(self), (self.ename, self.evalue, self.traceback, self.engine_info))


class CompositeError(RemoteError):
    """Raised when several engines failed in one call; holds every engine's error."""

    def __init__(self, message, elist):
        self.elist = list(elist)
        self.message = message
        first = self.elist[0] if self.elist else None
        super().__init__(
            first.ename if first else "CompositeError",
            first.evalue if first else message,
            first.traceback if first else "",
            first.engine_info if first else {},
        )

    def __str__(self):
        lines = ["%s (%d error%s)" % (self.message, len(self.elist), "" if len(self.elist) == 1 else "s")]
        for e in self.elist:
            lines.append("  [engine %s] %s: %s" % (e.engine_info.get("engine_id", "?"), e.ename, e.evalue))
        return "\n".join(lines)

    def render_traceback(self, excid=None) -> str:
        """Every engine's traceback, each under its engine id; or only error number excid."""
        errors = self.elist if excid is None else [self._error(excid)]
        parts = []
        for e in errors:
            parts.append("[engine %s]\n%s" % (e.engine_info.get("engine_id", "?"), e.render_traceback()))
        return "\n".join(parts)

    def print_traceback(self, excid=None, file=None):
        print(self.render_traceback(excid), file=file)

    def _render_traceback_(self):
        return [str(self).splitlines()[0]] + self.render_traceback().splitlines()

    def _error(self, excid):
        if not 0 <= excid < len(self.elist):
            raise IndexError("an exception with index %d does not exist (this CompositeError holds %d)"
                             % (excid, len(self.elist)))
        return self.elist[excid]

    def raise_exception(self, excid=0):
        """Raise the excid-th engine's error by itself."""
        raise self._error(excid)

    def __reduce__(self):
        return (type(self), (self.message, self.elist))


class EngineError(RemoteError):
    """Raised when the engine holding a task died or was unregistered before answering.

    A RemoteError with ename 'EngineError', as ipyparallel reports it, so code catching
    RemoteError keeps working."""

    def __init__(self, evalue, engine_info=None, traceback=""):
        super().__init__("EngineError", evalue, traceback, engine_info)

    def __reduce__(self):
        return (type(self), (self.evalue, self.engine_info, self.traceback))


class TaskNotFound(RemoteError, KeyError):
    """Raised for a task the controller has no record of: never submitted, purged, or the
    controller keeps no records (db = 'nodb')."""

    def __init__(self, evalue, engine_info=None, traceback=""):
        super().__init__("KeyError", evalue, traceback, engine_info)

    def __reduce__(self):
        return (type(self), (self.evalue, self.engine_info, self.traceback))


class DependencyError(MiniparError):
    """Base for errors of the task dependency system."""


class UnmetDependency(DependencyError):
    """Raised on an engine by a task whose ``@depend`` check fails there."""


class ImpossibleDependency(DependencyError):
    """Raised when no engine can ever satisfy a task's dependencies."""


class DependencyTimeout(DependencyError):
    """Raised when a task's dependencies were not met within its timeout."""


class InvalidDependency(DependencyError):
    """Raised when a dependency names something that is not a task."""


def describe_exit(returncode) -> str:
    """'exit code 3' or 'killed by signal SIGKILL (9)' for a Popen returncode."""
    if returncode is None:
        return "still running"
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = "signal"
        return "killed by signal %s (%d)" % (name, -returncode)
    return "exit code %d" % returncode


class TaskAborted(MiniparError):
    """Raised for a task aborted before it started."""


_REMOTE_CLASSES: dict = {}
_HUB_ERRORS = {cls.__name__: cls for cls in (ImpossibleDependency, DependencyTimeout, InvalidDependency,
                                               UnmetDependency, TaskAborted)}


def remote_error_class(ename: str) -> type:
    """RemoteError, or for an error minipar itself reports a RemoteError that is also that
    class, so ``except ImpossibleDependency`` and ``except RemoteError`` both catch it."""
    base = _HUB_ERRORS.get(ename)
    if base is None:
        return RemoteError
    cls = _REMOTE_CLASSES.get(ename)
    if cls is None:
        cls = _REMOTE_CLASSES[ename] = type("Remote" + ename, (RemoteError, base), {
            "__module__": __name__,
            "__reduce__": lambda self: (_rebuild_remote, (self.ename, self.evalue, self.traceback,
                                                          self.engine_info))})
    return cls


def _rebuild_remote(ename, evalue, traceback, engine_info):
    return remote_error_class(ename)(ename, evalue, traceback, engine_info)
