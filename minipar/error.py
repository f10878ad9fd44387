"""Every exception minipar raises, by family, with ipyparallel's names and class tree.

The tree is ipyparallel's (9.2): ``IPythonError`` (minipar calls it MiniparError) >
``KernelError`` > the task errors (EngineError, TaskAborted, TaskTimeout, the dependency
family: UnmetDependency > ImpossibleDependency > DependencyTimeout, InvalidDependency)
and RemoteError > CompositeError, so ``except`` clauses written for ipyparallel catch
the same things here. minipar's own errors hang off MiniparError in families:
SetupError (profiles, settings, connection files, keys), ProtocolError (messages that
cannot be trusted; ProtocolMismatch) and SerializationError, StartError (a controller,
engine or tunnel that cannot start), ClusterError (clusters, launchers, batch jobs). An error the controller reports for a task (EngineError,
TaskTimeout, the dependency errors, TaskAborted) arrives as a RemoteError that is also
that class (remote_error_class), so it is caught by either name.

Messages name the cause and the setting or log file to look at: the error is often
read by someone who did not start the cluster.
"""
from __future__ import annotations

import builtins
import collections
import concurrent.futures
import signal
import sys
import traceback as _traceback


class MiniparError(Exception):
    """Base of every minipar error (ipyparallel's IPythonError)."""


IPythonError = MiniparError


class KernelError(MiniparError):
    """Base of the errors about engines and the tasks they run, as in ipyparallel."""


# Before Python 3.11 concurrent.futures has its own TimeoutError; results are Futures, so
# a timeout should be caught by either name.
_TIMEOUT_BASES = (builtins.TimeoutError,) if concurrent.futures.TimeoutError is builtins.TimeoutError \
    else (builtins.TimeoutError, concurrent.futures.TimeoutError)


class TimeoutError(MiniparError, *_TIMEOUT_BASES):
    """Raised when a wait with a timeout (``get``, ``wait_for_engines``...) runs out.

    ipyparallel's is the builtin TimeoutError itself; this one is a subclass of it (and of
    concurrent.futures' before 3.11), so either name catches it."""


class NoEnginesRegistered(KernelError):
    """Raised when work is submitted to a view but no engine is registered."""


# -- setup: profiles, configuration, connection files, keys ------------------------------


class SetupError(MiniparError):
    """Base of the errors about what a process is given before it starts: a profile, a
    setting, a connection file, a key."""


class ProfileError(SetupError):
    """Raised when a profile can't be named, found or created; says how to create it."""


class ConnectionFileError(SetupError, OSError):
    """Raised when a connection file is missing or unreadable; an OSError, as ipyparallel's
    Client raises, so ``except OSError`` around ``Client()`` keeps working."""


class CurveError(SetupError):
    """Raised when encryption (CurveZMQ) is asked for and libzmq lacks it, or a stored key is unusable."""


class ConfigError(SetupError):
    """Raised for a bad setting (in minipar.toml, on a command line, in keyword arguments); names
    where it came from and the key, so it can be fixed."""

    def __init__(self, source: str, key, problem: str):
        self.source = source
        self.key = key
        """``section.key``, or None when the problem is the whole source (an unreadable file)."""
        self.problem = problem
        where = "%s: %s" % (source, key) if key else source
        super().__init__("%s: %s" % (where, problem))

    def __reduce__(self):
        return (type(self), (self.source, self.key, self.problem))


# -- the wire: messages and payloads ---------------------------------------------------------


class ProtocolError(MiniparError):
    """Raised when a received message is unsigned, badly signed, replayed or malformed."""


class ProtocolMismatch(ProtocolError):
    """Raised when the controller refuses a peer speaking another protocol version."""


class SerializationError(MiniparError):
    """Raised when a payload cannot be pickled here or unpickled there."""


# -- starting processes ------------------------------------------------------------------------


class StartError(MiniparError):
    """Base of the errors that keep a controller, an engine or a tunnel from starting."""


