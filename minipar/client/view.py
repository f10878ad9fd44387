"""Views: DirectView sends to chosen engines, LoadBalancedView lets the controller choose.

A view holds flags (``block``, ``targets``, and for load-balanced tasks ``after``,
``follow``, ``timeout``, ``retries``, ``tags``) that every call made through it uses; calls
take per-call overrides without changing the view, so one view can be shared by
threads and by the remote functions made from it.
"""
from __future__ import annotations

import builtins
import concurrent.futures
import contextlib
import threading
import warnings
from itertools import chain

from .. import serialize
from ..serialize import pack_apply_message
from .asyncresult import AsyncMapResult, AsyncResult, _timeout
from .map import cut, partition
from ..dependency import Dependency, msg_ids
from ..engine_calls import _import, _map_chunk, _pull, _push
from .remotefunction import parallel, remote


FANOUT_BYTES = 1 << 20
"""Out-of-band payload bytes from which a DirectView call on several engines is sent to the
controller once, as a broadcast it fans out, instead of once per engine: the payload then
crosses the client's link once (rc[:].push of 100 MB to 2 engines: ~1.3x faster)."""


def _payload_bytes(buffers) -> int:
    return sum(memoryview(b).nbytes for b in buffers[1:])


def _fname(f) -> str:
    return getattr(f, "__name__", type(f).__name__)


def _sequences(sequences, mapping):
    """The sequences made sliceable, and how many items to use: the shortest's length for
    a map (like the builtin), all of them (equal lengths required) for a parallel call."""
    if not sequences:
        raise TypeError("map() needs at least one sequence")
    seqs = [s if hasattr(s, "__len__") and hasattr(s, "__getitem__") else list(s) for s in sequences]
    lens = [len(s) for s in seqs]
    if not mapping and len(set(lens)) > 1:
        raise ValueError("all sequences must have equal length, but have %s" % lens)
    return seqs, min(lens)


def futures_for(client, jobs) -> set:
    """The pending AsyncResults among jobs: AsyncResults, msg_ids, or indices into the
    client's history; anything no longer pending is done and needs no wait."""
    if isinstance(jobs, (str, int)) or hasattr(jobs, "msg_ids"):
        jobs = [jobs]
    pending = client._futures
    out = set()
    for job in jobs:
        if isinstance(job, concurrent.futures.Future):
            out.add(job)
            continue
        if isinstance(job, int):
            job = client.history[job]
        ar = pending.get(job)
        if ar is not None:
            out.add(ar)
    return out


