"""The `fulfil` CLI against the session's stack: what an ops engineer runs to follow an order, see
lag and replay a dead letter. Commands run in-process (typer's runner, in a thread: each command
runs its own event loop), with the stack's settings; the live `tail` runs as the installed command."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from datetime import date, timedelta
from typing import Any
from uuid import uuid4

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from e2e.kit import new_customer, new_sku, place_order, purchase_order, receive, set_policy
from support import publish
from typer.testing import CliRunner

from services.ops import cli
from shared.devstack.stack import REPO
from shared.events import GoodsReceived, ReceivedLine


@pytest.fixture
def fulfil(stack: Any, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Awaitable[tuple[int, str]]]:
    """Run `fulfil ARGS...` against the session stack; returns (exit code, stdout)."""
    monkeypatch.setattr(cli, "settings", lambda: stack.settings)
    runner = CliRunner()

    async def run(*args: str) -> tuple[int, str]:
        result = await asyncio.to_thread(runner.invoke, cli.app, list(args))
        return result.exit_code, result.stdout

    return run


async def eventually(check: Callable[[], Awaitable[bool]], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, f"not within {timeout} s: {what}"
        await asyncio.sleep(0.2)


async def backorder_then_receive(stack: Any, orders_api: httpx.AsyncClient, inventory_api: httpx.AsyncClient) -> tuple[str, str]:
    """An order for a SKU on purchase order: short, booked, then served by a receipt. Returns (order id, SKU)."""
    sku = new_sku("OPS")
    await set_policy(inventory_api, sku, supplier="ACME")
    po_id = await purchase_order(inventory_api, sku, 5, date.today() + timedelta(days=10))
    order_id = await place_order(orders_api, new_customer(), [(sku, 3)])
    await stack.wait_quiescent()
    await receive(inventory_api, sku, 5, po_id)
    await stack.wait_quiescent()
    return order_id, sku


async def test_tail_and_trace_show_one_order_across_the_topics(stack, orders_api, inventory_api, allocator_api, fulfil) -> None:
    order_id, sku = await backorder_then_receive(stack, orders_api, inventory_api)
    code, out = await fulfil("book", sku, "--json")
    assert code == 0, out
    assert json.loads(out)["backorders"]["total"] == 0  # served by the receipt

    code, out = await fulfil("tail", "--from-beginning", "--no-follow", "--order", order_id, "--json")
    assert code == 0, out
    tailed = [json.loads(line) for line in out.splitlines()]
    types = [event["event_type"] for event in tailed]
    for expected in ("OrderPlaced", "StockShort", "BackorderBooked", "BackorderAllocated", "ShipmentRequested"):
        assert expected in types, types
    assert {event["envelope"]["payload"]["order_id"] for event in tailed} == {order_id}

    code, out = await fulfil("trace", order_id, "--json")
    assert code == 0, out
    traced = json.loads(out)
    events = traced["events"]
    position = {event["event_type"]: n for n, event in enumerate(events) if event["about_order"]}
    assert position["OrderPlaced"] < position["StockShort"] < position["BackorderBooked"]
    assert position["BackorderAllocated"] < position["ShipmentRequested"]
    # The allocation is found although it carries the receipt's correlation id, under its cause.
    receipt = next(event for event in events if event["event_type"] == "GoodsReceived")
    allocation = events[position["BackorderAllocated"]]
    assert not receipt["about_order"] and allocation["correlation_id"] == receipt["correlation_id"] != order_id
    assert allocation["causation_id"] == receipt["event_id"] and allocation["depth"] == receipt["depth"] + 1
    short = events[position["StockShort"]]
    assert short["causation_id"] == events[position["OrderPlaced"]]["event_id"]
    # What each service believes about the line: one story.
    services = traced["services"]
    [line] = services["orders"]["lines"]
    assert line["state"] == "allocated" and line["allocated"] == 3 and line["reserved"] == 0
    assert services["allocator"]["lines"][0]["status"] == "filled"
    assert services["inventory"]["lines"][0]["cross_docked"] == 3
    assert services["notifier"]["lines"][0]["allocated"] == 3

    code, out = await fulfil("trace", str(uuid4()))
    assert code == cli.EXIT_NOT_FOUND


def test_tail_follows_new_events_live(stack) -> None:
    """The installed command, following from the end: an order placed after it started appears."""
    sku = new_sku("TAIL")
    settings = stack.settings
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers, "DATABASE_URL": settings.database_url}
    with tailing(["--sku", sku, "--json"], env) as lines:
        base = stack.base_url("inventory")
        assert httpx.put(f"{base}/v1/skus/{sku}", json={"backorderable": True}).status_code in (200, 201)
        customer = new_customer()
        body = {"external_id": f"SO-{uuid4().hex[:8]}", "channel": "web", "customer": customer,
                "lines": [{"sku": sku, "qty": 1}], "shipping": {"partial_allowed": True}}
        assert httpx.post(f"{stack.base_url('orders')}/v1/orders", json=body).status_code == 201
        seen = [json.loads(next(lines))["event_type"] for _ in range(2)]
    assert set(seen) <= {"OrderPlaced", "StockShort", "BackorderBooked", "StockReserved"} and "OrderPlaced" in seen


@contextmanager
def tailing(args: list[str], env: dict[str, str], timeout: float = 30.0) -> Iterator[Iterator[str]]:
    """`fulfil tail ARGS` as a process, once it says it is following (so nothing published after is
    missed); yields an iterator over its output lines (with a deadline)."""
    command = [sys.executable, "-m", "services.ops.cli", "tail", *args]
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + timeout
    assert process.stderr is not None
    announced = process.stderr.readline()
    assert announced.startswith("following "), announced

    def lines() -> Iterator[str]:
        assert process.stdout is not None
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            if line:
                yield line
            elif process.poll() is not None:
                raise AssertionError(f"fulfil tail exited with {process.returncode}")
        raise AssertionError("fulfil tail showed nothing in time")

    try:
        yield lines()
    finally:
        process.terminate()
        process.wait(10)


async def test_lag_shows_a_stopped_consumer_behind_and_zero_after_it_resumes(stack, orders_api, inventory_api, fulfil) -> None:
    notifier = stack.services["notifier"]
    await notifier.stop()
    try:
        sku = new_sku("LAG")
        await set_policy(inventory_api, sku)
        await place_order(orders_api, new_customer(), [(sku, 1)])

        async def notifier_behind() -> bool:
            code, out = await fulfil("lag", "--json")
            assert code == 0, out
            report = json.loads(out)
            others_done = all(total == 0 for group, total in report["groups"].items() if group != "notifier")
            return others_done and report["groups"]["notifier"] > 0

        await eventually(notifier_behind, "only the stopped notifier lags")
        code, out = await fulfil("lag", "--json")
        lagging = [p for p in json.loads(out)["partitions"] if p["lag"]]
        assert {p["group"] for p in lagging} == {"notifier"}
        assert all(p["highwater"] - p["committed"] == p["lag"] and p["oldest_age_s"] is not None for p in lagging)
        assert {o["service"] for o in json.loads(out)["outboxes"]} == {"orders", "inventory", "allocator", "notifier"}
        code, text = await fulfil("lag")
        assert code == 0 and "notifier" in text
    finally:
        stack.start_service("notifier", notifier.port)
        await stack.wait_ready()

    async def caught_up() -> bool:
        code, out = await fulfil("lag", "--json")
        return code == 0 and json.loads(out)["total_lag"] == 0

    await eventually(caught_up, "no lag once the notifier is back")


async def test_a_dead_letter_replayed_after_its_cause_is_fixed_is_applied_once(
    stack, inventory_api, producer: AIOKafkaProducer, fulfil
) -> None:
    sku = new_sku("DLQ")
    receipt = GoodsReceived(receipt_id=f"RCV-{uuid4().hex[:8]}", warehouse="DC1", lines=(ReceivedLine(sku=sku, qty=4),))
    envelope = await publish(producer, stack.settings, receipt, producer_name="warehouse")  # a SKU inventory does not know
    assert envelope is not None
    event_id = str(envelope.event_id)

    async def parked() -> bool:
        code, out = await fulfil("dlq", "list", "--topic", "receipts", "--json")
        return code == 0 and any(letter["event_id"] == event_id for letter in json.loads(out))

    await eventually(parked, "inventory parks the receipt for an unknown SKU")
    code, out = await fulfil("dlq", "show", "--id", event_id)
    [letter] = [letter for letter in json.loads(out) if letter["consumer"] == "inventory"]
    assert sku in letter["reason"] and letter["source"].startswith("receipts[")

    await set_policy(inventory_api, sku)  # the cause, fixed
    for _ in range(2):  # a second replay must change nothing
        code, out = await fulfil("dlq", "replay", "--id", event_id, "--json")
        assert code == 0, out
        assert [r["event_id"] for r in json.loads(out)] == [event_id]
        await stack.wait_quiescent()
        stock = (await inventory_api.get(f"/v1/stock/{sku}")).json()
        assert stock["received"] == 4, stock

    code, _ = await fulfil("dlq", "replay")  # neither --id nor --all: a usage error, nothing sent
    assert code == 2