class ControllerStartError(StartError):
    """Raised when the controller cannot start: its ports, its files, its settings."""


class EngineStartError(StartError):
    """Raised when an engine cannot register with its controller; ``exit_code`` is the
    engine process's."""

    exit_code = 1


class ControllerLost(EngineStartError):
    """The controller's heartbeats stopped before it answered the registration."""

    exit_code = 3


class StoppedWhileRegistering(EngineStartError):
    """SIGTERM arrived before the controller answered: a plain stop, not a failure."""

    exit_code = 0


class MPIStartError(EngineStartError):
    """Raised when engine.mpi asks for MPI and it cannot be initialised."""


class InitScriptFailed(MPIStartError):
    """The MPI init script raised; the engine logs its traceback, since the bug is in that file."""


class TunnelError(StartError):
    """Raised when an ssh tunnel could not be opened."""


# -- clusters, launchers and batch jobs ------------------------------------------------------


class ClusterError(MiniparError):
    """Raised when a cluster cannot start, be found or be stopped, or its settings cannot work
    together (an engine pool that needs more jobs than cluster.max_jobs allows)."""


class LauncherError(ClusterError):
    """Raised when a launcher cannot start, find or stop its processes or jobs."""


class CannotSignal(LauncherError):
    """Raised by ``signal()`` when the launcher has no way to deliver a signal to its
    engines (a batch system without one, mpiexec that would kill the job instead); the
    Cluster then asks the controller to have the engines signal themselves."""


class TemplateError(LauncherError):
    """Raised when a batch template cannot be rendered; says which field and why."""


class JobQueryError(ClusterError):
    """Raised when a batch system's command cannot tell about a job (its end time, its state)."""


# -- tasks (ipyparallel's tree) ------------------------------------------------------------


class EngineError(KernelError):
    """Raised for a task whose engine died or was unregistered before answering (reported
    as a RemoteError with ename 'EngineError', which is also this class)."""


class TaskAborted(KernelError):
    """Raised for a task aborted before it started."""


class TaskTimeout(KernelError):
    """Raised for a load-balanced task still waiting in the scheduler when its ``timeout``
    ran out (for its dependencies, or for an engine whose @depend check it meets)."""


class UnmetDependency(KernelError):
    """Raised on an engine by a task whose ``@depend`` check fails there: the scheduler
    tries the task elsewhere."""


DependencyError = UnmetDependency  # minipar's older name for the dependency family's base


class ImpossibleDependency(UnmetDependency):
    """Raised when no engine can ever satisfy a task's dependencies."""


class DependencyTimeout(ImpossibleDependency):
    """Raised when a task's dependencies were not met within its timeout."""


class InvalidDependency(ImpossibleDependency):
    """Raised when a dependency names something that is not a task."""


class TaskRejectError(KernelError):
    """For a task to raise when it should not run on this engine (ipyparallel's name; a
    task meant to be retried elsewhere needs ``retries``)."""


RemoteErrorInfo = collections.namedtuple("RemoteErrorInfo", "ename evalue traceback engine_info")
RemoteErrorInfo.__doc__ = """One engine's error in CompositeError.elist: a plain
``(ename, evalue, traceback, engine_info)`` tuple as in ipyparallel, with named fields."""


def _engine_label(engine_info) -> str:
    """'[0:apply]' for an error from engine 0's apply; '[Engine Exception]' when no engine
    was involved (the controller's own errors), as ipyparallel labels them."""
    if not engine_info or engine_info.get("engine_id") is None:
        return "[Engine Exception]"
    method = engine_info.get("method")
    return "[%s:%s]" % (engine_info["engine_id"], method) if method else "[%s]" % engine_info["engine_id"]