class View:
    """What both views share: flags, the apply/map family, decorators, waiting."""

    _flag_names = ("targets", "block", "track")

    def __init__(self, client, targets=None, block=False, **flags):
        self.client = client
        self.targets = targets
        self.block = block
        self.track = False
        """Accepted as ipyparallel's flag; every zero-copy buffer is tracked whatever it says, so
        ``ar.sent`` and ``ar.wait_for_send()`` are always true to their word."""
        self.history: list = []
        self.set_flags(**flags)

    def __repr__(self):
        targets = str(self.targets)
        if len(targets) > 16:
            targets = targets[:12] + "...]"
        return "<%s %s>" % (type(self).__name__, targets)

    def __len__(self):
        t = self.targets
        if isinstance(t, int):
            return 1
        if t is None or t == "all":
            return len(self.client)
        return len(self.client._resolve(t))

    # -- flags -------------------------------------------------------------------------

    def _check_flags(self, flags: dict) -> dict:
        unknown = sorted(set(flags) - set(self._flag_names))
        if unknown:
            raise KeyError("%s is not a flag of %s (its flags: %s)"
                           % (", ".join(map(repr, unknown)), type(self).__name__, ", ".join(self._flag_names)))
        return flags

    def set_flags(self, **kwargs):
        """Set flags by name: every later call through this view uses them."""
        for name, value in self._check_flags(kwargs).items():
            setattr(self, name, value)

    @contextlib.contextmanager
    def temp_flags(self, **kwargs):
        """Set flags for the duration of a ``with`` block, then restore them."""
        saved = {name: getattr(self, name) for name in self._flag_names}
        self.set_flags(**kwargs)
        try:
            yield self
        finally:
            for name, value in saved.items():
                setattr(self, name, value)

    def _options(self, block, flags) -> dict:
        """This view's flags with a call's overrides; None means 'the view's value'."""
        opts = {name: getattr(self, name) for name in self._flag_names}
        if flags:
            opts.update((k, v) for k, v in self._check_flags(flags).items() if v is not None)
        if block is not None:
            opts["block"] = block
        return opts

    # -- submitting --------------------------------------------------------------------

    def _submit(self, items, factory, msg_type="apply_request", block=False, count=None):
        # a blocking caller waits at once, so it receives the reply itself
        ar = self.client._submit(msg_type, items, factory, caller_waits=block, count=count)
        self.history.extend(ar.msg_ids)
        return ar

    def _maybe_block(self, ar, block):
        if not block:
            return ar
        try:
            return ar.get()
        except BaseException:
            # submitted as a blocking call, whose caller was to receive the reply itself: one
            # interrupted before it began receiving leaves the reply to the I/O thread
            self.client._hand_back()
            raise

    def apply(self, f, *args, **kwargs):
        """``f(*args, **kwargs)`` remotely: the result if the view blocks, else an AsyncResult."""
        return self._apply(f, args, kwargs)

    def apply_async(self, f, *args, **kwargs):
        return self._apply(f, args, kwargs, block=False)

    def apply_sync(self, f, *args, **kwargs):
        return self._apply(f, args, kwargs, block=True)

    def map(self, f, *sequences, block=None, **kwargs):
        """Like the builtin map, in parallel: a list if blocking, else an AsyncMapResult."""
        return self._map(f, sequences, mapping=True, block=block, **kwargs)

    def map_async(self, f, *sequences, **kwargs):
        if "block" in kwargs:
            raise TypeError("map_async() doesn't take a block argument")
        return self.map(f, *sequences, block=False, **kwargs)

    def map_sync(self, f, *sequences, **kwargs):
        if "block" in kwargs:
            raise TypeError("map_sync() doesn't take a block argument")
        return self.map(f, *sequences, block=True, **kwargs)

    def imap(self, f, *sequences, **kwargs):
        """An iterator over map's results, yielding each as soon as its chunk arrives."""
        return iter(self.map_async(f, *sequences, **kwargs))

    # -- decorators, executor, waiting ---------------------------------------------------

    def remote(self, block=None, **flags):
        """Decorator: calls of the function run on this view."""
        return remote(self, block=block, **flags)

    def parallel(self, dist="b", block=None, **flags):
        """Decorator: the function runs on parts of its sequence arguments; ``.map`` per item."""
        return parallel(self, dist=dist, block=block, **flags)

    @property
    def executor(self):
        """A concurrent.futures.Executor submitting through this view."""
        from .executor import ViewExecutor
        return ViewExecutor(self)

    @property
    def outstanding(self) -> set:
        """msg_ids sent through this view and not answered yet."""
        pending = self.client._futures
        return {m for m in self.history if m in pending}

    def wait(self, jobs=None, timeout=-1) -> bool:
        """Wait for jobs (AsyncResults, msg_ids, history indices; default: everything sent
        through this view). True if all are done, False when timeout ran out first."""
        futures = futures_for(self.client, self.history if jobs is None else jobs)
        done, not_done = concurrent.futures.wait(futures, _timeout(timeout))
        return not not_done

    def abort(self, jobs=None, targets=None, block=None):
        """Abort tasks sent through this view (or jobs) that have not started yet."""
        return self.client.abort(list(self.outstanding) if jobs is None else jobs, targets=targets,
                                 block=self.block if block is None else block)

    def queue_status(self, targets=None, verbose=False):
        return self.client.queue_status(self.targets if targets is None else targets, verbose=verbose)

    def get_result(self, indices_or_msg_ids=None, block=None, owner=False):
        """Client.get_result, with int indices into this view's history."""
        jobs = -1 if indices_or_msg_ids is None else indices_or_msg_ids
        if isinstance(jobs, int):
            jobs = self.history[jobs]
        elif isinstance(jobs, (list, tuple, set)):
            jobs = [self.history[j] if isinstance(j, int) else j for j in jobs]
        return self.client.get_result(jobs, block=block, owner=owner)

    def purge_results(self, jobs=(), targets=()):
        """Client.purge_results; targets None or 'all' means this view's engines."""
        if targets is None or targets == "all":
            targets = self.client._resolve(self.targets)
        return self.client.purge_results(jobs=jobs, targets=targets)

    def spin(self):
        """Does nothing, as Client.spin."""
        from .client import spin_is_not_needed
        spin_is_not_needed("View.spin")

    def shutdown(self, targets=None, restart=False, hub=False, block=None):
        return self.client.shutdown(self.targets if targets is None else targets, restart=restart, hub=hub,
                                    block=True if block is None else block)


