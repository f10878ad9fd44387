"""In-memory stores: DictDB (the default) and NoDB (keeps nothing)."""
from __future__ import annotations

from .base import BaseDB, NoRecords


class DictDB(BaseDB):
    def __init__(self, **options):
        self._records: dict = {}

    def add_record(self, msg_id, record):
        self._records[msg_id] = record

    def update_record(self, msg_id, changes):
        rec = self._records.get(msg_id)
        if rec is None:
            self._records[msg_id] = dict(changes, msg_id=msg_id)
        else:
            rec.update(changes)

    def get_record(self, msg_id):
        try:
            return self._records[msg_id]
        except KeyError:
            raise KeyError("no record of task %r" % msg_id) from None

    def drop_record(self, msg_id):
        self._records.pop(msg_id, None)

    def __len__(self):
        return len(self._records)


class NoDB(BaseDB):
    keeps_records = False

    def __init__(self, **options):
        pass

    def add_record(self, msg_id, record):
        pass

    def update_record(self, msg_id, changes):
        pass

    def get_record(self, msg_id):
        raise NoRecords("the controller runs with db = 'nodb' and keeps no task records")

    def drop_record(self, msg_id):
        pass
