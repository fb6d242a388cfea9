"""The embedded broker is killed (kill -9) while orders flow: the devstack's supervision restarts it
with the services, the relays republish what the consumers had not consumed, and every order placed
before, during and after the loss settles exactly once. Runs its own stack on its own ports (set
BROKER_LOSS_PG_PORT, BROKER_LOSS_KAFKA_PORT and BROKER_LOSS_PORT_BASE to move them)."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
from collections import Counter
from collections.abc import AsyncIterator

import httpx
import pytest
from e2e.conservation import assert_conserved
from e2e.kit import count_stock, new_sku, order_body, set_policy
from support import eventually

from shared.devstack.stack import REPO, Devstack
from shared.settings import SERVICES, Settings

ROOT = REPO / ".devstack" / "broker-loss-test"
PG_PORT = int(os.environ.get("BROKER_LOSS_PG_PORT", "25437"))
KAFKA_PORT = int(os.environ.get("BROKER_LOSS_KAFKA_PORT", "29097"))
PORT_BASE = int(os.environ.get("BROKER_LOSS_PORT_BASE", "18300"))
STOCKED_UNITS = 15


@pytest.fixture
async def own_stack() -> AsyncIterator[Devstack]:
    shutil.rmtree(ROOT, ignore_errors=True)
    ports = {f"{name}_port": PORT_BASE + n for n, name in enumerate(SERVICES, start=1)}
    devstack = Devstack(  # the embedded servers even when the others run on configured ones: this test kills the broker
        Settings(**ports), root=ROOT, log_to_files=True, pg_port=PG_PORT, kafka_port=KAFKA_PORT, embedded_only=True
    )
    await devstack.start()
    try:
        yield devstack
    finally:
        await devstack.stop(drain=False)


class OrderFlow:
    """Places an order every `interval` seconds, each with a line of a stocked SKU and one of a
    SKU without stock, and counts what HTTP answered (refused while the services restart)."""

    def __init__(self, orders_url: str, stocked: str, backordered: str, interval: float = 0.1) -> None:
        self.orders_url, self.stocked, self.backordered, self.interval = orders_url, stocked, backordered, interval
        self.answers: Counter[str] = Counter()
        self._stop = asyncio.Event()

    async def run(self) -> None:
        async with httpx.AsyncClient(base_url=self.orders_url, timeout=5) as client:
            while not self._stop.is_set():
                try:
                    placed = await client.post("/v1/orders", json=order_body([(self.stocked, 1), (self.backordered, 1)]))
                    self.answers[str(placed.status_code)] += 1
                except httpx.TransportError:
                    self.answers["refused"] += 1
                await asyncio.sleep(self.interval)

    def stop(self) -> None:
        self._stop.set()


async def settled_lines(stack: Devstack, skus: list[str], at_least: int = 10) -> bool:
    async with stack.connect("orders") as conn:
        settled = await conn.fetchval("SELECT count(*) FROM order_line WHERE sku = ANY($1) AND state <> 'pending'", skus)
    return bool(settled >= at_least)


def republished(stack: Devstack) -> dict[str, list[tuple[int, int]]]:
    """Per service, the (republished, retained) counts its relay logged after a broker change."""
    found: dict[str, list[tuple[int, int]]] = {}
    for name in SERVICES:
        text = (ROOT / "logs" / f"{name}.log").read_text(errors="replace")
        found[name] = [(int(a), int(b)) for a, b in re.findall(r"republishing (\d+) of (\d+) retained outbox rows", text)]
    return found


async def test_orders_settle_once_after_the_broker_is_killed(own_stack: Devstack) -> None:
    stack = own_stack
    stocked, backordered = new_sku("BL-S"), new_sku("BL-B")
    async with httpx.AsyncClient(base_url=stack.base_url("inventory"), timeout=10) as inventory_api:
        await set_policy(inventory_api, stocked)
        await set_policy(inventory_api, backordered)
        await count_stock(inventory_api, stocked, STOCKED_UNITS)
    await stack.wait_quiescent()

    flow = OrderFlow(stack.base_url("orders"), stocked, backordered)
    placing = asyncio.create_task(flow.run())
    try:
        await asyncio.sleep(3)
        # The first orders consumed (their lines settled in orders) ... Not wait_quiescent: under a
        # steady flow of orders there may be no instant at which every consumer has caught up.
        await eventually(lambda: settled_lines(stack, [stocked, backordered]), timeout=60)
        await asyncio.sleep(stack.settings.relay_broker_check_seconds + 1)  # ... and recorded as such by the relays
        before_kill = sum(flow.answers.values())

        assert stack.broker is not None and stack.broker.pid is not None
        os.kill(stack.broker.pid, signal.SIGKILL)
        while stack.broker.exit_code() is None:  # noqa: ASYNC110 (a process, not an event)
            await asyncio.sleep(0.05)
        await asyncio.sleep(2)  # orders keep arriving (HTTP and the databases work), their events wait
        during_loss = sum(flow.answers.values()) - before_kill

        done = await stack.heal()
        assert done[0].startswith("broker restarted as cluster"), done
        assert sorted(done[1:]) == sorted(f"{name} restarted" for name in SERVICES)
        assert await stack.heal() == []  # nothing left to do
        await asyncio.sleep(2)  # orders after the recovery
    finally:
        flow.stop()
        await placing
    await stack.wait_quiescent(timeout=120)

    accepted = flow.answers["201"]
    assert before_kill > 10 and during_loss > 5 and accepted > 20, flow.answers
    db = stack.connect
    async with db("orders") as conn:
        states = dict(await conn.fetch("SELECT state, count(*) FROM order_line WHERE sku = ANY($1) GROUP BY state",
                                       [stocked, backordered]))
        placed = await conn.fetchval("SELECT count(*) FROM order_line WHERE sku = $1", stocked)
        query = "SELECT coalesce(sum(qty_short), 0) FROM order_line WHERE sku = ANY($1)"
        short = await conn.fetchval(query, [stocked, backordered])
    assert "pending" not in states, states
    assert placed >= accepted  # an order whose answer was lost in the restart may exist too
    assert states == {"reserved": STOCKED_UNITS, "backordered": 2 * placed - STOCKED_UNITS}, states
    async with db("inventory") as conn:  # each OrderPlaced applied once, however often it was delivered
        lines = await conn.fetchval("SELECT count(*) FROM line_stock WHERE sku = ANY($1)", [stocked, backordered])
        stock = {r["sku"]: r for r in await conn.fetch("SELECT sku, reserved, backordered FROM stock WHERE sku = ANY($1)",
                                                       [stocked, backordered])}
    assert lines == 2 * placed
    assert stock[stocked]["reserved"] == STOCKED_UNITS
    assert stock[stocked]["backordered"] + stock[backordered]["backordered"] == short
    async with db("allocator") as conn:
        waiting = await conn.fetchval("SELECT count(*) FROM waiting_line WHERE sku = ANY($1)", [stocked, backordered])
    assert waiting == 2 * placed - STOCKED_UNITS
    for sku in (stocked, backordered):
        await assert_conserved(db, sku)

    counts = republished(stack)
    print(f"\n{done[0]}; HTTP answers: {dict(flow.answers)}; orders placed {placed} ({before_kill} before the kill, "
          f"{during_loss} while the broker was dead); republished (rows, of retained) per relay: {counts}")
    assert all(len(found) <= 1 for found in counts.values()), counts  # one new broker, one republish each

    # A service that dies on its own is restarted alone: at once, then after a backoff.
    for expected in (["notifier restarted"], []):
        notifier = stack.services["notifier"].process
        notifier.kill()
        notifier.wait()
        assert await stack.heal() == expected
    await asyncio.sleep(1.1)
    assert await stack.heal() == ["notifier restarted"]
    assert stack.broker.alive() and all(service.process.poll() is None for service in stack.services.values())
