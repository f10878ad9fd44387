"""Load-balancing policy: which engine gets the next task, when a task may run at all, and
when prefetched work moves to an engine that is idle.

The scheduler is pure policy. It keeps the tasks not yet on an engine (ready, waiting for
dependencies, parked) and reads the hub's :class:`~.tasks.TaskTable`; its answers are
decisions — :class:`Assign`, :class:`Steal`, :class:`Fail` — that the hub's loop carries
out on its sockets. It never sends, never writes the table, and never calls the hub.

Engines hold up to ``hwm`` tasks each, so a round trip never leaves one idle when tasks
are short; an engine that has answered nothing for PIPELINE_WINDOW is busy with
something long and gets a new task only once it is idle. That is a guess, and a burst
can beat it, so balance is kept by stealing: when an engine is idle and no ready task
may go to it, and another engine holds prefetched load-balanced tasks behind one it has
been running for STEAL_AFTER or more, the idle engine steals half of them (:class:`Steal`).
The victim gives back only what it has not started, and the hub hands those to the thief.

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

Only open engines get work: one draining before its batch job ends takes nothing new. A
task with ``tags`` goes only to engines that have every one of them, and a task with a
``timeout`` only to engines that will not drain within it. When no open engine may take
such a task, it is parked like the @depend case, until an engine that may (a replacement
job's, a tagged one) registers or its timeout runs out.
"""
from __future__ import annotations

import heapq
import random
from collections import OrderedDict, deque
from typing import NamedTuple

from ..dependency import IMPOSSIBLE, MET, UNMET

PIPELINE_WINDOW = 0.05
"""Seconds since an engine's last answer within which it may take more than one task.
Tasks longer than this gain nothing from prefetching, and lose a lot by waiting."""

STEAL_AFTER = 0.02
"""Seconds an engine must have been on its current task before an idle one takes the tasks
queued behind it: shorter work drains by itself sooner than a steal's round trip."""

TAG_CACHE = 64
"""Tag sets whose engines are remembered at once; more means tags are used in some odd way."""

FINISHED_MEMORY = 10_000
"""Finished tasks remembered for dependencies; the hub looks older ones up in its database."""


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


class Assign(NamedTuple):
    """Send ``task`` to ``engine``."""
    task: object
    engine: object


class Steal(NamedTuple):
    """Ask ``victim`` to give back those of ``msg_ids`` it has not started, for ``thief``."""
    victim: object
    msg_ids: list
    thief: object


class Fail(NamedTuple):
    """Answer ``task`` with an error ``ename: evalue`` on the engines' behalf."""
    task: object
    ename: str
    evalue: str


