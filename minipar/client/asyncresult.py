"""AsyncResult: a concurrent.futures.Future over one or more submitted messages.

Being a real Future, it works with ``concurrent.futures.wait``, ``asyncio.wrap_future``
and ``await``. The client's I/O thread fills it in as replies arrive; user threads only
read it. Each arriving message is also announced to listeners (split and joined
results, iterators), so partial results are usable before the whole call is done.
"""
from __future__ import annotations

import concurrent.futures
from concurrent.futures import _base
import contextlib
import logging
import sys
import threading
import time
from concurrent.futures import ALL_COMPLETED, FIRST_COMPLETED, FIRST_EXCEPTION
from datetime import datetime

import zmq

from ..error import CompositeError, TimeoutError, remote_error_class
from .map import join as join_parts

log = logging.getLogger("minipar.client")

PROGRESS_BAR_WIDTH = 30
"""Characters in wait_interactive's bar: fits an 80-column terminal with the counts."""

PLAIN_PROGRESS_INTERVAL = 1.0
"""Least seconds between wait_interactive's lines when not on a terminal: a log stays readable."""

METADATA_KEYS = ("msg_id", "engine_id", "engine_uuid", "submitted", "started", "completed", "received", "status",
                 "stdout", "stderr", "error", "after", "follow", "execute_input", "execute_result", "outputs", "data",
                 "label", "is_broadcast", "is_coalescing")


class Metadata(dict):
    """One message's metadata; keys are also attributes (``ar.metadata.engine_id``), as in ipyparallel."""

    def __getattr__(self, key):
        try:
            return self[key]
        except KeyError:
            raise AttributeError(key) from None


class ExecuteReply:
    """What ``view.execute(code)`` gives per engine: the execution count and, unless the code ran
    silent, its last expression shown as Out[engine:count] (ipyparallel's class of the same name)."""

    def __init__(self, msg_id, content, metadata):
        self.msg_id = msg_id
        self.execution_count = content.get("execution_count", 0)
        self.metadata = metadata

    @property
    def data(self) -> dict:
        result = self.metadata.get("execute_result")
        return result.get("data", {}) if result else {}

    def __getitem__(self, key):
        return self.metadata[key]

    def __getattr__(self, key):
        if key == "metadata" or key not in self.metadata:
            raise AttributeError(key)
        return self.metadata[key]

    def __repr__(self):
        text = self.data.get("text/plain", "")
        if len(text) > 32:
            text = text[:29] + "..."
        return "<ExecuteReply[%d]: %s>" % (self.execution_count, text)

    def __str__(self):
        text = self.data.get("text/plain", "")
        if not text:
            return ""
        if "\n" in text and not text.startswith("\n"):
            text = "\n" + text
        return "Out[%s:%d]: %s" % (self.metadata.get("engine_id"), self.execution_count, text)

    def _repr_pretty_(self, p, cycle):
        p.text(str(self))


_BLANK_METADATA = dict.fromkeys(METADATA_KEYS)
_BLANK_METADATA.update(stdout="", stderr="", is_broadcast=False, is_coalescing=False)


def new_metadata(msg_id) -> Metadata:
    md = Metadata(_BLANK_METADATA)
    md["msg_id"] = msg_id
    md["outputs"] = []
    md["data"] = {}
    return md


def _datetime(ts):
    return datetime.fromtimestamp(ts) if ts is not None else None


def _timeout(timeout):
    """ipyparallel spells 'wait forever' -1; Future spells it None."""
    return None if timeout is None or timeout < 0 else timeout


def _display_stream(text, prefix="", file=None):
    if not text:
        return
    file = sys.stdout if file is None else file
    end = "" if text.endswith("\n") else "\n"
    if prefix:
        prefix += "\n"    # ipyparallel's layout: the label on a line of its own
    print("%s%s" % (prefix, text), file=file, end=end)


IO_SENDER = "io"
"""``AsyncResult._sent_by`` for messages the client's I/O thread sent."""

