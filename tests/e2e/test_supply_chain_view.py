"""An order shows where each waiting line stands in the supply chain: its place in the book, the
purchase orders on their way to it with the supplier's word on them, and every date it was
promised. Read through orders, which asks the allocator (the book's owner) when the order is read."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from e2e.kit import new_customer, new_sku, place_order, purchase_order, set_policy


async def line_of(orders_api, order_id: str) -> dict:
    order = (await orders_api.get(f"/v1/orders/{order_id}")).json()
    assert order["book_unavailable"] is None, order
    return order["lines"][0]


async def test_a_waiting_line_shows_its_place_its_purchase_orders_and_its_promises(
    stack, orders_api, inventory_api
) -> None:
    sku = new_sku("TRK")
    await set_policy(inventory_api, sku, supplier="ACME")
    today = datetime.now(UTC).date()
    first_date, second_date = today + timedelta(days=10), today + timedelta(days=20)
    po_a = await purchase_order(inventory_api, sku, 3, first_date)
    shipped = await inventory_api.post(f"/v1/purchase-orders/{po_a}/ship", json={"carrier": "DHL", "tracking": "JD0001"})
    assert shipped.status_code == 200, shipped.text
    first = await place_order(orders_api, new_customer(), [(sku, 2)])
    second = await place_order(orders_api, new_customer(), [(sku, 2)])
    await stack.wait_quiescent()

    line = await line_of(orders_api, second)
    assert line["state"] == "backordered" and line["expected_date"] is None  # PO A covers only one of its units
    assert line["queue"] == {"position": 2, "lines_waiting": 2, "units_waiting": 4, "units_ahead": 2}
    assert [(po["id"], po["supplier_state"]) for po in line["covering_purchase_orders"]] == [(po_a, "shipped")]

    po_b = await purchase_order(inventory_api, sku, 5, second_date)  # now both reach it: the later date
    await stack.wait_quiescent()
    line = await line_of(orders_api, second)
    assert line["expected_date"] == second_date.isoformat()
    covering = [(po["id"], po["supplier_state"], po["expected_at"]) for po in line["covering_purchase_orders"]]
    assert covering == [(po_a, "shipped", first_date.isoformat()), (po_b, "open", second_date.isoformat())]
    history = [(p["promised_date"], p["reason"]) for p in line["promised_dates"]]
    assert history == [(None, "booked"), (second_date.isoformat(), "purchase_order_changed")], history

    ahead = await line_of(orders_api, first)
    assert ahead["queue"]["position"] == 1 and ahead["queue"]["units_ahead"] == 0
    assert [po["id"] for po in ahead["covering_purchase_orders"]] == [po_a]
    assert [p["promised_date"] for p in ahead["promised_dates"]] == [first_date.isoformat()]
