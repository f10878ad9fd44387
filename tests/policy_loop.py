"""A stand-in for the hub's loop, for testing the scheduler's policy without processes: it
carries out decisions on a TaskTable the way the hub does, and records them."""
from __future__ import annotations

from minipar.controller.scheduler import Assign, Fail, Scheduler, Steal
from minipar.controller.tasks import EngineState, Task, TaskTable


class PolicyLoop:
    def __init__(self, n_engines, scheme="leastload", hwm=1):
        self.scheduler = Scheduler(scheme, hwm)
        self.table = TaskTable()
        for i in range(n_engines):
            self.table.add_engine(EngineState(i, "u%d" % i, b"e%d" % i, b"h%d" % i))
        self.assigned: list = []
        self.failed: list = []
        self.steals: list = []

    def add_engine(self, engine_id, tags=(), drain_at=None):
        """A newly registered engine, with tags and the time it drains; parked tasks may go there."""
        engine = EngineState(engine_id, "u%d" % engine_id, b"e%d" % engine_id, b"h%d" % engine_id, tags=tags,
                             drain_at=drain_at)
        self.table.add_engine(engine)
        self.scheduler.engine_registered(engine_id)
        return engine

    @property
    def engines(self):
        return list(self.table.engines.values())

    def carry_out(self, decisions, now=0.0):
        for d in decisions:
            if type(d) is Assign:
                self.table.assign(d.engine, d.task, now)
                self.assigned.append((d.task.msg_id, d.engine.id))
            elif type(d) is Fail:
                self.failed.append((d.task.msg_id, d.ename, d.evalue))
                self.carry_out(self.scheduler.finished_task(d.task.msg_id, None, False), now)
            elif type(d) is Steal:
                d.victim.steal = d.thief.id
                d.thief.stealing = True
                self.steals.append((d.victim.id, list(d.msg_ids), d.thief.id))

    def submit(self, task, now=0.0):
        self.carry_out(self.scheduler.submit(task, self.table, now), now)

    def schedule(self, now=0.0):
        self.carry_out(self.scheduler.schedule(self.table, now), now)

    def answer(self, msg_id, now=0.0, ok=True):
        task = self.table.answered(msg_id, now)
        self.carry_out(self.scheduler.finished_task(msg_id, task.engine, ok), now)

    def reject(self, engine, task, now=0.0):
        """The engine's @depend check failed: the task goes back, never to run there."""
        self.table.answered(task.msg_id, now)
        self.scheduler.requeue(task, engine.id, now, unmet=True)

    def give_back(self, victim, msg_ids, now=0.0):
        """The victim's steal_reply: the tasks it had not started."""
        thief = self.table.engines.get(victim.steal)
        victim.steal = None
        if thief is not None:
            thief.stealing = False
        self.carry_out(self.scheduler.hand_over(self.table.take_back(victim, msg_ids), thief, self.table, now), now)


def lb_task(msg_id, targets=None, tags=(), timeout=None):
    task = Task(msg_id, {}, b"c", [], lb=True, targets=targets)
    task.tags = frozenset(tags)
    task.timeout = timeout
    return task
