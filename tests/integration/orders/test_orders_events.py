"""Orders reacting to inventory and allocator events on the live broker: quantities, states and
dates on each line, redeliveries without a second effect, shipment requests when an order is
ready, and warehouse confirmations."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any
from uuid import UUID, uuid4

import pytest
from integration.orders.orders_kit import OrdersKit, kit_fixture  # noqa: F401 (the kit fixture)
from support import read_topic

from shared.events import (
    BackorderAllocated,
    EtaChanged,
    LineRejected,
    RejectionReason,
    ShipmentLine,
    ShipmentReported,
    StockReserved,
)

pytestmark = pytest.mark.asyncio


def allocated(order: dict[str, Any], line_no: int, qty: int, cross_dock: bool) -> BackorderAllocated:
    receipt = f"RCPT-{uuid4().hex[:8]}"
    return BackorderAllocated(
        order_id=order["id"], line_no=line_no, sku=order["lines"][line_no - 1]["sku"], qty=qty,
        source="receipt", source_id=receipt, receipt_id=receipt, cross_dock=cross_dock,
    )


def eta(order: dict[str, Any], line_no: int, new: date | None, previous: date | None = None) -> EtaChanged:
    sku = order["lines"][line_no - 1]["sku"]
    return EtaChanged(
        order_id=order["id"], line_no=line_no, sku=sku, previous_date=previous, new_date=new, reason="purchase_order_moved"
    )


def quantities(line: dict[str, Any]) -> tuple[Any, ...]:
    return line["state"], line["reserved"], line["backordered"], line["allocated"], line["shipped"], line["cancelled"]


async def test_reservation_and_shortage_show_on_the_line(kit: OrdersKit) -> None:
    sku = await kit.sku(stock=2)
    order = await kit.place((sku, 5))
    await kit.settle()
    await kit.publish(StockReserved(order_id=order["id"], line_no=1, sku=sku, qty=2))
    await kit.publish(kit.short(order, 1, qty_short=3, qty_reserved=2))
    await kit.publish(eta(order, 1, date(2031, 3, 1)))
    await kit.settle()
    line = await kit.line(order["id"], 1)
    assert quantities(line) == ("backordered", 2, 3, 0, 0, 0)
    assert line["expected_date"] == "2031-03-01"
    await kit.publish(eta(order, 1, date(2031, 4, 15), previous=date(2031, 3, 1)))
    await kit.settle()
    assert (await kit.line(order["id"], 1))["expected_date"] == "2031-04-15"
    assert await kit.shipments(order["id"]) == []  # may not ship partially, and it is not complete


async def test_rejected_line_shows_the_reason_and_the_rest_ships(kit: OrdersKit) -> None:
    stocked, unknown = await kit.sku(stock=1), await kit.sku(known=False)
    order = await kit.place((stocked, 1), (unknown, 2))
    await kit.settle()
    await kit.publish(StockReserved(order_id=order["id"], line_no=1, sku=stocked, qty=1))
    await kit.publish(LineRejected(order_id=order["id"], line_no=2, sku=unknown, qty=2, reason=RejectionReason.UNKNOWN_SKU))
    await kit.settle()
    lines = (await kit.order(order["id"]))["lines"]
    assert (lines[1]["state"], lines[1]["rejection_reason"], lines[1]["backordered"]) == ("rejected", "unknown_sku", 0)
    assert lines[0]["state"] == "reserved"
    [shipment] = await kit.shipments(order["id"])
    assert shipment["lines"] == [{"line_no": 1, "sku": stocked, "qty": 1, "source": "pick"}]


async def test_redelivered_and_duplicated_events_have_no_second_effect(kit: OrdersKit, db: Any) -> None:
    order = await kit.backordered((await kit.sku(), 4), partial=True)
    allocation = allocated(order, 1, 1, cross_dock=True)
    first = await kit.publish(allocation)
    await kit.publish(allocation, event_id=first.event_id)  # the broker delivers it again
    await kit.settle()
    await kit.publish(allocation)  # the same business fact under a new event id
    await kit.publish(kit.short(order, 1, qty_short=4))
    await kit.settle()
    assert quantities(await kit.line(order["id"], 1)) == ("backordered", 0, 3, 1, 0, 0)
    [shipment] = await kit.shipments(order["id"])
    assert shipment["lines"] == [{"line_no": 1, "sku": order["lines"][0]["sku"], "qty": 1, "source": "cross_dock"}]
    async with db("orders") as conn:
        seen = await conn.fetchval("SELECT count(*) FROM inbox WHERE consumer = 'orders' AND event_id = $1", first.event_id)
    assert seen == 1


async def test_complete_order_requests_one_shipment_and_confirmation_ships_it(kit: OrdersKit) -> None:
    order = await kit.backordered((await kit.sku(), 2), (await kit.sku(), 1))
    await kit.publish(allocated(order, 1, 2, cross_dock=False))  # held: line 2 still waits
    await kit.settle()
    assert await kit.shipments(order["id"]) == []
    assert (await kit.line(order["id"], 1))["state"] == "allocated"
    await kit.publish(allocated(order, 2, 1, cross_dock=True))  # completes the order
    await kit.settle()

    [shipment] = await kit.shipments(order["id"])
    skus = [line["sku"] for line in order["lines"]]
    assert shipment["status"] == "requested" and shipment["shipped_at"] is None
    assert shipment["lines"] == [
        {"line_no": 1, "sku": skus[0], "qty": 2, "source": "pick"},
        {"line_no": 2, "sku": skus[1], "qty": 1, "source": "cross_dock"},
    ]
    [requested] = await kit.emitted("ShipmentRequested", order_id=order["id"])
    assert requested.payload["shipment_id"] == shipment["id"] and requested.payload["lines"] == shipment["lines"]

    answer = await kit.api.post(f"/v1/orders/{order['id']}/shipments", json={"shipment_id": shipment["id"]})
    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "shipped" and "idempotent-replayed" not in answer.headers
    again = await kit.api.post(f"/v1/orders/{order['id']}/shipments", json={"shipment_id": shipment["id"]})
    assert (again.status_code, again.headers["idempotent-replayed"]) == (200, "true")
    await kit.settle()
    lines = (await kit.order(order["id"]))["lines"]
    assert [(line["state"], line["shipped"]) for line in lines] == [("shipped", 2), ("shipped", 1)]
    [shipped] = await kit.emitted("Shipped", order_id=order["id"])
    assert shipped.payload["shipment_id"] == shipment["id"] and shipped.payload["lines"] == shipment["lines"]
    assert (await kit.api.post(f"/v1/orders/{order['id']}/lines/1/cancel")).status_code == 409  # shipped in full


async def test_warehouse_shipment_report_confirms_a_shipment_once(kit: OrdersKit) -> None:
    order = await kit.backordered((await kit.sku(), 3), partial=True)
    await kit.publish(allocated(order, 1, 3, cross_dock=True))
    await kit.settle()
    [shipment] = await kit.shipments(order["id"])
    lines = tuple(ShipmentLine.model_validate(line) for line in shipment["lines"])
    report = ShipmentReported(order_id=order["id"], shipment_id=shipment["id"], lines=lines, shipped_at=datetime.now(UTC))
    await kit.publish(report)
    await kit.publish(report)  # a warehouse retry under a new event id
    await kit.settle()
    assert quantities(await kit.line(order["id"], 1)) == ("shipped", 0, 0, 3, 3, 0)
    assert [s["status"] for s in await kit.shipments(order["id"])] == ["shipped"]
    [announced] = await kit.emitted("Shipped", order_id=order["id"])  # once: the one inventory applies
    assert announced.producer == "orders" and announced.payload["lines"] == shipment["lines"]


async def test_warehouse_shipment_report_with_other_lines_than_requested_is_dead_lettered(kit: OrdersKit) -> None:
    order = await kit.backordered((await kit.sku(), 3), partial=True)
    await kit.publish(allocated(order, 1, 3, cross_dock=True))
    await kit.settle()
    [shipment] = await kit.shipments(order["id"])
    wrong = (ShipmentLine(line_no=1, sku=shipment["lines"][0]["sku"], qty=2, source="cross_dock"),)
    report = ShipmentReported(order_id=order["id"], shipment_id=shipment["id"], lines=wrong, shipped_at=datetime.now(UTC))
    await kit.publish(report)
    await kit.settle()
    assert [s["status"] for s in await kit.shipments(order["id"])] == ["requested"]
    dead = await read_topic(kit.stack.settings, f"{kit.stack.settings.topic_orders}.dlq")
    reasons = [m.headers.get("dlq.reason", "") for m in dead if str(shipment["id"]) in m.value.decode(errors="replace")]
    assert reasons and "reported shipped as line 1 2" in reasons[0]


async def test_partial_order_ships_what_is_ready_as_it_arrives(kit: OrdersKit) -> None:
    order = await kit.backordered((await kit.sku(), 3), partial=True)
    await kit.publish(allocated(order, 1, 1, cross_dock=True))
    await kit.settle()
    await kit.publish(allocated(order, 1, 2, cross_dock=True))
    await kit.settle()
    shipments = await kit.shipments(order["id"])
    assert [[(line["qty"], line["source"]) for line in s["lines"]] for s in shipments] == [
        [(1, "cross_dock")], [(2, "cross_dock")]
    ]
    assert quantities(await kit.line(order["id"], 1)) == ("allocated", 0, 0, 3, 0, 0)


async def test_cancel_withdraws_requested_units_and_late_allocations_do_not_revive_the_line(kit: OrdersKit) -> None:
    order = await kit.backordered((await kit.sku(), 3), partial=True)
    await kit.publish(allocated(order, 1, 1, cross_dock=True))
    await kit.settle()
    [shipment] = await kit.shipments(order["id"])
    answer = await kit.api.post(f"/v1/orders/{order['id']}/lines/1/cancel")
    assert answer.status_code == 200, answer.text
    await kit.publish(allocated(order, 1, 2, cross_dock=True))
    await kit.publish(eta(order, 1, date(2031, 1, 1)))
    await kit.settle()
    line = await kit.line(order["id"], 1)
    assert quantities(line) == ("cancelled", 0, 0, 1, 0, 3) and line["expected_date"] is None
    [withdrawn] = await kit.shipments(order["id"])
    assert (withdrawn["id"], withdrawn["status"], withdrawn["lines"]) == (shipment["id"], "cancelled", [])
    confirm = await kit.api.post(f"/v1/orders/{order['id']}/shipments", json={"shipment_id": shipment["id"]})
    assert confirm.status_code == 409
    [cancelled] = await kit.emitted("LineCancelled", order_id=order["id"])
    assert cancelled.payload["qty_cancelled"] == 3


async def test_cancelling_the_last_waiting_line_lets_a_complete_only_order_ship(kit: OrdersKit) -> None:
    order = await kit.backordered((await kit.sku(), 1), (await kit.sku(), 2))
    await kit.publish(allocated(order, 1, 1, cross_dock=False))
    await kit.settle()
    assert await kit.shipments(order["id"]) == []
    assert (await kit.api.post(f"/v1/orders/{order['id']}/lines/2/cancel")).status_code == 200
    await kit.settle()
    [shipment] = await kit.shipments(order["id"])
    assert shipment["lines"] == [{"line_no": 1, "sku": order["lines"][0]["sku"], "qty": 1, "source": "pick"}]


async def test_events_about_orders_placed_elsewhere_are_skipped(kit: OrdersKit) -> None:
    stranger = UUID(int=uuid4().int)
    await kit.publish(StockReserved(order_id=stranger, line_no=1, sku=await kit.sku(known=False), qty=1))
    await kit.settle()
    assert (await kit.api.get(f"/v1/orders/{stranger}")).status_code == 404
    dead = await read_topic(kit.stack.settings, f"{kit.stack.settings.topic_stock}.dlq")
    assert not any(str(stranger) in message.value.decode(errors="replace") for message in dead)
