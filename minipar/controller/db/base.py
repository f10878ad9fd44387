"""The record store interface every backend implements, with ipyparallel's method names.

The hub writes (add_record when a request arrives, update_record as it is assigned, runs
and completes) on its hot path; clients read through the hub (db_query, get_result,
resubmit, hub_history, purge_results). Records follow the schema in :mod:`records`; queries
the language in :mod:`query`. Every backend gives the same answers to the same calls:
tests/controller/test_db.py runs one suite against all of them.

Semantics every backend keeps:

- ``add_record`` replaces any record with that msg_id; ``update_record`` of an unknown
  msg_id creates the record from the changes (a late result is kept, not dropped).
  Unknown keys are a ValueError. The store may keep the dict and the buffer objects it is
  given (DictDB does, to stay cheap): don't change them afterwards.
- ``get_record`` of an unknown msg_id is a KeyError naming it; dropping one is a no-op.
- ``find_records`` and ``get_history`` order by ``submitted`` (unset first), then msg_id.
- Records come out with every asked key present (None when unset), dates as aware UTC
  datetimes, buffers as lists of bytes, and dict values copied.
"""
from __future__ import annotations

from ...error import MiniparError


class NoRecords(MiniparError, KeyError):
    """Raised when a record is asked of a backend that keeps none (db = 'nodb').

    A KeyError too, as ipyparallel's NoDB raised, so code that handles an unknown msg_id
    handles this as well.
    """

    def __str__(self):
        return str(self.args[0]) if self.args else ""


class BaseDB:
    """What the hub calls. ``options`` is the backend's ``[db.<name>]`` section (None means
    its defaults), ``session`` the controller's session id, ``profile_dir`` the profile's
    directory (where SQLite puts its file)."""

    keeps_records = True
    takes_json_text = False
    """True if json-kind values may come as their JSON text (bytes); a backend that leaves it
    False gets them decoded (:func:`db.decoding`)."""
    config_section = None
    """Name of the ``[db.*]`` section whose instance the constructor takes, if any."""

    def __init__(self, options=None, *, session: str = "", profile_dir=None):
        self.options = options
        self.session = session
        self.profile_dir = profile_dir

    def add_record(self, msg_id: str, rec: dict) -> None:
        raise NotImplementedError

    def update_record(self, msg_id: str, changes: dict) -> None:
        raise NotImplementedError

    def get_record(self, msg_id: str) -> dict:
        raise NotImplementedError

    def drop_record(self, msg_id: str) -> None:
        raise NotImplementedError

    def drop_matching_records(self, query: dict) -> None:
        raise NotImplementedError

    def find_records(self, query: dict, keys=None) -> list:
        raise NotImplementedError

    def get_history(self) -> list:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def no_such_record(msg_id) -> KeyError:
    return KeyError("no record of task %r" % (msg_id,))
