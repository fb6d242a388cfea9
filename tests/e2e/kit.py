"""Builders shared by the end-to-end scenarios: unique SKUs, SKU policies, counts and order bodies."""

from __future__ import annotations

from datetime import date
from uuid import uuid4

import httpx


def new_sku(label: str) -> str:
    return f"E2E-{label}-{uuid4().hex[:8]}"


async def set_policy(inventory_api: httpx.AsyncClient, sku: str, **policy: object) -> None:
    response = await inventory_api.put(f"/v1/skus/{sku}", json={"backorderable": True, **policy})
    assert response.status_code in (200, 201), response.text


async def count_stock(inventory_api: httpx.AsyncClient, sku: str, units: int) -> None:
    response = await inventory_api.post("/v1/stock-adjustments", json={"sku": sku, "delta": units, "reason": "cycle count"})
    assert response.status_code in (200, 201), response.text


def order_body(lines: list[tuple[str, int]], partial_allowed: bool = True, tier: str = "standard") -> dict:
    return {
        "external_id": uuid4().hex,
        "channel": "web",
        "customer": {"id": f"cust-{uuid4().hex[:6]}", "email": "ada@example.com", "locale": "en-GB", "tier": tier},
        "lines": [{"sku": sku, "qty": qty} for sku, qty in lines],
        "shipping": {"partial_allowed": partial_allowed},
    }


def new_customer(locale: str = "en-GB") -> dict[str, str]:
    """A customer of their own (id and address), so a test finds exactly its messages."""
    token = uuid4().hex[:10]
    return {"id": f"cust-{token}", "email": f"c-{token}@example.com", "locale": locale}


async def place_order(
    orders_api: httpx.AsyncClient, customer: dict[str, str], lines: list[tuple[str, int]], channel: str = "web"
) -> str:
    body = {
        "external_id": f"SO-{uuid4().hex[:8]}", "channel": channel, "customer": customer,
        "lines": [{"sku": sku, "qty": qty} for sku, qty in lines], "shipping": {"partial_allowed": True},
    }
    placed = await orders_api.post("/v1/orders", json=body)
    assert placed.status_code == 201, placed.text
    order_id: str = placed.json()["id"]
    return order_id


async def purchase_order(inventory_api: httpx.AsyncClient, sku: str, qty: int, expected: date) -> str:
    """An open purchase order from ACME for one SKU; returns its id."""
    po_id = f"PO-{uuid4().hex[:8]}"
    created = await inventory_api.post("/v1/purchase-orders", json={
        "id": po_id, "supplier": "ACME", "lines": [{"sku": sku, "qty": qty}], "expected_at": expected.isoformat()})
    assert created.status_code == 201, created.text
    return po_id


async def receive(inventory_api: httpx.AsyncClient, sku: str, qty: int, po_id: str | None = None) -> str:
    """A warehouse receipt of one SKU (against a purchase order when named); returns its id."""
    receipt_id = f"RCV-{uuid4().hex[:8]}"
    received = await inventory_api.post("/v1/receipts", json={
        "receipt_id": receipt_id, "warehouse": "DC1", "purchase_order_id": po_id, "lines": [{"sku": sku, "qty": qty}]})
    assert received.status_code == 201, received.text
    return receipt_id
