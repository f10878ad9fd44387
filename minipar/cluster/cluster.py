"""The Cluster: a controller and engine sets started by launchers, and their state file.

Every method has a blocking ``_sync`` form, which is the implementation, and an awaitable
form that runs it in a worker thread, so it never blocks an event loop. Because the
``_sync`` forms need no event loop of their own, they also work inside a running one (a
Jupyter notebook).

A running cluster is described by ``security/cluster-<id>.json`` in its profile: the
launchers with their pids or job ids, written as soon as anything is started, so another
process can find the cluster (``Cluster.from_file``) and stop it.
"""
from __future__ import annotations

import asyncio
import atexit
import functools
import json
import logging
import os
import sys
import threading
import time
import uuid
import weakref
from pathlib import Path

from ..config import ConfigError, load_config, split_overrides
from ..connection import connection_file_path
from ..error import MiniparError, TimeoutError
from ..profile import locate_profile_dir
from .launchers import import_launcher, launcher_class, launcher_settings
from .launchers.base import CannotSignal, ControllerLauncher, EngineSetLauncher, tail

log = logging.getLogger("minipar.cluster")

WATCH_INTERVAL = 0.5
"""Seconds between checks that the cluster's processes still run."""

JOB_CHECK_INTERVAL = 2.0
"""Seconds between asking a batch system or remote host whether engine jobs still run."""
PROGRESS_INTERVAL = 0.1
"""Seconds between progress updates while waiting for engines."""


class ClusterError(MiniparError):
    """Raised when a cluster cannot start, be found or be stopped."""


def new_cluster_id() -> str:
    return "%d-%s" % (time.time(), uuid.uuid4().hex[:4])


def state_file_path(profile_dir, cluster_id: str) -> Path:
    return Path(profile_dir) / "security" / ("cluster-%s.json" % cluster_id)


def remove(path) -> None:
    try:
        Path(path).unlink()
    except FileNotFoundError:
        pass


def forget_when_done(profile_dir, cluster_id: str, controller_pid: int, timeout: float = 5.0) -> bool:
    """Remove the state file of a cluster whose controller (``controller_pid``) stops on its own,
    once none of its engines runs: a ``cluster start --daemonize`` leaves no process watching,
    so after ``rc.shutdown(hub=True)`` or a SIGTERM to the controller nobody else would. A state
    file naming another controller, or with engines still running after ``timeout``, stays."""
    path = state_file_path(profile_dir, cluster_id)
    try:
        cluster = Cluster.from_dict(json.loads(path.read_text()))
    except (OSError, ValueError, KeyError, MiniparError):
        return False
    pids = [p.pid for p in getattr(cluster.controller, "processes", ())]
    if controller_pid not in pids:
        return False
    deadline = time.monotonic() + timeout
    while any(s.engines_running() for s in cluster.engine_sets.values()):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    remove(path)
    return True


def _launcher_name(value):
    """A launcher setting given as a class (as ipyparallel allows) becomes its dotted path."""
    if isinstance(value, type):
        return "%s.%s" % (value.__module__, value.__qualname__)
    return value


def _awaitable(sync_method):
    """The async twin of a _sync method: the same work, in a worker thread."""
    @functools.wraps(sync_method)
    async def method(self, *args, **kwargs):
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, functools.partial(sync_method, self, *args, **kwargs))
    method.__name__ = sync_method.__name__[:-len("_sync")]
    method.__qualname__ = "Cluster." + method.__name__
    return method


