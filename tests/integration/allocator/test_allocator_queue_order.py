"""The queue order is written twice: in Python (`domain.queue.queue_order`, which the domain allocates
and the book view ranks by) and in SQL (the store's queue-heads statement, which picks what an
arrival can reach). For random books and every policy, the SQL returns the lines in the domain's
order, and cuts the queue where the domain does (`domain.queue.queue_head`). Each example writes a
scratch SKU's book in a transaction on the session's allocator database and rolls it back."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from uuid import uuid4

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.allocator import store
from services.allocator.domain.queue import PriorityPolicy, WaitingLine, queue_head, queue_order

pytestmark = pytest.mark.asyncio

T0 = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)
INSERT_LINES = text(
    """
    INSERT INTO waiting_line (order_id, line_no, sku, qty_short, qty_waiting, qty_allocated, ordered_at, tier,
                              partial_allowed, order_short_lines, status, booked_at, first_promised_date)
    SELECT u.order_id, u.line_no, :sku, u.qty, u.qty, 0, u.ordered_at, u.tier, true, 1, 'waiting', now(), u.first_promised
    FROM unnest(CAST(:order_ids AS uuid[]), CAST(:line_nos AS int[]), CAST(:qtys AS int[]),
                CAST(:ordered_ats AS timestamptz[]), CAST(:tiers AS text[]), CAST(:first_promised AS date[]))
         AS u(order_id, line_no, qty, ordered_at, tier, first_promised)
    """
)


@st.composite
def books(draw: st.DrawFn) -> list[WaitingLine]:
    """Up to 25 lines of a few orders (several lines each, so order id and line number break
    ties), ordered within a few minutes of each other (ties in ordered_at), vip/standard/other
    tiers, and first promised dates absent or from a few days (equal dates)."""
    orders = draw(st.lists(st.uuids(), min_size=1, max_size=8, unique=True))
    line = st.builds(
        WaitingLine,
        order_id=st.sampled_from(orders),
        line_no=st.integers(1, 3),
        sku=st.just("scratch"),
        qty_waiting=st.integers(1, 6),
        ordered_at=st.integers(0, 4).map(lambda minutes: T0 + timedelta(minutes=minutes)),
        tier=st.sampled_from(["vip", "standard", "gold"]),
        first_promised_date=st.none() | st.integers(0, 3).map(lambda days: date(2026, 12, 1) + timedelta(days=days)),
    )
    return draw(st.lists(line, min_size=1, max_size=25, unique_by=lambda waiting: waiting.key))


async def heads_in_sql(sessions: async_sessionmaker[AsyncSession], book: list[WaitingLine], supply: int,
                       policy: PriorityPolicy) -> list[WaitingLine]:
    sku = f"QUEUE-{uuid4().hex[:12]}"
    params = {
        "sku": sku, "order_ids": [line.order_id for line in book], "line_nos": [line.line_no for line in book],
        "qtys": [line.qty_waiting for line in book], "ordered_ats": [line.ordered_at for line in book],
        "tiers": [line.tier for line in book], "first_promised": [line.first_promised_date for line in book],
    }
    async with sessions() as session:
        transaction = await session.begin()
        try:
            await session.execute(INSERT_LINES, params)
            heads = await store.queue_heads(session, {sku: supply}, {sku: policy})
        finally:
            await transaction.rollback()
    return [replace(line, sku="scratch") for line in heads[sku]]


@settings(max_examples=30, deadline=None)
@given(book=books(), data=st.data())
async def test_the_sql_queue_heads_come_in_the_domains_queue_order_for_every_policy(
    sessions: async_sessionmaker[AsyncSession], book: list[WaitingLine], data: st.DataObject
) -> None:
    units = sum(line.qty_waiting for line in book)
    supply = data.draw(st.integers(1, units), label="supply")
    for policy in PriorityPolicy:
        queue = queue_order(book, policy)

        assert await heads_in_sql(sessions, book, units, policy) == queue, policy
        assert await heads_in_sql(sessions, book, supply, policy) == queue_head(queue, supply, policy), (policy, supply)
