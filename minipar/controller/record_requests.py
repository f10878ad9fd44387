"""The hub's answers about past tasks: results, status, history, queries, resubmission, purging.

They read the task database, so a client can fetch results it did not submit (also after
the submitting client is gone, and with SQLite after a controller restart). A result is
sent as the reply message it was, re-signed with a fresh header so the asking client's
replay guard takes it; a task still running gets a watcher, and its reply goes to every
client that asked as well as to its owner.
"""
from __future__ import annotations

import time
from datetime import datetime, timezone

from .. import jsonutil, protocol
from .db.base import NoRecords

UTC = timezone.utc
NO_RECORDS = "the controller runs with db = 'nodb' and keeps no task records"


def now_utc() -> datetime:
    return datetime.now(UTC)


def utc(ts):
    return datetime.fromtimestamp(ts, UTC) if ts is not None else None


class RecordRequests:
    """Mixed into Hub: handlers of the client messages that read the task database."""

    def _running(self, msg_id) -> bool:
        return msg_id in self.pending or self.scheduler.holds(msg_id)

    def _refuse(self, msg, reply_type, reason):
        self._reply(msg, reply_type, {"status": "error", "reason": reason})

    def on_result_request(self, msg):
        """Send each asked result; watch those still running; name those unknown."""
        client = self._asker(msg)
        pending, missing, sent = [], {}, []
        for msg_id in msg.content.get("msg_ids", []):
            if self._running(msg_id):
                self.watchers.setdefault(msg_id, set()).add(client)
                pending.append(msg_id)
                continue
            try:
                rec = self.db.get_record(msg_id)
            except NoRecords:
                missing[msg_id] = NO_RECORDS
                continue
            except KeyError:
                missing[msg_id] = "no task %r is known to the controller (never submitted, or purged)" % msg_id
                continue
            if rec.get("result_header") is None:
                missing[msg_id] = "task %r has no result: it was lost with an earlier controller" % msg_id
                continue
            self._send_stored_result(client, rec)
            sent.append(msg_id)
        self._reply(msg, "result_reply", {"status": "ok", "pending": pending, "completed": sent,
                                          "missing": missing})

    def _send_stored_result(self, client, rec):
        header = dict(rec["result_header"], msg_id=self.session.new_msg_id(), date=time.time())
        md = jsonutil.encode(rec.get("result_metadata") or {}, [])
        self.send("client", header["msg_type"], rec.get("result_content") or {},
                  parent=rec.get("header") or {}, metadata=md, buffers=rec.get("result_buffers") or [],
                  idents=[client], header=header)

    def forward_to_watchers(self, msg_id, frames):
        for client in self.watchers.pop(msg_id, ()):
            header = dict(protocol.header_json(frames), msg_id=self.session.new_msg_id())
            self.forward("client", [client] + self.session.with_header(frames, header))

    def on_result_status(self, msg):
        pending, completed, missing = [], [], []
        for msg_id in msg.content.get("msg_ids", []):
            if self._running(msg_id):
                pending.append(msg_id)
                continue
            try:
                rec = self.db.get_record(msg_id)
            except NoRecords:
                return self._refuse(msg, "result_status_reply", NO_RECORDS)
            except KeyError:
                missing.append(msg_id)
                continue
            (completed if rec.get("completed") is not None else missing).append(msg_id)
        self._reply(msg, "result_status_reply", {"status": "ok", "pending": pending, "completed": completed,
                                                 "missing": missing})

    def on_history(self, msg):
        try:
            history = self.db.get_history()
        except NoRecords:
            return self._refuse(msg, "history_reply", NO_RECORDS)
        self._reply(msg, "history_reply", {"status": "ok", "history": history})

    def on_db_query(self, msg):
        c = msg.content
        try:
            records = self.db.find_records(jsonutil.decode(c.get("query") or {}), c.get("keys"))
        except NoRecords:
            return self._refuse(msg, "db_reply", NO_RECORDS)
        except (ValueError, TypeError) as e:
            return self._refuse(msg, "db_reply", "bad query: %s" % e)
        buffers: list = []
        encoded = jsonutil.encode(records, buffers)
        self._reply(msg, "db_reply", {"status": "ok", "records": encoded}, buffers)

    def on_purge(self, msg):
        """Forget completed tasks: the given ones, those of engines, or all."""
        c = msg.content
        try:
            if c.get("all"):
                self.db.drop_matching_records({"completed": {"$ne": None}})
            for msg_id in c.get("msg_ids") or []:
                if self._running(msg_id):
                    return self._refuse(msg, "purge_reply", "task %r is still pending; it can't be purged" % msg_id)
                self.db.drop_record(msg_id)
            for engine_id in c.get("targets") or []:
                engine = self.engines.get(engine_id)
                if engine is not None:
                    self.db.drop_matching_records({"engine_uuid": engine.uuid, "completed": {"$ne": None}})
        except NoRecords:
            return self._refuse(msg, "purge_reply", NO_RECORDS)
        self._reply(msg, "purge_reply", {"status": "ok"})

    def on_resubmit(self, msg):
        """Run finished tasks again under new msg_ids, answering the client that asks."""
        client = self._asker(msg)
        records = []
        for msg_id in msg.content.get("msg_ids", []):
            if self._running(msg_id):
                return self._refuse(msg, "resubmit_reply", "task %r is still pending; only finished tasks can be "
                                    "resubmitted" % msg_id)
            try:
                records.append(self.db.get_record(msg_id))
            except NoRecords:
                return self._refuse(msg, "resubmit_reply", NO_RECORDS)
            except KeyError:
                return self._refuse(msg, "resubmit_reply", "no task %r is known to the controller" % msg_id)
        mapping = {rec["msg_id"]: self.session.new_msg_id() for rec in records}
        self._reply(msg, "resubmit_reply", {"status": "ok", "resubmitted": mapping})
        for rec in records:
            new_id = mapping[rec["msg_id"]]
            header = dict(rec["header"], msg_id=new_id, date=time.time())
            md = dict(rec.get("metadata") or {})
            md.pop("after", None)
            md.pop("follow", None)
            _, frames = self.session.build(header["msg_type"], rec.get("content") or {}, None, md, header)
            frames += list(rec.get("buffers") or [])
            self.db.update_record(rec["msg_id"], {"resubmitted": new_id})
            msg_new = protocol.Message([client], frames, header)
            self.on_task_request(msg_new)

    def _asker(self, msg) -> bytes:
        from .hub import reply_identity
        return reply_identity(msg.idents[0])
