"""The record store interface every backend implements.

A record is a dict keyed by msg_id with the fields the reference chapter names (header,
content, buffers, submitted, client_uuid, engine_uuid, started, completed, result_header,
result_content, result_buffers, queue, stdout, stderr, error).
"""
from __future__ import annotations


class NoRecords(Exception):
    """Raised when the backend keeps no records (NoDB)."""


class BaseDB:
    keeps_records = True

    def add_record(self, msg_id: str, record: dict) -> None:
        raise NotImplementedError

    def update_record(self, msg_id: str, changes: dict) -> None:
        raise NotImplementedError

    def get_record(self, msg_id: str) -> dict:
        raise NotImplementedError

    def drop_record(self, msg_id: str) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass
