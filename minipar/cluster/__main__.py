"""``python -m minipar.cluster start|stop|list|engines|render``: manage clusters from a shell."""
from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from ..commands import both_forms, program_name
from ..config import ConfigError, add_flags, flag_overrides, load_config, split_overrides
from ..connection import connection_file_path
from ..error import MiniparError, ProfileError
from ..logs import setup_logging
from ..pidfile import same_process, start_time
from ..profile import locate_profile_dir, minipar_dir
from .cluster import SUBMISSION_WAIT, Cluster, ClusterError, split_by_owner, state_file_path
from .statelock import state_file_lock
from .launchers.base import child_env, tail

PROG = program_name("cluster")
log = logging.getLogger("minipar.cluster")


PROGRAM_FLAGS = ("cluster.log_level", "cluster.log_to_file")
"""How this command itself logs (--log-level, --log-to-file): start and engines take both, stop
--log-to-file only, render --log-level only (for the programs in its scripts)."""

START_FLAGS = ("cluster.n", "cluster.engines", "cluster.controller", "cluster.controller_ip",
               "cluster.controller_location", "controller.reuse")
"""What start and render take: the flags of these settings, read as Cluster() arguments."""

POOL_FLAGS = ("cluster.jobs", "cluster.keep_engines")

REUSE_HELP = ("the controller reuses the ports and key of the existing connection files (and keeps them when it "
              "stops)")


def add_program_args(p, log_level=True):
    """Flags every subcommand that starts or stops processes takes."""
    add_flags(p, PROGRAM_FLAGS if log_level else ["cluster.log_to_file"])


def add_engine_args(p):
    p.add_argument("--engine-args", default="", metavar="'ARGS'",
                   help="extra arguments for every engine, in one shell-quoted string, added to "
                        "[cluster] engine_args: --engine-args='--work-dir=/scratch --log-level=DEBUG'")


def add_pool_args(p):
    add_flags(p, POOL_FLAGS)


def add_start_args(p):
    """What start and render take: render prints the scripts start would submit."""
    add_flags(p, START_FLAGS, help={"--reuse": REUSE_HELP})
    add_pool_args(p)
    add_engine_args(p)


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
    sub = p.add_subparsers(dest="command", metavar="{start,stop,list,engines,render}")
    sub.required = True

    start = sub.add_parser("start", help="start a controller and engines",
                           description="Start a controller and N engines. Runs until Ctrl-C (then stops "
                                       "everything), or returns once they are up with --daemonize.")
    add_profile_args(start)
    add_start_args(start)
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
    add_flags(eng, ["cluster.engines"], help={"--engines": "engine launcher (default: [cluster] engines)"})
    eng.add_argument("--tags", default="", metavar="TAG[,TAG...]",
                     help="labels the engines register with: rc.load_balanced_view(tags=[...]) picks them")
    add_pool_args(eng)
    eng.add_argument("--daemonize", action="store_true",
                     help="return once the engines are started; stop them later with `stop`")
    eng.add_argument("--foreground", action="store_true",
                     help="start local engines here without a state file and stop them on SIGINT/SIGTERM; "
                          "needs only security/controller[-ID]-engine.json in the profile")
    add_engine_args(eng)
    eng.add_argument("--engine-arg", action="append", default=[], metavar="ARG",
                     help="an argument for each engine, repeatable; write it as --engine-arg=--startup-command=...")
    add_program_args(eng)

    render = sub.add_parser("render", help="print the job scripts `start` would submit, and submit nothing",
                            description="Print each job script `start` with the same arguments would write and "
                                        "submit (the controller's, if it is a batch job, then each engine job's), "
                                        "under a line naming the job and its number of engines. Nothing is "
                                        "submitted, started or written; only the random tag in each job's name "
                                        "differs from the one start draws.")
    add_profile_args(render)
    add_start_args(render)
    add_flags(render, ["cluster.log_level"],
              help={"--log-level": "DEBUG, INFO, WARNING or ERROR (the programs' --log-level in the scripts)"})
    return p


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
    overrides.update(flag_overrides(args, ["controller.reuse"]))
    args.argv = argv
    setup_logging("Cluster", getattr(args, "log_level", None) or "INFO")
    try:
        if args.command not in ("list", "render"):
            start_logging(args, overrides)
        elif args.command == "list" and overrides:
            raise ConfigError("command line", next(iter(overrides)), "list takes no settings")
        return COMMANDS[args.command](args, overrides)
    except (ClusterError, ConfigError, ProfileError, MiniparError, ValueError) as e:
        print("%s %s: error: %s" % (PROG, args.command, e), file=sys.stderr)
        return 1


