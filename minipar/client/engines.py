"""The engine table a client keeps: which engines the controller has, and as of when.

Two sources feed it, on two sockets with no order between them: the controller's whole table
(its reply to a connect, or to an engine_info request) and the (un)registration notifications
it publishes. Each carries the controller's count of engine (un)registrations so far
(``engines_version``, a notification's ``version``), so the table applies each change once, in
order, whichever arrives first: a whole table older than this one is ignored; one newer is
taken, with the notifications heard since it was made applied over it. A SUB socket misses
what was published before its subscription reached the controller (ZeroMQ's "slow joiner"),
so a notification more than one past the table tells that some were missed: the caller then
asks for the whole table again (and asks anyway while it waits for engines, since nothing
may come after the missed ones).

A controller of the same protocol that counts nothing (None) is followed as before: each
table replaces this one and each notification is applied as it comes.
"""
from __future__ import annotations

import threading
from collections import deque

ENGINE_TABLE_REFRESH = 1.0
"""Seconds without news while waiting for engines before asking the controller for its whole
engine table: notifications published before this client's subscription reached the
controller are lost, and nothing later may tell of them."""

NEWS_KEPT = 4096
"""Notifications remembered to apply over a whole table made before them: more than arrive
between a request for the table and its reply, even while thousands of engines register."""


class EngineTable:
    """``{engine id: uuid}`` as of the controller's ``version`` (-1: none known yet); ``changed``
    is notified on every change (wait on it holding it)."""

    def __init__(self):
        self._engines: dict = {}
        self.version = -1
        self._news: deque = deque(maxlen=NEWS_KEPT)
        self.changed = threading.Condition()

    def ids(self) -> list:
        with self.changed:
            return sorted(self._engines)

    def __getitem__(self, engine_id) -> str:
        return self._engines[engine_id]

    def __contains__(self, engine_id) -> bool:
        return engine_id in self._engines

    def __len__(self) -> int:
        return len(self._engines)

    def replace(self, engines: dict, version) -> None:
        """The controller's whole table as of ``version``."""
        with self.changed:
            if version is None:
                self._engines, self.version = dict(engines), -1
            elif version < self.version:
                return
            else:
                table = dict(engines)
                for news_version, registered, engine_id, uuid in self._news:
                    if news_version > version:
                        _apply(table, registered, engine_id, uuid)
                        version = news_version
                self._engines, self.version = table, version
            self.changed.notify_all()

    def news(self, registered: bool, engine_id, uuid, version) -> bool:
        """An engine (un)registered: True when notifications before this one were missed, and
        the whole table should be asked for."""
        with self.changed:
            missed = False
            if version is not None:
                self._news.append((version, registered, engine_id, uuid))
                if self.version >= 0:
                    if version <= self.version:
                        return False
                    missed = version > self.version + 1
                    self.version = version
            _apply(self._engines, registered, engine_id, uuid)
            self.changed.notify_all()
            return missed

    def new_controller(self) -> None:
        """A restarted controller counts from 0 again: forget this one's count."""
        with self.changed:
            self.version = -1
            self._news.clear()


def _apply(table: dict, registered: bool, engine_id, uuid) -> None:
    if registered:
        table[engine_id] = uuid
    else:
        table.pop(engine_id, None)
