"""End to end, through all services, PostgreSQL and the broker: ten orders wait on one SKU, a purchase
order covering six gives dates and slips, a line is cancelled, then receipts of four and six serve
the book in priority order, cross-dock what can ship, and put away only the remainder."""

from __future__ import annotations

from datetime import date, timedelta
from uuid import uuid4

from e2e.conservation import assert_conserved
from e2e.kit import new_sku, order_body, set_policy
from support import events_of


async def line_of(orders_api, order_id: str, line_no: int = 1) -> dict:
    order = (await orders_api.get(f"/v1/orders/{order_id}")).json()
    return next(line for line in order["lines"] if line["line_no"] == line_no)


async def test_receipts_serve_waiting_lines_first_with_honest_dates(stack, db, orders_api, inventory_api, allocator_api) -> None:
    sku, other = new_sku("X"), new_sku("Y")
    await set_policy(inventory_api, sku, supplier="ACME")
    await set_policy(inventory_api, other, supplier="ACME")

    orders: list[str] = []
    for n in range(10):
        # Order 5 (index 4) also waits for another SKU and may not ship partially: its units are held.
        lines = [(sku, 1), (other, 1)] if n == 4 else [(sku, 1)]
        placed = await orders_api.post("/v1/orders", json=order_body(lines, partial_allowed=n != 4))
        assert placed.status_code == 201, placed.text
        orders.append(placed.json()["id"])
        await stack.wait_quiescent()  # FIFO by order time: keep the placement order unambiguous
    book = (await allocator_api.get("/v1/backorders", params={"sku": sku})).json()["items"]
    assert [entry["order_id"] for entry in book] == orders
    assert [entry["position"] for entry in book] == list(range(1, 11))

    first_date, slipped = date.today() + timedelta(days=10), date.today() + timedelta(days=20)
    po_id = f"PO-{uuid4().hex[:8]}"
    created = await inventory_api.post("/v1/purchase-orders", json={
        "id": po_id, "supplier": "ACME", "lines": [{"sku": sku, "qty": 6}], "expected_at": first_date.isoformat()})
    assert created.status_code == 201, created.text
    await stack.wait_quiescent()
    dates = [(await line_of(orders_api, order_id))["expected_date"] for order_id in orders]
    assert dates == [first_date.isoformat()] * 6 + [None] * 4
    assert (await inventory_api.get(f"/v1/availability/{sku}")).json()["status"] == "backorder"

    patched = await inventory_api.patch(f"/v1/purchase-orders/{po_id}", json={"expected_at": slipped.isoformat()})
    assert patched.status_code == 200, patched.text
    await stack.wait_quiescent()
    slips = await events_of(stack.settings, "allocations", "EtaChanged", sku=sku, new_date=slipped.isoformat())
    assert sorted(e.payload["order_id"] for e in slips) == sorted(orders[:6])
    assert all(e.payload["previous_date"] == first_date.isoformat() for e in slips)

    cancelled = await orders_api.post(f"/v1/orders/{orders[2]}/cancel", json={"reason": "customer changed mind"})
    assert cancelled.status_code == 200, cancelled.text
    await stack.wait_quiescent()
    book = (await allocator_api.get("/v1/backorders", params={"sku": sku})).json()["items"]
    assert orders[2] not in [entry["order_id"] for entry in book]
    assert (await line_of(orders_api, orders[6]))["expected_date"] == slipped.isoformat()  # moved up into the PO

    first = await inventory_api.post("/v1/receipts", json={
        "receipt_id": f"RCV-{uuid4().hex[:8]}", "warehouse": "DC1", "purchase_order_id": po_id,
        "lines": [{"sku": sku, "qty": 4}]})
    assert first.status_code == 201, first.text
    await stack.wait_quiescent()
    allocated = await events_of(stack.settings, "allocations", "BackorderAllocated", sku=sku)
    assert [e.payload["order_id"] for e in allocated] == [orders[0], orders[1], orders[3], orders[4]]
    assert [e.payload["cross_dock"] for e in allocated] == [True, True, True, False]
    assert (await line_of(orders_api, orders[0]))["state"] == "allocated"
    assert (await line_of(orders_api, orders[4]))["state"] == "allocated"

    second = await inventory_api.post("/v1/receipts", json={
        "receipt_id": f"RCV-{uuid4().hex[:8]}", "warehouse": "DC1", "lines": [{"sku": sku, "qty": 6}]})
    assert second.status_code == 201, second.text
    await stack.wait_quiescent()
    allocated = await events_of(stack.settings, "allocations", "BackorderAllocated", sku=sku)
    served = [e.payload["order_id"] for e in allocated]
    assert served == [orders[i] for i in (0, 1, 3, 4, 5, 6, 7, 8, 9)]
    assert orders[2] not in served
    assert (await allocator_api.get("/v1/backorders", params={"sku": sku})).json()["items"] == []
    put_away = await events_of(stack.settings, "stock", "GoodsPutAway", sku=sku)
    assert [e.payload["qty"] for e in put_away] == [1]

    stock = (await inventory_api.get(f"/v1/stock/{sku}")).json()
    assert (stock["available"], stock["reserved"], stock["cross_docked"], stock["received"]) == (1, 1, 8, 10)
    ledger = await assert_conserved(db, sku)
    assert ledger.allocated_by_allocator == 9

    items = (await orders_api.get(f"/v1/orders/{orders[0]}/shipments")).json()["shipments"]
    assert items and items[0]["lines"][0]["source"] == "cross_dock"
    confirmed = await orders_api.post(f"/v1/orders/{orders[0]}/shipments", json={"shipment_id": items[0]["id"]})
    assert confirmed.status_code == 200, confirmed.text
    await stack.wait_quiescent()
    assert (await line_of(orders_api, orders[0]))["state"] == "shipped"
    await assert_conserved(db, sku)
    assert (await inventory_api.get(f"/v1/stock/{sku}")).json()["shipped"] == 1
