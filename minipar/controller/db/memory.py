"""In-memory stores: DictDB (the default) and NoDB (keeps nothing).

DictDB keeps the very dicts and buffer objects (zmq.Frame, memoryview) the hub hands it, so
a write costs a couple of dict operations; the conversions every backend owes a reader
(bytes, UTC dates, copies) happen on the way out, off the hub's hot path.

Memory stays bounded by ``[db.dict] record_limit`` and ``size_limit``. When a write takes
the store over either, the oldest *completed* records go, in the order they completed,
until it is ``cull_fraction`` below the limit, so culls come in batches and cost O(1) per
record stored. Records of pending tasks are never culled: their results can't be got any
other way. If pending records alone exceed a limit, the limit is exceeded (logged once).
"""
from __future__ import annotations

import logging
from collections import OrderedDict

from ...config import ConfigError, DictDBConfig
from .base import BaseDB, NoRecords, no_such_record
from .query import matcher, parse
from .records import KEY_SET, buffers_size, export, history_key, projection, unknown_keys

log = logging.getLogger("minipar.controller")

CULLED_REMEMBERED = 10000
"""Culled msg_ids remembered, so asking for one says it was culled rather than unknown."""


class DictDB(BaseDB):
    """Records in a dict, bounded by count and buffer bytes; the default and fastest."""

    config_section = "db.dict"

    def __init__(self, options=None, *, session: str = "", profile_dir=None):
        options = options if options is not None else DictDBConfig()
        super().__init__(options, session=session, profile_dir=profile_dir)
        for key in ("record_limit", "size_limit"):
            if getattr(options, key) < 0:
                raise ConfigError("configuration", "db.dict." + key,
                                  "must be 0 (no limit) or more, got %r" % getattr(options, key))
        if not 0 <= options.cull_fraction <= 1:
            raise ConfigError("configuration", "db.dict.cull_fraction",
                              "must be between 0 and 1, got %r" % options.cull_fraction)
        self.record_limit = options.record_limit or float("inf")
        self.size_limit = options.size_limit or float("inf")
        self.cull_fraction = options.cull_fraction
        self._records: dict = {}
        self._completed: OrderedDict = OrderedDict()
        self._culled: OrderedDict = OrderedDict()
        self._bytes = 0
        self._warned = False

    # -- writes (the hub's hot path) ----------------------------------------------------

    def add_record(self, msg_id, rec):
        if not rec.keys() <= KEY_SET:
            raise unknown_keys(rec)
        records = self._records
        if msg_id in records:
            self._forget(msg_id)
        rec["msg_id"] = msg_id
        records[msg_id] = rec
        size = buffers_size(rec.get("buffers")) + buffers_size(rec.get("result_buffers"))
        if size:
            self._bytes += size
        if rec.get("completed") is not None:
            self._completed[msg_id] = None
        if len(records) > self.record_limit or self._bytes > self.size_limit:
            self._cull()

    def update_record(self, msg_id, changes):
        if not changes.keys() <= KEY_SET:
            raise unknown_keys(changes)
        if "msg_id" in changes and changes["msg_id"] != msg_id:
            raise ValueError("update_record can't change the msg_id of %r" % msg_id)
        rec = self._records.get(msg_id)
        if rec is None:
            self.add_record(msg_id, dict(changes))
            return
        for key in ("buffers", "result_buffers"):
            if key in changes:
                self._bytes += buffers_size(changes[key]) - buffers_size(rec.get(key))
        if "completed" in changes:
            if changes["completed"] is None:
                self._completed.pop(msg_id, None)
            elif msg_id not in self._completed:
                self._completed[msg_id] = None
        rec.update(changes)
        if len(self._records) > self.record_limit or self._bytes > self.size_limit:
            self._cull()

    def _forget(self, msg_id):
        rec = self._records.pop(msg_id)
        self._bytes -= buffers_size(rec.get("buffers")) + buffers_size(rec.get("result_buffers"))
        self._completed.pop(msg_id, None)
        return rec

    def _cull(self):
        keep = 1 - self.cull_fraction
        keep_records = self.record_limit * keep if self.options.record_limit else float("inf")
        keep_bytes = self.size_limit * keep if self.options.size_limit else float("inf")
        records, completed, culled = self._records, self._completed, self._culled
        n = 0
        while completed and (len(records) > keep_records or self._bytes > keep_bytes):
            msg_id = completed.popitem(last=False)[0]
            rec = records.pop(msg_id)
            self._bytes -= buffers_size(rec.get("buffers")) + buffers_size(rec.get("result_buffers"))
            culled[msg_id] = None
            n += 1
        while len(culled) > CULLED_REMEMBERED:
            culled.popitem(last=False)
        if n:
            log.info("task database: culled the %d oldest completed records (db.dict "
                     "record_limit %s, size_limit %s bytes)", n, self.options.record_limit,
                     self.options.size_limit)
        over = len(self._records) > self.record_limit or self._bytes > self.size_limit
        if over and not self._warned:
            log.warning("task database: %d records (%d bytes of buffers) are over the db.dict "
                        "limits (record_limit %s, size_limit %s) and all belong to pending "
                        "tasks, which are never culled; memory grows until they complete",
                        len(self._records), self._bytes, self.options.record_limit,
                        self.options.size_limit)
        self._warned = over

    # -- reads ---------------------------------------------------------------------------

    def get_record(self, msg_id):
        rec = self._records.get(msg_id)
        if rec is None:
            if msg_id in self._culled:
                raise KeyError("record of task %r was culled from the in-memory task database "
                               "to stay within db.dict record_limit/size_limit; raise them, or "
                               "use db = 'sqlite' to keep every record" % (msg_id,))
            raise no_such_record(msg_id)
        return export(rec)

    def find_records(self, query, keys=None):
        match = matcher(parse(query))
        keys = projection(keys)
        found = sorted((r for r in self._records.values() if match(r)), key=history_key)
        return [export(r, keys) for r in found]

    def get_history(self):
        return [r["msg_id"] for r in sorted(self._records.values(), key=history_key)]

    def drop_record(self, msg_id):
        if msg_id in self._records:
            self._forget(msg_id)

    def drop_matching_records(self, query):
        match = matcher(parse(query))
        for msg_id in [m for m, r in self._records.items() if match(r)]:
            self._forget(msg_id)

    def __len__(self):
        return len(self._records)

    @property
    def buffer_bytes(self) -> int:
        """Bytes of buffers and result_buffers held, as counted against size_limit."""
        return self._bytes


class NoDB(BaseDB):
    """Keeps no records: the hub still routes every task, but nothing can be looked up."""

    keeps_records = False

    def add_record(self, msg_id, rec):
        pass

    def update_record(self, msg_id, changes):
        pass

    def drop_record(self, msg_id):
        pass

    def drop_matching_records(self, query):
        pass

    def _none(self, *args, **kwargs):
        raise NoRecords("the controller runs with db = 'nodb' and keeps no task records; set "
                        "[controller] db = \"dict\" (or \"sqlite\") to look tasks up, fetch "
                        "other clients' results or resubmit")

    get_record = find_records = get_history = _none

