"""A client SIGKILLed once ``wait_for_send()`` returned: its tasks run, and another client gets their results."""
from __future__ import annotations

import json
import subprocess
import sys
import threading

import pytest

import minipar
from helpers import ROOT

SUBMIT_THEN_DIE = r"""
import json, os, signal, sys, threading
import minipar

def slow_pow(x, y):
    import time
    time.sleep(0.005)
    return x ** y

rc = minipar.Client(url_file=sys.argv[1])
view = rc.load_balanced_view()
how = sys.argv[2]
if how == "thread":  # submitted in one thread, waited for in another
    box = []
    t = threading.Thread(target=lambda: box.extend(view.apply_async(slow_pow, 3, i) for i in range(200)))
    t.start()
    t.join()
    ars = box
else:
    ars = [view.apply_async(slow_pow, 3, i) for i in range(200)]
for ar in ars:
    ar.wait_for_send(20)
print(json.dumps([ar.msg_ids[0] for ar in ars]), flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.mark.parametrize("db, how", [("dict", "same thread"), ("sqlite", "same thread"), ("dict", "thread")])
def test_tasks_of_a_client_killed_after_wait_for_send_complete_for_a_new_client(profile, db, how):
    profile.controller("--db=%s" % db)
    engines = [profile.engine() for _ in range(2)]
    minipar.Client(url_file=str(profile.client_file())).close()
    out = subprocess.run([sys.executable, "-c", SUBMIT_THEN_DIE, str(profile.client_file()), how],
                         env=profile.env, capture_output=True, text=True, timeout=120, cwd=str(ROOT))
    assert out.returncode == -9, out.stderr
    msg_ids = json.loads(out.stdout)
    rc = profile.client()
    rc.wait_for_engines(2, timeout=30)
    assert rc.get_result(msg_ids).get(60) == [3 ** i for i in range(200)]
    assert len(engines) == 2


def test_wait_for_send_with_nodb_returns_once_the_controller_has_the_request(profile):
    profile.controller("--nodb")
    profile.engine()
    rc = profile.client()
    rc.wait_for_engines(1, timeout=30)
    ars = [rc.load_balanced_view().apply_async(pow, 2, i) for i in range(50)]
    for ar in ars:
        ar.wait_for_send(10)
    assert [ar.get(20) for ar in ars] == [2 ** i for i in range(50)]
    elsewhere = []
    t = threading.Thread(target=lambda: elsewhere.append(rc.load_balanced_view().apply_async(pow, 2, 60)))
    t.start()
    t.join()
    elsewhere[0].wait_for_send(10)
    assert elsewhere[0].get(10) == 2 ** 60
