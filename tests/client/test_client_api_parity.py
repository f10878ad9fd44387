"""ipyparallel's remaining Client, View, AsyncResult and Cluster names, with its behaviour."""
from __future__ import annotations

import logging
import signal
import threading
import warnings

import pytest

import minipar as ipp
from minipar.cluster.launchers.local import LocalEngineSetLauncher
from helpers import Profile, announce_then_sleep, start_cluster, wait_for


def double(x):
    return 2 * x


def test_module_names():
    assert ipp.version_info == tuple(int(p) for p in ipp.__version__.split("."))
    assert callable(ipp.use_cloudpickle) and callable(ipp.use_pickle) and callable(ipp.use_dill)


def test_view_use_dill_sends_closures_by_value(cluster):
    pytest.importorskip("dill")
    factor = 7
    dv = cluster[:]
    try:
        assert dv.use_dill().get(10) == [None, None]
        assert dv.apply_sync(lambda x: x * factor, 3) == [21, 21]
    finally:
        dv.use_pickle().get(10)


def test_purge_needs_jobs_or_targets(cluster):
    for purge in (cluster.purge_results, cluster.purge_local_results, cluster.purge_hub_results):
        with pytest.raises(ValueError, match="jobs .* or targets"):
            purge()


def test_purge_local_results_keeps_the_hubs_copy(cluster):
    ar = cluster[:].apply_async(double, 21)
    assert ar.get(10) == [42, 42]
    msg_id = ar.msg_ids[0]
    assert msg_id in cluster.results
    cluster.purge_local_results(ar)
    assert msg_id not in cluster.results and msg_id not in cluster.metadata
    assert cluster.get_result(msg_id).get(10) == 42           # fetched from the controller again
    cluster.purge_hub_results(ar)
    assert msg_id not in cluster.hub_history()


def test_purge_refuses_outstanding_tasks(cluster):
    ar = cluster.load_balanced_view().apply_async(announce_then_sleep, 1.0)
    with pytest.raises(RuntimeError, match="still outstanding: %s" % ar.msg_ids[0]):
        cluster.purge_local_results(ar)
    assert ar.get(10) == "slept"


def test_purge_everything_forgets_the_history(tmp_path):
    p = Profile(tmp_path)
    try:
        rc, _ = start_cluster(p, 1)
        rc[:].apply_sync(double, 1)
        assert rc.history and rc.hub_history()
        rc.purge_everything()
        assert rc.history == [] and rc.results == {} and rc.hub_history() == []
    finally:
        p.stop_all()


def test_view_get_result_indexes_the_views_history(cluster):
    dv, lv = cluster[:], cluster.load_balanced_view()
    dv.apply_sync(double, 1)
    lv.apply_sync(double, 5)
    assert lv.get_result().get(10) == 10
    assert dv.get_result(-1).get(10) == 2                 # the last message of the direct call
    assert lv.get_result([-1]).get(10) == [10]


def test_view_purge_results(cluster):
    view = cluster[0]
    ar = view.apply_async(double, 4)
    ar.get(10)
    view.purge_results(ar)
    assert ar.msg_ids[0] not in cluster.results
    assert ar.msg_ids[0] not in cluster.hub_history()


def test_spin_is_a_deprecated_no_op(cluster):
    for call in (cluster.spin, cluster.spin_thread, cluster.stop_spin_thread, cluster[:].spin):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            call()
        assert [w.category for w in caught] == [DeprecationWarning]


def test_client_wait_interactive_waits_for_everything_outstanding(cluster, capsys):
    lv = cluster.load_balanced_view()
    ars = [lv.apply_async(announce_then_sleep, 0.3, i) for i in range(3)]
    cluster.wait_interactive(interval=0.05)
    assert all(ar.done() for ar in ars)
    assert "3/3 tasks done" in capsys.readouterr().out
    assert cluster.wait_interactive() is None                 # nothing outstanding: returns at once