class Scheduler:
    """The load-balanced queue of one hub: tasks not on an engine, and the choice of one.

    ``held`` indexes every task the scheduler holds (ready, waiting or parked); the ready
    deque may keep entries of tasks since taken out (aborted, timed out), skipped when
    their turn comes."""

    def __init__(self, scheme: str, hwm: int):
        self.choose = SCHEMES[scheme]
        self.hwm = hwm
        self.ready: deque = deque()
        self.held: dict = {}
        self.waiting: dict = {}
        self.dependents: dict = {}
        self.timeouts: list = []
        self.timed: dict = {}
        self.parked: dict = {}
        self.finished: OrderedDict = OrderedDict()
        self.outcomes: dict = {}
        self.tagged: dict = {}

    def __len__(self):
        return len(self.held)

    def holds(self, msg_id) -> bool:
        return msg_id in self.held

    def unassigned(self) -> list:
        """The msg_ids held, in queue order: ready first, then waiting, then parked."""
        held = self.held
        return [t.msg_id for t in self.ready if held.get(t.msg_id) is t] + list(self.waiting) + list(self.parked)

    def knows(self, msg_id, table) -> bool:
        return msg_id in self.held or msg_id in self.finished or msg_id in table.pending

    # -- arrivals and completions ------------------------------------------------------------

    def submit(self, task, table, now) -> list:
        """Take a new load-balanced task; returns failures (a dependency it can never meet)."""
        deps = [d for d in (task.after, task.follow) if d is not None]
        if deps:
            unknown = sorted({m for d in deps for m in d if not self.knows(m, table)})
            if unknown:
                return [Fail(task, "InvalidDependency", "dependency on task(s) this controller does not know "
                             "(never submitted to it, or finished so long ago that neither the scheduler nor "
                             "the task database remembers them): %s" % ", ".join(unknown))]
        self.held[task.msg_id] = task
        if task.timeout:
            self._start_timeout(task, now)
        if not deps:
            self.ready.append(task)
            return []
        self.waiting[task.msg_id] = task
        return self._evaluate(task)

    def remember(self, msg_id, engine_id, ok: bool):
        """A finished task's outcome, for the dependencies of tasks still to come."""
        outcome = (engine_id, ok)
        self.finished[msg_id] = self.outcomes.setdefault(outcome, outcome)  # shared: two per engine
        if len(self.finished) > FINISHED_MEMORY:
            self.finished.popitem(last=False)

    def _evaluate(self, task) -> list:
        """Move a waiting task on if its dependencies are decided either way."""
        finished = self.finished
        after = task.after.state(finished) if task.after is not None else MET
        follow = task.follow.state(finished) if task.follow is not None else MET
        if after == IMPOSSIBLE or follow == IMPOSSIBLE:
            self._take_out(task)
            return [Fail(task, "ImpossibleDependency", "the tasks it must run %s finished in a way that can "
                         "never meet its dependency" % ("after" if after == IMPOSSIBLE else "with"))]
        if after == UNMET or follow == UNMET:
            for d in (task.after, task.follow):
                if d is not None:
                    for m in d:
                        if m not in finished:
                            self.dependents.setdefault(m, set()).add(task.msg_id)
            return []
        if task.follow is not None:
            where = task.follow.engines(finished)
            if task.follow.all and len(where) > 1:
                self._take_out(task)
                return [Fail(task, "ImpossibleDependency", "follow=all: the tasks it must follow ran on "
                             "different engines %s" % sorted(where))]
            task.targets = where if task.targets is None else task.targets & where
        del self.waiting[task.msg_id]
        self.ready.append(task)
        return []

    def _take_out(self, task):
        self.held.pop(task.msg_id, None)
        self.waiting.pop(task.msg_id, None)
        self.parked.pop(task.msg_id, None)
        self.timed.pop(task.msg_id, None)

    def finished_task(self, msg_id, engine_id, ok: bool) -> list:
        """A task ended (on an engine or answered by the hub); returns the failures of
        tasks waiting on it that can now never run."""
        self.timed.pop(msg_id, None)
        self.remember(msg_id, engine_id, ok)
        decisions = []
        for dependent in self.dependents.pop(msg_id, ()):
            task = self.waiting.get(dependent)
            if task is not None:
                decisions += self._evaluate(task)
        return decisions

    def requeue(self, task, engine_id, now, unmet=False):
        """Put back a task that failed on engine_id: never to run there again if its @depend
        check failed there, else preferably elsewhere."""
        (task.unmet_on if unmet else task.avoid).add(engine_id)
        task.engine = None
        if unmet and task.timeout:
            self._start_timeout(task, now)
        self.held[task.msg_id] = task
        self.ready.appendleft(task)

    def returned(self, tasks):
        """Tasks given back by a steal that could not go to their thief: first in line again."""
        for task in reversed(tasks):
            self.held[task.msg_id] = task
            self.ready.appendleft(task)

    def engine_registered(self, engine_id):
        """A new engine may meet the @depend checks that every other engine failed, have the
        tags or the walltime a parked task waits for: queue the parked tasks again (a reused
        id is a new process, not the one that refused)."""
        for task in self.parked.values():
            task.unmet_on.discard(engine_id)
        self._unpark(list(self.parked.values()))

    def walltime_extended(self):
        """An engine's job now ends later: the tasks parked for want of an engine with time
        for their timeout are looked at again."""
        self._unpark([t for t in self.parked.values() if t.waits_for == "walltime"])

    def _unpark(self, tasks):
        """Parked tasks back to the front of the ready queue, in their order."""
        for task in tasks:
            del self.parked[task.msg_id]
            task.waits_for = ""
        self.ready.extendleft(reversed(tasks))

    def _start_timeout(self, task, now):
        """(Re)start the task's timeout: on submission, and each time an engine rejects it,
        as ipyparallel restarts it whenever a task goes back to waiting."""
        deadline = now + task.timeout
        self.timed[task.msg_id] = (deadline, task)
        heapq.heappush(self.timeouts, (deadline, task.msg_id))

    def check_timeouts(self, now) -> list:
        """Fail the tasks whose timeout ran out while they waited: for dependencies, or for an
        engine that meets their @depend check. A task on an engine, or in the queue only for
        a free engine, is not waiting for anything the timeout is about."""
        decisions = []
        while self.timeouts and self.timeouts[0][0] <= now:
            deadline, msg_id = heapq.heappop(self.timeouts)
            entry = self.timed.get(msg_id)
            if entry is None or entry[0] != deadline:
                continue
            task = entry[1]
            if msg_id in self.waiting:
                why = "its dependencies were not met within %gs" % task.timeout
            elif msg_id in self.parked and task.waits_for == "tags":
                why = "no engine with tags %s took it within %gs" % (sorted(task.tags), task.timeout)
            elif msg_id in self.parked and task.waits_for == "walltime":
                why = ("no engine with %gs left before it drains for the end of its job took it within %gs"
                       % (task.timeout, task.timeout))
            elif msg_id in self.parked or (msg_id in self.held and task.unmet_on):
                why = ("no engine meeting its @depend check took it within %gs (the check failed on engines %s)"
                       % (task.timeout, sorted(task.unmet_on)))
            else:
                continue
            self._take_out(task)
            decisions.append(Fail(task, "TaskTimeout", why))
        return decisions

    def abort(self, msg_ids) -> list:
        """Take out tasks not yet given to an engine; returns them."""
        taken = []
        for msg_id in msg_ids:
            task = self.held.get(msg_id)
            if task is not None:
                self._take_out(task)
                taken.append(task)
        return taken

    # -- assigning ---------------------------------------------------------------------------

    def schedule(self, table, now):
        """Decisions, one at a time: the hub carries each out (so the table shows it) before
        asking for the next. Ready tasks go to open engines while any can take one; then idle
        engines steal."""
        engines = list(table.open.values())
        if not engines:
            return
        ready, held, hwm, choose = self.ready, self.held, self.hwm, self.choose
        skipped = []
        live = None
        while ready:
            task = ready.popleft()
            if held.get(task.msg_id) is not task:
                continue
            targets = task.targets
            if task.tags or (task.timeout and table.ending):
                targets = self._allowed(task, table, now)
            engine = choose(engines, hwm, targets, task.unmet_on | task.avoid if task.avoid else task.unmet_on, now)
            if engine is None and task.avoid:
                engine = choose(engines, hwm, targets, task.unmet_on, now)
            if engine is not None:
                del held[task.msg_id]
                yield Assign(task, engine)
                continue
            if task.unmet_on or targets is not None:
                if live is None:
                    live = set(table.open)
                if not (live if targets is None else live & targets) - task.unmet_on:
                    if task.targets is not None and not (live & task.targets) - task.unmet_on:
                        self._take_out(task)
                        yield self._unplaceable(task)
                    else:
                        self._park(task, table, live)
                    continue
            skipped.append(task)
            if targets is None and not task.unmet_on:
                break
        if skipped:
            ready.extendleft(reversed(skipped))
        if table.stacked:
            yield from self.steals(engines, now)

    def _allowed(self, task, table, now) -> set:
        """The open engines a task with tags or a timeout may go to: those with all its tags,
        and time to run it for its timeout before they drain; within its targets."""
        allowed = self._tagged(task, table)
        if task.timeout and table.ending:
            latest = now + task.timeout
            allowed = {i for i in allowed if table.open[i].drain_at is None or table.open[i].drain_at >= latest}
        return allowed

    def _tagged(self, task, table) -> set:
        """The open engines with every tag of the task, within its targets (cached until the
        open engines change: a burst of tagged tasks asks the same question many times)."""
        if not task.tags:
            allowed = set(table.open)
        else:
            key = (task.tags, table.version)
            allowed = self.tagged.get(key)
            if allowed is None:
                if len(self.tagged) > TAG_CACHE:
                    self.tagged.clear()
                allowed = self.tagged[key] = {e.id for e in table.open.values() if task.tags <= e.tags}
        return allowed if task.targets is None else allowed & task.targets

    def _park(self, task, table, live):
        """No open engine may take it now, but one that registers may: it waits for that,
        and says which (for its TaskTimeout)."""
        if not (self._tagged(task, table) & live) - task.unmet_on:
            task.waits_for = "tags" if task.tags and not self._tagged(task, table) & live else "depend"
        else:
            task.waits_for = "walltime"
        self.parked[task.msg_id] = task

    def steals(self, engines, now):
        """Idle engines take half the prefetched tasks of engines stuck on a long one.

        An engine is idle when it holds nothing: the ready queue had no task it may run.
        Each victim has one steal in flight at a time, and each thief one."""
        thieves = [e for e in engines if not e.load and not e.stealing]
        if not thieves:
            return
        victims = []
        for e in engines:
            if e.load > 1 and e.steal is None and now - e.busy_since >= STEAL_AFTER:
                movable = e.movable()
                if movable:
                    victims.append((len(movable), e.id, e, movable))
        if not victims:
            return
        victims.sort(reverse=True)
        for _, _, victim, movable in victims:
            for thief in thieves:
                wanted = [t.msg_id for t in movable if t.may_run_on(thief, now)]
                if wanted:
                    thieves.remove(thief)
                    yield Steal(victim, wanted[len(wanted) // 2:] if len(wanted) > 1 else wanted, thief)
                    break
            if not thieves:
                return

    def steal_due(self, table, now):
        """When a steal may next become due (an idle engine, and a victim that will have been
        on its task for STEAL_AFTER then), or None: the hub's loop wakes at that time."""
        if not table.stacked:
            return None
        engines = table.open.values()
        if not any(not e.load and not e.stealing for e in engines):
            return None
        due = [e.busy_since + STEAL_AFTER for e in engines
               if e.load > 1 and e.steal is None and e.busy_since + STEAL_AFTER > now]
        return min(due) if due else None

    def hand_over(self, tasks, thief, table, now) -> list:
        """Tasks a steal got back: to the thief while it may take them, else first in line."""
        decisions = []
        room = self.hwm - thief.load if thief is not None and thief.id in table.open else 0
        rest = []
        for task in tasks:
            if room > 0 and task.may_run_on(thief, now):
                decisions.append(Assign(task, thief))
                room -= 1
            else:
                rest.append(task)
        self.returned(rest)
        return decisions

    @staticmethod
    def _unplaceable(task):
        if task.unmet_on:
            return Fail(task, "ImpossibleDependency", "its @depend check failed on every engine it may run on "
                        "(targets %s; failed on %s)" % (sorted(task.targets), sorted(task.unmet_on)))
        return Fail(task, "ImpossibleDependency", "none of the engines it may run on (targets %s) is registered"
                    % sorted(task.targets or ()))
