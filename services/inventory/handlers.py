"""Inventory event handlers: one per consumed event; an event that can never apply is dead-lettered."""

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from services.inventory import movements
from services.inventory.movements import Unapplicable, UnknownSku
from shared.bus.consumer import DeadLetter, Handler
from shared.bus.outbox import UnitOfWork
from shared.events import BackorderAllocated, GoodsPutAway, GoodsReceived, LineCancelled, OrderPlaced, Shipped

log = logging.getLogger("inventory")
ORDERS = "orders"  # the producer name of the orders service (its ServiceSpec)


@contextmanager
def dead_letter_unapplicable() -> Iterator[None]:
    """Retrying cannot fix these: park the message with the reason and let the partition move on."""
    try:
        yield
    except Unapplicable as error:
        raise DeadLetter(str(error)) from error


async def on_order_placed(event: OrderPlaced, uow: UnitOfWork) -> None:
    with dead_letter_unapplicable():
        await movements.reserve_order(uow, event)


async def on_line_cancelled(event: LineCancelled, uow: UnitOfWork) -> None:
    with dead_letter_unapplicable():
        await movements.cancel_line(uow, event)


async def on_shipped(event: Shipped, uow: UnitOfWork) -> None:
    """Orders owns shipments: it checks a warehouse's Shipped against the requested shipment and
    announces the confirmed one itself. Only that announcement moves stock, so the two services
    never disagree about what left the building."""
    if uow.cause is not None and uow.cause.producer != ORDERS:
        log.info("Shipped %s from %s: waiting for orders to confirm it", event.shipment_id, uow.cause.producer)
        return
    with dead_letter_unapplicable():
        await movements.ship(uow, event)


async def on_backorder_allocated(event: BackorderAllocated, uow: UnitOfWork) -> None:
    with dead_letter_unapplicable():
        await movements.allocate_backorder(uow, event)


async def on_goods_put_away(event: GoodsPutAway, uow: UnitOfWork) -> None:
    with dead_letter_unapplicable():
        await movements.put_away(uow, event)


async def on_goods_received(event: GoodsReceived, uow: UnitOfWork) -> None:
    """Receipts a warehouse published to the topic, and the echo of those posted over HTTP
    (already recorded: a no-op)."""
    with dead_letter_unapplicable():
        try:
            await movements.receive_goods(uow, event, via="topic")
        except UnknownSku as error:
            # The allocator has served the book with this receipt's known lines already; what it
            # decided waits (parked) until the receipt is recorded, so say how to get it recorded.
            raise DeadLetter(
                f"receipt {event.receipt_id}: {error} ({error.field}); register it (PUT /v1/skus/{error.sku}), then "
                "post this receipt unchanged to POST /v1/receipts: its allocations and put-aways wait for it"
            ) from error


HANDLERS: dict[str, Handler] = {
    OrderPlaced.event_type: on_order_placed,
    LineCancelled.event_type: on_line_cancelled,
    Shipped.event_type: on_shipped,
    BackorderAllocated.event_type: on_backorder_allocated,
    GoodsPutAway.event_type: on_goods_put_away,
    GoodsReceived.event_type: on_goods_received,
}
