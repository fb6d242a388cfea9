"""The history check's rules on hand-made histories: each one can fail, so a clean report means something."""

from __future__ import annotations

from uuid import UUID, uuid4

from faults.history import _consumed, _ordered_per_key, _published
from support import Message

from shared.events import Envelope
from shared.settings import Settings

CLUSTER = "cluster-a"


def message(topic: str, partition: int, offset: int, event_id: UUID, producer: str, event_type: str = "OrderPlaced",
            key: str = "k") -> Message:
    envelope = Envelope(event_id=event_id, event_type=event_type, correlation_id=key, producer=producer, payload={})
    return Message(topic, partition, offset, key, envelope.model_dump_json().encode(), {})


def outbox_row(row_id: int, event_id: UUID, partition: int, offset: int, cluster: str = CLUSTER) -> dict:
    return {"id": row_id, "event_id": event_id, "event_type": "OrderPlaced", "topic": "orders", "key": "k",
            "partition": partition, "offset": offset, "cluster_id": cluster}


def test_a_sent_row_missing_from_its_topic_or_recorded_elsewhere_is_reported() -> None:
    first, second, lost = uuid4(), uuid4(), uuid4()
    topics = {"orders": [message("orders", 0, 0, first, "orders"), message("orders", 0, 1, second, "orders")]}
    rows = {"orders": [outbox_row(1, first, 0, 0), outbox_row(2, second, 0, 7), outbox_row(3, lost, 0, 2),
                       outbox_row(4, uuid4(), 0, 3, cluster="a-lost-broker")]}
    problems = _published(rows, topics, CLUSTER)
    assert sorted(problems) == [
        "orders outbox #2 OrderPlaced recorded at orders[0]@7, which holds another message",
        f"orders outbox #3 OrderPlaced {lost} is not on orders",
    ]


def test_an_event_a_service_handles_but_never_applied_is_reported_unless_dead_lettered() -> None:
    applied, missed, dead = uuid4(), uuid4(), uuid4()
    topics = {"orders": [message("orders", 0, n, event_id, "orders") for n, event_id in enumerate((applied, missed, dead))],
              "orders.dlq": [Message("orders.dlq", 0, 0, "k", message("orders", 0, 2, dead, "orders").value,
                                     {"dlq.consumer": "inventory"})]}
    inboxes = {"orders": set(), "inventory": {applied}, "allocator": {applied, missed, dead}, "notifier": {applied, missed, dead}}
    problems = _consumed(Settings(), topics, inboxes)
    assert problems == [f"inventory never applied OrderPlaced {missed} (orders[0]@1, from orders)"]


def test_first_copies_out_of_outbox_order_per_key_are_reported_and_repeats_are_not() -> None:
    one, two, three = uuid4(), uuid4(), uuid4()
    rows = {"orders": [outbox_row(1, one, 0, 0), outbox_row(2, two, 0, 1), outbox_row(3, three, 0, 2)]}
    in_order_with_a_repeat = {"orders": [message("orders", 0, n, e, "orders") for n, e in enumerate((one, two, one, three))]}
    assert _ordered_per_key(rows, in_order_with_a_repeat) == []
    swapped = {"orders": [message("orders", 0, n, e, "orders") for n, e in enumerate((two, one, three))]}
    problems = _ordered_per_key(rows, swapped)
    assert len(problems) == 1 and "#1" in problems[0] and "after #2" in problems[0]