def test_client_wait_interactive_times_out(cluster):
    ar = cluster.load_balanced_view().apply_async(announce_then_sleep, 1.5)
    with pytest.raises(ipp.TimeoutError, match="0 of 1 tasks done within 0.2s"):
        cluster.wait_interactive([ar], interval=0.05, timeout=0.2)
    ar.get(10)


def test_async_result_lists_its_metadata_attributes(cluster):
    ar = cluster[0].apply_async(double, 2)
    ar.get(10)
    assert {"completed", "engine_id", "started", "status"} <= set(dir(ar))
    assert ar.status == "ok" and ar.completed >= ar.started


def test_client_takes_connection_info_as_a_dict(cluster):
    import json
    info = json.loads(cluster.profile.client_file().read_text())
    rc = ipp.Client(info)
    try:
        assert rc.url_file is None
        assert rc.ids == cluster.ids
        assert rc[0].apply_sync(double, 3) == 6
    finally:
        rc.close()


def test_client_arguments_of_ipyparallel(cluster):
    path = str(cluster.profile.client_file())
    rc = ipp.Client(path, context=None, paramiko=False, debug=False, cluster=None)
    rc.close()
    assert rc.block is False and rc.profile == "default"
    with pytest.raises(TypeError, match="system ssh, which cannot take a password"):
        ipp.Client(path, password="secret")
    with pytest.raises(TypeError, match="unexpected keyword argument.*: nonsense"):
        ipp.Client(path, nonsense=1)


def test_client_waits_for_the_connection_file_of_its_profile(tmp_path, monkeypatch):
    p = Profile(tmp_path)
    monkeypatch.setenv("MINIPAR_DIR", str(p.root))
    p.dir.joinpath("security").mkdir(parents=True)
    box = {}
    waiter = threading.Thread(target=lambda: box.update(rc=ipp.Client(profile="default", timeout=30)))
    try:
        waiter.start()
        wait_for(lambda: waiter.is_alive(), what="the client to start waiting")
        p.controller()
        waiter.join(30)
        assert "rc" in box, "Client(profile=...) did not connect once the controller wrote its file"
        box["rc"].close()
    finally:
        p.stop_all()


def test_client_gives_up_on_a_missing_connection_file(tmp_path, monkeypatch):
    monkeypatch.setenv("MINIPAR_DIR", str(tmp_path))
    (tmp_path / "profile_default" / "security").mkdir(parents=True)
    with pytest.raises(OSError, match="controller-client.json does not exist") as e:
        ipp.Client(profile="default", timeout=0.3)
    assert isinstance(e.value, ipp.MiniparError)


# -- Cluster ----------------------------------------------------------------------------------

def test_cluster_attributes_by_ipyparallels_names(tmp_path):
    c = ipp.Cluster(profile_dir=str(tmp_path / "p"), n=1, log_level=logging.WARNING, controller_ip="127.0.0.1",
                    engine_launcher_class=LocalEngineSetLauncher, shutdown_atexit=False)
    assert c.log_level == logging.WARNING
    assert c.engine_launcher_class is LocalEngineSetLauncher
    assert c.controller_launcher_class.__name__ == "LocalControllerLauncher"
    assert c.controller_ip == "127.0.0.1" and c.controller_args == [] and c.engines == {}
    assert c.cluster_file.endswith("cluster-%s.json" % c.cluster_id)
    assert c.shutdown_atexit is False


def test_cluster_engine_sets_by_id(tmp_path):
    with ipp.Cluster(profile_dir=str(tmp_path / "p"), n=1, delay=0.1, shutdown_atexit=False) as rc:
        cluster = rc.cluster
        first = list(cluster.engines)
        assert cluster.start_engines_sync(1, engine_set_id="extra") == "extra"
        rc.wait_for_engines(2, timeout=30)
        with pytest.raises(ValueError, match="engine set 'extra' is already running"):
            cluster.start_engines_sync(1, engine_set_id="extra")
        with pytest.raises(KeyError, match="no engine set 'nope'"):
            cluster.signal_engines_sync(signal.SIGINT, "nope")
        extra_pids = {p.pid for p in cluster.engines["extra"].processes}
        before = set(rc.ids)
        cluster.restart_engines_sync("extra")
        assert set(cluster.engines) == {first[0], "extra"}
        assert not extra_pids & {p.pid for s in cluster.engines.values() for p in s.processes}
        wait_for(lambda: len(rc.ids) == 2 and set(rc.ids) != before, 30, "the extra engine to come back")
        assert rc[:].apply_sync(pow, 2, 3) == [8, 8]


