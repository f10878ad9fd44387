"""Batch jobs seen from inside and outside: which job this process runs in, and when a job ends.

An engine reads its job from the variables each batch system sets, and asks the system when
that job reaches its walltime, so it can drain before it is killed. A launcher asks the same
question about the jobs it submitted, by id. Each system answers differently, and some not
at all (HTCondor and Windows HPC jobs have no walltime a job can read): :func:`job_end_time`
then says so, and ``[engine] end_time`` is the way to tell an engine.

Standard library only: engines import it.
"""
from __future__ import annotations

import calendar
import os
import re
import subprocess
import time
from datetime import datetime
from typing import Optional, Tuple

from .error import JobQueryError

SYSTEM_NAMES = {"slurm": "Slurm", "pbs": "PBS", "sge": "Grid Engine", "lsf": "LSF", "htcondor": "HTCondor",
                "windowshpc": "Windows HPC"}
"""Short names (as the launchers' ``system``) and the names people know the systems by."""

JOB_ID_VARIABLES = (("slurm", "SLURM_JOB_ID"), ("pbs", "PBS_JOBID"), ("lsf", "LSB_JOBID"),
                    ("windowshpc", "CCP_JOBID"))

EXTENSION_SLACK = 30.0
"""Seconds by which a job's end, asked again when its engines are due to drain, must have moved
later to count as a walltime extension (scontrol update TimeLimit+=...): an engine then stays,
and a pool puts off replacing its job."""


def is_extension(old_end: Optional[float], new_end: Optional[float]) -> bool:
    """Whether a job's end, asked again, moved later by EXTENSION_SLACK or more."""
    return old_end is not None and new_end is not None and new_end >= old_end + EXTENSION_SLACK

QUERY_TIMEOUT = 30.0
"""Seconds a squeue/qstat/bjobs asking for a job's end may take."""


def current_job(env=None) -> Optional[Tuple[str, str]]:
    """``(system, job id)`` of the batch job this process runs in (system as in SYSTEM_NAMES),
    or None outside one. An array task's id is the whole job's, as the system's commands take it."""
    env = os.environ if env is None else env
    for system, name in JOB_ID_VARIABLES:
        if env.get(name):
            return system, env[name]
    if env.get("JOB_ID") and (env.get("SGE_ROOT") or env.get("SGE_TASK_ID")):
        return "sge", env["JOB_ID"]
    ad = env.get("_CONDOR_JOB_AD")
    if ad:
        return "htcondor", _condor_job_id(ad)
    return None


def _condor_job_id(ad_path: str) -> str:
    try:
        with open(ad_path) as f:
            ad = dict(re.findall(r"^(ClusterId|ProcId)\s*=\s*(\d+)", f.read(), re.M))
    except OSError:
        return "?"
    return "%s.%s" % (ad.get("ClusterId", "?"), ad.get("ProcId", "0"))


def in_batch_job(what: str, env=None) -> str:
    """`` in Slurm job 42 (the batch system does this at the job's walltime or when it is
    cancelled)`` after ``what`` (a signal's name), or "" outside a job."""
    job = current_job(env)
    if job is None:
        return ""
    return (" in %s job %s (the batch system sends %s when the job reaches its walltime or is cancelled)"
            % (SYSTEM_NAMES[job[0]], job[1], what))


# -- when a job ends ------------------------------------------------------------------------


def job_end_time(system: str, job_id: str, env=None, run=None) -> Optional[float]:
    """When the running job ``job_id`` of ``system`` reaches its walltime, in seconds since the
    epoch; None when it has no limit or the system cannot tell. Raises JobQueryError when the
    system's command fails or prints what cannot be read, naming the command.

    ``env``: the job's environment, when this process runs in it (an array task's index is
    read from it); ``run``: a stand-in for subprocess.run, for tests."""
    env = os.environ if env is None else env
    ask = _QUERIES.get(system)
    if ask is None:
        return None
    return ask(job_id, env, run or subprocess.run)


def _command(run, argv) -> str:
    try:
        proc = run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=QUERY_TIMEOUT)
    except FileNotFoundError:
        raise JobQueryError("%s is not on PATH" % argv[0]) from None
    except subprocess.TimeoutExpired:
        raise JobQueryError("%s did not answer within %gs" % (" ".join(argv), QUERY_TIMEOUT)) from None
    except OSError as e:
        raise JobQueryError("cannot run %s: %s" % (argv[0], e)) from None
    if proc.returncode != 0:
        raise JobQueryError("%s failed (exit %d): %s" % (" ".join(argv), proc.returncode,
                                                         (proc.stderr or proc.stdout).strip()[:300]))
    return proc.stdout


def parse_duration(text: str) -> float:
    """Seconds in ``[[D-]HH:]MM:SS``, ``HH:MM:SS``, ``D-HH`` or plain seconds, as batch systems
    write limits; ValueError otherwise."""
    text = text.strip()
    days = 0
    if "-" in text:
        d, text = text.split("-", 1)
        days = int(d)
        if text.count(":") == 0:
            text += ":00:00"
    parts = text.split(":")
    if not 1 <= len(parts) <= 3 or not all(p.strip().replace(".", "", 1).isdigit() for p in parts):
        raise ValueError("not a duration: %r" % text)
    seconds = 0.0
    for p in parts:
        seconds = seconds * 60 + float(p)
    return days * 86400 + seconds


