"""``python -m minipar.cluster start|stop|list|engines``: manage clusters from a shell."""
from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
import time
from pathlib import Path

from ..config import ConfigError
from ..error import MiniparError
from ..logs import setup_logging
from ..profile import ProfileError, locate_profile_dir, minipar_dir
from .cluster import Cluster, ClusterError, state_file_path

PROG = "python -m %s" % (__package__ or "minipar.cluster")


def add_profile_args(p, cluster_id=True):
    p.add_argument("--profile", help="profile name (default: 'default')")
    p.add_argument("--profile-dir", help="profile directory (overrides --profile)")
    if cluster_id:
        p.add_argument("--cluster-id", default="", help="which cluster of the profile (default: '')")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description="Start, stop, list and grow minipar clusters.")
    sub = p.add_subparsers(dest="command", metavar="{start,stop,list,engines}")
    sub.required = True

    start = sub.add_parser("start", help="start a controller and engines",
                           description="Start a controller and N engines. Runs until Ctrl-C (then stops "
                                       "everything), or returns once they are up with --daemonize.")
    add_profile_args(start)
    start.add_argument("-n", "--n", type=int, help="number of engines (default: [cluster] n, or one per core)")
    start.add_argument("--engines", help="engine launcher: local, mpi, ssh, sshproxy, pbs, sge, lsf, slurm, htcondor or pkg.mod.Class")
    start.add_argument("--controller", help="controller launcher: local, mpi, ssh, pbs, sge, lsf, slurm, htcondor or pkg.mod.Class")
    start.add_argument("--ip", help="interface the controller listens on ('*' = all)")
    start.add_argument("--location", help="address written into the connection files")
    start.add_argument("--daemonize", action="store_true", help="return once the cluster is up; "
                                                                 "stop it later with `stop`")
    start.add_argument("--log-level", help="DEBUG, INFO, WARNING or ERROR")

    stop = sub.add_parser("stop", help="stop a running cluster")
    add_profile_args(stop)
    stop.add_argument("--all", action="store_true", help="stop every cluster of the profile")

    lst = sub.add_parser("list", help="list clusters (all profiles unless one is named)")
    add_profile_args(lst, cluster_id=False)

    eng = sub.add_parser("engines", help="add engines to a running cluster",
                         description="Add engines to a running cluster of this profile (found by its state "
                                     "file). With --foreground, start them here from the engine connection file "
                                     "alone (the controller may run elsewhere) and stay until SIGINT or SIGTERM, "
                                     "then stop them: this is what the sshproxy launcher runs on each host.")
    add_profile_args(eng)
    eng.add_argument("-n", "--n", type=int, default=1, help="how many engines to add (default 1)")
    eng.add_argument("--foreground", action="store_true",
                     help="start the engines here and stop them on SIGINT/SIGTERM; needs only "
                          "security/controller[-ID]-engine.json in the profile")
    eng.add_argument("--log-level", help="DEBUG, INFO, WARNING or ERROR (with --foreground)")
    eng.add_argument("--engine-arg", action="append", default=[], metavar="ARG",
                     help="an argument for each engine, repeatable (with --foreground); "
                          "write it as --engine-arg=--startup-command=...")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging("Cluster", getattr(args, "log_level", None) or "INFO")
    try:
        return COMMANDS[args.command](args)
    except (ClusterError, ConfigError, ProfileError, MiniparError) as e:
        print("%s %s: error: %s" % (PROG, args.command, e), file=sys.stderr)
        return 1


def cmd_start(args) -> int:
    cluster = Cluster(profile=args.profile, profile_dir=args.profile_dir, cluster_id=args.cluster_id, n=args.n,
                      engines=args.engines, controller=args.controller, controller_ip=args.ip,
                      controller_location=args.location, log_level=args.log_level,
                      shutdown_atexit=not args.daemonize)
    if state_file_path(cluster.profile_dir, cluster.cluster_id).exists():
        running = Cluster.from_file(profile_dir=str(cluster.profile_dir), cluster_id=cluster.cluster_id)
        if running.controller_running:
            raise ClusterError("cluster %r of %s is already running; stop it first, or pick another --cluster-id"
                               % (cluster.cluster_id, cluster.profile_dir))
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    rc = cluster.start_and_connect_sync()
    print("cluster %r running: %d engines, profile %s" % (cluster.cluster_id, len(rc.ids), cluster.profile_dir))
    print("connect with: minipar.Client(url_file=%r)" % str(cluster.client_file))
    rc.close()
    cluster._client = None
    if args.daemonize:
        cluster._watch_stop.set()
        return 0
    print("Ctrl-C to stop")
    while not stop.wait(0.5):
        if not cluster.controller_running:
            print("the controller exited; stopping the engines", file=sys.stderr)
            cluster.stop_cluster_sync()
            return 1
    cluster.stop_cluster_sync()
    print("cluster %r stopped" % cluster.cluster_id)
    return 0


def cmd_stop(args) -> int:
    pdir = locate_profile_dir(args.profile, args.profile_dir, create=False)
    ids = [s["cluster_id"] for s in read_states(pdir)] if args.all else [args.cluster_id]
    if not ids:
        print("no clusters running in %s" % pdir)
        return 0
    for cluster_id in ids:
        cluster = Cluster.from_file(profile_dir=str(pdir), cluster_id=cluster_id)
        cluster.stop_cluster_sync()
        print("stopped cluster %r of %s" % (cluster_id, pdir))
    return 0


