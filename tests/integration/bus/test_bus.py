"""The bus against the real PostgreSQL and broker: outbox after commit only, inbox idempotency,
dead letters that do not block a partition, and republishing to a broker that lost everything."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from uuid import UUID, uuid4

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from sqlalchemy import text
from support import bus_database, envelope_for, eventually, publish, read_topic

from shared.bus.consumer import EventConsumer
from shared.bus.handlers import DeadLetter, Handlers, each
from shared.bus.outbox import UnitOfWork, unit_of_work
from shared.bus.relay import OutboxRelay
from shared.db import create_engine, session_factory
from shared.devstack.embedded import ensure_topics
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
    url = await bus_database(settings, database)
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


@asynccontextmanager
async def running_relay(settings: Settings, database_url: str, service: str = "bustest") -> AsyncIterator[OutboxRelay]:
    """An outbox relay with its own producer, running as a service runs it; stopped and closed on exit."""
    producer = await started_producer(settings)
    relay = OutboxRelay(service, database_url, producer, settings)
    task = asyncio.create_task(relay.run())
    try:
        yield relay
    finally:
        relay.stop()
        await asyncio.wait_for(task, 10)
        await producer.stop()


@asynccontextmanager
async def running_consumer(
    bus: BusFixture, settings: Settings, handlers: Handlers, dlq_producer: AIOKafkaProducer,
    group: str | None = None, supervised: bool = True,
) -> AsyncIterator[tuple[EventConsumer, asyncio.Task[None]]]:
    """A consumer of the settings' orders topic on the bus database, running in a task (under its
    supervisor, as services run it, or its bare loop); on exit it is stopped, and the dead-letter
    producer it then has and its engine are closed."""
    engine = create_engine(bus.database_url, 2)
    consumer = EventConsumer(group or f"bustest-{uuid4().hex[:6]}", [settings.topic_orders], handlers,
                             session_factory(engine), dlq_producer, settings)
    task = asyncio.create_task(consumer.supervise() if supervised else consumer.run())
    try:
        yield consumer, task
    finally:
        consumer.stop()
        await asyncio.wait_for(task, 15)
        await consumer.producer.stop()
        await engine.dispose()


async def published_ids(settings: Settings, topic: str) -> list[UUID]:
    return [m.envelope().event_id for m in await read_topic(settings, topic)]


async def published_by_a_new_relay(bus: BusFixture, event_id: UUID) -> bool:
    """Start a relay as a restarted service would, and report whether it publishes the event."""
    async with running_relay(bus.settings, bus.database_url):
        return bool(await eventually(lambda: _contains(bus, event_id)))


async def _contains(bus: BusFixture, event_id: UUID) -> bool:
    return event_id in await published_ids(bus.settings, bus.topic)


async def test_outbox_publishes_after_commit_and_not_before(bus: BusFixture) -> None:
    engine = create_engine(bus.database_url, 2)
    try:
        async with running_relay(bus.settings, bus.database_url):
            async with unit_of_work(session_factory(engine), "bustest", bus.settings) as uow:
                event_id = uow.emit(order_placed())
                await uow.flush_events()
                await asyncio.sleep(1.5)  # three relay polls while the transaction is open
                assert event_id not in await published_ids(bus.settings, bus.topic)
            published = await eventually(lambda: _contains(bus, event_id))
            assert published, "committed outbox row was never published"
            conn = await asyncpg.connect(asyncpg_dsn(bus.database_url))
            query = 'SELECT sent_at, partition, "offset", cluster_id FROM outbox WHERE event_id = $1 AND sent_at IS NOT NULL'
            row = await eventually(lambda: conn.fetchrow(query, event_id))
            await conn.close()
            assert row is not None and row["offset"] is not None and row["cluster_id"]
    finally:
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
            emitted.append(uow.emit(order_placed()))
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
    from shared.bus.rebuild import broker_cluster_id

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
    """Redeliveries apply once, bad messages are dead-lettered without stopping the partition, and
    the consumer passes over its own service's events (what it did is not news to it): unread when
    the relay's producer header names it, after parsing when only the envelope does."""
    effects = Effects()
    settings = bus.settings.model_copy(update={"handler_retries": 2, "handler_retry_backoff_s": 0.05})
    handlers = Handlers.by_class({OrderPlaced: each(effects.record)})
    name = f"bustest-{uuid4().hex[:6]}"
    running = running_consumer(bus, settings, handlers, await started_producer(settings), group=name, supervised=False)
    async with running as (consumer, _):
        own_headed, own_plain = order_placed(), order_placed()
        await producer.send_and_wait(
            bus.topic, value=envelope_for(own_headed, producer=name).model_dump_json().encode(), key=own_headed.key.encode(),
            headers=[("event_type", b"OrderPlaced"), ("producer", name.encode())],
        )
        await publish(producer, settings, own_plain, producer_name=name)
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
            own = [own_headed.order_id, own_plain.order_id]
            assert await conn.fetchval("SELECT count(*) FROM effects WHERE order_id = ANY($1)", own) == 0
        finally:
            await conn.close()
        dead = [m for m in await read_topic(settings, f"{bus.topic}.dlq") if m.headers.get("dlq.consumer") == consumer.name]
        reasons = [m.headers["dlq.reason"] for m in dead]
        assert any(r.startswith("unparseable") for r in reasons), reasons
        assert any("keeps failing" in r and "attempts" in r for r in reasons), reasons
        assert any(r == "rejected: poison order" for r in reasons), reasons
        assert len(dead) == 3


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