class RemoteError(KernelError):
    """Raised for an exception that happened on an engine; carries its name, value and
    traceback text."""

    def __init__(self, ename, evalue, traceback="", engine_info=None):
        self.ename = ename
        self.evalue = evalue
        self.traceback = traceback or ""
        self.engine_info = engine_info or {}
        super().__init__(ename, evalue)

    def __str__(self):
        return "%s %s: %s" % (_engine_label(self.engine_info), self.ename, self.evalue)

    def __repr__(self):
        return "<%s[%s]:%s(%s)>" % (type(self).__name__, self.engine_info.get("engine_id", " "), self.ename,
                                    self.evalue)

    def render_traceback(self) -> list:
        """The engine's traceback as lines, under its engine label."""
        return [_engine_label(self.engine_info)] + (self.traceback or "No traceback available").splitlines()

    def print_traceback(self, excid=None, file=None):
        print("\n".join(self.render_traceback()), file=file)

    def _render_traceback_(self):
        """IPython shows these lines instead of the local traceback: the engine's is the useful one."""
        return self.render_traceback()

    def raise_exception(self, excid=0):
        raise self

    def __reduce__(self):
        return (type(self), (self.ename, self.evalue, self.traceback, self.engine_info))


class CompositeError(RemoteError):
    """Raised when several engines failed in one call; ``elist`` holds each one's error as an
    ``(ename, evalue, traceback, engine_info)`` tuple."""

    tb_limit = 4
    """Errors (and tracebacks) shown by str() and render_traceback(): the rest are counted."""

    def __init__(self, message, elist):
        self.msg = self.message = message
        self.elist = []
        self._errors = []
        for e in elist:
            if isinstance(e, CompositeError):
                self.elist.extend(e.elist)
                self._errors.extend(e._errors)
            elif isinstance(e, RemoteError):
                self.elist.append(RemoteErrorInfo(e.ename, e.evalue, e.traceback, e.engine_info))
                self._errors.append(e)
            else:
                self.elist.append(RemoteErrorInfo(*e))
                self._errors.append(None)
        first = self.elist[0] if self.elist else RemoteErrorInfo("CompositeError", message, "", {})
        super().__init__(*first)
        self.args = tuple(e[0] for e in self.elist)

    def __str__(self):
        lines = [str(self.msg)]
        for en, ev, _, ei in self.elist[:self.tb_limit]:
            lines.append("%s%s: %s" % (_engine_label(ei), en, ev))
        if len(self.elist) > self.tb_limit:
            lines.append(".... %d more exceptions ..." % (len(self.elist) - self.tb_limit))
        return "\n".join(lines)

    def __repr__(self):
        return "CompositeError(%d)" % len(self.elist)

    def render_traceback(self, excid=None) -> list:
        """The first tb_limit engines' tracebacks as lines, each under its engine label; or
        only error number excid's."""
        if excid is not None:
            _, _, etb, ei = self._entry(excid)
            return [_engine_label(ei) + ":"] + (etb or "No traceback available").splitlines()
        lines = []
        for _, _, etb, ei in self.elist[:self.tb_limit]:
            lines.append(_engine_label(ei) + ":")
            lines.extend((etb or "No traceback available").splitlines())
            lines.append("")
        if len(self.elist) > self.tb_limit:
            lines.append("... %d more exceptions ..." % (len(self.elist) - self.tb_limit))
        return lines

    def print_traceback(self, excid=None, file=None):
        print("\n".join(self.render_traceback(excid)), file=file)

    def _render_traceback_(self):
        return self.render_traceback()

    def _entry(self, excid):
        if not isinstance(excid, int) or not -len(self.elist) <= excid < len(self.elist):
            raise IndexError("an exception with index %s does not exist (this CompositeError holds %d)"
                             % (excid, len(self.elist)))
        return self.elist[excid]

    def _error(self, excid):
        """The excid-th engine's error as a RemoteError (of its own class when minipar knows it)."""
        entry = self._entry(excid)
        return self._errors[excid] or remote_error_class(entry.ename)(*entry)

    def raise_exception(self, excid=0):
        """Raise the excid-th engine's error by itself, as a RemoteError."""
        raise self._error(excid)

    def __reduce__(self):
        return (type(self), (self.message, [tuple(e) for e in self.elist]))


