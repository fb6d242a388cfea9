"""An HTTP client that behaves like a patient platform (retries 503s and connection errors with
backoff, reusing the same body so the retry is idempotent) and records each request's final outcome."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

RETRYABLE = {502, 503, 504}


@dataclass
class Exchange:
    """One request as the client finally saw it (after its retries)."""

    kind: str
    service: str
    method: str
    path: str
    body: Any
    status: int  # 0: no answer at all (every attempt failed to connect)
    answer: Any
    started: float
    finished: float
    attempts: int
    statuses_seen: list[int] = field(default_factory=list)

    @property
    def accepted(self) -> bool:
        return 200 <= self.status < 300


@dataclass
class RecordingClient:
    """Calls a stack's services by name and keeps every Exchange in `record`."""

    base_urls: dict[str, str]
    retry_for_s: float = 45.0
    record: list[Exchange] = field(default_factory=list)
    _http: httpx.AsyncClient = field(default_factory=lambda: httpx.AsyncClient(timeout=15))

    async def call(self, kind: str, service: str, method: str, path: str, body: Any = None) -> Exchange:
        started = time.monotonic()
        deadline = started + self.retry_for_s
        attempts, delay, seen = 0, 0.1, []
        status, answer = 0, None
        while True:
            attempts += 1
            retry_after = None
            try:
                response = await self._http.request(method, self.base_urls[service] + path, json=body)
                status, answer = response.status_code, _json(response)
                seen.append(status)
                if status not in RETRYABLE:
                    break
                retry_after = response.headers.get("retry-after")
            except httpx.TransportError as error:
                status, answer = 0, repr(error)
                seen.append(0)
            if time.monotonic() + delay > deadline:
                break
            wait = min(float(retry_after), 2.0) if retry_after and retry_after.isdigit() else delay
            await asyncio.sleep(wait)
            delay = min(delay * 2, 2.0)
        exchange = Exchange(kind, service, method, path, body, status, answer, started, time.monotonic(), attempts, seen)
        self.record.append(exchange)
        return exchange

    async def close(self) -> None:
        await self._http.aclose()


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return response.text
