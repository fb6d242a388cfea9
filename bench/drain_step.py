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

import time
from dataclasses import dataclass

from sqlalchemy import text

from bench.drain_bus import Receipt
from services.allocator import book, handlers
from services.allocator.domain import EtaReason
from shared.bus.outbox import UnitOfWork
from shared.db import create_engine, session_factory
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


async def time_allocation_step(database_url: str, settings: Settings, receipts: list[Receipt]) -> AllocationStep:
    """on_goods_received for each receipt, in the order they are published, in one transaction (the
    consumer commits up to CONSUMER_MAX_EVENTS_PER_TRANSACTION events at a time; one transaction
    here keeps the rollback simple), then ROLLBACK."""
    engine = create_engine(database_url, 1)
    try:
        async with session_factory(engine)() as session:
            transaction = await session.begin()
            uow = UnitOfWork(session=session, producer="allocator", settings=settings)
            started = time.perf_counter()
            events = 0
            for receipt in receipts:
                await handlers.on_goods_received(receipt.event(), uow)
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
            dated = await book.redate(uow, await book.lock_book(session, skus), EtaReason.PURCHASE_ORDER_CHANGED)
            uow.pending.clear()
    finally:
        await engine.dispose()
    return dated
