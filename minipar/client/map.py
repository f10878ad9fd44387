"""Cutting sequences into one contiguous part per engine, and joining the parts again.

scatter, gather, DirectView.map and @parallel functions share these, so a sequence
scattered and gathered comes back as it went, and results come back in input order.
"""
from __future__ import annotations

import sys
from itertools import islice


def partition(seq, p: int, q: int, n: int | None = None):
    """Part p of q contiguous parts of seq; the first ``n % q`` parts get one item more.

    Slicing keeps the type (list, tuple, range, numpy array); what can't be sliced
    becomes a list.
    """
    if not 0 <= p < q:
        raise ValueError("part %d of %d does not exist" % (p, q))
    n = len(seq) if n is None else n
    base, extra = divmod(n, q)
    low = p * base + min(p, extra)
    return cut(seq, low, low + base + (1 if p < extra else 0))


def cut(seq, low: int, high: int):
    """seq[low:high], or a list of those items for what can't be sliced."""
    try:
        return seq[low:high]
    except TypeError:
        return list(islice(seq, low, high))


def _is_array(obj) -> bool:
    return type(obj).__module__ == "numpy" and getattr(obj, "ndim", 0) > 0


def join(parts: list):
    """Undo partition: arrays are concatenated, sequences chained into a list; parts
    that are single items (scattered with flatten=True) are kept as items."""
    if not parts:
        return []
    if _is_array(parts[0]):
        return sys.modules["numpy"].concatenate(parts)
    out = []
    for part in parts:
        if isinstance(part, (list, tuple, range)):
            out.extend(part)
        else:
            out.append(part)
    return out
