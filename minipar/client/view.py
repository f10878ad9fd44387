"""Views: DirectView sends to chosen engines, LoadBalancedView lets the controller choose."""
from __future__ import annotations

from ..serialize import pack_apply_message
from .asyncresult import AsyncMapResult, AsyncResult
from .remote import _map_chunk, _pull, _push


def _fname(f) -> str:
    return getattr(f, "__name__", type(f).__name__)


def _columns(sequences):
    """The sequences as lists cut to the shortest, like the builtin map."""
    if not sequences:
        raise TypeError("map() needs at least one sequence")
    cols = [s if hasattr(s, "__len__") and hasattr(s, "__getitem__") else list(s) for s in sequences]
    n = min(len(c) for c in cols)
    return [c[:n] if len(c) != n else c for c in cols], n


class View:
    """What both views share: the block flag and the apply/map family."""

    def __init__(self, client, targets=None, block=False):
        self.client = client
        self.targets = targets
        self.block = block

    def __repr__(self):
        return "<%s targets=%r>" % (type(self).__name__, self.targets)

    def apply(self, f, *args, **kwargs):
        ar = self.apply_async(f, *args, **kwargs)
        return ar.get() if self.block else ar

    def apply_sync(self, f, *args, **kwargs):
        return self.apply_async(f, *args, **kwargs).get()

    def map(self, f, *sequences, block=None, **kwargs):
        ar = self.map_async(f, *sequences, **kwargs)
        return ar.get() if (self.block if block is None else block) else ar

    def map_sync(self, f, *sequences, **kwargs):
        return self.map_async(f, *sequences, **kwargs).get()

    def _maybe_block(self, ar, block):
        return ar.get() if (self.block if block is None else block) else ar


class DirectView(View):
    """Work sent to specific engines, queued on each in submission order."""

    def __init__(self, client, targets="all", block=False):
        super().__init__(client, targets, block)

    def _targets(self, targets=None):
        return self.client._resolve(self.targets if targets is None else targets)

    def _single(self, targets=None):
        return isinstance(self.targets if targets is None else targets, int)

    def apply_async(self, f, *args, **kwargs):
        targets = self._targets()
        buffers = pack_apply_message(f, args, kwargs)
        items = [({}, {"dest": t}, buffers) for t in targets]
        return self.client._submit("apply_request", items, lambda ids: AsyncResult(
            self.client, ids, _fname(f), targets, single=self._single()))

    def map_async(self, f, *sequences):
        targets = self._targets()
        cols, n = _columns(sequences)
        k = len(targets)
        items = []
        start = 0
        for i, t in enumerate(targets):
            size = n // k + (1 if i < n % k else 0)
            chunk = [c[start:start + size] for c in cols]
            start += size
            items.append(({}, {"dest": t}, pack_apply_message(_map_chunk, (f, *chunk), {})))
        return self.client._submit("apply_request", items,
                                   lambda ids: AsyncMapResult(self.client, ids, _fname(f), targets))

    def execute(self, code, targets=None, block=None):
        tgts = self._targets(targets)
        items = [({"code": code}, {"dest": t}, ()) for t in tgts]
        ar = self.client._submit("execute_request", items, lambda ids: AsyncResult(
            self.client, ids, "execute", tgts, single=self._single(targets)))
        return self._maybe_block(ar, block)

    def _apply_to(self, targets, f, *args):
        tgts = self._targets(targets)
        buffers = pack_apply_message(f, args, {})
        items = [({}, {"dest": t}, buffers) for t in tgts]
        return self.client._submit("apply_request", items, lambda ids: AsyncResult(
            self.client, ids, _fname(f), tgts, single=self._single(targets)))

    def push(self, ns: dict, targets=None, block=None):
        """Set names in each engine's namespace."""
        if not isinstance(ns, dict):
            raise TypeError("push() takes a dict of names to values, not %s" % type(ns).__name__)
        return self._maybe_block(self._apply_to(targets, _push, ns), block)

    def pull(self, names, targets=None, block=None):
        """Get names from each engine's namespace: one value per engine, or a list per name list."""
        return self._maybe_block(self._apply_to(targets, _pull, names), block)

    def __getitem__(self, name):
        return self.pull(name, block=True)

    def __setitem__(self, name, value):
        self.push({name: value}, block=True)


class LoadBalancedView(View):
    """Work the controller hands to the least-loaded engine."""

    def apply_async(self, f, *args, **kwargs):
        buffers = pack_apply_message(f, args, kwargs)
        md = {"targets": list(self.targets)} if self.targets is not None else {}
        return self.client._submit("apply_request", [({}, md, buffers)],
                                   lambda ids: AsyncResult(self.client, ids, _fname(f)))

    def map_async(self, f, *sequences, chunksize=1):
        if chunksize < 1:
            raise ValueError("chunksize must be at least 1, got %r" % chunksize)
        cols, n = _columns(sequences)
        md = {"targets": list(self.targets)} if self.targets is not None else {}
        items = []
        for start in range(0, n, chunksize):
            chunk = [c[start:start + chunksize] for c in cols]
            items.append(({}, md, pack_apply_message(_map_chunk, (f, *chunk), {})))
        return self.client._submit("apply_request", items,
                                   lambda ids: AsyncMapResult(self.client, ids, _fname(f)))
