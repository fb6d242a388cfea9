"""Every Prometheus metric the services expose, and the `/metrics` route that serves them.

Names start with `backorder_`. No metric carries a `service` label: one process runs one service, so
the service is a property of the scrape target, and Prometheus attaches it as the `job` label from
the scrape configuration (deploy/prometheus/); a label the process stamped on every series would
repeat that, and disagree with it whenever a deployment names its jobs differently.

Counters and histograms are moved where things happen (the consumer, the relay, the allocator, the
courier, the HTTP middleware), counted once per batch, not once per event. Gauges that are facts in
a database (the outbox backlog, the backorder book) are read when /metrics is asked for: the route
reads them asynchronously, then renders; a reading that fails (database down or slow) is left out
of that scrape and counted in `backorder_metrics_read_errors_total`, so a scrape never fails."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter as Tally
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from fastapi import APIRouter, Request, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.bus.outbox import OutboxBacklog, outbox_backlog

log = logging.getLogger("metrics")

# `_created` series would double the series of every counter and histogram for a timestamp
# nobody graphs (process-wide switch; this module is the only user of prometheus_client).
disable_created_metrics()

# The services' own registry (not the library's global default): what /metrics shows is exactly
# what is defined here, plus the standard process, platform and garbage-collector metrics.
REGISTRY = CollectorRegistry(auto_describe=True)
ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)
GCCollector(registry=REGISTRY)

# Buckets: seconds of a database transaction or a publish, counts of records in a batch, and the
# days a backordered line may wait for its goods.
FAST_SECONDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_SIZES = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000)
FILL_SECONDS = (1, 10, 60, 300, 900, 3600, 4 * 3600, 12 * 3600, 86400, 2 * 86400, 4 * 86400, 7 * 86400, 14 * 86400, 30 * 86400)

# --- the bus: consumer and relay -------------------------------------------------------------------

EVENTS_CONSUMED = Counter(
    "backorder_events_consumed_total", "Events applied by this service's handlers (inbox repeats included).",
    ["event_type"], registry=REGISTRY,
)
CONSUMER_POLL_RECORDS = Histogram(
    "backorder_consumer_poll_records", "Records one consumer poll handed over (all partitions).",
    buckets=BATCH_SIZES, registry=REGISTRY,
)
CONSUMER_APPLY_SECONDS = Histogram(
    "backorder_consumer_apply_seconds",
    "Seconds one consumer transaction took: inbox claim, the handlers, the outbox write and the commit.",
    buckets=FAST_SECONDS, registry=REGISTRY,
)
CONSUMER_LAG = Gauge(
    "backorder_consumer_lag_records",
    "Records on the broker not yet handed to this consumer: highwater minus position, after the last poll.",
    ["topic", "partition"], registry=REGISTRY,
)
DEAD_LETTERS = Counter(
    "backorder_dead_letters_total", "Messages parked on <topic>.dlq, by source topic and reason category.",
    ["topic", "reason"], registry=REGISTRY,
)
EVENTS_PUBLISHED = Counter(
    "backorder_events_published_total", "Outbox events the broker acknowledged.", ["event_type"], registry=REGISTRY,
)
RELAY_BATCH_EVENTS = Histogram(
    "backorder_relay_batch_events", "Outbox rows one relay batch published.", buckets=BATCH_SIZES, registry=REGISTRY,
)
RELAY_PUBLISH_SECONDS = Histogram(
    "backorder_relay_publish_seconds", "Seconds from claiming a batch of outbox rows to marking them sent.",
    buckets=FAST_SECONDS, registry=REGISTRY,
)

# --- the business ---------------------------------------------------------------------------------

TIME_TO_FILL = Histogram(
    "backorder_time_to_fill_seconds", "Seconds from a line's booking into the backorder book to its full allocation.",
    buckets=FILL_SECONDS, registry=REGISTRY,
)
NOTIFICATIONS = Counter(
    "backorder_notifications_total",
    "Delivery attempts recorded, by channel and outcome: sent, retried (will be tried again) or failed (given up).",
    ["channel", "outcome"], registry=REGISTRY,
)

# --- HTTP -----------------------------------------------------------------------------------------

HTTP_REQUESTS = Counter(
    "backorder_http_requests_total", "HTTP requests answered, by method, route template and status.",
    ["method", "route", "status"], registry=REGISTRY,
)
HTTP_SECONDS = Histogram(
    "backorder_http_request_seconds", "Seconds from a request's arrival to the end of its response.",
    ["method", "route"], buckets=FAST_SECONDS, registry=REGISTRY,
)
UNROUTED = "unrouted"  # answered before or without a route: 404, a refused body, a draining 503

# --- read at scrape time --------------------------------------------------------------------------

READ_ERRORS = Counter(
    "backorder_metrics_read_errors_total", "Scrape-time readings left out because the database did not answer.",
    ["reading"], registry=REGISTRY,
)
READ_TIMEOUT_S = 2.0  # well inside Prometheus's default scrape timeout (10 s)
# A catalogue can have many SKUs waiting; one series each would be unbounded. The SKUs waiting
# longest get their own series, the rest are summed into one.
BOOK_SKUS_SHOWN = 200
OTHER_SKUS = "(other)"


def count_by_type(counter: Counter, event_types: Iterable[str]) -> None:
    """One increment per event type of a batch, not one per event."""
    for event_type, n in Tally(event_types).items():
        counter.labels(event_type).inc(n)


@dataclass(frozen=True)
class SkuBook:
    """One SKU's part of the backorder book (or the sum of the SKUs beyond BOOK_SKUS_SHOWN)."""

    sku: str
    lines_waiting: int
    units_waiting: int
    oldest_age_s: float  # since the oldest waiting line was ordered