class DirectView(View):
    """Work sent to specific engines, queued on each in submission order.

    A call on several engines whose payload is large (FANOUT_BYTES) travels to the controller
    as one broadcast message, as a BroadcastView's does; each engine's part then has the msg_id
    ``<msg_id>_<engine id>``."""

    def clear(self, targets=None, block=None):
        """Empty the namespaces of this view's engines."""
        return self.client.clear(self.targets if targets is None else targets, block=True if block is None else block)

    def __init__(self, client, targets="all", block=False, **flags):
        super().__init__(client, targets, block, **flags)

    def _targets(self, targets=None) -> list:
        return self.client._resolve(self.targets if targets is None else targets)

    def _apply(self, f, args, kwargs, block=None, **flags):
        opts = self._options(block, flags)
        targets = opts["targets"]
        ids = self.client._resolve(targets)
        buffers = pack_apply_message(f, args, kwargs)
        factory = lambda m: AsyncResult(self.client, m, _fname(f), ids, single=isinstance(targets, int))  # noqa: E731
        if len(ids) > 1 and _payload_bytes(buffers) >= FANOUT_BYTES:
            ar = self.client._submit_broadcast("apply_request", {}, buffers, ids, False, factory)
            self.history.extend(ar.msg_ids)
        else:
            ar = self._submit([({}, {"dest": t}, buffers) for t in ids], factory, block=opts["block"])
        return self._maybe_block(ar, opts["block"])

    def _map(self, f, sequences, mapping=True, block=None, chunksize=None, ordered=True,
             return_exceptions=False, **flags):
        """One message per engine, each with a contiguous part of the sequences."""
        opts = self._options(block, flags)
        ids = self.client._resolve(opts["targets"])
        seqs, n = _sequences(sequences, mapping)
        items, used, sizes = [], [], []
        for p, t in enumerate(ids):
            parts = [partition(s, p, len(ids), n) for s in seqs]
            size = len(parts[0])
            if not size:
                continue
            call = pack_apply_message(_map_chunk, (f, *parts), {}) if mapping else pack_apply_message(f, parts, {})
            items.append(({}, {"dest": t}, call))
            used.append(t)
            sizes.append(size)
        ar = self._submit(items, lambda m: AsyncMapResult(self.client, m, _fname(f), used, chunk_sizes=sizes,
                                                          ordered=ordered, return_exceptions=return_exceptions),
                          block=opts["block"])
        return self._maybe_block(ar, opts["block"])

    def map(self, f, *sequences, block=None, track=None, return_exceptions=False):
        """Like the builtin map: the sequences are cut into one contiguous part per engine."""
        return self._map(f, sequences, mapping=True, block=block, return_exceptions=return_exceptions)

    def _to(self, targets, f, *args):
        """f(*args) on targets (default: the view's), as an AsyncResult."""
        return self._apply(f, args, {}, block=False, targets=targets)

    def execute(self, code, silent=True, targets=None, block=None):
        """Run code (a str) in the engines' namespace. Returns the AsyncResult, as
        ipyparallel does, after waiting for it (and raising its errors) when blocking."""
        opts = self._options(block, {"targets": targets})
        tgts = opts["targets"]
        ids = self.client._resolve(tgts)
        items = [({"code": code, "silent": bool(silent)}, {"dest": t}, ()) for t in ids]
        ar = self._submit(items, lambda m: AsyncResult(self.client, m, "execute", ids, single=isinstance(tgts, int)),
                          "execute_request")
        if opts["block"]:
            ar.get()
        return ar

    def run(self, filename, targets=None, block=None):
        """Execute a local file's code on the engines."""
        with open(filename) as f:
            code = f.read() + "\n"
        return self.execute(code, targets=targets, block=block)

    def push(self, ns: dict, targets=None, block=None, track=None):
        """Set names in each engine's namespace.

        Large buffers (numpy arrays, bytes of 64 KiB or more) are sent zero-copy: until
        ``ar.wait_for_send()`` returns (or ``ar.sent`` is true) ZeroMQ may still read them, and
        an edit in place may reach the engine. A blocking push is always safe. ``track`` is
        accepted for ipyparallel's sake: minipar always tracks."""
        if not isinstance(ns, dict):
            raise TypeError("push() takes a dict of names to values, not %s" % type(ns).__name__)
        return self._maybe_block(self._to(targets, _push, ns), self.block if block is None else block)

    def update(self, ns: dict):
        return self.push(ns)

    def pull(self, names, targets=None, block=None):
        """Get names from each engine's namespace: one value per engine, or a list per name list."""
        if isinstance(names, (list, tuple, set)):
            bad = [k for k in names if not isinstance(k, str)]
            if bad:
                raise TypeError("names must be str, not %r" % (bad[0],))
            names = list(names)
        elif not isinstance(names, str):
            raise TypeError("pull() takes a name or a list of names, not %s" % type(names).__name__)
        return self._maybe_block(self._to(targets, _pull, names), self.block if block is None else block)

    def get(self, key_s):
        return self.pull(key_s, block=True)

    def __getitem__(self, name):
        return self.pull(name, block=True)

    def __setitem__(self, name, value):
        self.push({name: value}, block=True)

    def scatter(self, key, seq, dist="b", flatten=False, targets=None, block=None, track=None):
        """Cut seq into one contiguous part per engine (the first ones get the extra items)
        and bind each part to key there; with flatten, a part of one item is bound as that
        item. Returns None when blocking (after every engine has its part), else an
        AsyncResult."""
        if dist != "b":
            raise ValueError("only dist='b' (contiguous parts) is supported, not %r" % (dist,))
        block = self.block if block is None else block
        ids = self._targets(targets)
        if not (hasattr(seq, "__len__") and hasattr(seq, "__getitem__")):
            seq = list(seq)
        items = []
        for p, t in enumerate(ids):
            part = partition(seq, p, len(ids))
            if flatten and len(part) == 1:
                part = part[0]
            items.append(({}, {"dest": t}, pack_apply_message(_push, ({key: part},), {})))
        ar = self._submit(items, lambda m: AsyncResult(self.client, m, "scatter", ids, single=False))
        if block:
            ar.get()
            return None
        return ar

    def gather(self, key, dist="b", targets=None, block=None):
        """The parts of key on each engine joined in engine order: arrays concatenated,
        sequences chained into a list (the inverse of scatter)."""
        if dist != "b":
            raise ValueError("only dist='b' (contiguous parts) is supported, not %r" % (dist,))
        ids = self._targets(targets)
        call = pack_apply_message(_pull, (key,), {})
        items = [({}, {"dest": t}, call) for t in ids]
        ar = self._submit(items, lambda m: AsyncMapResult(self.client, m, "gather", ids))
        return self._maybe_block(ar, self.block if block is None else block)

    @contextlib.contextmanager
    def sync_imports(self, local=True, quiet=False):
        """Import here and on the engines: each ``import`` in the block runs locally, then
        the same import runs on every engine. ``import x as y`` binds ``x`` there (the
        alias is not visible to __import__). Remote ImportErrors are raised at the end."""
        if not local:
            raise NotImplementedError("remote-only imports are not supported; use view.execute('import ...')")
        original = builtins.__import__
        owner = threading.get_ident()
        nested = [0]
        seen = set()
        results = []

        def view_import(name, globals=None, locals=None, fromlist=(), level=0):
            if threading.get_ident() != owner or nested[0]:
                return original(name, globals, locals, fromlist, level)
            nested[0] += 1
            try:
                module = original(name, globals, locals, fromlist, level)
            finally:
                nested[0] -= 1
            fromlist = tuple(fromlist or ())
            if level <= 0 and (name, fromlist) not in seen:
                seen.add((name, fromlist))
                if not quiet:
                    if fromlist:
                        print("importing %s from %s on engine(s)" % (",".join(fromlist), name))
                    else:
                        print("importing %s on engine(s)" % name)
                results.append(self._apply(_import, (name, fromlist, level), {}, block=False))
            return module

        builtins.__import__ = view_import
        try:
            yield
        finally:
            builtins.__import__ = original
        for ar in results:
            ar.get()

    @property
    def importer(self):
        return self.sync_imports(True)

    def use_cloudpickle(self):
        """Pickle with cloudpickle here and on the engines (it must be installed on both)."""
        serialize.use_cloudpickle()
        return self._apply(serialize.use_cloudpickle, (), {})

    def use_dill(self):
        """Pickle with dill here and on the engines (it must be installed on both)."""
        serialize.use_dill()
        return self._apply(serialize.use_dill, (), {})

    def use_pickle(self):
        """Back to the default pickler here and on the engines."""
        serialize.use_pickle()
        return self._apply(serialize.use_pickle, (), {})

    def activate(self, suffix=""):
        """Make this view the one IPython's %px, %%px, %pxresult and %autopx use."""
        try:
            from .magics import activate
        except ImportError as e:
            warnings.warn("the parallel magics need IPython (%s)" % e, RuntimeWarning, stacklevel=2)
            return None
        return activate(self, suffix)


