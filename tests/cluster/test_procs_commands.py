"""``pip install`` puts minipar-controller, -engine, -cluster, -profile and -doctor on PATH: the same
programs as ``python -m minipar.X``, from the installed copy."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import zmq

from helpers import ROOT, pid_gone, wait_for
from installs import source_tree

ROLES = ("controller", "engine", "cluster", "profile", "doctor")


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """A fresh venv with minipar installed from a wheel built from this tree.

    pyzmq (and tomli below Python 3.11) come from the test interpreter through a .pth file naming
    a directory of links to them alone, so the venv sees no other copy of minipar and nothing is downloaded."""
    tmp = tmp_path_factory.mktemp("install")
    src = source_tree(tmp / "src")
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp / "dist"),
                            str(src)], capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr
    [wheel] = (tmp / "dist").glob("minipar-*.whl")
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    install = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps",
                              "--no-index", str(wheel)], capture_output=True, text=True, timeout=300)
    assert install.returncode == 0, install.stderr
    deps = tmp / "deps"
    deps.mkdir()
    runtime = [Path(zmq.__file__).parent]
    if sys.version_info < (3, 11):
        import tomli
        runtime.append(Path(tomli.__file__).parent)
    for package in runtime:
        for name in (package.name, package.name.replace("zmq", "pyzmq") + ".libs"):
            if (package.parent / name).exists() and not (deps / name).exists():
                (deps / name).symlink_to(package.parent / name)
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    (Path(site) / "zmq-from-tests.pth").write_text(str(deps) + "\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["MINIPAR_DIR"] = str(tmp / "mp")
    return venv, env, site


def run(argv, env, **kwargs):
    return subprocess.run([str(a) for a in argv], env=env, capture_output=True, text=True, timeout=120,
                          cwd="/", **kwargs)


@pytest.mark.parametrize("role", ROLES)
def test_command_is_the_same_program_as_python_m(installed, role):
    venv, env, site = installed
    command = run([venv / "bin" / ("minipar-" + role), "--help"], env)
    module = run([venv / "bin" / "python", "-m", "minipar." + role, "--help"], env)
    assert command.returncode == 0 and module.returncode == 0, command.stderr + module.stderr
    assert command.stdout.startswith("usage: minipar-%s " % role)
    assert module.stdout.startswith("usage: python -m minipar.%s " % role)
    assert " ".join(command.stdout.split()).replace("usage: minipar-%s " % role, "usage: PROG ") == \
        " ".join(module.stdout.split()).replace("usage: python -m minipar.%s " % role, "usage: PROG ")
    assert "Run it as `minipar-%s` (installed with pip) or as `python -m minipar.%s`" % (role, role) in \
        " ".join(command.stdout.split())


def test_commands_start_and_stop_a_cluster_from_the_installed_copy(installed):
    venv, env, site = installed
    bin_dir = venv / "bin"
    created = run([bin_dir / "minipar-profile", "create"], env)
    assert created.returncode == 0 and "minipar.toml" in created.stdout
    started = run([bin_dir / "minipar-cluster", "start", "-n", "1", "--daemonize"], env)
    assert started.returncode == 0, started.stderr
    pdir = Path(env["MINIPAR_DIR"]) / "profile_default"
    state = json.loads((pdir / "security" / "cluster-.json").read_text())
    pids = [state["controller"]["processes"][0]["pid"]] + [
        p["pid"] for s in state["engines"].values() for p in s["processes"]]
    try:
        cmdline = Path("/proc/%d/cmdline" % pids[1]).read_text().split("\0")
        assert cmdline[:3] == [str(bin_dir / "python"), "-m", "minipar.engine"]
        probe = run([bin_dir / "python", "-c", "import minipar; rc = minipar.Client(); rc.wait_for_engines(1, "
                     "timeout=20); print(rc[0].apply_sync(lambda: __import__('minipar').__file__))"], env)
        assert probe.returncode == 0, probe.stderr
        assert probe.stdout.strip() == str(Path(site) / "minipar" / "__init__.py")
    finally:
        stopped = run([bin_dir / "minipar-cluster", "stop"], env)
    assert stopped.returncode == 0, stopped.stderr
    for pid in pids:
        wait_for(lambda: pid_gone(pid), 10, "pid %d to be gone" % pid)


def test_error_messages_name_the_command(installed):
    venv, env, _ = installed
    out = run([venv / "bin" / "minipar-engine", "--profile=nosuch"], env)
    assert out.returncode == 2 and out.stderr.startswith("minipar-engine: error:") and "Traceback" not in out.stderr


def test_vendored_copy_names_itself_and_no_commands(tmp_path):
    vendor = tmp_path / "site_tools" / "_vendor"
    vendor.mkdir(parents=True)
    for d in (vendor.parent, vendor):
        (d / "__init__.py").write_text("")
    shutil.copytree(ROOT / "minipar", vendor / "minipar", ignore=shutil.ignore_patterns("__pycache__"))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    for role in ROLES:
        out = subprocess.run([sys.executable, "-m", "site_tools._vendor.minipar." + role, "--help"], env=env,
                             cwd=str(tmp_path), capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        assert out.stdout.startswith("usage: python -m site_tools._vendor.minipar.%s " % role)
        assert "minipar-%s" % role not in out.stdout