def program_config(args, overrides: dict, create: bool):
    """The profile dir and its settings with the command line's, checked before anything starts."""
    pdir = locate_profile_dir(args.profile, args.profile_dir, create=create)
    return pdir, load_config(pdir, dict(overrides, **flag_overrides(args, PROGRAM_FLAGS)))


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


class PlannedCluster(Cluster):
    """A Cluster that only plans (render): it makes no profile dir."""

    creates_profile = False


def make_cluster(args, overrides, config, cls=Cluster, **kwargs):
    """The Cluster start (or render) makes from its arguments."""
    return cls(profile=args.profile, profile_dir=args.profile_dir, cluster_id=args.cluster_id, n=args.n,
               engines=args.engines, controller=args.controller, controller_ip=args.ip,
               controller_location=args.location, log_level=args.log_level, jobs=args.jobs,
               keep_engines=args.keep_engines, **cluster_kwargs(args, overrides, config), **kwargs)


def cmd_start(args, overrides) -> int:
    _, config = program_config(args, overrides, create=True)
    cluster = make_cluster(args, overrides, config, shutdown_atexit=not args.daemonize)
    refuse_if_running(cluster)
    if args.daemonize and cluster.cfg.keep_engines:
        return run_in_background(args, cluster, "cluster %r running" % cluster.cluster_id)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    if cluster.cfg.keep_engines:
        cluster.keepers.append(this_keeper())
    log.info("starting cluster %r in %s: %s controller, %d %s engine(s)%s", cluster.cluster_id, cluster.profile_dir,
             cluster.cfg.controller, cluster.n, cluster.cfg.engines,
             " in %d jobs" % cluster.cfg.jobs if cluster.cfg.jobs > 1 else "")
    rc = cluster.start_and_connect_sync()
    say("cluster %r running: %d engines, profile %s" % (cluster.cluster_id, len(rc.ids), cluster.profile_dir))
    say("connect with: minipar.Client(url_file=%r)" % str(cluster.client_file))
    if cluster.cfg.keep_engines:
        say("process %d keeps its %d engine sets (jobs) running until `stop`" % (os.getpid(), len(cluster.engine_sets)))
    rc.close()
    cluster._client = None
    if args.daemonize:
        cluster._watch_stop.set()
        return 0
    say("Ctrl-C to stop")
    while not stop.wait(0.5):
        if cluster.controller_ended:
            print("the controller exited; stopping the engines", file=sys.stderr)
            cluster.stop_cluster_sync()
            return 1
    cluster.stop_cluster_sync()
    say("cluster %r stopped" % cluster.cluster_id)
    return 0


def refuse_if_running(cluster) -> None:
    if state_file_path(cluster.profile_dir, cluster.cluster_id).exists():
        running = Cluster.from_file(profile_dir=str(cluster.profile_dir), cluster_id=cluster.cluster_id)
        if running.controller_running:
            raise ClusterError("cluster %r of %s is already running; stop it first, or pick another --cluster-id"
                               % (cluster.cluster_id, cluster.profile_dir))
        if any(s.engines_running() for s in running.engine_sets.values()):
            raise ClusterError("engines started by `engines` run under cluster id %r of %s; stop them first "
                               "(`stop --cluster-id=%s`), or pick another --cluster-id"
                               % (cluster.cluster_id, cluster.profile_dir, cluster.cluster_id))


