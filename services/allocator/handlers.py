"""Allocator event handlers: keep the backorder book, serve it first from every arrival, and re-date it."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import text

from services.allocator import book
from services.allocator.domain import EtaReason, allocate, cross_dock, supply_per_sku
from shared.bus.handlers import DeadLetter, Handlers, each
from shared.bus.outbox import UnitOfWork
from shared.events import (
    BackorderAllocated,
    BackorderBooked,
    GoodsPutAway,
    GoodsReceived,
    LineCancelled,
    OrderPlaced,
    PurchaseOrderChanged,
    StockReleased,
    StockShort,
)

BOOK_LINE = text(
    """
    WITH booked AS (
        INSERT INTO waiting_line (order_id, line_no, sku, qty_short, qty_waiting, qty_allocated, ordered_at, tier,
                                  partial_allowed, order_short_lines, status, booked_at)
        VALUES (:order_id, :line_no, :sku, :qty, :qty, 0, :ordered_at, :tier,
                :partial_allowed, :order_short_lines, 'waiting', :now)
        ON CONFLICT (order_id, line_no) DO NOTHING
        RETURNING sku
    )
    UPDATE book_sku SET lines_backordered = lines_backordered + 1 WHERE sku IN (SELECT sku FROM booked) RETURNING sku
    """
)
CANCEL_LINE = text(
    """
    UPDATE waiting_line SET status = 'cancelled', qty_waiting = 0, cancelled_at = :now
    WHERE order_id = :order_id AND line_no = :line_no AND sku = :sku AND status = 'waiting'
    RETURNING line_no
    """
)
# Cancelled before its StockShort arrived: the tombstone makes that StockShort a no-op.
INSERT_TOMBSTONE = text(
    """
    INSERT INTO waiting_line (order_id, line_no, sku, qty_short, qty_waiting, qty_allocated, ordered_at, tier,
                              partial_allowed, order_short_lines, status, cancelled_at)
    VALUES (:order_id, :line_no, :sku, 0, 0, 0, :now, 'standard', false, 0, 'cancelled', :now)
    ON CONFLICT (order_id, line_no) DO NOTHING
    """
)
LOCK_PURCHASE_ORDER = text("SELECT sku, version FROM inbound_supply WHERE purchase_order_id = :po FOR UPDATE")
UPSERT_PURCHASE_ORDER = text(
    """
    INSERT INTO inbound_supply (purchase_order_id, sku, qty_open, expected_at, version, status, receipt_ids)
    SELECT :po, u.sku, u.qty, :expected_at, :version, :status, CAST(:receipt_ids AS text[])
    FROM unnest(CAST(:skus AS text[]), CAST(:qtys AS int[])) AS u(sku, qty)
    ON CONFLICT (purchase_order_id, sku) DO UPDATE
    SET qty_open = excluded.qty_open, expected_at = excluded.expected_at, version = excluded.version,
        status = excluded.status, receipt_ids = excluded.receipt_ids
    WHERE inbound_supply.version < excluded.version
    """
)
# A SKU dropped from the purchase order keeps its row at zero, so the version is not forgotten.
CLOSE_DROPPED_SKUS = text(
    """
    UPDATE inbound_supply SET qty_open = 0, expected_at = :expected_at, version = :version, status = :status,
        receipt_ids = CAST(:receipt_ids AS text[])
    WHERE purchase_order_id = :po AND version < :version AND NOT (sku = ANY(CAST(:skus AS text[])))
    """
)
COUNT_LINES_ORDERED = text(
    """
    INSERT INTO book_sku (sku, lines_ordered)
    SELECT u.sku, u.lines FROM unnest(CAST(:skus AS text[]), CAST(:lines AS int[])) AS u(sku, lines) ORDER BY u.sku
    ON CONFLICT (sku) DO UPDATE SET lines_ordered = book_sku.lines_ordered + excluded.lines_ordered
    """
)


def _now() -> datetime:
    return datetime.now(UTC)


async def on_stock_short(event: StockShort, uow: UnitOfWork) -> None:
    """A line enters the book (once: a duplicate, or a line already cancelled, is ignored)."""
    if event.line_no < 1 or event.order_short_lines < 1 or event.ordered_at.tzinfo is None:
        line = f"{event.order_id}/{event.line_no}"
        raise DeadLetter(f"StockShort {line}: line_no >= 1, order_short_lines >= 1 and a tz-aware ordered_at are required")
    policies = await book.lock_book(uow.session, [event.sku])
    await book.see_short(uow.session, event.sku, event.short_seq)
    booked = await uow.session.execute(
        BOOK_LINE,
        {
            "order_id": event.order_id,
            "line_no": event.line_no,
            "sku": event.sku,
            "qty": event.qty_short,
            "ordered_at": event.ordered_at,
            "tier": event.customer_tier,
            "partial_allowed": event.partial_allowed,
            "order_short_lines": event.order_short_lines,
            "now": _now(),
        },
    )
    if booked.first() is not None:
        booking = BackorderBooked(
            order_id=event.order_id, line_no=event.line_no, sku=event.sku, qty_waiting=event.qty_short, promised_date=None
        )
        await book.redate(uow, policies, EtaReason.QUEUE_MOVED, booking=booking)


async def on_line_cancelled(event: LineCancelled, uow: UnitOfWork) -> None:
    """The line leaves the book at once and the lines behind it move up."""
    policies = await book.lock_book(uow.session, [event.sku])
    params = {"order_id": event.order_id, "line_no": event.line_no, "sku": event.sku, "now": _now()}
    cancelled = await uow.session.execute(CANCEL_LINE, params)
    if cancelled.first() is None:
        await uow.session.execute(INSERT_TOMBSTONE, params)
        return
    await book.redate(uow, policies, EtaReason.QUEUE_MOVED)


async def on_goods_received(event: GoodsReceived, uow: UnitOfWork) -> None:
    """Received goods serve the book first and go straight to shipping where the order can ship."""
    units = supply_per_sku((line.sku, line.qty) for line in event.lines)
    await serve_arrival(uow, book.Arrival("receipt", event.receipt_id, event.receipt_id, units, event.purchase_order_id))


async def on_stock_released(event: StockReleased, uow: UnitOfWork) -> None:
    """Units handed back serve the book first too: as a pick, or, when they are a receipt's still
    at the dock (put away before their lines were booked), as a cross-dock where the order can ship."""
    await serve_arrival(uow, book.Arrival("release", str(event.release_id), event.receipt_id, {event.sku: event.qty}))


async def on_purchase_order_changed(event: PurchaseOrderChanged, uow: UnitOfWork) -> None:
    """Inbound supply moved: store the newest version and re-date the SKUs it concerns."""
    try:
        units = supply_per_sku((line.sku, line.qty_open) for line in event.lines)
    except ValueError as error:
        raise DeadLetter(f"purchase order {event.purchase_order_id} v{event.version}: {error}") from error
    known = {row.sku: row.version for row in await uow.session.execute(LOCK_PURCHASE_ORDER, {"po": event.purchase_order_id})}
    if known and max(known.values()) >= event.version:
        return  # a stale or repeated copy: a newer state is already applied
    policies = await book.lock_book(uow.session, [*units, *known])
    params = {
        "po": event.purchase_order_id,
        "expected_at": event.expected_at,
        "version": event.version,
        "status": event.status,
        "skus": list(units),
        "receipt_ids": list(event.receipt_ids),
    }
    await uow.session.execute(UPSERT_PURCHASE_ORDER, {**params, "qtys": list(units.values())})
    await uow.session.execute(CLOSE_DROPPED_SKUS, params)
    reason = EtaReason.PURCHASE_ORDER_CANCELLED if event.status == "cancelled" else EtaReason.PURCHASE_ORDER_CHANGED
    await book.redate(uow, policies, reason)


async def on_order_placed(event: OrderPlaced, uow: UnitOfWork) -> None:
    """Counts lines ordered per SKU, the denominator of the backorder rate."""
    lines = supply_per_sku((line.sku, 1) for line in event.lines)
    await uow.session.execute(COUNT_LINES_ORDERED, {"skus": list(lines), "lines": list(lines.values())})


async def serve_arrival(uow: UnitOfWork, arrival: book.Arrival) -> None:
    """Per SKU, in SKU order: lock the book, allocate in priority order, put away the rest, re-date."""
    session = uow.session
    policies = await book.lock_book(session, arrival.units)
    applied = await book.supply_already_applied(session, arrival.source, arrival.source_id)
    if applied:
        if applied != dict(arrival.units):
            raise DeadLetter(f"{arrival.source} {arrival.source_id} was already applied as {applied}, now {dict(arrival.units)}")
        return  # the same business fact under another event id: it had its effect
    lines = await book.queue_heads(session, arrival.units, policies)
    allocations: list[book.SkuAllocation] = []
    put_away: dict[str, int] = {}
    for sku, qty in arrival.units.items():
        result = allocate(lines[sku], qty, policies[sku])
        allocations += [book.SkuAllocation(sku, allocation) for allocation in result.allocations]
        put_away[sku] = result.put_away
    domain_allocations = [a.allocation for a in allocations]
    if arrival.receipt_id is not None and allocations:  # units at the receiving dock
        progress = await book.order_progress_of(session, (a.order_id for a in domain_allocations))
        cross_docked = cross_dock(domain_allocations, progress)
    else:
        cross_docked = {a.key: False for a in domain_allocations}
    now = _now()
    await book.fill_lines(session, allocations, cross_docked, arrival.source, arrival.source_id, now)
    await book.record_supply(session, arrival, put_away, now)
    for item in allocations:
        allocation = item.allocation
        uow.emit(
            BackorderAllocated(
                order_id=allocation.order_id,
                line_no=allocation.line_no,
                sku=item.sku,
                qty=allocation.qty,
                source=arrival.source,
                source_id=arrival.source_id,
                receipt_id=arrival.receipt_id,
                cross_dock=cross_docked[allocation.key],
            )
        )
    shelved = {sku: qty for sku, qty in put_away.items() if qty > 0}
    seen = await book.shorts_seen(session, shelved) if shelved else {}
    for sku, qty in shelved.items():
        uow.emit(
            GoodsPutAway(sku=sku, qty=qty, source=arrival.source, source_id=arrival.source_id, shorts_seen=seen.get(sku, 0))
        )
    await book.redate(uow, policies, EtaReason.QUEUE_MOVED)


HANDLERS = Handlers.by_class({
    StockShort: each(on_stock_short),
    LineCancelled: each(on_line_cancelled),
    GoodsReceived: each(on_goods_received),
    StockReleased: each(on_stock_released),
    PurchaseOrderChanged: each(on_purchase_order_changed),
    OrderPlaced: each(on_order_placed),
})
