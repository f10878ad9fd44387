"""Task records in MongoDB, through pymongo when it is installed (minipar never requires it).

One document per task in the ``task_records`` collection of ``[db.mongodb] database``
(default: named after the controller session, so each run starts empty), with the msg_id
as ``_id``. Values are stored as :mod:`records` says, so that every query gives what DictDB
gives: dates as UTC ISO text (BSON dates keep only milliseconds), buffers as binary, dicts as
sub-documents. Queries are handed to MongoDB after two rewrites: dates become that text,
and ``$exists`` becomes a test against null (a record's unset key and a key set to None are
the same thing here, as they are in SQL).

Writes are synchronous round trips on the caller's thread, as in ipyparallel.
"""
from __future__ import annotations

import re

from ...config import ConfigError, MongoDBConfig
from .base import BaseDB, no_such_record
from .query import parse
from .records import (BYTES, DATE, INDEXED, JSON, KEY_SET, KINDS, as_bytes, decode_date, encode_date, json_value,
                      projection, unknown_keys)

try:
    import pymongo
except ImportError:
    pymongo = None

COLLECTION = "task_records"
MISSING = ("'mongodb' needs the pymongo package, which this Python can't import: "
           "pip install pymongo (or choose db = \"sqlite\")")
_ORDER = [("submitted", 1), ("msg_id", 1)]


def default_database(session: str) -> str:
    """The session id, minus what MongoDB forbids in a database name."""
    return re.sub(r'[/\\. "$*<>:|?]', "_", session)[:63] or "minipar"


class MongoDB(BaseDB):
    """Records in a MongoDB collection. ``client`` replaces the pymongo.MongoClient the
    options describe (tests pass ``mongomock.MongoClient()``); it is not closed by close()."""

    config_section = "db.mongodb"
    takes_json_text = True

    def __init__(self, options=None, *, session: str = "", profile_dir=None, client=None):
        options = options if options is not None else MongoDBConfig()
        super().__init__(options, session=session, profile_dir=profile_dir)
        self._owns_client = client is None
        if client is None:
            if pymongo is None:
                raise ConfigError("configuration", "controller.db", MISSING)
            client = pymongo.MongoClient(*options.connection_args, **options.connection_kwargs)
        self.client = client
        self.database = options.database or default_database(session)
        self.collection = client[self.database][COLLECTION]
        try:
            for key in INDEXED:
                self.collection.create_index(key)
        except Exception as e:
            if self._owns_client:
                client.close()
            raise ConfigError("configuration", "db.mongodb.connection_kwargs",
                              "can't use MongoDB database %r: %s: %s"
                              % (self.database, type(e).__name__, e)) from None

    def add_record(self, msg_id, rec):
        if not rec.keys() <= KEY_SET:
            raise unknown_keys(rec)
        doc = _encode(rec)
        doc["_id"] = doc["msg_id"] = msg_id
        self.collection.replace_one({"_id": msg_id}, doc, upsert=True)

    def update_record(self, msg_id, changes):
        if not changes.keys() <= KEY_SET:
            raise unknown_keys(changes)
        if "msg_id" in changes and changes["msg_id"] != msg_id:
            raise ValueError("update_record can't change the msg_id of %r" % msg_id)
        doc = _encode(changes)
        doc["msg_id"] = msg_id
        self.collection.update_one({"_id": msg_id}, {"$set": doc}, upsert=True)

    def get_record(self, msg_id):
        doc = self.collection.find_one({"_id": msg_id}, {"_id": 0})
        if doc is None:
            raise no_such_record(msg_id)
        return _decode(doc, projection(None))

    def find_records(self, query, keys=None):
        where = mongo_filter(parse(query))
        keys = projection(keys)
        fields = dict.fromkeys(keys, 1)
        fields["_id"] = 0
        return [_decode(doc, keys) for doc in self.collection.find(where, fields).sort(_ORDER)]

    def get_history(self):
        return [doc["msg_id"] for doc in
                self.collection.find({}, {"msg_id": 1, "_id": 0}).sort(_ORDER)]

    def drop_record(self, msg_id):
        self.collection.delete_one({"_id": msg_id})

    def drop_matching_records(self, query):
        self.collection.delete_many(mongo_filter(parse(query)))

    def close(self):
        if self._owns_client:
            self.client.close()


def mongo_filter(conds) -> dict:
    """A MongoDB filter for checked conditions, each its own clause under $and (two
    conditions on one key may use the same operator)."""
    clauses = []
    for c in conds:
        name = ".".join((c.key,) + c.path)
        op, x = c.op, c.value
        if op == "$exists":
            op, x = ("$ne" if x else "$eq"), None
        elif c.kind == DATE:
            x = [_date(v) for v in x] if op in ("$in", "$nin") else _date(x)
        clauses.append({name: {op: x}})
    return {"$and": clauses} if clauses else {}


def _date(value):
    return None if value is None else encode_date(value)


def _encode(rec) -> dict:
    doc = {}
    for key, value in rec.items():
        if value is not None:
            kind = KINDS[key]
            if kind == DATE:
                value = encode_date(value)
            elif kind == BYTES:
                value = as_bytes(value)
            elif kind == JSON:
                value = json_value(value)
        doc[key] = value
    return doc


def _decode(doc, keys) -> dict:
    out = {}
    for key in keys:
        value = doc.get(key)
        if value is not None:
            kind = KINDS[key]
            if kind == DATE:
                value = decode_date(value)
            elif kind == BYTES:
                value = [bytes(b) for b in value]
        out[key] = value
    return out
