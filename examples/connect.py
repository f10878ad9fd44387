"""For the examples: a Client to a running cluster when one is named, else a local cluster.

    parser = argparse.ArgumentParser()
    connect.add_arguments(parser)            # --engines N | --profile NAME | --url-file FILE
    with connect.client(parser.parse_args()) as rc:
        ...
"""
import contextlib
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))   # run from a clone, installed or not
import minipar as ipp  # noqa: E402


def add_arguments(parser, engines=4):
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--engines", type=int, default=engines,
                       help="engines of a local cluster started for this run (default %d)" % engines)
    where.add_argument("--profile", help="use the running cluster of this profile instead")
    where.add_argument("--url-file", help="use the controller of this client connection file instead")


@contextlib.contextmanager
def client(args):
    """A connected Client with at least one engine; a local cluster started here stops on leaving."""
    if args.profile or args.url_file:
        with ipp.Client(profile=args.profile, url_file=args.url_file) as rc:
            rc.wait_for_engines(1, timeout=60)
            yield rc
    else:
        with ipp.Cluster(n=args.engines, log_level="WARNING") as rc:
            yield rc
