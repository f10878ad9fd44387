"""Dependencies between tasks: which tasks a task waits for, and which outcomes count.

One implementation serves both roles: a client builds a Dependency for ``after``/``follow``
(ipyparallel's class, with ``check`` and ``unreachable``) and sends it in request metadata
as :meth:`Dependency.as_dict` or a plain list; the controller's scheduler rebuilds it from
there (:meth:`Dependency.from_metadata`) and asks its :meth:`state` as tasks finish.
"""
from __future__ import annotations

MET, UNMET, IMPOSSIBLE = "met", "unmet", "impossible"


def msg_ids(jobs) -> list:
    """msg_ids from a msg_id, an AsyncResult, or any nesting of lists/sets of them."""
    if jobs is None:
        return []
    if isinstance(jobs, str):
        return [jobs]
    ids = getattr(jobs, "msg_ids", None)
    if ids is not None:
        return list(ids)
    if isinstance(jobs, (list, tuple, set, frozenset)):
        out = []
        for job in jobs:
            out.extend(msg_ids(job))
        return out
    raise TypeError("a dependency is a msg_id, an AsyncResult or a collection of them, not %s"
                    % type(jobs).__name__)


class Dependency(set):
    """A set of msg_ids a task depends on, with how to count them.

    ``all``: met when all (True) or any (False) of them finished; ``success`` and
    ``failure``: which outcomes count. With the defaults a failed dependency makes the
    task impossible.
    """

    def __init__(self, dependencies=(), all=True, success=True, failure=False):
        if isinstance(dependencies, dict):
            all = dependencies.get("all", all)
            success = dependencies.get("success", success)
            failure = dependencies.get("failure", failure)
            dependencies = dependencies.get("dependencies", dependencies.get("ids", ()))
        super().__init__(msg_ids(dependencies))
        if not (success or failure):
            raise ValueError("a Dependency must count successes, failures or both")
        self.all = bool(all)
        self.success = bool(success)
        self.failure = bool(failure)

    @classmethod
    def from_metadata(cls, value):
        """The Dependency a request's ``after`` or ``follow`` carries, or None without one."""
        return cls(value) if value else None

    def check(self, completed, failed=()) -> bool:
        """Whether the dependency is met, given finished msg_ids by outcome."""
        if not self:
            return True
        against = set()
        if self.success:
            against |= set(completed)
        if self.failure:
            against |= set(failed)
        return self.issubset(against) if self.all else not self.isdisjoint(against)

    def unreachable(self, completed, failed=()) -> bool:
        """Whether the dependency can never be met, given finished msg_ids by outcome."""
        if not self:
            return False
        against = set()
        if not self.success:
            against |= set(completed)
        if not self.failure:
            against |= set(failed)
        return not self.isdisjoint(against) if self.all else self.issubset(against)

    def state(self, finished) -> str:
        """MET, UNMET (still possible) or IMPOSSIBLE, given ``finished``: ``{msg_id: (engine
        id, ok)}`` of the tasks that have finished (the scheduler's memory)."""
        completed, failed = [], []
        for msg_id in self:
            outcome = finished.get(msg_id)
            if outcome is not None:
                (completed if outcome[1] else failed).append(msg_id)
        if self.check(completed, failed):
            return MET
        return IMPOSSIBLE if self.unreachable(completed, failed) else UNMET

    def engines(self, finished) -> set:
        """The engines the finished ones among these tasks ran on (for ``follow``)."""
        return {finished[m][0] for m in self if m in finished}

    def as_dict(self) -> dict:
        return {"dependencies": sorted(self), "all": self.all, "success": self.success,
                "failure": self.failure}

    def __repr__(self):
        return "Dependency(%r, all=%r, success=%r, failure=%r)" % (sorted(self), self.all, self.success,
                                                                   self.failure)
