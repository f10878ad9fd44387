"""The client's engine table (minipar/client/engines.py): whole tables and notifications, in
whatever order they arrive, apply each change once; missed notifications are noticed, and a
client waiting for engines asks again when it hears nothing."""
from __future__ import annotations

import time

from helpers import start_cluster

from minipar.client.engines import EngineTable

REGISTERED, UNREGISTERED = True, False


def table_at(engines, version) -> EngineTable:
    table = EngineTable()
    table.replace(engines, version)
    return table


def test_notifications_newer_than_the_table_apply_and_older_ones_are_in_it_already():
    table = table_at({0: "a"}, 1)
    assert table.news(REGISTERED, 1, "b", 2) is False
    assert table.news(REGISTERED, 1, "b", 2) is False and table.news(UNREGISTERED, 0, "a", 1) is False
    assert table.ids() == [0, 1] and table.version == 2 and table[1] == "b"
    assert table.news(UNREGISTERED, 0, "a", 3) is False
    assert table.ids() == [1]


def test_a_notification_past_the_next_one_says_some_were_missed():
    table = table_at({}, 0)
    assert table.news(REGISTERED, 1, "b", 2) is True, "version 1 was missed"
    assert table.ids() == [1] and table.version == 2


def test_a_whole_table_older_than_this_one_is_ignored():
    table = table_at({0: "a"}, 1)
    table.news(UNREGISTERED, 0, "a", 2)
    table.replace({0: "a"}, 1)  # made before engine 0 left, arriving after its notification
    assert table.ids() == []


def test_a_whole_table_gets_the_notifications_heard_since_it_was_made():
    table = EngineTable()
    table.news(REGISTERED, 0, "a", 1)  # heard before the connect reply, made at version 0
    table.news(REGISTERED, 1, "b", 2)
    assert table.ids() == [0, 1], "applied meanwhile"
    table.replace({}, 0)
    assert table.ids() == [0, 1] and table.version == 2
    table.replace({0: "a", 1: "b", 2: "c"}, 3)
    assert table.ids() == [0, 1, 2] and table.version == 3


def test_a_controller_that_counts_nothing_is_followed_as_it_speaks():
    table = table_at({0: "a"}, None)
    assert table.news(REGISTERED, 1, "b", None) is False
    table.replace({1: "b"}, None)
    assert table.ids() == [1] and table.version == -1


def test_a_restarted_controller_counts_from_zero_again():
    table = table_at({0: "a"}, 40)
    table.new_controller()
    table.replace({0: "a", 1: "b"}, 2)
    assert table.ids() == [0, 1] and table.version == 2


def test_a_client_waiting_for_engines_asks_for_the_table_when_notifications_are_lost(profile, monkeypatch):
    rc, _ = start_cluster(profile, 1)
    monkeypatch.setattr(rc._engines, "news", lambda *args: False)  # a slow joiner: every notification lost
    profile.engine()
    t0 = time.monotonic()
    rc.wait_for_engines(2, timeout=20)
    assert rc.ids == [0, 1] and time.monotonic() - t0 < 10
