"""``python -m minipar.controller``: start a controller in the foreground."""
from __future__ import annotations

import argparse
import logging
import os
import signal
import sys

from ..commands import both_forms, program_name
from ..config import ConfigError, add_flags, flag_keys, flag_overrides, load_config, split_overrides
from .. import curve
from ..connection import remove_connection_files
from ..logs import setup_logging
from ..pidfile import pid_alive, read_pid, remove_pid, write_pid
from ..profile import locate_profile_dir
from .db import db_class, open_db
from ..error import ControllerStartError, ProfileError
from .hub import Hub

PROG = program_name("controller")

SWITCH_INTERVAL = 0.0005
"""Seconds a background thread (the SQLite writer) may hold the GIL before the hub's loop
gets it back; Python's default of 5 ms would stall every message behind a batch write."""


def raise_open_file_limit(log) -> None:
    """Every engine holds five TCP connections to the controller, each a descriptor here: the
    usual soft limit of 1,024 would stop registrations at about 200 engines, while the hard
    limit (which only root may raise) usually allows thousands. Raise the soft one to it."""
    try:
        import resource
    except ImportError:  # Windows: no such limit
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if hard != resource.RLIM_INFINITY else 1 << 20
    if soft != resource.RLIM_INFINITY and soft < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
        except (ValueError, OSError) as e:
            log.warning("could not raise the open file limit from %d to %d: %s", soft, wanted, e)
            return
        log.debug("raised the open file limit from %d to %d", soft, wanted)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG, epilog=both_forms("controller"),
        description="Start a minipar controller: the hub that engines register with and clients "
                    "submit work to. Settings come from [controller] in the profile's minipar.toml; "
                    "any of them can be given as --controller.KEY=VALUE.",
    )
    p.add_argument("--profile", help="profile name (default: 'default')")
    p.add_argument("--profile-dir", help="profile directory (overrides --profile)")
    add_flags(p, FLAGS)
    return p


FLAGS = flag_keys("controller")
"""The settings with a short flag (--ip, --reuse, --nodb...), as [controller] declares them."""


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    rest, overrides = split_overrides(argv)
    args = build_parser().parse_args(rest)
    overrides.update(flag_overrides(args, FLAGS))
    try:
        profile_dir = locate_profile_dir(args.profile, args.profile_dir, create=True)
        config = load_config(profile_dir, overrides)
        cfg = config.controller
        setup_logging("Controller", cfg.log_level,
                      profile_dir / "log" / log_name(cfg.cluster_id) if cfg.log_to_file else None)
    except (ConfigError, ProfileError, ValueError) as e:
        print("%s: error: %s" % (PROG, e), file=sys.stderr)
        return 2
    log = logging.getLogger("minipar.controller")
    log.info("Using profile dir: %s", profile_dir)
    raise_open_file_limit(log)
    pid_path = profile_dir / "pid" / ("controller%s.pid" % ("-" + cfg.cluster_id if cfg.cluster_id else ""))
    other = read_pid(pid_path)
    if other is not None and pid_alive(other):
        log.error("a controller for this profile%s is already running (pid %d, pid file %s); stop it or "
                  "pick another --cluster-id", " and cluster id" if cfg.cluster_id else "", other, pid_path)
        return 1
    try:
        db_class(cfg.db, config.source_of("controller.db"))
        hub = Hub(cfg, profile_dir, lambda session: open_db(config, session=session, profile_dir=profile_dir))
        hub.bind()
    except (ConfigError, ControllerStartError, OSError) as e:
        log.error("%s", e)
        return 1

    def stop(signum, frame):
        log.info("received %s", signal.Signals(signum).name)
        hub.stopping = True

    sys.setswitchinterval(SWITCH_INTERVAL)
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    log.info("Creating pid file: %s", pid_path)
    write_pid(pid_path)
    try:
        log.info("Controller ready")
        hub.serve_forever()
    finally:
        remove_pid(pid_path)
        if cfg.reuse:
            log.info("leaving the connection files for --reuse")
        else:
            for path in remove_connection_files(profile_dir, cfg.cluster_id, hub.info.get("key")):
                log.info("removed %s", path)
            if curve.SERVER_KEY_FIELD in hub.info:
                curve.key_file(profile_dir, cfg.cluster_id).unlink(missing_ok=True)
            from ..cluster.cluster import forget_when_done
            if forget_when_done(profile_dir, cfg.cluster_id, os.getpid()):
                log.info("removed the cluster's state file: its engines have stopped")
    log.info("controller stopped")
    return 0


def log_name(cluster_id: str) -> str:
    return "controller%s.log" % ("-" + cluster_id if cluster_id else "")


if __name__ == "__main__":
    sys.exit(main())
