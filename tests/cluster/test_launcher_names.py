"""Launcher names as ipyparallel and IPython 0.13 spell them, and 0.13-era template arithmetic."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from helpers import ROOT
from minipar.cluster.launchers import CONTROLLER_LAUNCHERS, ENGINE_LAUNCHERS, launcher_class
from minipar.cluster.launchers.template import BatchTemplate
from minipar.error import TemplateError
from minipar.config import ConfigError

SPELLINGS = [
    ("MPI", "engines", "mpi.MPIEngineSetLauncher"),
    ("mpi", "controller", "mpi.MPIControllerLauncher"),
    ("SSH", "engines", "ssh.SSHEngineSetLauncher"),
    ("PBS", "controller", "pbs.PBSControllerLauncher"),
    ("Slurm", "engines", "slurm.SlurmEngineSetLauncher"),
    ("SLURM", "controller", "slurm.SlurmControllerLauncher"),
    ("HTCondor", "engines", "htcondor.HTCondorEngineSetLauncher"),
    ("WindowsHPC", "engines", "windowshpc.WindowsHPCEngineSetLauncher"),
    ("winhpc", "controller", "windowshpc.WindowsHPCControllerLauncher"),
    ("SSHEngineSetLauncher", "engines", "ssh.SSHEngineSetLauncher"),
    ("SSHProxyEngineSetLauncher", "engines", "ssh.SSHProxyEngineSetLauncher"),
    ("PBSControllerLauncher", "controller", "pbs.PBSControllerLauncher"),
    ("PBSEngineSetLauncher", "engines", "pbs.PBSEngineSetLauncher"),
    ("MPIExecEngineSetLauncher", "engines", "mpi.MPIEngineSetLauncher"),
    ("LSFLauncher", "engines", "lsf.LSFEngineSetLauncher"),
    ("ipyparallel.cluster.launcher.SlurmEngineSetLauncher", "engines", "slurm.SlurmEngineSetLauncher"),
    ("ipyparallel.cluster.launcher:SGEControllerLauncher", "controller", "sge.SGEControllerLauncher"),
    ("IPython.parallel.apps.launcher.LocalControllerLauncher", "controller", "local.LocalControllerLauncher"),
    ("ipyparallel.apps.launcher.SSHEngineSetLauncher", "engines", "ssh.SSHEngineSetLauncher"),
    ("minipar.cluster.launchers.local.LocalEngineSetLauncher", "engines", "local.LocalEngineSetLauncher"),
]


@pytest.mark.parametrize("name, role, expected", SPELLINGS)
def test_chapter_and_ipyparallel_spellings_map_to_minipar_launchers(name, role, expected):
    cls = launcher_class(name, role)
    assert "%s.%s" % (cls.__module__, cls.__name__) == "minipar.cluster.launchers." + expected


def test_every_ipyparallel_entry_point_and_class_name_is_known():
    """ipyparallel 9.2's entry point names and the class names they load, but its generic 'batch'."""
    shorts = {"htcondor", "local", "lsf", "mpi", "pbs", "sge", "slurm", "ssh", "winhpc"}
    for short in shorts | {"sshproxy"}:
        launcher_class(short, "engines")
    for short in shorts:
        launcher_class(short, "controller")
    for registry, role in ((ENGINE_LAUNCHERS, "engines"), (CONTROLLER_LAUNCHERS, "controller")):
        for path in registry.values():
            name = path.rpartition(".")[2]
            assert launcher_class("ipyparallel.cluster.launcher." + name, role).__name__ == name


@pytest.mark.parametrize("name, role, says", [
    ("bogus", "engines", "unknown launcher 'bogus'; choose one of local, ssh, sshproxy, mpi, pbs, sge, lsf, slurm, "
                         "htcondor, windowshpc (in any case, or as a class name such as SSHEngineSetLauncher)"),
    ("ipyparallel.cluster.launcher.NopeLauncher", "controller", "unknown launcher "
     "'ipyparallel.cluster.launcher.NopeLauncher'; choose one of local, ssh, mpi, pbs, sge, lsf, slurm, htcondor, "
     "windowshpc"),
    ("SSHEngineSetLauncher", "controller", "'SSHEngineSetLauncher' starts engines, not the controller; write 'ssh' "
                                           "(or SSHControllerLauncher)"),
    ("PBSControllerLauncher", "engines", "starts the controller, not engines; write 'pbs' (or PBSEngineSetLauncher)"),
    ("SSHProxy", "controller", "there is no sshproxy launcher for the controller; choose one of local, ssh"),
])
def test_wrong_names_say_what_is_valid(name, role, says):
    with pytest.raises(ConfigError) as info:
        launcher_class(name, role, "minipar.toml")
    assert says in str(info.value) and "cluster.%s" % role in str(info.value)


def test_the_cli_takes_a_chapter_spelling_and_reports_an_unknown_one(tmp_path):
    env = dict(os.environ, MINIPAR_DIR=str(tmp_path / "mp"), PYTHONPATH=str(ROOT))
    cli = [sys.executable, "-m", "minipar.cluster", "start", "-n", "1", "--profile-dir", str(tmp_path / "p")]
    bad = subprocess.run(cli + ["--engines", "Torque"], env=env, capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0 and "unknown launcher 'Torque'; choose one of local" in bad.stderr
    assert "Traceback" not in bad.stderr


# ------------------------------------------------------------------ templates


@pytest.mark.parametrize("text, n, rendered", [
    ("{n/4}", 8, "2"),
    ("--nodes={n/4} -t 1-{n}", 16, "--nodes=4 -t 1-16"),
    ("{n/4}", 10, "2.5"),
    ("{n/4:.0f}", 10, "2"),
    ("{max(n/2, 1)}", 2, "1"),
    ("{n*1.0/2}", 4, "2.0"),
])
def test_division_with_an_exact_integer_result_renders_as_an_integer(text, n, rendered):
    assert BatchTemplate(text, "t").render({"n": n}) == rendered


def test_division_by_zero_is_a_template_error():
    with pytest.raises(TemplateError, match=r"t: \{n/0\}: division by zero"):
        BatchTemplate("{n/0}", "t").render({"n": 4})


CHAPTER_PBS_TEMPLATE = """#PBS -N ipython
#PBS -j oe
#PBS -l walltime=00:10:00
#PBS -l nodes={n/4}:ppn=4
#PBS -q {queue}

cd $PBS_O_WORKDIR
/usr/local/bin/mpiexec -n {n} ipengine --profile-dir={profile_dir}
"""


def test_the_0_13_chapters_pbs_template_renders_whole_node_counts(tmp_path):
    cls = launcher_class("PBSEngineSetLauncher", "engines")
    settings = {"batch_template": CHAPTER_PBS_TEMPLATE, "queue": "short", "context": {}, "options": []}
    script = cls(tmp_path, "c1", "INFO", [], n=8, settings=settings).write_script().read_text()
    assert "#PBS -l nodes=2:ppn=4\n#PBS -q short\n" in script
    assert "mpiexec -n 8 ipengine --profile-dir=%s\n" % tmp_path in script
