"""With --reuse the start order does not matter: an engine started first waits for its controller."""
from __future__ import annotations

import os
import signal
import time

from helpers import wait_for


def reuse_files_of_a_stopped_controller(profile):
    ctl = profile.controller("--reuse")
    ctl.signal(signal.SIGTERM)
    assert ctl.wait() == 0
    assert profile.engine_file().exists()


def test_engine_started_first_waits_without_limit_and_registers(profile):
    reuse_files_of_a_stopped_controller(profile)
    eng = profile.engine("--engine.registration_timeout=0", "--log-level=DEBUG")
    wait_for(lambda: "waiting with no limit for the controller" in eng.output(), what="the engine to wait")
    time.sleep(3)  # longer than a small registration_timeout: the engine must still be waiting
    assert eng.popen.poll() is None, eng.output()
    profile.controller("--reuse")
    rc = profile.client()
    rc.wait_for_engines(1, timeout=20)
    assert rc[rc.ids[0]].apply_sync(os.getppid) == eng.pid


def test_engine_started_first_gives_up_after_registration_timeout(profile):
    reuse_files_of_a_stopped_controller(profile)
    t0 = time.monotonic()
    eng = profile.engine("--engine.registration_timeout=1")
    assert eng.wait() == 1
    assert time.monotonic() - t0 < 15
    out = eng.output()
    assert "no controller answered at tcp://127.0.0.1:" in out and "within 1s (engine.registration_timeout)" in out
    assert "Traceback" not in out


def test_engine_waits_for_the_connection_file_to_appear(profile):
    (profile.dir / "security").mkdir(parents=True)
    eng = profile.engine("--engine.registration_timeout=0")
    wait_for(lambda: "not found; waiting with no limit" in eng.output(), what="the engine to wait for the file")
    assert eng.popen.poll() is None
    profile.controller()
    rc = profile.client()
    rc.wait_for_engines(1, timeout=20)
    assert rc[rc.ids[0]].apply_sync(os.getppid) == eng.pid


def test_file_that_never_appears_is_a_clear_error(profile):
    (profile.dir / "security").mkdir(parents=True)
    eng = profile.engine("--engine.registration_timeout=0.5")
    assert eng.wait() == 1
    out = eng.output()
    assert "%s did not appear within 0.5s (engine.registration_timeout)" % profile.engine_file() in out
    assert "Traceback" not in out


def test_sigterm_while_waiting_for_the_file_stops_at_once(profile):
    (profile.dir / "security").mkdir(parents=True)
    eng = profile.engine("--engine.registration_timeout=0")
    wait_for(lambda: "not found; waiting" in eng.output(), what="the engine to wait for the file")
    eng.signal(signal.SIGTERM)
    assert eng.wait(10) == 0
    assert "Traceback" not in eng.output()
