"""Inventory's HTTP API against the live stack: SKU policy, counts, availability, purchase orders,
receipts, and bad input on every endpoint (a clear 4xx, never a 500)."""

from __future__ import annotations

from typing import Any

import pytest
from integration.inventory.inventory_kit import BUCKETS, InventoryKit, in_days, inv_fixture  # noqa: F401 (the inv fixture)
from support import events_of

# --- SKU policy and counts ----------------------------------------------------------------------


async def test_sku_policy_is_created_updated_and_read(inv: InventoryKit) -> None:
    sku = inv.new_id("POL")
    created = await inv.api.put(f"/v1/skus/{sku}", json={"supplier": "acme", "case_pack": 6})
    assert created.status_code == 201, created.text
    assert created.json() == {
        "sku": sku, "backorderable": True, "discontinued": False, "max_backorder_qty": None,
        "supplier": "acme", "safety_stock": 0, "case_pack": 6, "min_order_qty": 0, "release_date": None, "preorder_cap": None,
    }
    assert await inv.stock(sku) == {"sku": sku, **dict.fromkeys(BUCKETS, 0)}
    updated = await inv.api.put(f"/v1/skus/{sku}", json={"discontinued": True, "max_backorder_qty": 5})
    assert updated.status_code == 200
    read = (await inv.api.get(f"/v1/skus/{sku}")).json()
    assert (read["discontinued"], read["max_backorder_qty"], read["supplier"]) == (True, 5, None), "PUT replaces the policy"
    missing = await inv.api.get(f"/v1/skus/{inv.new_id('NONE')}")
    assert missing.status_code == 404
    assert missing.headers["content-type"].startswith("application/problem+json")


async def test_found_units_serve_the_book_first_and_end_available_when_nobody_waits(inv: InventoryKit) -> None:
    sku = await inv.sku()
    answer = await inv.count(sku, 7)
    assert answer.status_code == 201, answer.text
    assert (answer.json()["counted_in"], answer.json()["pending"], answer.json()["available"]) == (7, 7, 0)
    await inv.settle()  # the relay publishes after the commit: read the topic once it has
    released = await inv.on_stock("StockReleased", sku=sku)
    assert [(e.payload["qty"], e.payload["reason"]) for e in released] == [(7, "count")]
    stock = await inv.stock(sku)
    assert (stock["available"], stock["pending"], stock["counted_in"]) == (7, 0, 7)
    assert len(await inv.on_stock("GoodsPutAway", sku=sku)) == 1


async def test_missing_units_leave_available_stock_only(inv: InventoryKit) -> None:
    sku = await inv.sku(stock=5)
    answer = await inv.count(sku, -2, "damaged")
    assert answer.status_code == 201, answer.text
    assert (answer.json()["available"], answer.json()["counted_out"]) == (3, 2)
    refused = await inv.count(sku, -4)
    assert refused.status_code == 409
    assert "only 3 units available" in refused.json()["detail"]
    assert (await inv.stock(sku))["available"] == 3


async def test_count_of_an_unknown_sku_names_the_field(inv: InventoryKit) -> None:
    answer = await inv.count(inv.new_id("NONE"), 3)
    assert answer.status_code == 422
    assert answer.json()["errors"][0]["field"] == "sku"
    assert "unknown sku" in answer.json()["errors"][0]["reason"]


# --- availability -------------------------------------------------------------------------------


async def test_availability_in_stock_backorder_and_out_of_stock(inv: InventoryKit) -> None:
    in_stock = await inv.sku(stock=2)
    assert (await inv.api.get(f"/v1/availability/{in_stock}")).json() == {
        "sku": in_stock, "status": "in_stock", "available": 2, "expected_at": None,
    }
    backorder = await inv.sku()
    assert (await inv.api.get(f"/v1/availability/{backorder}")).json()["status"] == "backorder"
    assert (await inv.api.get(f"/v1/availability/{backorder}")).json()["expected_at"] is None, "no purchase order yet"
    for policy in ({"discontinued": True}, {"backorderable": False}, {"max_backorder_qty": 0}):
        sku = await inv.sku(**policy)
        assert (await inv.api.get(f"/v1/availability/{sku}")).json()["status"] == "out_of_stock", policy
    assert (await inv.api.get(f"/v1/availability/{inv.new_id('NONE')}")).status_code == 404


