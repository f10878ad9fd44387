"""CurveZMQ: every connection to the controller encrypted, on by default off loopback."""
from __future__ import annotations

import os
import stat
import subprocess
import sys

import pytest
import zmq

from helpers import read_json, start_cluster
from wire import CAN_CAPTURE, Capture
from minipar import curve
from minipar.error import CurveError
from minipar.protocol import Session, send_frames

pytestmark = pytest.mark.skipif(not zmq.has("curve"), reason="this libzmq has no curve")

SECRET = "payload-that-must-not-cross-the-wire-9f3c1e"


def echo(text):
    print(text)
    return text


def test_curve_true_encrypts_a_whole_cluster_on_loopback(profile):
    rc, _ = start_cluster(profile, 2, "--controller.curve=true")
    client_info, engine_info = read_json(profile.client_file()), read_json(profile.engine_file())
    server_key = client_info["curve_serverkey"]
    assert len(server_key) == 40 and engine_info["curve_serverkey"] == server_key
    key_file = profile.dir / "security" / "controller-curve.key"
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
    assert read_json(key_file)["public"] == server_key
    assert sorted(rc[:].apply_sync(echo, "x")) == ["x", "x"]
    ar = rc.load_balanced_view().map_async(echo, ["a", "b", "c"])
    assert ar.get(30) == ["a", "b", "c"] and [md["stdout"] for md in ar.metadata] == ["a\n", "b\n", "c\n"]
    big = b"\x07" * (2 * 1024 * 1024)
    rc[0].push({"big": big}, block=True)
    assert rc[0].pull("big", block=True) == big
    log = (profile.dir / "log" / "controller.log").read_text()
    assert "connections are encrypted (CurveZMQ; controller.curve = 'true')" in log
    rc.close()
    profile.procs[0].stop()
    assert not key_file.exists() and not profile.client_file().exists()


def test_auto_is_off_on_loopback_and_on_beyond_it(profile):
    ctl = profile.controller()
    assert "curve_serverkey" not in read_json(profile.client_file())
    ctl.stop()
    rc, _ = start_cluster(profile, 1, "--ip=*", "--location=127.0.0.1")
    assert len(read_json(profile.client_file())["curve_serverkey"]) == 40
    assert rc[0].apply_sync(echo, "beyond") == "beyond"


def test_a_peer_without_the_server_key_gets_nothing_and_the_controller_serves_on(profile):
    rc, _ = start_cluster(profile, 1, "--controller.curve=true")
    info = read_json(profile.client_file())
    session = Session(info["key"])
    ctx = zmq.Context()
    try:
        peers = []
        for server_key in (None, zmq.curve_keypair()[0]):
            s = ctx.socket(zmq.DEALER)
            s.setsockopt(zmq.LINGER, 0)
            s.setsockopt(zmq.SNDTIMEO, 2000)  # a refused handshake can leave no pipe to queue on
            if server_key is not None:
                public, secret = zmq.curve_keypair()
                s.setsockopt(zmq.CURVE_SERVERKEY, server_key)
                s.setsockopt(zmq.CURVE_PUBLICKEY, public)
                s.setsockopt(zmq.CURVE_SECRETKEY, secret)
            s.connect("tcp://127.0.0.1:%d" % info["ports"]["client"])
            _, frames = session.build("connect_request", {"protocol": 1, "python": "3"})
            try:
                send_frames(s, frames)
            except zmq.Again:
                pass  # never queued: the controller cannot answer it either
            peers.append(s)
        assert rc[0].apply_sync(echo, "still serving") == "still serving"
        for s in peers:
            assert not s.poll(1000), "a peer without the server key was answered"
        for s in peers:
            s.close()
    finally:
        ctx.term()
    assert rc[0].apply_sync(echo, "and after") == "and after"


def test_curve_true_without_curve_in_libzmq_is_a_clear_error(profile, monkeypatch):
    monkeypatch.setattr(zmq, "has", lambda capability: False)
    with pytest.raises(CurveError) as info:
        curve.wanted("true", "127.0.0.1")
    assert str(info.value).startswith('controller.curve = "true", but this libzmq (%s) was built without curve'
                                      % zmq.zmq_version())
    code = ("import sys, zmq; zmq.has = lambda c: False; from minipar.controller.__main__ import main; "
            "sys.exit(main(sys.argv[1:]))")
    done = subprocess.run([sys.executable, "-c", code, "--controller.curve=true"], env=profile.env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert "was built without curve" in done.stderr and "Traceback" not in done.stderr


def test_reuse_keeps_the_server_key_and_engines_come_back(profile):
    ctl = profile.controller("--reuse", "--controller.curve=true")
    before = read_json(profile.client_file())["curve_serverkey"]
    eng = profile.engine("--engine.controller_timeout=30")
    rc = profile.client()
    rc.wait_for_engines(1, timeout=20)
    rc.close()
    ctl.stop()
    profile.controller("--reuse", "--controller.curve=true")
    assert read_json(profile.client_file())["curve_serverkey"] == before
    rc2 = profile.client()
    rc2.wait_for_engines(1, timeout=20)
    assert rc2[rc2.ids[0]].apply_sync(os.getppid) == eng.pid


@pytest.mark.skipif(not CAN_CAPTURE, reason="capturing packets needs root and AF_PACKET (Linux)")
@pytest.mark.parametrize("setting", ["auto", "false"])
def test_what_crosses_the_wire(profile, setting):
    """Listening on every interface, a task's argument is on the wire only with curve off
    (which shows the capture sees the traffic)."""
    rc, _ = start_cluster(profile, 1, "--ip=*", "--location=127.0.0.1", "--controller.curve=%s" % setting)
    ports = read_json(profile.client_file())["ports"].values()
    with Capture("lo", ports) as captured:
        assert rc[0].apply_sync(echo, SECRET) == SECRET
        assert rc.load_balanced_view().apply_sync(echo, SECRET) == SECRET
    assert captured.packets, "the capture saw the controller's traffic"
    assert (SECRET.encode() in captured.data) == (setting == "false")
