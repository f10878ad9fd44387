"""Engines and clients of other Python and minipar versions: they work together, or are refused
at registration or connect with both versions named, never an unpickling error mid-task.

The controller runs on this Python; engines and clients run on pyenv's others (tests/pythons.py),
which proves the controller's own Python does not matter: what must match is the engines' and
the clients' Python minor version, set by the first of them to join (minipar/controller/versions.py).
"""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from helpers import Proc, wait_for
from pythons import other_minors, venv_with_runtime_deps

import minipar
from minipar import protocol
from minipar.doctor import checks
from minipar.doctor.probe import probe_key
from minipar.error import ProtocolMismatch

THIS = "%d.%d" % sys.version_info[:2]
FIRST, SECOND = other_minors()

CLIENT = """
import json, sys, minipar
try:
    rc = minipar.Client(url_file=sys.argv[1])
except minipar.error.ProtocolMismatch as e:
    print(json.dumps({"refused": str(e)}))
    sys.exit(0)
with rc:
    if sys.argv[2] == "0":
        print(json.dumps({"connected": rc.ids}))
        sys.exit(0)
    rc.wait_for_engines(int(sys.argv[2]), timeout=30)
    square = lambda x: x * x  # a lambda travels as bytecode
    print(json.dumps({"direct": rc[:].apply_sync(square, 3), "lb": rc.load_balanced_view().map_sync(square, [1, 2]),
                      "pythons": rc[:].apply_sync(lambda: __import__("sys").version_info[:2])}))
"""
"""A client on another Python: connects, then (unless refused, or told of 0 engines) runs a lambda
on every engine."""

FAKE_MINIPAR_VERSION = """
import runpy, sys, minipar
minipar.__version__ = sys.argv.pop(1)
sys.argv[0] = "minipar.engine"
runpy.run_module("minipar.engine", run_name="__main__", alter_sys=True)
"""
"""An engine that says it is another minipar version (``python -c`` this VERSION engine args)."""


@pytest.fixture(scope="module")
def pythons(tmp_path_factory):
    """Pythons other than this one, in venvs with pyzmq (and tomli), by minor version."""
    return {minor: venv_with_runtime_deps(minor, tmp_path_factory) for minor in (FIRST, SECOND)}


def run_client(profile, python, engines=0) -> dict:
    out = subprocess.run([str(python), "-c", CLIENT, str(profile.client_file()), str(engines)], env=profile.env,
                         capture_output=True, text=True, timeout=90)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.splitlines()[-1])


def controller_log(profile) -> str:
    return (profile.dir / "log" / "controller.log").read_text()


def wait_for_registered(profile, n):
    wait_for(lambda: controller_log(profile).count(" registered (host ") >= n, 30, "%d engines to register" % n)


def full_version(python) -> str:
    return subprocess.run([str(python), "-c", "import sys; print('%d.%d.%d' % sys.version_info[:3])"],
                          capture_output=True, text=True, check=True).stdout.strip()


def test_engines_and_a_client_on_another_python_than_the_controller_work(profile, pythons):
    profile.controller()
    for _ in range(2):
        profile.engine(python=pythons[FIRST])
    found = run_client(profile, pythons[FIRST], engines=2)
    assert found == {"direct": [9, 9], "lb": [1, 4], "pythons": [[int(p) for p in FIRST.split(".")]] * 2}


def test_a_client_on_another_python_than_the_engines_is_refused_at_connect(profile, pythons):
    profile.controller()
    profile.engine(python=pythons[FIRST])
    wait_for_registered(profile, 1)
    refused = run_client(profile, pythons[SECOND])["refused"]
    assert refused.startswith("the controller at tcp://127.0.0.1:")
    assert ("refused this client: Python mismatch: this client runs Python %s (minipar %s), but this controller's "
            "engines and clients run Python %s, as the first of them to join did (engine 0 on host "
            % (full_version(pythons[SECOND]), minipar.__version__, FIRST)) in refused
    assert "Fix: run this client with Python %s, or start a controller of its own for Python %s" % (FIRST, SECOND) \
        in refused
    assert "refused a client on host " in controller_log(profile)
    assert run_client(profile, pythons[FIRST], engines=1)["direct"] == [9], "the engines serve on"


