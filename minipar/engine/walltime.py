"""When an engine drains: the end of its allocation, less ``[engine] drain_before``.

A batch system kills a job at its walltime, and with it whatever task runs. An engine that
knows when that is stops taking tasks ``drain_before`` seconds earlier, gives back those it
has not started, finishes the one it runs and leaves, so no work is lost to the kill. The
end comes from ``[engine] end_time`` when set, else from the batch system the engine runs
in (:func:`minipar.jobs.job_end_time`); an engine outside a job, or in one the system
cannot tell about, never drains.
"""
from __future__ import annotations

import logging
import time
from typing import NamedTuple, Optional, Tuple

from ..error import JobQueryError
from ..jobs import SYSTEM_NAMES, current_job, is_extension, job_end_time, parse_end_time

log = logging.getLogger("minipar.engine")


class Walltime(NamedTuple):
    job: Optional[Tuple[str, str]]
    """(system, job id) of the batch job the engine runs in, or None."""
    end_time: Optional[float]
    """When the allocation ends, in seconds since the epoch; None: no end known."""
    drain_at: Optional[float]
    """When to drain, in seconds since the epoch; None: never."""
    asked_system: bool
    """The end came from the batch system (which may extend it), not from engine.end_time."""

    def describe_job(self) -> str:
        return "%s job %s" % (SYSTEM_NAMES[self.job[0]], self.job[1]) if self.job else "no batch job"


def plan_walltime(cfg, started: float, env=None, run=None, now: Optional[float] = None) -> Walltime:
    """The engine's walltime from its settings and its batch job. Never raises: what cannot
    be learned is logged with the setting that would tell it, and the engine then never
    drains. ``started``: the engine's start, from which ``+DURATION`` end times count."""
    job = current_job(env)
    end_time, asked = None, False
    if cfg.end_time:
        try:
            end_time = parse_end_time(cfg.end_time, started)
        except ValueError as e:
            log.warning("engine.end_time: %s; this engine will not drain before its end", e)
    elif job is not None:
        try:
            end_time, asked = job_end_time(job[0], job[1], env, run), True
        except JobQueryError as e:
            log.warning("cannot tell when %s %s ends (%s); this engine will not drain before it: set "
                        "engine.end_time (or --end-time) to say when", SYSTEM_NAMES[job[0]], job[1], e)
    return Walltime(job, end_time, drain_time(end_time, cfg.drain_before, now), asked)


def drain_time(end_time: Optional[float], drain_before: float, now: Optional[float] = None) -> Optional[float]:
    """``drain_before`` seconds before ``end_time``; for a job shorter than that, halfway to
    its end (an engine that drained at once would never work), said in a warning."""
    if end_time is None or drain_before <= 0:
        return None
    now = time.time() if now is None else now
    drain_at = end_time - drain_before
    if drain_at <= now < end_time:
        drain_at = now + (end_time - now) / 2
        log.warning("this engine's allocation ends in %.0fs, sooner than engine.drain_before (%gs): it drains "
                    "halfway to its end, in %.0fs", end_time - now, drain_before, drain_at - now)
    return drain_at


def extended(walltime: Walltime, drain_before: float, run=None, env=None) -> Optional[Walltime]:
    """Asked when the engine is about to drain: the walltime again if the batch system has
    extended the job since (so draining waits), else None."""
    if not walltime.asked_system or walltime.job is None:
        return None
    try:
        end_time = job_end_time(walltime.job[0], walltime.job[1], env, run)
    except JobQueryError as e:
        log.debug("asking again when %s ends failed: %s", walltime.describe_job(), e)
        return None
    if not is_extension(walltime.end_time, end_time):
        return None
    log.info("%s was extended: it now ends at %s", walltime.describe_job(),
             time.strftime("%H:%M:%S", time.localtime(end_time)))
    return walltime._replace(end_time=end_time, drain_at=drain_time(end_time, drain_before))
