"""What readiness says about a consumer, without a broker: a stand-in for aiokafka's consumer
reports when each assigned partition last got a fetch response."""

from __future__ import annotations

import time
from typing import Any

import pytest
from aiokafka import TopicPartition

from shared.bus.consumer import EventConsumer
from shared.bus.handlers import Handlers
from shared.settings import Settings

P0, P1 = TopicPartition("orders", 0), TopicPartition("orders", 1)


class FetchStamps:
    """aiokafka's AIOKafkaConsumer as far as progress() reads it: assignment and fetch stamps (ms)."""

    def __init__(self, stamps: dict[TopicPartition, float | None]) -> None:
        self.stamps = stamps

    def assignment(self) -> set[TopicPartition]:
        return set(self.stamps)

    def last_poll_timestamp(self, tp: TopicPartition) -> int | None:
        stamp = self.stamps[tp]
        return None if stamp is None else int(stamp * 1000)


def consumer_with(stamps: dict[TopicPartition, float | None]) -> EventConsumer:
    none: Any = None
    consumer = EventConsumer("orders", ["orders"], Handlers.by_class({}), none, none, Settings(consumer_stall_after_s=10))
    consumer._consumer = FetchStamps(stamps)  # type: ignore[assignment]
    return consumer


def test_an_idle_connected_consumer_is_healthy() -> None:
    now = time.time()
    consumer = consumer_with({P0: now - 0.05, P1: now - 0.1})  # empty fetch responses every 50 ms
    assert consumer.progress() == "ok" and consumer.healthy


def test_no_fetch_response_for_a_while_is_a_stall_even_while_polling() -> None:
    now = time.time()
    consumer = consumer_with({P0: now - 0.05, P1: now - 25})
    assert consumer.progress() == "stalled: no fetch response from the broker for 25 s"
    assert not consumer.healthy


def test_a_partition_whose_backlog_is_being_handed_over_is_progressing() -> None:
    """Buffered records are not fetched again until taken: records handed over count as heard."""
    consumer = consumer_with({P0: time.time() - 20})
    consumer._delivered_at[P0] = time.time() - 0.2
    assert consumer.progress() == "ok"


def test_a_partition_not_fetched_yet_counts_from_when_it_was_first_seen(monkeypatch: pytest.MonkeyPatch) -> None:
    consumer = consumer_with({P0: None})
    assert consumer.progress() == "ok"  # just assigned
    later = time.time() + 11
    monkeypatch.setattr(time, "time", lambda: later)
    assert consumer.progress().startswith("stalled: no fetch response")


def test_a_busy_loop_is_not_blamed_on_the_broker() -> None:
    """Buffered records are not fetched again until the loop takes them: while one batch is being
    handled, old fetch stamps say nothing about the broker."""
    consumer = consumer_with({P0: time.time() - 20})
    consumer.last_poll_at = time.monotonic() - 15
    assert consumer.progress() == "ok"
    consumer.last_poll_at = time.monotonic() - 31
    assert consumer.progress() == "stalled: one batch has been handled for 31 s"


def test_a_crashed_consumer_is_down() -> None:
    consumer = consumer_with({})
    consumer.down, consumer.restarts = True, 2
    assert consumer.progress() == "down (crashed 2x, restarting)"
