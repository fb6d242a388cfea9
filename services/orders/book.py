"""Where an order's waiting lines stand, read from the allocator, which owns the backorder book:
their places in the queues and the purchase orders on their way to them. Read when an order is
read (places move with every receipt and booking: a copy kept here would always be behind); when
the allocator cannot answer, the order is shown without them and says why."""

from __future__ import annotations

import httpx

from services.orders.schemas import CoveringPurchaseOrder, OrderRead, QueuePlace
from shared.settings import Settings

BOOK_TIMEOUT_S = 2.0


async def with_places_in_book(order: OrderRead, settings: Settings) -> OrderRead:
    """The order, its waiting lines completed with their place in the book (nothing to ask when
    nothing waits)."""
    if not any(line.backordered for line in order.lines):
        return order
    url = f"{settings.service_url('allocator')}/v1/backorders/orders/{order.id}"
    try:
        async with httpx.AsyncClient(timeout=BOOK_TIMEOUT_S) as client:
            answer = await client.get(url)
        answer.raise_for_status()
        places = {item["line_no"]: item for item in answer.json()["lines"]}
    except (httpx.HTTPError, ValueError, KeyError) as error:
        order.book_unavailable = f"the backorder book could not be read: {type(error).__name__}"
        return order
    for line in order.lines:
        place = places.get(line.line_no)
        if place is None or not line.backordered:
            continue
        line.queue = QueuePlace(position=place["position"], lines_waiting=place["lines_waiting"],
                                units_waiting=place["units_waiting"], units_ahead=place["units_ahead"])
        line.covering_purchase_orders = [
            CoveringPurchaseOrder(id=po["purchase_order_id"], supplier_state=po["supplier_state"], expected_at=po["expected_at"],
                                  qty_open=po["qty_open"])
            for po in place["covering_purchase_orders"]
        ]
    return order
