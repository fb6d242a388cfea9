"""A priority policy changed while an arrival waited for the SKU's book is the policy that arrival
applies: the book lock is taken before the policy is read (forced with lock_race)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

import httpx
import pytest
from e2e.kit import new_sku, order_body, set_policy
from integration.lock_race import race
from support import envelope_for

from services.allocator import handlers, store
from services.allocator.domain.queue import PriorityPolicy
from shared.bus.outbox import UnitOfWork
from shared.events import BackorderAllocated, StockReleased

pytestmark = pytest.mark.asyncio


async def test_an_arrival_that_waited_for_a_policy_change_serves_by_the_new_policy(
    stack: Any, orders_api: httpx.AsyncClient, inventory_api: httpx.AsyncClient
) -> None:
    sku = new_sku("policy-race")
    await set_policy(inventory_api, sku)
    placed = []
    for tier in ("standard", "vip"):  # the standard customer ordered first
        answer = await orders_api.post("/v1/orders", json=order_body([(sku, 1)], tier=tier))
        assert answer.status_code == 201, answer.text
        placed.append(answer.json()["id"])
        await stack.wait_quiescent()
    standard, vip = placed

    async def tier_first(uow: UnitOfWork) -> None:  # what PUT /v1/policies/skus/{sku} does
        await store.lock_book(uow.session, [sku])
        await store.save_policy(uow.session, sku, PriorityPolicy.TIER, datetime.now(UTC))

    decided: list[BackorderAllocated] = []

    async def one_unit_arrives(uow: UnitOfWork) -> None:
        released = StockReleased(release_id=uuid4(), sku=sku, qty=1, reason="count")
        await handlers.on_stock_released([(envelope_for(released), released)], uow)
        decided.extend(p.event for p in uow.pending if isinstance(p.event, BackorderAllocated))

    await race(stack, "allocator", tier_first, one_unit_arrives, commit_second=False)
    assert [(str(a.order_id), a.qty) for a in decided] == [(vip, 1)], f"standard order was {standard}"
