"""Two allocator instances in one consumer group, receipts for the same SKU reaching both (receipts
are keyed by receipt id, not SKU): no unit is allocated twice and no waiting line is skipped."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING
from uuid import UUID, uuid4

import asyncpg
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from services.allocator.domain.queue import PriorityPolicy, WaitingLine, allocate
from shared.events import GoodsReceived, ReceivedLine, StockShort, Stream
from shared.settings import Settings
from tests.support import events_of, publish

if TYPE_CHECKING:
    from tests.conftest import SessionStack

Connect = Callable[[str], AbstractAsyncContextManager[asyncpg.Connection]]
LINES = 80
RECEIPTS_PER_ROUND = 30


def receipts_of(rng: random.Random, sku: str, total: int, count: int) -> list[GoodsReceived]:
    """`count` receipts adding up to `total`, some with the SKU on two lines (summed by the allocator)."""
    cuts = sorted(rng.sample(range(1, total), count - 1))
    sizes = [b - a for a, b in zip([0, *cuts], [*cuts, total], strict=True)]
    receipts = []
    for size in sizes:
        halves = (size // 2, size - size // 2) if size > 1 and rng.random() < 0.5 else (size,)
        lines = tuple(ReceivedLine(sku=sku, qty=qty) for qty in halves)
        receipts.append(GoodsReceived(receipt_id=f"RCV-{uuid4().hex[:10]}", warehouse="WH-1", lines=lines))
    return receipts


async def test_two_allocators_never_allocate_a_unit_twice_nor_skip_a_waiting_line(
    stack: SessionStack, producer: AIOKafkaProducer, db: Connect
) -> None:
    rng = random.Random(7)
    sku = f"SKU-{uuid4().hex[:10]}"
    start = datetime.now(UTC) - timedelta(hours=1)
    lines = [
        StockShort(
            order_id=uuid4(),
            line_no=1,
            sku=sku,
            qty_short=rng.randint(1, 5),
            qty_reserved=0,
            ordered_at=start + timedelta(seconds=n),
            customer_tier="standard",
            partial_allowed=rng.random() < 0.5,
            order_short_lines=1,
        )
        for n in range(LINES)
    ]
    waiting = sum(line.qty_short for line in lines)
    book = [WaitingLine(s.order_id, s.line_no, s.sku, s.qty_short, s.ordered_at, s.customer_tier, None) for s in lines]
    # Round one covers about two thirds of the book, round two the rest and ten units more.
    first_round = receipts_of(rng, sku, waiting * 2 // 3, RECEIPTS_PER_ROUND)
    second_round = receipts_of(rng, sku, waiting - waiting * 2 // 3 + 10, RECEIPTS_PER_ROUND)

    second_allocator = await stack.start_extra("allocator", stack.services["allocator"].port + 10)
    try:
        # Both instances must hold partitions before the receipts go out, or one would do it all.
        assert await group_members(stack.settings, "allocator", wanted=2) == 2
        for line in lines:
            await publish(producer, stack.settings, line)
        await stack.wait_quiescent()
        # All at once, each keyed by its receipt id: they spread over the partitions, so both
        # instances serve the same SKU at the same time.
        await asyncio.gather(*(publish(producer, stack.settings, receipt) for receipt in first_round))
        await stack.wait_quiescent()
        after_first = await state_of(db, sku)
        await asyncio.gather(*(publish(producer, stack.settings, receipt) for receipt in second_round))
        await stack.wait_quiescent()
        after_second = await state_of(db, sku)
    finally:
        await second_allocator.stop()

    for state, receipts in ((after_first, first_round), (after_second, first_round + second_round)):
        received = sum(line.qty for receipt in receipts for line in receipt.lines)
        assert_consistent(state, received, len(receipts))
        # Whatever the interleaving, FIFO serves the book as if every unit had come in one receipt:
        # a prefix of the queue is filled, nothing is skipped, the rest is put away.
        at_once = allocate(book, received, PriorityPolicy.FIFO)
        assert {a.order_id: a.qty for a in at_once.allocations} == {
            order_id: qty for order_id, qty in state.allocated_per_line.items() if qty
        }
        assert state.put_away == at_once.put_away
    assert after_first.put_away == 0
    assert after_second.put_away == 10
    assert after_second.lines_waiting == 0

    events = await events_of(stack.settings, stack.settings.topic(Stream.ALLOCATIONS), "BackorderAllocated", sku=sku)
    assert len(events) == after_second.allocation_rows
    put_away_events = await events_of(stack.settings, stack.settings.topic(Stream.STOCK), "GoodsPutAway", sku=sku)
    assert sum(e.payload["qty"] for e in put_away_events) == 10


async def group_members(settings: Settings, group: str, wanted: int) -> int:
    """Members of the group once it is stable with `wanted` of them (or what it has after 60 s)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    await admin.start()
    try:
        members = 0
        for _ in range(600):
            [response] = await admin.describe_consumer_groups([group])
            _, _, state, _, _, member_list = response.groups[0]
            members = len(member_list)
            if state == "Stable" and members == wanted:
                break
            await asyncio.sleep(0.1)
        return members
    finally:
        await admin.close()


class BookState:
    """The allocator's tables for one SKU, read in one go."""

    def __init__(self, lines: list[asyncpg.Record], allocations: list[asyncpg.Record], applied: list[asyncpg.Record]) -> None:
        self.lines = lines
        self.allocations = allocations
        self.applied = applied
        self.allocated_per_line: Counter[UUID] = Counter()
        for row in allocations:
            self.allocated_per_line[row["order_id"]] += row["qty"]
        self.put_away = sum(row["put_away"] for row in applied)
        self.allocation_rows = len(allocations)
        self.lines_waiting = sum(1 for row in lines if row["status"] == "waiting")


async def state_of(db: Connect, sku: str) -> BookState:
    async with db("allocator") as conn:
        return BookState(
            await conn.fetch(
                "SELECT order_id, qty_short, qty_waiting, qty_allocated, status FROM waiting_line WHERE sku = $1", sku
            ),
            await conn.fetch("SELECT source_id, order_id, line_no, qty FROM allocation WHERE sku = $1", sku),
            await conn.fetch("SELECT source_id, qty, put_away FROM supply_applied WHERE sku = $1", sku),
        )


def assert_consistent(state: BookState, received: int, receipts: int) -> None:
    assert len(state.lines) == LINES
    for row in state.lines:
        assert state.allocated_per_line[row["order_id"]] == row["qty_allocated"] <= row["qty_short"]
        assert row["qty_allocated"] + row["qty_waiting"] == row["qty_short"]
    assert len({(r["source_id"], r["order_id"], r["line_no"]) for r in state.allocations}) == len(state.allocations)
    assert len(state.applied) == receipts
    assert sum(row["qty"] for row in state.applied) == received
    assert sum(state.allocated_per_line.values()) + state.put_away == received
    if state.put_away > 0:
        assert state.lines_waiting == 0
