"""``python -m minipar.cluster start|stop|list|engines``: manage clusters from a shell."""
from __future__ import annotations

import argparse
import json
import logging
import shlex
import signal
import sys
import threading
import time
from pathlib import Path

from ..commands import both_forms, program_name
from ..config import ConfigError, load_config, override_arg, split_overrides
from ..connection import connection_file_path
from ..error import MiniparError
from ..logs import add_log_to_file_args, setup_logging
from ..profile import ProfileError, locate_profile_dir, minipar_dir
from .cluster import Cluster, ClusterError, state_file_path

PROG = program_name("cluster")
log = logging.getLogger("minipar.cluster")


def add_program_args(p, log_level=True):
    """Flags every subcommand that starts or stops processes takes."""
    if log_level:
        p.add_argument("--log-level", help="DEBUG, INFO, WARNING or ERROR")
    add_log_to_file_args(p, "cluster.log_to_file")


def add_engine_args(p):
    p.add_argument("--engine-args", default="", metavar="'ARGS'",
                   help="extra arguments for every engine, in one shell-quoted string, added to "
                        "[cluster] engine_args: --engine-args='--work-dir=/scratch --log-level=DEBUG'")


def add_profile_args(p, cluster_id=True):
    p.add_argument("--profile", help="profile name (default: 'default')")
    p.add_argument("--profile-dir", help="profile directory (overrides --profile)")
    if cluster_id:
        p.add_argument("--cluster-id", default="", help="which cluster of the profile (default: '')")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG, epilog=both_forms("cluster"),
        description="Start, stop, list and grow minipar clusters. start and engines take any setting of "
                    "minipar.toml as --SECTION.KEY=VALUE (--cluster.n=8, --launcher.slurm.queue=short, "
                    "--controller.heartbeat_period=2, --engine.startup_command='import numpy'); "
                    "controller, db and engine settings are passed on to those processes.")
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
    start.add_argument("--reuse", action="store_true", default=None,
                       help="the controller reuses the ports and key of the existing connection files "
                            "(and keeps them when it stops)")
    add_engine_args(start)
    start.add_argument("--daemonize", action="store_true", help="return once the cluster is up; "
                                                                 "stop it later with `stop`")
    add_program_args(start)

    stop = sub.add_parser("stop", help="stop a running cluster, or engines started by `engines`")
    add_profile_args(stop)
    stop.add_argument("--all", action="store_true", help="stop every cluster of the profile")
    add_program_args(stop, log_level=False)

    lst = sub.add_parser("list", help="list clusters (all profiles unless one is named)")
    add_profile_args(lst, cluster_id=False)

    eng = sub.add_parser("engines", help="add engines to a running cluster or controller",
                         description="Start N engines for the cluster of this profile and cluster id (found by "
                                     "its state file), or for a controller started by hand (found by its engine "
                                     "connection file), with the [cluster] engines launcher. They are recorded in "
                                     "the state file, so `stop` ends them. This command stays until SIGINT or "
                                     "SIGTERM and then stops its engines, or returns at once with --daemonize. "
                                     "With --foreground, it starts local engines from the engine connection file "
                                     "alone, records nothing and stays: what the sshproxy launcher runs on each "
                                     "host.")
    add_profile_args(eng)
    eng.add_argument("-n", "--n", type=int, default=1, help="how many engines to add (default 1)")
    eng.add_argument("--engines", help="engine launcher (default: [cluster] engines)")
    eng.add_argument("--daemonize", action="store_true",
                     help="return once the engines are started; stop them later with `stop`")
    eng.add_argument("--foreground", action="store_true",
                     help="start local engines here without a state file and stop them on SIGINT/SIGTERM; "
                          "needs only security/controller[-ID]-engine.json in the profile")
    add_engine_args(eng)
    eng.add_argument("--engine-arg", action="append", default=[], metavar="ARG",
                     help="an argument for each engine, repeatable; write it as --engine-arg=--startup-command=...")
    add_program_args(eng)
    return p


CHILD_SECTIONS = {"controller": ("controller", "db"), "engine": ("engine",)}
"""Override roots passed on to each child program (it reads the profile itself)."""


def split_by_owner(overrides: dict) -> tuple:
    """(the Cluster's own overrides, the controller's, the engines') from --SECTION.KEY=VALUE."""
    own, children = {}, {"controller": [], "engine": []}
    for key, value in overrides.items():
        root = key.split(".", 1)[0]
        for child, roots in CHILD_SECTIONS.items():
            if root in roots:
                children[child].append(override_arg(key, value))
                break
        else:
            own[key] = value
    return own, children["controller"], children["engine"]


