"""The flash sale's demand and the load that carries it: skewed order bodies over a handful of SKUs,
and a lean keep-alive HTTP/1.1 client that posts them from N connections for a time or a count.

The client is a few dozen lines over asyncio streams rather than httpx so that, on a 2-core machine,
the load generator takes as little as possible of the cores it shares with what it measures: with
32 requests in flight it used 0.13 ms of CPU per request, httpx's pooled AsyncClient about 3 ms.
Both the system and the anchor are driven by it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

# Weights 1/rank^s over 20 SKUs: s = 0.8 gives the top SKU about a fifth of the lines once each
# order's SKUs are drawn distinct (its raw weight is 21%).
ZIPF_EXPONENT = 0.8
QTY_WEIGHTS = ((1, 70), (2, 20), (3, 10))  # units per line: mostly one, as in a sale
LINE_COUNTS = (1, 2, 3)


@dataclass(frozen=True)
class Demand:
    """Order i of a run is a pure function of (seed, i): the stock can be planned from the same
    orders the load will post."""

    tag: str
    skus: tuple[str, ...]
    seed: int
    ship_complete_every: int = 3  # every third order may not ship partially
    vip_every: int = 10

    @property
    def weights(self) -> list[float]:
        return [1 / rank**ZIPF_EXPONENT for rank in range(1, len(self.skus) + 1)]

    def lines(self, i: int) -> list[tuple[str, int]]:
        rng = random.Random(self.seed * 1_000_003 + i)
        wanted = min(rng.choice(LINE_COUNTS), len(self.skus))
        chosen: list[str] = []
        weights = self.weights
        while len(chosen) < wanted:
            sku = rng.choices(self.skus, weights)[0]
            if sku not in chosen:
                chosen.append(sku)
        quantities, qty_weights = zip(*QTY_WEIGHTS, strict=True)
        return [(sku, rng.choices(quantities, qty_weights)[0]) for sku in chosen]

    def body(self, i: int) -> dict[str, Any]:
        """An `OrderCreate` body (the orders API's, README)."""
        customer = f"flash-{self.tag}-{i}"
        return {
            "external_id": f"FS-{self.tag}-{i}",
            "channel": "flash-sale",
            "customer": {"id": customer, "email": f"{customer}@example.com", "locale": "en-GB",
                         "tier": "vip" if i % self.vip_every == 0 else "standard"},
            "lines": [{"sku": sku, "qty": qty} for sku, qty in self.lines(i)],
            "shipping": {"partial_allowed": i % self.ship_complete_every != 0},
        }

    def encoded(self, i: int) -> bytes:
        return json.dumps(self.body(i), separators=(",", ":")).encode()

    def units(self, count: int, start: int = 0) -> Counter[str]:
        """Units ordered per SKU by orders start .. start+count-1."""
        total: Counter[str] = Counter()
        for i in range(start, start + count):
            for sku, qty in self.lines(i):
                total[sku] += qty
        return total


def plan_stock(demand: Counter[str], share: float) -> dict[str, int]:
    """Stock on hand per SKU: `share` of its expected demand, at least one unit."""
    return {sku: max(1, round(units * share)) for sku, units in demand.items()}


class HttpConnection:
    """One keep-alive HTTP/1.1 connection; requests on it go one at a time."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        if self._writer is None or self._reader is None:
            self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        reader, writer = self._reader, self._writer
        writer.write(
            f"POST {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n".encode() + body
        )
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            headers = head.lower()
            at = headers.find(b"\r\ncontent-length:")
            if at >= 0:
                content = await reader.readexactly(int(headers[at + 17:headers.find(b"\r\n", at + 2)]))
            elif b"\r\ntransfer-encoding: chunked" in headers:
                content = await _read_chunked(reader)
            else:
                raise ConnectionError("a response with neither Content-Length nor chunked encoding")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as error:
            await self.close()
            raise ConnectionError(f"bad response: {error!r}") from error
        if b"\r\nconnection: close" in headers:
            await self.close()
        return status, content

    async def close(self) -> None:
        writer, self._reader, self._writer = self._writer, None, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    parts = []
    while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
        parts.append(await reader.readexactly(size))
        await reader.readexactly(2)
    while await reader.readuntil(b"\r\n") != b"\r\n":  # trailers
        pass
    return b"".join(parts)


@dataclass
class Load:
    """What one posting window did; times are time.monotonic() seconds."""

    requests: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    latencies_ms: list[float] = field(default_factory=list)  # of the accepted (201) requests
    accepted: list[tuple[int, str]] = field(default_factory=list)  # (order index, id from the 201 body)
    errors: list[str] = field(default_factory=list)  # non-201 answers and connection errors, the first few
    error_count: int = 0
    first_sent: float = 0.0
    last_answered: float = 0.0

    @property
    def window_s(self) -> float:
        return max(self.last_answered - self.first_sent, 0.0)

    @property
    def accepted_per_s(self) -> float:
        return len(self.accepted) / self.window_s if self.window_s > 0 else 0.0


async def post_for(
    host: str,
    port: int,
    path: str,
    body: Callable[[int], bytes],
    connections: int,
    seconds: float | None = None,
    count: int | None = None,
    start: int = 0,
) -> Load:
    """Post body(start), body(start + 1), ... from `connections` connections, each sending its next
    request as soon as the previous one is answered, until `count` requests were sent or `seconds`
    have passed since the first. The 201 bodies must carry the new resource's `id`."""
    if (seconds is None) == (count is None):
        raise ValueError("give seconds or count")
    load = Load()
    next_index = start
    stop = start + count if count is not None else None
    deadline = float("inf")

    async def worker() -> None:
        nonlocal next_index, deadline
        connection = HttpConnection(host, port)
        try:
            while True:
                index = next_index
                if stop is not None and index >= stop:
                    return
                content = body(index)
                sent = time.monotonic()
                if not load.first_sent:
                    load.first_sent = sent
                    if seconds is not None:
                        deadline = sent + seconds
                if sent >= deadline:
                    return
                next_index += 1
                load.requests += 1
                try:
                    status, answer = await connection.post(path, content)
                except (ConnectionError, OSError) as error:
                    load.error_count += 1
                    if len(load.errors) < 5:
                        load.errors.append(f"order {index}: {error!r}")
                    continue
                answered = time.monotonic()
                load.last_answered = max(load.last_answered, answered)
                load.statuses[status] += 1
                if status == 201:
                    load.latencies_ms.append((answered - sent) * 1000)
                    load.accepted.append((index, json.loads(answer)["id"]))
                else:
                    load.error_count += 1
                    if len(load.errors) < 5:
                        load.errors.append(f"order {index}: HTTP {status} {answer[:300].decode(errors='replace')}")
        finally:
            await connection.close()

    await asyncio.gather(*(worker() for _ in range(connections)))
    return load
