"""Inventory's event handling against the live stack: reservation of placed orders, redelivery,
dead letters that do not block a partition, the last unit under concurrency, and the units that
cancellations, the allocator's decisions and shipments move."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

from integration.inventory.inventory_kit import InventoryKit, inv_fixture  # noqa: F401 (the inv fixture)
from support import eventually, read_topic

from services.inventory import handlers
from shared.bus.outbox import unit_of_work
from shared.db import create_engine, session_factory
from shared.events import GoodsPutAway, GoodsReceived, LineCancelled, ReceivedLine, ShipmentLine, ShipmentReported, Shipped


async def line_stock(db: Any, order_id: object) -> dict[int, dict[str, Any]]:
    async with db("inventory") as conn:
        rows = await conn.fetch("SELECT * FROM line_stock WHERE order_id = $1 ORDER BY line_no", order_id)
    return {row["line_no"]: dict(row) for row in rows}


def receipt(receipt_id: str, *lines: tuple[str, int]) -> GoodsReceived:
    return GoodsReceived(receipt_id=receipt_id, warehouse="W1", lines=tuple(ReceivedLine(sku=s, qty=q) for s, q in lines))


async def test_placed_order_is_reserved_backordered_and_rejected_per_line(inv: InventoryKit, db: Any) -> None:
    a = await inv.sku(stock=2)
    b = await inv.sku()
    c = await inv.sku(discontinued=True)
    d = await inv.sku(backorderable=False)
    e = await inv.sku(max_backorder_qty=1)
    x = inv.new_id("NONE")
    order = inv.order((a, 3), (b, 1), (c, 1), (d, 1), (e, 2), (x, 1), tier="vip", partial=False)
    await inv.publish(order)
    await inv.settle()

    reserved = await inv.on_stock("StockReserved", order_id=order.order_id)
    assert [(r.payload["line_no"], r.payload["sku"], r.payload["qty"]) for r in reserved] == [(1, a, 2)]
    short = await inv.on_stock("StockShort", order_id=order.order_id)
    assert sorted((s.payload["line_no"], s.payload["qty_short"], s.payload["qty_reserved"]) for s in short) == [
        (1, 1, 2), (2, 1, 0),
    ], "keyed by SKU, so read back in any order"
    assert {(s.payload["customer_tier"], s.payload["partial_allowed"], s.payload["order_short_lines"]) for s in short} == {
        ("vip", False, 2)
    }
    assert all(datetime.fromisoformat(s.payload["ordered_at"]) == order.placed_at for s in short)
    rejected = await inv.on_stock("LineRejected", order_id=order.order_id)
    assert {r.payload["line_no"]: r.payload["reason"] for r in rejected} == {
        3: "discontinued", 4: "not_backorderable", 5: "backorder_limit", 6: "unknown_sku",
    }
    assert all(r.correlation_id == str(order.order_id) for r in reserved + short + rejected)

    stock_a = await inv.stock(a)
    assert (stock_a["available"], stock_a["reserved"], stock_a["backordered"]) == (0, 2, 1)
    assert (await inv.stock(b))["backordered"] == 1
    for sku in (c, d, e):
        assert (await inv.stock(sku))["backordered"] == 0
    lines = await line_stock(db, order.order_id)
    assert [(n, row["reserved"], row["waiting"], row["rejection"]) for n, row in lines.items()] == [
        (1, 2, 1, None), (2, 0, 1, None), (3, 0, 0, "discontinued"), (4, 0, 0, "not_backorderable"),
        (5, 0, 0, "backorder_limit"), (6, 0, 0, "unknown_sku"),
    ]


async def test_redelivered_order_has_no_second_effect(inv: InventoryKit) -> None:
    sku = await inv.sku(stock=5)
    order = inv.order((sku, 2))
    first = await inv.publish(order)
    await inv.publish(order, event_id=first.event_id)  # the same message again
    await inv.publish(order)  # the same order under another event id
    await inv.settle()
    assert len(await inv.on_stock("StockReserved", order_id=order.order_id)) == 1
    stock = await inv.stock(sku)
    assert (stock["available"], stock["reserved"]) == (3, 2)


async def test_receipt_with_unknown_sku_is_dead_lettered_and_the_partition_keeps_flowing(inv: InventoryKit) -> None:
    sku = await inv.sku()
    unknown = inv.new_id("NONE")
    partition_key = inv.new_id("KEY")  # both receipts on one partition, in this order
    bad = receipt(inv.new_id("R"), (sku, 1), (unknown, 2))
    good = receipt(inv.new_id("R"), (sku, 3))
    await inv.publish(bad, key=partition_key)
    await inv.publish(good, key=partition_key)
    await inv.settle()

    settings = inv.stack.settings
    dead = await read_topic(settings, f"{settings.topic_receipts}.dlq")
    parked = [m for m in dead if m.key == partition_key and m.headers["dlq.consumer"] == "inventory"]
    assert [m.envelope().payload["receipt_id"] for m in parked] == [bad.receipt_id]
    assert f"unknown sku {unknown}" in parked[0].headers["dlq.reason"]
    assert parked[0].headers["dlq.consumer"] == "inventory"
    stock = await inv.stock(sku)
    assert (stock["received"], stock["available"], stock["pending"]) == (3, 3, 0), "only the good receipt counts"


async def test_receipt_id_reused_with_other_content_is_dead_lettered(inv: InventoryKit) -> None:
    sku = await inv.sku()
    receipt_id = inv.new_id("R")
    await inv.publish(receipt(receipt_id, (sku, 2)))
    await inv.settle()
    await inv.publish(receipt(receipt_id, (sku, 2)))  # the same receipt reported again: no effect
    await inv.publish(receipt(receipt_id, (sku, 9)))
    await inv.settle()
    settings = inv.stack.settings
    dead = await read_topic(settings, f"{settings.topic_receipts}.dlq")
    parked = [m for m in dead if m.key == receipt_id and m.headers["dlq.consumer"] == "inventory"]
    assert [m.envelope().payload["lines"][0]["qty"] for m in parked] == [9]
    assert "duplicate receipt id with different content" in parked[0].headers["dlq.reason"]
    assert (await inv.stock(sku))["received"] == 2


async def test_twenty_orders_for_the_last_unit_reserve_it_once(inv: InventoryKit, db: Any) -> None:
    """Two inventory instances share the partitions, so the orders really race for the row."""
    sku = await inv.sku(stock=1)
    async with inv.second_instance("inventory"):

        async def both_consume() -> bool:
            return await inv.stable_members("inventory") == 2

        assert await eventually(both_consume, timeout=60), "the second instance never joined the group"
        orders = [inv.order((sku, 1)) for _ in range(20)]
        await asyncio.gather(*(inv.publish(order) for order in orders))
        await inv.settle()
    await inv.settle()
    stock = await inv.stock(sku)
    assert (stock["available"], stock["reserved"], stock["backordered"]) == (0, 1, 19)
    reserved = await inv.on_stock("StockReserved", sku=sku)
    assert sum(r.payload["qty"] for r in reserved) == 1
    assert len(await inv.on_stock("StockShort", sku=sku)) == 19
    async with db("inventory") as conn:
        check = await conn.fetchval(
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = 'stock_available_not_negative'"
        )
    assert check == "CHECK ((available >= 0))", "the last line of defence is in place"


async def test_cancelled_reservation_serves_the_book_then_the_shelf(inv: InventoryKit, db: Any) -> None:
    sku = await inv.sku(stock=3)
    order = inv.order((sku, 5))
    await inv.publish(order)
    await inv.settle()
    assert (await inv.stock(sku))["backordered"] == 2
    await inv.publish(LineCancelled(order_id=order.order_id, line_no=1, sku=sku, qty_cancelled=5, reason="customer"))
    await inv.settle()
    released = await inv.on_stock("StockReleased", sku=sku, reason="cancellation")
    # The 3 reserved units go back. The allocator may serve the waiting part (2) from them before it
    # reads the cancel (they travel on different topics): inventory then releases those 2 again.
    assert [r.payload["qty"] for r in released] in ([3], [3, 2])
    stock = await inv.stock(sku)
    assert (stock["available"], stock["reserved"], stock["pending"], stock["backordered"]) == (3, 0, 0, 0)
    line = (await line_stock(db, order.order_id))[1]
    assert (line["cancelled"], line["reserved"], line["waiting"]) == (True, 0, 0)


async def test_line_cancelled_before_its_order_is_never_reserved(inv: InventoryKit, db: Any) -> None:
    sku = await inv.sku(stock=2)
    order = inv.order((sku, 1), (sku, 1))
    await inv.publish(LineCancelled(order_id=order.order_id, line_no=1, sku=sku, qty_cancelled=1, reason="customer"))
    await inv.settle()
    await inv.publish(order)
    await inv.settle()
    assert [r.payload["line_no"] for r in await inv.on_stock("StockReserved", order_id=order.order_id)] == [2]
    assert (await inv.stock(sku))["available"] == 1
    assert (await line_stock(db, order.order_id))[1]["cancelled"] is True


async def test_receipt_cross_docks_to_the_waiting_line_and_the_shipment_moves_it_once(inv: InventoryKit, db: Any) -> None:
    sku = await inv.sku()
    order = inv.order((sku, 3), partial=True)
    await inv.publish(order)
    await inv.settle()
    answer = await inv.api.post(
        "/v1/receipts", json={"receipt_id": inv.new_id("R"), "warehouse": "W1", "lines": [{"sku": sku, "qty": 5}]}
    )
    assert answer.status_code == 201, answer.text
    await inv.settle()
    stock = await inv.stock(sku)
    assert (stock["cross_docked"], stock["available"], stock["backordered"], stock["pending"]) == (3, 2, 0, 0)
    assert (await line_stock(db, order.order_id))[1]["cross_docked"] == 3

    shipment = Shipped(
        order_id=order.order_id, shipment_id=uuid4(), shipped_at=datetime.now(UTC),
        lines=(ShipmentLine(line_no=1, sku=sku, qty=3, source="cross_dock"),),
    )
    await inv.publish(shipment, by="orders")
    await inv.publish(shipment, by="orders")  # announced twice under two event ids
    await inv.settle()
    stock = await inv.stock(sku)
    assert (stock["cross_docked"], stock["shipped"], stock["received"]) == (0, 3, 5)
    line = (await line_stock(db, order.order_id))[1]
    assert (line["cross_docked"], line["shipped"], line["waiting"]) == (0, 3, 0)


async def test_allocator_decision_about_a_receipt_not_yet_recorded_waits_for_it(inv: InventoryKit) -> None:
    """A warehouse publishes to the receipts topic, which the allocator may read before inventory."""
    sku = await inv.sku()
    receipt_id = inv.new_id("R")
    await inv.publish(GoodsPutAway(sku=sku, qty=2, source="receipt", source_id=receipt_id))
    await inv.settle()
    assert (await inv.stock(sku))["available"] == 0, "parked until the receipt is recorded"
    await inv.publish(receipt(receipt_id, (sku, 2)))
    await inv.settle()  # the allocator's own put-away of the same receipt is the same decision
    stock = await inv.stock(sku)
    assert (stock["received"], stock["available"], stock["pending"]) == (2, 2, 0)


def shipped(order_id: object, *lines: tuple[int, str, int, str]) -> Shipped:
    return Shipped(
        order_id=order_id, shipment_id=uuid4(), shipped_at=datetime.now(UTC),
        lines=tuple(ShipmentLine(line_no=n, sku=sku, qty=qty, source=source) for n, sku, qty, source in lines),
    )


async def test_a_line_ships_picked_and_cross_docked_units_in_one_shipment(inv: InventoryKit, db: Any) -> None:
    sku = await inv.sku(stock=1)
    order = inv.order((sku, 3), partial=True)
    await inv.publish(order)  # 1 reserved from the shelf, 2 waiting
    await inv.settle()
    receipt_id = inv.new_id("R")
    await inv.publish(receipt(receipt_id, (sku, 2)))  # the allocator cross-docks 2 to the line
    await inv.settle()
    line = (await line_stock(db, order.order_id))[1]
    assert (line["reserved"], line["cross_docked"], line["waiting"]) == (1, 2, 0)

    shipment = shipped(order.order_id, (1, sku, 1, "pick"), (1, sku, 2, "cross_dock"))
    await inv.publish(shipment, by="orders")
    await inv.publish(shipment, by="orders")
    await inv.settle()
    stock = await inv.stock(sku)
    assert (stock["reserved"], stock["cross_docked"], stock["shipped"]) == (0, 0, 3)
    line = (await line_stock(db, order.order_id))[1]
    assert (line["reserved"], line["cross_docked"], line["shipped"]) == (0, 0, 3)


async def test_a_shipment_that_overtakes_its_allocation_waits_for_it(inv: InventoryKit, db: Any) -> None:
    """Shipped (orders topic) can be read before the BackorderAllocated (allocations topic) that
    put the units on the line: it is held, not dead-lettered, and applied when they arrive."""
    sku = await inv.sku()
    order = inv.order((sku, 2), partial=True)
    await inv.publish(order)
    await inv.settle()
    await inv.publish(shipped(order.order_id, (1, sku, 2, "cross_dock")), by="orders")
    await inv.settle()
    assert (await inv.stock(sku))["shipped"] == 0, "held until the units are allocated"
    async with db("inventory") as conn:
        assert await conn.fetchval("SELECT count(*) FROM parked_event WHERE awaits = $1", f"order:{order.order_id}") == 1

    await inv.publish(receipt(inv.new_id("R"), (sku, 2)))
    await inv.settle()
    stock = await inv.stock(sku)
    assert (stock["cross_docked"], stock["shipped"], stock["backordered"]) == (0, 2, 0)
    async with db("inventory") as conn:
        assert await conn.fetchval("SELECT count(*) FROM parked_event WHERE awaits = $1", f"order:{order.order_id}") == 0


async def test_a_shipment_of_units_the_line_will_never_hold_is_dead_lettered(inv: InventoryKit) -> None:
    sku = await inv.sku()
    order = inv.order((sku, 2), partial=True)
    await inv.publish(order)
    await inv.settle()
    await inv.publish(shipped(order.order_id, (1, sku, 5, "pick")), by="orders")
    await inv.settle()

    async def dead_lettered() -> bool:
        return any(m.envelope().payload.get("order_id") == str(order.order_id)
                   for m in await read_topic(inv.stack.settings, inv.stack.settings.topic_orders + ".dlq"))

    assert await eventually(dead_lettered)


async def test_a_shipment_report_from_the_warehouse_moves_stock_only_once_orders_confirms_it(inv: InventoryKit) -> None:
    """Orders owns shipments: inventory moves stock by orders' Shipped, never by the warehouse's report."""
    sku = await inv.sku(stock=2)
    order = inv.order((sku, 2), partial=True)
    await inv.publish(order)
    await inv.settle()
    report = shipped(order.order_id, (1, sku, 2, "pick"))
    await inv.publish(ShipmentReported(**report.model_dump()))  # orders never saw the order: nothing confirms it
    await inv.settle()
    assert (await inv.stock(sku))["reserved"] == 2


async def test_a_topic_receipt_for_an_unknown_purchase_order_is_still_counted(inv: InventoryKit) -> None:
    """The allocator serves every receipt it reads; the goods are in the building, so inventory counts them too."""
    sku = await inv.sku()
    order = inv.order((sku, 1), partial=True)
    await inv.publish(order)
    await inv.settle()
    unmatched = receipt(inv.new_id("R"), (sku, 3)).model_copy(update={"purchase_order_id": inv.new_id("NO-PO")})
    await inv.publish(unmatched)
    await inv.settle()
    stock = await inv.stock(sku)
    assert (stock["received"], stock["cross_docked"], stock["available"], stock["pending"]) == (3, 1, 2, 0)


async def test_units_put_away_while_a_shortfall_was_on_its_way_serve_that_line_first(inv: InventoryKit, db: Any) -> None:
    """The race of receipts and shortfalls on two topics: the allocator put a receipt away before
    it had booked a line inventory had just reported short. Inventory gives those units to the
    book (StockReleased), not to the shelf, and only once per shortfall (no ping-pong).

    The allocator's stale decision is played in-process on inventory's real database (the
    timing cannot be forced through the live allocator); what follows runs through the stack."""
    sku = await inv.sku()
    order = inv.order((sku, 2), partial=True)
    await inv.publish(order)
    await inv.settle()
    [short] = await inv.on_stock("StockShort", order_id=order.order_id)
    assert short.payload["short_seq"] == 1

    engine = create_engine(inv.stack.settings.service_database_url("inventory"), 1)
    sessions = session_factory(engine)
    try:
        for qty in (3, 4):
            receipt_id = inv.new_id("R")
            async with unit_of_work(sessions, "tests", inv.stack.settings) as uow:
                await handlers.on_goods_received(receipt(receipt_id, (sku, qty)), uow)
            stale = GoodsPutAway(sku=sku, qty=qty, source="receipt", source_id=receipt_id, shorts_seen=0)
            async with unit_of_work(sessions, "tests", inv.stack.settings) as uow:
                await handlers.on_goods_put_away(stale, uow)
            await inv.settle()
    finally:
        await engine.dispose()

    [released] = await inv.on_stock("StockReleased", sku=sku)
    assert (released.payload["qty"], released.payload["reason"]) == (2, "backordered meanwhile")
    line = (await line_stock(db, order.order_id))[1]
    # From the dock: the released units are the receipt's, and the order may ship partially.
    assert (line["cross_docked"], line["waiting"]) == (2, 0), "the waiting line was served from the released units"
    stock = await inv.stock(sku)
    assert (stock["received"], stock["cross_docked"], stock["available"], stock["pending"]) == (7, 2, 5, 0)


async def test_every_put_away_made_before_shortfalls_were_booked_serves_them_before_the_shelf(
    inv: InventoryKit, db: Any
) -> None:
    """After consumer lag the allocator can put several receipts away before it books the lines
    inventory reported short meanwhile. Every such put-away hands the book the units those lines
    still wait for, however many put-aways it takes: nothing reaches the shelf while they wait.
    (It used to serve only the first put-away and shelve the rest while lines waited.)"""
    sku = await inv.sku()
    orders = [inv.order((sku, 2), partial=True) for _ in range(3)]
    for order in orders:
        await inv.publish(order)
    await inv.settle()  # three lines short, 6 units waiting, booked by the live allocator

    engine = create_engine(inv.stack.settings.service_database_url("inventory"), 1)
    sessions = session_factory(engine)
    try:
        for qty in (3, 4):  # two receipts the allocator put away before it had booked any shortfall
            receipt_id = inv.new_id("R")
            async with unit_of_work(sessions, "tests", inv.stack.settings) as uow:
                await handlers.on_goods_received(receipt(receipt_id, (sku, qty)), uow)
            async with unit_of_work(sessions, "tests", inv.stack.settings) as uow:
                await handlers.on_goods_put_away(GoodsPutAway(sku=sku, qty=qty, source="receipt", source_id=receipt_id), uow)
    finally:
        await engine.dispose()
    await inv.settle()

    lines = [(await line_stock(db, order.order_id))[1] for order in orders]
    # Served from the dock: the released units are the receipts', and these orders may ship partially.
    assert [(line["cross_docked"], line["waiting"]) for line in lines] == [(2, 0)] * 3, "every waiting line was served"
    stock = await inv.stock(sku)
    assert (stock["received"], stock["cross_docked"], stock["available"], stock["backordered"]) == (7, 6, 1, 0)
    released = await inv.on_stock("StockReleased", sku=sku)
    assert {(r.payload["reason"], r.payload["receipt_id"] is not None) for r in released} == {("backordered meanwhile", True)}