def cluster_kwargs(args, overrides: dict, config) -> dict:
    """Keyword arguments for Cluster(): the overrides split by who reads them, --engine-args."""
    own, controller, engine = split_by_owner(overrides)
    try:
        extra = shlex.split(args.engine_args) + list(getattr(args, "engine_arg", []))
    except ValueError as e:
        raise ClusterError("--engine-args %r: %s (quote it as one shell word)" % (args.engine_args, e)) from None
    kwargs = {"config_overrides": own}
    if controller:
        kwargs["controller_args"] = list(config.cluster.controller_args) + controller
    if engine or extra:
        kwargs["engine_args"] = list(config.cluster.engine_args) + engine + extra
    return kwargs


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        rest, overrides = split_overrides(argv)
    except ConfigError as e:
        print("%s: error: %s" % (PROG, e), file=sys.stderr)
        return 2
    args = build_parser().parse_args(rest)
    if getattr(args, "reuse", None):
        overrides["controller.reuse"] = True
    setup_logging("Cluster", getattr(args, "log_level", None) or "INFO")
    try:
        if args.command != "list":
            start_logging(args, overrides)
        elif overrides:
            raise ConfigError("command line", next(iter(overrides)), "list takes no settings")
        return COMMANDS[args.command](args, overrides)
    except (ClusterError, ConfigError, ProfileError, MiniparError, ValueError) as e:
        print("%s %s: error: %s" % (PROG, args.command, e), file=sys.stderr)
        return 1


def program_config(args, overrides: dict, create: bool):
    """The profile dir and its settings with the command line's, checked before anything starts."""
    pdir = locate_profile_dir(args.profile, args.profile_dir, create=create)
    flags = {"cluster.log_level": getattr(args, "log_level", None), "cluster.log_to_file": args.log_to_file}
    return pdir, load_config(pdir, dict(overrides, **{k: v for k, v in flags.items() if v is not None}))


def start_logging(args, overrides: dict) -> None:
    """stderr, and log/cluster[-ID].log with --log-to-file (or [cluster] log_to_file)."""
    create = args.command == "start" or getattr(args, "foreground", False)
    pdir, config = program_config(args, overrides, create)
    cfg = config.cluster
    cluster_id = getattr(args, "cluster_id", "")
    logfile = pdir / "log" / ("cluster%s.log" % ("-" + cluster_id if cluster_id else "")) if cfg.log_to_file else None
    setup_logging("Cluster", cfg.log_level, logfile)
    if logfile is not None:
        log.info("%s %s: logging to %s", PROG, args.command, logfile)
    log.debug("settings from the command line: %s", overrides or "none")


def cmd_start(args, overrides) -> int:
    _, config = program_config(args, overrides, create=True)
    cluster = Cluster(profile=args.profile, profile_dir=args.profile_dir, cluster_id=args.cluster_id, n=args.n,
                      engines=args.engines, controller=args.controller, controller_ip=args.ip,
                      controller_location=args.location, log_level=args.log_level,
                      shutdown_atexit=not args.daemonize, **cluster_kwargs(args, overrides, config))
    if state_file_path(cluster.profile_dir, cluster.cluster_id).exists():
        running = Cluster.from_file(profile_dir=str(cluster.profile_dir), cluster_id=cluster.cluster_id)
        if running.controller_running:
            raise ClusterError("cluster %r of %s is already running; stop it first, or pick another --cluster-id"
                               % (cluster.cluster_id, cluster.profile_dir))
        if any(s.engines_running() for s in running.engine_sets.values()):
            raise ClusterError("engines started by `engines` run under cluster id %r of %s; stop them first "
                               "(`stop --cluster-id=%s`), or pick another --cluster-id"
                               % (cluster.cluster_id, cluster.profile_dir, cluster.cluster_id))
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    log.info("starting cluster %r in %s: %s controller, %d %s engine(s)", cluster.cluster_id, cluster.profile_dir,
             cluster.cfg.controller, cluster.n, cluster.cfg.engines)
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


def cmd_stop(args, overrides) -> int:
    pdir = locate_profile_dir(args.profile, args.profile_dir, create=False)
    ids = [s["cluster_id"] for s in read_states(pdir)] if args.all else [args.cluster_id]
    if not ids:
        print("no clusters running in %s" % pdir)
        return 0
    for cluster_id in ids:
        cluster = Cluster.from_file(profile_dir=str(pdir), cluster_id=cluster_id)
        cluster.stop_cluster_sync()
        log.info("stopped cluster %r of %s", cluster_id, pdir)
        print("stopped cluster %r of %s" % (cluster_id, pdir))
    return 0