async def test_backorder_date_comes_from_the_purchase_order_beyond_units_already_waiting(inv: InventoryKit) -> None:
    sku = await inv.sku()
    await inv.publish(inv.order((sku, 3)))
    await inv.settle()
    assert (await inv.stock(sku))["backordered"] == 3
    for po_id, qty, days in ((inv.new_id("PO"), 3, 10), (inv.new_id("PO"), 5, 20)):
        body = {"id": po_id, "supplier": "acme", "lines": [{"sku": sku, "qty": qty}], "expected_at": str(in_days(days))}
        assert (await inv.api.post("/v1/purchase-orders", json=body)).status_code == 201
    answer = (await inv.api.get(f"/v1/availability/{sku}")).json()
    assert answer == {"sku": sku, "status": "backorder", "available": 0, "expected_at": str(in_days(20))}


# --- purchase orders ----------------------------------------------------------------------------


def po_body(po_id: str, *lines: tuple[str, int], days: int = 14) -> dict[str, Any]:
    return {"id": po_id, "supplier": "acme", "lines": [{"sku": s, "qty": q} for s, q in lines], "expected_at": str(in_days(days))}


async def test_purchase_order_lifecycle_announces_every_change(inv: InventoryKit) -> None:
    a, b = await inv.sku(), await inv.sku()
    po_id = inv.new_id("PO")
    created = await inv.api.post("/v1/purchase-orders", json=po_body(po_id, (a, 10), (b, 4)))
    assert created.status_code == 201, created.text
    assert created.json()["status"] == "open"
    assert created.json()["version"] == 1
    replay = await inv.api.post("/v1/purchase-orders", json=po_body(po_id, (a, 10), (b, 4)))
    assert (replay.status_code, replay.json()) == (200, created.json())
    clash = await inv.api.post("/v1/purchase-orders", json=po_body(po_id, (a, 11), (b, 4)))
    assert clash.status_code == 409

    moved = await inv.api.patch(f"/v1/purchase-orders/{po_id}", json={"expected_at": str(in_days(30))})
    assert (moved.status_code, moved.json()["version"], moved.json()["expected_at"]) == (200, 2, str(in_days(30)))
    cut = await inv.api.patch(f"/v1/purchase-orders/{po_id}", json={"lines": [{"sku": a, "qty": 6}]})
    assert [(x["sku"], x["qty_open"]) for x in cut.json()["lines"]] == sorted([(a, 6), (b, 4)])
    same = await inv.api.patch(f"/v1/purchase-orders/{po_id}", json={"lines": [{"sku": a, "qty": 6}]})
    assert same.json()["version"] == 3, "a request that changes nothing is not a new version"

    cancelled = await inv.api.post(f"/v1/purchase-orders/{po_id}/cancel")
    assert (cancelled.status_code, cancelled.json()["status"], cancelled.json()["version"]) == (200, "cancelled", 4)
    again = await inv.api.post(f"/v1/purchase-orders/{po_id}/cancel")
    assert (again.status_code, again.json()["version"]) == (200, 4)
    assert (await inv.api.patch(f"/v1/purchase-orders/{po_id}", json={"expected_at": str(in_days(40))})).status_code == 409
    assert (await inv.api.get(f"/v1/purchase-orders/{po_id}")).json() == cancelled.json()

    await inv.stack.wait_quiescent()  # the relay has published the last change
    changes = await inv.on_stock("PurchaseOrderChanged", purchase_order_id=po_id)
    assert [(e.payload["version"], e.payload["change"], e.payload["status"]) for e in changes] == [
        (1, "created", "open"), (2, "updated", "open"), (3, "updated", "open"), (4, "cancelled", "cancelled"),
    ]
    assert {line["sku"]: line["qty_open"] for line in changes[2].payload["lines"]} == {a: 6, b: 4}


