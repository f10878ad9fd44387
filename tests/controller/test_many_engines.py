"""Hundreds of engines on one controller, with default settings: registration, load-balanced
work across them, heartbeats that neither miss a dead engine nor blame a live one, and clean
unregistration. The engines are simulated (benchmarks/sim_engines.py: the real protocol, one
process serving many) since hundreds of engine processes do not fit a CI machine."""
from __future__ import annotations

import os
import signal
import sys

import pytest
import zmq

from helpers import ROOT, wait_for

sys.path.insert(0, str(ROOT / "benchmarks"))
import sim_engines  # noqa: E402

import minipar  # noqa: E402
from minipar.controller.heartbeat import REGISTRATION_GRACE_BEATS, HeartMonitor  # noqa: E402

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc, uses rlimits")

N = 300


def noop():
    pass


@pytest.fixture
def controller(tmp_path):
    ctl = sim_engines.Controller(tmp_path)
    yield ctl
    ctl.stop()


def connect(ctl):
    return minipar.Client(url_file=str(ctl.client_file))


def shards_pinged(sim, pings) -> bool:
    """True once every shard has echoed at least ``pings`` pings."""
    return sim.status()["pinged"] >= pings * len(sim.sizes)


@pytest.mark.slow
def test_hundreds_register_share_work_stay_alive_and_unregister(controller):
    sim = sim_engines.SimulatedEngines(controller.engine_file, N, per_shard=N).start()
    rc = connect(controller)
    try:
        rc.wait_for_engines(N, timeout=60)
        assert len(rc.ids) == N
        ars = [rc.load_balanced_view().apply_async(noop) for _ in range(5 * N)]
        assert [ar.get(60) for ar in ars] == [None] * (5 * N)
        used = {ar.engine_id for ar in ars}
        assert used <= set(rc.ids) and len(used) > 1
        status = sim.status()
        assert status["answered"] == 5 * N and status["registered"] == N and status["refused"] == 0
        # heartbeat_period 1 s, 3 misses: past 3 + grace beats every engine would have been judged
        start = sim.status()["pinged"]
        wait_for(lambda: shards_pinged(sim, start + 3 + REGISTRATION_GRACE_BEATS), timeout=30,
                 what="more heartbeats")
        assert len(rc.ids) == N
        assert controller.heartbeat_deaths() == 0, controller.errors()
        sim.unregister()
        wait_for(lambda: not rc.ids, timeout=30, what="every engine to unregister")
        assert "no heartbeat" not in controller.errors()
    finally:
        sim.stop()
        rc.close()


@pytest.mark.slow
def test_a_killed_shard_of_engines_is_declared_dead_and_the_rest_stay(controller):
    half = N // 2
    sim = sim_engines.SimulatedEngines(controller.engine_file, N, per_shard=half).start()
    rc = connect(controller)
    try:
        rc.wait_for_engines(N, timeout=60)
        os.kill(sim.procs[0].pid, signal.SIGKILL)
        wait_for(lambda: len(rc.ids) <= half, timeout=30, what="the killed half to be declared dead")
        assert controller.heartbeat_deaths() == half
        survivors = set(rc.ids)
        assert len(survivors) == half
        assert sim.procs[1].poll() is None
        ars = [rc.load_balanced_view().apply_async(noop) for _ in range(2 * half)]
        assert [ar.get(60) for ar in ars] == [None] * (2 * half)
        assert {ar.engine_id for ar in ars} <= survivors
    finally:
        sim.stop()
        rc.close()


def test_a_low_soft_open_file_limit_does_not_cap_the_engines(tmp_path):
    """3 connections per simulated engine: 300 engines need ~900 descriptors, over a soft
    limit of 512 that the controller raises to the hard one."""
    ctl = sim_engines.Controller(tmp_path, soft_fd_limit=512)
    sim = sim_engines.SimulatedEngines(ctl.engine_file, N, per_shard=N).start()
    rc = connect(ctl)
    try:
        rc.wait_for_engines(N, timeout=60)
        with open("/proc/%d/limits" % ctl.pid) as f:
            line = next(x for x in f if x.startswith("Max open files"))
        soft, hard = line.split()[3:5]
        assert soft == hard
    finally:
        sim.stop()
        rc.close()
        ctl.stop()


def test_echoes_waiting_unread_are_not_counted_as_misses():
    """A hub busy elsewhere may not have read the echoes yet when it beats: they still count."""
    ctx = zmq.Context()
    ping = ctx.socket(zmq.PUB)
    pong = ctx.socket(zmq.ROUTER)
    port = ping.bind_to_random_port("tcp://127.0.0.1")
    pong_port = pong.bind_to_random_port("tcp://127.0.0.1")
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.setsockopt(zmq.RCVTIMEO, 10000)
    sub.connect("tcp://127.0.0.1:%d" % port)
    heart = ctx.socket(zmq.DEALER)
    heart.setsockopt(zmq.IDENTITY, b"h1")
    heart.connect("tcp://127.0.0.1:%d" % pong_port)
    try:
        monitor = HeartMonitor(ping, b"s", 1, pong)
        monitor.add(b"h1")
        poller = zmq.Poller()
        poller.register(sub, zmq.POLLIN)
        wait_for(lambda: (monitor.beat() or True) and poller.poll(50), what="the SUB to join")
        while poller.poll(50):
            sub.recv()
        monitor.add(b"h1")
        for _ in range(REGISTRATION_GRACE_BEATS + 5):
            assert monitor.beat() == []
            current = sub.recv()
            heart.send(current)
            wait_for(lambda: pong.poll(0, zmq.POLLIN), what="the echo to arrive")
        assert monitor.last_answered[b"h1"] >= monitor.counter - 1
        monitor.beat()
        sub.recv()
        assert monitor.beat() == [b"h1"]  # silent for two beats with misses=1: dead
    finally:
        for s in (ping, pong, sub, heart):
            s.close(linger=0)
        ctx.term()
