"""Task records in SQLite (stdlib sqlite3), written by a background thread.

The hub must not wait for a disk, so add_record and update_record only queue the record
(about a microsecond); one writer thread owns the connection. It stages what arrives in a
dict by msg_id, merging a task's update into its not yet written insert (most tasks finish
within a batch, so most tasks cost one row write, not two), and writes and commits the
batch every BATCH_RECORDS writes or BATCH_SECONDS after the first uncommitted one,
whichever comes first. Reads go through the same queue and connection: the writer commits
what is staged, then runs the read, so a read sees every write queued before it; and no
connection is ever shared between threads.

What a crash can lose: the writes not yet committed, that is at most the last batch (at
most BATCH_SECONDS of records, plus whatever was still queued behind a slow disk). The
database runs in WAL mode with synchronous=NORMAL: a committed batch survives the
controller being killed; a power cut or OS crash may lose the last committed batches too,
but never corrupts the file. close() (and interpreter exit) commits everything queued.

Storage: one row per task, one column per record key (see :mod:`records`): strings as
TEXT, dates as fixed-width UTC ISO text (so microseconds survive and text order is time
order), dict values as JSON text, buffer lists as one BLOB each (a count, the lengths,
then the bytes; never pickle, since the controller never unpickles). Queries on string and
date keys become SQL on indexed columns; conditions inside dict values are checked in
Python on the rows SQL selected, with the same matcher DictDB uses.

Keep the file on a local disk: WAL mode needs shared memory, which network filesystems
(NFS, Lustre home directories) may not give reliably; ``[db.sqlite] filename`` can point
anywhere, e.g. node-local scratch.

The table is named after the controller session unless ``[db.sqlite] table`` is set, so
each run starts empty unless a fixed table asks to keep history across restarts.
"""
from __future__ import annotations

import concurrent.futures
import json
import logging
import os
import queue
import re
import sqlite3
import struct
import threading
import time
import weakref
from pathlib import Path

from ...config import ConfigError, SQLiteDBConfig
from ...error import TimeoutError
from .base import BaseDB, no_such_record
from .query import matcher, parse
from .records import (BYTES, DATE, INDEXED, JSON, KEY_SET, KINDS, RECORD_KEYS, STR, decode_date,
                      encode_date, nbytes, projection, unknown_keys)

log = logging.getLogger("minipar.controller")

BATCH_RECORDS = 2000
"""Writes per commit at most: a commit costs far more than a row, so batch, but bounded."""

BATCH_SECONDS = 0.1
"""Longest a write waits for its commit: what a crash can lose, in time."""

BACKLOG_LIMIT = 200000
"""Queued writes before add/update wait for the writer, so a slow disk can't eat memory."""

READ_TIMEOUT = 60.0
"""Seconds a read (or close) waits for the writer thread before raising TimeoutError."""

BUSY_TIMEOUT = 10.0
"""Seconds SQLite retries when another process holds the file's write lock."""

IN_LIST_INLINE = 200
"""$in/$nin lists longer than this go through a temp table (SQL parameter limits)."""

DEFAULT_FILENAME = "tasks.db"

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_WRITE, _CALL, _FLUSH, _STOP = range(4)


def default_table(session: str) -> str:
    """A table per controller session: 'tasks_' and the session id made an identifier."""
    return "tasks_" + re.sub(r"[^A-Za-z0-9_]", "_", session) if session else "tasks"


def resolve_filename(filename: str, profile_dir) -> str:
    if filename == ":memory:":
        return filename
    base = Path(profile_dir) / "security" if profile_dir is not None else Path.cwd()
    return str(base / (filename or DEFAULT_FILENAME))


