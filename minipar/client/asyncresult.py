"""AsyncResult: a concurrent.futures.Future over one or more submitted messages.

Being a real Future, it works with ``concurrent.futures.wait``, ``asyncio.wrap_future``
and ``await``. The client's I/O thread fills it in as replies arrive; user threads only
read it.
"""
from __future__ import annotations

import concurrent.futures
import threading
import time
from datetime import datetime

from ..error import CompositeError, EngineError, RemoteError, TimeoutError

_FutureTimeout = concurrent.futures.TimeoutError


def _datetime(ts):
    return datetime.fromtimestamp(ts) if ts is not None else None


class AsyncResult(concurrent.futures.Future):
    """The pending result of submitted work: one value, or a list with one entry per message."""

    def __init__(self, client, msg_ids, fname="unknown", targets=None, single=True):
        super().__init__()
        self._client = client
        self.msg_ids = list(msg_ids)
        self._fname = fname
        self._targets = targets
        self._single = single and len(self.msg_ids) == 1
        self._values: dict = {}
        self._errors: dict = {}
        self._metadata = {m: {"submitted": None, "engine_id": None, "stdout": "", "stderr": "",
                              "started": None, "completed": None, "received": None, "status": None}
                          for m in self.msg_ids}
        self._lock = threading.Lock()
        self._submitted = time.time()
        self._completed = None
        self.set_running_or_notify_cancel()

    def __repr__(self):
        state = "finished" if self.done() else "pending"
        return "<%s: %s:%s>" % (type(self).__name__, self._fname, state)

    # -- filled in by the client's I/O thread -------------------------------------------

    def _set_submitted(self, msg_id, when):
        self._metadata[msg_id]["submitted"] = _datetime(when)

    def _stream(self, msg_id, name, text):
        md = self._metadata.get(msg_id)
        if md is not None and md["completed"] is None:
            md[name] += text

    def _reply(self, msg_id, md, value=None, error=None):
        record = self._metadata[msg_id]
        record.update(engine_id=md.get("engine_id"), engine_uuid=md.get("engine_uuid"),
                      started=_datetime(md.get("started")), completed=_datetime(md.get("completed")),
                      received=datetime.now(), status=md.get("status", "error" if error else "ok"),
                      stdout=md.get("stdout", ""), stderr=md.get("stderr", ""), error=error)
        with self._lock:
            if error is not None:
                self._errors[msg_id] = error
            else:
                self._values[msg_id] = value
            finished = len(self._values) + len(self._errors) == len(self.msg_ids)
        if finished:
            self._finish()

    def _finish(self):
        self._completed = time.time()
        if self._errors:
            errors = [self._errors[m] for m in self.msg_ids if m in self._errors]
            if self._single:
                self.set_exception(errors[0])
            else:
                self.set_exception(CompositeError("one or more exceptions raised in %s" % self._fname, errors))
        else:
            self.set_result(self._collect([self._values[m] for m in self.msg_ids]))

    def _collect(self, values):
        return values[0] if self._single else values

    # -- the ipyparallel interface ---------------------------------------------------------

    def get(self, timeout=None):
        """The result; raises RemoteError/CompositeError/EngineError, or TimeoutError."""
        if timeout is not None and timeout < 0:
            timeout = None
        try:
            return self.result(timeout)
        except _FutureTimeout:
            raise TimeoutError("%s: %d of %d results arrived within %ss"
                               % (self._fname, self.progress, len(self.msg_ids), timeout)) from None

    def wait(self, timeout=None) -> bool:
        if timeout is not None and timeout < 0:
            timeout = None
        concurrent.futures.wait([self], timeout)
        return self.done()

    def ready(self) -> bool:
        return self.done()

    def successful(self) -> bool:
        assert self.done(), "the result is not ready yet: check ar.ready() first"
        return self.exception() is None

    @property
    def progress(self) -> int:
        return len(self._values) + len(self._errors)

    @property
    def elapsed(self) -> float:
        end = self._completed if self._completed is not None else time.time()
        return end - self._submitted

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

    def __await__(self):
        import asyncio
        return asyncio.wrap_future(self).__await__()

    def __len__(self):
        return len(self.msg_ids)


class AsyncMapResult(AsyncResult):
    """A map's result: each message holds a list (a chunk), flattened in order."""

    def __init__(self, client, msg_ids, fname="map", targets=None):
        super().__init__(client, msg_ids, fname, targets, single=False)

    def _collect(self, values):
        out = []
        for chunk in values:
            out.extend(chunk)
        return out

    def __iter__(self):
        return iter(self.get())


def error_from_reply(content: dict, md: dict):
    info = content.get("engine_info") or {"engine_id": md.get("engine_id")}
    if content.get("ename") == "EngineError":
        return EngineError(content.get("evalue", ""), info, content.get("traceback", ""))
    return RemoteError(content.get("ename", "UnknownError"), content.get("evalue", ""),
                       content.get("traceback", ""), info)
