"""Load-balancing: which engine gets the next task, and when a task may run at all.

Engines that keep answering hold up to ``hwm`` tasks in flight, so a round trip never
leaves one idle when tasks are short. An engine that has answered nothing for
PIPELINE_WINDOW is busy with something long: it gets a new task only once it is idle,
so short tasks are not queued behind a long one while another engine could run them.

A task may wait for others (``after``: run once they finish; ``follow``: run where they
ran). Waiting tasks sit apart from the ready queue and are looked at again only when a
task they depend on finishes, or their timeout passes. A task that can never run ends
with ImpossibleDependency instead of waiting forever. A failed task with ``retries``
left, or one whose ``@depend`` check failed on an engine, goes back to the queue and
avoids the engines it failed on.

A task whose ``@depend`` check failed on every live engine is parked, as ipyparallel's
scheduler keeps it, because an engine that meets it may still register: a new engine
puts every parked task back in the queue. Only a task given ``targets`` fails at once
(ImpossibleDependency) when every one of them rejected it. The task's ``timeout`` bounds
both waits, for dependencies and for such an engine: when it runs out the task fails
with TaskTimeout (minipar's client class for it is also a DependencyTimeout).
"""
from __future__ import annotations

import heapq
import random
import time
from collections import OrderedDict, deque

PIPELINE_WINDOW = 0.05
"""Seconds since an engine's last answer within which it may take more than one task.
Tasks longer than this gain nothing from prefetching, and lose a lot by waiting."""

FINISHED_MEMORY = 1_000_000
"""Finished tasks remembered for dependencies: (engine id, success) each, a few dozen bytes."""


def _eligible(engine, hwm, targets, blacklist, now):
    load = engine.load
    if load >= hwm or (targets is not None and engine.id not in targets) or engine.id in blacklist:
        return False
    return not load or now - engine.last_answer <= PIPELINE_WINDOW


def least_loaded(engines, hwm, targets, blacklist, now):
    """The eligible engine with the fewest tasks in flight."""
    best = None
    for engine in engines:
        if (best is None or engine.load < best.load) and _eligible(engine, hwm, targets, blacklist, now):
            best = engine
            if engine.load == 0:
                break
    return best


def least_recently_used(engines, hwm, targets, blacklist, now):
    """The eligible engine that was given a task longest ago."""
    candidates = [e for e in engines if _eligible(e, hwm, targets, blacklist, now)]
    return min(candidates, key=lambda e: e.last_assigned) if candidates else None


def plain_random(engines, hwm, targets, blacklist, now):
    candidates = [e for e in engines if _eligible(e, hwm, targets, blacklist, now)]
    return random.choice(candidates) if candidates else None


def two_bin(engines, hwm, targets, blacklist, now):
    """Two engines at random; the less recently used of them."""
    candidates = [e for e in engines if _eligible(e, hwm, targets, blacklist, now)]
    if len(candidates) > 2:
        candidates = random.sample(candidates, 2)
    return min(candidates, key=lambda e: e.last_assigned) if candidates else None


def weighted(engines, hwm, targets, blacklist, now):
    """At random, weighted towards engines with fewer tasks in flight."""
    candidates = [e for e in engines if _eligible(e, hwm, targets, blacklist, now)]
    if not candidates:
        return None
    return random.choices(candidates, weights=[1.0 / (1 + e.load) for e in candidates])[0]


SCHEMES = {"leastload": least_loaded, "lru": least_recently_used, "plainrandom": plain_random,
           "twobin": two_bin, "weighted": weighted}


