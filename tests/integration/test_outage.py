"""A database that cannot be reached: requests get 503 + Retry-After + a problem body, never a 500
or a traceback, and the outage is logged once when it starts and once when it ends. Runs the
orders app in-process against a port where nothing listens (the shared test PostgreSQL keeps
serving the other tests), then puts a forwarder to the real server on that port to end the outage."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import socket
from collections.abc import AsyncIterator
from urllib.parse import urlsplit
from uuid import uuid4

import httpx
import pytest
from e2e.kit import order_body
from support import eventually

from services.orders.app import SPEC
from shared.service import create_app


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
    app = create_app(dataclasses.replace(SPEC, handlers={}, consumes=()), settings)
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
