"""The task databases: one behaviour suite run against every backend, then each one's own
contract (DictDB's bounds, NoDB's refusals, SQLite's files, batches and restarts)."""
from __future__ import annotations

import array
import logging
import os
import sqlite3
import stat
import subprocess
import sys
import textwrap
import uuid
from datetime import datetime, timedelta, timezone

import pytest

from helpers import ROOT, wait_for
from minipar.config import ConfigError, DictDBConfig, MongoDBConfig, SQLiteDBConfig, load_config
from minipar.controller.db import NoRecords, db_class, open_db
from minipar.controller.db import mongodb as mongodb_module
from minipar.controller.db.memory import DictDB, NoDB
from minipar.controller.db.mongodb import MongoDB
from minipar.controller.db.records import RECORD_KEYS
from minipar.controller.db.sqlite import SQLiteDB

UTC = timezone.utc
T0 = datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)
MONGODB_URL = os.environ.get("MINIPAR_TEST_MONGODB_URL")


def ms(n, us=0):
    return T0 + timedelta(milliseconds=n, microseconds=us)


# ---------------------------------------------------------------- backends


def _dict(tmp_path, session):
    return DictDB(session=session)


def _sqlite(tmp_path, session):
    return SQLiteDB(session=session, profile_dir=tmp_path)


def _mongomock(tmp_path, session):
    mongomock = pytest.importorskip("mongomock")
    return MongoDB(session=session, client=mongomock.MongoClient())


def _mongodb(tmp_path, session):
    if not MONGODB_URL:
        pytest.skip("no MongoDB server: set MINIPAR_TEST_MONGODB_URL=mongodb://host:port to test one")
    pytest.importorskip("pymongo")
    return MongoDB(MongoDBConfig(connection_args=[MONGODB_URL]), session="minipar_test_" + session)


BACKENDS = {"dict": _dict, "sqlite": _sqlite, "mongomock": _mongomock, "mongodb": _mongodb}


@pytest.fixture(params=list(BACKENDS))
def make_db(request, tmp_path):
    """A factory of empty databases of one backend; each is closed (and a real MongoDB
    database dropped) afterwards."""
    made = []

    def make(session=None):
        db = BACKENDS[request.param](tmp_path, session or uuid.uuid4().hex)
        made.append(db)
        return db

    yield make
    for db in made:
        if isinstance(db, MongoDB) and MONGODB_URL and request.param == "mongodb":
            db.client.drop_database(db.database)
        db.close()


@pytest.fixture
def db(make_db):
    return make_db()


# ---------------------------------------------------------------- a small history

# id: (submitted ms, client, engine, queue, started ms, completed ms, status, stdout)
TASKS = {
    "t0": (0, "c1", "e1", "task", 5, 10, "ok", "hello"),
    "t1": (1, "c1", "e2", "task", 6, 11, "error", ""),
    "t2": (2, "c2", "e1", "mux", 7, None, None, None),
    "t3": (3, "c2", None, "task", None, None, None, None),
    "t4": (4, "c1", "e2", "mux", 8, 14, "ok", "x"),
    "t5": (5, "c2", "e1", "task", 9, 15, "ok", ""),
}
ALL = sorted(TASKS)
INSERT_ORDER = ["t3", "t0", "t5", "t1", "t4", "t2"]


def request_of(mid):
    sub, client, _, queue, *_ = TASKS[mid]
    n = int(mid[1:])
    return {"msg_id": mid, "header": {"msg_id": mid, "msg_type": "apply_request", "n": n},
            "metadata": {"retries": 0, "after": []}, "content": {},
            "buffers": [b"args-" + mid.encode(), memoryview(b"kwargs")],
            "submitted": ms(sub, 7), "client_uuid": client, "queue": queue,
            "completed": None}


def result_of(mid):
    _, _, engine, _, started, completed, status, stdout = TASKS[mid]
    changes = {"engine_uuid": engine}
    if started is not None:
        changes["started"] = ms(started, 3)
    if completed is not None:
        changes.update({
            "completed": ms(completed, 1), "stdout": stdout, "stderr": "",
            "result_header": {"msg_id": "r" + mid, "msg_type": "apply_reply"},
            "result_content": {"status": status},
            "result_metadata": {"status": status, "dependencies_met": True},
            "result_buffers": [bytearray(b"result-" + mid.encode())],
        })
        if status == "error":
            changes["error"] = {"ename": "ValueError", "evalue": "bad"}
    return changes