class Dependency:
    """Task ids plus ipyparallel's flags: all (or any) of them, counting successes and/or
    failures as meeting it."""

    __slots__ = ("ids", "all", "success", "failure")

    def __init__(self, ids, all=True, success=True, failure=False):
        self.ids = list(ids)
        self.all = all
        self.success = success
        self.failure = failure

    @classmethod
    def from_metadata(cls, value):
        if not value:
            return None
        if isinstance(value, dict):
            ids = value.get("dependencies", value.get("ids", []))
            return cls(ids, bool(value.get("all", True)), bool(value.get("success", True)),
                       bool(value.get("failure", False)))
        if isinstance(value, str):
            value = [value]
        return cls(value)

    def state(self, finished) -> str:
        """'met', 'unmet' (still possible) or 'impossible'."""
        matched = failed = pending = 0
        for msg_id in self.ids:
            done = finished.get(msg_id)
            if done is None:
                pending += 1
            elif (done[1] and self.success) or (not done[1] and self.failure):
                matched += 1
            else:
                failed += 1
        if self.all:
            return "impossible" if failed else ("unmet" if pending else "met")
        if not self.ids or matched:
            return "met"
        return "unmet" if pending else "impossible"

    def engines(self, finished) -> set:
        return {finished[m][0] for m in self.ids if m in finished}


