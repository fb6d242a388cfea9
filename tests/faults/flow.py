"""A seeded, bounded flow of what platforms, the warehouse and purchasing do at once: orders of
1-3 lines (some cancelled right after placing), receipts (some against purchase orders), date slips
and quantity cuts on purchase orders, and cancels of orders and lines at random moments."""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field
from datetime import date, timedelta
from uuid import uuid4

from faults.client import Exchange, RecordingClient

from shared.devstack.stack import Devstack


@dataclass(frozen=True)
class FlowConfig:
    seed: int
    duration_s: float = 6.0
    skus: int = 3
    initial_stock: int = 2  # counted in per SKU before the flow
    purchase_orders: int = 2
    order_every_s: float = 0.15
    receipt_every_s: float = 0.7
    po_change_every_s: float = 1.2
    cancel_every_s: float = 0.6
    cancel_right_after_placing: float = 0.15  # share of orders cancelled 0-150 ms after their 201
    discontinued_share: float = 0.05  # share of lines for a discontinued SKU (rejected)


@dataclass
class FlowRecord:
    """What a flow did: its SKUs and every request's final outcome."""

    label: str
    skus: list[str]
    discontinued_sku: str | None = None
    exchanges: list[Exchange] = field(default_factory=list)

    @property
    def all_skus(self) -> list[str]:
        return [*self.skus, *([self.discontinued_sku] if self.discontinued_sku else [])]

    def accepted(self, *kinds: str) -> list[Exchange]:
        return [e for e in self.exchanges if e.accepted and e.kind in kinds]


