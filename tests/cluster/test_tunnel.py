"""Engines and clients reaching a loopback-only controller through real ssh tunnels."""
from __future__ import annotations

import json
import os

import pytest

import minipar
from helpers import pid_gone, wait_for


@pytest.mark.parametrize("curve", ["auto", "true"], ids=["plain", "curve"])
def test_engine_and_client_through_ssh(profile, sshd, curve):  # noqa: F811
    profile.controller("--enginessh=%s" % sshd, "--ssh=%s" % sshd, "--controller.curve=%s" % curve)
    assert json.loads(profile.engine_file().read_text())["ssh"] == sshd
    assert ("curve_serverkey" in json.loads(profile.engine_file().read_text())) == (curve == "true")
    eng = profile.engine()
    wait_for(lambda: "tunnelling through localhost" in eng.output(), 30, "the engine's tunnel")
    rc = minipar.Client(url_file=str(profile.client_file()))
    profile.clients.append(rc)
    assert rc._url.startswith("tcp://127.0.0.1:") and rc._url != "tcp://127.0.0.1:%d" % json.loads(
        profile.client_file().read_text())["ports"]["client"]
    rc.wait_for_engines(1, timeout=30)
    assert rc[0].apply_sync(os.getppid) == eng.pid
    tunnel = rc._tunnel
    rc.close()
    wait_for(lambda: pid_gone(tunnel.pid), 10, "the client's ssh tunnel to end")


def test_engine_ssh_flag_overrides_the_file(profile, sshd):  # noqa: F811
    profile.controller()
    eng = profile.engine("--ssh=%s" % sshd)
    rc = profile.client()
    rc.wait_for_engines(1, timeout=30)
    assert "tunnelling through localhost" in eng.output()
    assert rc[0].apply_sync(sum, [1, 1]) == 2


def test_unreachable_ssh_server_is_a_clear_error(profile):
    profile.controller()
    eng = profile.engine("--ssh=nobody@127.0.0.1:1")
    assert eng.wait(30) == 1
    out = eng.output()
    assert "ssh tunnel to nobody@127.0.0.1:1 failed" in out
    assert "Traceback" not in out
