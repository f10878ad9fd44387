"""The Cluster: a controller and engine sets started by launchers, and their state file.

Every method has a blocking ``_sync`` form, which is the implementation, and an awaitable
form that runs it in a worker thread, so it never blocks an event loop. Because the
``_sync`` forms need no event loop of their own, they also work inside a running one (a
Jupyter notebook).

A running cluster is described by ``security/cluster-<id>.json`` in its profile: the
launchers with their pids or job ids, written before anything is started, so another
process can find the cluster (``Cluster.from_file``) and stop it.

Engine pools. ``n`` engines may be split into ``[cluster] jobs`` engine sets (one launcher,
one batch job each), and with ``keep_engines`` the watcher thread keeps them at that number:
pool.py decides which set to replace and when, this module carries it out::

    watcher thread, every WATCH_INTERVAL              the Cluster lock
    ─────────────────────────────────────             ───────────────────────────────────
    poll each batch system (JobPoller: one command    (not held: commands are slow)
      per system, at most once per poll_interval),
      exited() of each launcher, end times of jobs
      that started running
    note states in the EngineSetRecords, log ends,    held
      pool.plan()
    record each replacement in the state file (an     not held while its job is submitted;
      engine set without a job yet), submit it,         stop waits for it (_in_flight) and
      record its job id                                 then stops it too

A stop in another process (``cluster stop``) is ordered against replacements by the state
file's lock (statelock.py), held by the stop from reading the file to removing it and by a
replacement from recording it to recording its job id.
"""
from __future__ import annotations

import asyncio
import atexit
import collections
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

from ..config import ConfigError, load_config, override_arg, split_overrides
from ..connection import connection_file_path
from ..error import CannotSignal, ClusterError, JobQueryError, MiniparError, TimeoutError
from ..client.engines import ENGINE_TABLE_REFRESH
from ..jobs import job_end_time
from ..pidfile import same_process
from ..profile import locate_profile_dir
from . import pool
from .launchers import import_launcher, launcher_class, launcher_settings
from .launchers.base import ControllerLauncher, EngineSetLauncher, tail
from .launchers.batch import COMMAND_TIMEOUT, DONE, FIND_BY_NAME_TIMEOUT, RUNNING, BatchLauncher, JobPoller
from .statelock import lock_path, state_file_lock

log = logging.getLogger("minipar.cluster")

WATCH_INTERVAL = 0.5
"""Seconds between checks that the cluster's processes still run (batch systems are asked
less often: [cluster] poll_interval)."""

JOB_CHECK_INTERVAL = 2.0
"""Seconds between checks, while waiting for engines, that some engine job still runs; the
watcher asks the batch systems this often then (if poll_interval is longer), so engines that
fail in their jobs fail the wait soon, at one command per system however many jobs there are."""
PROGRESS_INTERVAL = 0.1
"""Seconds between progress updates while waiting for engines."""

SUBMISSION_WAIT = COMMAND_TIMEOUT + FIND_BY_NAME_TIMEOUT + 5.0
"""Seconds stop waits for a submission under way, so it can stop that job too: a submit
command may take COMMAND_TIMEOUT, and looking the job up by its name FIND_BY_NAME_TIMEOUT."""

END_TIME_ATTEMPTS = 3
"""Polls at which a running job's walltime end is asked before the pool does without it: just
after a job starts, a system may not list it as running yet (Grid Engine's "t" state)."""

REPLACEMENT_LOCK_WAIT = 1.0
"""Seconds a replacement waits for the state file's lock, which `cluster stop` holds while it
stops the cluster; the replacement is tried again at the next poll."""

POOL_STATES = {DONE: pool.ENDED, RUNNING: pool.RUNNING}
"""A batch job's state as a poll gives it, as the pool's records keep it (else: pending)."""


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
    remove(lock_path(path))
    return True


CHILD_SECTIONS = {"controller": ("controller", "db"), "engine": ("engine",)}
"""Setting roots the controller and the engines read themselves, from the profile: given as
overrides (``--engine.drain_before=600``, ``config_overrides``), they go on those processes'
command lines, since the profile does not hold them."""