def fill(db):
    for mid in INSERT_ORDER:
        db.add_record(mid, request_of(mid))
    for mid in INSERT_ORDER:
        db.update_record(mid, result_of(mid))


def ids(records):
    return [r["msg_id"] for r in records]


# ---------------------------------------------------------------- the shared suite


def test_get_record_returns_every_key_with_exact_values(db):
    fill(db)
    rec = db.get_record("t1")
    assert list(rec) == list(RECORD_KEYS)
    assert rec == {
        "msg_id": "t1", "header": {"msg_id": "t1", "msg_type": "apply_request", "n": 1},
        "metadata": {"retries": 0, "after": []}, "content": {},
        "buffers": [b"args-t1", b"kwargs"], "submitted": ms(1, 7), "client_uuid": "c1",
        "engine_uuid": "e2", "started": ms(6, 3), "completed": ms(11, 1), "received": None,
        "resubmitted": None, "result_header": {"msg_id": "rt1", "msg_type": "apply_reply"},
        "result_content": {"status": "error"},
        "result_metadata": {"status": "error", "dependencies_met": True},
        "result_buffers": [b"result-t1"], "queue": "task", "stdout": "", "stderr": "",
        "error": {"ename": "ValueError", "evalue": "bad"},
    }
    assert all(type(b) is bytes for b in rec["buffers"] + rec["result_buffers"])
    assert rec["completed"].tzinfo is not None and rec["completed"].microsecond == 123456 + 11001
    pending = db.get_record("t3")
    assert (pending["engine_uuid"], pending["completed"], pending["result_buffers"],
            pending["stdout"]) == (None, None, None, None)


def test_unknown_msg_id_is_a_key_error_naming_it(db):
    fill(db)
    with pytest.raises(KeyError, match="no record of task 'nope'"):
        db.get_record("nope")


def test_history_is_ordered_by_submitted_not_insertion(db):
    fill(db)
    assert db.get_history() == ALL


def test_history_puts_records_without_submitted_first(db):
    fill(db)
    db.update_record("late", {"completed": ms(99)})
    assert db.get_history() == ["late"] + ALL


