"""The task record schema every backend shares, and the conversions around it.

A record has a fixed set of keys, each of one kind. The kind decides how a backend stores
the value and which queries make sense on it; fixing the schema is what lets SQLite, MongoDB
and the in-memory store answer every query the same way. A key that was never set reads as
None, and None counts as absent (``$exists``), since a SQL column always exists.

Kinds:
  str    a string or None
  date   a ``datetime`` or None. Aware datetimes are kept as instants and come back in UTC;
         naive ones are taken as local time (as ``datetime.now()`` and
         ``datetime.fromtimestamp`` give them). Stored as fixed-width UTC ISO text by SQLite
         and MongoDB, so microseconds survive (BSON dates keep only milliseconds) and text
         order is time order.
  json   a JSON value, normally a dict (headers, contents, metadata, error), or None. It must
         survive ``json.dumps``/``json.loads`` unchanged (str keys, lists not tuples), as
         what comes out of a JSON message does. A writer may give it as ``bytes``: its UTF-8
         JSON text, as the message frame carried it. The hub does, which spares it decoding
         parts it never reads and lets DictDB keep ~150 bytes instead of a ~700-byte dict;
         it reads back decoded, as any other value (:func:`json_value`).
  bytes  a list of bytes-like objects (bytes, memoryview, zmq.Frame...), or None; read back
         as a list of ``bytes``.
"""
from __future__ import annotations

import difflib
import json
from datetime import datetime, timezone

STR, DATE, JSON, BYTES = "str", "date", "json", "bytes"

KINDS = {
    "msg_id": STR,
    "header": JSON,
    "metadata": JSON,
    "content": JSON,
    "buffers": BYTES,
    "submitted": DATE,
    "client_uuid": STR,
    "engine_uuid": STR,
    "started": DATE,
    "completed": DATE,
    "received": DATE,
    "resubmitted": STR,
    "result_header": JSON,
    "result_content": JSON,
    "result_metadata": JSON,
    "result_buffers": BYTES,
    "queue": STR,
    "stdout": STR,
    "stderr": STR,
    "error": JSON,
}
RECORD_KEYS = tuple(KINDS)
KEY_SET = frozenset(KINDS)

INDEXED = ("submitted", "completed", "client_uuid", "engine_uuid", "queue")
"""Keys the hub and clients query by; SQLite and MongoDB index them (msg_id is the key)."""

UTC = timezone.utc


def unknown_keys(keys, what: str = "task record") -> ValueError:
    """The error for keys outside the schema, with a close match when there is one."""
    bad = sorted(k for k in keys if k not in KEY_SET)
    hint = ""
    close = difflib.get_close_matches(bad[0], RECORD_KEYS, n=1) if bad else []
    if close:
        hint = "; did you mean %r?" % close[0]
    return ValueError("unknown %s key%s %s%s (a record has: %s)" % (
        what, "s" if len(bad) > 1 else "", ", ".join(repr(k) for k in bad), hint,
        ", ".join(RECORD_KEYS)))


def check_keys(keys) -> None:
    if not keys <= KEY_SET:
        raise unknown_keys(keys)


def projection(keys) -> tuple:
    """The keys a find_records call returns: all, or the asked ones plus msg_id (as
    ipyparallel does, so a result can always be matched to its task)."""
    if not keys:
        return RECORD_KEYS
    if isinstance(keys, str):
        keys = [keys]
    keys = list(keys)
    check_keys(set(keys))
    if "msg_id" not in keys:
        keys.insert(0, "msg_id")
    return tuple(dict.fromkeys(keys))


# ---------------------------------------------------------------- dates


def as_utc(d: datetime) -> datetime:
    if d.tzinfo is UTC:
        return d
    return d.astimezone(UTC)


def encode_date(d: datetime) -> str:
    u = as_utc(d)
    return "%04d-%02d-%02dT%02d:%02d:%02d.%06d+00:00" % (
        u.year, u.month, u.day, u.hour, u.minute, u.second, u.microsecond)


def decode_date(text: str) -> datetime:
    return datetime.fromisoformat(text)


# ---------------------------------------------------------------- buffers


try:
    from zmq import Frame as _Frame
except ImportError:  # the records don't need zmq, only the hub hands them frames
    _Frame = bytes

_LEN_IS_NBYTES = frozenset((bytes, bytearray, _Frame))


def nbytes(buf) -> int:
    if type(buf) in _LEN_IS_NBYTES:
        return len(buf)
    return memoryview(buf).nbytes


def buffers_size(bufs) -> int:
    if not bufs:
        return 0
    n = 0
    for b in bufs:
        n += len(b) if type(b) in _LEN_IS_NBYTES else memoryview(b).nbytes
    return n


def as_bytes(bufs):
    if bufs is None:
        return None
    return [b if type(b) is bytes else bytes(memoryview(b).cast("B")) for b in bufs]


# ---------------------------------------------------------------- reading out


def clone(value):
    """A private copy of a JSON value, so a caller can't change what the store holds."""
    if isinstance(value, dict):
        return {k: clone(v) for k, v in value.items()}
    if isinstance(value, list):
        return [clone(v) for v in value]
    return value


_JSON_TEXT = (bytes, bytearray, memoryview)


def json_value(value):
    """A json-kind value as written (the value, or its JSON text as bytes) as a value; a
    dict comes back as is: copy it before handing it out."""
    if isinstance(value, _JSON_TEXT):
        return json.loads(value.tobytes() if type(value) is memoryview else value)
    return value


def decode_json_text(rec: dict) -> dict:
    """The record with any JSON text decoded, for a store that wants values."""
    return {k: json_value(v) if v is not None and KINDS.get(k) == JSON else v for k, v in rec.items()}


def export(rec: dict, keys=RECORD_KEYS) -> dict:
    """A record as every backend returns it: each asked key present, dates aware UTC,
    buffers as bytes, dicts copied (JSON text decoded)."""
    out = {}
    for key in keys:
        value = rec.get(key)
        if value is not None:
            kind = KINDS[key]
            if kind == DATE:
                value = as_utc(value)
            elif kind == BYTES:
                value = as_bytes(value)
            elif kind == JSON:
                value = json_value(value) if isinstance(value, _JSON_TEXT) else clone(value)
        out[key] = value
    return out


def history_key(rec: dict):
    """Order of get_history and find_records: by submitted (unknown first), then msg_id."""
    sub = rec.get("submitted")
    if sub is None:
        return (False, None, rec.get("msg_id") or "")
    return (True, as_utc(sub), rec.get("msg_id") or "")
