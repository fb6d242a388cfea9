"""A lost broker gets back only what its consumers had not consumed: the relay records, per
(cluster, topic, partition), the lowest offset the project's consumer groups committed (the consumed
watermark), and on a new cluster id or a truncated partition republishes only rows at or after it.
The broker loss is simulated on the live test broker: the rows and watermarks are moved to a
cluster id that no longer answers, exactly what a restarted embedded broker leaves behind. Also:
how the relay logs an outage (once when it starts, once when it ends, backing off in between)."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from uuid import UUID, uuid4

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from support import bus_database, envelope_for, eventually, read_topic

from shared.bus.offsets import HighwaterProbe
from shared.bus.relay import OutboxRelay
from shared.db import migrate
from shared.devstack.embedded import ensure_databases, ensure_topics
from shared.events import Customer, OrderedLine, OrderPlaced, Stream
from shared.settings import Settings, asyncpg_dsn

PARTITIONS = 2
EVENTS = 60


@dataclass
class Republish:
    settings: Settings
    database_url: str
    topic: str
    groups: tuple[str, str]

    async def connect(self) -> asyncpg.Connection:
        return await asyncpg.connect(asyncpg_dsn(self.database_url))


@pytest.fixture
async def republish(stack) -> AsyncIterator[Republish]:  # type: ignore[no-untyped-def]
    """A database with the bus tables, a private 2-partition orders topic and two private consumer groups."""
    suffix = uuid4().hex[:8]
    topic = f"republish-orders-{suffix}"
    settings = stack.settings.model_copy(update={"topic_orders": topic, "outbox_poll_interval_s": 0.2})
    database = "backorder_republish"
    url = await bus_database(settings, database)
    await ensure_topics(settings.kafka_bootstrap_servers, [topic], partitions=PARTITIONS)
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:  # earlier tests' rows: a relay would republish them (to topics gone with their broker) and count them
        await conn.execute("DELETE FROM outbox; DELETE FROM relay_watermark")
    finally:
        await conn.close()
    yield Republish(settings, url, topic, (f"republish-a-{suffix}", f"republish-b-{suffix}"))


@asynccontextmanager
async def running_relay(fx: Republish, **settings: object) -> AsyncIterator[OutboxRelay]:
    """The relay as a service runs it, with the fixture's two groups as the project's consumer groups."""
    producer = AIOKafkaProducer(bootstrap_servers=fx.settings.kafka_bootstrap_servers, acks="all")
    await producer.start()
    subscriptions = {group: (Stream.ORDERS,) for group in fx.groups}
    relay = OutboxRelay("republish", fx.database_url, producer, fx.settings.model_copy(update=settings), subscriptions)
    task = asyncio.create_task(relay.run())
    try:
        yield relay
    finally:
        relay.stop()
        await asyncio.wait_for(task, 15)
        await producer.stop()


async def write_events(fx: Republish, count: int) -> list[UUID]:
    ids = []
    conn = await fx.connect()
    try:
        for _ in range(count):
            envelope = envelope_for(_order_placed())
            await conn.execute(
                "INSERT INTO outbox (event_id, event_type, topic, key, envelope) VALUES ($1, 'OrderPlaced', $2, $3, $4::jsonb)",
                envelope.event_id, fx.topic, envelope.correlation_id, envelope.model_dump_json(),
            )
            ids.append(envelope.event_id)
    finally:
        await conn.close()
    return ids


async def all_sent(fx: Republish) -> bool:
    conn = await fx.connect()
    try:
        return not await conn.fetchval("SELECT count(*) FROM outbox WHERE topic = $1 AND sent_at IS NULL", fx.topic)
    finally:
        await conn.close()


async def commit(fx: Republish, group: str, offsets: dict[TopicPartition, int]) -> None:
    """Commit offsets for a group as its consumer would after applying the events below them."""
    consumer = AIOKafkaConsumer(bootstrap_servers=fx.settings.kafka_bootstrap_servers, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign(list(offsets))
        await consumer.commit(offsets)
    finally:
        await consumer.stop()


async def highwaters(fx: Republish) -> dict[TopicPartition, int]:
    probe = HighwaterProbe(fx.settings.kafka_bootstrap_servers)
    try:
        return await probe.highwaters(TopicPartition(fx.topic, p) for p in range(PARTITIONS))
    finally:
        await probe.stop()


async def sent_offsets(fx: Republish) -> dict[UUID, tuple[int, int]]:
    conn = await fx.connect()
    try:
        rows = await conn.fetch('SELECT event_id, partition, "offset" FROM outbox WHERE topic = $1', fx.topic)
        return {r["event_id"]: (r["partition"], r["offset"]) for r in rows}
    finally:
        await conn.close()


async def watermarks(fx: Republish, cluster_id: str) -> dict[TopicPartition, int]:
    conn = await fx.connect()
    try:
        rows = await conn.fetch("SELECT partition, consumed FROM relay_watermark WHERE cluster_id = $1 AND topic = $2",
                                cluster_id, fx.topic)
        return {TopicPartition(fx.topic, r["partition"]): r["consumed"] for r in rows}
    finally:
        await conn.close()


async def publications(fx: Republish) -> Counter[UUID]:
    return Counter(m.envelope().event_id for m in await read_topic(fx.settings, fx.topic))


async def lose_the_broker(fx: Republish, cluster_id: str) -> str:
    """What a restarted embedded broker leaves: rows and watermarks of a cluster that is gone."""
    lost = f"lost-{uuid4().hex[:8]}"
    conn = await fx.connect()
    try:
        for table in ("outbox", "relay_watermark"):
            query = f"UPDATE {table} SET cluster_id = $1 WHERE cluster_id = $2 AND topic = $3"
            await conn.execute(query, lost, cluster_id, fx.topic)
    finally:
        await conn.close()
    return lost


async def test_a_new_cluster_gets_only_rows_not_consumed_by_every_group(
    republish: Republish, caplog: pytest.LogCaptureFixture
) -> None:
    fx = republish
    caplog.set_level(logging.INFO, "bus.relay")
    ids = await write_events(fx, EVENTS)
    async with running_relay(fx) as relay:
        assert await eventually(lambda: all_sent(fx))
        cluster_id = relay.cluster_id
        ends = await highwaters(fx)
        # Group a applied everything, group b half of each partition: the watermark is b's.
        await commit(fx, fx.groups[0], ends)
        await commit(fx, fx.groups[1], {tp: end // 2 for tp, end in ends.items()})
    # Recorded on the graceful stop (and on every broker check before it).
    assert await watermarks(fx, cluster_id) == {tp: end // 2 for tp, end in ends.items()}

    offsets = await sent_offsets(fx)
    unconsumed = {i for i in ids if offsets[i][1] >= ends[TopicPartition(fx.topic, offsets[i][0])] // 2}
    assert 0 < len(unconsumed) < EVENTS
    lost = await lose_the_broker(fx, cluster_id)

    async with running_relay(fx):
        assert await eventually(lambda: all_sent(fx))
    published = await publications(fx)
    republished = {event_id for event_id, times in published.items() if times == 2}
    assert republished == unconsumed, "consumed rows republished, or unconsumed ones not"
    assert set(published) == set(ids) and max(published.values()) == 2
    message = f"republishing {len(unconsumed)} of {EVENTS} retained outbox rows"
    assert any(message in r.getMessage() for r in caplog.records), [r.getMessage() for r in caplog.records]
    print(f"\nrestart after {EVENTS - len(unconsumed)} of {EVENTS} events consumed by every group: "
          f"{len(unconsumed)} rows republished (all {EVENTS} before consumed watermarks)")
    conn = await fx.connect()
    try:  # rows of the lost cluster are still retained (not requeued): its watermark stays with them
        assert await conn.fetchval("SELECT count(*) FROM relay_watermark WHERE cluster_id = $1", lost) == PARTITIONS
    finally:
        await conn.close()


async def test_a_group_that_committed_nothing_makes_everything_republished(republish: Republish) -> None:
    fx = republish
    ids = await write_events(fx, 20)
    async with running_relay(fx) as relay:
        assert await eventually(lambda: all_sent(fx))
        cluster_id = relay.cluster_id
        await commit(fx, fx.groups[0], await highwaters(fx))  # group b never commits: it counts as 0
    assert set((await watermarks(fx, cluster_id)).values()) == {0}
    await lose_the_broker(fx, cluster_id)
    async with running_relay(fx):
        assert await eventually(lambda: all_sent(fx))
    assert set((await publications(fx)).values()) == {2} and len(await publications(fx)) == len(ids)


async def test_a_truncated_partition_gets_back_only_its_unconsumed_rows(
    republish: Republish, caplog: pytest.LogCaptureFixture
) -> None:
    """Same cluster, the topic deleted and recreated empty while the relay leads: rows below the
    watermark stay sent (moved to a retired cluster id), the rest are published again, once."""
    fx = republish
    caplog.set_level(logging.INFO, "bus.relay")
    ids = await write_events(fx, 30)
    async with running_relay(fx, relay_broker_check_seconds=0.5) as relay:
        assert await eventually(lambda: all_sent(fx))
        ends = await highwaters(fx)
        for group in fx.groups:
            await commit(fx, group, {tp: end - 3 for tp, end in ends.items()})
        assert await eventually(lambda: _watermark_is(fx, relay, {tp: end - 3 for tp, end in ends.items()}))
        offsets = await sent_offsets(fx)
        unconsumed = {i for i in ids if offsets[i][1] >= ends[TopicPartition(fx.topic, offsets[i][0])] - 3}

        admin = AIOKafkaAdminClient(bootstrap_servers=fx.settings.kafka_bootstrap_servers)
        await admin.start()
        try:
            await admin.delete_topics([fx.topic])
            await admin.create_topics([NewTopic(fx.topic, PARTITIONS, 1)])
        finally:
            await admin.close()
        assert await eventually(lambda: _published_exactly(fx, unconsumed), timeout=20)
        await asyncio.sleep(2)  # several more checks: the partition must not look truncated again
        assert Counter(await publications(fx)) == Counter(unconsumed)
    assert any("lost messages" in r.getMessage() for r in caplog.records)


async def test_a_broker_check_stays_cheap(republish: Republish) -> None:
    """What a periodic check costs (cluster id twice, a probe fetch, one offsets request per
    group, a watermark upsert): printed for the report, bounded loosely for a busy 2-core machine."""
    fx = republish
    await write_events(fx, 20)
    async with running_relay(fx, relay_broker_check_seconds=3600) as relay:
        assert await eventually(lambda: all_sent(fx))
        conn = await fx.connect()
        try:
            timings = []
            for _ in range(10):
                started = time.perf_counter()
                await relay.rebuild.check(conn)
                timings.append(time.perf_counter() - started)
        finally:
            await conn.close()
    timings.sort()
    print(f"\nbroker check: median {timings[5] * 1000:.1f} ms, max {timings[-1] * 1000:.1f} ms")
    assert timings[5] < 2.0


async def _watermark_is(fx: Republish, relay: OutboxRelay, expected: dict[TopicPartition, int]) -> bool:
    return await watermarks(fx, relay.cluster_id) == expected


async def _published_exactly(fx: Republish, expected: set[UUID]) -> bool:
    return set(await publications(fx)) == expected


def _order_placed() -> OrderPlaced:
    return OrderPlaced(
        order_id=uuid4(), external_id=uuid4().hex, channel="web",
        customer=Customer(id="c1", email="c1@example.com"), partial_allowed=True,
        placed_at=datetime.now(timezone.utc), lines=(OrderedLine(line_no=1, sku="SKU-1", qty=1),),
    )


async def test_an_outage_is_logged_once_and_retried_with_backoff(stack, caplog: pytest.LogCaptureFixture) -> None:  # type: ignore[no-untyped-def]
    """The relay's database does not exist yet (as when PostgreSQL is away): one ERROR with the
    cause, quiet retries after 1, 2, 4 s, then one line with the outage's duration on recovery."""
    caplog.set_level(logging.DEBUG, "bus.relay")
    database = f"backorder_outage_{uuid4().hex[:8]}"
    url = stack.settings.service_database_url("notifier").rsplit("/", 1)[0] + f"/{database}"
    producer = AIOKafkaProducer(bootstrap_servers=stack.settings.kafka_bootstrap_servers, acks="all")
    await producer.start()
    relay = OutboxRelay("outage", url, producer, stack.settings)
    task = asyncio.create_task(relay.run())
    try:
        await asyncio.sleep(4.5)  # attempts at 0, 1, 3 s (the next one is due at 7 s)
        await ensure_databases(stack.settings.admin_database_url(), [database])
        await asyncio.to_thread(migrate, "notifier", url)
        assert await eventually(lambda: _is_leader(relay), timeout=15)
    finally:
        relay.stop()
        await asyncio.wait_for(task, 15)
        await producer.stop()
    records = [r for r in caplog.records if r.name == "bus.relay"]
    errors = [r for r in records if r.levelno == logging.ERROR]
    retries = [r for r in records if r.levelno == logging.DEBUG and "still failing" in r.getMessage()]
    recovered = [r.getMessage() for r in records if "recovered after" in r.getMessage()]
    assert len(errors) == 1 and database in errors[0].getMessage(), [r.getMessage() for r in errors]
    assert len(retries) in (2, 3), [r.getMessage() for r in retries]  # 1 s, then 2 s, then (4 s) after the database came
    assert len(recovered) == 1 and re.search(r"recovered after (7|8)\.\d s", recovered[0]), recovered


async def _is_leader(relay: OutboxRelay) -> bool:
    return relay.is_leader
