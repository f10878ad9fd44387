"""The engine's nanny: why an engine died reaches the client at once; signals and exit status pass through."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import minipar
from helpers import ROOT, announce_then_sleep, pid_gone, print_pid_then_sleep, wait_for

SLOW_HEARTBEAT = ("--controller.heartbeat_period=5", "--controller.heartbeat_misses=4")
"""Death by heartbeat takes 20 s here, so an EngineError within a few seconds came from the nanny."""


def start(profile, n=1, *engine_args, env=None, controller_args=SLOW_HEARTBEAT):
    profile.controller(*controller_args)
    if env:
        profile.env = dict(profile.env, **env)
    engines = [profile.engine(*engine_args) for _ in range(n)]
    rc = profile.client()
    rc.wait_for_engines(n, timeout=30)
    return rc, engines


def started(ar):
    wait_for(lambda: ar.stdout == "started\n", 20, "the task to start")


def exit_with(code):
    import os
    os._exit(code)


def test_an_engine_killed_mid_task_fails_it_at_once_naming_the_signal(profile):
    rc, (launched,) = start(profile)
    engine_pid = rc[0].apply_sync(os.getpid)
    assert rc[0].apply_sync(os.getppid) == launched.pid != engine_pid, "the launched process is the engine's parent"
    ar = rc[0].apply_async(announce_then_sleep, 60)
    started(ar)
    t0 = time.monotonic()
    os.kill(engine_pid, signal.SIGKILL)
    with pytest.raises(minipar.EngineError) as info:
        ar.get(10)
    assert time.monotonic() - t0 < 3, "the nanny told the controller; heartbeats would take 20 s"
    assert "engine process %d on %s was killed by signal 9 (SIGKILL)" % (engine_pid, os.uname().nodename) \
        in info.value.evalue
    assert launched.wait(10) == -signal.SIGKILL, "the launched process ends as its engine did"
    wait_for(lambda: rc.ids == [], 5, "engine 0 to be unregistered")
    assert "was killed by signal 9 (SIGKILL)" in (profile.dir / "log" / "controller.log").read_text()


def test_an_engine_that_exits_mid_task_is_reported_with_its_exit_code(profile):
    rc, (launched,) = start(profile)
    engine_pid = rc[0].apply_sync(os.getpid)
    with pytest.raises(minipar.EngineError, match="engine process %d on .* exited with code 7 without unregistering"
                       % engine_pid):
        rc[0].apply_async(exit_with, 7).get(10)
    assert launched.wait(10) == 7


def test_a_task_on_a_killed_engine_is_retried_elsewhere_per_retries(profile):
    rc, engines = start(profile, 2)
    ar = rc.load_balanced_view(retries=1).apply_async(print_pid_then_sleep, 1.0)
    victim = int(wait_for(lambda: ar.stdout.strip(), 20, "the task to start"))
    t0 = time.monotonic()
    os.kill(victim, signal.SIGKILL)
    survivor = ar.get(15)
    assert survivor != victim
    assert time.monotonic() - t0 < 5, "retried once the nanny spoke, not after the 20 s heartbeat window"


def test_sigterm_to_the_launched_process_stops_the_engine_and_says_so_in_a_batch_job(profile):
    rc, (launched,) = start(profile, 1, env={"SLURM_JOB_ID": "4242"})
    engine_pid = rc[0].apply_sync(os.getpid)
    ar = rc[0].apply_async(announce_then_sleep, 60)
    started(ar)
    launched.signal(signal.SIGTERM)
    with pytest.raises(minipar.EngineError) as info:
        ar.get(10)
    assert "stopped by SIGTERM in Slurm job 4242 (the batch system sends SIGTERM when the job reaches its " \
           "walltime or is cancelled)" in info.value.evalue
    assert launched.wait(10) == 0
    assert pid_gone(engine_pid)


def test_sigint_to_the_launched_process_interrupts_the_task_and_the_engine_goes_on(profile):
    rc, (launched,) = start(profile)
    ar = rc[0].apply_async(announce_then_sleep, 60)
    started(ar)
    launched.signal(signal.SIGINT)
    with pytest.raises(minipar.RemoteError) as info:
        ar.get(10)
    assert info.value.ename == "KeyboardInterrupt"
    assert rc[0].apply_sync(sum, [1, 2]) == 3
    assert launched.popen.poll() is None


@pytest.mark.parametrize("nanny", ["true", "false"])
def test_sigint_then_sigterm_at_once_stops_a_busy_engine_every_time(profile, nanny):
    """As bkill and some walltime ends send them: the second signal, arriving while the first is
    pending, used to land on a helper thread and wait for the task's sleep to end."""
    rc, engines = start(profile, 4, "--engine.nanny=%s" % nanny)
    ars = [rc[i].apply_async(announce_then_sleep, 60) for i in rc.ids]
    for ar in ars:
        started(ar)
    t0 = time.monotonic()
    for launched in engines:
        launched.signal(signal.SIGINT)
        launched.signal(signal.SIGTERM)
    for ar in ars:
        with pytest.raises(minipar.EngineError) as info:
            ar.get(10)
        assert "stopped by SIGTERM" in info.value.evalue, "the engine's stop, not the interrupt, ended the task"
    assert [launched.wait(10) for launched in engines] == [0] * 4
    assert time.monotonic() - t0 < 10, "well before the 60 s tasks end"