async def private_topic(bus: BusFixture, name: str, **settings: object) -> Settings:
    """Settings whose orders topic (and its .dlq twin) only this test uses: a fresh consumer group
    then reads no earlier test's poison messages."""
    topic = f"bustest-{name}-{uuid4().hex[:8]}"
    await ensure_topics(bus.settings.kafka_bootstrap_servers, [topic, f"{topic}.dlq"], partitions=1)
    return bus.settings.model_copy(update={"topic_orders": topic, **settings})


async def applied(bus: BusFixture, order_id: UUID) -> int:
    conn = await asyncpg.connect(asyncpg_dsn(bus.database_url))
    try:
        return int(await conn.fetchval("SELECT count(*) FROM effects WHERE order_id = $1", order_id))
    finally:
        await conn.close()


async def committed_offset(settings: Settings, group: str, topic: str) -> int:
    """The group's committed offset on partition 0 (-1: none)."""
    tp = TopicPartition(topic, 0)
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group, partitions=[tp])
        return offsets[tp].offset if tp in offsets else -1
    finally:
        await admin.close()


def logged(caplog: pytest.LogCaptureFixture, level: int, text: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno == level and text in r.getMessage()]


async def test_a_crashed_consumer_is_restarted_and_consumes_again(
    bus: BusFixture, producer: AIOKafkaProducer, caplog: pytest.LogCaptureFixture
) -> None:
    """The Kafka client is closed under the running loop (as a fatal client error would leave it):
    the supervisor logs the crash, reports the consumer down, restarts it, and it consumes again."""
    # The crashed member never leaves (the broker numbers a group's first generation 0, and
    # aiokafka sends LeaveGroup only for later ones): a short session evicts it sooner.
    settings = await private_topic(bus, "crash", kafka_session_timeout_ms=3000, kafka_heartbeat_interval_ms=500)
    handlers = Handlers.by_class({OrderPlaced: each(Effects().record)})
    async with running_consumer(bus, settings, handlers, await started_producer(settings)) as (consumer, task):
        assert await eventually(lambda: _consuming(consumer)), "the consumer never joined its group"
        kafka = consumer._consumer
        assert kafka is not None
        await kafka.stop()
        assert await eventually(lambda: _down(consumer)), "a crashed consumer still reported healthy"
        crashes = await eventually(lambda: _logged_async(caplog, logging.ERROR, "consumer crashed"))
        assert crashes and crashes[0].exc_info is not None, "the crash was not logged with its exception"
        assert consumer.restarts == 1 and not task.done()

        event = order_placed()
        await publish(producer, settings, event)
        assert await eventually(lambda: applied(bus, event.order_id), timeout=30), "nothing consumed after the restart"
        assert consumer.healthy and consumer.restarts == 1


async def test_a_consumer_that_cannot_start_retries_and_stops_promptly(bus: BusFixture) -> None:
    """No broker at all: every start fails, each failure is a restart with backoff, readiness says
    down, and stop() ends the supervisor during its backoff instead of after it."""
    settings = bus.settings.model_copy(update={"kafka_bootstrap_servers": "127.0.0.1:1"})
    dlq_producer = await started_producer(bus.settings)  # the dead-letter topic's broker is up
    async with running_consumer(bus, settings, Handlers.by_class({}), dlq_producer, group="bustest-nobroker") as (consumer, task):
        consumer.restart_backoff_s = 60.0  # set before the task first runs; only stop() can end the backoff in time
        assert await eventually(lambda: _restarted(consumer))
        assert consumer.down and not consumer.healthy
        consumer.stop()
        await asyncio.wait_for(task, 15)
        assert consumer.restarts == 1


