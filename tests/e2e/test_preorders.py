"""Preorders kept apart from backorders, through every service: lines for a SKU before its release
date wait for that date (not in the backorder book, its statistics or the product page's backorder
answer), stock received before the release is held for them, a moved release date re-dates the
lines and tells the customer in words for a release, and on the release day the lines are served
in the order they were placed: from the held stock, then the book at their order time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from e2e.conservation import assert_conserved
from e2e.kit import new_customer, new_sku, place_order, receive
from support import eventually


async def line_of(orders_api, order_id: str) -> dict:
    return (await orders_api.get(f"/v1/orders/{order_id}")).json()["lines"][0]


async def test_a_preorder_waits_for_its_release_then_ships_first_come_first_served(
    stack, db, orders_api, inventory_api, allocator_api, smtp_server
) -> None:
    sku = new_sku("PRE")
    today = datetime.now(UTC).date()
    release, slipped = today + timedelta(days=5), today + timedelta(days=12)
    policy = {"backorderable": True, "supplier": "ACME", "release_date": release.isoformat()}
    assert (await inventory_api.put(f"/v1/skus/{sku}", json=policy)).status_code == 201
    first_customer, second_customer = new_customer(), new_customer()
    first = await place_order(orders_api, first_customer, [(sku, 2)])
    second = await place_order(orders_api, second_customer, [(sku, 2)])
    await stack.wait_quiescent()

    for order_id in (first, second):
        line = await line_of(orders_api, order_id)
        assert (line["state"], line["preordered"], line["expected_date"]) == ("preordered", 2, release.isoformat()), line
    availability = (await inventory_api.get(f"/v1/availability/{sku}")).json()
    assert (availability["status"], availability["expected_at"]) == ("preorder", release.isoformat())

    await receive(inventory_api, sku, 3)  # before the release: held for the preorders, sold to no one
    await stack.wait_quiescent()
    stock = (await inventory_api.get(f"/v1/stock/{sku}")).json()
    assert (stock["available"], stock["preordered"], stock["backordered"], stock["reserved"]) == (3, 4, 0, 0), stock
    [stats] = (await allocator_api.get("/v1/backorders/stats", params={"sku": sku})).json()["items"]
    assert (stats["lines_waiting"], stats["units_waiting"], stats["lines_backordered"], stats["backorder_rate"]) == (0, 0, 0, 0)
    assert (await allocator_api.get("/v1/backorders", params={"sku": sku})).json()["total"] == 0
    assert (await line_of(orders_api, first))["state"] == "preordered"

    async def confirmed() -> bool:
        return len(smtp_server.to(first_customer["email"])) >= 1

    assert await eventually(confirmed, timeout=20)
    assert "released on" in smtp_server.to(first_customer["email"])[0].text()

    policy["release_date"] = slipped.isoformat()  # the publisher moves the release
    assert (await inventory_api.put(f"/v1/skus/{sku}", json=policy)).status_code == 200
    await stack.wait_quiescent()
    assert (await line_of(orders_api, first))["expected_date"] == slipped.isoformat()

    async def told_of_the_slip() -> bool:
        return any("release date" in mail.text() for mail in smtp_server.to(first_customer["email"])[1:])

    assert await eventually(told_of_the_slip, timeout=20), [m.text() for m in smtp_server.to(first_customer["email"])]

    policy["release_date"] = today.isoformat()  # released today: the clock decides the lines in turn
    assert (await inventory_api.put(f"/v1/skus/{sku}", json=policy)).status_code == 200

    async def released() -> bool:
        return (await line_of(orders_api, second))["state"] != "preordered"

    assert await eventually(released, timeout=20)
    await stack.wait_quiescent()
    first_line, second_line = await line_of(orders_api, first), await line_of(orders_api, second)
    assert (first_line["state"], first_line["reserved"]) == ("reserved", 2), first_line  # placed first: served first
    assert (second_line["state"], second_line["reserved"], second_line["backordered"]) == ("backordered", 1, 1), second_line
    shipments = (await orders_api.get(f"/v1/orders/{first}/shipments")).json()
    assert sum(line["qty"] for shipment in shipments["shipments"] for line in shipment["lines"]) == 2
    [waiting] = (await allocator_api.get("/v1/backorders", params={"sku": sku})).json()["items"]
    assert (waiting["order_id"], waiting["qty_waiting"], waiting["position"]) == (second, 1, 1)
    stock = (await inventory_api.get(f"/v1/stock/{sku}")).json()
    assert (stock["preordered"], stock["available"], stock["backordered"]) == (0, 0, 1), stock
    await assert_conserved(db, sku)


async def test_the_preorder_cap_rejects_beyond_it_and_a_cancelled_preorder_frees_its_place(
    stack, orders_api, inventory_api
) -> None:
    sku = new_sku("CAP")
    release = datetime.now(UTC).date() + timedelta(days=30)
    policy = {"backorderable": True, "release_date": release.isoformat(), "preorder_cap": 3}
    assert (await inventory_api.put(f"/v1/skus/{sku}", json=policy)).status_code == 201
    kept = await place_order(orders_api, new_customer(), [(sku, 2)])
    refused = await place_order(orders_api, new_customer(), [(sku, 2)])
    await stack.wait_quiescent()
    assert (await line_of(orders_api, kept))["state"] == "preordered"
    line = await line_of(orders_api, refused)
    assert (line["state"], line["rejection_reason"]) == ("rejected", "preorder_limit"), line
    assert (await inventory_api.get(f"/v1/stock/{sku}")).json()["preordered"] == 2

    cancelled = await orders_api.post(f"/v1/orders/{kept}/cancel", json={"reason": "customer_request"})
    assert cancelled.status_code == 200, cancelled.text
    await stack.wait_quiescent()
    assert (await inventory_api.get(f"/v1/stock/{sku}")).json()["preordered"] == 0
    again = await place_order(orders_api, new_customer(), [(sku, 3)])
    await stack.wait_quiescent()
    assert (await line_of(orders_api, again))["state"] == "preordered"
