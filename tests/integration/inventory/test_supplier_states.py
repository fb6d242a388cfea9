"""Purchase orders' supplier-side states over HTTP against the live stack: confirmed, shipped (with
carrier and tracking), received by receipts; replays, impossible changes (409 saying why), unknown
ids, bad input naming the field, and each change announced on the stock topic with its date."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx
from integration.inventory.inventory_kit import InventoryKit, in_days, inv_fixture  # noqa: F401 (the inv fixture)


async def new_purchase_order(inv: InventoryKit, sku: str, qty: int = 10) -> str:
    po_id = inv.new_id("PO")
    body = {"id": po_id, "supplier": "acme", "lines": [{"sku": sku, "qty": qty}], "expected_at": str(in_days(14))}
    created = await inv.api.post("/v1/purchase-orders", json=body)
    assert created.status_code == 201, created.text
    return po_id


async def receive(inv: InventoryKit, po_id: str, sku: str, qty: int) -> None:
    receipt = {"receipt_id": inv.new_id("R"), "warehouse": "W1", "purchase_order_id": po_id, "lines": [{"sku": sku, "qty": qty}]}
    answer = await inv.api.post("/v1/receipts", json=receipt)
    assert answer.status_code == 201, answer.text


def history(order: dict[str, Any]) -> list[tuple[str, str | None, str | None]]:
    return [(step["state"], step["carrier"], step["tracking"]) for step in order["supplier_history"]]


def moment(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


async def test_confirmed_shipped_and_received_each_announced_with_its_date(inv: InventoryKit) -> None:
    sku = await inv.sku()
    po_id = await new_purchase_order(inv, sku)
    opened = (await inv.api.get(f"/v1/purchase-orders/{po_id}")).json()
    assert (opened["supplier_state"], history(opened)) == ("open", [("open", None, None)])

    opened_at = moment(opened["supplier_history"][0]["at"])
    confirmed_at = opened_at  # not before the order was placed: at that moment at the earliest, written in CET
    body = {"confirmed_at": confirmed_at.astimezone(timezone(timedelta(hours=1))).isoformat(), "expected_at": str(in_days(20))}
    confirmed = await inv.api.post(f"/v1/purchase-orders/{po_id}/confirm", json=body)
    assert confirmed.status_code == 200, confirmed.text
    assert (confirmed.json()["supplier_state"], confirmed.json()["expected_at"], confirmed.json()["version"]) == (
        "confirmed", str(in_days(20)), 2,
    )
    assert moment(confirmed.json()["supplier_history"][1]["at"]) == confirmed_at
    replay = await inv.api.post(f"/v1/purchase-orders/{po_id}/confirm", json=body)
    assert (replay.status_code, replay.json()) == (200, confirmed.json()), "the same report again changes nothing"

    shipment = {"carrier": "DHL", "tracking": "JD0146 0000 6281"}
    before_ship = datetime.now(UTC)
    shipped = await inv.api.post(f"/v1/purchase-orders/{po_id}/ship", json=shipment)
    assert shipped.status_code == 200, shipped.text
    assert history(shipped.json())[-1] == ("shipped", "DHL", "JD0146 0000 6281")
    shipped_at = moment(shipped.json()["supplier_history"][-1]["at"])
    assert before_ship <= shipped_at <= datetime.now(UTC), "no shipped_at given: now"
    assert (await inv.api.post(f"/v1/purchase-orders/{po_id}/ship", json=shipment)).json() == shipped.json()
    late_confirm = await inv.api.post(f"/v1/purchase-orders/{po_id}/confirm", json=body)
    assert (late_confirm.status_code, late_confirm.json()) == (200, shipped.json()), "a late retry of a recorded report"

    await receive(inv, po_id, sku, 4)
    assert (await inv.api.get(f"/v1/purchase-orders/{po_id}")).json()["supplier_state"] == "shipped", "6 units still to come"
    before_last = datetime.now(UTC)
    await receive(inv, po_id, sku, 6)
    received = (await inv.api.get(f"/v1/purchase-orders/{po_id}")).json()
    assert (received["status"], received["supplier_state"]) == ("closed", "received")
    assert [state for state, _, _ in history(received)] == ["open", "confirmed", "shipped", "received"]
    received_at = moment(received["supplier_history"][-1]["at"])
    assert before_last <= received_at <= datetime.now(UTC), "at the receipt's time"

    await inv.settle()
    changes = await inv.on_stock("PurchaseOrderChanged", purchase_order_id=po_id)
    announced = [
        (e.schema_version, e.payload["version"], e.payload["change"], e.payload["supplier_state"],
         e.payload["supplier_state_at"] and moment(e.payload["supplier_state_at"]), e.payload["carrier"], e.payload["tracking"])
        for e in changes
    ]
    assert announced == [
        (2, 1, "created", "open", opened_at, None, None),
        (2, 2, "confirmed", "confirmed", confirmed_at, None, None),
        (2, 3, "shipped", "shipped", shipped_at, "DHL", "JD0146 0000 6281"),
        (2, 4, "received", "shipped", shipped_at, "DHL", "JD0146 0000 6281"),
        (2, 5, "received", "received", received_at, "DHL", "JD0146 0000 6281"),
    ]
    assert changes[1].payload["expected_at"] == str(in_days(20))


async def test_a_confirmed_date_reaches_the_allocator_and_a_shipment_may_skip_confirmation(
    inv: InventoryKit, allocator_api: httpx.AsyncClient
) -> None:
    sku = await inv.sku()
    po_id = await new_purchase_order(inv, sku, qty=3)
    shipped = await inv.api.post(f"/v1/purchase-orders/{po_id}/ship", json={"expected_at": str(in_days(9))})
    assert shipped.status_code == 200, shipped.text
    assert history(shipped.json()) == [("open", None, None), ("shipped", None, None)]
    no_body = await inv.api.post(f"/v1/purchase-orders/{await new_purchase_order(inv, sku)}/confirm")
    assert (no_body.status_code, no_body.json()["supplier_state"]) == (200, "confirmed"), "the body is optional"
    await inv.settle()
    supply = (await allocator_api.get("/v1/backorders", params={"sku": sku})).json()["supply"]
    assert {(s["purchase_order_id"], s["expected_at"]) for s in supply if s["purchase_order_id"] == po_id} == {
        (po_id, str(in_days(9))),
    }, "the allocator read the version 2 event"


async def test_impossible_supplier_changes_are_conflicts_that_say_why(inv: InventoryKit) -> None:
    sku = await inv.sku()
    po_id = await new_purchase_order(inv, sku)
    assert (await inv.api.post(f"/v1/purchase-orders/{po_id}/ship", json={"carrier": "DHL"})).status_code == 200
    cases = {
        "confirm": ({}, "already shipped since .* never goes back to confirmed"),
        "ship": ({"carrier": "UPS"}, "already shipped since .* reported once"),
    }
    for action, (body, why) in cases.items():
        answer = await inv.api.post(f"/v1/purchase-orders/{po_id}/{action}", json=body)
        assert answer.status_code == 409, (action, answer.text)
        assert answer.headers["content-type"].startswith("application/problem+json")
        assert re.search(why, answer.json()["detail"]), answer.json()

    cancelled_id = await new_purchase_order(inv, sku)
    assert (await inv.api.post(f"/v1/purchase-orders/{cancelled_id}/cancel")).status_code == 200
    refused = await inv.api.post(f"/v1/purchase-orders/{cancelled_id}/confirm", json={})
    assert refused.status_code == 409
    assert "is cancelled" in refused.json()["detail"]

    for action in ("confirm", "ship"):
        unknown = await inv.api.post(f"/v1/purchase-orders/{inv.new_id('NONE')}/{action}", json={})
        assert unknown.status_code == 404, unknown.text
    assert (await inv.api.get(f"/v1/purchase-orders/{po_id}")).json()["version"] == 2, "nothing refused changed it"


async def test_bad_supplier_input_names_the_field_and_the_reason(inv: InventoryKit) -> None:
    po_id = await new_purchase_order(inv, await inv.sku())
    now = datetime.now(UTC)
    cases = [
        ("confirm", {"confirmed_at": "2026-11-30T10:00:00"}, "confirmed_at", "with its offset"),
        ("confirm", {"confirmed_at": 1_700_000_000}, "confirmed_at", "with its offset"),
        ("confirm", {"confirmed_at": (now - timedelta(days=400)).isoformat()}, "confirmed_at", "before the purchase order"),
        ("ship", {"shipped_at": (now + timedelta(hours=2)).isoformat()}, "shipped_at", "in the future"),
        ("ship", {"expected_at": str(in_days(-1))}, "expected_at", "in the past"),
        ("ship", {"carrier": "   "}, "carrier", ""),
        ("ship", {"tracking": "x" * 129}, "tracking", ""),
        ("ship", {"vessel": "Ever Given"}, "vessel", "Extra inputs"),
    ]
    for action, body, field, reason in cases:
        answer = await inv.api.post(f"/v1/purchase-orders/{po_id}/{action}", json=body)
        assert answer.status_code == 422, (body, answer.text)
        errors = answer.json()["errors"]
        assert errors[0]["field"] == field and reason in errors[0]["reason"], (body, errors)
    not_json = await inv.api.post(f"/v1/purchase-orders/{po_id}/ship", content=b"{", headers={"content-type": "application/json"})
    assert not_json.status_code == 422
    order = (await inv.api.get(f"/v1/purchase-orders/{po_id}")).json()
    assert (order["version"], order["supplier_state"]) == (1, "open"), "nothing bad changed it"
