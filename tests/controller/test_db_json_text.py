"""JSON parts given as the JSON text a frame carried (as the hub gives them) read back as values,
in every backend; a custom backend that does not say it takes text is handed decoded values."""
from __future__ import annotations

import json
import sys
import types
from datetime import datetime, timezone

import pytest

from minipar.controller.db import db_class
from minipar.controller.db.memory import DictDB
from minipar.controller.db.sqlite import SQLiteDB

HEADER = {"msg_id": "s-1", "msg_type": "apply_request", "session": "s", "date": 1796241113.2690854}
RESULT = {"status": "ok", "engine_info": {"engine_id": 0, "engine_uuid": "é-u", "method": "apply"}}


def text(value) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf8")


@pytest.fixture(params=["dict", "sqlite"])
def db(request, tmp_path):
    store = DictDB() if request.param == "dict" else SQLiteDB(None, session="s", profile_dir=tmp_path)
    yield store
    store.close()


def test_json_text_reads_back_as_the_values_it_encodes(db):
    when = datetime(2026, 12, 2, 19, 51, 53, 269085, tzinfo=timezone.utc)
    db.add_record("s-1", {"header": text(HEADER), "metadata": b"{}", "content": b"{}", "buffers": [b"x"],
                          "submitted": when, "client_uuid": "s", "queue": "task"})
    db.update_record("s-1", {"result_content": text(RESULT), "result_metadata": text({"status": "ok"}),
                             "completed": when})
    rec = db.get_record("s-1")
    assert rec["header"] == HEADER and rec["metadata"] == {} and rec["content"] == {}
    assert rec["result_content"] == RESULT and rec["result_metadata"] == {"status": "ok"}
    rec["result_content"]["status"] = "changed"
    assert db.get_record("s-1")["result_content"]["status"] == "ok"
    assert [r["msg_id"] for r in db.find_records({"result_content.engine_info.engine_uuid": "é-u"})] == ["s-1"]
    assert db.find_records({"header.msg_type": "execute_request"}) == []
    assert db.find_records({"result_content": {"$exists": True}}, ["msg_id"]) == [{"msg_id": "s-1"}]


class PlainStore:
    """A backend of someone else's writing: it wants values, as ipyparallel's backends got."""

    def __init__(self, options=None, *, session="", profile_dir=None):
        self.written = []

    def add_record(self, msg_id, rec):
        self.written.append(rec)

    def update_record(self, msg_id, changes):
        self.written.append(changes)


def test_a_custom_backend_is_given_decoded_values(monkeypatch):
    module = types.ModuleType("custom_store_for_test")
    module.PlainStore = PlainStore
    monkeypatch.setitem(sys.modules, "custom_store_for_test", module)
    cls = db_class("custom_store_for_test.PlainStore")
    assert cls.__name__ == "PlainStore" and issubclass(cls, PlainStore)
    store = cls(None, session="s")
    store.add_record("s-1", {"header": text(HEADER), "buffers": [b"x"], "queue": "task"})
    store.update_record("s-1", {"result_content": text(RESULT), "error": None})
    assert store.written == [{"header": HEADER, "buffers": [b"x"], "queue": "task"},
                             {"result_content": RESULT, "error": None}]
    assert db_class("minipar.controller.db.sqlite.SQLiteDB") is SQLiteDB
