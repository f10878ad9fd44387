"""JSON for task records and queries: datetimes and bytes, which plain JSON lacks.

A datetime travels as ``{"$date": "<ISO 8601>"}``; a bytes-like value as
``{"$buffer": i}``, its bytes going as the message's i-th raw buffer frame, so records
with large payloads cross the wire without base64.
"""
from __future__ import annotations

from datetime import datetime


def encode(value, buffers: list):
    """A JSON-able copy of value; bytes-like leaves are appended to buffers."""
    if isinstance(value, dict):
        return {k: encode(v, buffers) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [encode(v, buffers) for v in value]
    if isinstance(value, datetime):
        return {"$date": value.isoformat()}
    if isinstance(value, (bytes, bytearray, memoryview)):
        buffers.append(value)
        return {"$buffer": len(buffers) - 1}
    return value


def decode(value, buffers=()):
    if isinstance(value, dict):
        if len(value) == 1:
            if "$date" in value:
                return datetime.fromisoformat(value["$date"])
            if "$buffer" in value:
                b = buffers[value["$buffer"]]
                return b if isinstance(b, bytes) else bytes(getattr(b, "buffer", b))
        return {k: decode(v, buffers) for k, v in value.items()}
    if isinstance(value, list):
        return [decode(v, buffers) for v in value]
    return value
