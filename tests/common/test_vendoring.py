"""A copy of minipar vendored inside another package's tree starts its own processes."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

from helpers import ROOT

SCRIPT = """
import json, os, sys
from site_tools._vendor import minipar as ipp
with ipp.Cluster(n=1) as rc:
    cluster = rc.cluster
    cmdline = open("/proc/%d/cmdline" % cluster.engine_processes[0].pid).read().split("\\0")
    print(json.dumps({"engine": rc[0].apply_sync(lambda x: x * 2, 21),
                      "lb": rc.load_balanced_view().map_sync(abs, [-1, -2]),
                      "cmdline": cmdline,
                      "state_class": json.load(open(cluster.state_file))["controller"]["class"]}))
"""


def test_vendored_copy_launches_itself(tmp_path):
    vendor = tmp_path / "tree" / "site_tools" / "_vendor"
    vendor.mkdir(parents=True)
    for d in (vendor.parent, vendor):
        (d / "__init__.py").write_text("")
    shutil.copytree(ROOT / "minipar", vendor / "minipar", ignore=shutil.ignore_patterns("__pycache__"))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(MINIPAR_DIR=str(tmp_path / "mp"))
    out = subprocess.run([sys.executable, "-c", SCRIPT], cwd=str(tmp_path / "tree"), env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    found = json.loads(out.stdout)
    assert found["engine"] == 42 and found["lb"] == [1, 2]
    assert "site_tools._vendor.minipar.engine" in found["cmdline"]
    assert found["state_class"] == "site_tools._vendor.minipar.cluster.launchers.local.LocalControllerLauncher"
