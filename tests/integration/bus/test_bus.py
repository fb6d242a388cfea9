"""The bus against the real PostgreSQL and broker: outbox after commit only, inbox idempotency,
dead letters that do not block a partition, and republishing to a broker that lost everything."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timezone
from uuid import UUID, uuid4

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer
from sqlalchemy import text
from support import envelope_for, eventually, publish, read_topic

from shared.bus.consumer import DeadLetter, EventConsumer
from shared.bus.outbox import UnitOfWork, unit_of_work
from shared.bus.relay import OutboxRelay
from shared.db import create_engine, migrate, session_factory
from shared.devstack.embedded import ensure_databases, ensure_topics
from shared.events import Customer, OrderedLine, OrderPlaced, StockShort
from shared.settings import Settings, asyncpg_dsn


@dataclass
class BusFixture:
    settings: Settings
    database_url: str
    topic: str


@pytest.fixture(scope="module")
async def bus(stack) -> AsyncIterator[BusFixture]:
    """A database with the bus tables and private topics, so these tests see only their own traffic."""
    suffix = uuid4().hex[:8]
    topic = f"bustest-orders-{suffix}"
    settings = stack.settings.model_copy(update={"topic_orders": topic, "outbox_poll_interval_s": 0.5})
    database = "backorder_bustest"
    await ensure_databases(settings.admin_database_url(), [database])
    url = settings.service_database_url("notifier").rsplit("/", 1)[0] + f"/{database}"
    await asyncio.to_thread(migrate, "notifier", url)
    await ensure_topics(settings.kafka_bootstrap_servers, [topic, f"{topic}.dlq"], partitions=1)
    conn = await asyncpg.connect(asyncpg_dsn(url))
    await conn.execute("CREATE TABLE IF NOT EXISTS effects (event_id uuid, order_id uuid)")
    await conn.close()
    yield BusFixture(settings, url, topic)


def order_placed() -> OrderPlaced:
    return OrderPlaced(
        order_id=uuid4(), external_id=uuid4().hex, channel="web",
        customer=Customer(id="c1", email="c1@example.com"), partial_allowed=True,
        placed_at=datetime.now(timezone.utc), lines=(OrderedLine(line_no=1, sku="SKU-1", qty=1),),
    )


async def started_producer(settings: Settings) -> AIOKafkaProducer:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, acks="all")
    await producer.start()
    return producer


async def published_ids(settings: Settings, topic: str) -> list[UUID]:
    return [m.envelope().event_id for m in await read_topic(settings, topic)]


async def published_by_a_new_relay(bus: BusFixture, event_id: UUID) -> bool:
    """Start a relay as a restarted service would, and report whether it publishes the event."""
    producer = await started_producer(bus.settings)
    relay = OutboxRelay("bustest", bus.database_url, producer, bus.settings)
    task = asyncio.create_task(relay.run())
    try:
        return bool(await eventually(lambda: _contains(bus, event_id)))
    finally:
        relay.stop()
        await asyncio.wait_for(task, 10)
        await producer.stop()


async def _contains(bus: BusFixture, event_id: UUID) -> bool:
    return event_id in await published_ids(bus.settings, bus.topic)


async def test_outbox_publishes_after_commit_and_not_before(bus: BusFixture) -> None:
    engine = create_engine(bus.database_url, 2)
    producer = await started_producer(bus.settings)
    relay = OutboxRelay("bustest", bus.database_url, producer, bus.settings)
    relay_task = asyncio.create_task(relay.run())
    try:
        async with unit_of_work(session_factory(engine), "bustest", bus.settings) as uow:
            envelope = uow.emit(order_placed())
            await uow.flush_events()
            await asyncio.sleep(1.5)  # three relay polls while the transaction is open
            assert envelope.event_id not in await published_ids(bus.settings, bus.topic)
        published = await eventually(lambda: _contains(bus, envelope.event_id))
        assert published, "committed outbox row was never published"
        conn = await asyncpg.connect(asyncpg_dsn(bus.database_url))
        query = 'SELECT sent_at, partition, "offset", cluster_id FROM outbox WHERE event_id = $1 AND sent_at IS NOT NULL'
        row = await eventually(lambda: conn.fetchrow(query, envelope.event_id))
        await conn.close()
        assert row is not None and row["offset"] is not None and row["cluster_id"]
    finally:
        relay.stop()
        await asyncio.wait_for(relay_task, 10)
        await producer.stop()
        await engine.dispose()


async def test_rows_committed_before_a_crash_are_published_by_the_next_relay(bus: BusFixture) -> None:
    """The process died after the commit and before the publish: the row is still unsent in the
    outbox, and whichever relay leads next publishes it."""
    conn = await asyncpg.connect(asyncpg_dsn(bus.database_url))
    envelope = envelope_for(order_placed())
    await conn.execute(
        "INSERT INTO outbox (event_id, event_type, topic, key, envelope) VALUES ($1, 'OrderPlaced', $2, 'k', $3::jsonb)",
        envelope.event_id, bus.topic, envelope.model_dump_json(),
    )
    await conn.close()
    assert await published_by_a_new_relay(bus, envelope.event_id)


async def test_rolled_back_transaction_publishes_nothing(bus: BusFixture) -> None:
    engine = create_engine(bus.database_url, 2)
    emitted: list[UUID] = []
    with pytest.raises(RuntimeError):
        async with unit_of_work(session_factory(engine), "bustest", bus.settings) as uow:
            emitted.append(uow.emit(order_placed()).event_id)
            await uow.flush_events()
            raise RuntimeError("handler failed after emitting")
    conn = await asyncpg.connect(asyncpg_dsn(bus.database_url))
    assert await conn.fetchval("SELECT count(*) FROM outbox WHERE event_id = $1", emitted[0]) == 0
    await conn.close()
    await engine.dispose()




async def test_relay_republishes_rows_a_lost_broker_forgot(bus: BusFixture) -> None:
    """A row sent to another cluster (the broker restarted empty) is published again on start."""
    conn = await asyncpg.connect(asyncpg_dsn(bus.database_url))
    envelope = envelope_for(order_placed())
    await conn.execute(
        "INSERT INTO outbox (event_id, event_type, topic, key, envelope, sent_at, partition, \"offset\", cluster_id) "
        "VALUES ($1, 'OrderPlaced', $2, 'k', $3::jsonb, now(), 0, 0, 'a-broker-that-is-gone')",
        envelope.event_id, bus.topic, envelope.model_dump_json(),
    )
    await conn.close()
    assert await published_by_a_new_relay(bus, envelope.event_id)


async def test_relay_republishes_a_topic_that_lost_what_it_was_sent(bus: BusFixture) -> None:
    """Same broker, but the partition ends before an offset we recorded (a deleted or truncated
    topic on a real cluster): the topic's retained rows are published again."""
    from shared.bus.relay import broker_cluster_id

    conn = await asyncpg.connect(asyncpg_dsn(bus.database_url))
    envelope = envelope_for(order_placed())
    await conn.execute(
        "INSERT INTO outbox (event_id, event_type, topic, key, envelope, sent_at, partition, \"offset\", cluster_id) "
        "VALUES ($1, 'OrderPlaced', $2, 'k', $3::jsonb, now(), 0, 1000000, $4)",
        envelope.event_id, bus.topic, envelope.model_dump_json(), await broker_cluster_id(bus.settings),
    )
    await conn.close()
    assert await published_by_a_new_relay(bus, envelope.event_id)


