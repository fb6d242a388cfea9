"""The history check: every topic read from the beginning, compared with every outbox and inbox.
Each retained outbox row is on its topic where the relay recorded it, each event a service handles
is in that service's inbox (or its dead letters), and per (producer, key) the first copies of events
appear in the order the producer wrote them."""

from __future__ import annotations

import time
from collections import defaultdict
from typing import Any
from uuid import UUID

from aiokafka import AIOKafkaConsumer, TopicPartition
from faults.faultstack import FaultStack
from support import Message

from services.allocator.handlers import HANDLERS as ALLOCATOR_HANDLERS
from services.inventory.handlers import HANDLERS as INVENTORY_HANDLERS
from services.notifier.handlers import HANDLERS as NOTIFIER_HANDLERS
from services.orders.handlers import HANDLERS as ORDERS_HANDLERS
from shared.settings import SERVICES, SUBSCRIPTIONS, Settings

HANDLED = {"orders": ORDERS_HANDLERS.event_types, "inventory": INVENTORY_HANDLERS.event_types,
           "allocator": ALLOCATOR_HANDLERS.event_types, "notifier": NOTIFIER_HANDLERS.event_types}
SHOWN_PER_KIND = 8


async def history_problems(stack: FaultStack) -> list[str]:
    """Outboxes first, then the topics, then the inboxes: a row sent before its outbox was read is on
    the topics read after, and an event on the topics has been applied when the inboxes are read
    (a service that writes a row meanwhile, e.g. the notifier recording a delivery, cannot make a
    row look lost)."""
    outboxes, inboxes = {}, {}
    for service in SERVICES:
        async with stack.connect(service) as conn:
            outboxes[service] = await conn.fetch(
                'SELECT id, event_id, event_type, topic, key, partition, "offset", cluster_id FROM outbox ORDER BY id')
    topics = await read_topics(stack.settings, stack.settings.all_topics())
    for service in SERVICES:
        async with stack.connect(service) as conn:
            inbox = await conn.fetch("SELECT event_id FROM inbox WHERE consumer = $1", service)
            inboxes[service] = {row["event_id"] for row in inbox}
    cluster = stack.broker.active_cluster_id if stack.broker else None
    problems = _published(outboxes, topics, cluster)
    problems += _consumed(stack.settings, topics, inboxes)
    problems += _applied(stack.settings, outboxes, topics, inboxes)
    problems += _ordered_per_key(outboxes, topics)
    return problems


async def read_topics(settings: Settings, topics: list[str], timeout: float = 30.0) -> dict[str, list[Message]]:
    """Every message of every topic from the beginning to the highwater, by one group-less reader."""
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap_servers, enable_auto_commit=False,
                                fetch_max_wait_ms=10, max_partition_fetch_bytes=4 * 1024 * 1024)
    await consumer.start()
    try:
        partitions = [TopicPartition(t, p) for t in topics for p in sorted(consumer.partitions_for_topic(t) or ())]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        read: dict[str, list[Message]] = {topic: [] for topic in topics}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=100, max_records=10_000)).values():
                for r in records:
                    headers = {k: v.decode(errors="replace") for k, v in r.headers}
                    read[r.topic].append(Message(r.topic, r.partition, r.offset, r.key.decode() if r.key else None,
                                                 r.value or b"", headers))
            ends = [(consumer.highwater(tp), await consumer.position(tp)) for tp in partitions]
            if all(high is not None and position >= high for high, position in ends):
                return read
        raise TimeoutError(f"could not read {topics} to their ends in {timeout} s")
    finally:
        await consumer.stop()


def event_id_of(message: Message) -> UUID | None:
    try:
        return message.envelope().event_id
    except ValueError:
        header = message.headers.get("event_id")
        try:
            return UUID(header) if header else None
        except ValueError:
            return None


def _published(outboxes: dict[str, list[Any]], topics: dict[str, list[Message]], cluster: str | None) -> list[str]:
    """Rows sent to the broker that still runs are on their topic, at the offset recorded."""
    at = {(m.topic, m.partition, m.offset): m for messages in topics.values() for m in messages}
    seen = {(m.topic, event_id_of(m)) for messages in topics.values() for m in messages}
    problems: dict[str, list[str]] = defaultdict(list)
    for service, rows in outboxes.items():
        for row in rows:
            if row["cluster_id"] != cluster:
                continue  # sent to a broker that was lost since (its relay republishes it)
            if (row["topic"], row["event_id"]) not in seen:
                event = f"{row['event_type']} {row['event_id']}"
                problems["missing"].append(f"{service} outbox #{row['id']} {event} is not on {row['topic']}")
                continue
            found = at.get((row["topic"], row["partition"], row["offset"]))
            if found is None or event_id_of(found) != row["event_id"]:
                problems["misplaced"].append(f"{service} outbox #{row['id']} {row['event_type']} recorded at "
                                             f"{row['topic']}[{row['partition']}]@{row['offset']}, which holds another message")
    return _capped(problems)


