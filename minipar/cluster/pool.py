"""Engine pools: how n engines are split into jobs, and which job gets a replacement when.

Policy only, over plain records: nothing here runs a command or reads the clock. The Cluster's
watcher (cluster.py) asks the batch systems how its jobs are, notes it in each engine set's
EngineSetRecord, asks plan() what to do and submits the jobs it names, so every rule is tested
without processes.

A kept job's life, as the pool sees it::

    pending ──► running ──────────────► ended ──► replaced (the record is dropped)
                   │                      ▲
                   └──► draining ─────────┘       replaced at drain_at, then only watched

``drain_at`` is the job's end (its walltime, asked of the batch system once it runs) minus the
engines' ``[engine] drain_before``: from then on its engines take no new tasks, so its
replacement is submitted then and can queue while the old job finishes. A job is replaced once.
When the drain time comes the batch system is asked again: a job extended meanwhile (by at
least EXTENSION_SLACK) gets the later drain time instead, as its engines do.
"""
from __future__ import annotations

import collections
import dataclasses
import time
from dataclasses import field
from typing import Collection, List, Mapping, Optional

from ..error import ClusterError
from ..jobs import is_extension

PENDING, RUNNING, DRAINING, ENDED = "pending", "running", "draining", "ended"

QUICK_END = 60.0
"""Seconds: a job that ends sooner after it started running, or before it ran, counts as a
failed start (a broken script, engines that cannot reach the controller)."""

FAILED_STARTS_LIMIT = 3
"""Failed starts in a row after which the pool stops replacing a job and says why, instead of
submitting broken jobs for as long as the cluster runs."""

REPLACE, WAIT, GIVE_UP = "replace", "wait", "give up"

Decision = collections.namedtuple("Decision", "action set_id reason")
Decision.__doc__ = """What plan() says to do about one engine set: REPLACE it (reason: why),
WAIT (reason: which limit holds it back) or GIVE_UP replacing it (reason: why)."""


@dataclasses.dataclass
class EngineSetRecord:
    """What the Cluster knows of one engine set besides its launcher; kept in the state file.
    Times are seconds since the epoch, so another process can read them."""

    tags: List[str] = field(default_factory=list)
    keep: bool = False
    state: str = PENDING
    replaces: str = ""
    replaced_by: str = ""
    running_since: Optional[float] = None
    ended_at: Optional[float] = None
    end_time_asked: bool = False
    end_time: Optional[float] = None
    drain_at: Optional[float] = None
    end_rechecked: bool = False
    failed_starts: int = 0
    not_before: Optional[float] = None
    given_up: str = ""

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping) -> "EngineSetRecord":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in dict(d or {}).items() if k in names})

    def note(self, state: str, now: float) -> None:
        """A state a poll saw (PENDING, RUNNING or ENDED); an ended set stays ended."""
        if self.state == ENDED:
            return
        if state == RUNNING and self.running_since is None:
            self.running_since = now
        if state == ENDED:
            self.ended_at = now
        self.state = state

    def learn_end_time(self, end_time: Optional[float], drain_before: float) -> None:
        """The job's walltime end as the batch system told it (None: no limit)."""
        self.end_time_asked = True
        self.end_time = end_time
        self.drain_at = end_time - drain_before if end_time is not None and drain_before > 0 else None

    def recheck_due(self, now: float) -> bool:
        """Its drain time came and it is not replaced yet: the batch system is asked once more
        when the job ends, in case it was extended (its engines ask the same then)."""
        return (self.end_time_asked and not self.end_rechecked and not self.replaced_by and self.state == RUNNING
                and self.drain_at is not None and now >= self.drain_at)

    def learn_later_end(self, end_time: Optional[float], drain_before: float) -> bool:
        """The job's end asked again at its drain time: EXTENSION_SLACK or more later is an
        extension, which moves the drain time (asked again when that comes). True if it was."""
        self.end_rechecked = True
        if not is_extension(self.end_time, end_time):
            return False
        self.learn_end_time(end_time, drain_before)
        self.end_rechecked = False
        return True

    def draining(self, now: float) -> bool:
        """Whether a running job of this set drains: its drain time passed, or it was replaced."""
        return bool(self.replaced_by) or (self.drain_at is not None and now >= self.drain_at)

    @property
    def drained(self) -> bool:
        """It ended once its drain time had come: its engines drained and left, as they should."""
        return self.drain_at is not None and self.ended_at is not None and self.ended_at >= self.drain_at

    @property
    def ended_quickly(self) -> bool:
        if self.drained:
            return False
        if self.running_since is None:
            return True
        return (self.ended_at or self.running_since) - self.running_since < QUICK_END

    def failed_starts_after_end(self) -> int:
        """Failed starts in a row, this set's end included: its replacement inherits them."""
        return self.failed_starts + 1 if self.ended_quickly else 0


@dataclasses.dataclass(frozen=True)
class PoolLimits:
    max_jobs: int = 0
    submit_interval: float = 0.0


