"""The orders integration tests' kit: SKUs, orders placed over HTTP, events published as
inventory or the allocator would, and waiting for the stack to settle.

When inventory runs in the stack it reacts to every OrderPlaced. The tests therefore register
their SKUs with it (backorderable, with the stock the scenario needs) so that what inventory
emits is exactly what the tests publish themselves: the facts agree whichever copy arrives first,
and orders applies them idempotently. With DEVSTACK_SERVICES=orders the published copy is the
only one, and the outcome is the same.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID, uuid4

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from support import events_of, publish

from shared.events import Envelope, Event, StockShort


@dataclass
class OrdersKit:
    stack: Any
    api: httpx.AsyncClient
    inventory: httpx.AsyncClient
    producer: AIOKafkaProducer

    @property
    def inventory_runs(self) -> bool:
        return "inventory" in self.stack.services

    async def sku(self, stock: int = 0, known: bool = True) -> str:
        """A fresh SKU; known to inventory (backorderable, with `stock` on hand) unless `known` is False."""
        sku = f"ORD-{uuid4().hex[:10]}"
        if known and self.inventory_runs:
            answer = await self.inventory.put(f"/v1/skus/{sku}", json={"backorderable": True})
            assert answer.status_code in (200, 201), answer.text
            if stock:
                answer = await self.inventory.post("/v1/stock-adjustments", json={"sku": sku, "delta": stock, "reason": "count"})
                assert answer.status_code in (200, 201), answer.text
                await self.settle()  # found stock serves the (empty) book first, then is put away
        return sku

    def body(self, *lines: tuple[str, int], partial: bool = False, **overrides: Any) -> dict[str, Any]:
        body: dict[str, Any] = {
            "external_id": f"EXT-{uuid4().hex}",
            "channel": "web",
            "customer": {"id": f"C-{uuid4().hex[:8]}", "email": "ada@example.com", "locale": "en-GB", "tier": "standard"},
            "lines": [{"sku": sku, "qty": qty} for sku, qty in lines],
            "shipping": {"partial_allowed": partial},
        }
        body.update(overrides)
        return body

    async def place(self, *lines: tuple[str, int], partial: bool = False) -> dict[str, Any]:
        answer = await self.api.post("/v1/orders", json=self.body(*lines, partial=partial))
        assert answer.status_code == 201, answer.text
        order: dict[str, Any] = answer.json()
        return order

    async def backordered(self, *lines: tuple[str, int], partial: bool = False) -> dict[str, Any]:
        """An order whose lines all wait in the book, as inventory reports for SKUs with no stock."""
        order = await self.place(*lines, partial=partial)
        await self.settle()
        for line in order["lines"]:
            await self.publish(self.short(order, line["line_no"], qty_short=line["qty"]))
        await self.settle()
        return order

    @staticmethod
    def short(order: dict[str, Any], line_no: int, qty_short: int, qty_reserved: int = 0) -> StockShort:
        line = order["lines"][line_no - 1]
        return StockShort(
            order_id=order["id"], line_no=line_no, sku=line["sku"], qty_short=qty_short, qty_reserved=qty_reserved,
            ordered_at=datetime.fromisoformat(order["placed_at"]), customer_tier=order["customer"]["tier"],
            partial_allowed=order["shipping"]["partial_allowed"], order_short_lines=len(order["lines"]),
        )

    async def publish(self, event: Event, event_id: UUID | None = None) -> Envelope:
        envelope = await publish(self.producer, self.stack.settings, event, event_id=event_id)
        assert envelope is not None
        return envelope

    async def settle(self) -> None:
        await self.stack.wait_quiescent()

    async def order(self, order_id: str | UUID) -> dict[str, Any]:
        answer = await self.api.get(f"/v1/orders/{order_id}")
        assert answer.status_code == 200, answer.text
        order: dict[str, Any] = answer.json()
        return order

    async def line(self, order_id: str | UUID, line_no: int) -> dict[str, Any]:
        line: dict[str, Any] = (await self.order(order_id))["lines"][line_no - 1]
        assert line["line_no"] == line_no
        return line

    async def shipments(self, order_id: str | UUID) -> list[dict[str, Any]]:
        answer = await self.api.get(f"/v1/orders/{order_id}/shipments")
        assert answer.status_code == 200, answer.text
        shipments: list[dict[str, Any]] = answer.json()["shipments"]
        return shipments

    async def emitted(self, event_type: str, **match: object) -> list[Envelope]:
        """Events of one type that orders (or a test) put on the orders topic, matching the payload."""
        settings = self.stack.settings
        return await events_of(settings, settings.topic_orders, event_type, **match)


@pytest.fixture(name="kit")
async def kit_fixture(stack: Any, orders_api: httpx.AsyncClient, producer: AIOKafkaProducer) -> AsyncIterator[OrdersKit]:
    inventory_url = f"http://{stack.settings.host}:{stack.settings.port('inventory')}"
    async with httpx.AsyncClient(base_url=inventory_url, timeout=30) as inventory:
        yield OrdersKit(stack, orders_api, inventory, producer)