def split_by_owner(overrides: dict) -> tuple:
    """(the Cluster's own overrides, the controller's, the engines') from ``{"section.key": value}``,
    the latter two as ``--section.key=value`` arguments."""
    own, children = {}, {"controller": [], "engine": []}
    for key, value in overrides.items():
        root = key.split(".", 1)[0]
        for child, roots in CHILD_SECTIONS.items():
            if root in roots:
                children[child].append(override_arg(key, value))
                break
        else:
            own[key] = value
    return own, children["controller"], children["engine"]


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

    creates_profile = True
    """Whether a new Cluster makes its profile dir; ``cluster render`` plans with one that does not."""

    def __init__(self, *, profile=None, profile_dir=None, cluster_id=None, n=None, engines=None,
                 controller=None, controller_ip=None, controller_location=None, controller_args=None,
                 engine_args=None, log_level=None, shutdown_atexit=None, engine_timeout=None, jobs=None,
                 keep_engines=None, delay=0.0, config_overrides=None, **unknown):
        """``config_overrides``: ``{"section.key": value}`` for any setting (strings are
        coerced as on a command line), below the keyword arguments; controller, db and engine
        settings are passed on to those processes."""
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
        self.profile_dir = locate_profile_dir(profile, profile_dir, create=self.creates_profile)
        self.config_overrides = dict(config_overrides or {})
        overrides = dict(self.config_overrides)
        overrides.update({k: v for k, v in {
            "cluster.n": n, "cluster.engines": engines, "cluster.controller": controller,
            "cluster.controller_ip": controller_ip, "cluster.controller_location": controller_location,
            "cluster.controller_args": controller_args, "cluster.engine_args": engine_args,
            "cluster.log_level": log_level, "cluster.shutdown_atexit": shutdown_atexit,
            "cluster.engine_timeout": engine_timeout, "cluster.jobs": jobs, "cluster.keep_engines": keep_engines,
        }.items() if v is not None})
        self.config = load_config(self.profile_dir, overrides, source="Cluster()")
        _, self._controller_overrides, self._engine_overrides = split_by_owner(self.config_overrides)
        cfg = self.config.cluster
        self.cfg = cfg
        self.n = cfg.n or os.cpu_count() or 1
        self.cluster_id = new_cluster_id() if cluster_id is None else cluster_id
        self.controller_class = launcher_class(cfg.controller, "controller", self.config.source_of("cluster.controller"))
        self.engine_class = launcher_class(cfg.engines, "engines", self.config.source_of("cluster.engines"))
        self.controller = None
        self.engine_sets: dict = {}
        self.set_records: dict = {}
        """Engine set id -> pool.EngineSetRecord: its tags, and its life as the pool sees it."""
        self.keepers: list = []
        """Processes ({"pid", "start"}) that keep engine sets of this cluster at their number
        (`cluster start --keep-engines`): `stop` asks them to stop the cluster first."""
        self.start_time = None
        self._client = None
        self._lock = threading.RLock()
        self._submissions = threading.Condition(self._lock)
        self._in_flight = 0
        self._stopping = False
        self._watcher = None
        self._watch_stop = threading.Event()
        self._own_sets: set = set()
        self._dropped_sets: set = set()
        self._sets_started = 0
        self._engines_started = 0
        self._last_submit = float("-inf")
        self._limits = pool.PoolLimits(cfg.max_jobs, cfg.submit_interval)
        self._poller = JobPoller(cfg.poll_interval)
        self._drain_before = None
        self._controller_ended = False
        self._owns_controller = True
        self._new_state_file = True
        self._waits_logged: set = set()
        self._end_time_failures: collections.Counter = collections.Counter()
        self._unsaved = False
        if cfg.shutdown_atexit:
            ref = weakref.ref(self)
            atexit.register(lambda: ref() is not None and ref()._stop_at_exit())

    def __repr__(self):
        return "<Cluster(cluster_id=%r, profile_dir=%r, controller=%s, engines=%d)>" % (
            self.cluster_id, str(self.profile_dir), "running" if self.controller_running else "stopped",
            self.target_engines)

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
            "start_time": self.start_time, "owner_pid": os.getpid(), "keepers": list(self.keepers),
            "sets_started": self._sets_started, "engines_started": self._engines_started,
            "controller": self.controller.to_dict() if self.controller else None,
            "engines": {k: dict(v.to_dict(), record=self.record(k).to_dict()) for k, v in self.engine_sets.items()},
        }

    def write_state(self) -> None:
        """Write the state file. Each engine set is written by the process that started it: the
        others' are kept as the file has them (`cluster engines` beside a running `cluster
        start`, each replacing its own jobs), unless this process stopped them."""
        with self._lock:
            self._write(self._merged_state())

    def _merged_state(self) -> dict:
        state = self.to_dict()
        on_disk = self._state_on_disk()
        if self._new_state_file:  # what a stale file of this cluster id held is not kept
            self._dropped_sets.update(set(on_disk.get("engines", {})) - self._own_sets)
            self._new_state_file = False
        state["engines"] = self._merged_engine_sets(state["engines"], on_disk.get("engines", {}))
        state["keepers"] = self._merged_keepers(on_disk.get("keepers", []))
        return state

    def _write(self, state: dict) -> None:
        path = self.state_file
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(".%s.%d.tmp" % (path.name, os.getpid()))
        fd = os.open(str(tmp), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(state, f, indent=2)
        os.replace(str(tmp), str(path))

    def _merged_engine_sets(self, mine: dict, on_disk: dict) -> dict:
        merged = {k: v for k, v in mine.items() if k in self._own_sets}
        for set_id, d in on_disk.items():
            if set_id not in merged and set_id not in self._dropped_sets:
                merged[set_id] = d
        return merged

    def _merged_keepers(self, on_disk: list) -> list:
        """This process if it keeps engine sets, and the other keepers still alive."""
        merged = {}
        for k in list(self.keepers) + [k for k in on_disk if isinstance(k, dict) and "pid" in k]:
            own = k["pid"] == os.getpid()
            if k["pid"] not in merged and (k in self.keepers if own else same_process(k["pid"], k.get("start"))):
                merged[k["pid"]] = k
        return list(merged.values())

    def _state_on_disk(self) -> dict:
        try:
            state = json.loads(self.state_file.read_text())
        except (OSError, ValueError):
            return {}
        return state if isinstance(state, dict) else {}

    def remove_state(self) -> None:
        remove(self.state_file)
        remove(lock_path(self.state_file))

    def _save_state(self) -> None:
        """The state file, or none once nothing is left to record."""
        with self._lock:
            state = self._merged_state()
            if state["controller"] is None and not state["engines"]:
                self.remove_state()
            else:
                self._write(state)

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
            self.set_records[set_id] = pool.EngineSetRecord.from_dict(d.get("record"))
        self.keepers = [k for k in state.get("keepers", []) if isinstance(k, dict) and "pid" in k]
        self._owns_controller = False
        self._new_state_file = False
        self._sets_started = state.get("sets_started", len(self.engine_sets))
        self._engines_started = state.get("engines_started", sum(s.n for s in self.engine_sets.values()))
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

    @property
    def controller_ended(self) -> bool:
        """Whether the controller this Cluster started has ended, cheap enough to ask in a loop:
        a process is looked at now; a batch job as the watcher last saw it, which asks the batch
        system once per [cluster] poll_interval (``controller_running`` asks it each second)."""
        if self.controller is None:
            return False
        if (isinstance(self.controller, BatchLauncher) and self._owns_controller
                and self._watcher is not None and self._watcher.is_alive()):
            return self._controller_ended
        return not self.controller.running

    def _controller_args(self) -> list:
        cfg = self.cfg
        args = list(cfg.controller_args) + self._controller_overrides
        if cfg.controller_ip:
            args.append("--ip=%s" % cfg.controller_ip)
        if cfg.controller_location:
            args.append("--location=%s" % cfg.controller_location)
        return args

    def _new_controller(self) -> ControllerLauncher:
        return self.controller_class(self.profile_dir, self.cluster_id, self.cfg.log_level, self._controller_args(),
                                     settings=launcher_settings(self.config, self.controller_class, "controller"))

    def start_controller_sync(self):
        """Start the controller and wait until it has written its connection files."""
        with self._lock:
            if self.controller_running:
                return
            self._stopping = False
            self._controller_ended = False
            self._owns_controller = True
            self.start_time = self.start_time or time.time()
            self.controller = self._new_controller()
            self.write_state()
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

    def start_engines_sync(self, n=None, engine_set_id=None, engines=None, tags=None, jobs=None):
        """Start n more engines (default: the cluster's n) as ``jobs`` engine sets (default:
        [cluster] jobs), each one launcher, so one batch job; returns the engine set's id, or
        the list of their ids when there are several.

        ``engines`` is these sets' launcher, a short name or class as for ``Cluster(engines=...)``
        (default: the cluster's); ``tags`` are labels their engines register with ([engine]
        tags), so ``rc.load_balanced_view(tags=["gpu"])`` picks them. With [cluster]
        keep_engines, a set that ends or drains is replaced while the cluster runs."""
        planned = self._plan_engine_sets(n, engine_set_id, engines, tags, jobs)
        set_ids = self._start_planned(planned)
        return set_ids[0] if len(set_ids) == 1 else set_ids

    def _plan_engine_sets(self, n, engine_set_id=None, engines=None, tags=None, jobs=None) -> list:
        """[(set id, launcher, record)] for n engines split into jobs engine sets, none started yet;
        a ClusterError naming the setting if the split is not allowed."""
        n = self.n if n is None else n
        if n < 1:
            raise ValueError("start_engines needs n >= 1, got %r" % n)
        pool.check_limits(self.cfg)
        cls = self._engine_launcher_class(engines)
        tags = engine_tags(tags)
        jobs = self.cfg.jobs if jobs is None else jobs
        with self._lock:
            sizes = pool.split_engines(n, jobs, self.cfg.max_array_size, self.cfg.max_jobs,
                                       pool.live_jobs(self.set_records))
            return [(self._new_set_id(engine_set_id, i, len(sizes)), self._new_engine_set(cls, size, tags),
                     pool.EngineSetRecord(tags=tags, keep=self.cfg.keep_engines)) for i, size in enumerate(sizes)]

    def _engine_launcher_class(self, engines):
        if engines is None:
            return self.engine_class
        if isinstance(engines, type) and issubclass(engines, EngineSetLauncher):
            return engines
        return launcher_class(_launcher_name(engines), "engines", "start_engines(engines=...)")

    def _new_set_id(self, wanted, index: int, count: int) -> str:
        if wanted:
            set_id = wanted if count == 1 else "%s-%d" % (wanted, index + 1)
        else:
            set_id = "%d-%d" % (time.time(), self._sets_started)
        if set_id in self.engine_sets:
            raise ValueError("engine set %r is already running (engine sets: %s)" % (set_id, ", ".join(self.engine_sets)))
        self._sets_started += 1
        return set_id

    def _new_engine_set(self, cls, n: int, tags) -> EngineSetLauncher:
        args = list(self.cfg.engine_args) + self._engine_overrides + (
            [override_arg("engine.tags", list(tags))] if tags else [])
        launcher = cls(self.profile_dir, self.cluster_id, self.cfg.log_level, args, n=n,
                       first_index=self._engines_started, settings=launcher_settings(self.config, cls, "engines"))
        self._engines_started += n
        return launcher

    def _start_planned(self, planned) -> list:
        with self._lock:
            self._stopping = False
            self.start_time = self.start_time or time.time()
        for set_id, launcher, record in planned:
            delay = self._last_submit + self.cfg.submit_interval - time.time()
            if delay > 0:
                time.sleep(delay)
            self._submit(set_id, launcher, record)
        self._start_watcher()
        return [set_id for set_id, _, _ in planned]

    def _submit(self, set_id: str, launcher, record, replacing: str = "") -> None:
        """Record the engine set in the state file, then start it (submit its job) without the
        lock held: stop waits for a submission under way, then stops its job too."""
        with self._lock:
            if self._stopping:
                raise ClusterError("the cluster is stopping, so engine set %s was not started" % set_id)
            if replacing and not self.state_file.exists():
                raise ClusterError("%s is gone, so engine set %s was not started" % (self.state_file, set_id))
            self.engine_sets[set_id] = launcher
            self.set_records[set_id] = record
            self._own_sets.add(set_id)
            self._dropped_sets.discard(set_id)
            self._in_flight += 1
            self.write_state()
        try:
            launcher.start()
        except BaseException:
            with self._lock:
                self._last_submit = time.time()
                if not launcher.leftover():
                    self._forget_set(set_id)
                self._submission_over()
            raise
        with self._lock:
            self._last_submit = time.time()  # submit_interval counts from the submit command's end
            if not isinstance(launcher, BatchLauncher):
                record.note(pool.RUNNING, time.time())
            if replacing and not self.state_file.exists():
                self._in_flight -= 1
                self._submissions.notify_all()
                self._stopped_elsewhere()
                raise ClusterError("%s disappeared while engine set %s was submitted; stopped it" % (
                    self.state_file, set_id))
            self._submission_over()

    def _submission_over(self) -> None:
        self._in_flight -= 1
        self._submissions.notify_all()
        self._save_state()

    def _wait_for_submissions(self) -> None:
        """With the lock held: until no engine set is being started, so stop sees its job."""
        if not self._submissions.wait_for(lambda: self._in_flight == 0, SUBMISSION_WAIT):
            log.warning("a submission still runs after %gs; stopping without waiting for it", SUBMISSION_WAIT)

    def _forget_set(self, set_id: str) -> None:
        self.engine_sets.pop(set_id, None)
        self.set_records.pop(set_id, None)
        self._own_sets.discard(set_id)
        self._dropped_sets.add(set_id)

    def record(self, set_id: str) -> pool.EngineSetRecord:
        """The engine set's record (tags, pool state), made empty for a set added without one."""
        return self.set_records.setdefault(set_id, pool.EngineSetRecord())

    @property
    def target_engines(self) -> int:
        """How many engines the cluster's engine sets hold, not counting sets being replaced."""
        return sum(s.n for set_id, s in list(self.engine_sets.items()) if not self.record(set_id).replaced_by)

    @property
    def engine_processes(self) -> list:
        return [p for s in self.engine_sets.values() for p in getattr(s, "processes", [])]

    def stop_engines_sync(self, engine_set_id=None):
        """Stop every engine set, or the one named (or a list of them); a kept set stopped this
        way is not replaced."""
        with self._lock:
            self._stopping = True
            try:
                self._wait_for_submissions()
                for set_id in self._engine_set_ids(engine_set_id):
                    self.engine_sets[set_id].stop(self.cfg.stop_timeout)
                    self._forget_set(set_id)
                self._save_state()
            finally:
                self._stopping = False

    def _engine_set_ids(self, engine_set_id) -> list:
        if engine_set_id is None:
            return list(self.engine_sets)
        wanted = [engine_set_id] if isinstance(engine_set_id, str) else list(engine_set_id)
        for set_id in wanted:
            if set_id not in self.engine_sets:
                raise KeyError("no engine set %r in this cluster (engine sets: %s)"
                               % (set_id, ", ".join(self.engine_sets) or "none"))
        return wanted

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
        """Replace every engine (or one engine set's) with fresh processes (empty namespace, new
        ids), each set with its launcher and tags."""
        with self._lock:
            ids = self._engine_set_ids(engine_set_id)
            again = [(i, type(self.engine_sets[i]), self.engine_sets[i].n, self.record(i).tags) for i in ids]
        if ids:
            self.stop_engines_sync(ids)
        for set_id, cls, n, tags in again or [(None, None, self.n, None)]:
            self.start_engines_sync(n, set_id, engines=cls, tags=tags, jobs=1)
        if self._client is not None:
            self.wait_for_engines_sync(sum(n for _, _, n, _ in again) or self.n, fresh=True)

    # -- job scripts -----------------------------------------------------------------------

    def job_scripts(self, n=None) -> list:
        """[(title, path, text)] for each job script start_cluster would submit, the controller's
        first, without writing or submitting anything (``cluster render``). Engines whose
        launcher writes no script (local, ssh, mpi) are a ClusterError; a controller whose
        launcher writes none is left out."""
        if not hasattr(self.engine_class, "script_text"):
            raise ClusterError("the %s engine launcher submits no job script; render shows those of batch "
                               "launchers (engines: pbs, sge, lsf, slurm, htcondor or windowshpc)"
                               % (getattr(self.engine_class, "name", "") or self.engine_class.__name__))
        scripts = []
        controller = self._new_controller()
        if hasattr(controller, "script_text"):
            scripts.append(("controller job (%s)" % controller.system, controller.script_path,
                            controller.script_text()))
        planned = self._plan_engine_sets(n)
        for i, (_, launcher, _) in enumerate(planned):
            scripts.append(("engines job %d of %d (%s, %d engine%s)" % (i + 1, len(planned), launcher.system,
                                                                        launcher.n, "" if launcher.n == 1 else "s"),
                            launcher.script_path, launcher.script_text()))
        return scripts

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

        Fails early when the engine processes have all died, or every engine job ended with
        none to replace it, and the error names their logs with their last lines."""
        n = self.target_engines if n is None else n
        timeout = self.cfg.engine_timeout if timeout is None else timeout
        client = self.connect_client_sync()
        known = set(client.ids) if fresh else set()
        deadline = time.monotonic() + timeout
        next_job_check = time.monotonic() + JOB_CHECK_INTERVAL
        next_table_refresh = time.monotonic() + ENGINE_TABLE_REFRESH
        progress = Progress(n)
        self._poller.interval = min(self.cfg.poll_interval, JOB_CHECK_INTERVAL)
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
                    if self.engine_sets_over():
                        raise ClusterError(self._engines_problem("every engine job ended", count, n))
                if time.monotonic() > deadline:
                    raise TimeoutError(self._engines_problem(
                        "engines did not register within %gs (cluster.engine_timeout)" % timeout, count, n))
                if time.monotonic() > next_table_refresh:  # as Client.wait_for_engines does
                    next_table_refresh = time.monotonic() + ENGINE_TABLE_REFRESH
                    client._refresh_engines()
                time.sleep(PROGRESS_INTERVAL)
        finally:
            self._poller.interval = self.cfg.poll_interval
            progress.done()

    def engine_sets_over(self, set_ids=None) -> bool:
        """Whether every engine set (or each of set_ids) has ended with none to replace it, as
        the watcher last saw (this thread looks itself when no watcher runs)."""
        if self._watcher is None or not self._watcher.is_alive():
            self.check_processes()
        with self._lock:
            ids = [i for i in (self.engine_sets if set_ids is None else set_ids) if i in self.engine_sets]
            return bool(ids) and all(self.record(i).state == pool.ENDED and not self._will_replace(i) for i in ids)

    def own_engine_set_ids(self) -> list:
        """The engine sets this Cluster started (replacements included), not yet dropped."""
        with self._lock:
            return [i for i in self.engine_sets if i in self._own_sets]

    def _will_replace(self, set_id: str) -> bool:
        record = self.record(set_id)
        return record.keep and set_id in self._own_sets and not record.given_up

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
        planned = self._plan_engine_sets(n)  # a split the settings refuse fails before anything starts
        self.start_controller_sync()
        if self.delay:
            time.sleep(self.delay)
        self._start_planned(planned)

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
        """Stop engines, then the controller; close the client; remove the state file. The state
        file's lock is held throughout, so no process submits a job this stop would miss."""
        with state_file_lock(self.state_file, SUBMISSION_WAIT):
            self._stop_cluster()

    def _stop_cluster(self):
        with self._lock:
            self._stopping = True
            self._watch_stop.set()
            self._wait_for_submissions()
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
                    self._forget_set(set_id)
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

    # -- the watcher: crashes, job ends and the engine pool ------------------------------------

    def _start_watcher(self):
        if self._watcher is None or not self._watcher.is_alive():
            self._watch_stop.clear()
            self._watcher = threading.Thread(target=self._watch, name="minipar-cluster-watch", daemon=True)
            self._watcher.start()

    def _watch(self):
        failed = ""
        while not self._watch_stop.wait(WATCH_INTERVAL):
            try:
                self.check_processes()
            except Exception as e:  # noqa: BLE001 - the watcher must outlive one bad check
                if repr(e) != failed:
                    log.exception("checking the cluster's processes and jobs failed; trying again")
                failed = repr(e)
            else:
                failed = ""

    def check_processes(self) -> list:
        """Log processes and batch jobs that ended on their own (each launcher says how), record
        it in the state file, and keep kept engine sets at their number: see the module
        docstring for what runs with the lock held and what does not."""
        with self._lock:
            if self._stopping:
                return []
            sets = {i: s for i, s in self.engine_sets.items() if i in self._own_sets}
            controller = self.controller if self._owns_controller else None
        polled = self._poller.poll(list(sets.values()) + ([controller] if controller else []))
        ended = [(set_id, p) for set_id, launcher in sets.items() for p in launcher.exited()]
        ended += [(None, p) for p in (controller.exited() if controller else [])]
        end_times = self._ask_end_times(sets, polled)
        with self._lock, state_file_lock(self.state_file, 0) as locked:
            if self._stopping:
                return []
            if locked and not self.state_file.exists():
                self._stopped_elsewhere()
                replacements, drained = [], {}
            else:
                drained, changed = self._note(sets, polled, ended, end_times)
                replacements = self._plan_replacements()
                self._unsaved = self._unsaved or bool(ended or end_times or changed or replacements)
                if self._unsaved and locked:  # else `cluster stop` holds it: this is written later
                    self.write_state()
                    self._unsaved = False
        for set_id, p in ended:
            record = self.set_records.get(set_id)
            if set_id in drained:
                log.info("%s; engine set %s replaced it", p.describe_end("engine"), drained[set_id])
            elif record is not None and record.drained:
                log.info("%s; its engines had drained before its walltime", p.describe_end("engine"))
            else:
                log.warning("%s", p.describe_end("controller" if set_id is None else "engine"))
        for replacement in replacements:
            self._replace(*replacement)
        return [p for _, p in ended]

    def _ask_end_times(self, sets: dict, polled: dict) -> dict:
        """{set id: walltime end or None} for kept batch jobs seen running for the first time,
        and again once their drain time comes (an extension puts the replacement off): asked
        without the lock (a batch command)."""
        answers = {}
        now = time.time()
        for set_id, launcher in sets.items():
            record = self.set_records.get(set_id)
            if (polled.get(launcher) != RUNNING or record is None or not self._will_replace(set_id)
                    or (record.end_time_asked and not record.recheck_due(now))):
                continue
            try:
                answers[set_id] = job_end_time(launcher.system, launcher.job_id)
            except JobQueryError as e:
                self._end_time_failures[set_id] += 1
                if self._end_time_failures[set_id] >= END_TIME_ATTEMPTS:
                    log.warning("cannot ask when %s job %s reaches its walltime, so it is replaced once it has "
                                "ended, not before: %s", launcher.system, launcher.job_id, e)
                    answers[set_id] = None
        return answers

    def _note(self, sets: dict, polled: dict, ended: list, end_times: dict) -> tuple:
        """Take what the watcher saw into the records (with the lock held); drop the sets that
        ended after their replacement was submitted. Returns ({dropped set id: its replacement},
        whether any record changed)."""
        now = time.time()
        ended_sets = {set_id for set_id, _ in ended}
        self._controller_ended = self._controller_ended or None in ended_sets
        drained, changed = {}, False
        for set_id, launcher in sets.items():
            record = self.set_records.get(set_id)
            if record is None or self.engine_sets.get(set_id) is not launcher:
                continue
            before = record.state
            if launcher in polled:
                record.note(POOL_STATES.get(polled[launcher], pool.PENDING), now)
            elif set_id in ended_sets and not launcher.running:
                record.note(pool.ENDED, now)
            if set_id in end_times:
                if record.end_time_asked:
                    if record.learn_later_end(end_times[set_id], self.drain_before):
                        log.info("engine set %s: %s job %s was extended; it now ends at %s and is replaced at %s",
                                 set_id, launcher.system, launcher.job_id, pool.clock(record.end_time),
                                 pool.clock(record.drain_at))
                else:
                    record.learn_end_time(end_times[set_id], self.drain_before)
            changed = changed or record.state != before
            if record.state == pool.ENDED and record.replaced_by and record.replaced_by in self.engine_sets:
                drained[set_id] = record.replaced_by
                self._forget_set(set_id)
        return drained, changed

    @property
    def drain_before(self) -> float:
        """The engines' [engine] drain_before: the profile's, unless engine_args set it."""
        if self._drain_before is None:
            value = self.config.engine.drain_before
            try:
                _, overrides = split_overrides(self.cfg.engine_args)
                if "engine.drain_before" in overrides:
                    value = load_config(None, {"engine.drain_before": overrides["engine.drain_before"]}).engine.drain_before
            except ConfigError:
                pass
            self._drain_before = value
        return self._drain_before

    def _plan_replacements(self) -> list:
        """With the lock held: pool.plan()'s replacements as (old set id, new set id, launcher,
        record, reason), the new sets not recorded yet; give-ups and waits are logged."""
        if self._controller_ended or self._watch_stop.is_set():
            return []
        records = {i: self.set_records[i] for i in self.engine_sets if i in self.set_records}
        decisions = pool.plan(records, time.time(), self._last_submit, self._limits, self._own_sets)
        replacements = []
        for action, set_id, reason in decisions:
            old, record = self.engine_sets[set_id], self.set_records[set_id]
            if action == pool.GIVE_UP:
                record.given_up = reason
                log.error("not replacing %s: %s", describe_set(set_id, old), reason)
            elif action == pool.WAIT:
                if (set_id, reason) not in self._waits_logged:
                    log.info("the replacement of %s waits: %s", describe_set(set_id, old), reason)
                self._waits_logged.add((set_id, reason))
            else:
                new_id = self._new_set_id(None, 0, 1)
                launcher = self._new_engine_set(type(old), old.n, record.tags)
                failed = record.failed_starts_after_end() if record.state == pool.ENDED else 0
                replacements.append((set_id, new_id, launcher, pool.EngineSetRecord(
                    tags=list(record.tags), keep=True, replaces=set_id, failed_starts=failed), reason))
                record.replaced_by = new_id
        return replacements

    def _replace(self, old_id: str, new_id: str, launcher, record, reason: str) -> None:
        """Submit one replacement, without the lock held; if it cannot be, try again a poll later."""
        with self._lock:
            old = self.engine_sets.get(old_id)
        with state_file_lock(self.state_file, REPLACEMENT_LOCK_WAIT) as locked:
            if not locked:
                self._replacement_postponed(old_id)
                return
            log.log(logging.WARNING if reason.startswith("it ended") else logging.INFO,
                    "replacing %s: %s", describe_set(old_id, old), reason)
            try:
                self._submit(new_id, launcher, record, replacing=old_id)
            except Exception as e:  # noqa: BLE001 - the pool carries on; the error is logged
                self._replacement_failed(old_id, e)
                return
        log.info("engine set %s (%s) replaces engine set %s", new_id, describe_launcher(launcher), old_id)
        with self._lock:
            old_record = self.set_records.get(old_id)
            if old_record is not None and old_record.state == pool.ENDED:
                self._forget_set(old_id)
                self._save_state()

    def _replacement_postponed(self, old_id: str) -> None:
        """Another process holds the state file (a stop): try again at the next poll."""
        with self._lock:
            record = self.set_records.get(old_id)
            if record is not None:
                record.replaced_by = ""
                record.not_before = time.time() + self.cfg.poll_interval
        log.info("the state file is locked by another process (`cluster stop`?); replacing engine set %s later",
                 old_id)

    def _replacement_failed(self, old_id: str, error: Exception) -> None:
        with self._lock:
            record = self.set_records.get(old_id)
            if record is None or self._stopping or self._watch_stop.is_set():
                return
            record.replaced_by = ""
            record.failed_starts += 1
            record.not_before = time.time() + self.cfg.poll_interval
        log.error("could not submit a replacement for engine set %s: %s; trying again in %gs (cluster.poll_interval)",
                  old_id, error, self.cfg.poll_interval)

    def _stopped_elsewhere(self) -> None:
        """With the lock held: the state file is gone, so `cluster stop` ran in another process.
        Stop watching, and stop the replacements submitted here, which it may not have known."""
        self._watch_stop.set()
        late = [i for i in self._own_sets if self.record(i).replaces and self.record(i).state != pool.ENDED]
        if late:
            log.warning("%s is gone (the cluster was stopped from another process?): stopping engine set(s) %s, "
                        "which this process submitted as replacements", self.state_file, ", ".join(late))
        for set_id in late:
            try:
                self.engine_sets[set_id].stop(self.cfg.stop_timeout)
            except Exception as e:  # noqa: BLE001 - the others are still stopped
                log.warning("could not stop engine set %s: %s", set_id, e)
            self._forget_set(set_id)

    def engine_set_states(self) -> dict:
        """{set id: pending, running, draining or ended}, asking each batch system once (``cluster
        list``): kept sets drain from their drain time, or once their replacement is submitted."""
        polled = JobPoller(0).poll(list(self.engine_sets.values()))
        now = time.time()
        states = {}
        for set_id, launcher in self.engine_sets.items():
            record = self.record(set_id)
            if launcher in polled:
                state = POOL_STATES.get(polled[launcher], pool.PENDING)
            elif isinstance(launcher, BatchLauncher):
                state = pool.ENDED if launcher.ended else pool.PENDING if not launcher.job_id else record.state
            else:
                state = pool.RUNNING if launcher.engines_running() else pool.ENDED
            states[set_id] = pool.DRAINING if state == pool.RUNNING and record.draining(now) else state
        return states

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


def engine_tags(tags) -> list:
    """Tags as a list of strings: one string is one tag."""
    if tags is None:
        return []
    if isinstance(tags, str):
        return [tags]
    tags = list(tags)
    if not all(isinstance(t, str) and t for t in tags):
        raise ClusterError("engine tags must be non-empty strings, got %r" % (tags,))
    return tags


def describe_launcher(launcher) -> str:
    """'slurm job 42, 4 engines' or 'local, 4 engines'."""
    name = getattr(launcher, "name", "") or type(launcher).__name__
    job = " job %s" % launcher.job_id if getattr(launcher, "job_id", "") else ""
    return "%s%s, %d engine%s" % (name, job, launcher.n, "" if launcher.n == 1 else "s")


def describe_set(set_id: str, launcher) -> str:
    return "engine set %s (%s)" % (set_id, describe_launcher(launcher)) if launcher is not None \
        else "engine set %s" % set_id


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
