"""What changes an order: placing it (idempotently), cancelling lines, confirming shipments, and the
step every change ends with: ask the warehouse for whatever became ready to ship."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

from sqlalchemy import text

from services.orders import store
from services.orders.domain import (
    CannotCancel,
    Line,
    Order,
    cancel_line,
    cancellable,
    ready_to_ship,
    request_shipment,
    same_shipment,
    ship,
    withdraw_lines,
)
from services.orders.schemas import LineRead, OrderCreate, OrderRead
from shared.bus.outbox import UnitOfWork
from shared.events import LineCancelled, OrderedLine, OrderPlaced, ShipmentLine, ShipmentRequested, Shipped

INSERT_ORDER = text(
    "INSERT INTO orders (id, external_id, channel, idempotency_key, request_hash, customer_id, customer_email, "
    "customer_locale, customer_tier, partial_allowed, placed_at, response) VALUES (:id, :external_id, :channel, "
    ":idempotency_key, :request_hash, :customer_id, :customer_email, :customer_locale, :customer_tier, "
    ":partial_allowed, :placed_at, CAST(:response AS jsonb)) ON CONFLICT DO NOTHING RETURNING id"
)
# Both identities of a request: the header key and the platform's own (channel, external_id).
FIND_PLACED = text(
    "SELECT request_hash, response FROM orders "
    "WHERE idempotency_key = :idempotency_key OR (channel = :channel AND external_id = :external_id)"
)


class NotFound(LookupError):
    pass


class UnknownOrder(NotFound):
    pass


class Conflict(Exception):
    pass


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
    if (await uow.session.execute(INSERT_ORDER, params)).first() is None:
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
    params = {"idempotency_key": idempotency_key, "channel": body.channel, "external_id": body.external_id}
    placed = (await uow.session.execute(FIND_PLACED, params)).all()
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
    await save_and_ship(uow, before, after)


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
    announce: bool,
    reported: Sequence[ShipmentLine] | None = None,
) -> bool:
    """The warehouse sent a requested shipment in full. Returns True when it was already confirmed
    (a replay). `announce` emits Shipped with the requested lines, the one inventory moves stock
    by. Lines a warehouse `reported` must be exactly those requested (in any order)."""
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
    if announce:
        uow.emit(Shipped(order_id=order_id, shipment_id=shipment_id, lines=lines, shipped_at=shipped_at))
    return False


def _describe(lines: Sequence[ShipmentLine]) -> str:
    return ", ".join(f"line {line.line_no} {line.qty} {line.sku} ({line.source})" for line in lines) or "nothing"


async def save_and_ship(uow: UnitOfWork, before: Order, after: Order) -> None:
    """Persist a change, then request a shipment for whatever it made ready.

    ShipmentRequested is the moment a platform would capture payment: the units exist and are
    bound for the customer (all of them, for an order that may not ship partially)."""
    ready = ready_to_ship(after)
    if ready:
        shipment_id = uuid4()
        await store.insert_shipment(uow.session, after.id, shipment_id, ready, datetime.now(UTC))
        uow.emit(ShipmentRequested(order_id=after.id, shipment_id=shipment_id, lines=tuple(ready)))
        after = request_shipment(after, ready)
    await store.save_lines(uow.session, before, after)


async def _lock(uow: UnitOfWork, order_id: UUID) -> Order:
    order = await store.lock_order(uow.session, order_id)
    if order is None:
        raise UnknownOrder(f"no order {order_id}")
    return order