async def test_second_relay_waits_as_standby(bus: BusFixture) -> None:
    producer = await started_producer(bus.settings)
    first = OutboxRelay("standby-test", bus.database_url, producer, bus.settings)
    second = OutboxRelay("standby-test", bus.database_url, producer, bus.settings)
    tasks = [asyncio.create_task(first.run()), asyncio.create_task(second.run())]
    try:
        assert await eventually(lambda: _leader_count(first, second))
        await asyncio.sleep(1.0)
        assert [first.is_leader, second.is_leader].count(True) == 1
    finally:
        first.stop()
        second.stop()
        await asyncio.wait_for(asyncio.gather(*tasks), 10)
        await producer.stop()


async def _leader_count(*relays: OutboxRelay) -> bool:
    return any(r.is_leader for r in relays)


class Effects:
    """A handler with a visible side effect, and one that always fails."""

    def __init__(self) -> None:
        self.calls = 0

    async def record(self, event: OrderPlaced, uow: UnitOfWork) -> None:
        self.calls += 1
        await uow.session.execute(
            text("INSERT INTO effects (event_id, order_id) VALUES (:e, :o)"),
            {"e": uow.cause.event_id if uow.cause else None, "o": event.order_id},
        )
        if event.external_id == "poison":
            raise DeadLetter("poison order")
        if event.external_id == "always-fails":
            raise ValueError("this handler keeps failing")


