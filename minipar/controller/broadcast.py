"""Broadcasts: one request from a client that the hub runs on several engines.

A broadcast request carries metadata ``{broadcast: [engine ids], coalescing: bool}``. The
hub sends it to each engine as a task of its own, ``<msg_id>_<engine id>``, under a
re-signed header and with the very payload frames that arrived, so a large argument
crosses the client's link once however many engines get it. Each part is an ordinary
direct task from then on (engine queue, task record, EngineError when its engine is lost).

Without coalescing each engine's reply goes to the client as it arrives. With coalescing
the hub holds the replies in a :class:`Coalescer` and sends the client one
``broadcast_reply`` when the last part is answered; a part lost with its engine counts as
answered, by the hub's EngineError, so the client never waits for a dead engine.
"""
from __future__ import annotations


def broadcast_targets(metadata: dict) -> list:
    """The engine ids a broadcast goes to; ValueError naming what is wrong otherwise."""
    targets = metadata.get("broadcast")
    if not isinstance(targets, list) or not targets:
        raise ValueError("a broadcast names its engines as a non-empty list, not %r" % (targets,))
    bad = [t for t in targets if isinstance(t, bool) or not isinstance(t, int)]
    if bad:
        raise ValueError("broadcast engine ids are ints, not %r" % (bad[0],))
    if len(set(targets)) != len(targets):
        raise ValueError("a broadcast names each engine once, not %r" % (targets,))
    return targets


class Coalescer:
    """The replies of one coalescing broadcast, gathered until all its parts are answered."""

    __slots__ = ("header", "client", "part_ids", "replies")

    def __init__(self, header: dict, client: bytes, part_ids: list):
        self.header = header
        self.client = client
        self.part_ids = part_ids
        self.replies: dict = {}

    def add(self, part_id, msg_type, content, metadata, buffers) -> bool:
        """Keep one part's reply; True when it was the last one awaited."""
        self.replies[part_id] = (msg_type, content, metadata, list(buffers))
        return len(self.replies) == len(self.part_ids)

    def reply(self):
        """``(content, metadata, buffers)`` of the one reply to the client, parts in order."""
        replies, buffers = [], []
        for part_id in self.part_ids:
            msg_type, content, metadata, bufs = self.replies[part_id]
            replies.append({"msg_id": part_id, "msg_type": msg_type, "content": content,
                            "metadata": metadata, "nbuffers": len(bufs)})
            buffers.extend(bufs)
        status = "ok" if all(r["content"].get("status") == "ok" for r in replies) else "error"
        engine_ids = [r["metadata"].get("engine_id") for r in replies]
        return {"status": status, "replies": replies}, {"engine_ids": engine_ids, "status": status}, buffers