KEEPER_READY_MARGIN = 60.0
"""Seconds a background keeper gets, beyond its own controller and engine timeouts, to say it is up."""

KEEPER_STOP_WAIT = SUBMISSION_WAIT + 60.0
"""Seconds `stop` waits for a process keeping engine sets to stop them itself: it may be
submitting a job (SUBMISSION_WAIT), then deletes each job and waits until it is gone."""


def this_keeper() -> dict:
    """This process, as the state file's ``keepers`` name it (the start time tells it from a
    later process given the same pid)."""
    return {"pid": os.getpid(), "start": start_time(os.getpid())}


def run_in_background(args, cluster, ready: str) -> int:
    """--daemonize with --keep-engines: something must stay to replace jobs, so the same command
    runs without --daemonize, detached, with its output in log/; returns once it says ``ready``
    (0), or has failed (1, with its last lines)."""
    suffix = "-" + cluster.cluster_id if cluster.cluster_id else ""
    log_file = cluster.profile_dir / "log" / ("cluster%s-keeper.out" % suffix)
    log_file.parent.mkdir(parents=True, exist_ok=True)
    offset = log_file.stat().st_size if log_file.exists() else 0
    cmd = [sys.executable, "-m", __package__] + [a for a in args.argv if a != "--daemonize"]
    with open(str(log_file), "ab") as out:
        child = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                 start_new_session=True, env=child_env({"PYTHONUNBUFFERED": "1"}))
    deadline = time.monotonic() + cluster.cfg.controller_timeout + cluster.cfg.engine_timeout + KEEPER_READY_MARGIN
    try:
        while True:
            said = read_from(log_file, offset)
            if ready in said:
                say(said.rstrip())
                say("process %d keeps the engines in the background; its output is in %s" % (child.pid, log_file))
                return 0
            if child.poll() is not None or time.monotonic() > deadline:
                break
            time.sleep(0.1)
    except KeyboardInterrupt:
        child.terminate()
        raise
    if child.poll() is None:
        child.terminate()
    print("%s did not come up (%s); last lines of %s:\n%s" % (
        " ".join(cmd), "exit %s" % child.poll() if child.poll() is not None else "timed out", log_file,
        tail(log_file, 25)), file=sys.stderr)
    return 1


def read_from(path: Path, offset: int) -> str:
    try:
        with open(str(path), "rb") as f:
            f.seek(offset)
            return f.read().decode(errors="replace")
    except OSError:
        return ""


def cmd_stop(args, overrides) -> int:
    pdir = locate_profile_dir(args.profile, args.profile_dir, create=False)
    ids = [s["cluster_id"] for s in read_states(pdir)] if args.all else [args.cluster_id]
    if not ids:
        print("no clusters running in %s" % pdir)
        return 0
    for cluster_id in ids:
        cluster = Cluster.from_file(profile_dir=str(pdir), cluster_id=cluster_id)
        stop_keepers(cluster)
        with state_file_lock(cluster.state_file, SUBMISSION_WAIT):
            cluster = recorded_cluster(cluster)  # as it is now, with what a pool recorded last
            if cluster is not None:
                cluster.stop_cluster_sync()
        log.info("stopped cluster %r of %s", cluster_id, pdir)
        print("stopped cluster %r of %s" % (cluster_id, pdir))
    return 0