async def test_purchase_order_refuses_past_dates_unknown_skus_and_bad_quantities(inv: InventoryKit) -> None:
    sku = await inv.sku()
    past = await inv.api.post("/v1/purchase-orders", json=po_body(inv.new_id("PO"), (sku, 1), days=-1))
    assert past.status_code == 422
    assert past.json()["errors"][0]["field"] == "expected_at"
    unknown = await inv.api.post("/v1/purchase-orders", json=po_body(inv.new_id("PO"), (sku, 1), (inv.new_id("NONE"), 1)))
    assert unknown.status_code == 422
    assert unknown.json()["errors"][0]["field"] == "lines.1.sku"
    twice = await inv.api.post("/v1/purchase-orders", json=po_body(inv.new_id("PO"), (sku, 1), (sku, 2)))
    assert twice.status_code == 422
    for qty in (0, -3, 1_000_001):
        bad = await inv.api.post("/v1/purchase-orders", json=po_body(inv.new_id("PO"), (sku, qty)))
        assert bad.status_code == 422, qty
        assert bad.json()["errors"][0]["field"] == "lines.0.qty"
    assert (await inv.api.get(f"/v1/purchase-orders/{inv.new_id('PO')}")).status_code == 404
    assert (await inv.api.post(f"/v1/purchase-orders/{inv.new_id('PO')}/cancel")).status_code == 404


# --- receipts -----------------------------------------------------------------------------------


async def test_receipt_is_recorded_once_and_counted_against_its_purchase_order(inv: InventoryKit) -> None:
    sku = await inv.sku()
    po_id = inv.new_id("PO")
    assert (await inv.api.post("/v1/purchase-orders", json=po_body(po_id, (sku, 10)))).status_code == 201
    receipt = {"receipt_id": inv.new_id("R"), "warehouse": "W1", "purchase_order_id": po_id, "lines": [{"sku": sku, "qty": 4}]}
    first = await inv.api.post("/v1/receipts", json=receipt)
    assert first.status_code == 201, first.text
    assert first.json()["outcome"] == "recorded"
    replay = await inv.api.post("/v1/receipts", json=receipt)
    assert (replay.status_code, replay.json()["outcome"]) == (200, "replayed")
    clash = await inv.api.post("/v1/receipts", json={**receipt, "lines": [{"sku": sku, "qty": 5}]})
    assert clash.status_code == 409

    order = (await inv.api.get(f"/v1/purchase-orders/{po_id}")).json()
    assert (order["lines"][0]["qty_received"], order["lines"][0]["qty_open"], order["version"]) == (4, 6, 2)
    assert (await inv.api.patch(f"/v1/purchase-orders/{po_id}", json={"lines": [{"sku": sku, "qty": 3}]})).status_code == 409
    await inv.settle()  # the receipt's own GoodsReceived comes back to inventory: a no-op
    stock = await inv.stock(sku)
    assert (stock["received"], stock["available"], stock["pending"]) == (4, 4, 0)
    settings = inv.stack.settings
    assert len(await events_of(settings, settings.topic_receipts, "GoodsReceived", receipt_id=receipt["receipt_id"])) == 1
    received = await inv.on_stock("PurchaseOrderChanged", purchase_order_id=po_id, change="received")
    assert [line["qty_open"] for line in received[0].payload["lines"]] == [6]


async def test_receipt_closes_its_purchase_order_when_everything_arrived(inv: InventoryKit) -> None:
    sku = await inv.sku()
    po_id = inv.new_id("PO")
    await inv.api.post("/v1/purchase-orders", json=po_body(po_id, (sku, 2)))
    receipt = {"receipt_id": inv.new_id("R"), "warehouse": "W1", "purchase_order_id": po_id, "lines": [{"sku": sku, "qty": 2}]}
    assert (await inv.api.post("/v1/receipts", json=receipt)).status_code == 201
    assert (await inv.api.get(f"/v1/purchase-orders/{po_id}")).json()["status"] == "closed"
    assert (await inv.api.post(f"/v1/purchase-orders/{po_id}/cancel")).status_code == 409


async def test_receipt_with_unknown_sku_or_purchase_order_is_refused_whole(inv: InventoryKit) -> None:
    sku = await inv.sku()
    lines = [{"sku": sku, "qty": 1}, {"sku": inv.new_id("NONE"), "qty": 1}]
    unknown_sku = await inv.api.post("/v1/receipts", json={"receipt_id": inv.new_id("R"), "warehouse": "W1", "lines": lines})
    assert unknown_sku.status_code == 422
    assert unknown_sku.json()["errors"][0]["field"] == "lines.1.sku"
    unknown_po = await inv.api.post(
        "/v1/receipts",
        json={"receipt_id": inv.new_id("R"), "warehouse": "W1", "purchase_order_id": "NOPE-1", "lines": lines[:1]},
    )
    assert unknown_po.status_code == 422
    assert unknown_po.json()["errors"][0]["field"] == "purchase_order_id"
    assert (await inv.stock(sku))["received"] == 0


