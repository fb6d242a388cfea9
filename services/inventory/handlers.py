"""Inventory event handlers: one per consumed event; an event that can never apply is dead-lettered."""

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from services.inventory import movements
from services.inventory.movements import Unapplicable, UnknownSku
from shared.bus.handlers import DeadLetter, Handlers, each
from shared.bus.outbox import UnitOfWork
from shared.events import BackorderAllocated, GoodsPutAway, GoodsReceived, LineCancelled, OrderPlaced, Shipped

log = logging.getLogger("inventory")


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
    """Orders owns shipments: it checks a warehouse's report against the requested shipment and
    announces Shipped. Only that moves stock, so the two services never disagree about what left."""
    with dead_letter_unapplicable():
        await movements.ship(uow, event)


async def on_backorder_allocated(event: BackorderAllocated, uow: UnitOfWork) -> None:
    with dead_letter_unapplicable():
        await movements.allocate_backorder(uow, event)


async def on_goods_put_away(event: GoodsPutAway, uow: UnitOfWork) -> None:
    with dead_letter_unapplicable():
        await movements.put_away(uow, event)


async def on_goods_received(event: GoodsReceived, uow: UnitOfWork) -> None:
    """Receipts a warehouse published to the topic (those posted over HTTP are announced by us,
    and a service does not read its own events)."""
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


HANDLERS = Handlers.by_class({
    OrderPlaced: each(on_order_placed),
    LineCancelled: each(on_line_cancelled),
    Shipped: each(on_shipped),
    BackorderAllocated: each(on_backorder_allocated),
    GoodsPutAway: each(on_goods_put_away),
    GoodsReceived: each(on_goods_received),
})
