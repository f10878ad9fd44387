"""``python -m minipar.engine``: finding the controller, start-up code, failures and signals."""
from __future__ import annotations

import json
import os
import signal
import time

import pytest

import minipar
from helpers import announce_then_sleep, start_cluster, wait_for


def test_engine_with_file_flag_from_elsewhere(profile, tmp_path):
    profile.controller()
    copied = tmp_path / "copied-engine.json"
    copied.write_text(profile.engine_file().read_text())
    other_cwd = tmp_path / "elsewhere"
    other_cwd.mkdir()
    eng = profile.run("minipar.engine", "--file=%s" % copied, name="engine-file")
    rc = profile.client()
    rc.wait_for_engines(1, timeout=20)
    assert rc[0].apply_sync(os.getppid) == eng.pid
    assert "registered as engine 0" in eng.output()


def test_startup_script_and_command_run_in_the_namespace(profile, tmp_path):
    profile.controller()
    script = tmp_path / "startup.py"
    script.write_text("import math\nfrom_script = math.pi\nsteps = ['script']\n")
    profile.engine("--startup-script=%s" % script, "--startup-command=steps.append('command')")
    rc = profile.client()
    rc.wait_for_engines(1, timeout=20)
    assert rc[0].pull(["from_script", "steps"], block=True) == [pytest.approx(3.14159, abs=1e-4),
                                                                 ["script", "command"]]


def test_startup_from_the_profile_file(profile, tmp_path):
    profile.dir.mkdir(parents=True)
    (profile.dir / "minipar.toml").write_text(
        '[engine]\nstartup_command = "answer = 42"\nwork_dir = "%s"\n' % tmp_path)
    profile.controller()
    profile.engine()
    rc = profile.client()
    rc.wait_for_engines(1, timeout=20)
    assert rc[0].pull("answer", block=True) == 42
    assert rc[0].apply_sync(os.getcwd) == str(tmp_path)


def test_failing_startup_code_is_reported(profile):
    profile.controller()
    eng = profile.engine("--startup-command=import no_such_module_here")
    assert eng.wait() == 1
    assert "start-up code failed: ModuleNotFoundError" in eng.output()


def test_no_controller_means_a_clear_error_not_a_hang(profile):
    profile.controller("--reuse").stop()
    assert profile.engine_file().exists()
    info = json.loads(profile.engine_file().read_text())
    t0 = time.monotonic()
    eng = profile.engine("--engine.registration_timeout=1.5")
    assert eng.wait(20) == 1
    assert time.monotonic() - t0 < 15
    out = eng.output()
    assert "no controller answered at tcp://127.0.0.1:%d within 1.5s" % info["ports"]["engine"] in out
    assert "controller is not running" in out
    assert "Traceback" not in out


def test_wrong_key_is_named_as_the_likely_cause(profile, tmp_path):
    profile.controller()
    info = json.loads(profile.engine_file().read_text())
    info["key"] = "not-the-right-key-0000000000000000"
    bad = tmp_path / "stale-engine.json"
    bad.write_text(json.dumps(info))
    eng = profile.engine("--file=%s" % bad, "--engine.registration_timeout=2")
    assert eng.wait(20) == 1
    out = eng.output()
    assert "did not answer the signed registration" in out
    assert "does not match" in out and str(bad) in out
    rc = profile.client()
    assert rc.ids == []


def test_controller_lost_before_it_answers_the_registration(profile, tmp_path):
    ctl = profile.controller()
    info = json.loads(profile.engine_file().read_text())
    info["key"] = "not-the-right-key-0000000000000000"
    unanswered = tmp_path / "unanswered-engine.json"
    unanswered.write_text(json.dumps(info))
    eng = profile.engine("--file=%s" % unanswered, "--engine.registration_timeout=120",
                         "--engine.controller_timeout=1.5", "--log-level=DEBUG")
    wait_for(lambda: "heartbeats arrive" in eng.output(), what="the engine to hear the controller")
    ctl.signal(signal.SIGKILL)
    assert eng.wait(20) == 3
    out = eng.output()
    assert "lost the controller at tcp://127.0.0.1:%d while registering" % info["ports"]["engine"] in out
    assert "Traceback" not in out