def test_an_engine_on_another_python_than_the_first_is_refused_at_registration(profile, pythons):
    profile.controller()
    profile.engine(python=pythons[FIRST])
    wait_for_registered(profile, 1)
    late = profile.engine(python=pythons[SECOND])
    assert late.wait(30) != 0
    out = late.output()
    assert ("refused this engine: Python mismatch: this engine runs Python %s (minipar %s), but this controller's "
            "engines and clients run Python %s, as the first of them to join did (engine 0 on host "
            % (full_version(pythons[SECOND]), minipar.__version__, FIRST)) in out, out
    assert "Fix: start this engine with Python %s" % FIRST in out
    assert run_client(profile, pythons[FIRST], engines=1)["direct"] == [9]


def test_the_first_client_sets_the_python_for_engines_that_come_later(profile, pythons):
    profile.controller()
    assert run_client(profile, pythons[FIRST]) == {"connected": []}  # connects, runs nothing, leaves
    late = profile.engine(python=pythons[SECOND])
    assert late.wait(30) != 0
    assert "engines and clients run Python %s, as the first of them to join did (a client on host " % FIRST \
        in late.output()
    profile.engine(python=pythons[FIRST])
    assert run_client(profile, pythons[FIRST], engines=1)["direct"] == [9]


def test_another_minipar_version_with_the_same_protocol_works(profile, monkeypatch):
    profile.controller()
    profile.procs.append(Proc(["-c", FAKE_MINIPAR_VERSION, "0.0.1"], profile.env, profile.tmp / "old-engine.out"))
    monkeypatch.setattr(protocol, "MINIPAR_VERSION", "9.9.9")
    rc = profile.client()
    rc.wait_for_engines(1, timeout=30)
    assert rc[:].apply_sync(lambda x: x + 1, 41) == [42]
    log = controller_log(profile)
    assert "runs minipar 0.0.1, this controller minipar %s: both speak protocol %s, so they work together" % (
        minipar.__version__, protocol.PROTOCOL_VERSION) in log
    assert "a client on host" in log and "runs minipar 9.9.9" in log


def test_another_protocol_version_is_refused_naming_both(profile, monkeypatch):
    profile.controller()
    monkeypatch.setattr(protocol, "PROTOCOL_VERSION", "0")
    monkeypatch.setattr(protocol, "MINIPAR_VERSION", "0.0.1")
    with pytest.raises(ProtocolMismatch) as info:
        profile.client()
    assert ("refused this client: protocol mismatch: the client speaks minipar protocol 0 (minipar 0.0.1, Python "
            "%s), this controller speaks protocol 2 (minipar %s, Python %s); install the same minipar version on "
            "both sides" % (protocol.python_version(), minipar.__version__, protocol.python_version())) \
        in str(info.value)


def test_the_probe_tells_the_clusters_python_and_the_doctor_fails_another(profile, tmp_path):
    profile.controller()
    info = json.loads(profile.engine_file().read_text())
    url = "tcp://127.0.0.1:%d" % info["ports"]["engine"]
    assert probe_key(url, info, 10).reply["cluster_python"] is None
    profile.client()
    reply = probe_key(url, info, 10).reply
    assert reply["cluster_python"] == THIS and reply["minipar"] == minipar.__version__
    found = []
    checks.Doctor(tmp_path / "unused.json", 1.0, say=found.append).check_protocol(dict(reply, cluster_python="3.1"))
    assert found == ["FAIL protocol: the controller speaks minipar protocol 2 (Python %s, minipar %s), as this "
                     "minipar does (Python %s, minipar %s), but its engines and clients run Python 3.1: it refuses "
                     "an engine on Python %s -- fix: start the engines with Python 3.1 (one controller's engines "
                     "and clients all run one Python minor version), or give these a controller of their own"
                     % (protocol.python_version(), minipar.__version__, protocol.python_version(),
                        minipar.__version__, THIS)]
