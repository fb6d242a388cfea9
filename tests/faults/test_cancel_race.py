"""Place a one-line backordered order and cancel it 0-150 ms later, a hundred times at once; then
force the losing interleaving ten times (the cancel waits for the order's lock and the StockShort
handler queues behind it): every cancel answered 200 says cancelled and stays cancelled everywhere."""

from __future__ import annotations

import asyncio
import random
from uuid import uuid4

import asyncpg
from faults.check import check
from faults.client import Exchange, RecordingClient
from faults.faultstack import FaultStack
from faults.flow import FlowRecord, order_body
from faults.scenario import report
from support import eventually

RACES, FORCED = 100, 10
# The first waiter on a row lock waits for the holder, the next ones for the first waiter.
WAITING = "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"


async def place_then_cancel(client: RecordingClient, sku: str, delay: float, whole_order: bool) -> Exchange | None:
    placed = await client.call("place", "orders", "POST", "/v1/orders", order_body([{"sku": sku, "qty": 1}], True, "standard"))
    if not placed.accepted:
        return None
    await asyncio.sleep(delay)
    order_id = placed.answer["id"]
    path = f"/v1/orders/{order_id}/cancel" if whole_order else f"/v1/orders/{order_id}/lines/1/cancel"
    return await client.call("cancel_order" if whole_order else "cancel_line", "orders", "POST", path, {"reason": "race"})


async def cancel_behind_a_lock(stack: FaultStack, client: RecordingClient, sku: str) -> bool:
    """Hold the order's row lock so the cancel waits first and the StockShort handler second;
    True when both were seen queued behind it (the interleaving that loses a cancel)."""
    placed = await client.call("place", "orders", "POST", "/v1/orders", order_body([{"sku": sku, "qty": 1}], True, "standard"))
    assert placed.accepted, placed
    order_id = placed.answer["id"]
    conn = await asyncpg.connect(stack.database_url("orders"))
    try:
        async with conn.transaction():
            await conn.execute("SELECT 1 FROM orders WHERE id = $1 FOR UPDATE", order_id)
            cancel = asyncio.create_task(client.call("cancel_order", "orders", "POST", f"/v1/orders/{order_id}/cancel"))

            async def both_queued() -> bool:
                return await conn.fetchval(WAITING) >= 2

            forced = await eventually(both_queued, timeout=5)
        await cancel
        return bool(forced)
    finally:
        await conn.close()


async def test_a_cancel_answered_200_is_never_undone(fault_stack) -> None:
    sku = f"F-race-{uuid4().hex[:6]}"
    client = RecordingClient({name: fault_stack.base_url(name) for name in fault_stack.services})
    record = FlowRecord(sku, [sku], exchanges=client.record)
    policy = await client.call("policy", "inventory", "PUT", f"/v1/skus/{sku}", {"backorderable": True, "supplier": "ACME"})
    assert policy.accepted, policy
    seeded = random.Random(7)
    races = [place_then_cancel(client, sku, seeded.uniform(0, 0.15), seeded.random() < 0.5) for _ in range(RACES)]
    cancels = await asyncio.gather(*races)
    forced = [await cancel_behind_a_lock(fault_stack, client, sku) for _ in range(FORCED)]
    await client.close()

    answered = [c for c in cancels if c is not None and c.accepted]
    problems = [f"cancel of {c.path} answered {c.status} with the line {c.answer['lines'][0]['state']}"
                for c in answered if c.answer["lines"][0]["state"] != "cancelled"]
    if not answered:
        problems.append("no cancel was answered 200")
    if not any(forced):
        problems.append("the cancel and the StockShort handler were never both queued on the order's lock")
    await fault_stack.wait_quiescent(timeout=60)
    problems += await check(fault_stack, record, ("backordered", "cancelled"))
    assert not problems, report(problems)