async def test_consumer_inbox_dead_letters_and_flow(bus: BusFixture, producer: AIOKafkaProducer) -> None:
    engine = create_engine(bus.database_url, 4)
    effects = Effects()
    settings = bus.settings.model_copy(update={"handler_retries": 2, "handler_retry_backoff_s": 0.05})
    dlq_producer = await started_producer(settings)
    consumer = EventConsumer(f"bustest-{uuid4().hex[:6]}", [bus.topic], {"OrderPlaced": effects.record},
                             session_factory(engine), dlq_producer, settings)
    task = asyncio.create_task(consumer.run())
    try:
        duplicate = order_placed()
        first = await publish(producer, settings, duplicate)
        assert first is not None
        await publish(producer, settings, duplicate, event_id=first.event_id)  # redelivery: same event id
        await publish(producer, settings, raw=b"{not json", topic=bus.topic)
        await publish(producer, settings, order_placed().model_copy(update={"external_id": "always-fails"}))
        await publish(producer, settings, order_placed().model_copy(update={"external_id": "poison"}))
        after = order_placed()
        await publish(producer, settings, after)

        conn = await asyncpg.connect(asyncpg_dsn(bus.database_url))
        try:
            async def after_processed() -> bool:
                return bool(await conn.fetchval("SELECT count(*) FROM effects WHERE order_id = $1", after.order_id))

            assert await eventually(after_processed, timeout=30), "the partition stopped at a bad message"
            assert await conn.fetchval("SELECT count(*) FROM effects WHERE order_id = $1", duplicate.order_id) == 1
            assert await conn.fetchval(
                "SELECT count(*) FROM inbox WHERE consumer = $1 AND event_id = $2", consumer.name, first.event_id
            ) == 1
        finally:
            await conn.close()
        dead = [m for m in await read_topic(settings, f"{bus.topic}.dlq") if m.headers.get("dlq.consumer") == consumer.name]
        reasons = [m.headers["dlq.reason"] for m in dead]
        assert any(r.startswith("unparseable") for r in reasons), reasons
        assert any("keeps failing" in r and "attempts" in r for r in reasons), reasons
        assert any(r == "rejected: poison order" for r in reasons), reasons
        assert len(dead) == 3
    finally:
        consumer.stop()
        await asyncio.wait_for(task, 15)
        await dlq_producer.stop()
        await engine.dispose()


async def test_stack_reports_quiescence_after_events_flow(stack, producer: AIOKafkaProducer) -> None:
    """wait_quiescent (used by every end-to-end test and the graceful stop) sees published events consumed."""
    event = StockShort(
        order_id=uuid4(), line_no=1, sku=f"Q-{uuid4().hex[:6]}", qty_short=1, qty_reserved=0,
        ordered_at=datetime.now(timezone.utc), customer_tier="standard", partial_allowed=True, order_short_lines=1,
    )
    await publish(producer, stack.settings, event)
    await stack.wait_quiescent(timeout=30)
    assert await stack.consumer_lag() == 0
    assert await stack.unsent_outbox_rows() == 0