def split_engines(n: int, jobs: int, max_array_size: int = 0, max_jobs: int = 0, live_jobs: int = 0) -> List[int]:
    """Sizes of the jobs n engines are split into: ``jobs`` of them, or more if ``max_array_size``
    needs more, sizes differing by at most one. ClusterError naming the setting to change when
    that cannot be done or would pass ``max_jobs`` (with ``live_jobs`` already queued or running)."""
    if jobs < 1:
        raise ClusterError("cluster.jobs must be 1 or more, got %d" % jobs)
    if jobs > n:
        raise ClusterError("cluster.jobs = %d is more jobs than engines (n = %d): each job runs one engine at "
                           "least; lower cluster.jobs or raise n" % (jobs, n))
    count = jobs
    if max_array_size and -(-n // max_array_size) > count:
        count = -(-n // max_array_size)
    if max_jobs and live_jobs + count > max_jobs:
        raise ClusterError(too_many_jobs(n, jobs, count, max_array_size, max_jobs, live_jobs))
    size, bigger = divmod(n, count)
    return [size + 1 if i < bigger else size for i in range(count)]


def too_many_jobs(n, jobs, count, max_array_size, max_jobs, live_jobs) -> str:
    why = ("%d engines in jobs of at most cluster.max_array_size = %d need %d jobs" % (n, max_array_size, count)
           if count > jobs else "%d engines in cluster.jobs = %d jobs" % (n, jobs))
    if live_jobs:
        why += ", besides the %d the cluster has" % live_jobs
    fix = "raise cluster.max_jobs, or start fewer engines" if count > jobs else \
        "raise cluster.max_jobs, or lower cluster.jobs"
    if count > jobs and max_array_size:
        fix += " or raise cluster.max_array_size"
    return "%s: more than cluster.max_jobs = %d; %s" % (why, max_jobs, fix)


def check_limits(settings) -> None:
    """ClusterError naming the [cluster] setting whose value cannot work."""
    for name, lowest in (("max_jobs", 0), ("max_array_size", 0), ("submit_interval", 0)):
        if getattr(settings, name) < lowest:
            raise ClusterError("cluster.%s must be %s or more, got %r" % (name, lowest, getattr(settings, name)))
    if settings.poll_interval <= 0:
        raise ClusterError("cluster.poll_interval must be more than 0 seconds, got %r" % settings.poll_interval)


def live_jobs(records: Mapping[str, EngineSetRecord]) -> int:
    """Engine sets queued or running (draining ones too): what max_jobs counts."""
    return sum(1 for r in records.values() if r.state != ENDED)


def plan(records: Mapping[str, EngineSetRecord], now: float, last_submit: float, limits: PoolLimits,
         mine: Collection[str]) -> List[Decision]:
    """What to do now about the kept engine sets among ``mine`` (those this process started):
    replace those that ended (first: the pool is short of engines), then those that drain, by
    drain time; within max_jobs (counting every set of ``records``) and at most one submission
    per submit_interval (last_submit: when the last job was submitted)."""
    due = []
    for set_id, r in records.items():
        if set_id not in mine or not r.keep or r.replaced_by or r.given_up or (r.not_before or 0) > now:
            continue
        if r.state == ENDED:
            due.append((0, r.ended_at or 0.0, set_id))
        elif r.state == RUNNING and r.drain_at is not None and now >= r.drain_at:
            due.append((1, r.drain_at, set_id))
    live = live_jobs(records)
    decisions = []
    for _, _, set_id in sorted(due):
        r = records[set_id]
        if r.state == ENDED and r.failed_starts_after_end() >= FAILED_STARTS_LIMIT:
            decisions.append(Decision(GIVE_UP, set_id, gave_up_because(r)))
        elif limits.max_jobs and live >= limits.max_jobs:
            decisions.append(Decision(WAIT, set_id, "the cluster has cluster.max_jobs = %d jobs queued or running"
                                      % limits.max_jobs))
        elif now - last_submit < limits.submit_interval:
            decisions.append(Decision(WAIT, set_id, "cluster.submit_interval = %gs since the last submission"
                                      % limits.submit_interval))
        else:
            decisions.append(Decision(REPLACE, set_id, replaced_because(r)))
            live += 1
            last_submit = now
    return decisions


def replaced_because(r: EngineSetRecord) -> str:
    if r.state == ENDED and r.drained:
        return ("its engines drained before its walltime (at %s, engine.drain_before = %gs before %s) and left"
                % (clock(r.drain_at), r.end_time - r.drain_at, clock(r.end_time)))
    if r.state == ENDED:
        return "it ended on its own (walltime reached, cancelled from outside, or finished)"
    return ("its engines drain from %s, engine.drain_before = %gs before its walltime ends at %s"
            % (clock(r.drain_at), r.end_time - r.drain_at, clock(r.end_time)))


def gave_up_because(r: EngineSetRecord) -> str:
    return ("it is the %d%s job in a row of this pool to end %s; not replacing it any more (see its output, "
            "then start engines again)" % (r.failed_starts_after_end(), ordinal(r.failed_starts_after_end()),
                                           "before it ran" if r.running_since is None
                                           else "within %gs of starting" % QUICK_END))


def ordinal(k: int) -> str:
    return {1: "st", 2: "nd", 3: "rd"}.get(k % 10 if k % 100 not in (11, 12, 13) else 0, "th")


def clock(seconds: Optional[float]) -> str:
    return time.strftime("%H:%M:%S", time.localtime(seconds)) if seconds is not None else "?"
