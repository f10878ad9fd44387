"""The task table: every engine the hub knows, and which tasks each one holds.

The hub's loop owns it and is the only writer: it registers and removes engines, and
carries out the scheduler's decisions through :meth:`TaskTable.assign` and
:meth:`TaskTable.take_back`. The scheduler only reads it, so the policy can be tested on a
table built by hand, without processes or sockets.

A task is *on* an engine from the moment it is sent until its reply arrives, the engine
gives it back (a steal, or its drain), or the engine is lost. The engine runs what it holds in the
order it came, so the oldest task an engine holds is the one most likely running; the
others are prefetched and may still be moved to an engine that is idle.

An engine that drains (its batch job ends soon) stays in the table until it leaves, but
not among the ``open`` engines the scheduler gives work to. Engines that will drain one
day carry when (``drain_at``), so a task with a ``timeout`` goes only where it can run
that long.
"""
from __future__ import annotations


class EngineState:
    """One registered engine, as the scheduler sees it.

    ``busy_since``: when its current run of work began, as far as the hub can tell (the
    last answer it sent, or the moment it was given work while idle); a task it holds
    beyond the oldest one has waited at least that long. ``steal``: the steal request in
    flight to it (its thief's id), so no second one follows before it answers.
    ``drain_at``: when (time.monotonic) it will stop taking tasks before its job ends, or
    None; ``end_time``: that end, in seconds since the epoch, as the engine said."""

    __slots__ = ("id", "uuid", "ident", "heart", "load", "outstanding", "pid", "hostname", "last_answer",
                 "last_assigned", "busy_since", "completed", "steal", "stealing", "tags", "job", "end_time",
                 "drain_at", "draining")

    def __init__(self, id, uuid="", ident=b"", heart=b"", pid=None, hostname="", tags=(), job=None,
                 end_time=None, drain_at=None):
        self.id = id
        self.uuid = uuid
        self.ident = ident
        self.heart = heart
        self.load = 0
        self.last_answer = 0.0
        self.last_assigned = 0.0
        self.busy_since = 0.0
        self.completed = 0
        self.outstanding: dict = {}
        self.pid = pid
        self.hostname = hostname
        self.steal = None
        self.stealing = False
        self.tags = frozenset(tags)
        self.job = job
        self.end_time = end_time
        self.drain_at = drain_at
        self.draining = False

    def movable(self):
        """The load-balanced tasks it holds beyond the oldest one: prefetched, perhaps unstarted."""
        tasks = iter(self.outstanding.values())
        next(tasks, None)
        return [t for t in tasks if t.lb and not t.abort_requested]


class Task:
    __slots__ = ("msg_id", "header", "client", "frames", "engine", "lb", "targets", "after", "follow",
                 "timeout", "retries", "unmet_on", "avoid", "attempts", "coalescer", "abort_requested", "tags",
                 "waits_for", "job_losses")

    def __init__(self, msg_id, header, client, frames, lb, targets=None):
        self.msg_id = msg_id
        self.header = header
        self.client = client
        self.frames = frames
        self.engine = None
        self.lb = lb
        self.targets = targets
        self.after = self.follow = None
        self.timeout = None
        self.retries = 0
        self.unmet_on: set = set()
        self.avoid: set = set()
        self.attempts = 0
        self.coalescer = None
        self.abort_requested = False
        self.tags = frozenset()
        self.waits_for = ""
        """Why it is parked: no engine that is open and meets its @depend check, its tags, or
        its timeout before draining is registered ("depend", "tags", "walltime")."""
        self.job_losses = 0
        """Times the end of an engine's batch job took it down (not counted against retries)."""

    def may_run_on(self, engine, now) -> bool:
        """Whether ``engine`` may take it now: targets, @depend rejections, tags, and time
        enough before the engine drains to run for its ``timeout``."""
        return ((self.targets is None or engine.id in self.targets) and engine.id not in self.unmet_on
                and self.tags <= engine.tags and not engine.draining
                and (engine.drain_at is None or not self.timeout or engine.drain_at >= now + self.timeout))


class TaskTable:
    def __init__(self):
        self.engines: dict = {}
        self.open: dict = {}
        """The engines that take new tasks: all but those draining."""
        self.by_ident: dict = {}
        self.by_heart: dict = {}
        self.pending: dict = {}
        self.stacked = 0
        """Engines holding two tasks or more: the only possible victims of a steal."""
        self.ending = 0
        """Open engines that will drain one day (a drain_at): only then do timeouts limit where tasks go."""
        self.version = 0
        """Counts changes to the open engines, so what is derived from them can be cached."""

    def add_engine(self, engine: EngineState):
        self.engines[engine.id] = engine
        self.open[engine.id] = engine
        self.by_ident[engine.ident] = engine
        self.by_heart[engine.heart] = engine
        self.ending += engine.drain_at is not None
        self.version += 1

    def set_drain_at(self, engine: EngineState, drain_at):
        """An open engine's new drain time (its job was extended), or None."""
        if engine.id in self.open:
            self.ending += (drain_at is not None) - (engine.drain_at is not None)
            self.version += 1
        engine.drain_at = drain_at

    def close_engine(self, engine: EngineState):
        """The engine drains: it keeps what it runs, and gets nothing new."""
        if self.open.pop(engine.id, None) is not None:
            engine.draining = True
            self.ending -= engine.drain_at is not None
            self.version += 1

    def remove_engine(self, engine: EngineState) -> list:
        """Forget an engine; returns the tasks it held, which the hub must answer or requeue."""
        self.close_engine(engine)
        self.engines.pop(engine.id, None)
        self.by_ident.pop(engine.ident, None)
        self.by_heart.pop(engine.heart, None)
        held = list(engine.outstanding.values())
        for task in held:
            self.pending.pop(task.msg_id, None)
        engine.outstanding.clear()
        if engine.load > 1:
            self.stacked -= 1
        engine.load = 0
        return held

    def assign(self, engine: EngineState, task: Task, now: float):
        if not engine.load:
            engine.busy_since = now
        task.engine = engine.id
        task.attempts += 1
        engine.outstanding[task.msg_id] = task
        engine.load += 1
        if engine.load == 2:
            self.stacked += 1
        engine.last_assigned = now
        self.pending[task.msg_id] = task

    def answered(self, msg_id, now: float):
        """The task its reply is for, off its engine; None if it is not on one."""
        task = self.pending.pop(msg_id, None)
        if task is None:
            return None
        engine = self.engines.get(task.engine)
        if engine is not None and engine.outstanding.pop(msg_id, None) is not None:
            engine.load -= 1
            if engine.load == 1:
                self.stacked -= 1
            engine.completed += 1
            engine.last_answer = engine.busy_since = now
        return task

    def take_back(self, engine: EngineState, msg_ids) -> list:
        """Tasks the engine gave back unstarted: off it, and counted as never sent there."""
        taken = []
        for msg_id in msg_ids:
            task = engine.outstanding.pop(msg_id, None)
            if task is None:
                continue
            self.pending.pop(msg_id, None)
            engine.load -= 1
            if engine.load == 1:
                self.stacked -= 1
            task.engine = None
            taken.append(task)
        return taken
