"""``python -m minipar.engine``: register an engine with a controller and serve it."""
from __future__ import annotations

import argparse
import logging
import os
import re
import signal
import sys
import time
from pathlib import Path

from ..commands import both_forms, program_name
from ..config import ConfigError, add_flags, flag_keys, flag_overrides, load_config, split_overrides
from ..connection import engine_file_path, read_connection_file, wait_for_connection_file
from ..error import ConnectionFileError
from ..logs import setup_logging
from ..error import EngineStartError, InitScriptFailed, MPIStartError, ProfileError, TunnelError
from ..profile import locate_profile_dir
from .engine import Engine, exit_engine, run_startup
from .execute import new_namespace
from .mpi import init_mpi
from .nanny import fork_engine
from .walltime import plan_walltime

PROG = program_name("engine")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG, epilog=both_forms("engine"),
        description="Start a minipar engine. It reads the controller's engine connection file "
                    "(--file, or security/controller[-ID]-engine.json in the profile), registers and "
                    "runs what clients send. Settings come from [engine] in minipar.toml; any of them "
                    "can be given as --engine.KEY=VALUE.",
    )
    p.add_argument("--profile", help="profile name (default: 'default')")
    p.add_argument("--profile-dir", help="profile directory (overrides --profile)")
    add_flags(p, FLAGS)
    return p


FLAGS = flag_keys("engine")
"""The settings with a short flag (--file, --ssh, --work-dir, --id, --tags...), as [engine] declares them."""


def fail(message: str, code: int = 1) -> int:
    print("%s: error: %s" % (PROG, message), file=sys.stderr)
    return code


def check_settings(cfg) -> None:
    """Settings the schema cannot check alone; a ValueError names the key."""
    if cfg.id < -1:
        raise ValueError("engine.id: %d is not an engine id; give 0 or more, or -1 to let the controller "
                         "choose" % cfg.id)
    if cfg.mpi_registration_delay < 0:
        raise ValueError("engine.mpi_registration_delay: %g is negative; give seconds per rank, or 0"
                         % cfg.mpi_registration_delay)
    if cfg.drain_before < 0:
        raise ValueError("engine.drain_before: %g is negative; give seconds, or 0 never to drain" % cfg.drain_before)
    bad = [t for t in cfg.tags if not re.fullmatch(r"[^\s,]+", t)]
    if bad:
        raise ValueError("engine.tags: %r is not a tag; a tag is a word, without spaces or commas" % bad[0])
    if cfg.mpi_init_script and cfg.mpi != "init_script":
        raise ValueError("engine.mpi_init_script is set but engine.mpi is %r, so it would not run; set "
                         "engine.mpi = 'init_script' to run it" % cfg.mpi)


def check_granted_id(engine, log) -> None:
    """A controller that ignores the request (an older minipar) must not leave engine.id unmet."""
    wanted = engine.requested_id
    if wanted is None or engine.id == wanted:
        return
    if engine.id_required:
        raise EngineStartError("the controller at %s gave this engine id %d, not the engine.id = %d it asked "
                               "for" % (engine.url, engine.id, wanted))
    log.warning("asked for engine id %d (the MPI rank) but another engine holds it; registered as engine %d",
                wanted, engine.id)


