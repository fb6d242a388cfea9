"""The allocation step of the drain, timed on its own: the allocator's receipt handler for every
receipt of the run, in-process on the allocator's database, without the broker, the consumer or
the relay. This is the part of the drain the anchor models (matching supply to the book), plus
what the allocator must write with it in the same transaction: book rows, allocation rows and the
BackorderAllocated outbox rows.

Next to it, the **event floor**: the outbox rows the handler wrote, written once more by one
set-based statement (`INSERT ... SELECT` into the same outbox, its indexes and trigger). No design
that writes one event per allocated line in the allocation's transaction (issue 3 asks for one
BackorderAllocated per line, DESIGN.md for the outbox) can spend less than that on its events.

Everything runs in one transaction that is rolled back, so the book is left as seeded for the
end-to-end drain that follows."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from sqlalchemy import text

from bench.drain_bus import Receipt
from services.allocator import handlers, store
from services.allocator.domain.dates import EtaReason
from shared.bus.outbox import UnitOfWork
from shared.db import create_engine, session_factory
from shared.events import Envelope, GoodsReceived
from shared.settings import Settings


@dataclass(frozen=True)
class AllocationStep:
    seconds: float  # all receipts through the handler, outbox rows written, before the rollback
    events: int  # outbox rows the handler wrote (BackorderAllocated, EtaChanged, GoodsPutAway)
    event_floor_seconds: float  # the same outbox rows written again by one INSERT ... SELECT


# Copies of the rows the step wrote, under new event ids: same sizes, same indexes, one statement.
# They are this open transaction's rows: created_at defaults to now(), the transaction's start.
REWRITE_EVENTS = text(
    """
    INSERT INTO outbox (event_id, event_type, topic, key, envelope)
    SELECT gen_random_uuid(), event_type, topic, key, envelope FROM outbox WHERE created_at = now() ORDER BY id
    """
)


def consumer_runs(settings: Settings, receipts: list[Receipt]) -> list[list[tuple[Envelope, GoodsReceived]]]:
    """The receipts in publish order, in runs of the size the allocator's consumer hands its handler
    when they are all published at once: one partition's share of them (they are keyed by receipt
    id over the topic's partitions), at most a poll's records. Consecutive, not per partition, so
    each SKU's receipts keep their order (with --dated, no date moves in the step)."""
    items = []
    for receipt in receipts:
        event = receipt.event()
        payload = event.model_dump(mode="json")
        envelope = Envelope(event_type=event.event_type, correlation_id=receipt.receipt_id, producer="bench", payload=payload)
        items.append((envelope, event))
    size = max(1, min(settings.kafka_max_poll_records, math.ceil(len(items) / settings.topic_partitions)))
    return [items[start : start + size] for start in range(0, len(items), size)]


async def time_allocation_step(database_url: str, settings: Settings, receipts: list[Receipt]) -> AllocationStep:
    """on_goods_received for the receipts, run by run as the consumer would hand them over
    (`consumer_runs`), in one transaction (the consumer commits up to
    CONSUMER_MAX_EVENTS_PER_TRANSACTION events at a time; one transaction here keeps the rollback
    simple), then ROLLBACK."""
    runs = consumer_runs(settings, receipts)
    engine = create_engine(database_url, 1)
    try:
        async with session_factory(engine)() as session:
            transaction = await session.begin()
            uow = UnitOfWork(session=session, producer="allocator", settings=settings)
            started = time.perf_counter()
            events = 0
            for run in runs:
                await handlers.on_goods_received(run, uow)
                events += len(uow.pending)
                await uow.flush_events()
            seconds = time.perf_counter() - started
            started = time.perf_counter()
            copied = await session.execute(REWRITE_EVENTS)
            event_floor_seconds = time.perf_counter() - started
            if copied.rowcount != events:  # type: ignore[attr-defined]
                raise RuntimeError(f"event floor wrote {copied.rowcount} rows, the step {events}")  # type: ignore[attr-defined]
            await transaction.rollback()
    finally:
        await engine.dispose()
    return AllocationStep(seconds, events, event_floor_seconds)


async def date_book(database_url: str, settings: Settings, skus: list[str]) -> int:
    """Setup for --dated, not measured: promise every seeded line its date from the seeded purchase
    orders, as the allocator did when they arrived; the EtaChanged events are not written (no
    consumer of this benchmark reads them). Returns the lines dated."""
    engine = create_engine(database_url, 1)
    try:
        async with session_factory(engine)() as session, session.begin():
            uow = UnitOfWork(session=session, producer="allocator", settings=settings)
            moves = await handlers.redate(uow, await store.lock_book(session, skus), EtaReason.PURCHASE_ORDER_CHANGED)
            dated = len(moves)
    finally:
        await engine.dispose()
    return dated
