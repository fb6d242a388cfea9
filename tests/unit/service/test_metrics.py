"""The metrics plumbing without servers: HTTP requests labelled by route template, scrape-time
readings that are left out (and counted) when the database fails, lag per partition from what the
consumer holds, and dead-letter reasons reduced to a category."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from types import SimpleNamespace
from typing import Any

import httpx
from aiokafka import TopicPartition
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families

from shared import metrics
from shared.bus.consumer import dead_letter_category
from shared.metrics import REGISTRY, HttpMetricsMiddleware, PartitionLag, SkuBook, metrics_router


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_http_requests_are_counted_by_route_template_and_status() -> None:
    app = FastAPI()
    app.add_middleware(HttpMetricsMiddleware)

    @app.get("/v1/things/{thing_id}")
    async def thing(thing_id: int) -> dict[str, int]:
        return {"id": thing_id}

    route = {"method": "GET", "route": "/v1/things/{thing_id}"}
    ok_before = value("backorder_http_requests_total", **route, status="200")
    invalid_before = value("backorder_http_requests_total", **route, status="422")
    unrouted_before = value("backorder_http_requests_total", method="GET", route=metrics.UNROUTED, status="404")
    timed_before = value("backorder_http_request_seconds_count", **route)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
        for thing_id in ("1", "2", "x"):
            await client.get(f"/v1/things/{thing_id}")
        assert (await client.get("/nowhere")).status_code == 404
    assert value("backorder_http_requests_total", **route, status="200") == ok_before + 2
    assert value("backorder_http_requests_total", **route, status="422") == invalid_before + 1
    assert value("backorder_http_requests_total", method="GET", route=metrics.UNROUTED, status="404") == unrouted_before + 1
    assert value("backorder_http_request_seconds_count", **route) == timed_before + 3


class FakeSession:
    async def execute(self, _: object) -> Any:
        return SimpleNamespace(one=lambda: SimpleNamespace(unsent=3, oldest_age_s=1.5))


def sessions_of(session: FakeSession | None) -> Any:
    """A session factory that yields `session`, or fails like an unreachable database."""

    @asynccontextmanager
    async def open_session() -> AsyncIterator[FakeSession]:
        if session is None:
            raise OSError("connection refused")
        yield session

    return open_session


async def scrape(sessions: Any) -> dict[str, list[Any]]:
    async def book(_: object) -> list[SkuBook]:
        return [SkuBook("SKU-1", 2, 5, 60.0)]

    app = FastAPI()
    app.include_router(metrics_router(book))
    app.state.context = SimpleNamespace(sessions=sessions)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
        response = await client.get("/metrics")
    assert response.status_code == 200
    return {family.name: family.samples for family in text_string_to_metric_families(response.text)}


async def test_readings_from_the_database_are_rendered_at_scrape_time() -> None:
    families = await scrape(sessions_of(FakeSession()))
    assert [s.value for s in families["backorder_outbox_unsent_events"]] == [3]
    assert [s.value for s in families["backorder_outbox_oldest_age_seconds"]] == [1.5]
    assert [(s.labels, s.value) for s in families["backorder_book_units_waiting"]] == [({"sku": "SKU-1"}, 5)]


async def test_a_scrape_with_the_database_down_leaves_its_readings_out_and_counts_them() -> None:
    errors_before = value("backorder_metrics_read_errors_total", reading="outbox")
    book_errors_before = value("backorder_metrics_read_errors_total", reading="backorder_book")
    families = await scrape(sessions_of(None))
    assert "backorder_outbox_unsent_events" not in families
    assert "backorder_book_lines_waiting" not in families
    assert "backorder_events_consumed" in families  # the rest of the scrape is there
    assert value("backorder_metrics_read_errors_total", reading="outbox") == errors_before + 1
    assert value("backorder_metrics_read_errors_total", reading="backorder_book") == book_errors_before + 1


class FakeKafka:
    def __init__(self, highwaters: dict[TopicPartition, int | None]) -> None:
        self.highwaters = highwaters

    def assignment(self) -> set[TopicPartition]:
        return set(self.highwaters)

    def highwater(self, tp: TopicPartition) -> int | None:
        return self.highwaters[tp]


def record(offset: int) -> Any:
    return SimpleNamespace(offset=offset)


def test_lag_is_highwater_minus_the_offset_after_the_last_record_handed_over() -> None:
    busy, idle, unfetched = (TopicPartition("lag-test", p) for p in (0, 1, 2))
    kafka = FakeKafka({busy: 100, idle: 40, unfetched: None})
    lag = PartitionLag()
    lag.update(kafka, {busy: [record(10), record(11)]})  # type: ignore[arg-type]
    assert value("backorder_consumer_lag_records", topic="lag-test", partition="0") == 88
    assert value("backorder_consumer_lag_records", topic="lag-test", partition="1") == 0  # nothing handed over: caught up
    assert REGISTRY.get_sample_value("backorder_consumer_lag_records", {"topic": "lag-test", "partition": "2"}) is None
    del kafka.highwaters[busy]  # revoked
    lag.update(kafka, {})  # type: ignore[arg-type]
    assert REGISTRY.get_sample_value("backorder_consumer_lag_records", {"topic": "lag-test", "partition": "0"}) is None
    lag.forget()
    assert REGISTRY.get_sample_value("backorder_consumer_lag_records", {"topic": "lag-test", "partition": "1"}) is None


def test_dead_letter_reasons_become_a_few_categories() -> None:
    assert dead_letter_category("unparseable: 1 validation error for Envelope") == "unparseable"
    assert dead_letter_category("rejected: order 42 repeats a line number") == "rejected"
    assert dead_letter_category("failed after 5 attempts: IntegrityError(...)") == "failed"
    assert dead_letter_category("something nobody planned for") == "other"