class SQLiteDB(BaseDB):
    """Records in a SQLite table; writes batched by a background thread."""

    config_section = "db.sqlite"
    takes_json_text = True

    def __init__(self, options=None, *, session: str = "", profile_dir=None):
        options = options if options is not None else SQLiteDBConfig()
        super().__init__(options, session=session, profile_dir=profile_dir)
        if options.table and (not _IDENTIFIER.fullmatch(options.table)
                              or options.table.lower().startswith("sqlite_")):
            raise ConfigError("configuration", "db.sqlite.table",
                              "%r is not a usable table name: use letters, digits and _, not "
                              "starting with a digit or sqlite_" % options.table)
        self.table = options.table or default_table(session)
        self.filename = resolve_filename(options.filename, profile_dir)
        conn = _connect(self.filename)
        try:
            self._table = _Table(conn, self.table)
        except sqlite3.Error as e:
            conn.close()
            raise ConfigError("configuration", "db.sqlite.table", "can't use table %r in %s: %s"
                              % (self.table, self.filename, e)) from None
        self._writer = _Writer(conn, self._table, self.filename)
        self._finalizer = weakref.finalize(self, self._writer.stop)
        self._put = self._writer.queue.put
        self._backlog = self._writer.queue.qsize

    # -- writes: queued ------------------------------------------------------------------

    def add_record(self, msg_id, rec):
        if not rec.keys() <= KEY_SET:
            raise unknown_keys(rec)
        self._check_open()
        self._put((_WRITE, self._table.stage_add, (msg_id, rec), None))
        if self._backlog() > BACKLOG_LIMIT:
            self._wait_for_writer()

    def update_record(self, msg_id, changes):
        if not changes.keys() <= KEY_SET:
            raise unknown_keys(changes)
        if "msg_id" in changes and changes["msg_id"] != msg_id:
            raise ValueError("update_record can't change the msg_id of %r" % msg_id)
        self._check_open()
        self._put((_WRITE, self._table.stage_update, (msg_id, changes), None))
        if self._backlog() > BACKLOG_LIMIT:
            self._wait_for_writer()

    def drop_record(self, msg_id):
        self._check_open()
        self._put((_WRITE, self._table.stage_delete, (msg_id,), None))

    def drop_matching_records(self, query):
        self._call(self._table.delete_matching, parse(query))

    def _check_open(self):
        if not self._finalizer.alive:
            raise RuntimeError("the SQLite task database %s is closed" % self.filename)

    def _wait_for_writer(self):
        log.warning("task database: %d writes queued for %s; waiting for the disk to catch up",
                    self._backlog(), self.filename)
        self.flush()

    # -- reads: through the writer, after every queued write ------------------------------

    def get_record(self, msg_id):
        row = self._call(self._table.select_one, msg_id)
        if row is None:
            raise no_such_record(msg_id)
        return _decode(RECORD_KEYS, row)

    def find_records(self, query, keys=None):
        conds = parse(query)
        keys = projection(keys)
        cols, rows, rest = self._call(self._table.select, conds, keys)
        found = [_decode(cols, row) for row in rows]
        if rest:
            match = matcher(rest)
            found = [r for r in found if match(r)]
        if cols != keys:
            found = [{k: r[k] for k in keys} for r in found]
        return found

    def get_history(self):
        return self._call(self._table.history)

    # -- lifetime ------------------------------------------------------------------------

    def flush(self, timeout: float = READ_TIMEOUT) -> None:
        """Commit every write queued so far; return once it is in the file."""
        self._check_open()
        self._writer.request(_FLUSH, None, (), timeout, "commit queued writes")

    def close(self):
        """Commit what is queued, stop the writer, close the file. Idempotent."""
        self._finalizer()

    @property
    def write_errors(self) -> int:
        """Writes or commits that failed (each logged at ERROR with the reason)."""
        return self._writer.errors

    def _call(self, fn, *args):
        self._check_open()
        return self._writer.request(_CALL, fn, args, READ_TIMEOUT, "answer a query")


# ------------------------------------------------------------------ the writer thread