# -- execute, metadata, flags -----------------------------------------------------------------

def test_execute_gives_execute_replies(cluster):
    cluster[:].execute("a = 5", block=True)
    quiet = cluster[0].execute("a * 2", block=True).get()
    assert isinstance(quiet, ipp.client.asyncresult.ExecuteReply)
    assert quiet.data == {} and str(quiet) == "" and repr(quiet).startswith("<ExecuteReply[")
    loud = cluster[:].execute("a * 2", silent=False).get(10)
    assert [r.data["text/plain"] for r in loud] == ["10", "10"]
    engine = cluster.ids[0]
    assert str(loud[0]) == "Out[%d:%d]: 10" % (engine, loud[0].execution_count)
    assert loud[0].execution_count >= 1 and loud[0].engine_id == engine
    again = cluster[0].execute("a = 1", silent=False).get(10)
    assert again.execution_count == loud[0].execution_count + 1 and again.data == {}
    with pytest.raises(ipp.RemoteError, match="SyntaxError"):
        cluster[0].execute("a = = 1", silent=False, block=True)


def test_metadata_has_ipyparallels_keys_as_attributes(cluster):
    ar = cluster[0].apply_async(double, 2)
    ar.get(10)
    md = ar.metadata
    assert md.msg_id == ar.msg_ids[0] and md["engine_id"] == md.engine_id
    assert {"after", "follow", "execute_result", "outputs", "data", "label"} <= set(md)
    assert md.is_broadcast is False
    parts = cluster.broadcast_view(is_coalescing=True).apply_async(double, 1)
    parts.get(10)
    assert all(m["is_broadcast"] and m["is_coalescing"] for m in parts.metadata)
    with pytest.raises(AttributeError):
        md.nonsense


def test_result_status_and_flags_as_ipyparallel(cluster):
    lv = cluster.load_balanced_view()
    ar = lv.apply_async(double, 1)
    ar.get(10)
    assert cluster.result_status(ar.msg_ids)["status"] == "ok"
    lv.set_flags(timeout=5)
    assert lv.timeout == 5.0 and isinstance(lv.timeout, float)
    with pytest.raises(NotImplementedError, match="Cluster.restart_engines"):
        cluster.shutdown(restart=True)


def test_reprs_as_ipyparallel(cluster):
    assert repr(cluster[:]) == "<DirectView %s>" % cluster.ids
    assert repr(cluster.direct_view(list(range(2)) * 4)) == "<DirectView [0, 1, 0, 1,...]>"
    assert repr(cluster.load_balanced_view()) == "<LoadBalancedView None>"
    ar = cluster[0].apply_async(double, 1)
    ar.get(10)
    assert repr(ar) == "<AsyncResult(double): finished>"
    bad = cluster[0].apply_async(divmod, 1, 0)
    bad.wait(10)
    assert repr(bad) == "<AsyncResult(divmod): failed>"


class StopFails(LocalEngineSetLauncher):
    """Engines whose stop raises, as a batch system's delete command can."""

    def stop(self, timeout=None):
        super().stop(timeout)
        raise RuntimeError("the delete command failed")


def test_a_failing_engine_stop_still_stops_the_controller(tmp_path):
    cluster = ipp.Cluster(profile_dir=str(tmp_path / "p"), n=1, engines=StopFails, shutdown_atexit=False)
    cluster.start_and_connect_sync(timeout=30)
    controller = cluster.controller
    with pytest.raises(ipp.cluster.cluster.ClusterError, match="RuntimeError|the delete command failed"):
        cluster.stop_cluster_sync()
    assert not controller.running
    assert cluster.state_file.exists() and list(cluster.engines)      # kept for another stop

