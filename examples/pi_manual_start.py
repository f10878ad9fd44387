"""Estimate pi on a local minipar cluster: a controller and engines started by hand.

    python examples/pi_manual_start.py [--engines 4] [--samples 20000000]

It does what the README's manual walkthrough does: starts `python -m minipar.controller`
in a throwaway profile, starts engines with the engine connection file, connects a
Client, spreads the sampling over the engines with a load-balanced map, and stops
everything (also on Ctrl-C or an error).
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import minipar as ipp  # noqa: E402


def count_inside(args):
    """Draw n points in the unit square; count those inside the quarter circle."""
    import random
    seed, n = args
    rng = random.Random(seed)
    inside = 0
    for _ in range(n):
        x, y = rng.random(), rng.random()
        inside += x * x + y * y <= 1.0
    return inside


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--engines", type=int, default=4)
    p.add_argument("--samples", type=int, default=20_000_000)
    args = p.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        profile_dir = Path(tmp, "profile_pi")
        py = sys.executable
        package_root = str(Path(ipp.__file__).resolve().parent.parent)
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")])))
        controller = subprocess.Popen([py, "-m", "minipar.controller", "--profile-dir", str(profile_dir),
                                       "--log-level=WARNING"], env=env)
        procs = [controller]
        try:
            engine_file = profile_dir / "security" / "controller-engine.json"
            deadline = time.monotonic() + 30
            while not engine_file.exists():
                if controller.poll() is not None or time.monotonic() > deadline:
                    sys.exit("the controller did not start")
                time.sleep(0.05)
            for _ in range(args.engines):
                procs.append(subprocess.Popen([py, "-m", "minipar.engine", "--file", str(engine_file),
                                               "--log-level=WARNING"], env=env))
            with ipp.Client(url_file=str(profile_dir / "security" / "controller-client.json")) as rc:
                rc.wait_for_engines(args.engines, timeout=60)
                print("engines:", rc.ids, "pids:", rc[:].apply_sync(os.getpid))
                chunks = 4 * args.engines
                per_chunk = args.samples // chunks
                t0 = time.perf_counter()
                inside = rc.load_balanced_view().map_sync(count_inside, [(seed, per_chunk) for seed in range(chunks)])
                elapsed = time.perf_counter() - t0
                pi = 4.0 * sum(inside) / (per_chunk * chunks)
                print("pi ~= %.6f from %d samples on %d engines in %.2fs" % (pi, per_chunk * chunks,
                                                                              args.engines, elapsed))
                rc.shutdown(hub=True)
        finally:
            for proc in procs:
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.terminate()
                    proc.wait(5)


if __name__ == "__main__":
    main()