def _slurm(job_id, env, run):
    # squeue %e: the end time (limit reached), local time as 2026-12-06T18:53:59; "N/A",
    # "NONE" or "Unknown" without a limit. Slurm 23.02 and later also set SLURM_JOB_END_TIME
    # (epoch) in the job, which saves the query.
    if env.get("SLURM_JOB_ID") == job_id and env.get("SLURM_JOB_END_TIME", "").isdigit():
        return float(env["SLURM_JOB_END_TIME"])
    out = _command(run, ["squeue", "--noheader", "--jobs", job_id, "--format=%e"]).split()
    if not out:
        raise JobQueryError("squeue does not list job %s" % job_id)
    try:
        return time.mktime(time.strptime(out[0], "%Y-%m-%dT%H:%M:%S"))
    except ValueError:
        return None


def _pbs(job_id, env, run):
    # qstat -f: "    key = value" lines. Torque counts down Walltime.Remaining (seconds);
    # both Torque and PBS Pro give Resource_List.walltime and resources_used.walltime.
    fields = dict(re.findall(r"^\s+([\w.]+) = (.*)$", _command(run, ["qstat", "-f", job_id]), re.M))
    now = time.time()
    remaining = fields.get("Walltime.Remaining", "").strip()
    if remaining.isdigit():
        return now + int(remaining)
    limit = fields.get("Resource_List.walltime")
    if not limit:
        return None
    try:
        return now + parse_duration(limit) - parse_duration(fields.get("resources_used.walltime", "0"))
    except ValueError:
        raise JobQueryError("qstat -f %s: cannot read walltime %r" % (job_id, limit)) from None


def _sge(job_id, env, run):
    # qstat -j ID: "hard resource_list:  h_rt=600,h_vmem=2G" (h_rt in seconds or H:M:S), no
    # start time; plain qstat: a row per running (r) or starting (t) task, whose "submit/start
    # at" columns are its start in local time (MM/DD/YYYY HH:MM:SS) and whose last column is
    # the array index.
    detail = _command(run, ["qstat", "-j", job_id])
    m = re.search(r"^hard resource_list:\s*(.*)$", detail, re.M)
    h_rt = re.search(r"(?:^|,)h_rt=([^,\s]+)", m.group(1)) if m else None
    if h_rt is None:
        return None
    try:
        limit = parse_duration(h_rt.group(1))
    except ValueError:
        raise JobQueryError("qstat -j %s: cannot read h_rt=%r" % (job_id, h_rt.group(1))) from None
    task = env.get("SGE_TASK_ID", "") if env.get("JOB_ID") == job_id else ""
    starts = []
    for row in _command(run, ["qstat"]).splitlines()[2:]:
        cols = row.split()
        if len(cols) >= 7 and cols[0] == job_id and ("r" in cols[4] or "t" in cols[4]):
            if task.isdigit() and cols[-1].isdigit() and cols[-1] != task:
                continue
            starts.append(time.mktime(time.strptime(cols[5] + " " + cols[6], "%m/%d/%Y %H:%M:%S")))
    if not starts:
        raise JobQueryError("qstat lists no running task of job %s" % job_id)
    return min(starts) + limit


def _lsf(job_id, env, run):
    # bjobs -o time_left: what is left of the run limit, "HH:MM:SS L" with -hms ("H:MM L"
    # without it, too coarse for a short job), E or X for estimates, "-" without a limit;
    # one line per array element.
    out = _command(run, ["bjobs", "-noheader", "-hms", "-o", "time_left", job_id])
    lefts = [int(h) * 3600 + int(m) * 60 + int(s or 0) for h, m, s in re.findall(r"(\d+):(\d+)(?::(\d+))?", out)]
    return time.time() + min(lefts) if lefts else None


_QUERIES = {"slurm": _slurm, "pbs": _pbs, "sge": _sge, "lsf": _lsf}


# -- end times a user writes ------------------------------------------------------------------


def parse_end_time(text: str, now: Optional[float] = None) -> float:
    """``[engine] end_time`` as seconds since the epoch: seconds since the epoch, an ISO date
    and time (local time unless it says otherwise), or ``+DURATION`` from ``now`` (``+3600``,
    ``+1:00:00``). ValueError naming the accepted forms otherwise."""
    text = text.strip()
    now = time.time() if now is None else now
    try:
        if text.startswith("+"):
            return now + parse_duration(text[1:])
        if re.fullmatch(r"\d+(\.\d*)?", text):
            return float(text)
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError("%r is not an end time: give seconds since the epoch (1767225600), an ISO date and "
                         "time (2026-12-31T18:00, local time unless it names a zone) or +DURATION from now "
                         "(+3600, +2:00:00)" % text) from None
    if when.tzinfo is None:
        return time.mktime(when.timetuple()) + when.microsecond / 1e6
    return calendar.timegm(when.utctimetuple()) + when.microsecond / 1e6
