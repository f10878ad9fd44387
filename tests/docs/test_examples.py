"""The examples run and print what they promise; the example profiles load, render, and start
engines on their batch system (the test bed's Slurm and Grid Engine, the fakes for the others)."""
from __future__ import annotations

import os
import pty
import re
import shutil
import subprocess
import sys

import pytest

import minipar
from fixtures.batch import engine_facts, number
from fixtures.services import read_env
from helpers import ROOT
from minipar.config import load_config

EXAMPLES = ROOT / "examples"
PROFILES = EXAMPLES / "profiles"
SYSTEMS = ["slurm", "pbs", "sge", "lsf", "htcondor", "windowshpc"]


def run_example(tmp_path, name, *args, env=None, stdin=None, timeout=120):
    """The example's output, run as a user runs it: from a fresh directory, with a fresh MINIPAR_DIR."""
    base = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "MINIPAR_DIR": str(tmp_path / "mp")}
    out = subprocess.run([sys.executable, str(EXAMPLES / name), *args], capture_output=True, text=True,
                         timeout=timeout, cwd=str(tmp_path), env=dict(base, **(env or {})), input=stdin)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


@pytest.mark.parametrize("example", ["pi_cluster.py", "pi_manual_start.py"])
def test_pi_examples(tmp_path, example):
    out = run_example(tmp_path, example, "--engines", "2", "--samples", "400000")
    assert re.search(r"^engines: \[0, 1\] pids: \[\d+, \d+\]$", out, re.M)
    pi = float(re.search(r"pi ~= ([\d.]+) from 400000 samples on 2 engines", out).group(1))
    assert abs(pi - 3.14159) < 0.02


def test_quickstart(tmp_path):
    out = run_example(tmp_path, "quickstart.py", "--engines", "2")
    assert re.fullmatch(r"engine ids: \[0, 1\]\n"
                        r"engine pids: \[\d+, \d+\]\n"
                        r"sqrt\(scale\) on each: \[3\.162, 3\.162\]\n"
                        r"parts: \[\[0, 1, 2, 3, 4, 5\], \[6, 7, 8, 9, 10, 11\]\]\n"
                        r"sum of each part: \[15, 51\]\n"
                        r"longest Collatz sequence below 1000 starts at 871: 178 steps\n"
                        r"27 takes 111 steps \(engine [01]\)\n", out), out


SWEEP_RESULT = re.compile(r"^36 points on 2 engines: [\d.]+s of work in [\d.]+s \([\d.]+x\)\n"
                          r"largest amplitude 7\.56 at damping 0\.050, frequency 0\.900\n", re.M)


def test_parameter_sweep_prints_progress_lines_into_a_file(tmp_path):
    out = run_example(tmp_path, "parameter_sweep.py", "--engines", "2", "--grid", "6")
    assert "\r" not in out
    assert re.search(r"^36/36 points after [\d.]+s$", out, re.M), out
    assert SWEEP_RESULT.search(out), out


def test_parameter_sweep_redraws_one_progress_line_on_a_terminal(tmp_path):
    primary, secondary = pty.openpty()
    proc = subprocess.Popen([sys.executable, str(EXAMPLES / "parameter_sweep.py"), "--engines", "2", "--grid", "6"],
                            stdout=secondary, stderr=subprocess.DEVNULL, cwd=str(tmp_path),
                            env=dict(os.environ, HOME=str(tmp_path), MINIPAR_DIR=str(tmp_path / "mp")))
    os.close(secondary)
    chunks = []
    while True:
        try:
            chunk = os.read(primary, 4096)
        except OSError:          # EIO: the example has ended and closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(primary)
    assert proc.wait(120) == 0
    out = b"".join(chunks).decode().replace("\r\n", "\n")
    assert re.search(r"\r\[#{30}\] 36/36 points, [\d.]+s\n", out), out
    assert SWEEP_RESULT.search(out), out


@pytest.mark.parametrize("launcher, env_file", [("mpiexec.openmpi", "openmpi.env"), ("mpiexec.mpich", "mpich.env")])
def test_mpi_example_sums_over_mpi_between_the_engines(mpi, tmp_path, launcher, env_file):
    out = run_example(tmp_path, "mpi_pi.py", "--engines", "3", "--mpiexec", launcher, "--intervals", "30000",
                      env=read_env(env_file))
    assert "engine ids: [0, 1, 2] MPI (rank, size): [(0, 3), (1, 3), (2, 3)]\n" in out
    assert "MPI library: %s" % ("Open MPI" if "openmpi" in launcher else "MPICH") in out
    assert "every rank has the same sum: True\n" in out
    assert re.search(r"^pi ~= 3\.14159265\d+ \(error \d\.\de-\d+\)$", out, re.M), out