class _Writer:
    """Owns the connection: stages queued writes, commits them in batches, runs reads."""

    def __init__(self, conn, table, filename):
        self.conn = conn
        self.table = table
        self.filename = filename
        self.queue = queue.SimpleQueue()
        self.errors = 0
        self.thread = threading.Thread(target=self._run, name="minipar-sqlite-writer",
                                       daemon=True)
        self.thread.start()

    def request(self, kind, fn, args, timeout, what):
        fut = concurrent.futures.Future()
        if not self.thread.is_alive():
            raise RuntimeError("the SQLite task database writer for %s has stopped" % self.filename)
        self.queue.put((kind, fn, args, fut))
        try:
            return fut.result(timeout)
        except concurrent.futures.TimeoutError:
            raise TimeoutError(
                "the SQLite task database writer did not %s within %gs (%d writes queued "
                "before it); is %s on a slow or locked filesystem? Set [db.sqlite] filename "
                "to a local disk" % (what, timeout, self.queue.qsize(), self.filename)) from None

    def stop(self):
        if self.thread.is_alive():
            try:
                self.request(_STOP, None, (), READ_TIMEOUT, "commit and close")
            finally:
                self.thread.join(READ_TIMEOUT)

    def _run(self):
        get = self.queue.get
        pending = 0
        deadline = 0.0
        while True:
            if pending:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    pending = self._commit()
                    continue
                try:
                    kind, fn, args, fut = get(True, remaining)
                except queue.Empty:
                    continue
            else:
                kind, fn, args, fut = get()
            try:
                if kind == _WRITE:
                    fn(*args)
                    if not pending:
                        deadline = time.monotonic() + BATCH_SECONDS
                    pending += 1
                    if pending >= BATCH_RECORDS:
                        pending = self._commit()
                    continue
                if pending:
                    pending = self._commit()
                if kind == _CALL:
                    try:
                        fut.set_result(fn(*args))
                    except Exception as e:
                        fut.set_exception(e)
                    continue
                if kind == _STOP:
                    try:
                        self.conn.close()
                    finally:
                        fut.set_result(None)
                    return
                fut.set_result(None)
            except Exception:
                self.errors += 1
                log.exception("task database: the writer for %s hit a bug; carrying on",
                              self.filename)

    def _commit(self):
        """Write what is staged in one transaction. Returns the new pending count, 0."""
        table, conn = self.table, self.conn
        n = len(table.staged)
        try:
            conn.execute("BEGIN")
            self.errors += table.apply()
            conn.execute("COMMIT")
        except sqlite3.Error as e:
            self.errors += 1
            log.error("task database: could not commit %d records to %s, they are lost: %s",
                      n, self.filename, e)
            if conn.in_transaction:
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
        return 0


# ------------------------------------------------------------------ the table


