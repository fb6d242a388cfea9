"""Reads of the backorder book for ops: the queue per SKU, its statistics and the policies in force."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from sqlalchemy import Row, text
from sqlalchemy.ext.asyncio import AsyncSession

from services.allocator.domain.dates import cover_queue
from services.allocator.domain.queue import PriorityPolicy, WaitingLine, policy_in_force, queue_order
from services.allocator.schemas import (
    BackorderPage,
    BackorderRead,
    LineInQueue,
    OrderQueueRead,
    PoliciesRead,
    SkuStatsRead,
    StatsRead,
    SupplyRead,
)
from services.allocator.store import open_supply
from shared.metrics import BOOK_SKUS_SHOWN, OTHER_SKUS, SkuBook

SELECT_WAITING = text(
    """
    SELECT sku, order_id, line_no, qty_waiting, qty_allocated, ordered_at, tier, first_promised_date, promised_date
    FROM waiting_line WHERE status = 'waiting' AND (CAST(:sku AS text) IS NULL OR sku = CAST(:sku AS text))
    """
)
SELECT_POLICIES = text("SELECT scope, policy FROM priority_policy")
SELECT_STATS = text(
    """
    SELECT b.sku, b.lines_ordered, b.lines_backordered,
           count(w.order_id) FILTER (WHERE w.status = 'waiting') AS lines_waiting,
           coalesce(sum(w.qty_waiting) FILTER (WHERE w.status = 'waiting'), 0) AS units_waiting,
           extract(epoch FROM CAST(:now AS timestamptz) - min(w.ordered_at) FILTER (WHERE w.status = 'waiting')) AS oldest_age,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM w.filled_at - w.booked_at))
               FILTER (WHERE w.status = 'filled') AS fill_p50,
           percentile_cont(0.9) WITHIN GROUP (ORDER BY extract(epoch FROM w.filled_at - w.booked_at))
               FILTER (WHERE w.status = 'filled') AS fill_p90
    FROM book_sku b LEFT JOIN waiting_line w ON w.sku = b.sku
    WHERE CAST(:sku AS text) IS NULL OR b.sku = CAST(:sku AS text)
    GROUP BY b.sku, b.lines_ordered, b.lines_backordered
    HAVING b.lines_ordered > 0 OR b.lines_backordered > 0
    ORDER BY b.sku
    """
)

# The book's size per SKU for /metrics, in one query: the SKUs waiting longest by name, the rest
# summed under one name so the number of series stays bounded.
SELECT_BOOK_SIZES = text(
    """
    WITH per_sku AS (
        SELECT sku, count(*) AS lines, sum(qty_waiting) AS units, min(ordered_at) AS oldest
        FROM waiting_line WHERE status = 'waiting' GROUP BY sku
    ), ranked AS (
        SELECT *, row_number() OVER (ORDER BY oldest, sku) AS rank FROM per_sku
    )
    SELECT CASE WHEN rank <= :shown THEN sku ELSE :other END AS sku, sum(lines) AS lines, sum(units) AS units,
           extract(epoch FROM now() - min(oldest)) AS oldest_age
    FROM ranked GROUP BY 1
    """
)


def _float(value: Decimal | float | None) -> float | None:
    return None if value is None else float(value)


async def policies(session: AsyncSession) -> PoliciesRead:
    rows = {row.scope: row.policy for row in await session.execute(SELECT_POLICIES)}
    global_policy = policy_in_force(None, rows.pop("global", None))
    return PoliciesRead(global_policy=global_policy, skus={sku: PriorityPolicy(policy) for sku, policy in sorted(rows.items())})


async def backorders(session: AsyncSession, sku: str | None, limit: int, offset: int, now: datetime) -> BackorderPage:
    """The queue in serving order, per SKU (by SKU when no SKU is given), ranked by the domain's own
    queue_order so the list is exactly the order in which goods will be given out."""
    rows = (await session.execute(SELECT_WAITING, {"sku": sku})).all()
    in_force = await policies(session)
    by_sku: dict[str, dict[tuple[UUID, int], Row[Any]]] = defaultdict(dict)
    for row in rows:
        by_sku[row.sku][(row.order_id, row.line_no)] = row
    supply = await open_supply(session, [sku] if sku else by_sku)
    items: list[BackorderRead] = []
    for sku_name in sorted(by_sku):
        policy = in_force.skus.get(sku_name, in_force.global_policy)
        sku_rows = by_sku[sku_name]
        book = [
            WaitingLine(r.order_id, r.line_no, r.sku, r.qty_waiting, r.ordered_at, r.tier, r.first_promised_date)
            for r in sku_rows.values()
        ]
        queue = queue_order(book, policy)
        covers = cover_queue(queue, supply.get(sku_name, ()))
        for position, line in enumerate(queue, start=1):
            row = sku_rows[line.key]
            items.append(
                BackorderRead(
                    sku=sku_name,
                    position=position,
                    order_id=line.order_id,
                    line_no=line.line_no,
                    qty_waiting=line.qty_waiting,
                    qty_allocated=row.qty_allocated,
                    tier=line.tier,
                    policy=policy,
                    promised_date=row.promised_date,
                    covering_purchase_orders=list(covers[line.key].purchase_orders),
                    ordered_at=line.ordered_at,
                    age_seconds=max((now - line.ordered_at).total_seconds(), 0.0),
                )
            )
    open_orders = [
        SupplyRead(sku=sku_name, purchase_order_id=s.purchase_order_id, qty_open=s.qty, expected_at=s.expected_at,
                   supplier_state=s.supplier_state)
        for sku_name in sorted(supply) for s in sorted(supply[sku_name], key=lambda s: (s.expected_at, s.purchase_order_id))
    ]
    return BackorderPage(items=items[offset : offset + limit], total=len(items), limit=limit, offset=offset, supply=open_orders)


SELECT_ORDER_SKUS = text("SELECT DISTINCT sku FROM waiting_line WHERE order_id = :order_id AND status = 'waiting' ORDER BY sku")


async def order_queue(session: AsyncSession, order_id: UUID, now: datetime) -> OrderQueueRead:
    """An order's waiting lines in their SKUs' queues, read from the same queue as `backorders`."""
    lines: list[LineInQueue] = []
    for sku in (await session.execute(SELECT_ORDER_SKUS, {"order_id": order_id})).scalars():
        page = await backorders(session, sku, limit=10_000_000, offset=0, now=now)
        supply = {s.purchase_order_id: s for s in page.supply}
        units_waiting = sum(item.qty_waiting for item in page.items)
        ahead = 0
        for item in page.items:
            if item.order_id == order_id:
                lines.append(LineInQueue(
                    sku=sku, line_no=item.line_no, position=item.position, lines_waiting=page.total,
                    units_waiting=units_waiting, units_ahead=ahead, qty_waiting=item.qty_waiting,
                    promised_date=item.promised_date,
                    covering_purchase_orders=[supply[po] for po in item.covering_purchase_orders if po in supply],
                ))
            ahead += item.qty_waiting
    return OrderQueueRead(order_id=order_id, lines=sorted(lines, key=lambda line: line.line_no))


async def stats(session: AsyncSession, sku: str | None, now: datetime) -> StatsRead:
    items = []
    for row in await session.execute(SELECT_STATS, {"sku": sku, "now": now}):
        items.append(
            SkuStatsRead(
                sku=row.sku,
                lines_waiting=row.lines_waiting,
                units_waiting=int(row.units_waiting),
                oldest_age_seconds=_float(row.oldest_age),
                fill_time_p50_seconds=_float(row.fill_p50),
                fill_time_p90_seconds=_float(row.fill_p90),
                lines_ordered=row.lines_ordered,
                lines_backordered=row.lines_backordered,
                backorder_rate=row.lines_backordered / row.lines_ordered if row.lines_ordered else None,
            )
        )
    return StatsRead(items=items)


async def book_sizes(session: AsyncSession) -> list[SkuBook]:
    """Lines and units waiting and the oldest wait per SKU (SKUs with nothing waiting are absent)."""
    rows = await session.execute(SELECT_BOOK_SIZES, {"shown": BOOK_SKUS_SHOWN, "other": OTHER_SKUS})
    return [SkuBook(row.sku, int(row.lines), int(row.units), max(float(row.oldest_age), 0.0)) for row in rows]
