"""The test-bed scripts (scripts/services/mpi.sh, slurm.sh) bring their service up, say one OK line,
are idempotent, and the facts the launcher tests will build on hold.

Each script runs once per module (cold: apt, ~15 s each; warm: a second or two) and once more to
check idempotence. Root only: they install packages and start daemons. A script that fails
skips these tests, except under CI=true, where it fails them.
"""
from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from fixtures.services import ENV_DIR, read_env, run_script
from helpers import wait_for

WARM_SECONDS = 60   # a second run must not reinstall or restart anything; it takes seconds

pytestmark = pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0,
                                reason="the service scripts install packages and start daemons: root only")


def live_pids(comm: str) -> list:
    """Pids of live (not zombie) processes named comm; PID 1 reaps orphans lazily here."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if Path("/proc/%s/comm" % entry).read_text().strip() != comm:
                continue
            state = Path("/proc/%s/stat" % entry).read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state not in ("Z", "X"):
            pids.append(int(entry))
    return sorted(pids)


def sh(*args, env=None, timeout=60) -> subprocess.CompletedProcess:
    return subprocess.run(args, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout,
                          env=None if env is None else {**os.environ, **env})


# ---------------------------------------------------------------- MPI

def test_mpi_script_says_ok(mpi):
    assert mpi.ok_lines[0].startswith("OK mpi: Open MPI ")
    assert "MPICH " in mpi.ok_lines[0] and "mpi4py " in mpi.ok_lines[0]
    assert read_env("mpich.env")["MPI4PY_MPIABI"] == "mpich"
    shim = Path(read_env("mpich.env")["LD_LIBRARY_PATH"]) / "libmpi.so.12"
    assert shim.is_symlink() and shim.resolve().name.startswith("libmpich.so.12")


def test_mpi_script_again_is_idempotent(mpi):
    before = {p.name: (p.stat().st_mtime_ns, p.read_text()) for p in ENV_DIR.glob("*.env")}
    again = run_script("mpi.sh", sys.executable, timeout=5 * WARM_SECONDS)
    assert again.returncode == 0 and len(again.ok_lines) == 1, again.summary()
    assert again.ok_lines == mpi.ok_lines
    assert {p.name: (p.stat().st_mtime_ns, p.read_text()) for p in ENV_DIR.glob("*.env")} == before
    assert again.seconds < WARM_SECONDS, again.summary()


def ranks_said(output: str, tag: str) -> list:
    # rank output can interleave within a line: pick tagged tokens out, never compare lines
    return sorted(re.findall(r"<%s (\S*) (\S*)>" % tag, output))


def test_mpich_runs_two_ranks_with_pmi_variables(mpi):
    r = sh("mpiexec.mpich", "-n", "2", "sh", "-c", 'echo "<r ${PMI_RANK-none} ${PMI_SIZE-none}>"')
    assert r.returncode == 0, r.stderr
    assert ranks_said(r.stdout, "r") == [("0", "2"), ("1", "2")], r.stdout


def test_openmpi_runs_two_ranks_with_ompi_variables_and_no_pmi_rank(mpi):
    r = sh("mpiexec.openmpi", "-n", "2", "sh", "-c",
           'echo "<r ${OMPI_COMM_WORLD_RANK-none} ${PMI_RANK-none}>"', env=read_env("openmpi.env"))
    assert r.returncode == 0, r.stderr
    assert ranks_said(r.stdout, "r") == [("0", "none"), ("1", "none")], r.stdout


def test_openmpi_refuses_root_without_the_variables(mpi):
    env = {k: v for k, v in os.environ.items() if not k.startswith("OMPI_")}
    r = subprocess.run(["mpiexec.openmpi", "-n", "1", "true"], stdin=subprocess.DEVNULL, capture_output=True,
                       text=True, timeout=60, env=env)
    assert r.returncode != 0
    assert "run as root" in r.stdout + r.stderr


ALLREDUCE = """\
import sys
from mpi4py import MPI
comm = MPI.COMM_WORLD
total = comm.allreduce(comm.Get_rank() + 1)
with open("%s.%d" % (sys.argv[1], comm.Get_rank()), "w") as f:
    f.write("%s %d %d" % (MPI.get_vendor()[0], comm.Get_size(), total))
"""


@pytest.mark.parametrize("launcher, env_file, vendor", [
    ("mpiexec.openmpi", "openmpi.env", "Open MPI"),
    ("mpiexec.mpich", "mpich.env", "MPICH"),
])
def test_mpi4py_allreduce_over_three_ranks(mpi, tmp_path, launcher, env_file, vendor):
    script = tmp_path / "allreduce.py"
    script.write_text(ALLREDUCE)
    prefix = tmp_path / "rank"
    r = sh(launcher, "-n", "3", sys.executable, str(script), str(prefix), env=read_env(env_file))
    assert r.returncode == 0, r.stdout + r.stderr
    said = sorted(p.read_text() for p in tmp_path.glob("rank.*"))
    assert said == ["%s 3 6" % vendor] * 3, r.stdout + r.stderr


# ---------------------------------------------------------------- Slurm

SLURM_PID_FILES = {"munged": "/run/munge/munged.pid", "slurmctld": "/run/slurmctld.pid", "slurmd": "/run/slurmd.pid"}


def daemon_pids() -> dict:
    return {name: int(Path(path).read_text().strip()) for name, path in SLURM_PID_FILES.items()}


def test_slurm_script_says_ok(slurm):
    assert slurm.ok_lines[0].startswith("OK slurm: slurm-wlm ")
    for name, pid in daemon_pids().items():
        assert live_pids(name) == [pid], name


def test_slurm_script_again_is_idempotent(slurm):
    before = daemon_pids()
    again = run_script("slurm.sh", timeout=5 * WARM_SECONDS)
    assert again.returncode == 0 and len(again.ok_lines) == 1, again.summary()
    assert daemon_pids() == before
    for name, pid in before.items():
        assert live_pids(name) == [pid], "%s: one daemon, the same as before" % name
    assert again.seconds < WARM_SECONDS, again.summary()


def test_node_answers_with_eight_cpus(slurm):
    r = sh("sinfo", "-h", "-o", "%T %c %N %P")
    state, *rest = r.stdout.split()
    # idle on a quiet test bed; a flag suffix (idle*, down~) would mean slurmd is not answering
    assert state in ("idle", "mixed", "allocated"), r.stdout + r.stderr
    assert rest == ["8", socket.gethostname(), "debug*"], r.stdout + r.stderr


def test_sbatch_parsable_prints_the_id_and_the_job_runs(slurm, tmp_path):
    out = tmp_path / "id"
    r = sh("sbatch", "--parsable", "-o", str(tmp_path / "%j.out"), "--wrap", 'echo "$SLURM_JOB_ID" > %s' % out)
    assert r.returncode == 0 and r.stdout.strip().isdigit(), r.stdout + r.stderr
    job = r.stdout.strip()
    wait_for(lambda: out.exists() and out.read_text().strip() == job, 30, "job %s to write its id" % job)


def test_a_job_that_can_never_fit_is_refused(slurm):
    r = sh("sbatch", "--parsable", "--ntasks=20", "-o", "/dev/null", "--wrap", "true")
    assert r.returncode != 0
    assert "More processors requested than permitted" in r.stderr


def test_unknown_job_ids(slurm):
    # what a poller has to treat as 'finished': scancel says nothing, squeue exits 1
    unknown = "67000000"
    r = sh("scancel", unknown)
    assert (r.returncode, r.stdout) == (0, "")
    r = sh("squeue", "-h", "-j", unknown)
    assert r.returncode == 1 and "Invalid job id" in r.stderr
