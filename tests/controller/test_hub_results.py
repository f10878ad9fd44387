"""Results through the controller: other clients' tasks, status, history, queries, resubmission,
purging, and SQLite history across a controller restart."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest

import minipar
from helpers import announce_then_sleep, start_cluster, wait_for


def fail():
    raise ValueError("planned failure")


def wait_for_file(path, value):
    import os
    import time
    while not os.path.exists(path):
        time.sleep(0.01)
    return value


def test_another_client_gets_results_also_after_the_first_left(profile):
    rc, _ = start_cluster(profile, 2)
    ok = rc[0].apply_async(pow, 2, 10)
    bad = rc[1].apply_async(fail)
    lb = rc.load_balanced_view().apply_async(sum, [1, 2])
    ids = ok.msg_ids + bad.msg_ids + lb.msg_ids
    rc.wait([ok, bad, lb], timeout=10)
    assert rc.results[ok.msg_ids[0]] == 1024
    assert rc.metadata[ok.msg_ids[0]]["engine_id"] == 0
    rc.close()
    with minipar.Client(url_file=str(profile.client_file())) as rc2:
        assert rc2.get_result(ids[0], block=True).get(0) == 1024
        ar = rc2.get_result(ids)
        with pytest.raises(minipar.CompositeError) as info:
            ar.get(10)
        assert [e.ename for e in info.value.elist] == ["ValueError"]
        assert ar.get(10, return_exceptions=True)[2] == 3
        assert ar.metadata[0]["engine_id"] == 0 and ar.metadata[2]["status"] == "ok"
        again = rc2.get_result(ids[0])
        assert again.get(10) == 1024
        with pytest.raises(KeyError, match="no task 'nope' is known"):
            rc2.get_result("nope").get(10)
        status = rc2.result_status(ids + ["nope"])
        assert status["completed"] == ids and status["pending"] == [] and status["missing"] == ["nope"]
        assert set(ids) <= set(rc2.hub_history())


def test_get_result_of_a_running_task_waits_for_it(profile, tmp_path):
    rc, _ = start_cluster(profile, 1)
    gate = tmp_path / "gate"
    ar = rc[0].apply_async(wait_for_file, str(gate), "late")
    with minipar.Client(url_file=str(profile.client_file())) as rc2:
        watched = rc2.get_result(ar.msg_ids[0])
        assert rc2.result_status(ar.msg_ids)["pending"] == ar.msg_ids
        gate.touch()
        assert watched.get(10) == "late"
    assert ar.get(10) == "late"
    same_client = rc.get_result(ar.msg_ids[0], block=False)
    assert same_client.get(1) == "late"


def test_resubmit_runs_it_again(profile):
    rc, _ = start_cluster(profile, 2)
    ar = rc.load_balanced_view().apply_async(pow, 3, 4)
    assert ar.get(10) == 81
    again = rc.resubmit(ar.msg_ids)
    assert again.get(10) == [81]
    assert again.msg_ids != ar.msg_ids
    [old] = rc.db_query({"msg_id": ar.msg_ids[0]}, keys=["resubmitted"])
    assert old["resubmitted"] == again.msg_ids[0]
    with pytest.raises(minipar.MiniparError, match="no task 'nope'"):
        rc.resubmit(["nope"])


def test_db_query_dates_bytes_projection(profile):
    rc, _ = start_cluster(profile, 1)
    t0 = datetime.now(timezone.utc)
    ars = [rc[0].apply_async(len, b"x" * n) for n in (1, 2, 3)]
    rc.wait(ars, timeout=10)
    records = rc.db_query({"completed": {"$gte": t0}}, keys=["completed", "buffers", "engine_uuid", "stdout"])
    assert [r["msg_id"] for r in records] == [a.msg_ids[0] for a in ars]
    assert set(records[0]) == {"msg_id", "completed", "buffers", "engine_uuid", "stdout"}
    assert all(isinstance(r["completed"], datetime) and r["completed"] >= t0 for r in records)
    assert all(isinstance(b, bytes) for r in records for b in r["buffers"])
    assert records[0]["engine_uuid"] == ars[0].metadata["engine_uuid"]
    assert rc.db_query({"msg_id": {"$in": [ars[1].msg_ids[0]]}}, keys=["msg_id"]) == [{"msg_id": ars[1].msg_ids[0]}]
    assert rc.db_query({"completed": {"$lt": t0}, "queue": "mux"}, keys=["msg_id"]) == []
    with pytest.raises(minipar.MiniparError, match="bad query"):
        rc.db_query({"completed": {"$around": t0}})


def test_purge_results(profile):
    rc, _ = start_cluster(profile, 1)
    a, b = rc[0].apply_async(abs, -1), rc[0].apply_async(abs, -2)
    rc.wait([a, b], timeout=10)
    rc.purge_results(a)
    assert a.msg_ids[0] not in rc.hub_history() and b.msg_ids[0] in rc.hub_history()
    with minipar.Client(url_file=str(profile.client_file())) as rc2:
        with pytest.raises(KeyError):
            rc2.get_result(a.msg_ids[0]).get(10)
    rc.purge_results("all")
    assert rc.hub_history() == []


def test_nodb_answers_queries_with_a_clear_error(profile, tmp_path):
    rc, _ = start_cluster(profile, 1, "--nodb")
    gate = tmp_path / "gate"
    ar = rc[0].apply_async(wait_for_file, str(gate), 5)
    with minipar.Client(url_file=str(profile.client_file())) as rc2:
        fetched = rc2.get_result(ar.msg_ids[0])  # asked while the task runs: the result reaches rc2 too
        assert rc2.result_status(ar.msg_ids)["pending"] == ar.msg_ids  # answered after the request above
        gate.touch()
        assert fetched.get(10) == 5
        assert rc2.get_result(ar.msg_ids[0]).get(10) == 5, "kept by the client that fetched it"
    with minipar.Client(url_file=str(profile.client_file())) as rc3:
        with pytest.raises(KeyError, match="keeps no task records"):
            rc3.get_result(ar.msg_ids[0]).get(10)
    for call in (lambda: rc.db_query({}), rc.hub_history, lambda: rc.resubmit(ar.msg_ids)):
        with pytest.raises(minipar.MiniparError, match="db = 'nodb' and keeps no task records"):
            call()


def test_sqlite_history_survives_a_controller_restart(profile):
    args = ("--db=sqlite", "--db.sqlite.table=history")
    ctl = profile.controller(*args)
    profile.engine()
    rc = profile.client()
    rc.wait_for_engines(1, timeout=20)
    ar = rc[0].apply_async(pow, 7, 2)
    assert ar.get(10) == 49
    rc.close()
    ctl.stop()
    assert ctl.popen.returncode == 0
    assert (profile.dir / "security" / "tasks.db").exists()
    profile.controller(*args)
    with minipar.Client(url_file=str(profile.client_file())) as rc2:
        assert rc2.get_result(ar.msg_ids[0], block=True).get(0) == 49
        [rec] = rc2.db_query({"msg_id": ar.msg_ids[0]}, keys=["completed", "queue"])
        assert rec["queue"] == "mux" and isinstance(rec["completed"], datetime)


def test_dictdb_stays_within_its_limit_and_keeps_pending_records(profile):
    rc, _ = start_cluster(profile, 2, "--db.dict.record_limit=500")
    lv = rc.load_balanced_view()
    pending = rc[0].apply_async(announce_then_sleep, 60, "kept")
    wait_for(lambda: pending.stdout == "started\n", 20, "the long task to start")
    ar = lv.map_async(abs, range(20000), chunksize=1)
    assert ar.get(120)[-3:] == [19997, 19998, 19999]
    history = rc.hub_history()
    assert len(history) <= 500
    assert pending.msg_ids[0] in history
    rc.send_signal(2, targets=[0])
    with pytest.raises(minipar.RemoteError):
        pending.get(20)
    with minipar.Client(url_file=str(profile.client_file())) as rc2:
        with pytest.raises(minipar.RemoteError) as info:
            rc2.get_result(pending.msg_ids[0]).get(10)
        assert info.value.ename == "KeyboardInterrupt"
