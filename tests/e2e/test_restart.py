"""What survives a restart of the embedded stack: a graceful stop drains everything, PostgreSQL
keeps the state, the new (empty) broker is refilled from the outboxes, and the inboxes make the
replay harmless. Runs its own stack beside the session's, on other ports and another data dir."""

from __future__ import annotations

import shutil

import httpx
import pytest
from e2e.kit import new_sku, order_body, set_policy

from shared.devstack.stack import REPO, Devstack
from shared.settings import Settings

PORTS = {"orders_port": 18201, "inventory_port": 18202, "allocator_port": 18203, "notifier_port": 18204}


def restart_stack() -> Devstack:
    root = REPO / ".devstack" / "restart-test"
    return Devstack(Settings(**PORTS), root=root, log_to_files=True, pg_port=25434, kafka_port=29094)


@pytest.fixture
async def first_run(stack):  # the session stack must exist first (it owns the embedded wheel checks)
    if not stack.embedded:
        pytest.fail("restart test needs the embedded stack; run it without DATABASE_URL/KAFKA_BOOTSTRAP_SERVERS")
    shutil.rmtree(REPO / ".devstack" / "restart-test", ignore_errors=True)
    devstack = restart_stack()
    await devstack.start()
    yield devstack
    await devstack.stop(drain=False)


async def test_state_survives_graceful_restart_and_replay_has_no_second_effect(first_run: Devstack) -> None:
    sku = new_sku("R")
    async with httpx.AsyncClient(timeout=30) as client:
        inventory, orders = first_run.base_url("inventory"), first_run.base_url("orders")
        async with httpx.AsyncClient(base_url=inventory) as inventory_api:
            await set_policy(inventory_api, sku)
        placed = await client.post(f"{orders}/v1/orders", json=order_body([(sku, 2)]))
        assert placed.status_code == 201
        order_id = placed.json()["id"]
        await first_run.wait_quiescent()
        before = (await client.get(f"{orders}/v1/orders/{order_id}")).json()
        stock_before = (await client.get(f"{inventory}/v1/stock/{sku}")).json()
        assert before["lines"][0]["state"] == "backordered"

        await first_run.stop(drain=True)  # intake closed, drained, services, broker, PostgreSQL stopped
        second_run = restart_stack()
        try:
            await second_run.start()
            await second_run.wait_quiescent()  # every retained event republished and absorbed
            after = (await client.get(f"{orders}/v1/orders/{order_id}")).json()
            assert after["lines"] == before["lines"]
            assert (await client.get(f"{inventory}/v1/stock/{sku}")).json()["backordered"] == stock_before["backordered"] == 2

            receipt = {"receipt_id": f"R-{sku}", "warehouse": "DC1", "lines": [{"sku": sku, "qty": 2}]}
            assert (await client.post(f"{inventory}/v1/receipts", json=receipt)).status_code == 201
            await second_run.wait_quiescent()
            line = (await client.get(f"{orders}/v1/orders/{order_id}")).json()["lines"][0]
            assert (line["state"], line["allocated"], line["backordered"]) == ("allocated", 2, 0)
        finally:
            await second_run.stop(drain=False)
