"""Every exception minipar raises, by family, with ipyparallel's names.

Messages name the cause and the setting or log file to look at: the error is often
read by someone who did not start the cluster.
"""
from __future__ import annotations

import builtins
import signal


class MiniparError(Exception):
    """Base of every minipar error."""


class TimeoutError(MiniparError, builtins.TimeoutError):
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

    def render_traceback(self) -> str:
        parts = []
        for e in self.elist:
            parts.append("[engine %s]\n%s" % (e.engine_info.get("engine_id", "?"), e.render_traceback()))
        return "\n".join(parts)

    def raise_exception(self, excid=0):
        raise self.elist[excid]

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
