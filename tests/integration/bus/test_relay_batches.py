"""The relay publishes record batches per partition: each key lands where producer.send() would put
it, events of a key keep the order they were written in across full batches, every row records
the partition and offset its message really has, and the headers are those of every message."""

from __future__ import annotations

import asyncio
import hashlib
from collections import defaultdict
from uuid import UUID, uuid4

import asyncpg
from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import murmur2
from support import bus_database, eventually, read_topic

from shared.bus.outbox import unit_of_work
from shared.bus.relay import OutboxRelay
from shared.db import create_engine, session_factory
from shared.devstack.embedded import ensure_topics
from shared.events import StockShort
from shared.settings import asyncpg_dsn

PARTITIONS = 4


def short(order_id: UUID, line_no: int, sku: str) -> StockShort:
    return StockShort.model_validate(
        {
            "order_id": order_id, "line_no": line_no, "sku": sku, "qty_short": 1, "ordered_at": "2026-01-01T00:00:00Z",
            "qty_reserved": 0, "customer_tier": "standard", "partial_allowed": True, "order_short_lines": 1,
        }
    )


async def test_relay_batches_keep_partition_order_offsets_and_headers(stack) -> None:  # type: ignore[no-untyped-def]
    suffix = uuid4().hex[:8]
    topic = f"relaybatch-stock-{suffix}"
    settings = stack.settings.model_copy(update={"topic_stock": topic, "outbox_poll_interval_s": 0.2, "outbox_batch_size": 120})
    database = "backorder_relaybatch"
    url = await bus_database(settings, database)
    await ensure_topics(settings.kafka_bootstrap_servers, [topic], partitions=PARTITIONS)
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        await conn.execute("DELETE FROM outbox")  # an earlier session's rows: this test counts all of them
    finally:
        await conn.close()

    # 300 events over 7 keys (StockShort is keyed by SKU), written in two transactions; the relay
    # claims 120 at a time and its producer's 16 KiB batches fill up, so a partition takes several.
    skus = [f"RB-{suffix}-{n}" for n in range(7)]
    written: dict[str, list[UUID]] = defaultdict(list)
    engine = create_engine(url)
    try:
        sessions = session_factory(engine)
        for part in range(2):
            async with unit_of_work(sessions, "relaybatch", settings) as uow:
                for n in range(150):
                    event_id = uow.emit(short(uuid4(), 1, skus[(n * 3 + part) % len(skus)]), correlation_id=f"chain-{n % 5}")
                    written[skus[(n * 3 + part) % len(skus)]].append(event_id)
    finally:
        await engine.dispose()

    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, acks="all", max_batch_size=16_384)
    await producer.start()
    relay = OutboxRelay("relaybatch", url, producer, settings)
    task = asyncio.create_task(relay.run())
    try:
        assert await eventually(lambda: _all_sent(url))
    finally:
        relay.stop()
        await asyncio.wait_for(task, 10)
        await producer.stop()

    messages = await read_topic(settings, topic)
    assert len(messages) == 300
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        rows = await conn.fetch('SELECT event_id, partition, "offset" FROM outbox')
        recorded = {r["event_id"]: (r["partition"], r["offset"]) for r in rows}
    finally:
        await conn.close()
    seen: dict[str, list[UUID]] = defaultdict(list)
    for message in sorted(messages, key=lambda m: (m.partition, m.offset)):
        assert message.key is not None
        event_id = UUID(message.headers["event_id"])
        envelope = message.envelope()
        assert envelope.event_id == event_id and message.headers["event_type"] == "StockShort"
        trace_id = hashlib.md5(envelope.correlation_id.encode(), usedforsecurity=False).hexdigest()
        assert message.headers["traceparent"] == f"00-{trace_id}-{event_id.hex[:16]}-01"
        # The partition producer.send() would pick: Kafka's murmur2 of the key over all partitions.
        assert message.partition == (murmur2(message.key.encode()) & 0x7FFFFFFF) % PARTITIONS
        assert recorded[event_id] == (message.partition, message.offset)
        seen[message.key].append(event_id)
    assert seen == written  # every key's events, once each, in the order they were written


async def _all_sent(url: str) -> bool:
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        return bool(await conn.fetchval("SELECT count(*) = 300 AND bool_and(sent_at IS NOT NULL) FROM outbox"))
    finally:
        await conn.close()
