"""Which batch job an engine runs in, read from the variables each batch system sets.

An engine that dies or stops inside a job says so, since there the batch system is the usual
cause: it sends SIGTERM, then SIGKILL, when the job reaches its walltime or is cancelled.
"""
from __future__ import annotations

import os
import re
from typing import Optional, Tuple

JOB_ID_VARIABLES = (("Slurm", "SLURM_JOB_ID"), ("PBS", "PBS_JOBID"), ("LSF", "LSB_JOBID"), ("Windows HPC", "CCP_JOBID"))


def batch_job(env=None) -> Optional[Tuple[str, str]]:
    """``(system, job id)``, or None outside a batch job."""
    env = os.environ if env is None else env
    for system, name in JOB_ID_VARIABLES:
        if env.get(name):
            return system, env[name]
    if env.get("JOB_ID") and (env.get("SGE_ROOT") or env.get("SGE_TASK_ID")):
        return "Grid Engine", env["JOB_ID"]
    ad = env.get("_CONDOR_JOB_AD")
    if ad:
        return "HTCondor", _condor_job_id(ad)
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
    job = batch_job(env)
    if job is None:
        return ""
    return (" in %s job %s (the batch system sends %s when the job reaches its walltime or is cancelled)"
            % (job[0], job[1], what))
