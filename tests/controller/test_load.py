"""Load with real processes: fifty engines on a two-core machine, twenty clients at once."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from helpers import Profile, pid_gone, wait_for


def whoami(x):
    import os
    return x, os.getppid()  # the launched process: the engine's nanny


@pytest.mark.slow
def test_fifty_engines_register_run_a_map_and_shut_down_cleanly(tmp_path):
    p = Profile(tmp_path)
    try:
        p.controller()
        engines = [p.engine() for _ in range(50)]
        rc = p.client()
        rc.wait_for_engines(50, timeout=180)
        assert len(rc.ids) == 50
        results = rc.load_balanced_view().map_sync(whoami, range(1000), chunksize=1)
        assert [x for x, _ in results] == list(range(1000))
        assert {pid for _, pid in results} <= {e.pid for e in engines}
        assert len({pid for _, pid in results}) >= 10, "the map used %d engines" % len({pid for _, pid in results})
        direct = rc[:].apply_sync(whoami, 7)
        assert sorted(pid for _, pid in direct) == sorted(e.pid for e in engines)
        rc.shutdown(hub=True)
        for proc in [p.procs[0]] + engines:
            assert proc.wait(60) == 0, proc.output()
        assert all(pid_gone(proc.pid) for proc in p.procs)
        log = (p.dir / "log" / "controller.log").read_text()
        assert log.count(" registered (host ") == 50
        assert "no heartbeat" not in log, "an engine was declared dead under load"
        assert not p.client_file().exists() and not p.engine_file().exists()
        assert not list((p.dir / "pid").iterdir())
    finally:
        p.stop_all()


CLIENT = textwrap.dedent("""
    import json, sys
    import minipar
    token = sys.argv[2]
    def tag(x, token=token):
        return "%s-%d" % (token, x)
    with minipar.Client(url_file=sys.argv[1]) as rc:
        balanced = rc.load_balanced_view().map_sync(tag, range(200))
        direct = rc[:].map_sync(tag, range(100, 150))
        ars = [rc.load_balanced_view().apply_async(tag, i) for i in range(50)]
        single = [ar.get(60) for ar in ars]
    print(json.dumps([balanced, direct, single]))
""")


def test_twenty_clients_at_once_each_get_exactly_their_own_results(tmp_path):
    from helpers import start_cluster
    p = Profile(tmp_path)
    try:
        start_cluster(p, 2)
        clients = [subprocess.Popen([sys.executable, "-c", CLIENT, str(p.client_file()), "c%d" % i],
                                    env=p.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                   for i in range(20)]
        for i, c in enumerate(clients):
            out, err = c.communicate(timeout=180)
            assert c.returncode == 0, err
            balanced, direct, single = json.loads(out)
            assert balanced == ["c%d-%d" % (i, x) for x in range(200)]
            assert direct == ["c%d-%d" % (i, x) for x in range(100, 150)]
            assert single == ["c%d-%d" % (i, x) for x in range(50)]
        wait_for(lambda: all(pid_gone(c.pid) for c in clients), 10, "the clients to be gone")
    finally:
        p.stop_all()
