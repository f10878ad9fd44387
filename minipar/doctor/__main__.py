"""``python -m minipar.doctor``: can engines on this node register with the controller, and if
not, what to change. See the package docstring for the checks."""
from __future__ import annotations

import argparse
import sys

from ..commands import both_forms, program_name
from ..config import ConfigError, add_flags, flag_overrides, load_config, split_overrides
from ..connection import engine_file_path
from ..error import MiniparError
from ..error import ProfileError
from ..profile import locate_profile_dir
from .checks import Doctor
from .report import exit_code
from .submit import SUBMIT_SYSTEMS

PROG = program_name("doctor")

DEFAULT_TIMEOUT = 3.0
"""Seconds per check: a controller on a cluster network answers in milliseconds, so a few
seconds tell "dropped by a firewall" from "slow" without making the doctor slow."""

DEFAULT_SUBMIT_TIMEOUT = 300.0
"""Seconds a submitted doctor job may wait in the queue before it is cancelled."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG, epilog=both_forms("doctor"),
        description="Check, from where engines run, every step an engine takes to register with the "
                    "controller: the engine connection file, the DNS name in its location, this node's "
                    "interfaces, each port, the ssh server (if one is named) and the key. Prints one line "
                    "per check (OK, WARN or FAIL, with the setting to change) and a verdict; exits 0 when "
                    "engines can register, 1 when not, 2 on bad arguments.",
    )
    p.add_argument("--profile", help="profile name (default: 'default')")
    p.add_argument("--profile-dir", help="profile directory (overrides --profile)")
    add_flags(p, FLAGS, help=FLAG_HELP)
    p.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, metavar="SECONDS",
                   help="how long each check may take (default %g)" % DEFAULT_TIMEOUT)
    p.add_argument("--submit", choices=SUBMIT_SYSTEMS, metavar="SYSTEM",
                   help="run the doctor as a one-task batch job of %s, with the profile's [launcher.SYSTEM] "
                        "settings and engines template, and report its verdict" % "|".join(SUBMIT_SYSTEMS))
    p.add_argument("--submit-timeout", type=float, default=DEFAULT_SUBMIT_TIMEOUT, metavar="SECONDS",
                   help="how long the submitted job may wait to start before it is cancelled (default %g)"
                        % DEFAULT_SUBMIT_TIMEOUT)
    return p


FLAGS = ("engine.file", "engine.cluster_id", "engine.ssh_server")
"""The doctor looks where an engine would: its --file, --cluster-id and --ssh are the engine's."""

FLAG_HELP = {
    "--file": "engine connection file (default: the profile's security/controller[-ID]-engine.json)",
    "--cluster-id": "which controller of the profile to check",
    "--ssh": "check tunnelling through this ssh server, as engine --ssh would (default: the one in the file, "
             "from --enginessh)",
}
"""The doctor's words for them: it checks where the engine would connect."""


def fail(message: str, code: int = 1) -> int:
    print("%s: error: %s" % (PROG, message), file=sys.stderr)
    return code


def say(line: str) -> None:
    print(line, flush=True)  # flushed: a batch job killed part way still shows what was found


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    rest, overrides = split_overrides(argv)
    parser = build_parser()
    args = parser.parse_args(rest)
    if args.timeout <= 0 or args.submit_timeout <= 0:
        parser.error("--timeout and --submit-timeout take a number of seconds above 0")
    overrides.update(flag_overrides(args, FLAGS))
    try:
        if args.file and not (args.profile or args.profile_dir or args.submit):
            profile_dir = None  # a copied file needs no profile, as for the engine
        else:
            profile_dir = locate_profile_dir(args.profile, args.profile_dir, create=bool(args.submit))
        config = load_config(profile_dir, overrides)
    except (ConfigError, ProfileError, ValueError) as e:
        return fail(str(e), 2)
    cfg = config.engine
    path = engine_file_path(cfg.file, profile_dir, cfg.cluster_id)
    try:
        if args.submit:
            return submit(args, profile_dir, config, path, cfg.ssh_server)
        return exit_code(Doctor(path, args.timeout, cfg.ssh_server, say).run())
    except KeyboardInterrupt:
        return 130


def submit(args, profile_dir, config, path: str, ssh: str) -> int:
    from .submit import doctor_job, run_as_job

    doctor_args = ["--file", path, "--timeout", "%g" % args.timeout] + (["--ssh", ssh] if ssh else [])
    try:
        job = doctor_job(args.submit, profile_dir, config, doctor_args)
        output, verdict = run_as_job(job, args.submit_timeout, args.timeout,
                                     lambda line: print(line, file=sys.stderr, flush=True))
    except MiniparError as e:  # a LauncherError, or a ConfigError in [launcher.SYSTEM]
        return fail("--submit %s: %s" % (args.submit, e))
    lines = output.rstrip("\n").splitlines()
    for line in lines:
        say(line)
    if not lines or lines[-1] != verdict:
        say(verdict)
    return exit_code(verdict)


if __name__ == "__main__":
    sys.exit(main())