def _consumed(settings: Settings, topics: dict[str, list[Message]], inboxes: dict[str, set[UUID]]) -> list[str]:
    """Each event of a type a service handles, on a topic it reads, is in its inbox or its dead letters."""
    dead: set[tuple[str, UUID | None]] = set()
    for topic, messages in topics.items():
        if topic.endswith(".dlq"):
            dead |= {(m.headers.get("dlq.consumer", ""), event_id_of(m)) for m in messages}
    problems: dict[str, list[str]] = defaultdict(list)
    for service, streams in SUBSCRIPTIONS.items():
        for topic in (settings.topic(s) for s in streams):
            for message in topics.get(topic, []):
                try:
                    envelope = message.envelope()
                except ValueError:
                    continue
                if envelope.event_type not in HANDLED[service] or envelope.producer == service:
                    continue  # not its business, or its own (a service does not read its own events)
                if (service, envelope.event_id) in dead:
                    continue
                if envelope.event_id not in inboxes[service]:
                    problems[f"{service} missed"].append(
                        f"{service} never applied {envelope.event_type} {envelope.event_id} "
                        f"({topic}[{message.partition}]@{message.offset}, from {envelope.producer})")
    return _capped(problems)


def _applied(
    settings: Settings, outboxes: dict[str, list[Any]], topics: dict[str, list[Message]], inboxes: dict[str, set[UUID]]
) -> list[str]:
    """Every event any service wrote, also those a lost broker held and nobody republished (its
    consumers had committed past them), is in the inbox of each service that reads its topic and
    handles its type, or in that service's dead letters on the current broker: none lost."""
    dead: set[tuple[str, UUID | None]] = set()
    for topic, messages in topics.items():
        if topic.endswith(".dlq"):
            dead |= {(m.headers.get("dlq.consumer", ""), event_id_of(m)) for m in messages}
    readers = {
        settings.topic(stream): [s for s, streams in SUBSCRIPTIONS.items() if stream in streams]
        for streams in SUBSCRIPTIONS.values() for stream in streams
    }
    problems: dict[str, list[str]] = defaultdict(list)
    for producer, rows in outboxes.items():
        for row in rows:
            for service in readers.get(row["topic"], []):
                if row["event_type"] not in HANDLED[service] or producer == service or (service, row["event_id"]) in dead:
                    continue
                if row["event_id"] not in inboxes[service]:
                    problems[f"{service} lost"].append(
                        f"{service} never applied {row['event_type']} {row['event_id']} ({producer} outbox #{row['id']})")
    return _capped(problems)


def _ordered_per_key(outboxes: dict[str, list[Any]], topics: dict[str, list[Message]]) -> list[str]:
    """Per partition and (producer, key), the first copies appear in the producer's outbox order."""
    written = {(service, row["event_id"]): row["id"] for service, rows in outboxes.items() for row in rows}
    problems: dict[str, list[str]] = defaultdict(list)
    for topic, messages in topics.items():
        first_seen: set[UUID] = set()
        last_id: dict[tuple[int, str, str | None], tuple[int, int]] = {}
        for message in sorted(messages, key=lambda m: (m.partition, m.offset)):
            try:
                envelope = message.envelope()
            except ValueError:
                continue
            outbox_id = written.get((envelope.producer, envelope.event_id))
            if outbox_id is None or envelope.event_id in first_seen:
                continue
            first_seen.add(envelope.event_id)
            key = (message.partition, envelope.producer, message.key)
            previous = last_id.get(key)
            if previous is not None and previous[0] > outbox_id:
                problems["order"].append(
                    f"{topic}[{message.partition}] key {message.key}: {envelope.producer} outbox #{outbox_id} "
                    f"(@{message.offset}) first appears after #{previous[0]} (@{previous[1]})")
            last_id[key] = (max(outbox_id, previous[0]) if previous else outbox_id, message.offset)
    return _capped(problems)


def _capped(problems: dict[str, list[str]]) -> list[str]:
    shown = []
    for kind, items in problems.items():
        shown += items[:SHOWN_PER_KIND]
        if len(items) > SHOWN_PER_KIND:
            shown.append(f"... and {len(items) - SHOWN_PER_KIND} more ({kind})")
    return shown