def main(argv=None) -> int:
    started_at = time.time()  # where engine.end_time = "+DURATION" counts from
    argv = sys.argv[1:] if argv is None else list(argv)
    rest, overrides = split_overrides(argv)
    args = build_parser().parse_args(rest)
    overrides.update(flag_overrides(args, FLAGS))
    try:
        if args.file and not (args.profile or args.profile_dir):
            profile_dir = None
        else:
            profile_dir = locate_profile_dir(args.profile, args.profile_dir, create=False)
        cfg = load_config(profile_dir, overrides).engine
        check_settings(cfg)
        logfile = log_file(profile_dir, cfg) if cfg.log_to_file else None
        setup_logging("Engine", cfg.log_level, logfile)
    except (ConfigError, ProfileError, ValueError) as e:
        return fail(str(e), 2)
    except OSError as e:
        return fail("engine.log_to_file: cannot open a log file: %s" % e)
    log = logging.getLogger("minipar.engine")
    if logfile is not None:
        log.debug("logging to %s as well", logfile)
    nanny = fork_engine() if cfg.nanny else None
    namespace = new_namespace()
    mpi = None
    if cfg.mpi:
        try:
            mpi = init_mpi(cfg, namespace)
        except InitScriptFailed as e:
            cause = e.__cause__
            log.error("engine.mpi_init_script failed", exc_info=(type(cause), cause, cause.__traceback__))
            return fail(str(e))
        except MPIStartError as e:
            return fail(str(e))
        if mpi.rank is None:
            log.info("MPI initialised (%s): rank unknown (the script set no mpi_rank and mpi_size, and "
                     "mpiexec's environment has none)", mpi.how)
        else:
            setup_logging("Engine rank %d" % mpi.rank, cfg.log_level, logfile)
            log.info("MPI initialised (%s): rank %d of %d", mpi.how, mpi.rank, mpi.size)

    path = engine_file_path(cfg.file, profile_dir, cfg.cluster_id)
    if cfg.work_dir:
        try:
            os.chdir(os.path.expanduser(cfg.work_dir))
        except OSError as e:
            return fail("engine.work_dir: cannot chdir to %s: %s" % (cfg.work_dir, e))
    started = time.monotonic()
    if not os.path.exists(path):
        code = wait_for_file(path, cfg.registration_timeout, log)
        if code is not None:
            return code
    waited = time.monotonic() - started
    try:
        info = read_connection_file(path, hint="Start the controller first, or copy its engine connection "
                                               "file here and pass --file.")
    except ConnectionFileError as e:
        return fail(str(e))

    engine = Engine(cfg, info, path)
    engine.walltime = plan_walltime(cfg, started_at)
    engine.nanny = nanny
    engine.namespace = namespace  # where engine.mpi's names are (and an init script's functions look)
    if mpi is not None:
        engine.preset.update(mpi.names)
    if cfg.id >= 0:
        engine.requested_id, engine.id_required = cfg.id, True
    elif mpi is not None and mpi.in_a_job:
        engine.requested_id = mpi.rank
    try:
        run_startup(cfg, engine.namespace)
    except BaseException as e:  # noqa: B902 - any failure of user start-up code ends the engine
        log.exception("engine start-up code failed")
        return fail("start-up code failed: %s: %s" % (type(e).__name__, e))
    try:
        delay = mpi.registration_delay(cfg.mpi_registration_delay) if mpi is not None else 0.0
        if delay:
            log.info("waiting %.3fs before registering: rank %d x engine.mpi_registration_delay (%gs)",
                     delay, mpi.rank, cfg.mpi_registration_delay)
            time.sleep(delay)
        engine.connect()
        engine.install_signal_handlers()
        engine.register(cfg.registration_timeout, waited)
        check_granted_id(engine, log)
    except (EngineStartError, TunnelError) as e:
        code = getattr(e, "exit_code", 1)
        log.log(logging.ERROR if code else logging.INFO, "%s", e)
        engine.close()
        return code
    except KeyboardInterrupt:
        engine.close()
        return 130
    log.info("registered as engine %d with the controller at %s", engine.id, engine.url)
    code = 1
    try:
        code = engine.serve()
    finally:
        engine.close()
    return code


def log_file(profile_dir, cfg):
    """log/engine[-ID]-<pid>.log in the profile; with only --file, the default profile's,
    when it exists (an engine given just a copied file may run where no profile is)."""
    if profile_dir is None:
        try:
            profile_dir = locate_profile_dir(None, None, create=False)
        except ProfileError:
            return None
    return Path(profile_dir) / "log" / ("engine%s-%d.log" % ("-" + cfg.cluster_id if cfg.cluster_id else "",
                                                             os.getpid()))


class _Stopped(Exception):
    pass


def wait_for_file(path: str, timeout: float, log) -> int | None:
    """Wait for the connection file as ipyparallel's wait_for_url_file does, but for the
    whole registration budget: None once it is there, else the exit code."""
    log.warning("connection file %s not found; waiting %s for it (engine.registration_timeout)",
                path, "with no limit" if timeout <= 0 else "up to %gs" % timeout)

    def on_sigterm(signum, frame):
        raise _Stopped

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        if wait_for_connection_file(path, timeout):
            return None
    except _Stopped:
        log.info("stopped while waiting for %s", path)
        return 0
    except KeyboardInterrupt:
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
    return fail("connection file %s did not appear within %gs (engine.registration_timeout). Start the "
                "controller, or copy its engine connection file here and pass --file; 0 waits with no limit."
                % (path, timeout))


if __name__ == "__main__":
    exit_engine(main())
