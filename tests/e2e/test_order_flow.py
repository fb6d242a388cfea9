"""End to end through all four services, the embedded PostgreSQL and the broker: one order whose
lines meet stock, a backorder and a discontinued SKU."""

from __future__ import annotations

import httpx
from e2e.kit import count_stock, new_sku, order_body, set_policy


async def test_stock_backorder_and_discontinued_lines_of_one_order(stack, orders_api, inventory_api) -> None:
    a, b, c = new_sku("A"), new_sku("B"), new_sku("C")
    await set_policy(inventory_api, a)
    await set_policy(inventory_api, b)
    await set_policy(inventory_api, c, discontinued=True)
    await count_stock(inventory_api, a, 2)
    await stack.wait_quiescent()  # the count reaches the shelf through the allocator (book first)
    assert (await inventory_api.get(f"/v1/availability/{a}")).json()["status"] == "in_stock"

    placed = await orders_api.post("/v1/orders", json=order_body([(a, 3), (b, 1), (c, 1)]))
    assert placed.status_code == 201, placed.text
    assert [line["state"] for line in placed.json()["lines"]] == ["pending"] * 3
    await stack.wait_quiescent()

    order = (await orders_api.get(f"/v1/orders/{placed.json()['id']}")).json()
    line_a, line_b, line_c = order["lines"]
    assert (line_a["state"], line_a["reserved"], line_a["backordered"]) == ("backordered", 2, 1)
    assert (line_b["state"], line_b["reserved"], line_b["backordered"]) == ("backordered", 0, 1)
    assert (line_c["state"], line_c["rejection_reason"]) == ("rejected", "discontinued")

    listed = (await orders_api.get("/v1/orders", params={"status": "backordered"})).json()
    assert placed.json()["id"] in [o["id"] for o in listed["orders"]]

    stock_a = (await inventory_api.get(f"/v1/stock/{a}")).json()
    assert (stock_a["available"], stock_a["reserved"]) == (0, 2)
    assert (await inventory_api.get(f"/v1/availability/{a}")).json()["status"] == "backorder"
    assert (await inventory_api.get(f"/v1/availability/{c}")).json()["status"] == "out_of_stock"


async def test_every_service_is_healthy_ready_and_documented(stack) -> None:
    async with httpx.AsyncClient(timeout=10) as client:
        for name in ("orders", "inventory", "allocator", "notifier"):
            base = stack.base_url(name)
            assert (await client.get(f"{base}/healthz")).json() == {"status": "ok"}
            ready = await client.get(f"{base}/readyz")
            assert ready.status_code == 200 and ready.json()["checks"]["database"] == "ok", ready.text
            assert (await client.get(f"{base}/openapi.json")).json()["info"]["title"]
            assert (await client.get(f"{base}/docs")).status_code == 200


async def test_the_suite_runs_on_the_servers_make_run_would_start(stack, db) -> None:
    """Proves the embedded path (no system PostgreSQL, no Docker) unless real servers were named."""
    import os

    async with db("orders") as conn:
        version = await conn.fetchval("SHOW server_version")
    if stack.embedded:
        assert version.startswith("18"), version  # the embedded wheel, not the machine's PostgreSQL 15
        assert stack.broker is not None and stack.broker.alive()
    else:
        assert os.environ["DATABASE_URL"] and os.environ["KAFKA_BOOTSTRAP_SERVERS"]


async def test_lines_reserved_together_ship_together_one_capture_per_order(stack, orders_api, inventory_api, db) -> None:
    """Five lines of five SKUs, all on the shelf, partial shipment allowed: inventory reserves
    them in one go and orders asks the warehouse once (one ShipmentRequested, one payment capture),
    not once per line."""
    skus = [new_sku(f"S{n}") for n in range(5)]
    for sku in skus:
        await set_policy(inventory_api, sku)
        await count_stock(inventory_api, sku, 3)
    await stack.wait_quiescent()

    placed = await orders_api.post("/v1/orders", json=order_body([(sku, 2) for sku in skus], partial_allowed=True))
    assert placed.status_code == 201, placed.text
    await stack.wait_quiescent()

    order_id = placed.json()["id"]
    order = (await orders_api.get(f"/v1/orders/{order_id}")).json()
    assert [line["state"] for line in order["lines"]] == ["reserved"] * 5
    [shipment] = (await orders_api.get(f"/v1/orders/{order_id}/shipments")).json()["shipments"]
    assert sorted((line["line_no"], line["qty"]) for line in shipment["lines"]) == [(n, 2) for n in range(1, 6)]
    async with db("orders") as conn:
        requested = await conn.fetchval(
            "SELECT count(*) FROM outbox WHERE event_type = 'ShipmentRequested' AND key = $1", order_id)
    assert requested == 1
