"""Batch systems for tests: the real Slurm and Grid Engine of the test bed and the fakes, and
what each system itself says about a job (asked directly, never through a launcher)."""
from __future__ import annotations

import os
import pwd
import re
import subprocess

import pytest

from conftest import ROOT
from fakes.batch import fake_batch_env, stop_all_jobs
from services import bring_up

REAL = {"slurm": ("slurm.sh", "single-node Slurm"), "sge": ("sge.sh", "Grid Engine")}
FAKE = ("pbs", "lsf", "htcondor", "windowshpc")
_up: dict = {}


def listed_states(system: str, job_id: str) -> list:
    """What the batch system itself says of the job, asked directly (not through the launcher)."""
    def out(*cmd):
        return subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout

    if system == "slurm":
        return out("squeue", "-h", "-j", job_id, "-o", "%T").split()
    if system == "sge":
        return [row.split()[4] for row in out("qstat").splitlines()[2:] if row.split()[:1] == [job_id]]
    if system == "pbs":
        return [row.split()[4] for row in out("qstat", job_id).splitlines()[2:] if len(row.split()) > 4]
    if system == "lsf":
        return [row.split()[2] for row in out("bjobs", job_id).splitlines()[1:]
                if len(row.split()) > 2 and row.split()[2] not in ("DONE", "EXIT")]
    if system == "windowshpc":
        states = re.findall(r"^State\s*:\s*(\w+)", out("job", "view", job_id), re.M)
        return [s for s in states if s not in ("Finished", "Failed", "Canceled")]
    return [row.split()[5] for row in out("condor_q", "-nobatch", job_id).splitlines()
            if row.split()[:1] and row.split()[0].startswith(job_id + ".")]


def job_listed(system: str, job_id: str) -> bool:
    return bool(listed_states(system, job_id))


def jobs_named(system: str, name: str) -> list:
    """Ids of this user's unfinished jobs called name, asked of the batch system directly."""
    def out(*cmd):
        return subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout

    if system == "slurm":
        return out("squeue", "-h", "-u", pwd.getpwuid(os.getuid()).pw_name, "-n", name, "-o", "%i").split()
    if system == "sge":
        return re.findall(r"^job_number:\s*(\d+)", out("qstat", "-j", name), re.M)
    if system == "pbs":
        return out("qselect", "-N", name).split()
    if system == "lsf":
        return [row.split()[0] for row in out("bjobs", "-w", "-J", name).splitlines()[1:]
                if row.split()[2:3] not in (["DONE"], ["EXIT"])]
    if system == "windowshpc":
        return [row.split()[0] for row in out("job", "list", "/jobname:" + name).splitlines()[2:]]
    return out("condor_q", "-constraint", 'JobBatchName == "%s"' % name, "-af", "ClusterId").split()


def use_batch_system(name: str, request, tmp_path, monkeypatch) -> str:
    """Bring up a real batch system (once per session) or put the fakes on PATH for this test,
    and give it a MINIPAR_DIR in tmp_path."""
    if name in REAL and name not in _up:
        if os.geteuid() != 0:
            pytest.skip("bringing up %s needs root" % name)
        _up[name] = bring_up(*REAL[name])
    if name in FAKE:
        env = fake_batch_env(tmp_path, kill_delay=0.5)
        for key in ("PATH", "FAKE_BATCH_SPOOL", "FAKE_BATCH_PYTHON", "FAKE_BATCH_KILL_DELAY"):
            monkeypatch.setenv(key, env[key])
        request.addfinalizer(lambda: stop_all_jobs(env))
    monkeypatch.setenv("MINIPAR_DIR", str(tmp_path / "mp"))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), str(ROOT / "tests")]))
    return name


@pytest.fixture(params=list(REAL) + list(FAKE))
def system(request, tmp_path, monkeypatch):
    """A batch system (real, brought up once per session, or the fakes) and a MINIPAR_DIR."""
    return use_batch_system(request.param, request, tmp_path, monkeypatch)


def make_profile(tmp_path, text: str):
    pdir = tmp_path / "profile"
    pdir.mkdir(exist_ok=True)
    (pdir / "minipar.toml").write_text(text)
    return pdir


def number(job_id) -> str:
    """The numeric part of a job id: '12', '3[].server' and '3[2].server' give '12', '3', '3'."""
    return re.match(r"\d*", str(job_id)).group()


def engine_facts():
    """This engine's pid and the batch job it runs in, from the variables each system sets."""
    import os
    import re
    for variable in ("SLURM_JOB_ID", "JOB_ID", "PBS_JOBID", "LSB_JOBID", "CCP_JOBID"):
        if os.environ.get(variable):
            return os.getpid(), re.match(r"\d*", os.environ[variable]).group()
    with open(os.environ["_CONDOR_JOB_AD"]) as ad:
        return os.getpid(), re.search(r"ClusterId = (\d+)", ad.read()).group(1)


SUBMIT = {"slurm": "sbatch", "sge": "qsub", "pbs": "qsub", "lsf": "bsub", "htcondor": "condor_submit",
          "windowshpc": "job"}
CANCEL = {"slurm": ["scancel"], "sge": ["qdel"], "pbs": ["qdel"], "lsf": ["bkill"], "htcondor": ["condor_rm"],
          "windowshpc": ["job", "cancel"]}
