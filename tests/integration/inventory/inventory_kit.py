"""The inventory integration tests' kit: fresh SKUs set up over HTTP, counts, stock rows,
events published as orders, a warehouse or the allocator would, and the stock topic read back."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from support import envelope_for, events_of, eventually, publish

from shared.devstack.mailsink import free_port
from shared.events import Customer, Envelope, Event, OrderedLine, OrderPlaced

BUCKETS = ("available", "reserved", "pending", "cross_docked", "shipped", "received", "counted_in", "counted_out", "backordered",
           "preordered")


def in_days(days: int) -> date:
    return datetime.now(UTC).date() + timedelta(days=days)


def conserved(stock: dict[str, Any]) -> bool:
    came_in = stock["received"] + stock["counted_in"]
    somewhere = sum(stock[b] for b in ("available", "reserved", "pending", "cross_docked", "shipped", "counted_out"))
    return bool(came_in == somewhere)


@dataclass
class InventoryKit:
    stack: Any
    api: httpx.AsyncClient
    producer: AIOKafkaProducer

    @staticmethod
    def new_id(prefix: str) -> str:
        return f"{prefix}-{uuid4().hex[:10]}"

    async def sku(self, stock: int = 0, **policy: Any) -> str:
        """A fresh SKU (backorderable unless told otherwise) with `stock` units available."""
        sku = self.new_id("INV")
        answer = await self.api.put(f"/v1/skus/{sku}", json=policy)
        assert answer.status_code == 201, answer.text
        if stock:
            answer = await self.count(sku, stock)
            assert answer.status_code == 201, answer.text
            await self.settle()  # found units serve the (empty) book, then the allocator puts them away
            assert (await self.stock(sku))["available"] == stock
        return sku

    async def count(self, sku: str, delta: int, reason: str = "cycle count") -> httpx.Response:
        return await self.api.post("/v1/stock-adjustments", json={"sku": sku, "delta": delta, "reason": reason})

    async def stock(self, sku: str) -> dict[str, Any]:
        answer = await self.api.get(f"/v1/stock/{sku}")
        assert answer.status_code == 200, answer.text
        stock: dict[str, Any] = answer.json()
        assert conserved(stock), stock
        return stock

    async def settle(self) -> None:
        await self.stack.wait_quiescent()

    async def publish(self, event: Event, *, event_id: UUID | None = None, key: str | None = None, by: str = "tests") -> Envelope:
        envelope = await publish(self.producer, self.stack.settings, event, event_id=event_id, key=key, producer_name=by)
        assert envelope is not None
        return envelope

    async def publish_burst(self, events: Sequence[Event], *, key: str) -> list[Envelope]:
        """Put events on one partition, in this order, without waiting for each acknowledgement: a
        flash sale's burst, which consumers take in few batches."""
        envelopes = [envelope_for(event) for event in events]
        topic = self.stack.settings.topic
        sent = [
            await self.producer.send(topic(event.stream), value=envelope.model_dump_json().encode(), key=key.encode())
            for event, envelope in zip(events, envelopes, strict=True)
        ]
        await asyncio.gather(*sent)
        return envelopes

    @asynccontextmanager
    async def second_instance(self, service: str) -> AsyncIterator[None]:
        """Another instance of a service in the same consumer group, for as long as the block runs."""
        port = free_port()  # not a fixed offset: TEST_PORT_BASE + 101..104 are the fault stack's, alive all session
        key = f"{service}-{port}"
        process = self.stack.start_service(service, port, key=key)
        try:
            async with httpx.AsyncClient(base_url=f"http://{self.stack.settings.host}:{port}", timeout=2) as client:

                async def ready() -> bool:
                    if process.process.poll() is not None:
                        raise RuntimeError(f"{key} exited with code {process.process.returncode}")
                    try:
                        return (await client.get("/readyz")).status_code == 200
                    except httpx.TransportError:
                        return False

                assert await eventually(ready, timeout=60), f"{key} not ready"
            yield
        finally:
            await process.stop()
            del self.stack.services[key]

    async def stable_members(self, group: str) -> int:
        """Members of a consumer group once it is stable (0 while it rebalances). The embedded broker
        does not report assignments, but a stable group has handed out every partition."""
        admin = AIOKafkaAdminClient(bootstrap_servers=self.stack.settings.kafka_bootstrap_servers)
        await admin.start()
        try:
            [response] = await admin.describe_consumer_groups([group])
            [described] = response.to_object()["groups"]
        finally:
            await admin.close()
        return len(described["members"]) if described["state"] == "Stable" else 0

    async def on_stock(self, event_type: str, **match: object) -> list[Envelope]:
        """Events of one type on the stock topic whose payload matches."""
        return await events_of(self.stack.settings, self.stack.settings.topic_stock, event_type, **match)

    @staticmethod
    def order(*lines: tuple[str, int], tier: str = "standard", partial: bool = True) -> OrderPlaced:
        return OrderPlaced(
            order_id=uuid4(), external_id=uuid4().hex, channel="web",
            customer=Customer(id=f"C-{uuid4().hex[:8]}", email="ada@example.com", tier=tier),
            partial_allowed=partial, placed_at=datetime.now(UTC),
            lines=tuple(OrderedLine(line_no=n, sku=sku, qty=qty) for n, (sku, qty) in enumerate(lines, 1)),
        )


@pytest.fixture(name="inv")
async def inv_fixture(stack: Any, inventory_api: httpx.AsyncClient, producer: AIOKafkaProducer) -> AsyncIterator[InventoryKit]:
    yield InventoryKit(stack, inventory_api, producer)
