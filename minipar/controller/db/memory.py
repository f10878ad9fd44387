"""In-memory stores: DictDB (the default) and NoDB (keeps nothing).

DictDB keeps what the hub hands it with next to no work on the hub's hot path, and small:
a record is a list with one slot per key (not a 20-key dict), JSON parts stay the frames'
JSON text when given so (~150 bytes, where a decoded header is ~700), small buffers are
copied out of their zmq.Frame (a frame pins libzmq's whole receive batch, kilobytes, for
as long as it lives), and the client and engine ids are interned. The conversions every
backend owes a reader (decoding, bytes, UTC dates, copies) happen on the way out, off the
hot path. About 2 KB per finished tiny task besides its buffers, where plain dicts took ~5 KB.

Memory stays bounded by ``[db.dict] record_limit`` and ``size_limit``. When a write takes
the store over either, the oldest *completed* records go, in the order they completed,
until it is ``cull_fraction`` below the limit, so culls come in batches and cost O(1) per
record stored. Records of pending tasks are never culled: their results can't be got any
other way. If pending records alone exceed a limit, the limit is exceeded (logged once).
"""
from __future__ import annotations

import logging
import sys
from collections import OrderedDict

from ...config import ConfigError, DictDBConfig
from .base import BaseDB, NoRecords, no_such_record
from .query import matcher, parse
from .records import (BYTES, JSON, KEY_SET, KINDS, RECORD_KEYS, buffers_size, export, history_key, json_value,
                      projection, unknown_keys)

log = logging.getLogger("minipar.controller")

CULLED_REMEMBERED = 10000
"""Culled msg_ids remembered, so asking for one says it was culled rather than unknown."""

COPY_BELOW = 65536
"""Buffers smaller than this are kept as bytes, not as the zmq.Frame they arrived in: a small
frame holds on to the receive buffer it was decoded from."""

SLOT = {key: i for i, key in enumerate(RECORD_KEYS)}
MSG_ID, COMPLETED = SLOT["msg_id"], SLOT["completed"]
BUFFERS, RESULT_BUFFERS = SLOT["buffers"], SLOT["result_buffers"]
_INTERNED = frozenset(("client_uuid", "engine_uuid", "queue"))
_EMPTY_JSON = b"{}"


def _compact_json(value):
    return _EMPTY_JSON if type(value) is bytes and value == _EMPTY_JSON else value


def _compact_buffers(value):
    return [b if type(b) is bytes or _size(b) >= COPY_BELOW else bytes(b) for b in value]


def _compact_interned(value):
    return sys.intern(value) if type(value) is str else value


_COMPACTORS = {key: _compact_json if kind == JSON else _compact_buffers if kind == BYTES
               else _compact_interned if key in _INTERNED else None for key, kind in KINDS.items()}
"""Per key, what a record slot keeps of a value (None: the value itself). Looked up once per
key: the hub writes two records a task."""


def _size(buf) -> int:
    try:
        return len(buf) if type(buf) is not memoryview else buf.nbytes
    except TypeError:
        return memoryview(buf).nbytes


class _Row:
    """A record's slot list read as a dict, as :func:`records.export` reads a record."""

    __slots__ = ("row",)

    def __init__(self, row):
        self.row = row

    def get(self, key, default=None):
        value = self.row[SLOT[key]]
        return default if value is None else value


class _Decoded(_Row):
    """The same for queries, which look into JSON values: JSON text is decoded when asked for."""

    __slots__ = ()

    def get(self, key, default=None):
        value = self.row[SLOT[key]]
        if value is None:
            return default
        return json_value(value) if KINDS[key] == JSON else value


def _row_key(row):
    return history_key(_Row(row))


