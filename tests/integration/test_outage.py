"""A database that cannot be reached: requests get 503 + Retry-After + a problem body, never a 500
or a traceback, the consumer retries without a warning per retry, and each outage is logged once
when it starts and once when it ends. The app and the consumer run in-process against a port where
nothing listens (the shared test PostgreSQL keeps serving the other tests); a forwarder to the real
server on that port then ends the outage."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import socket
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from urllib.parse import urlsplit
from uuid import uuid4

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaProducer
from e2e.kit import order_body
from sqlalchemy import text
from support import bus_database, eventually, publish

from services.notifier.app import SPEC as NOTIFIER_SPEC
from services.orders.app import SPEC
from shared.bus.consumer import EventConsumer
from shared.bus.handlers import Handlers, each
from shared.bus.outbox import UnitOfWork
from shared.db import create_engine, session_factory
from shared.devstack.embedded import ensure_topics
from shared.events import Customer, OrderedLine, OrderPlaced
from shared.service import create_app
from shared.settings import asyncpg_dsn


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()


@contextlib.asynccontextmanager
async def forwarder(port: int, target_port: int) -> AsyncIterator[None]:
    """The database "comes back": a TCP forwarder on the dead port to the real server."""

    async def connect(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        server_reader, server_writer = await asyncio.open_connection("127.0.0.1", target_port)
        await asyncio.gather(_pipe(client_reader, server_writer), _pipe(server_reader, client_writer))

    server = await asyncio.start_server(connect, "127.0.0.1", port)
    try:
        yield
    finally:
        server.close()


def outage_lines(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "service" and text in r.getMessage()]


async def _recovered(caplog: pytest.LogCaptureFixture) -> list[str]:
    return outage_lines(caplog, "reachable again")


async def test_an_unreachable_database_gets_503_and_one_log_line_per_outage(stack, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    dead_port = free_port()
    settings = stack.settings.model_copy(
        update={"database_url": f"postgresql://postgres@127.0.0.1:{dead_port}/postgres", "database_retry_after_s": 3}
    )
    # No consumer: it would join the real orders service's group. The relay stays, failing to connect.
    app = create_app(dataclasses.replace(SPEC, handlers=None), settings)
    async with app.router.lifespan_context(app), httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://orders", timeout=30
    ) as client:
        refused = [await client.post("/v1/orders", json=order_body([("SKU-OUTAGE", 1)])) for _ in range(4)]
        refused.append(await client.get(f"/v1/orders/{uuid4()}"))

        for response in refused:
            assert response.status_code == 503, response.text
            assert response.headers["retry-after"] == "3"
            assert response.headers["content-type"] == "application/problem+json"
            body = response.json()
            assert (body["title"], body["status"]) == ("Database unavailable", 503)
            assert "retry" in body["detail"]
        started = outage_lines(caplog, "database unreachable")
        assert len(started) == 1, started
        assert "Error" in started[0] and "requests get 503" in started[0], started
        assert not [r for r in caplog.records if r.name == "service" and r.exc_info], "a traceback was logged"
        assert not outage_lines(caplog, "unhandled error")

        real_port = urlsplit(stack.settings.database_url).port
        async with forwarder(dead_port, int(real_port or 5432)):
            ended = await eventually(lambda: _recovered(caplog), timeout=15)
            assert ended and "(5 requests refused during the outage)" in ended[0], ended
            assert (await client.get(f"/v1/orders/{uuid4()}")).status_code == 404  # the database answers again
    assert len(outage_lines(caplog, "database unreachable")) == 1


async def test_the_notifier_answers_503_and_its_scheduler_and_courier_ride_out_an_unreachable_database(
    stack, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    dead_port = free_port()
    settings = stack.settings.model_copy(update={"database_url": f"postgresql://postgres@127.0.0.1:{dead_port}/postgres"})
    # No consumer (it would join the real notifier's group); the scheduler and the courier run.
    app = create_app(dataclasses.replace(NOTIFIER_SPEC, handlers=None), settings)
    async with app.router.lifespan_context(app), httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://notifier", timeout=30
    ) as client:
        refused = [
            await client.put("/v1/channels/shop-outage", json={"send_email": False}),
            await client.put("/v1/customers/c-outage/preferences", json={"good_news": False}),
            await client.get("/v1/notifications"),
            await client.post(f"/v1/notifications/{uuid4()}/resend"),
        ]
        for response in refused:
            assert response.status_code == 503, response.text
            assert response.headers["content-type"] == "application/problem+json"
        await asyncio.sleep(1.5)  # about fifteen scheduler and courier rounds against the dead database
        workers = app.state.context.workers
        assert all(worker.database.failures > 3 for worker in workers), "a loop stopped trying"
    for loop in ("notifier scheduler", "notifier courier"):
        told = [r.getMessage() for r in caplog.records if r.getMessage().startswith(f"{loop}: database unreachable")]
        assert len(told) == 1, told  # once per outage, not once per round
    assert not [r for r in caplog.records if r.name.startswith("notifier.") and r.exc_info], "a traceback was logged"


DATABASE = "backorder_outagetest"


async def record_effect(event: OrderPlaced, uow: UnitOfWork) -> None:
    await uow.session.execute(text("INSERT INTO effects (order_id) VALUES (:o)"), {"o": event.order_id})


async def _effects(url: str, order_id: object) -> int:
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        return int(await conn.fetchval("SELECT count(*) FROM effects WHERE order_id = $1", order_id))
    finally:
        await conn.close()


def consumer_lines(caplog: pytest.LogCaptureFixture, name: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "bus.consumer" and name in r.getMessage()]


async def test_the_consumer_logs_an_outage_once_and_applies_the_event_after_it(
    stack, producer: AIOKafkaProducer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    settings = stack.settings
    real_url = await bus_database(settings, DATABASE)
    conn = await asyncpg.connect(asyncpg_dsn(real_url))
    await conn.execute("CREATE TABLE IF NOT EXISTS effects (order_id uuid)")
    await conn.close()
    topic = f"outage-{uuid4().hex[:8]}"
    await ensure_topics(settings.kafka_bootstrap_servers, [topic, f"{topic}.dlq"], partitions=1)
    settings = settings.model_copy(update={"topic_orders": topic, "handler_retry_backoff_s": 0.05})
    event = OrderPlaced(
        order_id=uuid4(), external_id="x", channel="web", customer=Customer(id="c", email="c@example.com"),
        partial_allowed=True, placed_at=datetime.now(UTC), lines=(OrderedLine(line_no=1, sku="S", qty=1),),
    )
    await publish(producer, settings, event)

    dead_port = free_port()
    real_port = int(urlsplit(real_url).port or 5432)
    engine = create_engine(real_url.replace(f":{real_port}/", f":{dead_port}/"), 2)
    name = f"outage-{uuid4().hex[:6]}"
    handlers = Handlers.by_class({OrderPlaced: each(record_effect)})
    consumer = EventConsumer(name, [topic], handlers, session_factory(engine), producer, settings)
    task = asyncio.create_task(consumer.supervise())
    try:
        assert await eventually(lambda: _logged(caplog, f"{name}: database unreachable"), timeout=30)
        await asyncio.sleep(2)  # several retries (50 ms backoff, doubling) inside the outage
        async with forwarder(dead_port, real_port):
            assert await eventually(lambda: _effects(real_url, event.order_id), timeout=30)
        started = consumer_lines(caplog, "database unreachable")
        ended = consumer_lines(caplog, "reachable again")
        assert len(started) == 1 and len(ended) == 1, [r.getMessage() for r in caplog.records if r.name == "bus.consumer"]
        assert "retries during the outage" in ended[0].getMessage()
        per_retry = [r for r in caplog.records if r.name == "bus.consumer" and str(r.msg).startswith("%s: retrying")]
        assert not per_retry, "a warning per retry"
        assert consumer.dead_lettered == 0 and consumer.restarts == 0
    finally:
        consumer.stop()
        await asyncio.wait_for(task, 15)
        await engine.dispose()


async def _logged(caplog: pytest.LogCaptureFixture, text: str) -> bool:
    return any(text in r.getMessage() for r in caplog.records)