EQ = [
    ({}, ALL),
    (None, ALL),
    ({"client_uuid": "c1"}, ["t0", "t1", "t4"]),
    ({"engine_uuid": None}, ["t3"]),
    ({"completed": None}, ["t2", "t3"]),
    ({"queue": "mux", "client_uuid": "c2"}, ["t2"]),
    ({"stdout": ""}, ["t1", "t5"]),
    ({"resubmitted": None}, ALL),
    ({"msg_id": "t4"}, ["t4"]),
    ({"submitted": ms(2, 7)}, ["t2"]),
    ({"submitted": ms(2, 8)}, []),
    ({"client_uuid": "nobody"}, []),
]
OPS = [
    ({"completed": {"$ne": None}}, ["t0", "t1", "t4", "t5"]),
    ({"engine_uuid": {"$ne": "e1"}}, ["t1", "t3", "t4"]),
    ({"completed": {"$exists": False}}, ["t2", "t3"]),
    ({"completed": {"$exists": True}}, ["t0", "t1", "t4", "t5"]),
    ({"error": {"$exists": True}}, ["t1"]),
    ({"result_buffers": None}, ["t2", "t3"]),
    ({"buffers": {"$exists": True}}, ALL),
    ({"completed": {"$gte": ms(11, 1), "$lt": ms(15, 1)}}, ["t1", "t4"]),
    ({"completed": {"$gt": ms(11, 1), "$lte": ms(15, 1)}}, ["t4", "t5"]),
    ({"submitted": {"$gt": ms(2, 7)}}, ["t3", "t4", "t5"]),
    ({"submitted": {"$lte": ms(2, 7)}}, ["t0", "t1", "t2"]),
    ({"submitted": {"$lt": ms(0, 7)}}, []),
    ({"started": {"$gte": ms(6, 3)}, "completed": None}, ["t2"]),
    ({"engine_uuid": {"$in": ["e1", None]}}, ["t0", "t2", "t3", "t5"]),
    ({"engine_uuid": {"$in": ["e2"]}}, ["t1", "t4"]),
    ({"engine_uuid": {"$nin": ["e1"]}}, ["t1", "t3", "t4"]),
    ({"engine_uuid": {"$nin": ["e1", None]}}, ["t1", "t4"]),
    ({"engine_uuid": {"$in": []}}, []),
    ({"engine_uuid": {"$nin": []}}, ALL),
    ({"completed": {"$in": [ms(10, 1), None]}}, ["t0", "t2", "t3"]),
    ({"completed": {"$nin": [ms(10, 1), None]}}, ["t1", "t4", "t5"]),
    ({"stdout": {"$gt": ""}}, ["t0", "t4"]),
    ({"stdout": {"$lt": "i"}}, ["t0", "t1", "t5"]),
    ({"client_uuid": {"$gte": "c2"}, "queue": {"$ne": "mux"}}, ["t3", "t5"]),
    ({"queue": {"$eq": "mux"}}, ["t2", "t4"]),
]
NESTED = [
    ({"result_content.status": "error"}, ["t1"]),
    ({"result_content.status": {"$ne": "ok"}}, ["t1", "t2", "t3"]),
    ({"result_content.status": {"$in": ["ok", "error"]}, "engine_uuid": "e2"}, ["t1", "t4"]),
    ({"header.n": {"$gte": 4}}, ["t4", "t5"]),
    ({"header.n": {"$gt": 1, "$lt": 4}, "completed": {"$exists": True}}, []),
    ({"header.n": {"$gt": 1, "$lt": 4}}, ["t2", "t3"]),
    ({"result_metadata.dependencies_met": True}, ["t0", "t1", "t4", "t5"]),
    ({"result_header.nothing": {"$exists": True}}, []),
    ({"result_content": {"status": "ok"}}, ["t0", "t4", "t5"]),
]


@pytest.mark.parametrize("query, expected", EQ + OPS + NESTED, ids=repr)
def test_queries_give_the_same_answer_on_every_backend(db, query, expected):
    fill(db)
    assert ids(db.find_records(query)) == expected


def test_long_in_lists(db):
    fill(db)
    wanted = ["x%d" % i for i in range(500)] + ["t4", "t1"]
    assert ids(db.find_records({"msg_id": {"$in": wanted}})) == ["t1", "t4"]
    assert ids(db.find_records({"msg_id": {"$nin": wanted}})) == ["t0", "t2", "t3", "t5"]


def test_dates_in_any_timezone_or_naive_local_compare_as_instants(db):
    fill(db)
    cut = ms(2, 7)
    plus2 = cut.astimezone(timezone(timedelta(hours=2)))
    naive_local = cut.astimezone().replace(tzinfo=None)
    for value in (cut, plus2, naive_local):
        assert ids(db.find_records({"submitted": {"$gt": value}})) == ["t3", "t4", "t5"]
        assert ids(db.find_records({"submitted": value})) == ["t2"]


