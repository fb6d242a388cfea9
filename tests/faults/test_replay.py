"""Every topic inventory reads, replayed from offset zero to a fresh consumer group that shares
inventory's inbox: every event is already in the inbox, so inventory's database does not change."""

from __future__ import annotations

import asyncio
from typing import Any
from uuid import uuid4

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from faults.faultstack import FaultStack
from faults.flow import FlowConfig
from faults.scenario import report, run_scenario
from support import eventually

from services.inventory.handlers import HANDLERS
from shared.bus.consumer import EventConsumer
from shared.bus.offsets import HighwaterProbe
from shared.db import create_engine, session_factory
from shared.settings import SUBSCRIPTIONS

# Everything inventory owns, as it would be read back (timestamps of the last touch excluded).
SNAPSHOT = {
    "stock": "SELECT * FROM stock ORDER BY sku",
    "line_stock": "SELECT * FROM line_stock ORDER BY order_id, line_no",
    "receipt": "SELECT receipt_id, lines FROM receipt ORDER BY receipt_id",
    "stock_release": "SELECT release_id, sku, qty, reason FROM stock_release ORDER BY release_id",
    "applied_decision": "SELECT source_id, sku, order_id, line_no, qty FROM applied_decision ORDER BY 1, 2, 3, 4",
    "parked_event": "SELECT id, awaits, event_type FROM parked_event ORDER BY id",
    "outbox": "SELECT count(*) AS rows FROM outbox",
    "inbox": "SELECT count(*) AS rows FROM inbox",
}


async def snapshot(stack: FaultStack) -> dict[str, list[dict[str, Any]]]:
    async with stack.connect("inventory") as conn:
        return {table: [{k: v for k, v in row.items() if k != "updated_at"} for row in await conn.fetch(query)]
                for table, query in SNAPSHOT.items()}


async def group_caught_up(stack: FaultStack, group: str, topics: list[str]) -> bool:
    probe, admin = HighwaterProbe(stack.settings.kafka_bootstrap_servers), AIOKafkaAdminClient(
        bootstrap_servers=stack.settings.kafka_bootstrap_servers)
    await admin.start()
    try:
        high = await probe.highwaters(await probe.partitions(topics))
        committed = await admin.list_consumer_group_offsets(group, partitions=list(high))
        done = {tp: meta.offset for tp, meta in committed.items() if meta is not None and meta.offset >= 0}
        return all(done.get(tp, 0) >= end for tp, end in high.items())
    finally:
        await probe.stop()
        await admin.close()


async def test_replaying_every_topic_to_a_fresh_group_changes_nothing(fault_stack) -> None:
    _, problems = await run_scenario(fault_stack, FlowConfig(seed=51, duration_s=3), label="replay")
    assert not problems, report(problems)
    before = await snapshot(fault_stack)

    topics = [fault_stack.settings.topic(stream) for stream in SUBSCRIPTIONS["inventory"]]
    group = f"replay-{uuid4().hex[:8]}"
    engine = create_engine(fault_stack.settings.service_database_url("inventory"), pool_size=2)
    producer = AIOKafkaProducer(bootstrap_servers=fault_stack.settings.kafka_bootstrap_servers, acks="all")
    await producer.start()
    consumer = EventConsumer(  # named as inventory's inbox, in a group of its own: it reads from offset zero
        "inventory", topics, HANDLERS, session_factory(engine), producer, fault_stack.settings, group_id=group)
    replay = asyncio.create_task(consumer.run())
    try:
        assert await eventually(lambda: group_caught_up(fault_stack, group, topics), timeout=60, interval=0.5), \
            f"the replay group {group} never reached the end of {topics}"
    finally:
        consumer.stop()
        await replay
        await producer.stop()
        await engine.dispose()
    assert consumer.processed > 0
    after = await snapshot(fault_stack)
    changed = [table for table in SNAPSHOT if before[table] != after[table]]
    assert not changed, f"replaying the topics changed inventory's {changed}"
