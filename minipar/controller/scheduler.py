"""Load-balancing: which engine gets the next task.

Engines are kept fed with up to ``hwm`` tasks each, so one round trip's latency never
idles an engine, while the least-loaded choice keeps work spread out.
"""
from __future__ import annotations


def least_loaded(engines, hwm: int, targets=None):
    """The engine with the fewest load-balanced tasks in flight below hwm, or None."""
    best = None
    best_load = hwm
    for engine in engines:
        if engine.load < best_load and (targets is None or engine.id in targets):
            best = engine
            best_load = engine.load
            if best_load == 0:
                break
    return best


SCHEMES = {"leastload": least_loaded}