def stop_keepers(cluster) -> None:
    """Ask the processes that keep the cluster's engine sets at their number (SIGTERM) to stop
    them, so none submits a replacement while they are stopped. One that is still there after
    KEEPER_STOP_WAIT is left, and the state file stops the rest."""
    keepers = [k for k in cluster.keepers if k["pid"] != os.getpid() and same_process(k["pid"], k.get("start"))]
    for k in keepers:
        log.info("asking process %d, which keeps engines of cluster %r, to stop them", k["pid"], cluster.cluster_id)
        try:
            os.kill(k["pid"], signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + KEEPER_STOP_WAIT
    while any(same_process(k["pid"], k.get("start")) for k in keepers):
        if time.monotonic() > deadline:
            log.warning("process(es) %s did not stop within %gs; stopping the cluster from its state file",
                        ", ".join(str(k["pid"]) for k in keepers), KEEPER_STOP_WAIT)
            break
        time.sleep(0.1)


def cmd_engines(args, overrides) -> int:
    if args.n < 1:
        raise ClusterError("engines needs -n >= 1, got %d" % args.n)
    if args.foreground:
        if args.jobs or args.keep_engines or args.tags:
            raise ClusterError("--foreground starts local engines here, without jobs: it takes neither --jobs, "
                               "--keep-engines nor --tags")
        return run_engines_in_foreground(args, overrides)
    pdir, config = program_config(args, overrides, create=False)
    kwargs = cluster_kwargs(args, overrides, config)
    for key, value in (("engines", args.engines), ("log_level", args.log_level), ("jobs", args.jobs),
                       ("keep_engines", args.keep_engines)):
        if value is not None:
            kwargs[key] = value
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
    keep = cluster.cfg.keep_engines
    if args.daemonize and keep:
        return run_in_background(args, cluster, "started %d engine(s)" % args.n)
    if keep:
        cluster.keepers.append(this_keeper())
    log.info("starting %d %s engine(s) for %s", args.n, cluster.cfg.engines, where)
    tags = [t.strip() for t in args.tags.split(",") if t.strip()]
    started = cluster.start_engines_sync(args.n, tags=tags)
    set_ids = [started] if isinstance(started, str) else started
    if not keep:
        cluster._watch_stop.set()  # this process watches its own engines below
    say("started %d engine(s) for %s%s; `%s stop%s` ends them" % (
        args.n, where, " in %d jobs" % len(set_ids) if len(set_ids) > 1 else "", PROG,
        " --cluster-id=%s" % args.cluster_id if args.cluster_id else ""))
    if args.daemonize:
        return 0
    return watch_engine_sets(cluster, set_ids)


def watch_engine_sets(cluster, set_ids: list) -> int:
    """Stay until SIGINT/SIGTERM, `stop` from elsewhere or the engines' end; then stop them.
    With keep_engines the Cluster's watcher replaces ended sets meanwhile, so the sets watched
    are those this process started and has not dropped.

    0 when stopped, 1 when every engine ended on its own (and none will be replaced)."""
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda *_: stop.set())
    keep = cluster.cfg.keep_engines
    say("Ctrl-C to stop them")
    code = 0
    while not stop.wait(0.5):
        mine = cluster.own_engine_set_ids() if keep else set_ids
        current = recorded_cluster(cluster)
        if current is None or not any(i in current.engine_sets for i in mine):
            say("the engines were stopped from elsewhere")
            return 0
        if not engines_left(cluster, mine, keep):
            if stopped_elsewhere(cluster, mine):
                say("the engines were stopped from elsewhere")
                return 0
            say("every engine exited")
            code = 1
            break
    mine = [i for i in (cluster.own_engine_set_ids() if keep else set_ids) if i in cluster.engine_sets]
    engines = sum(cluster.engine_sets[i].n for i in mine)
    cluster.keepers = [k for k in cluster.keepers if k["pid"] != os.getpid()]
    cluster.stop_engines_sync(mine)
    if code == 0:
        say("stopped %d engine(s)" % engines)
    return code


def engines_left(cluster, set_ids, keep: bool) -> bool:
    """Whether any of the engine sets runs, or will be replaced (keep: the watcher says)."""
    if keep:
        return not cluster.engine_sets_over(set_ids)
    return any(cluster.engine_sets[i].running for i in set_ids if i in cluster.engine_sets)


