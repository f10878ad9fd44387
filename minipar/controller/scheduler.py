"""Load-balancing: which engine gets the next task.

An engine that has been answering keeps up to ``hwm`` tasks in flight, so a round trip
never leaves it idle when tasks are short. An engine that has answered nothing for
PIPELINE_WINDOW is busy with something long: it gets a new task only once it is idle,
so short tasks are not queued behind a long one while another engine could run them.
"""
from __future__ import annotations

PIPELINE_WINDOW = 0.05
"""Seconds since an engine's last answer within which it may take more than one task.
Tasks longer than this gain nothing from prefetching, and lose a lot by waiting."""


def least_loaded(engines, hwm: int, targets, now: float):
    """The eligible engine with the fewest tasks in flight, or None."""
    best = None
    best_load = hwm
    for engine in engines:
        load = engine.load
        if load >= best_load or (targets is not None and engine.id not in targets):
            continue
        if load and now - engine.last_answer > PIPELINE_WINDOW:
            continue
        best = engine
        best_load = load
        if load == 0:
            break
    return best


SCHEMES = {"leastload": least_loaded}