def cmd_engines(args, overrides) -> int:
    if args.n < 1:
        raise ClusterError("engines needs -n >= 1, got %d" % args.n)
    if args.foreground:
        return run_engines_in_foreground(args, overrides)
    pdir, config = program_config(args, overrides, create=False)
    kwargs = cluster_kwargs(args, overrides, config)
    if args.engines:
        kwargs["engines"] = args.engines
    if args.log_level:
        kwargs["log_level"] = args.log_level
    if state_file_path(pdir, args.cluster_id).exists():
        cluster = Cluster.from_file(profile_dir=str(pdir), cluster_id=args.cluster_id, **kwargs)
        if cluster.controller is not None and not cluster.controller_running:
            raise ClusterError("cluster %r has no running controller" % args.cluster_id)
        where = "cluster %r" % args.cluster_id
    else:
        engine_file = connection_file_path(pdir, "engine", args.cluster_id)
        if not engine_file.exists():
            raise ClusterError("no cluster with id %r in %s and no engine connection file %s: start a controller "
                               "(or a cluster) first, or copy its engine connection file there (or use --foreground to start "
                               "engines without a state file)"
                               % (args.cluster_id, pdir, engine_file))
        cluster = Cluster(profile_dir=str(pdir), cluster_id=args.cluster_id, n=args.n, shutdown_atexit=False,
                          **kwargs)
        where = "the controller of %s" % engine_file
    log.info("starting %d %s engine(s) for %s", args.n, cluster.cfg.engines, where)
    set_id = cluster.start_engines_sync(args.n)
    cluster._watch_stop.set()  # this process watches its own engines below; the state file is shared
    launcher = cluster.engine_sets[set_id]
    say("started %d engine(s) for %s; `%s stop%s` ends them" % (
        launcher.n, where, PROG, " --cluster-id=%s" % args.cluster_id if args.cluster_id else ""))
    if args.daemonize:
        return 0
    return watch_engine_set(cluster, set_id)


def watch_engine_set(cluster, set_id: str) -> int:
    """Stay until SIGINT/SIGTERM, `stop` from elsewhere or the engines' end; then stop them.

    0 when stopped, 1 when every engine ended on its own."""
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda *_: stop.set())
    launcher = cluster.engine_sets[set_id]
    say("Ctrl-C to stop them")
    code = 0
    while not stop.wait(0.5):
        current = recorded_cluster(cluster)
        if current is None or set_id not in current.engine_sets:
            say("the engines were stopped from elsewhere")
            return 0
        if not launcher.running:
            if stopped_elsewhere(cluster, set_id):
                say("the engines were stopped from elsewhere")
                return 0
            say("every engine exited")
            code = 1
            break
    current = recorded_cluster(cluster)
    if current is not None and set_id in current.engine_sets:
        current.stop_engines_sync(set_id)  # from the file as it is now, so others' changes stay
        if current.controller is None and not current.engine_sets:
            current.remove_state()
    else:
        launcher.stop(cluster.cfg.stop_timeout)
    if code == 0:
        say("stopped %d engine(s)" % launcher.n)
    return code


def stopped_elsewhere(cluster, set_id: str) -> bool:
    """Whether `stop` in another process ended the engines: it drops them from the state
    file only once it has stopped the rest too (the controller), so give it that long."""
    deadline = time.monotonic() + 2 * cluster.cfg.stop_timeout + 2
    while time.monotonic() < deadline:
        current = recorded_cluster(cluster)
        if current is None or set_id not in current.engine_sets:
            return True
        time.sleep(0.1)
    return False


def recorded_cluster(cluster):
    """The cluster as its state file says now, or None once `stop` removed it."""
    try:
        return Cluster.from_file(profile_dir=str(cluster.profile_dir), cluster_id=cluster.cluster_id)
    except ClusterError:
        return None


FOREGROUND_STOP_TIMEOUT = 5.0
"""Seconds the engines of ``engines --foreground`` get after SIGTERM before SIGKILL."""


def run_engines_in_foreground(args, overrides) -> int:
    """Start n engines here, report the ones that end, stop them all on SIGINT/SIGTERM/SIGHUP.

    Returns 0 once stopped, 1 if every engine ended on its own. Output goes to stdout, which
    for sshproxy is the ssh channel into the launching host's log."""
    from .launchers.base import tail
    from .launchers.local import LocalEngineSetLauncher

    pdir, config = program_config(args, overrides, create=True)
    engine_args = cluster_kwargs(args, overrides, config).get("engine_args", list(config.cluster.engine_args))
    engine_file = connection_file_path(pdir, "engine", args.cluster_id)
    if not engine_file.exists():
        raise ClusterError("no engine connection file %s; copy the controller's there first" % engine_file)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda *_: stop.set())
    launcher = LocalEngineSetLauncher(pdir, args.cluster_id, args.log_level or "INFO", engine_args, n=args.n)
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


def cmd_list(args, overrides) -> int:
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
            state_word = "running" if controller else "elsewhere" if cluster.controller is None else "stopped"
            rows.append((name, cluster.cluster_id or "''", state_word,
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
