"""Engine tags with real processes: engines started with --tags, load-balanced views that
run only on engines with given tags (also ones that register later), direct views by tag,
and what rc.engine_info() says of each engine."""
from __future__ import annotations

import socket
import warnings

import pytest

import minipar
from helpers import TEST_PYTHONPATH


def where(_=None):
    import os
    return os.getpid()


@pytest.fixture
def tagged(profile):
    """A controller and three engines: gpu, gpu+bigmem, and one without tags."""
    profile.controller()
    profile.engine("--tags=gpu")
    profile.engine("--engine.tags=gpu,bigmem")
    profile.engine()
    rc = profile.client()
    rc.wait_for_engines(3, timeout=30)
    by_tags = {tuple(e["tags"]): i for i, e in rc.engine_info().items()}
    return rc, by_tags


def test_engine_info_names_host_pid_and_tags_of_each_engine(tagged):
    rc, by_tags = tagged
    info = rc.engine_info()
    assert sorted(by_tags) == [(), ("bigmem", "gpu"), ("gpu",)]
    assert {e["host"] for e in info.values()} == {socket.gethostname()}
    assert rc[:].apply_sync(where) == [info[i]["pid"] for i in rc.ids]
    assert all(e["job"] is None and e["remaining"] is None for e in info.values())
    gpu = by_tags[("gpu",)]
    assert list(rc.engine_info(gpu)) == [gpu] and rc.engine_info(gpu)[gpu]["uuid"] == info[gpu]["uuid"]


def test_a_tagged_view_runs_only_on_engines_with_every_tag(tagged):
    rc, by_tags = tagged
    gpu = rc.load_balanced_view(tags=["gpu"]).map_async(where, range(60))
    both = rc.load_balanced_view(tags=["gpu", "bigmem"]).map_async(where, range(30))
    gpu.get(timeout=30), both.get(timeout=30)
    assert {md["engine_id"] for md in gpu.metadata} <= {by_tags[("gpu",)], by_tags[("bigmem", "gpu")]}
    assert {md["engine_id"] for md in both.metadata} == {by_tags[("bigmem", "gpu")]}


def test_a_direct_view_by_tag_addresses_the_engines_that_have_it(tagged):
    rc, by_tags = tagged
    view = rc.direct_view(tags="gpu")
    assert sorted(view.targets) == sorted([by_tags[("gpu",)], by_tags[("bigmem", "gpu")]])
    with pytest.raises(minipar.NoEnginesRegistered, match=r"no registered engine has tags \['tpu'\]"):
        rc.direct_view(tags=["tpu"])


def test_tasks_for_a_tag_no_engine_has_wait_for_one_to_register(tagged, profile):
    rc, _ = tagged
    with pytest.warns(UserWarning, match=r"no registered engine has tags \['tpu'\] yet: tasks wait"):
        view = rc.load_balanced_view(tags="tpu")
    ar = view.apply_async(where)
    assert not ar.wait(1.0)
    profile.engine("--tags=tpu,gpu")
    rc.wait_for_engines(4, timeout=30)
    assert ar.get(timeout=20) > 0
    tpu = [i for i, e in rc.engine_info().items() if "tpu" in e["tags"]]
    assert ar.metadata["engine_id"] == tpu[0]


def test_a_tag_no_engine_has_fails_after_the_timeout_naming_it(tagged):
    rc, _ = tagged
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        view = rc.load_balanced_view(tags=["tpu"], timeout=1)
    with pytest.raises(minipar.TaskTimeout, match=r"no engine with tags \['tpu'\] took it within 1s"):
        view.apply_sync(where)


def test_tags_must_be_words(tagged, profile):
    rc, _ = tagged
    with pytest.raises(TypeError, match="tags is a list of non-empty strings"):
        rc.load_balanced_view(tags=[3])
    bad = profile.engine("--tags=gpu, big mem")
    assert bad.wait(20) == 2
    assert "engine.tags: 'big mem' is not a tag" in bad.output()


def test_a_cluster_engine_set_started_with_tags_is_what_a_tagged_view_picks(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", TEST_PYTHONPATH)
    cluster = minipar.Cluster(profile_dir=str(tmp_path / "p"), n=1, config_overrides={"engine.end_time": "+600"})
    with cluster as rc:
        cluster.start_engines_sync(1, tags=["gpu"])
        rc.wait_for_engines(2, timeout=30)
        info = rc.engine_info()
        [gpu] = [i for i, e in info.items() if e["tags"] == ["gpu"]]
        assert all(e["end_time"] is not None for e in info.values()), "engine.* overrides reach the engines"
        ar = rc.load_balanced_view(tags="gpu").map_async(where, range(20))
        ar.get(timeout=30)
        assert {md["engine_id"] for md in ar.metadata} == {gpu}
