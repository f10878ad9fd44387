"""The README's offline install, as a site admin runs it: a wheelhouse made where there is an
index (``pip wheel --wheel-dir wheelhouse .``), then, in a fresh venv with pip told of no index
and no config, ``pip install --no-index --find-links wheelhouse minipar``. The installed copy
requires only pyzmq (and tomli below Python 3.11), imports every module with just those, and
runs a cluster."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from installs import isolated_env, source_tree

RUNTIME = {"pyzmq"} | ({"tomli"} if sys.version_info < (3, 11) else set())
"""What the installed minipar may bring along, on this Python."""

INSPECT = r"""
import importlib, importlib.metadata as md, json, pkgutil, sys, sysconfig
before = set(sys.modules)
import minipar
failed = {}
for found in pkgutil.walk_packages(minipar.__path__, "minipar.", onerror=lambda name: failed.setdefault(name, "?")):
    try:
        importlib.import_module(found.name)
    except ImportError as e:
        failed[found.name] = str(e)
site = tuple({sysconfig.get_paths()[k] for k in ("purelib", "platlib")})
from_site = {name.split(".")[0] for name, module in list(sys.modules.items())
             if name not in before and (getattr(module, "__file__", None) or "").startswith(site)}
print(json.dumps({"requires": md.requires("minipar"), "file": minipar.__file__, "site": site,
                  "modules": sum(1 for name in sys.modules if name.startswith("minipar.")),
                  "installed": sorted(d.metadata["Name"].lower() for d in md.distributions()),
                  "failed": failed, "from_site": sorted(from_site)}))
"""
"""Run in the venv: minipar's declared requirements, every module of it imported, and which
top-level packages those imports took from site-packages."""

CLUSTER = """
import json, minipar
with minipar.Cluster(n=1) as rc:
    print(json.dumps(rc[0].apply_sync(lambda: __import__("minipar").__file__)))
"""


@pytest.fixture(scope="module")
def wheelhouse(tmp_path_factory):
    """On the machine with an index: ``pip wheel --wheel-dir wheelhouse .`` in a clone."""
    tmp = tmp_path_factory.mktemp("offline")
    src = source_tree(tmp / "clone")
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--wheel-dir", "wheelhouse", "."],
                           cwd=str(src), capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stderr
    return src / "wheelhouse"


@pytest.fixture(scope="module")
def venv(wheelhouse, tmp_path_factory):
    """On the cluster: a fresh venv, then ``pip install --no-index --find-links wheelhouse minipar``."""
    venv = tmp_path_factory.mktemp("cluster") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300, env=isolated_env())
    installed = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-index",
                                "--find-links", str(wheelhouse), "minipar"],
                               cwd=str(wheelhouse.parent), capture_output=True, text=True, timeout=300,
                               env=isolated_env())
    assert installed.returncode == 0, installed.stderr
    return venv


def in_venv(venv, code, **env):
    ran = subprocess.run([str(venv / "bin" / "python"), "-c", code], cwd="/", capture_output=True, text=True,
                         timeout=120, env=isolated_env(**env))
    assert ran.returncode == 0, ran.stderr
    return json.loads(ran.stdout.splitlines()[-1])


def test_the_wheelhouse_holds_minipar_and_its_runtime_dependencies_only(wheelhouse):
    names = {wheel.name.split("-")[0].lower() for wheel in wheelhouse.glob("*.whl")}
    assert names == {"minipar"} | RUNTIME
    assert [p.name for p in wheelhouse.iterdir() if p.suffix != ".whl"] == []


def test_the_installed_copy_requires_pyzmq_and_tomli_below_311_and_imports_every_module_with_them(venv):
    found = in_venv(venv, INSPECT)
    runtime = sorted(r.replace(" ", "") for r in found["requires"] if "extra ==" not in r)
    assert runtime == ["pyzmq>=22", 'tomli>=1.1;python_version<"3.11"']
    assert set(found["installed"]) - {"pip", "setuptools"} == {"minipar"} | RUNTIME
    assert found["file"].startswith(tuple(found["site"])), "imported from the venv, not the checkout"
    assert found["failed"] == {"minipar.client.magics": "No module named 'IPython'"}, \
        "only the IPython extension needs more than the runtime dependencies"
    assert found["modules"] > 60
    assert set(found["from_site"]) <= {"minipar", "zmq", "tomli"}, found["from_site"]


def test_the_installed_copy_runs_a_cluster(venv, tmp_path):
    engine_file = in_venv(venv, CLUSTER, MINIPAR_DIR=str(tmp_path / "mp"))
    assert engine_file.startswith(str(venv)) and engine_file.endswith("/minipar/__init__.py")
