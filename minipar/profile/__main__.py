"""``python -m minipar.profile create|list|locate``: make and find profile directories."""
from __future__ import annotations

import sys
from typing import Optional, Sequence

from ..error import ProfileError
from . import PROFILE_PREFIX, locate_profile_dir, minipar_dir


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m minipar.profile create|list|locate``."""
    import argparse

    from ..commands import both_forms, program_name

    p = argparse.ArgumentParser(prog=program_name("profile"), epilog=both_forms("profile"),
                                description="Create, list and locate minipar profiles.")
    sub = p.add_subparsers(dest="command", metavar="{create,list,locate}")
    sub.required = True
    create = sub.add_parser("create", help="make a profile dir with a commented minipar.toml")
    create.add_argument("--profile", help="profile name (default: 'default')")
    create.add_argument("--profile-dir", help="profile directory (overrides --profile)")
    create.add_argument("--reset", action="store_true", help="overwrite an existing minipar.toml")
    sub.add_parser("list", help="list the profiles in %s" % minipar_dir())
    locate = sub.add_parser("locate", help="print a profile's directory")
    locate.add_argument("name", nargs="?", default="default")
    args = p.parse_args(argv)
    try:
        if args.command == "create":
            return _create_command(args.profile, args.profile_dir, args.reset)
        if args.command == "list":
            root = minipar_dir()
            names = sorted(d.name[len(PROFILE_PREFIX):] for d in root.glob(PROFILE_PREFIX + "*") if d.is_dir()) \
                if root.is_dir() else []
            print("profiles in %s:" % root)
            for name in names:
                print("  " + name)
            return 0
        print(locate_profile_dir(args.name, create=False))
        return 0
    except ProfileError as e:
        print("%s: error: %s" % (p.prog, e), file=sys.stderr)
        return 1


def _create_command(profile, profile_dir, reset: bool) -> int:
    from .. import config
    from ..cluster import launchers  # noqa: F401 - registers the launcher sections

    path = locate_profile_dir(profile, profile_dir, create=True)
    target = path / config.CONFIG_FILE
    if target.exists() and not reset:
        print("%s exists; left as it is (--reset to overwrite)" % target)
        return 0
    target.write_text(config.render_profile())
    print("wrote %s" % target)
    return 0


if __name__ == "__main__":
    sys.exit(main())
