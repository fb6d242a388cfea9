"""/metrics of every service of the session stack: it parses with Prometheus's own text parser, and
an order (one line in stock, one backordered) moves what each service counts; a receipt that fills
the backordered line moves the allocator's time to fill and empties its book for the SKU."""

from __future__ import annotations

from collections.abc import Mapping
from uuid import uuid4

import httpx
from e2e.kit import count_stock, new_customer, new_sku, place_order, set_policy
from prometheus_client.parser import text_string_to_metric_families
from support import eventually

from shared.metrics import OTHER_SKUS
from shared.settings import SERVICES

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(client: httpx.AsyncClient) -> Samples:
    response = await client.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum of the series of `name` whose labels include `labels`."""
    wanted = set(labels.items())
    return sum(value for (sample, sample_labels), value in samples.items() if sample == name and wanted <= sample_labels)


def moved(before: Samples, after: Samples, name: str, **labels: str) -> bool:
    return total(after, name, **labels) > total(before, name, **labels)


async def scrape_all(clients: Mapping[str, httpx.AsyncClient]) -> dict[str, Samples]:
    return {service: await scrape(client) for service, client in clients.items()}


async def test_every_service_exposes_metrics_that_move_when_an_order_is_placed(
    stack, orders_api, inventory_api, allocator_api, notifier_api
) -> None:
    clients = {"orders": orders_api, "inventory": inventory_api, "allocator": allocator_api, "notifier": notifier_api}
    assert set(clients) == set(SERVICES)
    in_stock, waiting = new_sku("M1"), new_sku("M2")
    for sku in (in_stock, waiting):
        await set_policy(inventory_api, sku, supplier="ACME")
    await count_stock(inventory_api, in_stock, 5)

    async def on_shelf() -> bool:  # counted units serve the book first: on the shelf once the allocator put them away
        return (await inventory_api.get(f"/v1/availability/{in_stock}")).json()["status"] == "in_stock"

    assert await eventually(on_shelf, timeout=15)
    before = await scrape_all(clients)
    for samples in before.values():  # read at scrape time from each service's database
        assert ("backorder_outbox_unsent_events", frozenset()) in samples
    book_before = total(before["allocator"], "backorder_book_lines_waiting")

    await place_order(orders_api, new_customer(), [(in_stock, 1), (waiting, 2)])

    unmoved: list[str] = []

    async def all_moved() -> dict[str, Samples] | None:
        now = await scrape_all(clients)
        orders, inventory, allocator, notifier = (now[name] for name in ("orders", "inventory", "allocator", "notifier"))
        book = allocator.get(("backorder_book_lines_waiting", frozenset({("sku", waiting)})))
        other_grew = (("backorder_book_lines_waiting", frozenset({("sku", OTHER_SKUS)})) in allocator
                      and total(allocator, "backorder_book_lines_waiting") > book_before)  # more SKUs wait than get a series
        checks = {
            "orders: POST /v1/orders 201": moved(
                before["orders"], orders, "backorder_http_requests_total", method="POST", route="/v1/orders", status="201"),
            "orders: OrderPlaced published": moved(
                before["orders"], orders, "backorder_events_published_total", event_type="OrderPlaced"),
            "inventory: OrderPlaced consumed": moved(
                before["inventory"], inventory, "backorder_events_consumed_total", event_type="OrderPlaced"),
            "inventory: StockReserved published": moved(
                before["inventory"], inventory, "backorder_events_published_total", event_type="StockReserved"),
            "inventory: StockShort published": moved(
                before["inventory"], inventory, "backorder_events_published_total", event_type="StockShort"),
            "allocator: StockShort consumed": moved(
                before["allocator"], allocator, "backorder_events_consumed_total", event_type="StockShort"),
            "allocator: the line in the book": book == 1 or other_grew,
            "notifier: events consumed": moved(before["notifier"], notifier, "backorder_events_consumed_total"),
            "notifier: email sent": moved(
                before["notifier"], notifier, "backorder_notifications_total", channel="email", outcome="sent"),
        }
        unmoved[:] = [check for check, passed in checks.items() if not passed]
        return None if unmoved else now

    after = await eventually(all_moved, timeout=15)
    assert after is not None, f"did not move: {unmoved}"
    for service in SERVICES:
        assert moved(before[service], after[service], "backorder_consumer_apply_seconds_count")
        assert "backorder_consumer_lag_records" in {name for name, _ in after[service]}


async def test_a_receipt_that_fills_a_waiting_line_is_observed_as_time_to_fill(
    stack, orders_api, inventory_api, allocator_api
) -> None:
    sku = new_sku("M3")
    await set_policy(inventory_api, sku, supplier="ACME")
    await place_order(orders_api, new_customer(), [(sku, 1)])

    async def booked() -> bool:
        page = (await allocator_api.get("/v1/backorders", params={"sku": sku})).json()
        return page["total"] == 1

    assert await eventually(booked, timeout=15)
    before = await scrape(allocator_api)
    received = await inventory_api.post("/v1/receipts", json={
        "receipt_id": f"RCV-{uuid4().hex[:8]}", "warehouse": "DC1", "lines": [{"sku": sku, "qty": 1}]})
    assert received.status_code == 201, received.text

    async def filled() -> Samples | None:
        now = await scrape(allocator_api)
        done = moved(before, now, "backorder_time_to_fill_seconds_count") and moved(
            before, now, "backorder_events_consumed_total", event_type="GoodsReceived")
        return now if done else None

    after = await eventually(filled, timeout=15)
    assert after is not None
    assert ("backorder_book_lines_waiting", frozenset({("sku", sku)})) not in after
    assert moved(before, after, "backorder_time_to_fill_seconds_sum")  # booked and filled in two transactions