BookReader = Callable[[AsyncSession], Awaitable[Sequence[SkuBook]]]


class DatabaseReadings:
    """The gauges read from the database for the scrape in progress: set by the route just before
    rendering, None when the reading failed (then the family is left out of that scrape)."""

    def __init__(self) -> None:
        self.outbox: OutboxBacklog | None = None
        self.book: Sequence[SkuBook] | None = None

    def describe(self) -> Iterable[Metric]:
        return self._families(OutboxBacklog(0, 0.0), [])

    def collect(self) -> Iterable[Metric]:
        if self.outbox is not None:
            yield from self._families(self.outbox, None)
        if self.book is not None:
            yield from self._families(None, self.book)

    @staticmethod
    def _families(outbox: OutboxBacklog | None, book: Sequence[SkuBook] | None) -> list[Metric]:
        families: list[Metric] = []
        if outbox is not None:
            families.append(GaugeMetricFamily(
                "backorder_outbox_unsent_events", "Events committed to the outbox and not yet published.", outbox.unsent))
            families.append(GaugeMetricFamily(
                "backorder_outbox_oldest_age_seconds", "Age of the oldest unpublished outbox event (0 when none).",
                outbox.oldest_age_s))
        if book is not None:
            lines = GaugeMetricFamily(
                "backorder_book_lines_waiting", "Order lines waiting in the backorder book.", labels=["sku"])
            units = GaugeMetricFamily("backorder_book_units_waiting", "Units waiting in the backorder book.", labels=["sku"])
            oldest = GaugeMetricFamily(
                "backorder_book_oldest_age_seconds", "Seconds since the oldest waiting line was ordered.", labels=["sku"])
            for entry in book:
                lines.add_metric([entry.sku], entry.lines_waiting)
                units.add_metric([entry.sku], entry.units_waiting)
                oldest.add_metric([entry.sku], entry.oldest_age_s)
            families += [lines, units, oldest]
        return families


READINGS = DatabaseReadings()
REGISTRY.register(READINGS)


T = TypeVar("T")


async def _read(name: str, sessions: async_sessionmaker[AsyncSession], read: Callable[[AsyncSession], Awaitable[T]]) -> T | None:
    """One scrape-time reading, bounded in time; None (and counted) when the database fails it."""
    try:
        async with asyncio.timeout(READ_TIMEOUT_S), sessions() as session:
            return await read(session)
    except Exception as error:
        READ_ERRORS.labels(name).inc()
        log.debug("metrics: reading %s failed (%r); left out of this scrape", name, error)
        return None