def _connect(filename):
    try:
        if filename != ":memory:":
            path = Path(filename)
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            # the records hold every task's code and data: private, like connection files
            os.close(os.open(filename, os.O_CREAT | os.O_WRONLY, 0o600))
        conn = sqlite3.connect(filename, timeout=BUSY_TIMEOUT, isolation_level=None,
                               check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        return conn
    except (OSError, sqlite3.Error) as e:
        raise ConfigError("configuration", "db.sqlite.filename",
                          "can't open the task database %s: %s" % (filename, e)) from None


_COLUMN_TYPE = {BYTES: "BLOB"}
_INSERT, _UPDATE, _DELETE = range(3)


class _Table:
    """SQL for one table. Used by the writer thread only."""

    def __init__(self, conn, name):
        self.conn = conn
        self.name = name
        self.q = q = '"%s"' % name
        cols = ", ".join("%s %s" % (k, _COLUMN_TYPE.get(KINDS[k], "TEXT")) for k in RECORD_KEYS
                         if k != "msg_id")
        conn.execute("CREATE TABLE IF NOT EXISTS %s (msg_id TEXT PRIMARY KEY, %s)" % (q, cols))
        have = {row[1] for row in conn.execute("PRAGMA table_info(%s)" % q)}
        if "msg_id" not in have:
            raise sqlite3.OperationalError("it exists without a msg_id column: not a task table")
        for k in RECORD_KEYS:
            if k not in have:
                conn.execute("ALTER TABLE %s ADD COLUMN %s %s"
                             % (q, k, _COLUMN_TYPE.get(KINDS[k], "TEXT")))
        for k in INDEXED:
            conn.execute('CREATE INDEX IF NOT EXISTS "%s_%s" ON %s (%s)' % (name, k, q, k))
        self.insert_sql = "INSERT OR REPLACE INTO %s (%s) VALUES (%s)" % (
            q, ", ".join(RECORD_KEYS), ", ".join("?" * len(RECORD_KEYS)))
        self.update_sql: dict = {}
        self.staged: dict = {}
        self.all_cols = ", ".join(RECORD_KEYS)

    # staging, in the writer thread: one entry per msg_id, [op, fields]

    def stage_add(self, msg_id, rec):
        self.staged[msg_id] = [_INSERT, dict(rec)]

    def stage_update(self, msg_id, changes):
        entry = self.staged.get(msg_id)
        if entry is None:
            self.staged[msg_id] = [_UPDATE, dict(changes)]
        elif entry[0] == _DELETE:
            self.staged[msg_id] = [_INSERT, dict(changes)]
        else:
            entry[1].update(changes)

    def stage_delete(self, msg_id):
        self.staged[msg_id] = [_DELETE, None]

    def apply(self) -> int:
        """Write the staged entries (inside the caller's transaction); count failures."""
        staged, self.staged = self.staged, {}
        rows, deletes, failed = [], [], 0
        for msg_id, (op, fields) in staged.items():
            try:
                if op == _INSERT:
                    rows.append(self.row(msg_id, fields))
                elif op == _UPDATE:
                    self.update(msg_id, fields)
                else:
                    deletes.append((msg_id,))
            except Exception as e:
                failed += 1
                log.error("task database: can't store the record of task %r: %s: %s",
                          msg_id, type(e).__name__, e)
        if rows:
            self.conn.executemany(self.insert_sql, rows)
        if deletes:
            self.conn.executemany("DELETE FROM %s WHERE msg_id = ?" % self.q, deletes)
        return failed

    def row(self, msg_id, rec):
        row = [msg_id]
        get = rec.get
        for key, encode in _ENCODERS:
            value = get(key)
            if value is not None and encode is not None:
                value = encode(value)
            row.append(value)
        return row

    def update(self, msg_id, changes):
        keys = tuple(k for k in changes if k != "msg_id")
        if not keys:
            return
        sql = self.update_sql.get(keys)
        if sql is None:
            sql = self.update_sql[keys] = "UPDATE %s SET %s WHERE msg_id = ?" % (
                self.q, ", ".join("%s = ?" % k for k in keys))
        cur = self.conn.execute(sql, [_encode(k, changes[k]) for k in keys] + [msg_id])
        if cur.rowcount == 0:
            self.conn.execute(self.insert_sql, self.row(msg_id, changes))

    # reads and matching deletes, in the writer thread once the staged writes are committed

    def select_one(self, msg_id):
        return self.conn.execute("SELECT %s FROM %s WHERE msg_id = ?" % (self.all_cols, self.q),
                                 (msg_id,)).fetchone()

    def history(self):
        return [r[0] for r in self.conn.execute(
            "SELECT msg_id FROM %s ORDER BY submitted, msg_id" % self.q)]

    def select(self, conds, keys):
        """Rows for conditions: (columns, rows, conditions still to check in Python)."""
        where, args, rest, temps = self._where(conds)
        cols = keys
        if rest:
            cols = tuple(dict.fromkeys(keys + tuple(c.key for c in rest)))
        try:
            rows = self.conn.execute("SELECT %s FROM %s%s ORDER BY submitted, msg_id"
                                     % (", ".join(cols), self.q, where), args).fetchall()
        finally:
            self._drop_temps(temps)
        return cols, rows, rest

    def delete_matching(self, conds):
        where, args, rest, temps = self._where(conds)
        try:
            if not rest:
                self.conn.execute("DELETE FROM %s%s" % (self.q, where), args)
                return
            cols = tuple(dict.fromkeys(("msg_id",) + tuple(c.key for c in rest)))
            rows = self.conn.execute("SELECT %s FROM %s%s" % (", ".join(cols), self.q, where),
                                     args).fetchall()
        finally:
            self._drop_temps(temps)
        match = matcher(rest)
        doomed = [(r["msg_id"],) for r in (_decode(cols, row) for row in rows) if match(r)]
        with self.conn:
            self.conn.execute("BEGIN")
            self.conn.executemany("DELETE FROM %s WHERE msg_id = ?" % self.q, doomed)

    def _where(self, conds):
        clauses, args, rest, temps = [], [], [], []
        for c in conds:
            clause = self._clause(c, args, temps)
            if clause is None:
                rest.append(c)
            else:
                clauses.append(clause)
        where = " WHERE " + " AND ".join(clauses) if clauses else ""
        return where, args, rest, temps

    def _clause(self, c, args, temps):
        """SQL for one condition, or None if it must be checked in Python. NULL is how
        an unset key is stored, and SQL's NULL logic is spelled out to match Python's."""
        col, op, x = c.key, c.op, c.value
        if c.path:
            return None
        if op == "$exists":
            return "%s IS %sNULL" % (col, "NOT " if x else "")
        if x is None and op in ("$eq", "$ne"):
            return "%s IS %sNULL" % (col, "NOT " if op == "$ne" else "")
        if KINDS[col] not in (DATE, STR):
            return None
        enc = encode_date if KINDS[col] == DATE else (lambda v: v)
        if op == "$eq":
            args.append(enc(x))
            return "%s = ?" % col
        if op == "$ne":
            args.append(enc(x))
            return "(%s IS NULL OR %s != ?)" % (col, col)
        if op in ("$in", "$nin"):
            has_none = any(v is None for v in x)
            values = [enc(v) for v in x if v is not None]
            if not values:
                inside = "0"
            elif len(values) <= IN_LIST_INLINE:
                args.extend(values)
                inside = "%s IN (%s)" % (col, ", ".join("?" * len(values)))
            else:
                temp = "_minipar_in_%d" % len(temps)
                self.conn.execute("CREATE TEMP TABLE IF NOT EXISTS %s (v TEXT)" % temp)
                self.conn.execute("DELETE FROM temp.%s" % temp)
                self.conn.executemany("INSERT INTO temp.%s VALUES (?)" % temp,
                                      [(v,) for v in values])
                temps.append(temp)
                inside = "%s IN (SELECT v FROM temp.%s)" % (col, temp)
            if op == "$in":
                return "(%s IS NULL OR %s)" % (col, inside) if has_none else inside
            if has_none:
                return "(%s IS NOT NULL AND NOT %s)" % (col, inside)
            return "(%s IS NULL OR NOT %s)" % (col, inside)
        args.append(enc(x))
        return "%s %s ?" % (col, {"$lt": "<", "$lte": "<=", "$gt": ">", "$gte": ">="}[op])

    def _drop_temps(self, temps):
        for temp in temps:
            self.conn.execute("DROP TABLE IF EXISTS temp.%s" % temp)


# ------------------------------------------------------------------ values


def _encode(key, value):
    if value is None:
        return None
    encode = _ENCODE.get(KINDS[key])
    return value if encode is None else encode(value)


_json_encode = json.JSONEncoder(separators=(",", ":")).encode


def _json(value) -> str:
    """JSON text for a json-kind value; text received as bytes is stored as it came."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).decode("utf-8")
    return _json_encode(value)


def pack(bufs) -> bytes:
    """A list of buffers as one blob: count, lengths (uint32, uint64 each), then the bytes."""
    views = [memoryview(b).cast("B") if type(b) is not bytes else b for b in bufs]
    head = struct.pack("<I%dQ" % len(views), len(views), *(nbytes(v) for v in views))
    return b"".join([head] + views)


def unpack(blob: bytes) -> list:
    n, = struct.unpack_from("<I", blob)
    pos = 4 + 8 * n
    out = []
    for length in struct.unpack_from("<%dQ" % n, blob, 4):
        out.append(bytes(blob[pos:pos + length]))
        pos += length
    return out


_ENCODE = {DATE: encode_date, JSON: _json, BYTES: pack}
_ENCODERS = [(k, _ENCODE.get(KINDS[k])) for k in RECORD_KEYS[1:]]
_DECODE = {DATE: decode_date, JSON: json.loads, BYTES: unpack}


def _decode(cols, row) -> dict:
    out = {}
    for key, value in zip(cols, row):
        if value is not None:
            dec = _DECODE.get(KINDS[key])
            if dec is not None:
                value = dec(value)
        out[key] = value
    return out
