"""Orders event handlers: each inventory or allocator fact about a line is applied to it, and
whatever that makes ready is requested from the warehouse."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from uuid import UUID

from services.orders import store
from services.orders.commands import Conflict, NotFound, UnknownOrder, confirm_shipment, save_and_ship
from services.orders.domain import (
    Line,
    Order,
    accepts_allocation,
    apply_allocated,
    apply_eta,
    apply_rejected,
    apply_reserved,
    apply_short,
)
from shared.bus.consumer import DeadLetter, Handler
from shared.bus.outbox import UnitOfWork
from shared.events import BackorderAllocated, BackorderBooked, EtaChanged, LineRejected, Shipped, StockReserved, StockShort

log = logging.getLogger("orders.handlers")


async def _load(uow: UnitOfWork, order_id: UUID, line_no: int) -> tuple[Order, Line] | None:
    """The locked order and the line an event is about. An order this service never placed is
    not its business (the streams are shared), so it is skipped, not dead-lettered; a known order
    without that line is a producer bug and is."""
    order = await store.lock_order(uow.session, order_id)
    if order is None:
        log.info("ignoring an event for order %s, which was not placed here", order_id)
        return None
    line = order.line(line_no)
    if line is None:
        raise DeadLetter(f"order {order_id} has no line {line_no}")
    return order, line


async def on_stock_reserved(event: StockReserved, uow: UnitOfWork) -> None:
    if loaded := await _load(uow, event.order_id, event.line_no):
        order, line = loaded
        await save_and_ship(uow, order, order.with_line(apply_reserved(line, event.qty)))


async def on_stock_short(event: StockShort, uow: UnitOfWork) -> None:
    if loaded := await _load(uow, event.order_id, event.line_no):
        order, line = loaded
        await save_and_ship(uow, order, order.with_line(apply_short(line, event.qty_short, event.qty_reserved)))


async def on_line_rejected(event: LineRejected, uow: UnitOfWork) -> None:
    if loaded := await _load(uow, event.order_id, event.line_no):
        order, line = loaded
        await save_and_ship(uow, order, order.with_line(apply_rejected(line, event.reason.value)))


async def on_backorder_allocated(event: BackorderAllocated, uow: UnitOfWork) -> None:
    """Counted once per (line, source), so the same allocation under a new event id adds nothing."""
    if loaded := await _load(uow, event.order_id, event.line_no):
        order, line = loaded
        if not accepts_allocation(line):
            return
        fresh = await store.claim_allocation(
            uow.session, event.order_id, event.line_no, event.source_id, event.qty, event.cross_dock, datetime.now(UTC)
        )
        if fresh:
            await save_and_ship(uow, order, order.with_line(apply_allocated(line, event.qty, event.cross_dock)))


async def on_backorder_booked(event: BackorderBooked, uow: UnitOfWork) -> None:
    if loaded := await _load(uow, event.order_id, event.line_no):
        order, line = loaded
        await store.save_lines(uow.session, order, order.with_line(apply_eta(line, event.promised_date)))


async def on_eta_changed(event: EtaChanged, uow: UnitOfWork) -> None:
    if loaded := await _load(uow, event.order_id, event.line_no):
        order, line = loaded
        await store.save_lines(uow.session, order, order.with_line(apply_eta(line, event.new_date)))


async def on_shipped(event: Shipped, uow: UnitOfWork) -> None:
    """A warehouse may report a shipment here instead of over HTTP: it must be the shipment as
    requested, and orders then announces its own Shipped, the one inventory moves stock by (so both
    agree on what left). Our own Shipped comes back too and finds the shipment already confirmed."""
    ours = uow.cause is not None and uow.cause.producer == uow.producer
    try:
        await confirm_shipment(
            uow, event.order_id, event.shipment_id, event.shipped_at, announce=not ours, reported=None if ours else event.lines
        )
    except UnknownOrder:
        log.info("ignoring Shipped for order %s, which was not placed here", event.order_id)
    except (NotFound, Conflict) as error:
        raise DeadLetter(str(error)) from error


HANDLERS: dict[str, Handler] = {
    StockReserved.event_type: on_stock_reserved,
    StockShort.event_type: on_stock_short,
    LineRejected.event_type: on_line_rejected,
    BackorderAllocated.event_type: on_backorder_allocated,
    BackorderBooked.event_type: on_backorder_booked,
    EtaChanged.event_type: on_eta_changed,
    Shipped.event_type: on_shipped,
}