async def test_a_failed_dead_letter_send_commits_nothing_past_the_message(
    bus: BusFixture, producer: AIOKafkaProducer, caplog: pytest.LogCaptureFixture
) -> None:
    """The dead-letter producer is closed, so parking an unparseable message fails: the offset of
    that message is never committed and the event after it waits; once a working producer is
    back, the message is dead-lettered and the partition moves on."""
    settings = await private_topic(bus, "dlqfail", handler_retry_backoff_s=0.05)
    closed = await started_producer(settings)
    await closed.stop()
    group = f"bustest-{uuid4().hex[:6]}"
    await publish(producer, settings, raw=b"{not json", topic=settings.topic_orders)
    after = order_placed()
    await publish(producer, settings, after)
    handlers = Handlers.by_class({OrderPlaced: each(Effects().record)})
    async with running_consumer(bus, settings, handlers, closed, group=group) as (consumer, _):
        failures = await eventually(
            lambda: _logged_async(caplog, logging.ERROR, "dead-letter send failed", at_least=3), timeout=30
        )
        assert failures, "the dead-letter send was not retried"
        assert await applied(bus, after.order_id) == 0, "the event after the failed message was applied"
        assert await committed_offset(settings, group, settings.topic_orders) <= 0, "committed past the message"
        assert consumer.restarts == 0  # retried in place, no crash

        consumer.producer = await started_producer(settings)  # closed on exit, as the consumer's producer
        assert await eventually(lambda: applied(bus, after.order_id), timeout=30)
        assert await eventually(lambda: _committed(settings, group, settings.topic_orders, 2))
        dead = [m for m in await read_topic(settings, f"{settings.topic_orders}.dlq") if m.headers.get("dlq.consumer") == group]
        assert [m.value for m in dead] == [b"{not json"]
        assert await applied(bus, after.order_id) == 1


async def test_a_leading_relay_republishes_what_the_broker_lost(bus: BusFixture, caplog: pytest.LogCaptureFixture) -> None:
    """The topic is deleted and recreated empty while the relay leads (a truncated topic, or a
    broker that lost its data): within its check interval the relay republishes the sent row,
    without losing and retaking the lead."""
    settings = await private_topic(bus, "lost", relay_broker_check_seconds=1.0)
    topic = settings.topic_orders
    conn = await asyncpg.connect(asyncpg_dsn(bus.database_url))
    try:
        async with running_relay(settings, bus.database_url, f"bustest-check-{uuid4().hex[:6]}") as relay:
            envelope = envelope_for(order_placed())
            await conn.execute(
                "INSERT INTO outbox (event_id, event_type, topic, key, envelope) VALUES ($1, 'OrderPlaced', $2, 'k', $3::jsonb)",
                envelope.event_id, topic, envelope.model_dump_json(),
            )
            sent = "SELECT sent_at IS NOT NULL FROM outbox WHERE event_id = $1"
            assert await eventually(lambda: conn.fetchval(sent, envelope.event_id)), "never published"
            assert await eventually(lambda: _on_topic(settings, envelope.event_id))

            await recreate_topic(settings, topic)
            assert await eventually(lambda: _on_topic(settings, envelope.event_id), timeout=20), "not republished"
            assert logged(caplog, logging.WARNING, f"topic {topic} lost messages")
            assert relay.is_leader and not logged(caplog, logging.ERROR, "outbox relay of"), "the lead was retaken"
    finally:
        await conn.close()


async def recreate_topic(settings: Settings, topic: str) -> None:
    """Delete the topic and create it again, empty. A relay check between the two may republish
    first and so auto-create it: that is fine, the row reaches the topic either way."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    await admin.start()
    try:
        await admin.delete_topics([topic])
        await admin.create_topics([NewTopic(topic, 1, 1)])
    finally:
        await admin.close()


async def _on_topic(settings: Settings, event_id: UUID) -> bool:
    return event_id in await published_ids(settings, settings.topic_orders)


async def _consuming(consumer: EventConsumer) -> bool:
    return consumer._consumer is not None and not consumer.down and consumer._up_since is not None


async def _down(consumer: EventConsumer) -> bool:
    return not consumer.healthy


async def _restarted(consumer: EventConsumer) -> bool:
    return consumer.restarts >= 1


async def _logged_async(
    caplog: pytest.LogCaptureFixture, level: int, text: str, at_least: int = 1
) -> list[logging.LogRecord]:
    found = logged(caplog, level, text)
    return found if len(found) >= at_least else []


async def _committed(settings: Settings, group: str, topic: str, offset: int) -> bool:
    return await committed_offset(settings, group, topic) == offset