def test_sigterm_while_waiting_for_the_controller_stops_at_once(profile):
    profile.controller("--reuse").stop()
    eng = profile.engine("--engine.registration_timeout=120", "--log-level=DEBUG")
    wait_for(lambda: "asked the controller at" in eng.output(), what="the engine to ask for registration")
    t0 = time.monotonic()
    eng.signal(signal.SIGTERM)
    assert eng.wait(20) == 0
    assert time.monotonic() - t0 < 10
    assert "stopped before the controller at tcp://127.0.0.1:" in eng.output()
    assert "Traceback" not in eng.output()


def test_missing_connection_file(profile, tmp_path):
    eng = profile.engine("--file=%s" % (tmp_path / "nope.json"), "--engine.registration_timeout=0.5")
    assert eng.wait() == 1
    assert "nope.json did not appear within 0.5s (engine.registration_timeout)" in eng.output()
    assert "Traceback" not in eng.output()


def test_missing_profile(profile):
    eng = profile.engine("--profile=nosuchprofile")
    assert eng.wait() == 2
    assert "profile_nosuchprofile" in eng.output()
    assert "Traceback" not in eng.output()


def test_engine_leaves_when_the_controller_is_gone(profile):
    ctl = profile.controller()
    eng = profile.engine("--engine.controller_timeout=1.5")
    rc = profile.client()
    rc.wait_for_engines(1, timeout=20)
    ctl.signal(signal.SIGKILL)
    assert eng.wait(20) == 3
    assert "lost the controller" in eng.output()


def test_sigint_interrupts_the_task_and_the_engine_carries_on(profile):
    rc, [eng] = start_cluster(profile, 1)
    ar = rc[0].apply_async(announce_then_sleep, 60)
    wait_for(lambda: ar.stdout == "started\n", what="the task to start (its output streamed)")
    eng.signal(signal.SIGINT)
    with pytest.raises(minipar.RemoteError) as info:
        ar.get(10)
    assert info.value.ename == "KeyboardInterrupt"
    assert rc[0].apply_sync(sum, [2, 3]) == 5
    eng.signal(signal.SIGINT)
    assert rc[0].apply_sync(sum, [2, 4]) == 6


def test_sigterm_stops_and_unregisters(profile):
    rc, [eng] = start_cluster(profile, 1)
    eng.signal(signal.SIGTERM)
    assert eng.wait() == 0
    wait_for(lambda: rc.ids == [], 10, "engine to unregister")
    log = (profile.dir / "log" / "controller.log").read_text()
    assert "engine 0 unregistered: engine shut down" in log
    assert "heartbeat" not in log


def test_sigterm_during_a_task_fails_it_with_engine_error(profile):
    rc, [eng] = start_cluster(profile, 1)
    ar = rc[0].apply_async(announce_then_sleep, 60)
    wait_for(lambda: ar.stdout == "started\n", what="the task to start (its output streamed)")
    eng.signal(signal.SIGTERM)
    with pytest.raises(minipar.EngineError):
        ar.get(10)
    assert eng.wait() == 0


def test_an_engine_stopped_before_reading_its_registration_answer_still_unregisters(profile):
    """SIGTERM can land after the controller registered the engine but before the engine read
    the answer (it has no id yet): it unregisters by its socket identity, not by heartbeat loss."""
    from minipar.config import load_config
    from minipar.connection import read_connection_file
    from minipar.engine.engine import Engine

    profile.controller()
    rc = profile.client()
    engine = Engine(load_config(None, {}).engine, read_connection_file(str(profile.engine_file())))
    engine.connect()
    engine.request_registration()
    wait_for(lambda: rc.ids == [0], 10, "the controller to register the engine")
    assert engine.id is None
    engine.close()
    wait_for(lambda: rc.ids == [], 10, "engine to unregister")
    log = (profile.dir / "log" / "controller.log").read_text()
    assert "engine 0 unregistered: engine shut down" in log
    assert "heartbeat" not in log