_RUNNING, _FINISHED = _base.RUNNING, _base.FINISHED
_DONE = frozenset((_base.CANCELLED, _base.CANCELLED_AND_NOTIFIED, _base.FINISHED))
_WAITABLE = threading.Lock()
"""Guards the moment a result's Condition is made against the moment it is settled without one."""
_SPLITTING = threading.Lock()


class AsyncResult(concurrent.futures.Future):
    """The pending result of submitted work: one value, or a list with one entry per message."""

    _unsent = 0
    """Messages queued for the client's I/O thread to send: their buffers are still the caller's."""
    _trackers = ()
    """MessageTrackers of the zero-copy buffers sent: ZeroMQ reads them until these are done."""
    _send_done = None
    """A threading.Event, made only for messages queued for the I/O thread."""
    _sent_by = None
    """Which socket carried the messages: the sending thread's ident, or IO_SENDER."""

    def __init__(self, client, msg_ids, fname="unknown", targets=None, single=True, return_exceptions=False):
        # Future's own state, without the Condition and lists Future.__init__ makes: most
        # results are never waited on by a thread that must sleep, and those ten objects
        # were half of what the garbage collector traversed per task (see _condition).
        self._state = _RUNNING
        self._result = self._exception = None
        self._client = client
        self.msg_ids = list(msg_ids)
        self._fname = fname
        self._targets = targets
        self._single = single and len(self.msg_ids) == 1
        self._return_exceptions = return_exceptions
        self._values: dict = {}
        self._errors: dict = {}
        self._sizes = dict.fromkeys(self.msg_ids, 1)
        self._metadata = {m: new_metadata(m) for m in self.msg_ids}
        self._lock = threading.Lock()
        self._submitted = time.time()

    _cond = None
    _arrival = ()
    """msg_ids in the order their replies came: a list once a second one can come."""
    _listeners = ()
    _stream_listeners = ()
    """Callbacks, as tuples replaced whole (copy on write): delivery reads them without copying."""
    _arrived = None
    """A Condition on _lock, made when someone waits for a part."""
    _split = None
    _completed = None

    @property
    def _condition(self):
        """Future's Condition, made the first time a thread may wait on it (``result``,
        ``concurrent.futures.wait``, a callback). A result settled before that has no
        waiter to wake (:meth:`_settle`)."""
        cond = self._cond
        if cond is None:
            with _WAITABLE:
                cond = self._cond
                if cond is None:
                    self._waiters, self._done_callbacks = [], []
                    cond = self._cond = threading.Condition()
        return cond

    def done(self):
        return self._state in _DONE

    def set_result(self, result):
        self._settle(result, None)

    def set_exception(self, exception):
        self._settle(None, exception)

    def _settle(self, result, exception):
        with _WAITABLE:
            quiet = self._cond is None
            if quiet:
                if self._state in _DONE:
                    raise _base.InvalidStateError("%s: %r" % (self._state, self))
                self._result, self._exception, self._state = result, exception, _FINISHED
        if quiet:
            return
        if exception is None:
            super().set_result(result)
        else:
            super().set_exception(exception)

    def __repr__(self):
        state = "pending" if not self.done() else "failed" if self.exception() is not None else "finished"
        return "<%s(%s): %s>" % (type(self).__name__, self._fname, state)

    # -- filled in by the client's I/O thread -------------------------------------------

    def _set_submitted(self, msg_id, when):
        self._metadata[msg_id]["submitted"] = _datetime(when)

    def _stream(self, msg_id, name, text, engine_id=None):
        md = self._metadata.get(msg_id)
        with self._lock:  # the reply may be handled in another thread (a waiting caller) meanwhile
            if md is None or md["completed"] is not None:
                return
            md[name] += text
            if engine_id is not None and md["engine_id"] is None:
                md["engine_id"] = engine_id
        for listener in self._stream_listeners:
            try:
                listener(msg_id, name, text)
            except Exception:  # noqa: BLE001 - a display hook must not stop the I/O thread
                log.exception("error in an output listener of %r", self)

    def _reply(self, msg_id, md, value=None, error=None):
        record = self._metadata[msg_id]
        with self._lock:
            record.update(engine_id=md.get("engine_id"), engine_uuid=md.get("engine_uuid"),
                          started=_datetime(md.get("started")), completed=_datetime(md.get("completed")),
                          received=datetime.now(), status=md.get("status", "error" if error else "ok"),
                          stdout=md.get("stdout", ""), stderr=md.get("stderr", ""), error=error,
                          execute_result=md.get("execute_result"))
        self._deliver(msg_id, value, error)

    def _deliver(self, msg_id, value=None, error=None):
        """Record one message's outcome, tell the listeners, finish when it was the last."""
        with self._lock:
            if msg_id in self._values or msg_id in self._errors:
                return
            if error is not None:
                self._errors[msg_id] = error
            else:
                self._values[msg_id] = value
            if len(self.msg_ids) == 1:
                self._arrival = (msg_id,)
            elif self._arrival:
                self._arrival.append(msg_id)
            else:
                self._arrival = [msg_id]
            listeners = self._listeners
            finished = len(self._arrival) == len(self.msg_ids)
            if self._arrived is not None:
                self._arrived.notify_all()
        for listener in listeners:
            try:
                listener(msg_id, value, error)
            except Exception:  # noqa: BLE001 - one bad listener must not starve the others
                log.exception("error in a result listener of %r", self)
        if finished:
            self._finish()

    def _subscribe(self, listener):
        """Call listener(msg_id, value, error) for each message: now for those already here."""
        with self._lock:
            self._listeners += (listener,)
            arrived = [(m, self._values.get(m), self._errors.get(m)) for m in self._arrival]
        for m, value, error in arrived:
            listener(m, value, error)

    def _finish(self):
        self._completed = time.time()
        if self._errors and not self._return_exceptions:
            errors = [self._errors[m] for m in self.msg_ids if m in self._errors]
            if self._single:
                self.set_exception(errors[0])
            else:
                self.set_exception(CompositeError("one or more exceptions raised in: %s" % self._fname, errors))
        else:
            self.set_result(self._collect(self._raw()))

    def _raw(self):
        return [self._errors[m] if m in self._errors else self._values[m] for m in self.msg_ids]

    def _collect(self, values):
        return values[0] if self._single else values

    def _receive(self, timeout):
        """Wait by receiving replies in this thread when no other thread does (the client's
        _receive_until); else, or after the timeout, the Future's own wait takes over."""
        if not self.done():
            receive = getattr(self._client, "_receive_until", None)
            if receive is not None:
                receive(self, timeout)

    # -- the ipyparallel interface ---------------------------------------------------------

    def get(self, timeout=None, return_exceptions=None):
        """The result; raises RemoteError/CompositeError/EngineError, or TimeoutError.

        With return_exceptions, errors take the place of the values that failed."""
        timeout = _timeout(timeout)
        if not self.wait(timeout):
            raise TimeoutError("%s: %d of %d results arrived within %ss"
                               % (self._fname, self.progress, len(self), timeout))
        if return_exceptions is None:
            return_exceptions = self._return_exceptions
        if return_exceptions:
            return self._collect(self._raw())
        return self.result()

    def result(self, timeout=None):
        """Future.result, whose timeout raises minipar's TimeoutError (also the builtin one)."""
        self._receive(_timeout(timeout))
        if self._state == _FINISHED:  # no Condition needed to read a settled result
            if self._exception is None:
                return self._result
            try:
                raise self._exception
            finally:
                self = None  # as Future's own: no cycle from the traceback's frame back to here  # noqa: PLW0642
        try:
            return super().result(_timeout(timeout))
        except concurrent.futures.TimeoutError as e:
            if isinstance(e, TimeoutError):
                raise
            raise TimeoutError("%s: %d of %d results arrived within %ss"
                               % (self._fname, self.progress, len(self), timeout)) from None

    def exception(self, timeout=None):
        if self._state == _FINISHED:
            return self._exception
        return super().exception(_timeout(timeout))

    def wait(self, timeout=None, return_when=None):
        """Wait for every message: True if all arrived. With return_when (as for
        concurrent.futures.wait), return ``(done, pending)`` sets of single-message results."""
        timeout = _timeout(timeout)
        if return_when is None:
            if not self.done():
                started = time.monotonic()
                self._receive(timeout)
                if not self.done():
                    if timeout is not None:
                        timeout = max(0.0, timeout - (time.monotonic() - started))
                    concurrent.futures.wait([self], timeout)
            return self.done()
        return concurrent.futures.wait(self.split(), timeout, return_when)

    # -- sending: when the caller's buffers are its own again ---------------------------

    def _sending(self):
        with self._lock:
            self._unsent += 1
            if self._send_done is None:
                self._send_done = threading.Event()
            self._send_done.clear()

    def _sent(self, trackers):
        if trackers:
            self._track(trackers)
        with self._lock:
            self._unsent -= 1
            if not self._unsent:
                self._send_done.set()

    def _track(self, trackers):
        with self._lock:
            self._trackers = [*self._trackers, *trackers]

    @property
    def sent(self) -> bool:
        """True once ZeroMQ no longer reads the buffers the call was given (numpy arrays and other
        large buffers go zero-copy): from then on editing them cannot change what was sent."""
        with self._lock:
            return not self._unsent and all(t.done for t in self._trackers)

    def wait_for_send(self, timeout=-1):
        """Wait until :attr:`sent` and until the controller has the request; raises
        TimeoutError after ``timeout`` seconds (-1 or None: no limit).

        Unlike ipyparallel, every zero-copy buffer is tracked, whatever ``track`` says, so
        after this returns an edit in place never reaches the engine; and the task no longer
        depends on this process: killed now, its work still runs, and another client gets
        the result (``get_result``)."""
        deadline = None if timeout is None or timeout < 0 else time.monotonic() + timeout
        event = self._send_done
        if event is not None:
            if not event.wait(None if deadline is None else max(0.0, deadline - time.monotonic())):
                raise TimeoutError("%s: still waiting to be sent after %gs" % (self._fname, timeout))
        with self._lock:
            trackers = list(self._trackers)
        for tracker in trackers:
            try:
                tracker.wait(-1 if deadline is None else max(0.0, deadline - time.monotonic()))
            except zmq.NotDone:
                raise TimeoutError("%s: ZeroMQ still holds the buffers to send after %gs"
                                   % (self._fname, timeout)) from None
        with self._lock:
            self._trackers = [t for t in self._trackers if not t.done]
        if not self.done():
            self._client._confirm_received(self, deadline)

    def wait_for_output(self, timeout=-1) -> bool:
        """Output travels with the result here, so this is wait()."""
        return self.wait(timeout)

    def ready(self) -> bool:
        return self.done()

    def successful(self) -> bool:
        if not self.done():
            raise RuntimeError("%s is not done yet: check ready() before successful()" % self._fname)
        return not self._errors

    def _check_ready(self):
        if not self.done():
            raise TimeoutError("%s: result not ready (%d of %d arrived)" % (self._fname, self.progress, len(self)))

    @property
    def progress(self) -> int:
        """Tasks finished so far (items, for a map); ``progress / len(ar)`` is the fraction."""
        with self._lock:
            return sum(self._sizes[m] for m in self._arrival)

    def __len__(self):
        return sum(self._sizes.values())

    @property
    def elapsed(self) -> float:
        """Seconds since submission; once done, the wall time."""
        if self.done():
            return self.wall_time
        return time.time() - self._submitted

    def timedelta(self, start, end, start_key=min, end_key=max) -> float:
        """Seconds between two metadata timestamps, or the earliest start and latest end of lists."""
        if not isinstance(start, datetime):
            start = start_key(s for s in start if s is not None)
        if not isinstance(end, datetime):
            end = end_key(e for e in end if e is not None)
        return (end - start).total_seconds()

    @property
    def serial_time(self) -> float:
        """Compute time summed over the engines: what the work would take on one."""
        self._check_ready()
        return sum((md["completed"] - md["started"]).total_seconds() for md in self._metadata.values()
                   if md["started"] is not None and md["completed"] is not None)

    @property
    def wall_time(self) -> float:
        """Seconds from the first submission to the last result received."""
        self._check_ready()
        starts = [md["submitted"] for md in self._metadata.values() if md["submitted"] is not None]
        ends = [md["received"] for md in self._metadata.values() if md["received"] is not None]
        if not starts or not ends:
            return self._completed - self._submitted
        return (max(ends) - min(starts)).total_seconds()

    def _per_message(self, key):
        values = [self._metadata[m][key] for m in self.msg_ids]
        return values[0] if self._single else values

    @property
    def metadata(self):
        values = [self._metadata[m] for m in self.msg_ids]
        return values[0] if self._single else values

    @property
    def stdout(self):
        return self._per_message("stdout")

    @property
    def stderr(self):
        return self._per_message("stderr")

    @property
    def engine_id(self):
        return self._per_message("engine_id")

    def __dir__(self):
        return sorted(set(super().__dir__()) | set(METADATA_KEYS))

    def __getattr__(self, key):
        if key in METADATA_KEYS:
            return self._per_message(key)
        raise AttributeError("%r object has no attribute %r" % (type(self).__name__, key))

    def __getitem__(self, key):
        """ar[i] / ar[i:j]: result values (once ready); ar['key']: that metadata field."""
        if isinstance(key, str):
            if key not in METADATA_KEYS:
                raise KeyError(key)
            return self._per_message(key)
        if isinstance(key, (int, slice)):
            self._check_ready()
            return self.result()[key]
        raise TypeError("AsyncResult keys are int, slice or str, not %s" % type(key).__name__)

    def get_dict(self, timeout=None) -> dict:
        """The results keyed by engine id (one message per engine)."""
        results = self.get(timeout)
        if self._single:
            results = [results]
        engine_ids = [self._metadata[m]["engine_id"] for m in self.msg_ids]
        if len(set(engine_ids)) != len(engine_ids):
            raise ValueError("cannot key results by engine: some engines ran several of these tasks (%s)"
                             % engine_ids)
        return dict(zip(engine_ids, results))

    @property
    def r(self):
        return self.get()

    @property
    def result_dict(self) -> dict:
        return self.get_dict()

    def abort(self):
        """Abort these tasks where they have not started yet."""
        if self.done():
            raise RuntimeError("can't abort %s: it is already done" % self._fname)
        return self._client.abort(self.msg_ids, targets=self._targets, block=True)

    def __await__(self):
        import asyncio
        return asyncio.wrap_future(self).__await__()

    # -- partial results -----------------------------------------------------------------

    def _message_targets(self) -> list:
        t = self._targets
        if isinstance(t, int):
            return [t]
        if isinstance(t, (list, tuple)) and len(t) == len(self.msg_ids):
            return list(t)
        return [None] * len(self.msg_ids)

    def split(self) -> tuple:
        """One result per message, each done as soon as its message is; for
        concurrent.futures.wait and friends."""
        if len(self.msg_ids) == 1:
            return (self,)
        with _SPLITTING:
            if self._split is None:
                flatten = not isinstance(self, AsyncMapResult)
                children = {}
                for m, t in zip(self.msg_ids, self._message_targets()):
                    child = AsyncResult(self._client, [m], self._fname, t if flatten else [t], single=flatten,
                                        return_exceptions=self._return_exceptions)
                    child._metadata[m] = self._metadata[m]
                    child._submitted = self._submitted
                    children[m] = child
                self._subscribe(lambda m, value, error: children[m]._deliver(m, value, error))
                self._split = tuple(children[m] for m in self.msg_ids)
        return self._split

    @classmethod
    def join(cls, *results):
        """One result over the messages of several (the inverse of split)."""
        if not results:
            raise ValueError("join() needs at least one AsyncResult")
        if len(results) == 1:
            return results[0]
        ids = [m for ar in results for m in ar.msg_ids]
        if len(set(ids)) != len(ids):
            raise ValueError("cannot join results that share messages")
        first = results[0]
        targets = [t for ar in results for t in ar._message_targets()]
        if issubclass(cls, AsyncMapResult):
            joined = AsyncMapResult(first._client, ids, first._fname, targets,
                                    chunk_sizes=[ar._sizes[m] for ar in results for m in ar.msg_ids],
                                    ordered=getattr(first, "ordered", True),
                                    return_exceptions=first._return_exceptions)
        else:
            joined = AsyncResult(first._client, ids, first._fname, targets, single=False,
                                 return_exceptions=first._return_exceptions)
        joined._submitted = min(ar._submitted for ar in results)
        for ar in results:
            for m in ar.msg_ids:
                joined._metadata[m] = ar._metadata[m]
        for ar in results:
            ar._subscribe(joined._deliver)
        return joined

    def _items(self, msg_id, value, error):
        if error is not None:
            if self._return_exceptions:
                yield error
                return
            raise CompositeError("one or more exceptions raised in: %s" % self._fname, [error])
        yield value

    def _iter_results(self, ordered=True, timeout=None, deadline=None):
        """Results as they arrive: in submission order, or in arrival order."""
        if deadline is None and timeout is not None:
            deadline = time.monotonic() + timeout
        for i in range(len(self.msg_ids)):
            with self._lock:
                while True:
                    if ordered:
                        m = self.msg_ids[i]
                        if m in self._values or m in self._errors:
                            break
                    elif len(self._arrival) > i:
                        m = self._arrival[i]
                        break
                    left = None if deadline is None else deadline - time.monotonic()
                    if left is not None and left <= 0:
                        raise TimeoutError("%s: %d of %d results arrived before the timeout"
                                           % (self._fname, len(self._arrival), len(self.msg_ids)))
                    if self._arrived is None:
                        self._arrived = threading.Condition(self._lock)
                    self._arrived.wait(left)
                value, error = self._values.get(m), self._errors.get(m)
            yield from self._items(m, value, error)

    def __iter__(self):
        if self._single:
            raise TypeError("an AsyncResult with a single result is not iterable; use get()")
        return self._iter_results(True)

    # -- output ----------------------------------------------------------------------------

    def display_outputs(self, groupby="type", result_only=False):
        """Print each engine's stdout and stderr, labelled ``[stdout:<engine id>]``.

        groupby: 'type' (all stdout, then all stderr), 'engine' (each engine's together),
        'order' (as 'type'; there are no rich outputs to collate here).
        """
        self._check_ready()
        if result_only:
            return
        if self._single:
            _display_stream(self.stdout)
            _display_stream(self.stderr, file=sys.stderr)
            return
        rows = [(self._metadata[m]["engine_id"], self._metadata[m]["stdout"], self._metadata[m]["stderr"])
                for m in self.msg_ids]
        if groupby == "engine":
            for eid, out, err in rows:
                _display_stream(out, "[stdout:%s] " % eid)
                _display_stream(err, "[stderr:%s] " % eid, file=sys.stderr)
        elif groupby in ("type", "order"):
            for eid, out, _ in rows:
                _display_stream(out, "[stdout:%s] " % eid)
            for eid, _, err in rows:
                _display_stream(err, "[stderr:%s] " % eid, file=sys.stderr)
        else:
            raise ValueError("groupby must be 'type', 'engine' or 'order', not %r" % (groupby,))

    @contextlib.contextmanager
    def stream_output(self, file=None):
        """Print output as the engines produce it, labelled, while the block runs."""
        targets = dict(zip(self.msg_ids, self._message_targets()))

        def show(msg_id, name, text):
            eid = self._metadata[msg_id]["engine_id"]
            eid = targets[msg_id] if eid is None else eid
            out = file or (sys.stderr if name == "stderr" else sys.stdout)
            _display_stream(text, "[%s:%s] " % (name, "?" if eid is None else eid), file=out)

        with self._lock:
            self._stream_listeners += (show,)
        try:
            yield
        finally:
            with self._lock:
                self._stream_listeners = tuple(f for f in self._stream_listeners if f is not show)

    def wait_interactive(self, interval=0.1, timeout=-1, widget=None, return_when=ALL_COMPLETED, file=None):
        """Wait, showing progress: a bar redrawn in place every interval on a terminal;
        otherwise (logs, batch output) a plain line when progress changed, at most every
        PLAIN_PROGRESS_INTERVAL. Raises TimeoutError when timeout runs out."""
        timeout = _timeout(timeout)
        file = sys.stdout if file is None else file
        try:
            tty = file.isatty()
        except (AttributeError, ValueError):
            tty = False
        start = time.monotonic()
        shown = last_line = None
        while True:
            finished = self._reached(return_when)
            n = self.progress
            now = time.monotonic()
            if tty:
                file.write("\r" + self._progress_bar(n, now - start))
                file.flush()
            elif n != shown and (finished or last_line is None or now - last_line >= PLAIN_PROGRESS_INTERVAL):
                file.write("%s: %d/%d tasks done after %.1fs\n" % (self._fname, n, len(self), now - start))
                file.flush()
                shown, last_line = n, now
            if finished:
                break
            if timeout is not None and now - start >= timeout:
                if tty:
                    file.write("\n")
                raise TimeoutError("%s: %d of %d tasks done within %ss" % (self._fname, n, len(self), timeout))
            left = interval if timeout is None else min(interval, max(0, start + timeout - now))
            self.wait(left)
        if tty:
            file.write("\n")
            file.flush()

    def _reached(self, return_when) -> bool:
        if self.done():
            return True
        if return_when == FIRST_COMPLETED:
            return bool(self._arrival)
        if return_when == FIRST_EXCEPTION:
            return bool(self._errors)
        return False

    def _progress_bar(self, n, elapsed) -> str:
        total = len(self)
        frac = n / total if total else 1.0
        filled = int(frac * PROGRESS_BAR_WIDTH)
        return "%s: [%s%s] %3d%% %d/%d tasks %.1fs" % (self._fname, "#" * filled, " " * (PROGRESS_BAR_WIDTH - filled),
                                                       int(frac * 100), n, total, elapsed)


