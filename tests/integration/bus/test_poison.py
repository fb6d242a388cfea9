"""Poison messages never block a partition: each case puts one bad message on a private topic, then a
valid event with the same key (so on the same partition, behind it), and checks that the valid
event takes effect and the bad one is where it belongs: in `<topic>.dlq` with its reason, or
passed over (counted as skipped when its type is unknown to this build). Also: a consumer group
apart from the inbox's name replays a topic without a second effect."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from uuid import UUID, uuid4

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from sqlalchemy import text
from support import bus_database, envelope_for, eventually, read_topic

from shared.bus.consumer import EventConsumer
from shared.bus.handlers import Handlers, each
from shared.bus.outbox import UnitOfWork
from shared.db import create_engine, session_factory
from shared.devstack.embedded import ensure_topics
from shared.events import Customer, Envelope, OrderedLine, OrderPlaced
from shared.settings import Settings, asyncpg_dsn

DATABASE = "backorder_poisontest"


@dataclass
class PoisonBus:
    settings: Settings
    database_url: str


@pytest.fixture(scope="module")
async def poison_bus(stack) -> AsyncIterator[PoisonBus]:
    """A database with the bus tables and an effects table that only these tests use."""
    settings = stack.settings
    url = await bus_database(settings, DATABASE)
    conn = await asyncpg.connect(asyncpg_dsn(url))
    await conn.execute("CREATE TABLE IF NOT EXISTS effects (event_id uuid, order_id uuid)")
    await conn.close()
    yield PoisonBus(settings, url)


def order_placed(order_id: UUID | None = None) -> OrderPlaced:
    return OrderPlaced(
        order_id=order_id or uuid4(), external_id=uuid4().hex, channel="web",
        customer=Customer(id="c1", email="c1@example.com"), partial_allowed=True,
        placed_at=datetime.now(UTC), lines=(OrderedLine(line_no=1, sku="SKU-1", qty=1),),
    )


async def record_effect(event: OrderPlaced, uow: UnitOfWork) -> None:
    await uow.session.execute(
        text("INSERT INTO effects (event_id, order_id) VALUES (:e, :o)"),
        {"e": uow.cause.event_id if uow.cause else None, "o": event.order_id},
    )


def wire(envelope: Envelope) -> bytes:
    return envelope.model_dump_json().encode()


def relay_headers(envelope: Envelope) -> list[tuple[str, bytes]]:
    """The headers the outbox relay sets."""
    return [("event_type", envelope.event_type.encode()), ("event_id", str(envelope.event_id).encode())]


def unknown_type(key: str) -> Envelope:
    """A type a newer orders service might add."""
    return Envelope(event_type="OrderNoteAdded", correlation_id=key, producer="orders",
                    payload={"order_id": key, "note": "leave at the back door"})


@dataclass
class Case:
    value: Callable[[str], bytes]
    headers: Callable[[str], list[tuple[str, bytes]]] = lambda key: []
    dlq_reason: str | None = None  # None: passed over, not dead-lettered
    skipped: int = 0
    large: bool = False


MEGABYTE = 1_100_000  # over max_partition_fetch_bytes and max_request_size (1 MiB each)
CASES = {
    "not json": Case(lambda key: b"{not json", dlq_reason="unparseable message: not JSON (key must be a string"),
    "wrong shape": Case(
        lambda key: wire(envelope_for(order_placed()).model_copy(update={"payload": {"order_id": key}})),
        dlq_reason="unparseable OrderPlaced: external_id is missing; channel is missing;",
    ),
    "unknown type, relay headers": Case(
        lambda key: wire(unknown_type(key)), lambda key: relay_headers(unknown_type(key)), skipped=1
    ),
    "unknown type, no headers": Case(lambda key: wire(unknown_type(key)), skipped=1),
    "unknown type, not even json": Case(
        lambda key: b"\x00future binary", lambda key: [("event_type", b"OrderNoteAdded")], skipped=1
    ),
    "known type without a handler here, wrong shape": Case(
        lambda key: wire(Envelope(event_type="StockShort", correlation_id=key, producer="inventory", payload={"x": 1})),
    ),
    "future schema version": Case(
        lambda key: wire(envelope_for(order_placed()).model_copy(update={"schema_version": 2})),
        dlq_reason="OrderPlaced schema_version 2 is newer than the 1 this build reads",
    ),
    "1 MB not json": Case(lambda key: b"x" * MEGABYTE, dlq_reason="unparseable message: not JSON", large=True),
    "1 MB valid envelope of an unknown type": Case(
        lambda key: wire(unknown_type(key).model_copy(update={"payload": {"blob": "x" * MEGABYTE}})), skipped=1, large=True,
    ),
}


async def applied(bus: PoisonBus, order_id: UUID) -> int:
    conn = await asyncpg.connect(asyncpg_dsn(bus.database_url))
    try:
        return int(await conn.fetchval("SELECT count(*) FROM effects WHERE order_id = $1", order_id))
    finally:
        await conn.close()


async def test_poison_messages_do_not_block_their_partitions(poison_bus: PoisonBus, producer: AIOKafkaProducer) -> None:
    """Every case at once, each on its own topic with its own consumer group: a group join costs
    the embedded broker half a session timeout, so one case after the other spent most of their
    time joining. A failing case is reported by name."""
    outcomes = await asyncio.gather(*(check_case(poison_bus, producer, name) for name in CASES), return_exceptions=True)
    failed = {name: repr(outcome) for name, outcome in zip(CASES, outcomes, strict=True) if outcome is not None}
    assert not failed, failed


async def check_case(poison_bus: PoisonBus, producer: AIOKafkaProducer, case_name: str) -> None:
    case = CASES[case_name]
    topic = f"poison-{uuid4().hex[:8]}"
    await ensure_topics(poison_bus.settings.kafka_bootstrap_servers, [topic, f"{topic}.dlq"], partitions=2)
    settings = poison_bus.settings.model_copy(update={"topic_orders": topic})
    valid = order_placed()
    key = str(valid.order_id)

    big_producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, acks="all",
                                    max_request_size=4 * 1024 * 1024)
    await big_producer.start()
    try:
        sender = big_producer if case.large else producer
        await sender.send_and_wait(topic, value=case.value(key), key=key.encode(), headers=case.headers(key))
        await producer.send_and_wait(topic, value=wire(envelope_for(valid)), key=key.encode())
    finally:
        await big_producer.stop()

    dlq_producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, acks="all")  # as a service's
    await dlq_producer.start()
    engine = create_engine(poison_bus.database_url, 2)
    consumer = EventConsumer(f"poison-{uuid4().hex[:6]}", [topic], Handlers.by_class({OrderPlaced: each(record_effect)}),
                             session_factory(engine), dlq_producer, settings)
    task = asyncio.create_task(consumer.supervise())
    try:
        assert await eventually(lambda: applied(poison_bus, valid.order_id), timeout=30), "the partition is blocked"
        assert consumer.restarts == 0
        assert consumer.skipped == case.skipped
        dead = [m for m in await read_topic(settings, f"{topic}.dlq") if m.headers.get("dlq.consumer") == consumer.name]
        if case.dlq_reason is None:
            assert dead == [] and consumer.dead_lettered == 0
        else:
            assert len(dead) == 1 and consumer.dead_lettered == 1
            assert case.dlq_reason in dead[0].headers["dlq.reason"], dead[0].headers
            assert dead[0].key == key and dead[0].headers["dlq.offset"] == "0"
            if case.large:
                assert dead[0].value == b"" and dead[0].headers["dlq.value_dropped"] == str(MEGABYTE)
        assert await applied(poison_bus, valid.order_id) == 1
    finally:
        consumer.stop()
        await asyncio.wait_for(task, 15)
        await dlq_producer.stop()
        await engine.dispose()


async def committed(settings: Settings, group: str, topic: str) -> int:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    await admin.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(2)]
        offsets = await admin.list_consumer_group_offsets(group, partitions=tps)
        return sum(max(o.offset, 0) for o in offsets.values())
    finally:
        await admin.close()


async def test_a_fresh_group_replays_the_topic_and_the_inbox_absorbs_it(
    poison_bus: PoisonBus, producer: AIOKafkaProducer
) -> None:
    """group_id apart from name: a new group reads from offset zero, the inbox (kept by name) knows
    every event already applied, so the replay has no second effect."""
    topic = f"replay-{uuid4().hex[:8]}"
    await ensure_topics(poison_bus.settings.kafka_bootstrap_servers, [topic, f"{topic}.dlq"], partitions=2)
    settings = poison_bus.settings.model_copy(update={"topic_orders": topic})
    events = [order_placed() for _ in range(3)]
    for event in events:
        await producer.send_and_wait(topic, value=wire(envelope_for(event)), key=str(event.order_id).encode())
    name = f"replay-{uuid4().hex[:6]}"
    engine = create_engine(poison_bus.database_url, 2)
    try:
        for group in (None, f"{name}-fresh"):
            handlers = Handlers.by_class({OrderPlaced: each(record_effect)})
            consumer = EventConsumer(name, [topic], handlers, session_factory(engine), producer, settings, group_id=group)
            task = asyncio.create_task(consumer.run())
            kafka_group = group or name
            try:
                assert await eventually(lambda: _committed_all(settings, kafka_group, topic, 3), timeout=30)  # noqa: B023
            finally:
                consumer.stop()
                await asyncio.wait_for(task, 15)
        assert [await applied(poison_bus, e.order_id) for e in events] == [1, 1, 1]
    finally:
        await engine.dispose()


async def _committed_all(settings: Settings, group: str, topic: str, count: int) -> bool:
    return await committed(settings, group, topic) == count
