"""Engine ids an engine asks for (``--id`` / ``[engine] id``), how the controller grants or
refuses them, and ``engine.mpi = "init_script"`` outside mpiexec. Real MPI jobs: test_mpi_ids."""
from __future__ import annotations

import os
import re
import signal
import socket

import pytest

from helpers import pid_gone, wait_for
from minipar.controller.hub import EngineState, grant_engine_id
from minipar.engine.mpi import run_init_script
from minipar.error import MPIStartError


def registered(rc, n):
    rc.wait_for_engines(n, timeout=20)
    return rc.ids


def test_an_engine_gets_the_id_it_asks_for_and_the_next_one_counts_on_from_it(profile):
    profile.controller()
    asked = profile.engine("--id", "7")
    rc = profile.client()
    assert registered(rc, 1) == [7]
    assert rc[7].apply_sync(os.getppid) == asked.pid
    assert "registered as engine 7 " in asked.output()
    plain = profile.engine()
    assert registered(rc, 2) == [7, 8]
    assert rc[8].apply_sync(os.getppid) == plain.pid


def test_the_id_can_come_from_the_profile(profile):
    profile.dir.mkdir(parents=True)
    (profile.dir / "minipar.toml").write_text("[engine]\nid = 3\n")
    profile.controller()
    eng = profile.engine()
    rc = profile.client()
    assert registered(rc, 1) == [3]
    assert rc[3].apply_sync(os.getppid) == eng.pid


def test_a_taken_id_is_a_clear_registration_error(profile):
    controller = profile.controller()
    first = profile.engine("--id", "5")
    rc = profile.client()
    registered(rc, 1)
    holder = rc[5].apply_sync(os.getpid)
    second = profile.engine("--id", "5", "--engine.registration_timeout=10")
    assert second.wait(20) == 1
    reason = ("engine id 5 is taken by engine 5 (host %s, pid %d); give this engine another id "
              "(--id / engine.id), or none to get the next free one" % (socket.gethostname(), holder))
    out = second.output()
    assert "ERROR the controller at tcp://127.0.0.1:" in out and "refused this engine: " + reason in out
    assert "Traceback" not in out
    refused = re.search(r"WARNING refused an engine \(host (\S+), pid (\d+)\): (.*)", controller.output())
    assert refused.group(1) == socket.gethostname() and refused.group(3) == reason
    assert int(refused.group(2)) not in (first.pid, holder, second.pid), "the second engine, its nanny's child"
    assert rc.ids == [5] and rc[5].apply_sync(os.getppid) == first.pid


@pytest.mark.parametrize("how", ["killed", "stopped"])
def test_the_id_of_an_engine_that_is_gone_can_be_asked_for_again(profile, how):
    profile.controller()
    first = profile.engine("--id", "2")
    rc = profile.client()
    registered(rc, 1)
    first.signal(signal.SIGKILL if how == "killed" else signal.SIGTERM)
    wait_for(lambda: pid_gone(first.pid), 10, "the first engine to end")
    wait_for(lambda: rc.ids == [], 10, "the controller to drop engine 2")
    again = profile.engine("--id", "2")
    assert registered(rc, 1) == [2]
    assert rc[2].apply_sync(os.getppid) == again.pid


def test_an_engine_asks_for_its_id_again_from_a_restarted_controller(profile):
    controller = profile.controller("--reuse")
    eng = profile.engine("--id", "4", "--engine.controller_timeout=30")
    rc = profile.client()
    assert registered(rc, 1) == [4]
    rc.close()
    controller.stop()
    profile.controller("--reuse")
    rc2 = profile.client()
    assert registered(rc2, 1) == [4]
    assert rc2[4].apply_sync(os.getppid) == eng.pid
    assert "registering again" in eng.output()


@pytest.mark.parametrize("args, message", [
    (["--id", "-3"], "engine.id: -3 is not an engine id; give 0 or more, or -1 to let the controller choose"),
    (["--engine.mpi_registration_delay=-1"],
     "engine.mpi_registration_delay: -1 is negative; give seconds per rank, or 0"),
    (["--engine.mpi_init_script=init.py"],
     "engine.mpi_init_script is set but engine.mpi is '', so it would not run; set engine.mpi = 'init_script' "
     "to run it"),
])
def test_bad_id_settings_are_refused_before_anything_starts(profile, args, message):
    profile.dir.mkdir(parents=True)
    eng = profile.engine(*args)
    assert eng.wait() == 2
    assert eng.output().splitlines() == ["python -m minipar.engine: error: " + message]


def test_a_non_number_id_is_refused_by_the_command_line(profile):
    eng = profile.engine("--id", "three")
    assert eng.wait() == 2
    assert "argument --id: invalid int value: 'three'" in eng.output()


# ---------------------------------------------------------------- the controller's policy

def holders(*ids):
    return {i: EngineState(i, "uuid-%d" % i, b"e%d" % i, b"h%d" % i, pid=100 + i, hostname="node%d" % i)
            for i in ids}


def test_a_free_requested_id_is_granted_even_below_the_counter():
    assert grant_engine_id(1, True, holders(0, 2), 3) == (1, None)
    assert grant_engine_id(1, False, holders(0, 2), 3) == (1, None)
    assert grant_engine_id(9, False, holders(), 0) == (9, None)


def test_no_request_gets_the_counter():
    assert grant_engine_id(None, False, holders(0, 1), 2) == (2, None)


