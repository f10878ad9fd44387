"""``import minipar`` loads only what it needs: the public names come in on first use.

Each check runs in a fresh interpreter, since the test process has long imported everything.
"""
from __future__ import annotations

import json
import subprocess
import sys

from helpers import ROOT

HEAVY = ["asyncio", "sqlite3", "subprocess", "zmq", "json", "uuid", "hmac", "concurrent.futures",
         "tomllib", "tomli", "dataclasses", "minipar.config", "minipar.cluster", "minipar.client",
         "minipar.error", "minipar.controller", "minipar.engine"]
"""Imported by none of ``import minipar``: each costs milliseconds, some tens of them."""

FOR_CLIENT_ONLY = ["asyncio", "sqlite3", "subprocess", "tomllib", "tomli", "dataclasses", "minipar.config",
                   "minipar.cluster", "minipar.controller", "minipar.engine", "minipar.client.magics"]
"""Not imported for ``minipar.Client`` either: they belong to Cluster, the controller, IPython."""
if sys.version_info < (3, 9):
    FOR_CLIENT_ONLY.remove("subprocess")  # Python 3.8's uuid imports it itself


def run(code: str) -> dict:
    out = subprocess.run([sys.executable, "-c", code], cwd=str(ROOT), capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.splitlines()[-1])


LOADED = """
import sys
before = set(sys.modules)
import minipar
%s
loaded = sorted(set(sys.modules) - before)
import json
print(json.dumps(loaded))
"""


def test_import_minipar_loads_no_heavy_module():
    loaded = run(LOADED % "")
    assert [m for m in HEAVY if m in loaded] == []
    assert [m for m in loaded if m.startswith("minipar")] == ["minipar"]


def test_client_loads_neither_cluster_nor_config_nor_asyncio():
    loaded = run(LOADED % "minipar.Client")
    assert "minipar.client.client" in loaded and "zmq" in loaded
    assert [m for m in FOR_CLIENT_ONLY if m in loaded] == []


def test_every_public_name_resolves_and_is_listed():
    found = run("""
import json, minipar
import minipar.error, minipar.dependency, minipar.cluster.cluster
names = {n: getattr(minipar, n) for n in minipar.__all__}
same = {"Cluster": names["Cluster"] is minipar.cluster.cluster.Cluster,
        "depend": names["depend"] is minipar.dependency.depend,
        "RemoteError": names["RemoteError"] is minipar.error.RemoteError}
ns = {}
exec("from minipar import *", ns)
print(json.dumps({"missing_from_dir": sorted(set(minipar.__all__) - set(dir(minipar))),
                  "star": sorted(set(minipar.__all__) - set(ns)), "same": same,
                  "version": list(minipar.version_info), "error_module": minipar.error.__name__}))
""")
    assert found["missing_from_dir"] == [] and found["star"] == []
    assert found["same"] == {"Cluster": True, "depend": True, "RemoteError": True}
    assert found["version"] and found["error_module"] == "minipar.error"


def test_submodules_are_attributes_and_unknown_names_are_attribute_errors():
    found = run("""
import json, minipar
try:
    minipar.no_such_name
except AttributeError as e:
    err = str(e)
print(json.dumps({"err": err, "serialize": minipar.serialize.__name__, "config": minipar.config.__name__}))
""")
    assert found["err"] == "module 'minipar' has no attribute 'no_such_name'"
    assert found["serialize"] == "minipar.serialize" and found["config"] == "minipar.config"