async def test_purchase_suggestions_consolidate_uncovered_backorders_per_supplier(inv: InventoryKit) -> None:
    supplier = inv.new_id("SUP")
    a = await inv.sku(supplier=supplier, case_pack=4)
    b = await inv.sku(supplier=supplier, min_order_qty=10)
    await inv.publish(inv.order((a, 5), (b, 2)))
    await inv.api.post("/v1/purchase-orders", json={**po_body(inv.new_id("PO"), (a, 1)), "supplier": supplier})
    await inv.settle()
    answer = await inv.api.get("/v1/purchase-suggestions")
    assert answer.status_code == 200
    mine = [s for s in answer.json() if s["supplier"] == supplier]
    assert mine == [{"supplier": supplier, "lines": sorted([
        {"sku": a, "qty": 4, "backordered": 5, "on_order": 1},
        {"sku": b, "qty": 10, "backordered": 2, "on_order": 0},
    ], key=lambda line: str(line["sku"]))}]


# --- bad input on every endpoint ----------------------------------------------------------------

TEN_MB = b'{"x": "' + b"x" * (10 * 1024 * 1024) + b'"}'


def bad_requests(sku: str, po_id: str) -> list[tuple[str, str, Any]]:
    """(method, path, json body or raw bytes) that must each get a clear 4xx."""
    receipt_line = {"sku": sku, "qty": 1}
    po = po_body("PO-BAD-1", (sku, 1))
    cases: list[tuple[str, str, Any]] = [
        ("PUT", f"/v1/skus/{sku}", {"backorderable": "yes"}),
        ("PUT", f"/v1/skus/{sku}", {"case_pack": 0}),
        ("PUT", f"/v1/skus/{sku}", {"safety_stock": -1}),
        ("PUT", f"/v1/skus/{sku}", {"max_backorder_qty": "ten"}),
        ("PUT", f"/v1/skus/{sku}", {"colour": "red"}),
        ("PUT", f"/v1/skus/{sku}", {"release_date": "2027-13-01"}),
        ("PUT", f"/v1/skus/{sku}", {"release_date": "soon"}),
        ("PUT", f"/v1/skus/{sku}", {"preorder_cap": -1}),
        ("PUT", "/v1/skus/bad%20sku", {}),
        ("POST", "/v1/stock-adjustments", {"sku": sku, "delta": 0, "reason": "x"}),
        ("POST", "/v1/stock-adjustments", {"sku": sku, "delta": 1_000_001, "reason": "x"}),
        ("POST", "/v1/stock-adjustments", {"sku": sku, "delta": -1_000_001, "reason": "x"}),
        ("POST", "/v1/stock-adjustments", {"sku": sku, "delta": "5", "reason": "x"}),
        ("POST", "/v1/stock-adjustments", {"sku": sku, "delta": 1.5, "reason": "x"}),
        ("POST", "/v1/stock-adjustments", {"sku": sku, "delta": 1}),
        ("POST", "/v1/stock-adjustments", {"sku": sku, "delta": 1, "reason": "x", "who": "me"}),
        ("POST", "/v1/stock-adjustments", [1, 2]),
        ("POST", "/v1/stock-adjustments", {"sku": sku, "delta": 1, "reason": "nul\u0000byte"}),
        ("PUT", f"/v1/skus/{sku}", {"supplier": "acme\u0000"}),
        ("POST", "/v1/purchase-orders", {**po, "lines": []}),
        ("POST", "/v1/purchase-orders", {**po, "lines": [{"sku": sku, "qty": 1}] * 501}),
        ("POST", "/v1/purchase-orders", {**po, "expected_at": "next tuesday"}),
        ("POST", "/v1/purchase-orders", {**po, "lines": [{"sku": sku, "qty": -1}]}),
        ("POST", "/v1/purchase-orders", {**po, "lines": [{"sku": sku, "qty": 10**12}]}),
        ("POST", "/v1/purchase-orders", {**po, "lines": "all of them"}),
        ("POST", "/v1/purchase-orders", {**po, "priority": 1}),
        ("POST", "/v1/purchase-orders", {**po, "id": "has space"}),
        ("PATCH", f"/v1/purchase-orders/{po_id}", {}),
        ("PATCH", f"/v1/purchase-orders/{po_id}", {"lines": [{"sku": sku, "qty": -1}]}),
        ("PATCH", f"/v1/purchase-orders/{po_id}", {"lines": [{"sku": sku, "qty": 2_000_000}]}),
        ("PATCH", f"/v1/purchase-orders/{po_id}", {"expected_at": "2001-01-01"}),
        ("PATCH", f"/v1/purchase-orders/{po_id}", {"supplier": "other"}),
        ("PATCH", f"/v1/purchase-orders/{po_id}", {"lines": [{"sku": "NOPE-x1", "qty": 1}]}),
        ("PATCH", "/v1/purchase-orders/NOPE-404", {"expected_at": str(in_days(3))}),
        ("POST", "/v1/purchase-orders/bad%20id/cancel", None),
        ("POST", "/v1/receipts", {"receipt_id": "R-bad", "warehouse": "W1", "lines": []}),
        ("POST", "/v1/receipts", {"receipt_id": "R-bad", "warehouse": "W1", "lines": [{**receipt_line, "qty": 0}]}),
        ("POST", "/v1/receipts", {"receipt_id": "R-bad", "warehouse": "W1", "lines": [{**receipt_line, "qty": -2}]}),
        ("POST", "/v1/receipts", {"receipt_id": "R-bad", "warehouse": "W1", "lines": [{**receipt_line, "qty": 10**9}]}),
        ("POST", "/v1/receipts", {"receipt_id": "R-bad", "warehouse": "W1", "lines": [{**receipt_line, "qty": "1"}]}),
        ("POST", "/v1/receipts", {"receipt_id": "R-bad", "warehouse": "W1", "lines": [receipt_line], "dock": 4}),
        ("POST", "/v1/receipts", {"receipt_id": "", "warehouse": "W1", "lines": [receipt_line]}),
        ("POST", "/v1/receipts", {"warehouse": "W1", "lines": [receipt_line]}),
        ("POST", "/v1/receipts", {"receipt_id": "R\u0000", "warehouse": "W1", "lines": [receipt_line]}),
        ("POST", "/v1/receipts", {"receipt_id": "R-bad", "warehouse": "W 1", "lines": [receipt_line]}),
        ("GET", "/v1/availability/bad%20sku", None),
        ("GET", "/v1/stock/bad%20sku", None),
        ("GET", "/v1/skus/" + "x" * 65, None),
        ("GET", "/v1/purchase-orders/bad%20id", None),
    ]
    for method, path in (
        ("PUT", f"/v1/skus/{sku}"), ("POST", "/v1/stock-adjustments"), ("POST", "/v1/purchase-orders"),
        ("PATCH", f"/v1/purchase-orders/{po_id}"), ("POST", "/v1/receipts"),
    ):
        cases += [
            (method, path, b'{"sku": '), (method, path, b"not json at all"), (method, path, TEN_MB),
            (method, path, b"[" * 200_000 + b"]" * 200_000), (method, path, b""), (method, path, b"null"),
        ]
    return cases


