"""Notifier event handlers: each fact about an order updates the notifier's view of it, and the
moments worth telling are recorded for the order's coalescing window (the scheduler composes them)."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence
from dataclasses import replace
from uuid import UUID

from services.notifier import store
from services.notifier.domain import (
    Consolation,
    Kind,
    LineFacts,
    Notice,
    OrderFacts,
    confirmation_due,
    consolation_due,
    eta_notice,
)
from services.notifier.settings import get_notifier_settings
from shared.bus.consumer import Handler
from shared.bus.outbox import UnitOfWork
from shared.events import (
    BackorderAllocated,
    BackorderBooked,
    EtaChanged,
    LineCancelled,
    LineRejected,
    OrderPlaced,
    ShipmentRequested,
    Shipped,
    StockReserved,
    StockShort,
)


async def _record(uow: UnitOfWork, before: OrderFacts, after: OrderFacts, notices: list[Notice]) -> None:
    """Save the order's new view and its moments; the confirmation is decided here, once."""
    settings = get_notifier_settings()
    await store.save_lines(uow.session, before, after)
    if confirmation_due(after):
        await store.mark_confirmed(uow.session, after.order_id)
        notices = [Notice(Kind.CONFIRMATION), *notices]
    cause = uow.cause.event_id if uow.cause else None
    await store.add_notices(uow.session, after.order_id, notices, cause, settings.notify_coalesce_window_s)
    if after.confirmed and not after.waiting_lines:
        await store.stop_still_waiting(uow.session, after.order_id)


async def _update_line(
    uow: UnitOfWork, order_id: UUID, line_no: int, change: Callable[[LineFacts], LineFacts], notices: Sequence[Notice] = ()
) -> None:
    order, _ = await store.lock_order(uow.session, order_id)
    line = order.line(line_no) or LineFacts(line_no)
    await _record(uow, order, order.with_line(change(line)), list(notices))


async def on_order_placed(event: OrderPlaced, uow: UnitOfWork) -> None:
    """The order's contact, language and lines (facts about the lines may have come first)."""
    order, _ = await store.lock_order(uow.session, event.order_id)
    if order.placed:
        return
    known = {line.line_no: line for line in order.lines}
    lines = tuple(
        replace(known.get(ordered.line_no, LineFacts(ordered.line_no)), sku=ordered.sku, qty=ordered.qty)
        for ordered in event.lines
    )
    placed = replace(
        order, placed=True, external_id=event.external_id, customer_id=event.customer.id, locale=event.customer.locale,
        channel=event.channel, lines=lines,
    )
    await store.place_order(uow.session, placed, event.customer.email)
    await _record(uow, order, placed, [])


async def on_stock_reserved(event: StockReserved, uow: UnitOfWork) -> None:
    await _update_line(uow, event.order_id, event.line_no, lambda line: line.with_reserved(event.qty))


async def on_stock_short(event: StockShort, uow: UnitOfWork) -> None:
    await _update_line(uow, event.order_id, event.line_no, lambda line: line.with_short(event.qty_short, event.qty_reserved))


async def on_line_rejected(event: LineRejected, uow: UnitOfWork) -> None:
    await _update_line(uow, event.order_id, event.line_no, lambda line: line.with_rejected(event.reason.value))


async def on_backorder_booked(event: BackorderBooked, uow: UnitOfWork) -> None:
    await _update_line(uow, event.order_id, event.line_no, lambda line: line.with_booking(event.qty_waiting, event.promised_date))


async def on_eta_changed(event: EtaChanged, uow: UnitOfWork) -> None:
    """A promise that moved after the customer was told one: a delay (with a consolation the first
    time it goes past the threshold) or good news. Before the confirmation it only updates the date
    the confirmation will show."""
    policy = get_notifier_settings().notice_policy()
    order, _ = await store.lock_order(uow.session, event.order_id)
    line = order.line(event.line_no) or LineFacts(event.line_no)
    notice = eta_notice(line, event.previous_date, event.new_date, policy) if order.confirmed else None
    updated = line.with_date(event.new_date)
    if notice and notice.kind is Kind.DELAY and consolation_due(line, event.new_date, policy):
        await store.save_consolation(uow.session, event.order_id, event.line_no, new_consolation())
        notice, updated = replace(notice, consolation=True), replace(updated, consolation_offered=True)
    await _record(uow, order, order.with_line(updated), [notice] if notice else [])


def new_consolation() -> Consolation:
    settings = get_notifier_settings()
    code = "SORRY-" + secrets.token_hex(4).upper()
    if settings.notify_consolation_kind == "free_shipping":
        return Consolation("free_shipping", code)
    return Consolation("discount", code, settings.notify_consolation_percent)


async def on_backorder_allocated(event: BackorderAllocated, uow: UnitOfWork) -> None:
    await _update_line(uow, event.order_id, event.line_no, lambda line: line.with_allocated(event.qty))


async def on_shipment_requested(event: ShipmentRequested, uow: UnitOfWork) -> None:
    """Units about to leave. Before the confirmation this is not news: it says "ships now"."""
    order, _ = await store.lock_order(uow.session, event.order_id)
    units = tuple((line.line_no, line.qty) for line in event.lines)
    await _record(uow, order, order, [Notice(Kind.READY, units=units)] if order.confirmed else [])


async def on_shipped(event: Shipped, uow: UnitOfWork) -> None:
    """Orders' own Shipped (a warehouse's report is checked by orders first, which then announces it)."""
    if uow.cause is not None and uow.cause.producer != "orders":
        return
    order, _ = await store.lock_order(uow.session, event.order_id)
    shipped: dict[int, int] = {}
    for item in event.lines:
        shipped[item.line_no] = shipped.get(item.line_no, 0) + item.qty
    lines = tuple(line.with_shipped(shipped[line.line_no]) if line.line_no in shipped else line for line in order.lines)
    await _record(uow, order, replace(order, lines=lines), [Notice(Kind.SHIPPED, units=tuple(sorted(shipped.items())))])


async def on_line_cancelled(event: LineCancelled, uow: UnitOfWork) -> None:
    notices = [Notice(Kind.CANCELLED, units=((event.line_no, event.qty_cancelled),))] if event.qty_cancelled > 0 else []
    await _update_line(uow, event.order_id, event.line_no, lambda line: line.with_cancelled(event.qty_cancelled), notices)


HANDLERS: dict[str, Handler] = {
    OrderPlaced.event_type: on_order_placed,
    StockReserved.event_type: on_stock_reserved,
    StockShort.event_type: on_stock_short,
    LineRejected.event_type: on_line_rejected,
    BackorderBooked.event_type: on_backorder_booked,
    EtaChanged.event_type: on_eta_changed,
    BackorderAllocated.event_type: on_backorder_allocated,
    ShipmentRequested.event_type: on_shipment_requested,
    Shipped.event_type: on_shipped,
    LineCancelled.event_type: on_line_cancelled,
}
