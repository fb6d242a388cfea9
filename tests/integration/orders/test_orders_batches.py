"""One consumer poll applied at once: each order is locked and decided once, an allocation that
comes twice in the poll under two event ids counts once, and lines completed together ship on one
request. The service's own batch function on its own database, in one transaction, as the
consumer runs it."""

from __future__ import annotations

from typing import Any
from uuid import UUID, uuid4

import pytest
from integration.lock_race import service_sessions
from integration.orders.orders_kit import OrdersKit, kit_fixture  # noqa: F401 (the kit fixture)
from support import envelope_for

from services.orders import handlers
from shared.bus.handlers import DeadLetter
from shared.bus.outbox import unit_of_work
from shared.events import BackorderAllocated, EtaChanged

pytestmark = pytest.mark.asyncio


def allocation(order: dict[str, Any], line_no: int, source_id: str) -> BackorderAllocated:
    return BackorderAllocated(
        order_id=order["id"], line_no=line_no, sku=order["lines"][line_no - 1]["sku"], qty=2,
        source="receipt", source_id=source_id, receipt_id=source_id, cross_dock=True,
    )


async def test_a_poll_counts_a_repeated_allocation_once_and_ships_what_it_completed_on_one_request(
    kit: OrdersKit, stack: Any,
) -> None:
    order = await kit.backordered((await kit.sku(), 2), (await kit.sku(), 2), partial=False)
    receipt = f"RCPT-{uuid4().hex[:8]}"
    first, second = allocation(order, 1, receipt), allocation(order, 2, receipt)
    poll = [(envelope_for(first), first), (envelope_for(first), first), (envelope_for(second), second)]

    async with service_sessions(stack, "orders") as sessions, unit_of_work(sessions, "orders", stack.settings) as uow:
        await handlers.apply_batch(poll, uow)

    for line_no in (1, 2):
        line = await kit.line(order["id"], line_no)
        assert (line["state"], line["allocated"], line["backordered"]) == ("allocated", 2, 0)
    [shipment] = await kit.shipments(order["id"])
    assert sorted((item["line_no"], item["qty"], item["source"]) for item in shipment["lines"]) == [
        (1, 2, "cross_dock"), (2, 2, "cross_dock"),
    ]


async def test_a_poll_with_an_event_for_a_line_the_order_lacks_is_refused_whole(kit: OrdersKit, stack: Any) -> None:
    """The consumer then applies the poll one event at a time and dead-letters only that event:
    nothing of the poll may be half applied before."""
    order = await kit.backordered((await kit.sku(), 2), partial=True)
    good = allocation(order, 1, f"RCPT-{uuid4().hex[:8]}")
    bad = EtaChanged(order_id=UUID(order["id"]), line_no=9, sku="NOPE", previous_date=None, new_date=None, reason="queue_moved")

    with pytest.raises(DeadLetter, match="has no line 9"):
        async with service_sessions(stack, "orders") as sessions, unit_of_work(sessions, "orders", stack.settings) as uow:
            await handlers.apply_batch([(envelope_for(good), good), (envelope_for(bad), bad)], uow)

    line = await kit.line(order["id"], 1)
    assert (line["state"], line["allocated"]) == ("backordered", 0)  # rolled back with the poll