class BroadcastView(DirectView):
    """A DirectView whose requests the controller fans out: one message from the client
    however many engines it goes to, so a large argument crosses the client's link once.

    Results have the shape of a DirectView's on the same targets: one part per engine, in
    target order, msg_ids ``<msg_id>_<engine id>``, errors as a CompositeError. With
    ``is_coalescing`` the controller also gathers the engines' replies and answers with
    one message. map and scatter send each engine its own part, as a DirectView does.
    """

    def __init__(self, client, targets="all", block=False, is_coalescing=False, **flags):
        self.is_coalescing = is_coalescing
        super().__init__(client, targets, block, **flags)

    def __repr__(self):
        return "<%s targets=%r is_coalescing=%r>" % (type(self).__name__, self.targets, self.is_coalescing)

    def _broadcast(self, msg_type, content, buffers, targets, factory):
        ids = self.client._resolve(targets)
        ar = self.client._submit_broadcast(msg_type, content, buffers, ids, self.is_coalescing,
                                           lambda m: factory(m, ids))
        for md in ar._metadata.values():
            md.update(is_broadcast=True, is_coalescing=self.is_coalescing)
        self.history.extend(ar.msg_ids)
        return ar

    def _apply(self, f, args, kwargs, block=None, **flags):
        opts = self._options(block, flags)
        ar = self._broadcast("apply_request", {}, pack_apply_message(f, args, kwargs), opts["targets"],
                             lambda m, ids: AsyncResult(self.client, m, _fname(f), ids, single=False))
        return self._maybe_block(ar, opts["block"])

    def execute(self, code, silent=True, targets=None, block=None):
        """Run code (a str) on the engines; returns the AsyncResult, after waiting for it
        (and raising its errors) when blocking."""
        opts = self._options(block, {"targets": targets})
        ar = self._broadcast("execute_request", {"code": code, "silent": bool(silent)}, (), opts["targets"],
                             lambda m, ids: AsyncResult(self.client, m, "execute", ids, single=False))
        if opts["block"]:
            ar.get()
        return ar

    def gather(self, key, dist="b", targets=None, block=None):
        """The parts of key on each engine joined in engine order (one broadcast pull)."""
        if dist != "b":
            raise ValueError("only dist='b' (contiguous parts) is supported, not %r" % (dist,))
        ar = self._broadcast("apply_request", {}, pack_apply_message(_pull, (key,), {}),
                             self.targets if targets is None else targets,
                             lambda m, ids: AsyncMapResult(self.client, m, "gather", ids))
        return self._maybe_block(ar, self.block if block is None else block)