class Flow:
    """Run `setup()` once, then `run()` for the configured time; the record is in `record`."""

    def __init__(self, stack: Devstack, config: FlowConfig, label: str) -> None:
        self.config = config
        self.random = random.Random(config.seed)
        tag = f"{label}-{uuid4().hex[:6]}"
        self.record = FlowRecord(tag, [f"F-{tag}-{n}" for n in range(config.skus)])
        self.discontinued_sku = f"F-{tag}-gone"
        self.record.discontinued_sku = self.discontinued_sku
        self.client = RecordingClient({name: stack.base_url(name) for name in stack.services})
        self.client.record = self.record.exchanges
        self.placed: list[dict] = []
        self.purchase_orders: dict[str, dict[str, int]] = {}
        self._cancel_tasks: list[asyncio.Task[Exchange]] = []

    async def setup(self) -> None:
        for sku in self.record.skus:
            await self._must("policy", "inventory", "PUT", f"/v1/skus/{sku}", {"backorderable": True, "supplier": "ACME"})
            if self.config.initial_stock:
                count = {"sku": sku, "delta": self.config.initial_stock, "reason": "cycle count"}
                await self._must("count", "inventory", "POST", "/v1/stock-adjustments", count)
        gone = {"backorderable": False, "discontinued": True, "supplier": "ACME"}
        await self._must("policy", "inventory", "PUT", f"/v1/skus/{self.discontinued_sku}", gone)
        for n in range(self.config.purchase_orders):
            po_id = f"PO-{self.record.label}-{n}"
            lines = {sku: self.random.randint(4, 12) for sku in self.record.skus}
            body = {"id": po_id, "supplier": "ACME", "expected_at": (date.today() + timedelta(days=5 + 5 * n)).isoformat(),
                    "lines": [{"sku": sku, "qty": qty} for sku, qty in lines.items()]}
            await self._must("po_create", "inventory", "POST", "/v1/purchase-orders", body)
            self.purchase_orders[po_id] = lines

    async def run(self) -> FlowRecord:
        deadline = time.monotonic() + self.config.duration_s
        actors = [(self.place_one, self.config.order_every_s), (self.receive_one, self.config.receipt_every_s),
                  (self.change_purchase_order, self.config.po_change_every_s), (self.cancel_one, self.config.cancel_every_s)]
        await asyncio.gather(*(self._every(action, period, deadline) for action, period in actors))
        await asyncio.gather(*self._cancel_tasks)
        await self.receive_closing()
        await self.client.close()
        return self.record

    async def _every(self, action, period: float, deadline: float) -> None:  # type: ignore[no-untyped-def]
        while time.monotonic() < deadline:
            await asyncio.sleep(self.random.uniform(0.5, 1.5) * period)
            await action()

    async def place_one(self) -> None:
        lines = []
        for sku in self.random.sample(self.record.skus, self.random.randint(1, min(3, len(self.record.skus)))):
            if self.random.random() < self.config.discontinued_share:
                sku = self.discontinued_sku
            lines.append({"sku": sku, "qty": self.random.randint(1, 3)})
        placed = await self.client.call("place", "orders", "POST", "/v1/orders", order_body(
            lines, partial_allowed=self.random.random() < 0.5, tier=self.random.choice(["standard", "vip"])))
        if placed.accepted:
            self.placed.append(placed.answer)
            if self.random.random() < self.config.cancel_right_after_placing:
                delay = self.random.uniform(0, 0.15)
                self._cancel_tasks.append(asyncio.create_task(self._cancel_later(placed.answer["id"], delay)))

    async def _cancel_later(self, order_id: str, delay: float) -> Exchange:
        await asyncio.sleep(delay)
        return await self.client.call("cancel_order", "orders", "POST", f"/v1/orders/{order_id}/cancel", {"reason": "race"})

    async def cancel_one(self) -> None:
        if not self.placed:
            return
        order = self.random.choice(self.placed)
        if self.random.random() < 0.5:
            await self.client.call("cancel_order", "orders", "POST", f"/v1/orders/{order['id']}/cancel", {"reason": "flow"})
        else:
            line_no = self.random.choice(order["lines"])["line_no"]
            path = f"/v1/orders/{order['id']}/lines/{line_no}/cancel"
            await self.client.call("cancel_line", "orders", "POST", path, {"reason": "flow"})

    async def receive_one(self) -> None:
        receipt_id = f"RCV-{uuid4().hex[:10]}"
        body: dict = {"receipt_id": receipt_id, "warehouse": "DC1"}
        if self.purchase_orders and self.random.random() < 0.5:
            po_id = self.random.choice(sorted(self.purchase_orders))
            skus = self.random.sample(sorted(self.purchase_orders[po_id]), 1)
            body["purchase_order_id"] = po_id
        else:
            skus = self.random.sample(self.record.skus, self.random.randint(1, len(self.record.skus)))
        body["lines"] = [{"sku": sku, "qty": self.random.randint(1, 5)} for sku in skus]
        await self.client.call("receipt", "inventory", "POST", "/v1/receipts", body)

    async def receive_closing(self) -> None:
        """One last receipt of every SKU, so every run serves waiting lines from a receipt (and
        cross-docks for those that may ship) whatever its random draws, while some lines still wait."""
        lines = [{"sku": sku, "qty": self.random.randint(3, 6)} for sku in self.record.skus]
        body = {"receipt_id": f"RCV-{uuid4().hex[:10]}", "warehouse": "DC1", "lines": lines}
        await self.client.call("receipt", "inventory", "POST", "/v1/receipts", body)

    async def change_purchase_order(self) -> None:
        if not self.purchase_orders:
            return
        po_id = self.random.choice(sorted(self.purchase_orders))
        if self.random.random() < 0.5:
            body: dict = {"expected_at": (date.today() + timedelta(days=self.random.randint(6, 30))).isoformat()}
        else:
            sku = self.random.choice(sorted(self.purchase_orders[po_id]))
            qty = max(self.purchase_orders[po_id][sku] - self.random.randint(1, 3), 1)
            body = {"lines": [{"sku": sku, "qty": qty}]}
        changed = await self.client.call("po_patch", "inventory", "PATCH", f"/v1/purchase-orders/{po_id}", body)
        if changed.accepted and "lines" in body:
            self.purchase_orders[po_id][body["lines"][0]["sku"]] = body["lines"][0]["qty"]

    async def _must(self, kind: str, service: str, method: str, path: str, body: object) -> Exchange:
        exchange = await self.client.call(kind, service, method, path, body)
        assert exchange.accepted, f"flow set-up {method} {path}: {exchange.status} {exchange.answer}"
        return exchange


def order_body(lines: list[dict], partial_allowed: bool, tier: str) -> dict:
    return {
        "external_id": uuid4().hex, "channel": "faults",
        "customer": {"id": f"cust-{uuid4().hex[:6]}", "email": "ada@example.com", "locale": "en-GB", "tier": tier},
        "lines": lines, "shipping": {"partial_allowed": partial_allowed},
    }