def stopped_elsewhere(cluster, set_ids) -> bool:
    """Whether `stop` in another process ended the engines: it drops them from the state
    file only once it has stopped the rest too (the controller), so give it that long."""
    deadline = time.monotonic() + 2 * cluster.cfg.stop_timeout + 2
    while time.monotonic() < deadline:
        current = recorded_cluster(cluster)
        if current is None or not any(i in current.engine_sets for i in set_ids):
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
    rows, sets, stale = [], [], []
    for pdir in dirs:
        for state in read_states(pdir):
            cluster = Cluster.from_dict(state)
            states = cluster.engine_set_states()
            controller = cluster.controller_running
            if not controller and all(s == "ended" for s in states.values()):
                stale.append(cluster.state_file)
                cluster.remove_state()
                continue
            running = sum(engines_up(cluster.engine_sets[i], states[i]) for i in states)
            launchers = "%s/%s" % (launcher_name(cluster.controller), ",".join(
                sorted({launcher_name(s) for s in cluster.engine_sets.values()})) or "-")
            age = time.time() - (state.get("start_time") or time.time())
            name = pdir.name[len("profile_"):] if pdir.name.startswith("profile_") else str(pdir)
            state_word = "running" if controller else "elsewhere" if cluster.controller is None else "stopped"
            rows.append((name, cluster.cluster_id or "''", state_word, "%d/%d" % (running, cluster.target_engines),
                         launchers, format_age(age)))
            sets.append(engine_set_rows(cluster, states))
    header = ("PROFILE", "CLUSTER ID", "CONTROLLER", "ENGINES", "LAUNCHERS", "AGE")
    lines = table([header] + rows)
    print(lines[0])
    for line, set_rows in zip(lines[1:], sets):
        print(line)
        for set_line in table(set_rows):
            print("  " + set_line)
    for path in stale:
        print("removed stale state file %s (none of its processes run)" % path)
    return 0


SET_HEADER = ("ENGINE SET", "LAUNCHER", "JOB", "STATE", "ENGINES", "TAGS")


def engine_set_rows(cluster, states: dict) -> list:
    """A row per engine set: its launcher, job id, state (pending, running, draining, ended),
    number of engines, tags; and the set it replaces."""
    rows = [SET_HEADER]
    for set_id, launcher in cluster.engine_sets.items():
        record = cluster.record(set_id)
        rows.append((set_id, launcher_name(launcher), getattr(launcher, "job_id", "") or "-", states[set_id],
                     str(launcher.n), ",".join(record.tags) or "-")
                    + (("replaces %s" % record.replaces,) if record.replaces else ()))
    return rows if len(rows) > 1 else []


def engines_up(launcher, state: str) -> int:
    """Engines of a set that run: counted for processes, all n for a job that runs."""
    if hasattr(launcher, "processes"):
        return launcher.engines_running()
    return launcher.n if state in ("running", "draining") else 0


def table(rows) -> list:
    """Rows as lines of left-aligned columns two spaces apart."""
    if not rows:
        return []
    widths = [max(len(str(r[i])) for r in rows if i < len(r)) for i in range(max(len(r) for r in rows))]
    return ["  ".join(str(v).ljust(w) for v, w in zip(row, widths)).rstrip() for row in rows]


def cmd_render(args, overrides) -> int:
    _, config = program_config(args, overrides, create=False)
    cluster = make_cluster(args, overrides, config, cls=PlannedCluster, shutdown_atexit=False)
    for i, (title, path, text) in enumerate(cluster.job_scripts()):
        print("%s==> %s: %s <==" % ("\n" if i else "", title, path))
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
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


COMMANDS = {"start": cmd_start, "stop": cmd_stop, "list": cmd_list, "engines": cmd_engines, "render": cmd_render}

if __name__ == "__main__":
    logging.captureWarnings(True)
    sys.exit(main())