class AsyncMapResult(AsyncResult):
    """A map's result: each message holds a part (a chunk of results), joined in order.

    Iterating yields results as their chunks arrive: in input order, or, with
    ``ordered=False``, in the order chunks complete.
    """

    def __init__(self, client, msg_ids, fname="map", targets=None, chunk_sizes=None, ordered=True,
                 return_exceptions=False):
        super().__init__(client, msg_ids, fname, targets, single=False, return_exceptions=return_exceptions)
        self.ordered = ordered
        if chunk_sizes is not None:
            self._sizes = dict(zip(self.msg_ids, chunk_sizes))

    def _collect(self, values):
        return join_parts(values)

    def _items(self, msg_id, value, error):
        if error is not None:
            yield from super()._items(msg_id, value, error)
        else:
            yield from value

    def __iter__(self):
        return self._iter_results(self.ordered)


def error_from_reply(content: dict, md: dict):
    """The exception for an error reply: a RemoteError, which for minipar's own errors
    (EngineError, the dependency errors, TaskAborted) is also that class."""
    info = content.get("engine_info") or {"engine_id": md.get("engine_id")}
    ename = content.get("ename", "UnknownError")
    return remote_error_class(ename)(ename, content.get("evalue", ""), content.get("traceback", ""), info)


__all__ = ["ALL_COMPLETED", "FIRST_COMPLETED", "FIRST_EXCEPTION", "AsyncMapResult", "AsyncResult"]