class Cluster:
    """A controller and engines on this machine or elsewhere, started by launchers.

    Keyword arguments override ``[cluster]`` in the profile's minipar.toml."""

    def __init__(self, *, profile=None, profile_dir=None, cluster_id=None, n=None, engines=None,
                 controller=None, controller_ip=None, controller_location=None, controller_args=None,
                 engine_args=None, log_level=None, shutdown_atexit=None, engine_timeout=None, delay=0.0,
                 config_overrides=None, **unknown):
        """``config_overrides``: ``{"section.key": value}`` for any setting (strings are
        coerced as on a command line), below the keyword arguments."""
        for alias, name in (("engine_launcher_class", "engines"), ("controller_launcher_class", "controller")):
            if alias in unknown:
                engines, controller = ((unknown.pop(alias), controller) if name == "engines"
                                       else (engines, unknown.pop(alias)))
        if unknown:
            raise TypeError("Cluster() got unexpected keyword argument(s): %s" % ", ".join(sorted(unknown)))
        engines, controller = _launcher_name(engines), _launcher_name(controller)
        if isinstance(log_level, int) and not isinstance(log_level, bool):
            log_level = logging.getLevelName(log_level)
        self.profile = profile
        self.delay = float(delay or 0.0)
        self.profile_dir = locate_profile_dir(profile, profile_dir, create=True)
        self.config_overrides = dict(config_overrides or {})
        overrides = dict(self.config_overrides)
        overrides.update({k: v for k, v in {
            "cluster.n": n, "cluster.engines": engines, "cluster.controller": controller,
            "cluster.controller_ip": controller_ip, "cluster.controller_location": controller_location,
            "cluster.controller_args": controller_args, "cluster.engine_args": engine_args,
            "cluster.log_level": log_level, "cluster.shutdown_atexit": shutdown_atexit,
            "cluster.engine_timeout": engine_timeout,
        }.items() if v is not None})
        self.config = load_config(self.profile_dir, overrides, source="Cluster()")
        cfg = self.config.cluster
        self.cfg = cfg
        self.n = cfg.n or os.cpu_count() or 1
        self.cluster_id = new_cluster_id() if cluster_id is None else cluster_id
        self.controller_class = launcher_class(cfg.controller, "controller", self.config.source_of("cluster.controller"))
        self.engine_class = launcher_class(cfg.engines, "engines", self.config.source_of("cluster.engines"))
        self.controller = None
        self.engine_sets: dict = {}
        self.start_time = None
        self._client = None
        self._lock = threading.RLock()
        self._stopping = False
        self._watcher = None
        self._watch_stop = threading.Event()
        if cfg.shutdown_atexit:
            ref = weakref.ref(self)
            atexit.register(lambda: ref() is not None and ref()._stop_at_exit())

    def __repr__(self):
        engines = sum(s.n for s in self.engine_sets.values())
        return "<Cluster(cluster_id=%r, profile_dir=%r, controller=%s, engines=%d)>" % (
            self.cluster_id, str(self.profile_dir), "running" if self.controller_running else "stopped", engines)

    # -- ipyparallel's attribute names ---------------------------------------------------

    @property
    def engines(self) -> dict:
        """The running engine sets by id (ipyparallel's name for them)."""
        return self.engine_sets

    @property
    def engine_launcher_class(self):
        return self.engine_class

    @property
    def controller_launcher_class(self):
        return self.controller_class

    @property
    def controller_ip(self) -> str:
        return self.cfg.controller_ip

    @property
    def controller_location(self) -> str:
        return self.cfg.controller_location

    @property
    def controller_args(self) -> list:
        return list(self.cfg.controller_args)

    @property
    def engine_args(self) -> list:
        return list(self.cfg.engine_args)

    @property
    def engine_timeout(self) -> float:
        return self.cfg.engine_timeout

    @property
    def log_level(self) -> int:
        return logging.getLevelName(self.cfg.log_level.upper()) if self.cfg.log_level else logging.INFO

    @property
    def shutdown_atexit(self) -> bool:
        return self.cfg.shutdown_atexit

    @property
    def cluster_file(self) -> str:
        return str(self.state_file)

    # -- files -----------------------------------------------------------------------------

    @property
    def state_file(self) -> Path:
        return state_file_path(self.profile_dir, self.cluster_id)

    @property
    def client_file(self) -> Path:
        return connection_file_path(self.profile_dir, "client", self.cluster_id)

    def to_dict(self) -> dict:
        return {
            "cluster_id": self.cluster_id, "profile_dir": str(self.profile_dir), "n": self.n,
            "start_time": self.start_time, "owner_pid": os.getpid(),
            "controller": self.controller.to_dict() if self.controller else None,
            "engines": {k: v.to_dict() for k, v in self.engine_sets.items()},
        }

    def write_state(self) -> None:
        with self._lock:
            path = self.state_file
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(".%s.%d.tmp" % (path.name, os.getpid()))
            fd = os.open(str(tmp), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                json.dump(self.to_dict(), f, indent=2)
            os.replace(str(tmp), str(path))

    def remove_state(self) -> None:
        remove(self.state_file)

    @classmethod
    def from_dict(cls, state: dict, **kwargs) -> "Cluster":
        self = cls(profile_dir=state["profile_dir"], cluster_id=state["cluster_id"], n=state.get("n"),
                   shutdown_atexit=False, **kwargs)
        self.start_time = state.get("start_time")
        if state.get("controller"):
            c = state["controller"]
            self.controller = import_launcher(c["class"], ControllerLauncher).from_dict(c)
        for set_id, d in state.get("engines", {}).items():
            self.engine_sets[set_id] = import_launcher(d["class"], EngineSetLauncher).from_dict(d)
        return self

    @classmethod
    def from_file(cls, profile=None, profile_dir=None, cluster_id="", **kwargs) -> "Cluster":
        """The running cluster of a profile, as another process started it."""
        pdir = locate_profile_dir(profile, profile_dir, create=False)
        path = state_file_path(pdir, cluster_id)
        try:
            state = json.loads(path.read_text())
        except FileNotFoundError:
            raise ClusterError("no cluster with id %r in %s (no %s); `python -m %s list` shows the running ones"
                               % (cluster_id, pdir, path.name, __package__)) from None
        except ValueError as e:
            raise ClusterError("cluster state file %s is not valid JSON: %s" % (path, e)) from None
        return cls.from_dict(state, **kwargs)

    # -- the controller --------------------------------------------------------------------

    @property
    def controller_running(self) -> bool:
        return self.controller is not None and self.controller.running

    def _controller_args(self) -> list:
        cfg = self.cfg
        args = list(cfg.controller_args)
        if cfg.controller_ip:
            args.append("--ip=%s" % cfg.controller_ip)
        if cfg.controller_location:
            args.append("--location=%s" % cfg.controller_location)
        return args

    def start_controller_sync(self):
        """Start the controller and wait until it has written its connection files."""
        with self._lock:
            if self.controller_running:
                return
            self._stopping = False
            self.start_time = self.start_time or time.time()
            self.controller = self.controller_class(
                self.profile_dir, self.cluster_id, self.cfg.log_level, self._controller_args(),
                settings=launcher_settings(self.config, self.controller_class, "controller"))
            started = time.time()
            self.controller.start()
            self.write_state()
        self._wait_for_controller(started)
        self._start_watcher()

    def _wait_for_controller(self, started: float):
        deadline = time.monotonic() + self.cfg.controller_timeout
        path = self.client_file
        while True:
            try:
                if path.stat().st_mtime >= started - 1 and json.loads(path.read_text()).get("key"):
                    return
            except (OSError, ValueError):
                pass
            if not self.controller.running:
                self._fail("the controller exited before writing %s" % path, self.controller.output_files)
            if time.monotonic() > deadline:
                self._fail("the controller did not write %s within %gs (cluster.controller_timeout)"
                           % (path, self.cfg.controller_timeout), self.controller.output_files)
            time.sleep(0.02)

    def _fail(self, message: str, logs):
        """Stop everything started, then raise naming the logs to read and their last lines."""
        details = "".join("\n--- last lines of %s ---\n%s" % (f, tail(f)) for f in logs)
        self.stop_cluster_sync()
        raise ClusterError(message + details)

    def stop_controller_sync(self):
        with self._lock:
            if self.controller is not None:
                self._stopping = True
                self.controller.stop(self.cfg.stop_timeout)
                self.write_state()

    # -- engines ---------------------------------------------------------------------------

    def start_engines_sync(self, n=None, engine_set_id=None):
        """Start n more engines (default: the cluster's n); returns the engine set's id."""
        n = self.n if n is None else n
        if n < 1:
            raise ValueError("start_engines needs n >= 1, got %r" % n)
        with self._lock:
            self._stopping = False
            self.start_time = self.start_time or time.time()
            first = sum(s.n for s in self.engine_sets.values())
            launcher = self.engine_class(self.profile_dir, self.cluster_id, self.cfg.log_level, self.cfg.engine_args,
                                         n=n, first_index=first,
                                         settings=launcher_settings(self.config, self.engine_class, "engines"))
            set_id = engine_set_id or "%d-%d" % (time.time(), len(self.engine_sets))
            if set_id in self.engine_sets:
                raise ValueError("engine set %r is already running (engine sets: %s)"
                                 % (set_id, ", ".join(self.engine_sets)))
            self.engine_sets[set_id] = launcher
            launcher.start()
            self.write_state()
        self._start_watcher()
        return set_id

    @property
    def engine_processes(self) -> list:
        return [p for s in self.engine_sets.values() for p in getattr(s, "processes", [])]

    def stop_engines_sync(self, engine_set_id=None):
        with self._lock:
            self._stopping = True
            ids = list(self.engine_sets) if engine_set_id is None else [engine_set_id]
            for set_id in ids:
                self.engine_sets.pop(set_id).stop(self.cfg.stop_timeout)
            self.write_state()
            self._stopping = False

    def _engine_set_ids(self, engine_set_id) -> list:
        if engine_set_id is None:
            return list(self.engine_sets)
        if engine_set_id not in self.engine_sets:
            raise KeyError("no engine set %r in this cluster (engine sets: %s)"
                           % (engine_set_id, ", ".join(self.engine_sets) or "none"))
        return [engine_set_id]

    def signal_engines_sync(self, sig, engine_set_id=None):
        """Send a signal to every engine (or one engine set's): SIGINT interrupts what they run.

        Engines whose launcher cannot deliver signals get it through the controller."""
        through_controller = False
        for set_id in self._engine_set_ids(engine_set_id):
            try:
                self.engine_sets[set_id].signal(sig)
            except CannotSignal:
                through_controller = True
        if through_controller:
            self.connect_client_sync().send_signal(sig)

    def restart_engines_sync(self, engine_set_id=None):
        """Replace every engine (or one engine set's) with fresh processes (empty namespace, new ids)."""
        with self._lock:
            sizes = {i: self.engine_sets[i].n for i in self._engine_set_ids(engine_set_id)} or {None: self.n}
            for set_id in sizes:
                if set_id is not None:
                    self.stop_engines_sync(set_id)
            for set_id, n in sizes.items():
                self.start_engines_sync(n, set_id)
        if self._client is not None:
            self.wait_for_engines_sync(sum(sizes.values()), fresh=True)

    # -- clients ---------------------------------------------------------------------------

    def connect_client_sync(self, **kwargs):
        """A Client connected to this cluster's controller."""
        from ..client.client import Client
        if self._client is None or self._client._closed:
            self._client = Client(url_file=str(self.client_file), **kwargs)
            self._client.cluster = self
        return self._client

    def wait_for_engines_sync(self, n=None, timeout=None, fresh=False):
        """Wait until n engines are registered, showing progress on a terminal.

        Fails early when the engine processes have all died, and the error names their
        logs with their last lines."""
        n = sum(s.n for s in self.engine_sets.values()) if n is None else n
        timeout = self.cfg.engine_timeout if timeout is None else timeout
        client = self.connect_client_sync()
        known = set(client.ids) if fresh else set()
        deadline = time.monotonic() + timeout
        next_job_check = time.monotonic() + JOB_CHECK_INTERVAL
        progress = Progress(n)
        try:
            while True:
                count = len(set(client.ids) - known)
                progress.show(count)
                if count >= n:
                    return client
                procs = self.engine_processes
                if procs and not any(p.running for p in procs):
                    raise ClusterError(self._engines_problem("every engine process exited", count, n))
                if not procs and time.monotonic() > next_job_check:
                    next_job_check = time.monotonic() + JOB_CHECK_INTERVAL
                    if self.engine_sets and not any(s.running for s in self.engine_sets.values()):
                        raise ClusterError(self._engines_problem("every engine job ended", count, n))
                if time.monotonic() > deadline:
                    raise TimeoutError(self._engines_problem(
                        "engines did not register within %gs (cluster.engine_timeout)" % timeout, count, n))
                time.sleep(PROGRESS_INTERVAL)
        finally:
            progress.done()

    def _engines_problem(self, what: str, count: int, n: int) -> str:
        lines = ["%s: %d of %d registered with the controller." % (what, count, n)]
        for p in self.engine_processes:
            if not p.running:
                lines.append("engine %s" % p.describe())
        logs = [f for s in self.engine_sets.values() for f in s.output_files]
        for f in logs[:4]:
            lines.append("--- last lines of %s ---\n%s" % (f, tail(f, 25)))
        if len(logs) > 4:
            lines.append("(and %d more logs in %s)" % (len(logs) - 4, self.profile_dir / "log"))
        return "\n".join(lines)

    # -- the whole cluster ---------------------------------------------------------------------

    def start_cluster_sync(self, n=None):
        self.start_controller_sync()
        if self.delay:
            time.sleep(self.delay)
        self.start_engines_sync(n)

    def start_and_connect_sync(self, n=None, timeout=None):
        """Start the controller and n engines, wait for them, return a connected Client.

        If anything fails, everything started is stopped before the error is raised."""
        try:
            self.start_cluster_sync(n)
            return self.wait_for_engines_sync(None, timeout)
        except BaseException:
            self.stop_cluster_sync()
            raise

    def stop_cluster_sync(self):
        """Stop engines, then the controller; close the client; remove the state file."""
        with self._lock:
            self._stopping = True
            self._watch_stop.set()
            if self._client is not None:
                self._client.close()
                self._client = None
            failed = []
            for set_id in list(self.engine_sets):
                try:
                    self.engine_sets[set_id].stop(self.cfg.stop_timeout)
                except Exception as e:  # noqa: BLE001 - the controller and other sets are still stopped
                    failed.append("%s (%s): %s" % (set_id, type(self.engine_sets[set_id]).__name__, e))
                else:
                    del self.engine_sets[set_id]
            if self.controller is not None:
                self.controller.stop(self.cfg.stop_timeout)
                reuse = self._controller_reuses(self.controller.args)
                self.controller = None
                if not reuse:  # the controller removes them itself, unless it was killed
                    for role in ("client", "engine"):
                        remove(connection_file_path(self.profile_dir, role, self.cluster_id))
            if failed:
                self.write_state()
                raise ClusterError("could not stop engine set(s) %s; the controller was stopped, and %s keeps "
                                   "the engine sets so `python -m %s stop` can try again"
                                   % ("; ".join(failed), self.state_file, __package__))
            self.remove_state()

    def _controller_reuses(self, args) -> bool:
        """Whether the controller ran with --reuse (flag, --controller.reuse or the profile)."""
        rest, overrides = split_overrides(args)
        if "--reuse" in rest:
            return True
        try:
            return load_config(self.profile_dir, overrides).controller.reuse
        except ConfigError:
            return self.config.controller.reuse

    def _stop_at_exit(self):
        if self.controller is not None or self.engine_sets:
            try:
                self.stop_cluster_sync()
            except Exception:  # noqa: BLE001 - interpreter exit; nothing to report to
                pass

    # -- crash handling ----------------------------------------------------------------------

    def _start_watcher(self):
        if self._watcher is None or not self._watcher.is_alive():
            self._watch_stop.clear()
            self._watcher = threading.Thread(target=self._watch, name="minipar-cluster-watch", daemon=True)
            self._watcher.start()

    def _watch(self):
        while not self._watch_stop.wait(WATCH_INTERVAL):
            self.check_processes()

    def check_processes(self) -> list:
        """Log processes and batch jobs that ended on their own (each launcher says how) and
        record it in the state file."""
        with self._lock:
            if self._stopping:
                return []
            ended = []
            launchers = list(self.engine_sets.values()) + ([self.controller] if self.controller else [])
            for launcher in launchers:
                role = "controller" if launcher is self.controller else "engine"
                ended += [(role, p) for p in launcher.exited()]
            if ended and self.state_file.exists():
                self.write_state()
            elif ended:  # stopped from another process (cluster stop): nothing left to watch
                self._watch_stop.set()
            for role, p in ended:
                log.warning("%s", p.describe_end(role))
            return [p for _, p in ended]

    # -- context managers ----------------------------------------------------------------------

    def __enter__(self):
        return self.start_and_connect_sync()

    def __exit__(self, *exc):
        self.stop_cluster_sync()

    async def __aenter__(self):
        return await self.start_and_connect()

    async def __aexit__(self, *exc):
        await self.stop_cluster()


for _name in ("start_controller", "stop_controller", "start_engines", "stop_engines", "signal_engines",
              "restart_engines", "connect_client", "wait_for_engines", "start_cluster", "start_and_connect",
              "stop_cluster"):
    setattr(Cluster, _name, _awaitable(getattr(Cluster, _name + "_sync")))


class Progress:
    """'engines registered 3/4' on a terminal, rewritten in place; silent otherwise."""

    def __init__(self, total: int, stream=None):
        self.total = total
        self.stream = stream or sys.stderr
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.last = None

    def show(self, count: int):
        if self.tty and count != self.last:
            self.stream.write("\rengines registered %d/%d" % (count, self.total))
            self.stream.flush()
            self.last = count

    def done(self):
        if self.tty and self.last is not None:
            self.stream.write("\n")
            self.stream.flush()