def _render_dependency(dep):
    """after/follow as they travel in request metadata: a list of msg_ids (all must
    succeed), or a Dependency's dict when it counts otherwise; None when empty."""
    if dep is None:
        return None
    if isinstance(dep, Dependency):
        if not dep:
            return None
        if dep.all and dep.success and not dep.failure:
            return sorted(dep)
        return dep.as_dict()
    if isinstance(dep, dict):
        return _render_dependency(Dependency(dep))
    try:
        ids = msg_ids(dep)
    except TypeError as e:
        raise ValueError("invalid dependency %r: %s" % (dep, e)) from None
    return ids or None


def check_tags(tags) -> list:
    """Engine tags as a view or Cluster takes them: a list of words (one word alone is one tag)."""
    if isinstance(tags, str):
        tags = [tags]
    if not isinstance(tags, (list, tuple, set, frozenset)) or not all(isinstance(t, str) and t for t in tags):
        raise TypeError("tags is a list of non-empty strings (engine.tags), not %r" % (tags,))
    return sorted(set(tags))


class LoadBalancedView(View):
    """Work the controller hands to the least-loaded engine (among ``targets``, if set).

    Task flags travel in each request's metadata: ``after`` (run once these tasks are
    done), ``follow`` (run where these ran), ``timeout`` (seconds to wait for those, or for an
    engine that meets its @depend check, its tags or has that long before it drains:
    TaskTimeout), ``retries`` (resubmit a failed task this many times) and ``tags`` (run only
    on engines with every one of these tags, engine.tags).
    """

    _flag_names = ("targets", "block", "track", "after", "follow", "timeout", "retries", "tags")

    def __init__(self, client, targets=None, block=False, **flags):
        self.after = None
        self.follow = None
        self.timeout = None
        self.retries = 0
        self.tags = []
        super().__init__(client, targets, block, **flags)

    def _check_flags(self, flags: dict) -> dict:
        flags = super()._check_flags(flags)
        for name in ("after", "follow"):
            if name in flags:
                _render_dependency(flags[name])
        if flags.get("timeout") is not None:
            t = flags["timeout"]
            if isinstance(t, bool) or not isinstance(t, (int, float)):
                raise TypeError("timeout is a number of seconds or None, not %s" % type(t).__name__)
            if t < 0:
                raise ValueError("timeout must not be negative, got %r" % t)
            flags["timeout"] = float(t)
        if flags.get("tags") is not None:
            flags["tags"] = check_tags(flags["tags"])
        if "retries" in flags:
            r = flags["retries"]
            if isinstance(r, bool) or not isinstance(r, int):
                raise TypeError("retries is an int, not %s" % type(r).__name__)
            if r < 0:
                raise ValueError("retries must not be negative, got %r" % r)
        return flags

    def _metadata(self, opts) -> dict:
        md = {}
        if opts["targets"] is not None:
            md["targets"] = self.client._resolve(opts["targets"])
        for name in ("after", "follow"):
            dep = _render_dependency(opts[name])
            if dep is not None:
                md[name] = dep
        if opts["timeout"]:
            md["timeout"] = float(opts["timeout"])
        if opts["retries"]:
            md["retries"] = opts["retries"]
        if opts["tags"]:
            md["tags"] = opts["tags"]
        return md

    def _apply(self, f, args, kwargs, block=None, **flags):
        opts = self._options(block, flags)
        md = self._metadata(opts)
        ar = self._submit([({}, md, pack_apply_message(f, args, kwargs))],
                          lambda m: AsyncResult(self.client, m, _fname(f)), block=opts["block"])
        return self._maybe_block(ar, opts["block"])

    def _map(self, f, sequences, mapping=True, block=None, chunksize=None, ordered=True,
             return_exceptions=False, **flags):
        """One task per chunksize items, each balanced on its own."""
        chunksize = 1 if chunksize is None else chunksize
        if chunksize < 1:
            raise ValueError("chunksize must be at least 1, got %r" % chunksize)
        opts = self._options(block, flags)
        md = self._metadata(opts)
        seqs, n = _sequences(sequences, mapping)
        starts = range(0, n, chunksize)
        sizes = [min(n, start + chunksize) - start for start in starts]

        def chunk(start):
            parts = [cut(s, start, start + chunksize) for s in seqs]
            return {}, md, pack_apply_message(_map_chunk, (f, *parts), {}) if mapping else \
                pack_apply_message(f, parts, {})
        # Pickled as they are sent, so the first tasks run meanwhile; the first before
        # anything is sent, so a function that cannot be pickled sends nothing.
        items = map(chunk, starts)
        items = chain([next(items)], items) if sizes else items
        ar = self._submit(items, lambda m: AsyncMapResult(self.client, m, _fname(f), chunk_sizes=sizes,
                                                          ordered=ordered, return_exceptions=return_exceptions),
                          block=opts["block"], count=len(sizes))
        return self._maybe_block(ar, opts["block"])

    def map(self, f, *sequences, block=None, chunksize=1, ordered=True, track=None, return_exceptions=False):
        """Like the builtin map, one balanced task per chunksize items. ordered=False makes
        iteration yield results in the order they complete."""
        return self._map(f, sequences, mapping=True, block=block, chunksize=chunksize, ordered=ordered,
                         return_exceptions=return_exceptions)


__all__ = ["BroadcastView", "DirectView", "LoadBalancedView", "View"]
