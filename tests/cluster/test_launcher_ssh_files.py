"""Where the ssh launchers put connection files, against the real sshd on localhost: engines and
a controller given their own profile (the chapter's host3 example), and to_send / to_fetch as
the chapter means them (an explicit list replaces the defaults; an empty one copies nothing)."""
from __future__ import annotations

import os

from minipar.cluster.launchers.ssh import SSHEngineSetLauncher, named_profile
from fixtures.ssh_bed import cmdline, state_processes
from helpers import assert_all_gone


def test_profile_named_in_arguments():
    assert named_profile(["--profile-dir=/away/location"]) == "/away/location"
    assert named_profile(["--profile-dir", "~/p", "--x"]) == "p"
    assert named_profile(["--profile", "ssh"]) == ".minipar/profile_ssh"
    assert named_profile(["--profile=a", "--profile-dir=/d"]) == "/d"
    assert named_profile(["--log-level=DEBUG"]) is None


def test_engines_with_their_own_profile_dir_get_the_connection_file_there(ssh_bed):
    away = ssh_bed.tmp / "different" / "location"
    ssh_bed.configure({"localhost": 1, "127.0.0.1": [1, ["--profile-dir=%s" % away]]})
    cluster = ssh_bed.cluster(cluster_id="h3")
    with cluster as rc:
        assert len(rc.ids) == 2
        name = "controller-h3-engine.json"
        local = (ssh_bed.profile_dir / "security" / name).read_bytes()
        assert (away / "security" / name).read_bytes() == local
        assert (ssh_bed.remote_dir / "security" / name).read_bytes() == local
        assert (away / "security").stat().st_mode & 0o777 == 0o700
        by_host = {p["host"]: p["pid"] for p in state_processes(cluster)}
        own = cmdline(by_host["127.0.0.1"])
        assert own.count("--profile-dir") + own.count("--profile-dir=%s" % away) == 1 and "--profile-dir=%s" % away in own
        shared = cmdline(by_host["localhost"])
        assert shared[shared.index("--profile-dir") + 1] == str(ssh_bed.remote_dir)
        pids = list(by_host.values())
        assert sorted(rc[:].apply_sync(os.getppid)) == sorted(pids)
    assert_all_gone(pids)


def test_an_engine_file_named_in_arguments_is_where_it_is_sent(ssh_bed):
    target = ssh_bed.tmp / "elsewhere" / "engine.json"
    ssh_bed.configure({"localhost": {"n": 1, "engine_args": ["--file=%s" % target]}})
    cluster = ssh_bed.cluster(cluster_id="f1")
    with cluster as rc:
        assert len(rc.ids) == 1
        assert target.read_bytes() == (ssh_bed.profile_dir / "security" / "controller-f1-engine.json").read_bytes()
        assert not (ssh_bed.remote_dir / "security" / "controller-f1-engine.json").exists()


def test_empty_to_send_copies_nothing_on_a_shared_file_system(ssh_bed):
    ssh_bed.configure({"localhost": 2}, remote_profile_dir="", to_send=[], to_fetch=[])
    cluster = ssh_bed.cluster(cluster_id="nfs")
    with cluster as rc:
        assert len(rc.ids) == 2 and rc[:].apply_sync(sum, [1, 2]) == [3, 3]
    assert ssh_bed.scp_commands() == ""
    assert not any("mkdir" in command for command in ssh_bed.sent_to("localhost"))


def test_files_to_send_are_the_connection_file_unless_the_profile_sets_them(ssh_bed):
    launcher_settings = {"remote_profile_dir": str(ssh_bed.remote_dir), "engines": {"localhost": 1},
                         "to_send": [], "configured": ["to_send"]}
    launcher = SSHEngineSetLauncher(ssh_bed.profile_dir, "x", settings=launcher_settings)
    assert launcher.files_to_send() == {"localhost": ([], [])}
    launcher = SSHEngineSetLauncher(ssh_bed.profile_dir, "x", settings=dict(launcher_settings, configured=[]))
    (ssh_bed.profile_dir / "security").mkdir(exist_ok=True)
    (ssh_bed.profile_dir / "security" / "controller-x-engine.json").write_text("{}")
    assert launcher.files_to_send() == {"localhost": (
        [(str(ssh_bed.profile_dir / "security" / "controller-x-engine.json"),
          str(ssh_bed.remote_dir / "security" / "controller-x-engine.json"))], [str(ssh_bed.remote_dir)])}


def test_ssh_controller_with_its_own_profile_dir_is_fetched_from_there(ssh_bed):
    away = ssh_bed.tmp / "path" / "to" / "cd"
    ssh_bed.configure({"localhost": 1}, cluster={"controller": "ssh",
                                             "controller_args": ["--reuse", "--profile-dir=%s" % away]},
                  controller_host="localhost")
    cluster = ssh_bed.cluster(cluster_id="cd")
    with cluster as rc:
        args = cmdline(state_processes(cluster, "controller")[0]["pid"])
        assert "--profile-dir=%s" % away in args and "--profile-dir" not in args
        for role in ("client", "engine"):
            name = "controller-cd-%s.json" % role
            assert (ssh_bed.profile_dir / "security" / name).read_bytes() == (away / "security" / name).read_bytes()
        assert rc[:].apply_sync(pow, 2, 5) == [32]
