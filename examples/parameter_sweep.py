"""A parameter sweep on a load-balanced view, with its progress on the terminal.

    python examples/parameter_sweep.py [--engines 4 | --profile NAME | --url-file FILE] [--grid 12]

Each point of a grid of (damping, drive frequency) pairs is one task: a driven, damped
oscillator integrated over 30 time units, whose answer is its largest late amplitude. The
load-balanced view gives each task to whichever engine is free; the script shows
`ar.progress` of `len(ar)` tasks while they run: redrawn in place with a carriage return on
a terminal, as a line every couple of seconds otherwise (a log file, a batch job's output).
Standard library only; `ar.wait_interactive()` draws a similar bar by itself.

With no connection given it starts a local cluster of --engines engines (and stops it at the
end); --profile or --url-file use a running one (`python -m minipar.cluster start`).
"""
import argparse
import sys
import time

import connect   # examples/connect.py: --engines, --profile or --url-file

PLAIN_EVERY = 2.0
"""Seconds between progress lines when the output is not a terminal."""


def amplitude(point):
    """Largest |x| over the last third of a run of x'' + damping x' + x = cos(frequency t)."""
    damping, frequency = point
    import math
    x, v, t, dt, end = 0.0, 0.0, 0.0, 0.002, 30.0
    largest = 0.0
    while t < end:
        a = math.cos(frequency * t) - damping * v - x
        v += a * dt
        x += v * dt
        t += dt
        if t > 2 * end / 3:
            largest = max(largest, abs(x))
    return largest


def grid(n):
    dampings = [0.05 + 0.45 * i / (n - 1) for i in range(n)]
    frequencies = [0.5 + 1.0 * j / (n - 1) for j in range(n)]
    return [(d, f) for d in dampings for f in frequencies]


def show_progress(ar, out=sys.stdout):
    """Wait for ar, showing how many of its tasks are done."""
    terminal = out.isatty()
    last_line = 0.0
    while True:
        done, total = ar.progress, len(ar)
        now = time.monotonic()
        if terminal:
            bar = "#" * (30 * done // total)
            out.write("\r[%-30s] %d/%d points, %.1fs" % (bar, done, total, ar.elapsed))
            out.flush()
        elif now - last_line >= PLAIN_EVERY or done == total:
            out.write("%d/%d points after %.1fs\n" % (done, total, ar.elapsed))
            out.flush()
            last_line = now
        if done == total:
            break
        ar.wait(0.1)
    if terminal:
        out.write("\n")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    connect.add_arguments(p)
    p.add_argument("--grid", type=int, default=12, help="points along each axis")
    args = p.parse_args()

    points = grid(args.grid)
    with connect.client(args) as rc:
        lview = rc.load_balanced_view()
        ar = lview.map_async(amplitude, points)
        show_progress(ar)
        amplitudes = ar.get()
        print("%d points on %d engines: %.1fs of work in %.1fs (%.1fx)"
              % (len(points), len(rc.ids), ar.serial_time, ar.wall_time, ar.serial_time / max(ar.wall_time, 1e-9)))
    best = max(range(len(points)), key=amplitudes.__getitem__)
    print("largest amplitude %.2f at damping %.3f, frequency %.3f" % (amplitudes[best], *points[best]))


if __name__ == "__main__":
    main()