async def test_bad_input_on_every_endpoint_gets_a_clear_4xx(inv: InventoryKit) -> None:
    sku = await inv.sku()
    po_id = inv.new_id("PO")
    assert (await inv.api.post("/v1/purchase-orders", json=po_body(po_id, (sku, 5)))).status_code == 201
    failures = []
    for method, path, body in bad_requests(sku, po_id):
        if isinstance(body, bytes):
            answer = await inv.api.request(method, path, content=body, headers={"content-type": "application/json"})
        else:
            answer = await inv.api.request(method, path, json=body)
        problem = answer.json() if answer.headers.get("content-type", "").endswith("json") else {}
        if not (400 <= answer.status_code < 500 and problem.get("detail")):
            failures.append((method, path, str(body)[:80], answer.status_code, answer.text[:200]))
    assert failures == []
    assert (await inv.stock(sku)) == {"sku": sku, **dict.fromkeys(BUCKETS, 0)}, "nothing bad changed the stock"
    assert (await inv.api.get(f"/v1/purchase-orders/{po_id}")).json()["version"] == 1


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded"])
async def test_non_json_content_types_are_refused(inv: InventoryKit, content_type: str) -> None:
    answer = await inv.api.post("/v1/stock-adjustments", content=b"sku=A&delta=1", headers={"content-type": content_type})
    assert 400 <= answer.status_code < 500