class Scheduler:
    """The load-balanced queue of one hub; the hub sends, this decides what and where."""

    def __init__(self, hub, scheme: str, hwm: int):
        self.hub = hub
        self.choose = SCHEMES[scheme]
        self.hwm = hwm
        self.ready: deque = deque()
        self.waiting: dict = {}
        self.dependents: dict = {}
        self.timeouts: list = []
        self.timed: dict = {}
        self.parked: dict = {}
        self.dropped: set = set()
        self.finished: OrderedDict = OrderedDict()

    def __len__(self):
        return len(self.ready) - len(self.dropped) + len(self.waiting) + len(self.parked)

    def unassigned(self) -> list:
        dropped = self.dropped
        return [t.msg_id for t in self.ready if t.msg_id not in dropped] + list(self.waiting) + list(self.parked)

    # -- arrivals and completions ------------------------------------------------------------

    def submit(self, task, now):
        deps = [d for d in (task.after, task.follow) if d is not None]
        if task.timeout:
            self._start_timeout(task, now)
        if not deps:
            self.ready.append(task)
            return
        unknown = [m for d in deps for m in d.ids if not self.hub.knows(m)]
        if unknown:
            self.hub.fail_task(task, "InvalidDependency", "dependency on task(s) this controller does not know: %s"
                               % ", ".join(unknown))
            return
        self.waiting[task.msg_id] = task
        self._evaluate(task)

    def _evaluate(self, task):
        """Move a waiting task on if its dependencies are decided either way."""
        states = [(d, d.state(self.finished)) for d in (task.after, task.follow) if d is not None]
        if any(s == "impossible" for _, s in states):
            which = "after" if task.after is not None and task.after.state(self.finished) == "impossible" else "follow"
            self._drop_waiting(task)
            self.hub.fail_task(task, "ImpossibleDependency", "the tasks it must run %s finished in a way that can "
                               "never meet its dependency" % ("after" if which == "after" else "with"))
            return
        if any(s == "unmet" for _, s in states):
            for d, s in states:
                for m in d.ids:
                    if m not in self.finished:
                        self.dependents.setdefault(m, set()).add(task.msg_id)
            return
        if task.follow is not None:
            where = task.follow.engines(self.finished)
            if task.follow.all and len(where) > 1:
                self._drop_waiting(task)
                self.hub.fail_task(task, "ImpossibleDependency", "follow=all: the tasks it must follow ran on "
                                   "different engines %s" % sorted(where))
                return
            task.targets = where if task.targets is None else task.targets & where
        self._drop_waiting(task)
        self.ready.append(task)

    def _drop_waiting(self, task):
        self.waiting.pop(task.msg_id, None)

    def finished_task(self, msg_id, engine_id, ok: bool):
        self.timed.pop(msg_id, None)
        self.finished[msg_id] = (engine_id, ok)
        if len(self.finished) > FINISHED_MEMORY:
            self.finished.popitem(last=False)
        for dependent in self.dependents.pop(msg_id, ()):
            task = self.waiting.get(dependent)
            if task is not None:
                self._evaluate(task)

    def requeue(self, task, engine_id, unmet=False):
        """Put back a task that failed on engine_id: never to run there again if its @depend
        check failed there, else preferably elsewhere."""
        (task.unmet_on if unmet else task.avoid).add(engine_id)
        task.engine = None
        if unmet and task.timeout:
            self._start_timeout(task, time.monotonic())
        self.ready.appendleft(task)

    def engine_registered(self, engine_id):
        """A new engine may meet the @depend checks that every other engine failed: queue
        the parked tasks again (a reused id is a new process, not the one that refused)."""
        if not self.parked:
            return
        tasks = list(self.parked.values())
        self.parked.clear()
        for task in tasks:
            task.unmet_on.discard(engine_id)
        self.ready.extendleft(reversed(tasks))

    def _start_timeout(self, task, now):
        """(Re)start the task's timeout: on submission, and each time an engine rejects it,
        as ipyparallel restarts it whenever a task goes back to waiting."""
        deadline = now + task.timeout
        self.timed[task.msg_id] = (deadline, task)
        heapq.heappush(self.timeouts, (deadline, task.msg_id))

    def check_timeouts(self, now):
        """Fail the tasks whose timeout ran out while they waited: for dependencies, or for an
        engine that meets their @depend check. A task on an engine, or in the queue only for
        a free engine, is not waiting for anything the timeout is about."""
        while self.timeouts and self.timeouts[0][0] <= now:
            deadline, msg_id = heapq.heappop(self.timeouts)
            entry = self.timed.get(msg_id)
            if entry is None or entry[0] != deadline:
                continue
            task = entry[1]
            if self.waiting.pop(msg_id, None) is not None:
                why = "its dependencies were not met within %gs" % task.timeout
            elif self.parked.pop(msg_id, None) is not None:
                why = self._no_engine_in_time(task)
            elif task.engine is None and task.unmet_on:
                self.dropped.add(msg_id)  # still in the ready queue: skipped when its turn comes
                why = self._no_engine_in_time(task)
            else:
                continue
            self.hub.fail_task(task, "TaskTimeout", why)

    @staticmethod
    def _no_engine_in_time(task) -> str:
        return ("no engine meeting its @depend check took it within %gs (the check failed on engines %s)"
                % (task.timeout, sorted(task.unmet_on)))

    def abort(self, msg_ids) -> list:
        """Remove tasks not yet given to an engine; returns them."""
        wanted = set(msg_ids) - self.dropped
        taken = [t for t in self.ready if t.msg_id in wanted]
        if taken:
            self.ready = deque(t for t in self.ready if t.msg_id not in wanted)
        for held in (self.waiting, self.parked):
            for msg_id in wanted & set(held):
                taken.append(held.pop(msg_id))
        return taken

    # -- assigning ---------------------------------------------------------------------------

    def schedule(self, engines, now):
        """Give ready tasks to engines while any can take one."""
        if not engines:
            return
        ready = self.ready
        skipped = []
        live = {e.id for e in engines}
        while ready:
            task = ready.popleft()
            if self.dropped and task.msg_id in self.dropped:
                self.dropped.discard(task.msg_id)
                continue
            engine = self.choose(engines, self.hwm, task.targets, task.unmet_on | task.avoid, now)
            if engine is None and task.avoid:
                engine = self.choose(engines, self.hwm, task.targets, task.unmet_on, now)
            if engine is not None:
                self.hub.assign(engine, task)
                continue
            if task.unmet_on or task.targets is not None:
                allowed = live if task.targets is None else live & task.targets
                if not allowed - task.unmet_on:
                    if task.targets is None:
                        self.parked[task.msg_id] = task
                    else:
                        self._unplaceable(task)
                    continue
            skipped.append(task)
            if task.targets is None and not task.unmet_on:
                break
        if skipped:
            ready.extendleft(reversed(skipped))

    def _unplaceable(self, task):
        if task.unmet_on:
            self.hub.fail_task(task, "ImpossibleDependency", "its @depend check failed on every engine it may "
                               "run on (targets %s; failed on %s)" % (sorted(task.targets), sorted(task.unmet_on)))
        else:
            self.hub.fail_task(task, "ImpossibleDependency", "none of the engines it may run on (targets %s) is "
                               "registered" % sorted(task.targets or ()))