def test_dates_round_trip_exactly(db):
    plus2 = timezone(timedelta(hours=2))
    stamps = {
        "utc": datetime(2023, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        "plus2": datetime(2024, 2, 29, 1, 2, 3, 4, tzinfo=plus2),
        "naive": datetime(2024, 7, 1, 8, 0, 0, 1),
        "old": datetime(1, 1, 2, 0, 0, 0, 1, tzinfo=UTC),
    }
    for name, when in stamps.items():
        db.add_record(name, {"submitted": when, "completed": when})
    for name, when in stamps.items():
        rec = db.get_record(name)
        expected = when.astimezone(UTC)
        assert rec["submitted"] == expected and rec["completed"] == expected
        assert rec["submitted"].utcoffset() == timedelta(0)
        assert rec["submitted"].microsecond == expected.microsecond
    assert db.get_history() == ["old", "utc", "plus2", "naive"]


def test_buffers_round_trip_as_bytes_whatever_went_in(db):
    doubles = array.array("d", [1.5, -2.0])
    bufs = [b"plain", bytearray(b"\x00mutable\xff"), memoryview(b"view"),
            memoryview(bytearray(b"0123456789"))[2:5], memoryview(doubles), b""]
    db.add_record("b", {"buffers": bufs, "submitted": T0})
    db.update_record("b", {"result_buffers": [memoryview(doubles), b"\x00" * 70000]})
    rec = db.get_record("b")
    assert rec["buffers"] == [b"plain", b"\x00mutable\xff", b"view", b"234",
                              doubles.tobytes(), b""]
    assert rec["result_buffers"] == [doubles.tobytes(), b"\x00" * 70000]
    assert all(type(b) is bytes for b in rec["buffers"] + rec["result_buffers"])
    assert db.find_records({"msg_id": "b"}, keys=["buffers"])[0]["buffers"][4] == doubles.tobytes()


def test_zmq_frames_are_stored_as_bytes(db):
    zmq = pytest.importorskip("zmq")
    db.add_record("z", {"buffers": [zmq.Frame(b"frame"), zmq.Frame(b"y" * 100000)],
                        "submitted": T0})
    assert db.get_record("z")["buffers"] == [b"frame", b"y" * 100000]


def test_projection_keeps_msg_id_and_asked_keys(db):
    fill(db)
    found = db.find_records({"client_uuid": "c1"}, keys=["completed", "result_buffers"])
    assert found == [
        {"msg_id": "t0", "completed": ms(10, 1), "result_buffers": [b"result-t0"]},
        {"msg_id": "t1", "completed": ms(11, 1), "result_buffers": [b"result-t1"]},
        {"msg_id": "t4", "completed": ms(14, 1), "result_buffers": [b"result-t4"]},
    ]
    assert [list(r) for r in found] == [["msg_id", "completed", "result_buffers"]] * 3
    found = db.find_records({"result_content.status": "error"}, keys=["msg_id", "stdout"])
    assert found == [{"msg_id": "t1", "stdout": ""}]
    assert db.find_records({"completed": None}, keys=["engine_uuid"]) == [
        {"msg_id": "t2", "engine_uuid": "e1"}, {"msg_id": "t3", "engine_uuid": None}]


def test_update_changes_only_named_keys_and_creates_unknown_records(db):
    fill(db)
    db.update_record("t3", {"engine_uuid": "e9", "received": ms(50)})
    rec = db.get_record("t3")
    assert (rec["engine_uuid"], rec["received"], rec["client_uuid"]) == ("e9", ms(50), "c2")
    assert rec["buffers"] == [b"args-t3", b"kwargs"]
    db.update_record("t3", {"engine_uuid": None})
    assert db.get_record("t3")["engine_uuid"] is None
    db.update_record("orphan", {"completed": ms(60), "stdout": "late result"})
    orphan = db.get_record("orphan")
    assert (orphan["msg_id"], orphan["completed"], orphan["stdout"], orphan["submitted"]) == (
        "orphan", ms(60), "late result", None)


def test_add_replaces_a_record_with_the_same_msg_id(db):
    fill(db)
    db.add_record("t0", {"submitted": ms(100), "client_uuid": "c9"})
    rec = db.get_record("t0")
    assert (rec["client_uuid"], rec["completed"], rec["stdout"]) == ("c9", None, None)
    assert db.get_history() == ["t1", "t2", "t3", "t4", "t5", "t0"]


def test_drop_record_and_drop_matching_records(db):
    fill(db)
    db.drop_record("t0")
    db.drop_record("never-there")
    assert db.get_history() == ["t1", "t2", "t3", "t4", "t5"]
    with pytest.raises(KeyError, match="t0"):
        db.get_record("t0")
    db.drop_matching_records({"result_content.status": "error"})
    assert db.get_history() == ["t2", "t3", "t4", "t5"]
    db.drop_matching_records({"completed": {"$ne": None}})
    assert db.get_history() == ["t2", "t3"]
    db.drop_matching_records({"client_uuid": "nobody"})
    assert db.get_history() == ["t2", "t3"]
    db.drop_matching_records({})
    assert db.get_history() == []
    assert db.find_records({}) == []


def test_returned_records_are_copies(db):
    fill(db)
    rec = db.get_record("t0")
    rec["header"]["n"] = 99
    rec["buffers"].append(b"more")
    db.find_records({"msg_id": "t0"})[0]["result_content"]["status"] = "changed"
    again = db.get_record("t0")
    assert again["header"]["n"] == 0 and len(again["buffers"]) == 2
    assert again["result_content"] == {"status": "ok"}


BAD_QUERIES = [
    ({"completed": {"$lt": T0, "$regex": "x"}},
     r"unknown query operator '\$regex' on 'completed'"),
    ({"completed": {"$gtee": T0}}, r"unknown query operator '\$gtee' on 'completed'; did you mean '\$gte'\?"),
    ({"$or": [{"queue": "mux"}]}, r"unknown query operator '\$or'"),
    ({"complete": None}, r"unknown query key 'complete'; did you mean 'completed'\?"),
    ({"completed": {"$gt": 1.5}}, r"query on 'completed': \$gt needs a datetime, got 1.5"),
    ({"completed": "yesterday"}, r"query on 'completed': \$eq needs a datetime or None"),
    ({"client_uuid": {"$lt": None}}, r"query on 'client_uuid': \$lt needs a string, got None"),
    ({"engine_uuid": {"$in": "e1"}}, r"query on 'engine_uuid': \$in takes a list"),
    ({"completed": {"$exists": 1}}, r"\$exists takes true or false"),
    ({"msg_id.x": "y"}, r"query key 'msg_id.x': only dict-valued keys"),
    ({"buffers": [b"x"]}, r"buffers can only be tested for None or with \$exists"),
    ({"header": {"$lt": {"a": 1}}}, r"query on 'header': \$lt needs a number or a string"),
    ({"completed": {"$gt": T0, "sub": 1}}, r"mixes operators and sub-keys"),
    ("completed", r"a query is a dict"),
]


@pytest.mark.parametrize("query, message", BAD_QUERIES, ids=repr)
def test_bad_queries_are_value_errors_naming_the_problem(db, query, message):
    fill(db)
    with pytest.raises(ValueError, match=message):
        db.find_records(query)
    with pytest.raises(ValueError, match=message):
        db.drop_matching_records(query)
    assert db.get_history() == ALL


def test_unknown_keys_are_refused(db):
    with pytest.raises(ValueError, match=r"unknown task record key 'completd'; did you mean 'completed'\?"):
        db.add_record("a", {"completd": T0})
    with pytest.raises(ValueError, match=r"unknown task record keys 'x', 'y'"):
        db.update_record("a", {"x": 1, "y": 2})
    with pytest.raises(ValueError, match=r"unknown task record key 'nope'"):
        db.find_records({}, keys=["nope"])
    with pytest.raises(ValueError, match="can't change the msg_id"):
        db.update_record("a", {"msg_id": "b"})


def test_many_records_read_back_in_order(db):
    for i in range(2000):
        db.add_record("m%05d" % i, {"submitted": ms(i), "queue": "task"})
        if i % 2:
            db.update_record("m%05d" % i, {"completed": ms(i + 1)})
    history = db.get_history()
    assert history == ["m%05d" % i for i in range(2000)]
    assert len(db.find_records({"completed": None}, keys=["msg_id"])) == 1000
    assert db.get_record("m01999")["completed"] == ms(2000)


def test_keeps_records(db):
    assert db.keeps_records is True


# ---------------------------------------------------------------- choosing a backend


def test_db_class_resolves_names(monkeypatch):
    assert db_class("dict") is DictDB
    assert db_class("nodb") is NoDB
    assert db_class("sqlite") is SQLiteDB
    assert db_class("minipar.controller.db.sqlite.SQLiteDB") is SQLiteDB
    with pytest.raises(ConfigError, match="unknown backend 'mongo'; choose one of dict, mongodb, "
                                          "nodb, sqlite"):
        db_class("mongo", "minipar.toml")
    with pytest.raises(ConfigError, match="cannot load 'nowhere.Thing'"):
        db_class("nowhere.Thing")


def test_mongodb_without_pymongo_names_the_package(monkeypatch):
    monkeypatch.setattr(mongodb_module, "pymongo", None)
    with pytest.raises(ConfigError) as info:
        db_class("mongodb", "/p/minipar.toml")
    assert str(info.value) == (
        "/p/minipar.toml: controller.db: 'mongodb' needs the pymongo package, which this "
        "Python can't import: pip install pymongo (or choose db = \"sqlite\")")
    with pytest.raises(ConfigError, match="pip install pymongo"):
        MongoDB()


def test_open_db_passes_the_section_options(tmp_path):
    config = load_config(None, {"controller.db": "sqlite", "db.sqlite.table": "kept"})
    db = open_db(config, session="s", profile_dir=tmp_path)
    try:
        assert isinstance(db, SQLiteDB)
        assert (db.table, db.filename) == ("kept", str(tmp_path / "security" / "tasks.db"))
    finally:
        db.close()
    config = load_config(None, {"db.dict.record_limit": 7})
    db = open_db(config, session="s")
    assert isinstance(db, DictDB) and db.record_limit == 7
    assert isinstance(open_db(load_config(None, {"controller.db": "nodb"})), NoDB)


# ---------------------------------------------------------------- NoDB


def test_nodb_keeps_nothing_and_says_so():
    db = NoDB(session="s")
    assert db.keeps_records is False
    db.add_record("a", {"submitted": T0})
    db.update_record("a", {"completed": T0})
    db.drop_record("a")
    db.drop_matching_records({"completed": None})
    message = ("the controller runs with db = 'nodb' and keeps no task records; set "
               "[controller] db = \"dict\" (or \"sqlite\") to look tasks up, fetch other "
               "clients' results or resubmit")
    for call in (lambda: db.get_record("a"), lambda: db.find_records({}),
                 lambda: db.find_records({"completed": None}, keys=["msg_id"]), db.get_history):
        with pytest.raises(NoRecords) as info:
            call()
        assert str(info.value) == message
        assert isinstance(info.value, KeyError)
    db.close()


# ---------------------------------------------------------------- DictDB bounds


def test_dictdb_defaults_are_documented_values():
    db = DictDB()
    assert (db.options.record_limit, db.options.size_limit, db.options.cull_fraction) == (
        10000, 256 * 1024 * 1024, 0.1)


def test_dictdb_stays_within_record_limit_and_never_culls_pending(caplog):
    limit = 1000
    db = DictDB(DictDBConfig(record_limit=limit, cull_fraction=0.1))
    long_running = []
    window = []
    for i in range(50000):
        mid = "task-%d" % i
        db.add_record(mid, {"submitted": ms(i), "buffers": [b"x" * 10], "completed": None})
        if i % 100 == 0:
            long_running.append(mid)
        else:
            window.append(mid)
        if len(window) > 200:
            done = window.pop(0)
            db.update_record(done, {"completed": ms(i), "result_buffers": [b"y" * 10]})
        assert len(db) <= limit
    assert len(long_running) == 500
    for mid in long_running + window:
        assert db.get_record(mid)["completed"] is None
    for mid in long_running + window:
        db.update_record(mid, {"completed": ms(60000)})
    assert len(db) <= limit
    assert db.buffer_bytes == sum(
        len(b) for r in db.find_records({}) for b in (r["buffers"] or []) + (r["result_buffers"] or []))
    present = set(db.get_history())
    gone = next(m for m in ("task-%d" % i for i in range(49999, 0, -1)) if m not in present)
    with pytest.raises(KeyError, match="record of task '%s' was culled .*db.dict "
                                       "record_limit/size_limit" % gone):
        db.get_record(gone)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_dictdb_lets_pending_records_exceed_the_limit_and_warns_once(caplog):
    db = DictDB(DictDBConfig(record_limit=100, cull_fraction=0.5))
    for i in range(150):
        db.add_record("p%d" % i, {"submitted": ms(i)})
    assert len(db) == 150
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert warnings[0] == ("task database: 101 records (0 bytes of buffers) are over the db.dict "
                           "limits (record_limit 100, size_limit 268435456) and all belong to "
                           "pending tasks, which are never culled; memory grows until they complete")
    for i in range(150):
        db.update_record("p%d" % i, {"completed": ms(200 + i)})
    assert len(db) <= 100
    assert db.get_history()[-1] == "p149"
    assert db.get_record("p149")["completed"] == ms(349)


def test_dictdb_culls_in_batches_while_pending_records_keep_it_over_the_limit(caplog):
    """A burst of pending tasks beyond record_limit used to cull (and log) once per completion."""
    caplog.set_level(logging.INFO, logger="minipar.controller")
    db = DictDB(DictDBConfig(record_limit=100, cull_fraction=0.5))
    for i in range(1000):
        db.add_record("p%d" % i, {"submitted": ms(i)})
    for i in range(1000):
        db.update_record("p%d" % i, {"completed": ms(2000 + i)})
    culls = [r for r in caplog.records if "culled" in r.getMessage()]
    assert 1 <= len(culls) <= 1000 // 50 + 2, len(culls)
    assert len(db) <= 100 + 50
    assert db.get_history()[-1] == "p999"


def test_dictdb_culls_oldest_completed_first_in_completion_order():
    db = DictDB(DictDBConfig(record_limit=10, cull_fraction=0.2))
    for i in range(10):
        db.add_record("r%d" % i, {"submitted": ms(i)})
    for i in reversed(range(5)):
        db.update_record("r%d" % i, {"completed": ms(100 - i)})
    db.add_record("new", {"submitted": ms(50)})
    # 11 > 10: down to 8, dropping the three that completed first (r4, r3, r2)
    assert db.get_history() == ["r0", "r1", "r5", "r6", "r7", "r8", "r9", "new"]


def test_dictdb_size_limit_culls_completed_buffers_only():
    db = DictDB(DictDBConfig(record_limit=0, size_limit=10000, cull_fraction=0.1))
    for i in range(5):
        db.add_record("big-pending-%d" % i, {"submitted": ms(i), "buffers": [b"p" * 1000]})
    for i in range(30):
        mid = "done-%d" % i
        db.add_record(mid, {"submitted": ms(10 + i), "buffers": [memoryview(b"a" * 500)]})
        db.update_record(mid, {"completed": ms(10 + i), "result_buffers": [bytearray(500)]})
        assert db.buffer_bytes <= 10000
    history = db.get_history()
    assert history[:5] == ["big-pending-%d" % i for i in range(5)]
    assert history[-1] == "done-29"
    assert db.buffer_bytes == 5000 + 1000 * (len(history) - 5)
    db.drop_matching_records({"completed": None})
    assert db.buffer_bytes == 1000 * (len(history) - 5)


def test_dictdb_bad_options_are_config_errors():
    with pytest.raises(ConfigError, match="db.dict.cull_fraction: must be between 0 and 1, got 1.5"):
        DictDB(DictDBConfig(cull_fraction=1.5))
    with pytest.raises(ConfigError, match="db.dict.record_limit: must be 0 \\(no limit\\) or more"):
        DictDB(DictDBConfig(record_limit=-1))


# ---------------------------------------------------------------- SQLite


def test_sqlite_file_and_table_defaults(tmp_path):
    a = SQLiteDB(session="3f2a-11c9", profile_dir=tmp_path)
    b = SQLiteDB(session="77e0-0001", profile_dir=tmp_path)
    try:
        assert a.filename == b.filename == str(tmp_path / "security" / "tasks.db")
        assert (a.table, b.table) == ("tasks_3f2a_11c9", "tasks_77e0_0001")
        assert stat.S_IMODE(os.stat(a.filename).st_mode) == 0o600
        a.add_record("only-in-a", {"submitted": T0})
        assert a.get_history() == ["only-in-a"]
        assert b.get_history() == []
    finally:
        a.close()
        b.close()
    rel = SQLiteDB(SQLiteDBConfig(filename="sub/x.db"), session="s", profile_dir=tmp_path)
    rel.close()
    assert (tmp_path / "security" / "sub" / "x.db").exists()
    with sqlite3.connect(str(tmp_path / "security" / "tasks.db")) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_sqlite_fixed_table_persists_across_restarts(tmp_path):
    options = SQLiteDBConfig(table="tasks")
    first = SQLiteDB(options, session="run-1", profile_dir=tmp_path)
    fill(first)
    first.close()
    first.close()
    with pytest.raises(RuntimeError, match="is closed"):
        first.add_record("x", {})
    second = SQLiteDB(options, session="run-2", profile_dir=tmp_path)
    try:
        assert second.get_history() == ALL
        assert second.get_record("t1")["result_buffers"] == [b"result-t1"]
        assert ids(second.find_records({"completed": None})) == ["t2", "t3"]
        second.add_record("t6", {"submitted": ms(6, 7)})
    finally:
        second.close()
    third = SQLiteDB(options, session="run-3", profile_dir=tmp_path)
    try:
        assert third.get_history() == ALL + ["t6"]
    finally:
        third.close()


def test_sqlite_commits_batches_without_being_asked(tmp_path):
    db = SQLiteDB(SQLiteDBConfig(table="t"), profile_dir=tmp_path)
    try:
        db.add_record("a", {"submitted": T0})
        db.update_record("a", {"completed": ms(1)})

        def on_disk():
            with sqlite3.connect(db.filename) as conn:
                return conn.execute("SELECT completed FROM t WHERE msg_id = 'a'").fetchall()

        assert wait_for(on_disk, timeout=10, what="the batch to be committed") == [
            ("2024-05-01T12:00:00.124456+00:00",)]
    finally:
        db.close()


def test_sqlite_reads_see_writes_made_just_before(tmp_path):
    db = SQLiteDB(session="s", profile_dir=tmp_path)
    try:
        for i in range(300):
            db.add_record("r%d" % i, {"submitted": ms(i), "stdout": "v%d" % i})
            assert db.get_record("r%d" % i)["stdout"] == "v%d" % i
            db.update_record("r%d" % i, {"stdout": "w%d" % i})
            assert db.find_records({"msg_id": "r%d" % i}, keys=["stdout"]) == [
                {"msg_id": "r%d" % i, "stdout": "w%d" % i}]
        assert db.write_errors == 0
    finally:
        db.close()


def test_sqlite_a_flushed_batch_survives_a_crash(tmp_path):
    script = textwrap.dedent("""
        import os, sys
        from datetime import datetime, timezone
        from minipar.config import SQLiteDBConfig
        from minipar.controller.db.sqlite import SQLiteDB
        db = SQLiteDB(SQLiteDBConfig(table="t"), profile_dir=sys.argv[1])
        for i in range(100):
            db.add_record("r%03d" % i, {"submitted": datetime(2024, 1, 1, 0, 0, i % 60, i,
                                                              tzinfo=timezone.utc)})
        db.flush()
        print("flushed", flush=True)
        os._exit(0)
    """)
    out = subprocess.run([sys.executable, "-c", script, str(tmp_path)], cwd=str(ROOT),
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout == "flushed\n", out.stderr
    db = SQLiteDB(SQLiteDBConfig(table="t"), profile_dir=tmp_path)
    try:
        assert len(db.get_history()) == 100
        assert db.get_record("r099")["submitted"] == datetime(2024, 1, 1, 0, 0, 39, 99, tzinfo=UTC)
    finally:
        db.close()


def test_sqlite_bad_table_name_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="db.sqlite.table: 'tasks; drop' is not a usable table name"):
        SQLiteDB(SQLiteDBConfig(table="tasks; drop"), profile_dir=tmp_path)


def test_sqlite_unwritable_file_is_a_config_error(tmp_path):
    (tmp_path / "security").mkdir()
    (tmp_path / "security" / "tasks.db").mkdir()
    with pytest.raises(ConfigError, match="db.sqlite.filename: can't open the task database"):
        SQLiteDB(profile_dir=tmp_path)


def test_sqlite_in_memory(tmp_path):
    db = SQLiteDB(SQLiteDBConfig(filename=":memory:"), session="m")
    try:
        fill(db)
        assert db.get_history() == ALL
    finally:
        db.close()


def test_mongodb_unreachable_server_is_a_config_error():
    pytest.importorskip("pymongo")
    options = MongoDBConfig(connection_kwargs={"host": "127.0.0.1", "port": 1,
                                               "serverSelectionTimeoutMS": 200})
    with pytest.raises(ConfigError, match="db.mongodb.connection_kwargs: can't use MongoDB "
                                          "database 's': ServerSelectionTimeoutError"):
        MongoDB(options, session="s")