def cmd_engines(args) -> int:
    if args.foreground:
        return run_engines_in_foreground(args)
    pdir = locate_profile_dir(args.profile, args.profile_dir, create=False)
    if not state_file_path(pdir, args.cluster_id).exists():
        raise ClusterError("no cluster with id %r in %s to add engines to; to start engines here for a controller "
                           "elsewhere, copy its engine connection file into this profile's security dir and use "
                           "--foreground" % (args.cluster_id, pdir))
    cluster = Cluster.from_file(profile_dir=str(pdir), cluster_id=args.cluster_id)
    if not cluster.controller_running:
        raise ClusterError("cluster %r has no running controller" % args.cluster_id)
    set_id = cluster.start_engines_sync(args.n)
    cluster._watch_stop.set()
    print("started %d engine(s) in cluster %r" % (cluster.engine_sets[set_id].n, args.cluster_id))
    return 0


FOREGROUND_STOP_TIMEOUT = 5.0
"""Seconds the engines of ``engines --foreground`` get after SIGTERM before SIGKILL."""


def run_engines_in_foreground(args) -> int:
    """Start n engines here, report the ones that end, stop them all on SIGINT/SIGTERM/SIGHUP.

    Returns 0 once stopped, 1 if every engine ended on its own. Output goes to stdout, which
    for sshproxy is the ssh channel into the launching host's log."""
    from ..connection import connection_file_path
    from .launchers.base import tail
    from .launchers.local import LocalEngineSetLauncher

    if args.n < 1:
        raise ClusterError("engines --foreground needs -n >= 1, got %d" % args.n)
    pdir = locate_profile_dir(args.profile, args.profile_dir, create=True)
    engine_file = connection_file_path(pdir, "engine", args.cluster_id)
    if not engine_file.exists():
        raise ClusterError("no engine connection file %s; copy the controller's there first" % engine_file)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda *_: stop.set())
    launcher = LocalEngineSetLauncher(pdir, args.cluster_id, args.log_level or "INFO", args.engine_arg, n=args.n)
    code = 0
    try:
        launcher.start()
        say("started %d engine(s) here, pids %s, logs in %s"
            % (args.n, " ".join(str(p.pid) for p in launcher.processes), launcher.log_dir))
        while not stop.wait(0.5):
            for p in launcher.exited():
                say("engine %s; last lines of %s:\n%s" % (p.describe(), p.log_file, tail(p.log_file)))
            if not launcher.running:
                say("every engine exited")
                code = 1
                break
    finally:
        launcher.stop(FOREGROUND_STOP_TIMEOUT)
    if code == 0:
        say("stopped %d engine(s)" % args.n)
    return code


def say(text: str) -> None:
    """Print and flush, and carry on if stdout is gone (an ssh connection that dropped)."""
    try:
        print(text, flush=True)
    except OSError:
        pass


def read_states(profile_dir: Path) -> list:
    states = []
    for path in sorted((profile_dir / "security").glob("cluster-*.json")):
        try:
            states.append(json.loads(path.read_text()))
        except (OSError, ValueError):
            continue
    return states


def cmd_list(args) -> int:
    if args.profile or args.profile_dir:
        dirs = [locate_profile_dir(args.profile, args.profile_dir, create=False)]
    else:
        root = minipar_dir()
        dirs = sorted(root.glob("profile_*")) if root.is_dir() else []
    rows = []
    stale = []
    for pdir in dirs:
        for state in read_states(pdir):
            cluster = Cluster.from_dict(state)
            running = sum(s.engines_running() for s in cluster.engine_sets.values())
            total = sum(s.n for s in cluster.engine_sets.values())
            controller = cluster.controller_running
            if not controller and running == 0:
                stale.append(cluster.state_file)
                cluster.remove_state()
                continue
            launchers = "%s/%s" % (launcher_name(cluster.controller), ",".join(
                sorted({launcher_name(s) for s in cluster.engine_sets.values()})) or "-")
            age = time.time() - (state.get("start_time") or time.time())
            name = pdir.name[len("profile_"):] if pdir.name.startswith("profile_") else str(pdir)
            rows.append((name, cluster.cluster_id or "''", "running" if controller else "stopped",
                         "%d/%d" % (running, total), launchers, format_age(age)))
    header = ("PROFILE", "CLUSTER ID", "CONTROLLER", "ENGINES", "LAUNCHERS", "AGE")
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
    for row in [header] + rows:
        print("  ".join(str(v).ljust(w) for v, w in zip(row, widths)).rstrip())
    for path in stale:
        print("removed stale state file %s (none of its processes run)" % path)
    return 0


def launcher_name(launcher) -> str:
    if launcher is None:
        return "-"
    return getattr(launcher, "name", "") or type(launcher).__name__


def format_age(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 120:
        return "%ds" % seconds
    if seconds < 7200:
        return "%dm" % (seconds // 60)
    return "%dh%02dm" % (seconds // 3600, seconds % 3600 // 60)


COMMANDS = {"start": cmd_start, "stop": cmd_stop, "list": cmd_list, "engines": cmd_engines}

if __name__ == "__main__":
    logging.captureWarnings(True)
    sys.exit(main())
