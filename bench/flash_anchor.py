"""Anchor A2 of the flash sale: the least an order intake can do. A FastAPI app with one endpoint
that validates the orders API's body (`OrderCreate`, the same model) and inserts one row with
asyncpg into a scratch table, on the same PostgreSQL, served by one uvicorn worker as each service
is; and `AnchorServer`, which prepares its database and runs it as a process of its own.

    FLASH_ANCHOR_DSN=postgresql://... python -m uvicorn bench.flash_anchor:app --port 18690
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO
from urllib.parse import urlsplit, urlunsplit
from uuid import uuid4

import asyncpg
import httpx
from fastapi import FastAPI, Response

from services.orders.schemas import OrderCreate
from shared.settings import asyncpg_dsn, get_settings

DATABASE = "bench_flash_anchor"
TABLE = "anchor_order"
# The orders table's identities, so the anchor's insert keeps what an intake must (a primary key,
# the platform's unique (channel, external_id)) and nothing else.
CREATE_TABLE = f"""
DROP TABLE IF EXISTS {TABLE};
CREATE TABLE {TABLE} (
    id uuid PRIMARY KEY,
    external_id text NOT NULL,
    channel text NOT NULL,
    customer_id text NOT NULL,
    customer_email text NOT NULL,
    customer_locale text NOT NULL,
    customer_tier text NOT NULL,
    partial_allowed boolean NOT NULL,
    lines jsonb NOT NULL,
    placed_at timestamptz NOT NULL,
    UNIQUE (channel, external_id)
)"""
INSERT = (
    f"INSERT INTO {TABLE} (id, external_id, channel, customer_id, customer_email, customer_locale, customer_tier,"
    " partial_allowed, lines, placed_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::jsonb, $10)"
)

pool: asyncpg.Pool | None = None


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    global pool
    size = get_settings().db_pool_size  # the services' pool size
    pool = await asyncpg.create_pool(os.environ["FLASH_ANCHOR_DSN"], min_size=size, max_size=2 * size)
    gc.freeze()  # as the services do once started
    try:
        yield
    finally:
        await pool.close()


app = FastAPI(title="flash sale anchor A2", lifespan=lifespan)


@app.post("/v1/orders", status_code=201)
async def place_order(body: OrderCreate) -> Response:
    assert pool is not None
    order_id = uuid4()
    lines = json.dumps([line.model_dump() for line in body.lines])
    customer = body.customer
    await pool.execute(INSERT, order_id, body.external_id, body.channel, customer.id, customer.email, customer.locale,
                       customer.tier, body.shipping.partial_allowed, lines, datetime.now(UTC))
    return Response(f'{{"id":"{order_id}"}}', status_code=201, media_type="application/json")


@app.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


def database_url(admin_url: str) -> str:
    return asyncpg_dsn(urlunsplit(urlsplit(admin_url)._replace(path=f"/{DATABASE}")))


@dataclass
class AnchorServer:
    """The anchor's uvicorn process, started like a service (same flags, one worker)."""

    admin_url: str
    host: str
    port: int
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    _log: IO[bytes] | None = field(default=None, repr=False)

    async def start(self) -> None:
        admin = await asyncpg.connect(asyncpg_dsn(self.admin_url))
        try:
            if not await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", DATABASE):
                await admin.execute(f'CREATE DATABASE "{DATABASE}"')
        finally:
            await admin.close()
        await self.reset()
        self.process = self._spawn()
        deadline = time.monotonic() + 30
        async with httpx.AsyncClient(timeout=2) as client:
            while True:
                if self.process.poll() is not None:
                    raise RuntimeError(f"the anchor exited with code {self.process.returncode}; see {self.log_path}")
                try:
                    if (await client.get(f"http://{self.host}:{self.port}/healthz")).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise TimeoutError(f"the anchor did not start in 30 s; see {self.log_path}")
                await asyncio.sleep(0.1)

    def _spawn(self) -> subprocess.Popen[bytes]:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")  # noqa: SIM115 (closed in stop)
        repo = Path(__file__).resolve().parents[1]
        command = [sys.executable, "-m", "uvicorn", "bench.flash_anchor:app", "--host", self.host, "--port", str(self.port),
                   "--no-access-log", "--timeout-graceful-shutdown", "10"]
        env = {**os.environ, "FLASH_ANCHOR_DSN": database_url(self.admin_url), "PYTHONPATH": str(repo)}
        return subprocess.Popen(command, cwd=repo, env=env, stdout=self._log, stderr=self._log, start_new_session=True)

    async def reset(self) -> None:
        """An empty table, so the windows before and after the system's insert into the same size."""
        conn = await asyncpg.connect(database_url(self.admin_url))
        try:
            await conn.execute(CREATE_TABLE)
        finally:
            await conn.close()

    async def rows(self) -> int:
        conn = await asyncpg.connect(database_url(self.admin_url))
        try:
            count: int = await conn.fetchval(f"SELECT count(*) FROM {TABLE}")
            return count
        finally:
            await conn.close()

    async def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            deadline = time.monotonic() + 15
            while self.process.poll() is None and time.monotonic() < deadline:  # noqa: ASYNC110 (a process, not an event)
                await asyncio.sleep(0.05)
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()
        if self._log is not None:
            self._log.close()
            self._log = None