class AlreadyDisplayedError(RemoteError):
    """Raised in place of a CompositeError whose errors were already shown while streaming
    output: only their count is shown again."""

    def __init__(self, original_error):
        self.original_error = original_error
        self.n = len(original_error.elist)
        super().__init__("AlreadyDisplayedError", "%d errors" % self.n)

    def __repr__(self):
        return "<%s(%d errors)>" % (type(self).__name__, self.n)

    def __str__(self):
        return "%d errors" % self.n

    def render_traceback(self) -> list:
        return [str(self)]

    def __reduce__(self):
        return (type(self), (self.original_error,))


class TaskNotFound(RemoteError, KeyError):
    """Raised for a task the controller has no record of: never submitted, purged, or the
    controller keeps no records (db = 'nodb')."""

    def __init__(self, evalue, engine_info=None, traceback=""):
        super().__init__("KeyError", evalue, traceback, engine_info)

    def __str__(self):
        return str(self.evalue)

    def __reduce__(self):
        return (type(self), (self.evalue, self.engine_info, self.traceback))


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


def collect_exceptions(rdict_or_list, method="unspecified"):
    """Raise a CompositeError of the RemoteErrors among results (a list, or a dict's
    values), CompositeErrors flattened; pass the results through when there are none."""
    results = rdict_or_list.values() if isinstance(rdict_or_list, dict) else rdict_or_list
    errors = [r for r in results if isinstance(r, RemoteError)]
    if not errors:
        return rdict_or_list
    raise CompositeError("one or more exceptions raised in: %s" % method, errors)


def wrap_exception(engine_info=None) -> dict:
    """The error content of a reply for the exception being handled, as ipyparallel builds it."""
    etype, evalue, tb = sys.exc_info()
    return {"status": "error", "traceback": _traceback.format_exception(etype, evalue, tb),
            "ename": etype.__name__, "evalue": str(evalue), "engine_info": engine_info or {}}


def unwrap_exception(content: dict) -> RemoteError:
    """The RemoteError for an error content (traceback as a list of lines or one text)."""
    tb = content.get("traceback") or ""
    if not isinstance(tb, str):
        tb = "\n".join(tb)
    ename = content.get("ename", "UnknownError")
    return remote_error_class(ename)(ename, content.get("evalue", ""), tb, content.get("engine_info") or {})


_REMOTE_CLASSES: dict = {}
_HUB_ERRORS = {
    "EngineError": (EngineError,), "TaskAborted": (TaskAborted,), "UnmetDependency": (UnmetDependency,),
    "ImpossibleDependency": (ImpossibleDependency,), "DependencyTimeout": (DependencyTimeout,),
    "InvalidDependency": (InvalidDependency,),
    # ipyparallel's scheduler reports TaskTimeout where its docs promise DependencyTimeout: catch either.
    "TaskTimeout": (TaskTimeout, DependencyTimeout),
}


def remote_error_class(ename: str) -> type:
    """RemoteError, or for an error minipar itself reports a RemoteError that is also that
    class, so ``except ImpossibleDependency`` and ``except RemoteError`` both catch it."""
    bases = _HUB_ERRORS.get(ename)
    if bases is None:
        return RemoteError
    cls = _REMOTE_CLASSES.get(ename)
    if cls is None:
        cls = _REMOTE_CLASSES[ename] = type("Remote" + ename, (RemoteError, *bases), {
            "__module__": __name__,
            "__reduce__": lambda self: (_rebuild_remote, (self.ename, self.evalue, self.traceback,
                                                          self.engine_info))})
    return cls


def _rebuild_remote(ename, evalue, traceback, engine_info):
    return remote_error_class(ename)(ename, evalue, traceback, engine_info)