class DictDB(BaseDB):
    """Records in a dict, bounded by count and buffer bytes; the default and fastest."""

    config_section = "db.dict"
    takes_json_text = True

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
        self._cull_records_at = self.record_limit
        self._cull_bytes_at = self.size_limit
        self._cull_batch = max(1, self.record_limit * self.cull_fraction)

    # -- writes (the hub's hot path) ----------------------------------------------------

    def add_record(self, msg_id, rec):
        if not rec.keys() <= KEY_SET:
            raise unknown_keys(rec)
        records = self._records
        if msg_id in records:
            self._forget(msg_id)
        row = [None] * len(RECORD_KEYS)
        for key, value in rec.items():
            if value is not None:
                compactor = _COMPACTORS[key]
                row[SLOT[key]] = value if compactor is None else compactor(value)
        row[MSG_ID] = msg_id
        records[msg_id] = row
        size = buffers_size(row[BUFFERS]) + buffers_size(row[RESULT_BUFFERS])
        if size:
            self._bytes += size
        if row[COMPLETED] is not None:
            self._completed[msg_id] = None
        if (len(records) > self.record_limit or self._bytes > self.size_limit) and self._cull_due():
            self._cull()

    def update_record(self, msg_id, changes):
        if not changes.keys() <= KEY_SET:
            raise unknown_keys(changes)
        if "msg_id" in changes and changes["msg_id"] != msg_id:
            raise ValueError("update_record can't change the msg_id of %r" % msg_id)
        row = self._records.get(msg_id)
        if row is None:
            self.add_record(msg_id, changes)
            return
        for key, value in changes.items():
            compactor = _COMPACTORS[key]
            if compactor is not None and value is not None:
                value = compactor(value)
            slot = SLOT[key]
            if compactor is _compact_buffers:
                self._bytes += buffers_size(value) - buffers_size(row[slot])
            row[slot] = value
        if "completed" in changes:
            if changes["completed"] is None:
                self._completed.pop(msg_id, None)
            elif msg_id not in self._completed:
                self._completed[msg_id] = None
        if (len(self._records) > self.record_limit or self._bytes > self.size_limit) and self._cull_due():
            self._cull()

    def _forget(self, msg_id):
        row = self._records.pop(msg_id)
        self._bytes -= buffers_size(row[BUFFERS]) + buffers_size(row[RESULT_BUFFERS])
        self._completed.pop(msg_id, None)
        return row

    def _cull_due(self) -> bool:
        """Over a limit: cull now if that frees a batch, or the store grew a batch since the
        last cull, which pending records kept from its target."""
        return (len(self._records) > self._cull_records_at or self._bytes > self._cull_bytes_at
                or len(self._completed) >= self._cull_batch)

    def _cull(self):
        keep = 1 - self.cull_fraction
        keep_records = self.record_limit * keep if self.options.record_limit else float("inf")
        keep_bytes = self.size_limit * keep if self.options.size_limit else float("inf")
        records, completed, culled = self._records, self._completed, self._culled
        n = 0
        while completed and (len(records) > keep_records or self._bytes > keep_bytes):
            msg_id = completed.popitem(last=False)[0]
            row = records.pop(msg_id)
            self._bytes -= buffers_size(row[BUFFERS]) + buffers_size(row[RESULT_BUFFERS])
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
        # When pending records keep the store over a limit, the next cull waits for another
        # batch of records, not just one more: culls stay batched, and logged once a batch.
        self._cull_records_at = max(self.record_limit, len(records) + self.record_limit * self.cull_fraction)
        self._cull_bytes_at = max(self.size_limit, self._bytes + self.size_limit * self.cull_fraction)

    # -- reads ---------------------------------------------------------------------------

    def get_record(self, msg_id):
        row = self._records.get(msg_id)
        if row is None:
            if msg_id in self._culled:
                raise KeyError("record of task %r was culled from the in-memory task database "
                               "to stay within db.dict record_limit/size_limit; raise them, or "
                               "use db = 'sqlite' to keep every record" % (msg_id,))
            raise no_such_record(msg_id)
        return export(_Row(row))

    def _matching(self, query) -> list:
        match = matcher(parse(query))
        return [row for row in self._records.values() if match(_Decoded(row))]

    def find_records(self, query, keys=None):
        keys = projection(keys)
        return [export(_Row(row), keys) for row in sorted(self._matching(query), key=_row_key)]

    def get_history(self):
        return [row[MSG_ID] for row in sorted(self._records.values(), key=_row_key)]

    def drop_record(self, msg_id):
        if msg_id in self._records:
            self._forget(msg_id)

    def drop_matching_records(self, query):
        for row in self._matching(query):
            self._forget(row[MSG_ID])

    def __len__(self):
        return len(self._records)

    @property
    def buffer_bytes(self) -> int:
        """Bytes of buffers and result_buffers held, as counted against size_limit."""
        return self._bytes


class NoDB(BaseDB):
    """Keeps no records: the hub still routes every task, but nothing can be looked up."""

    keeps_records = False
    takes_json_text = True

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
