"""An order's waiting lines completed with their place in the backorder book and the purchase
orders on their way to them (asked of the allocator: shared.book); when it cannot answer, the order
is shown without them and says why."""

from __future__ import annotations

from services.orders.schemas import CoveringPurchaseOrder, OrderRead, QueuePlace
from shared.book import BookUnavailable, places_in_book
from shared.settings import Settings


async def with_places_in_book(order: OrderRead, settings: Settings) -> OrderRead:
    if not any(line.backordered for line in order.lines):
        return order  # nothing waits: nothing to ask
    try:
        places = await places_in_book(settings, order.id)
    except BookUnavailable as unavailable:
        order.book_unavailable = str(unavailable)
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