def test_a_preferred_id_that_is_taken_gets_the_counter_and_a_required_one_is_refused():
    assert grant_engine_id(1, False, holders(0, 1), 2) == (2, None)
    eid, reason = grant_engine_id(1, True, holders(0, 1), 2)
    assert eid is None
    assert reason == ("engine id 1 is taken by engine 1 (host node1, pid 101); give this engine another id "
                      "(--id / engine.id), or none to get the next free one")


@pytest.mark.parametrize("bad", [-1, "3", 2.0, True])
def test_a_requested_id_that_is_not_an_id_is_refused(bad):
    assert grant_engine_id(bad, False, holders(), 0) == (
        None, "asked for engine id %r, which is not an engine id (a whole number, 0 or more)" % (bad,))


# ---------------------------------------------------------------- init_script, no mpiexec

def test_an_init_script_runs_in_the_namespace_and_survives_clear(profile, tmp_path):
    script = tmp_path / "init_binding.py"
    script.write_text("import math\nmpi_rank, mpi_size = 0, 1\ndef binding():\n    return math.tau\n")
    profile.controller()
    eng = profile.engine("--engine.mpi=init_script", "--engine.mpi_init_script=%s" % script)
    rc = profile.client()
    assert registered(rc, 1) == [0]
    rc[0].execute("x = 1", block=True)
    rc[0].clear(block=True)
    rc[0].execute("has_x = 'x' in globals(); got = (binding(), mpi_rank, mpi_size)", block=True)
    assert rc[0].pull(["has_x", "got"], block=True) == [False, (pytest.approx(6.2831853), 0, 1)]
    out = eng.output()
    assert "[Engine rank 0] INFO MPI initialised (engine.mpi_init_script %s): rank 0 of 1" % script in out
    assert "waiting" not in out  # one process: no stagger, and no id asked for


def test_an_init_script_that_fails_ends_the_engine_naming_it(profile, tmp_path):
    script = tmp_path / "broken.py"
    script.write_text("import no_such_mpi_binding\n")
    profile.dir.mkdir(parents=True)
    eng = profile.engine("--engine.mpi=init_script", "--engine.mpi_init_script=%s" % script)
    assert eng.wait() == 1
    lines = eng.output().splitlines()
    assert lines[-1] == ("python -m minipar.engine: error: engine.mpi_init_script %s failed: ModuleNotFoundError: "
                         "No module named 'no_such_mpi_binding'" % script)
    assert 'File "%s", line 1' % script in eng.output()  # the traceback of the user's file is logged


@pytest.mark.parametrize("args, message", [
    (["--engine.mpi=init_script"],
     "engine.mpi = 'init_script' needs engine.mpi_init_script, the Python file that initialises MPI; set it, "
     "or use engine.mpi = 'mpi4py'"),
    (["--engine.mpi=init_script", "--engine.mpi_init_script=/no/such/init.py"],
     "engine.mpi_init_script: cannot read /no/such/init.py: No such file or directory"),
])
def test_a_missing_init_script_is_one_line(profile, args, message):
    profile.dir.mkdir(parents=True)
    eng = profile.engine(*args)
    assert eng.wait() == 1
    assert eng.output().splitlines() == ["python -m minipar.engine: error: " + message]


def test_an_init_script_with_a_syntax_error_is_one_line(profile, tmp_path):
    script = tmp_path / "typo.py"
    script.write_text("x = 1\nif x\n")
    profile.dir.mkdir(parents=True)
    eng = profile.engine("--engine.mpi=init_script", "--engine.mpi_init_script=%s" % script)
    assert eng.wait() == 1
    (line,) = eng.output().splitlines()
    assert line.startswith("python -m minipar.engine: error: engine.mpi_init_script: %s is not valid Python: " % script)
    assert line.endswith("(line 2)")


@pytest.mark.parametrize("environment, expected", [
    ({"OMPI_COMM_WORLD_RANK": "3", "OMPI_COMM_WORLD_SIZE": "8"}, (3, 8)),
    ({"PMI_RANK": "1", "PMI_SIZE": "4"}, (1, 4)),
    ({"PMI_RANK": "1"}, (None, None)),
    ({}, (None, None)),
])
def test_without_mpi_rank_the_script_rank_comes_from_mpiexec(tmp_path, monkeypatch, environment, expected):
    for name in ("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "PMI_RANK", "PMI_SIZE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    script = tmp_path / "init.py"
    script.write_text("initialised = True\n")
    ns = {}
    setup = run_init_script(str(script), ns)
    assert (setup.rank, setup.size) == expected and setup.in_a_job == ((expected[1] or 0) > 1)
    assert setup.names == {"initialised": True} and ns["initialised"] is True


def test_the_scripts_own_rank_wins_over_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("PMI_RANK", "1")
    monkeypatch.setenv("PMI_SIZE", "4")
    script = tmp_path / "init.py"
    script.write_text("mpi_rank, mpi_size = 2, 3\n")
    setup = run_init_script(str(script), {})
    assert (setup.rank, setup.size, setup.registration_delay(0.5)) == (2, 3, 1.0)


def test_a_bad_init_script_path_raises_the_start_error(tmp_path):
    with pytest.raises(MPIStartError, match="cannot read"):
        run_init_script(str(tmp_path / "missing.py"), {})