def test_sigint_to_every_process_of_the_job_interrupts_the_task_once(profile):
    """As scancel --signal=INT does: the launched process and the engine both get it, and the
    nanny passes its copy on, so the engine sees SIGINT twice at once."""
    rc, engines = start(profile, 3)
    pairs = [(launched, rc[i].apply_sync(os.getpid)) for launched, i in zip(engines, rc.ids)]
    ars = [rc[i].apply_async(announce_then_sleep, 60) for i in rc.ids]
    for ar in ars:
        started(ar)
    for launched, engine_pid in pairs:
        os.kill(engine_pid, signal.SIGINT)
        launched.signal(signal.SIGINT)
    for ar in ars:
        with pytest.raises(minipar.RemoteError) as info:
            ar.get(10)
        assert info.value.ename == "KeyboardInterrupt"
    assert rc[:].apply_sync(sum, [1, 2]) == [3, 3, 3]
    assert all(launched.popen.poll() is None for launched in engines)


def test_helper_threads_leave_signals_to_the_main_thread():
    import threading
    from minipar.signals import start_without_signals
    seen = []
    thread = threading.Thread(target=lambda: seen.append(signal.pthread_sigmask(signal.SIG_BLOCK, [])))
    start_without_signals(thread)
    thread.join(5)
    assert {signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1} <= set(seen[0])
    assert signal.SIGINT not in signal.pthread_sigmask(signal.SIG_BLOCK, []), "the caller's mask is restored"


def test_sigkill_to_the_launched_process_ends_the_engine_too(profile):
    rc, (launched,) = start(profile, 1, controller_args=())
    engine_pid = rc[0].apply_sync(os.getpid)
    launched.signal(signal.SIGKILL)
    wait_for(lambda: pid_gone(engine_pid), 5, "the engine to follow its nanny")
    wait_for(lambda: rc.ids == [], 10, "engine 0 to be unregistered by its heartbeat")


def test_without_a_nanny_the_engine_is_the_launched_process_and_its_death_is_found_by_heartbeat(profile):
    rc, (launched,) = start(profile, 1, "--engine.nanny=false", controller_args=())
    assert rc[0].apply_sync(os.getpid) == launched.pid
    ar = rc[0].apply_async(announce_then_sleep, 60)
    started(ar)
    launched.signal(signal.SIGKILL)
    with pytest.raises(minipar.EngineError, match="no heartbeat"):
        ar.get(15)


def test_registration_failures_keep_their_exit_code_through_the_nanny(profile, tmp_path):
    bad = tmp_path / "engine.json"
    bad.write_text('{"key": "k", "location": "127.0.0.1", "transport": "tcp", "ports": '
                   '{"client": 1, "notification": 1, "engine": 1, "hb_ping": 1, "hb_pong": 1}}')
    bad.chmod(0o600)
    proc = profile.engine("--file", str(bad), "--engine.registration_timeout=0.5")
    assert proc.wait(20) == 1
    assert "no controller answered" in proc.output()


# -- the out-of-memory killer -----------------------------------------------------------


def memory_cgroup(limit: int):
    """A child of this process's memory cgroup limited to ``limit`` bytes without swap:
    the file a pid is written to to join it, and a cleanup; None where it cannot be made."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        hierarchy, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):
            d = Path("/sys/fs/cgroup/memory%s" % path.rstrip("/")) / ("minipar-oom-%d" % os.getpid())
            files = [("memory.limit_in_bytes", limit), ("memory.memsw.limit_in_bytes", limit)]
            break
    else:
        d = Path("/sys/fs/cgroup") / ("minipar-oom-%d" % os.getpid())
        files = [("memory.max", limit), ("memory.swap.max", 0)]
    try:
        d.mkdir()
    except OSError:
        return None
    try:
        for name, value in files:
            if (d / name).exists():
                (d / name).write_text(str(value))
        if not (d / files[0][0]).exists():
            raise OSError("no %s" % files[0][0])
    except OSError:
        d.rmdir()
        return None
    return d / "cgroup.procs", d


def allocate(megabytes):
    block = bytearray(megabytes << 20)
    for i in range(0, len(block), 4096):
        block[i] = 1
    return len(block)


def test_an_engine_killed_by_the_out_of_memory_killer_is_reported_so(profile):
    made = memory_cgroup(400 << 20) if os.geteuid() == 0 else None
    if made is None:
        if os.environ.get("CI") == "true" and os.geteuid() == 0:
            pytest.fail("cannot make a memory cgroup as root in CI (see /proc/self/cgroup)")
        pytest.skip("needs root and a writable memory cgroup to cause an out-of-memory kill")
    procs_file, cgroup = made
    profile.controller(*SLOW_HEARTBEAT)
    log = open(profile.tmp / "oom-engine.out", "wb")
    launched = subprocess.Popen(
        ["sh", "-c", 'echo $$ > "$0" && exec "$1" -m minipar.engine', str(procs_file), sys.executable],
        env=profile.env, stdout=log, stderr=subprocess.STDOUT, cwd=str(ROOT))
    try:
        rc = profile.client()
        rc.wait_for_engines(1, timeout=30)
        assert rc[0].apply_sync(allocate, 50) == 50 << 20
        with pytest.raises(minipar.EngineError) as info:
            rc[0].apply_async(allocate, 2000).get(30)
        assert "was killed by the out-of-memory killer (SIGKILL; the kernel counted 1 out-of-memory kill in " \
               "its memory cgroup)" in info.value.evalue
        assert launched.wait(10) == -signal.SIGKILL
    finally:
        if launched.poll() is None:
            launched.kill()
            launched.wait(5)
        log.close()
        wait_for(lambda: not procs_file.read_text().strip(), 10, "the cgroup to empty")
        cgroup.rmdir()
