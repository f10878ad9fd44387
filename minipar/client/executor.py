"""A concurrent.futures.Executor over a view.

Code written against ThreadPoolExecutor or ProcessPoolExecutor (submit, map, shutdown,
``with``) runs on the engines unchanged. Shutting the executor down stops it taking
work; it never stops engines, which belong to the cluster.
"""
from __future__ import annotations

import concurrent.futures
import threading
import time

from ..error import CompositeError
from .view import LoadBalancedView


class ViewExecutor(concurrent.futures.Executor):
    """submit is ``view.apply_async``, map is ``view.map_async`` iterated in order."""

    def __init__(self, view):
        self.view = view
        self._pending: set = set()
        self._lock = threading.Lock()
        self._shut = False

    def _track(self, ar):
        with self._lock:
            self._pending.add(ar)
        ar.add_done_callback(self._untrack)
        return ar

    def _untrack(self, ar):
        with self._lock:
            self._pending.discard(ar)

    def _check_open(self):
        if self._shut:
            raise RuntimeError("cannot schedule new futures after shutdown")

    def submit(self, fn, /, *args, **kwargs):
        self._check_open()
        return self._track(self.view.apply_async(fn, *args, **kwargs))

    def map(self, fn, *iterables, timeout=None, chunksize=1):
        """Results in order; every task is submitted before this returns. A timeout counts
        from this call, as for the standard executors."""
        self._check_open()
        deadline = None if timeout is None else time.monotonic() + timeout
        kwargs = {"chunksize": chunksize} if isinstance(self.view, LoadBalancedView) else {}
        amr = self._track(self.view.map_async(fn, *iterables, **kwargs))
        return self._results(amr, deadline)

    @staticmethod
    def _results(amr, deadline):
        try:
            yield from amr._iter_results(ordered=True, deadline=deadline)
        except CompositeError as e:
            if len(e.elist) == 1:
                raise e._error(0) from None
            raise

    def shutdown(self, wait=True, *, cancel_futures=False):
        """Take no more work; with wait, return once what was submitted is done.
        cancel_futures aborts the tasks not started yet (needs the client's abort)."""
        self._shut = True
        with self._lock:
            pending = list(self._pending)
        if cancel_futures:
            for ar in pending:
                if not ar.done():
                    try:
                        ar.abort()
                    except RuntimeError:
                        pass
        if wait:
            concurrent.futures.wait(pending)
