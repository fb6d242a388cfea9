"""End to end: a warehouse publishes a receipt that mixes a registered SKU with one inventory does
not know yet. Inventory dead-letters it (and says how to recover); the allocator has already served
the waiting line from its known part, so that decision waits in inventory. Registering the SKU and
posting the receipt unchanged over HTTP applies everything once, and units are conserved."""

from __future__ import annotations

from uuid import uuid4

from e2e.conservation import assert_conserved
from e2e.kit import new_sku, order_body, set_policy
from support import eventually, publish, read_topic

from shared.events import GoodsReceived, ReceivedLine


async def test_receipt_with_an_unregistered_sku_is_recovered_by_posting_it_again(
    stack, db, producer, orders_api, inventory_api
) -> None:
    known, unregistered = new_sku("KNOWN"), new_sku("NEW")
    await set_policy(inventory_api, known, supplier="ACME")
    placed = await orders_api.post("/v1/orders", json=order_body([(known, 2)]))
    assert placed.status_code == 201, placed.text
    order_id = placed.json()["id"]
    await stack.wait_quiescent()

    receipt_id = f"RCV-{uuid4().hex[:8]}"
    lines = [(known, 2), (unregistered, 3)]
    receipt = GoodsReceived(
        receipt_id=receipt_id, warehouse="DC1", lines=tuple(ReceivedLine(sku=s, qty=q) for s, q in lines)
    )
    await publish(producer, stack.settings, receipt, producer_name="wms")
    await stack.wait_quiescent()

    dead = [m for m in await read_topic(stack.settings, f"{stack.settings.topic_receipts}.dlq") if m.key == receipt_id]
    assert [m.headers["dlq.consumer"] for m in dead] == ["inventory"]
    reason = dead[0].headers["dlq.reason"]
    assert f"unknown sku {unregistered}" in reason and "lines.1.sku" in reason and "POST /v1/receipts" in reason
    # The allocator served the waiting line; inventory holds that decision until the receipt is recorded.
    order = (await orders_api.get(f"/v1/orders/{order_id}")).json()
    assert order["lines"][0]["state"] == "allocated"
    assert (await inventory_api.get(f"/v1/stock/{known}")).json()["received"] == 0

    await set_policy(inventory_api, unregistered, supplier="ACME")
    body = {"receipt_id": receipt_id, "warehouse": "DC1", "lines": [{"sku": s, "qty": q} for s, q in lines]}
    posted = await inventory_api.post("/v1/receipts", json=body)
    assert posted.status_code == 201, posted.text
    await stack.wait_quiescent()

    async def both_applied() -> bool:
        known_stock = (await inventory_api.get(f"/v1/stock/{known}")).json()
        new_stock = (await inventory_api.get(f"/v1/stock/{unregistered}")).json()
        return (known_stock["received"], known_stock["cross_docked"], known_stock["pending"]) == (2, 2, 0) and (
            new_stock["received"], new_stock["available"], new_stock["pending"]
        ) == (3, 3, 0)

    assert await eventually(both_applied)
    for sku in (known, unregistered):
        await assert_conserved(db, sku)
    # The allocator saw the receipt's echo as the receipt it had served: nothing was allocated twice.
    async with db("allocator") as conn:
        assert await conn.fetchval("SELECT sum(qty) FROM allocation WHERE source_id = $1", receipt_id) == 2