PX_STEPS = """\
import os
answer = 6 * 7
answer
for i in range(2):
    print("engine", os.getpid() > 0, i)

%targets 1
1 / 0
%local print("here, not there")
%result
"""


def test_px_session_runs_what_is_typed_on_every_engine(tmp_path):
    out = run_example(tmp_path, "px_session.py", "--engines", "2", stdin=PX_STEPS)
    assert out.startswith("px> import os\npx> answer = 6 * 7\npx> answer\nOut[0:3]: 42\nOut[1:3]: 42\n"), out
    assert ("[stdout:0] \nengine True 0\nengine True 1\n[stdout:1] \nengine True 0\nengine True 1\n") in out
    assert "px> %targets 1\ntargets: [1]\npx> 1 / 0\n[1:execute]:\nTraceback" in out
    tracebacks = re.findall(r"^ZeroDivisionError: division by zero$", out, re.M)
    assert len(tracebacks) == 2, out            # once for the statement, once for %result
    assert "px> %local print(\"here, not there\")\nhere, not there\n" in out


def test_px_session_with_ipython_has_the_real_magics(tmp_path):
    pytest.importorskip("IPython")
    out = run_example(tmp_path, "px_session.py", "--engines", "2", "--ipython",
                      stdin="%px import os\n%px 6 * 7\n%px print('pid', os.getpid() > 0)\n")
    assert re.search(r"Out\[0:(\d+)\]: 42\nOut\[1:\1\]: 42\n", out), out    # the count is IPython's prompt's
    assert "[stdout:0] \npid True\n[stdout:1] \npid True\n" in out, out


# ----------------------------------------------------------------------- example profiles

@pytest.mark.parametrize("name", SYSTEMS)
def test_example_profile_loads_and_renders_its_settings(name, tmp_path):
    config = load_config(PROFILES / name)
    assert config.cluster.engines == name and config.source_of("cluster.engines") == str(PROFILES / name /
                                                                                         "minipar.toml")
    out = subprocess.run([sys.executable, "-m", "minipar.cluster", "render", "--profile-dir", str(PROFILES / name),
                          "-n", "4"], capture_output=True, text=True, timeout=60, cwd=str(tmp_path),
                         env=dict(os.environ, MINIPAR_DIR=str(tmp_path / "mp")))
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("==> engines job 1 of 1 (%s, 4 engines): " % name), out.stdout
    settings = config.section("launcher." + name)
    shown = [settings.account] + settings.options + ([settings.queue] if settings.queue else [])
    assert all(text in out.stdout for text in shown), out.stdout
    leftovers = [p for p in (PROFILES / name).iterdir() if p.name != "minipar.toml"]
    assert not leftovers, "render wrote into the example profile: %s" % leftovers


def test_every_batch_system_has_an_example_profile():
    from minipar.config import sections
    batch_systems = [name.split(".")[1] for name in sections() if name.startswith("launcher.") and
                     name.endswith(".engines")]          # a system with job templates: [launcher.X.engines]
    assert sorted(SYSTEMS) == sorted(batch_systems)
    assert sorted(p.name for p in PROFILES.iterdir()) == sorted(SYSTEMS)


def test_example_profile_starts_engines_in_jobs_of_its_system(system, tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_WINHPC_SCHEDULER", "headnode")   # the example's head node, for the fake `job`
    pdir = tmp_path / ("profile_" + system)
    pdir.mkdir()
    shutil.copy(str(PROFILES / system / "minipar.toml"), str(pdir / "minipar.toml"))
    cluster = minipar.Cluster(profile_dir=str(pdir), n=2, engine_timeout=120)
    with cluster as rc:
        [engines] = cluster.engine_sets.values()
        facts = rc[:].apply_sync(engine_facts)
        assert {job for _, job in facts} == {number(engines.job_id)}
        assert sorted(rc.load_balanced_view().map_sync(lambda x: x * x, range(4))) == [0, 1, 4, 9]