def metrics_router(backorder_book: BookReader | None = None) -> APIRouter:
    """GET /metrics in the Prometheus text format; `backorder_book`: how the service that keeps the
    book reads it (one query), None for the others."""
    router = APIRouter()

    @router.get("/metrics", include_in_schema=False)
    async def metrics(request: Request) -> Response:
        context: Any = getattr(request.app.state, "context", None)
        if context is not None:
            READINGS.outbox = await _read("outbox", context.sessions, outbox_backlog)
            if backorder_book is not None:
                READINGS.book = await _read("backorder_book", context.sessions, backorder_book)
        # No await from here on: what was just read is what this scrape renders.
        return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)

    return router


def series_by_family() -> dict[str, frozenset[str]]:
    """Every series name /metrics may carry, per metric family (counters as `_total`, histograms as
    `_bucket`, `_sum`, `_count`): what dashboards and alert rules may refer to."""
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "summary": ("", "_sum", "_count"),
                "info": ("_info",)}
    return {
        family.name: frozenset(family.name + suffix for suffix in suffixes.get(family.type, ("",)))
        for family in [*REGISTRY.collect(), *READINGS.describe()]
    }


# --- the consumer's lag ---------------------------------------------------------------------------


class PartitionLag:
    """Lag per assigned partition from what the consumer already holds: the highwater the last fetch
    response reported and the offset after the last record handed over, so a scrape costs no broker
    round trip. A partition nothing was handed over from since its assignment counts from its
    highwater (caught up): records it has waiting come with the next polls and correct it."""

    def __init__(self) -> None:
        self._next: dict[TopicPartition, int] = {}
        self._gauges: dict[TopicPartition, Any] = {}
        self._shown: dict[TopicPartition, int] = {}  # a gauge's set() takes a lock: only on change

    def update(self, kafka: AIOKafkaConsumer, batch: Mapping[TopicPartition, Sequence[ConsumerRecord[bytes, bytes]]]) -> None:
        for tp, records in batch.items():
            if records:
                self._next[tp] = records[-1].offset + 1
        assigned = kafka.assignment()
        for tp in assigned:
            highwater = kafka.highwater(tp)
            if highwater is None:  # no fetch response yet
                continue
            lag = max(highwater - self._next.get(tp, highwater), 0)
            if self._shown.get(tp) != lag:
                gauge = self._gauges.get(tp)
                if gauge is None:
                    gauge = self._gauges[tp] = CONSUMER_LAG.labels(tp.topic, str(tp.partition))
                gauge.set(lag)
                self._shown[tp] = lag
        for tp in [tp for tp in self._gauges if tp not in assigned]:
            self._forget(tp)

    def forget(self) -> None:
        """The consumer stopped: it knows no lag any more."""
        for tp in list(self._gauges):
            self._forget(tp)

    def _forget(self, tp: TopicPartition) -> None:
        del self._gauges[tp]
        self._next.pop(tp, None)
        self._shown.pop(tp, None)
        with contextlib.suppress(KeyError):
            CONSUMER_LAG.remove(tp.topic, str(tp.partition))


# --- HTTP -----------------------------------------------------------------------------------------


class HttpMetricsMiddleware:
    """Counts and times every HTTP request by route template (`/v1/orders/{order_id}`, read from the
    route the router matched), never by raw path, so the series stay bounded. Plain ASGI: Starlette's
    BaseHTTPMiddleware costs a task and a memory channel per request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        # The series of each (method, route, status): labels() takes a lock and hashes the values on
        # every call; a dict lookup halves the cost per request. Bounded by the routes.
        self._series: dict[tuple[str, str, str], tuple[Any, Any]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the server answers when the app raises before responding

        async def watched_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, watched_send)
        finally:
            key = (scope["method"], getattr(scope.get("route"), "path", None) or UNROUTED, str(status))
            series = self._series.get(key)
            if series is None:
                series = self._series[key] = (HTTP_REQUESTS.labels(*key), HTTP_SECONDS.labels(*key[:2]))
            series[0].inc()
            series[1].observe(time.perf_counter() - started)
