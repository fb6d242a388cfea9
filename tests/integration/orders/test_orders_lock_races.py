"""A change committed while another writer of the same order waited for its lock is never undone
by that writer: the cancel answered 200 stays cancelled, and an allocation applied while a cancel
waited is still counted. Both races are forced (lock_race), not left to timing."""

from __future__ import annotations

from datetime import date
from typing import Any
from uuid import UUID, uuid4

import pytest
from integration.lock_race import race
from integration.orders.orders_kit import OrdersKit, kit_fixture  # noqa: F401 (the kit fixture)
from support import envelope_for

from services.orders import handlers
from shared.bus.outbox import UnitOfWork
from shared.events import BackorderAllocated, EtaChanged

pytestmark = pytest.mark.asyncio


async def test_an_event_applied_after_waiting_for_a_cancel_keeps_the_cancel(kit: OrdersKit, stack: Any) -> None:
    order = await kit.backordered((await kit.sku(), 2))
    order_id = UUID(order["id"])
    sku = order["lines"][0]["sku"]

    async def cancel(uow: UnitOfWork) -> None:
        await handlers.cancel(uow, order_id, 1, "customer_request")

    async def eta_moves(uow: UnitOfWork) -> None:
        event = EtaChanged(
            order_id=order_id, line_no=1, sku=sku, previous_date=None, new_date=date(2031, 5, 1), reason="booked"
        )
        await handlers.apply_batch([(envelope_for(event), event)], uow)

    await race(stack, "orders", cancel, eta_moves)
    line = await kit.line(order_id, 1)
    assert (line["state"], line["cancelled"], line["backordered"]) == ("cancelled", 2, 0)


async def test_a_cancel_that_waited_for_an_allocation_sees_it(kit: OrdersKit, stack: Any) -> None:
    order = await kit.backordered((await kit.sku(), 3), partial=True)
    order_id = UUID(order["id"])
    receipt = f"RCPT-{uuid4().hex[:8]}"
    allocation = BackorderAllocated(
        order_id=order_id, line_no=1, sku=order["lines"][0]["sku"], qty=1,
        source="receipt", source_id=receipt, receipt_id=receipt, cross_dock=True,
    )

    async def allocate(uow: UnitOfWork) -> None:
        await handlers.apply_batch([(envelope_for(allocation), allocation)], uow)

    async def cancel(uow: UnitOfWork) -> None:
        await handlers.cancel(uow, order_id, 1, "customer_request")

    await race(stack, "orders", allocate, cancel)
    line = await kit.line(order_id, 1)
    # The allocated unit is still counted on the line (inventory releases it back to the book).
    assert (line["state"], line["allocated"], line["cancelled"]) == ("cancelled", 1, 3)
