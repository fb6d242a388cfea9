"""Everything that changes an order, and the only place orders emits: one function per command
(placing, cancelling, confirming a shipment) and per event. Each loads and locks through `store`,
lets `domain` decide, saves, and ends with the same step: ask the warehouse for whatever became
ready to ship.

The line events a consumer batch brings (reserved, short, rejected, allocated, dated) are applied
together: the batch's orders are locked and read in two statements, each event changes its line
in memory, and each order decides once what it can ship, so lines that became ready together
ship together (one ShipmentRequested, one payment capture)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

from services.orders import store
from services.orders.domain import (
    CannotCancel,
    Line,
    Order,
    Promise,
    accepts_allocation,
    apply_allocated,
    apply_eta,
    apply_preordered,
    apply_rejected,
    apply_reserved,
    apply_short,
    cancel_line,
    cancellable,
    ready_to_ship,
    request_shipment,
    same_shipment,
    ship,
    withdraw_lines,
)
from services.orders.schemas import LineRead, OrderCreate, OrderRead
from shared.bus.handlers import Batch, DeadLetter, Handlers
from shared.bus.outbox import UnitOfWork
from shared.events import (
    BackorderAllocated,
    BackorderBooked,
    Envelope,
    EtaChanged,
    Event,
    LineCancelled,
    LinePreordered,
    LineRejected,
    OrderedLine,
    OrderPlaced,
    ShipmentLine,
    ShipmentReported,
    ShipmentRequested,
    Shipped,
    StockReserved,
    StockShort,
)

log = logging.getLogger("orders.handlers")


class NotFound(LookupError):
    pass


class UnknownOrder(NotFound):
    pass


class Conflict(Exception):
    pass


# --- commands (HTTP) ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Placement:
    response: dict[str, Any]
    replayed: bool


async def place_order(uow: UnitOfWork, body: OrderCreate, idempotency_key: str | None) -> Placement:
    """Create the order and emit OrderPlaced in one transaction, or replay the first response.

    Race-safe: a concurrent identical request blocks on the unique indexes until the first commits,
    then inserts nothing and replays what the first one stored."""
    order_id, placed_at = uuid4(), datetime.now(UTC)
    lines = [Line(line_no=no, sku=line.sku, qty=line.qty) for no, line in enumerate(body.lines, start=1)]
    read = OrderRead(
        id=order_id, external_id=body.external_id, channel=body.channel, customer=body.customer,
        shipping=body.shipping, placed_at=placed_at, lines=[LineRead.of(line) for line in lines],
    )
    response = read.model_dump(mode="json")
    params = {
        "id": order_id, "external_id": body.external_id, "channel": body.channel, "idempotency_key": idempotency_key,
        "request_hash": body.request_hash(), "customer_id": body.customer.id, "customer_email": body.customer.email,
        "customer_locale": body.customer.locale, "customer_tier": body.customer.tier,
        "partial_allowed": body.shipping.partial_allowed, "placed_at": placed_at, "response": read.model_dump_json(),
    }
    if not await store.insert_order(uow.session, params):
        return await _replay(uow, body, idempotency_key)
    await store.insert_lines(uow.session, order_id, lines)
    uow.emit(
        OrderPlaced(
            order_id=order_id, external_id=body.external_id, channel=body.channel, customer=body.customer,
            partial_allowed=body.shipping.partial_allowed, placed_at=placed_at,
            lines=tuple(OrderedLine(line_no=line.line_no, sku=line.sku, qty=line.qty) for line in lines),
        )
    )
    return Placement(response, replayed=False)


async def _replay(uow: UnitOfWork, body: OrderCreate, idempotency_key: str | None) -> Placement:
    placed = await store.find_placed(uow.session, idempotency_key, body.channel, body.external_id)
    if not placed or any(row.request_hash != body.request_hash() for row in placed):
        what = "Idempotency-Key" if idempotency_key else "channel and external_id"
        raise Conflict(f"this {what} was already used for a different request; send the original body or a new key")
    return Placement(placed[0].response, replayed=True)


async def cancel(uow: UnitOfWork, order_id: UUID, line_no: int | None, reason: str) -> None:
    """Cancel what has not shipped of one line, or of every line still open; one LineCancelled each."""
    before = await _lock(uow, order_id)
    if line_no is None:
        targets = [line for line in before.lines if cancellable(line)]
        if not targets:
            raise Conflict(f"order {order_id} has nothing left to cancel: every line shipped, was cancelled or rejected")
    else:
        line = before.line(line_no)
        if line is None:
            raise NotFound(f"order {order_id} has no line {line_no}")
        targets = [line]
    after = before
    for line in targets:
        try:
            cancelled = cancel_line(line, reason)
        except CannotCancel as error:
            raise Conflict(str(error)) from error
        after = after.with_line(cancelled)
        uow.emit(
            LineCancelled(order_id=order_id, line_no=line.line_no, sku=line.sku, qty_cancelled=cancelled.cancelled, reason=reason)
        )
    await _withdraw_from_shipments(uow, order_id, {line.line_no for line in targets})
    await save_and_ship(uow, [(before, after)])


async def _withdraw_from_shipments(uow: UnitOfWork, order_id: UUID, line_nos: set[int]) -> None:
    """Units requested but not confirmed are cancelled too; their shipments stop asking for them."""
    for shipment_id, lines in await store.requested_shipments(uow.session, order_id):
        kept = withdraw_lines(lines, line_nos)
        if kept != lines:
            await store.set_shipment_lines(uow.session, shipment_id, kept)


async def confirm_shipment(
    uow: UnitOfWork,
    order_id: UUID,
    shipment_id: UUID,
    shipped_at: datetime,
    reported: Sequence[ShipmentLine] | None = None,
) -> bool:
    """The warehouse sent a requested shipment in full: its lines ship and Shipped announces it
    with the requested lines, the one inventory moves stock by. Returns True when it was already
    confirmed (a replay). Lines a warehouse `reported` must be exactly those requested (in any order)."""
    before = await _lock(uow, order_id)
    found = await store.lock_shipment(uow.session, order_id, shipment_id)
    if found is None:
        raise NotFound(f"order {order_id} has no shipment {shipment_id}")
    status, lines = found
    if status == "shipped":
        return True
    if status == "cancelled":
        raise Conflict(f"shipment {shipment_id} was withdrawn: every line on it was cancelled")
    if reported is not None and not same_shipment(reported, lines):
        raise Conflict(f"shipment {shipment_id} was requested as {_describe(lines)}, reported shipped as {_describe(reported)}")
    await store.mark_shipped(uow.session, shipment_id, shipped_at)
    await store.save_lines(uow.session, before, ship(before, lines))
    uow.emit(Shipped(order_id=order_id, shipment_id=shipment_id, lines=lines, shipped_at=shipped_at))
    return False


def _describe(lines: Sequence[ShipmentLine]) -> str:
    return ", ".join(f"line {line.line_no} {line.qty} {line.sku} ({line.source})" for line in lines) or "nothing"


async def save_and_ship(
    uow: UnitOfWork, changes: Sequence[tuple[Order, Order]], causes: dict[UUID, Envelope] | None = None
) -> None:
    """Persist changed orders, then request one shipment per order for whatever the change made
    ready (`causes`: the last event applied to each order, named as the request's cause).

    ShipmentRequested is the moment a platform would capture payment: the units exist and are
    bound for the customer (all of them, for an order that may not ship partially)."""
    requested_at = datetime.now(UTC)
    shipments: list[tuple[UUID, UUID, Sequence[ShipmentLine]]] = []
    saved: list[tuple[Order, Order]] = []
    for before, after in changes:
        ready = ready_to_ship(after)
        if ready:
            shipment_id = uuid4()
            shipments.append((after.id, shipment_id, ready))
            uow.emit(
                ShipmentRequested(order_id=after.id, shipment_id=shipment_id, lines=tuple(ready)),
                cause=(causes or {}).get(after.id),
            )
            after = request_shipment(after, ready)
        saved.append((before, after))
    await store.insert_shipments(uow.session, shipments, requested_at)
    await store.save_orders(uow.session, saved)


async def _lock(uow: UnitOfWork, order_id: UUID) -> Order:
    order = await store.lock_order(uow.session, order_id)
    if order is None:
        raise UnknownOrder(f"no order {order_id}")
    return order


# --- events about lines (inventory's and the allocator's answers), applied per batch -------------

LineEvent = StockReserved | StockShort | LinePreordered | LineRejected | BackorderAllocated | BackorderBooked | EtaChanged


def on_stock_reserved(line: Line, event: StockReserved) -> Line:
    return apply_reserved(line, event.qty)


def on_stock_short(line: Line, event: StockShort) -> Line:
    return apply_short(line, event.qty_short, event.qty_reserved)


def on_line_preordered(line: Line, event: LinePreordered) -> Line:
    return apply_preordered(line, event.qty, event.release_date)


def on_line_rejected(line: Line, event: LineRejected) -> Line:
    return apply_rejected(line, event.reason.value)


def on_backorder_allocated(line: Line, event: BackorderAllocated) -> Line:
    """Counted once per (line, source) (see apply_line_events), so the same allocation under a
    new event id adds nothing."""
    return apply_allocated(line, event.qty, event.cross_dock)


def on_backorder_booked(line: Line, event: BackorderBooked) -> Line:
    return apply_eta(line, event.promised_date)


def on_eta_changed(line: Line, event: EtaChanged) -> Line:
    return apply_eta(line, event.new_date)


LINE_HANDLERS: dict[type[Event], Callable[[Line, Any], Line]] = {
    StockReserved: on_stock_reserved,
    StockShort: on_stock_short,
    LinePreordered: on_line_preordered,
    LineRejected: on_line_rejected,
    BackorderAllocated: on_backorder_allocated,
    BackorderBooked: on_backorder_booked,
    EtaChanged: on_eta_changed,
}


async def apply_line_events(batch: Batch, uow: UnitOfWork) -> None:
    """Lock the batch's orders, apply every event to its line in order, then save every changed
    order and request what each made ready, once per order. An order this service never placed
    is not its business (the streams are shared), so its events are skipped, not dead-lettered; a
    known order without that line is a producer bug and is (the consumer then applies the batch
    one event at a time, so only that event is)."""
    events: list[tuple[Envelope, Any]] = list(batch)
    loaded = await store.lock_orders(uow.session, (event.order_id for _, event in events))
    for order_id in sorted({event.order_id for _, event in events} - loaded.keys()):
        log.info("ignoring events for order %s, which was not placed here", order_id, extra={"order_id": order_id})
    fresh = await _claim_allocations(uow, loaded, events)
    orders = dict(loaded)
    causes: dict[UUID, Envelope] = {}
    promises: list[Promise] = []
    for envelope, event in events:
        order = orders.get(event.order_id)
        if order is None:
            continue
        line = order.line(event.line_no)
        if line is None:
            raise DeadLetter(f"order {event.order_id} has no line {event.line_no}")
        if isinstance(event, BackorderAllocated):
            key = (event.order_id, event.line_no, event.source_id)
            if key not in fresh:
                continue
            fresh.discard(key)
        orders[event.order_id] = order.with_line(LINE_HANDLERS[type(event)](line, event))
        causes[event.order_id] = envelope
        if (promise := promise_told(envelope, event)) is not None:
            promises.append(promise)
    await store.insert_promises(uow.session, promises)
    await save_and_ship(uow, [(loaded[order_id], orders[order_id]) for order_id in causes], causes)


def promise_told(envelope: Envelope, event: Any) -> Promise | None:
    """The date an event promises a line, for the line's history: booked, moved, or a release date."""
    told = envelope.event_id, envelope.occurred_at
    if isinstance(event, BackorderBooked):
        return Promise(event.order_id, event.line_no, told[0], event.promised_date, None, "booked", told[1])
    if isinstance(event, EtaChanged):
        return Promise(event.order_id, event.line_no, told[0], event.new_date, event.previous_date, event.reason, told[1])
    if isinstance(event, LinePreordered):
        return Promise(event.order_id, event.line_no, told[0], event.release_date, event.previous_release_date,
                       "release_date", told[1])
    return None


async def _claim_allocations(
    uow: UnitOfWork, orders: dict[UUID, Order], events: list[tuple[Envelope, Any]]
) -> set[tuple[UUID, int, str]]:
    """Record the batch's allocations by (line, source) in one statement; returns those new. A
    cancelled or rejected line records none: inventory releases those units."""
    wanted = []
    for _, event in events:
        if not isinstance(event, BackorderAllocated) or event.order_id not in orders:
            continue
        line = orders[event.order_id].line(event.line_no)
        if line is not None and accepts_allocation(line):
            wanted.append((event.order_id, event.line_no, event.source_id, event.qty, event.cross_dock))
    return await store.claim_allocations(uow.session, wanted, datetime.now(UTC))


async def on_shipment_reported(event: ShipmentReported, uow: UnitOfWork) -> None:
    """A warehouse may report a shipment here instead of over HTTP: it must be the shipment as
    requested, and orders then announces Shipped itself."""
    try:
        await confirm_shipment(uow, event.order_id, event.shipment_id, event.shipped_at, reported=event.lines)
    except UnknownOrder:
        log.info("ignoring ShipmentReported for order %s, which was not placed here", event.order_id,
                 extra={"order_id": event.order_id})
    except (NotFound, Conflict) as error:
        raise DeadLetter(str(error)) from error


async def apply_batch(batch: Batch, uow: UnitOfWork) -> None:
    """The line events of a poll together, then each warehouse report on its own (after them: a
    report may confirm a shipment those events requested)."""
    lines = [item for item in batch if not isinstance(item[1], ShipmentReported)]
    if lines:
        await apply_line_events(lines, uow)
    for envelope, event in batch:
        if isinstance(event, ShipmentReported):
            uow.cause = envelope
            await on_shipment_reported(event, uow)


HANDLERS = Handlers.whole_batch([*LINE_HANDLERS, ShipmentReported], apply_batch)
