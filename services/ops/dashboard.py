"""The live ops dashboard: a fifth small process (`make run` starts it) serving one page. It shows
the backorder book per SKU (promised dates against purchase orders), the event flow as it happens
(server-sent events from a group-less reader), consumer lag and outbox backlog over the last
minutes, dead letters and notifications. It owns no data: it reads the allocator's API, the
broker and the notifier's database, and samples lag in the background so the chart has a past."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import defaultdict, deque
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import HTMLResponse, JSONResponse
from sse_starlette.sse import EventSourceResponse

from services.ops.beliefs import notification_summary
from shared.events import Stream
from shared.ops.dlq import DeadLetter, dead_letter_topics
from shared.ops.lag import LagMonitor
from shared.ops.reader import TopicReader, reading
from shared.ops.records import StreamRecord
from shared.service import configure_logging
from shared.settings import Settings, asyncpg_dsn, get_settings

log = logging.getLogger("dashboard")
PAGE = Path(__file__).with_name("dashboard.html")
LAG_SAMPLE_S = 5.0
LAG_HISTORY = 120  # samples: ten minutes at one per five seconds
DEAD_LETTERS_SHOWN = 50


def book_by_sku(stats: Sequence[Mapping[str, Any]], backorders: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Per SKU with lines waiting: its statistics, the units waiting per promised date (None: no
    date yet) and its open purchase orders, which the page draws against each other."""
    waiting: dict[str, dict[str | None, int]] = defaultdict(lambda: defaultdict(int))
    for item in backorders.get("items", ()):
        waiting[item["sku"]][item["promised_date"]] += item["qty_waiting"]
    supply: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for line in backorders.get("supply", ()):
        supply[line["sku"]].append({"purchase_order_id": line["purchase_order_id"], "qty": line["qty_open"],
                                    "expected_at": line["expected_at"]})
    skus = []
    for row in stats:
        if not row["lines_waiting"]:
            continue
        by_date = waiting.get(row["sku"], {})
        dated = sorted((day, units) for day, units in by_date.items() if day is not None)
        skus.append({
            **row,
            "waiting_by_date": [{"date": day, "units": units} for day, units in dated],
            "waiting_undated": by_date.get(None, 0),
            "supply": supply.get(row["sku"], []),
        })
    return sorted(skus, key=lambda sku: (-sku["units_waiting"], sku["sku"]))


@dataclass
class DeadLetterWatch:
    """The dead letters so far, read incrementally from where the last look ended."""

    reader: TopicReader
    letters: deque[DeadLetter] = field(default_factory=lambda: deque(maxlen=DEAD_LETTERS_SHOWN))
    total: int = 0
    _positions: dict[Any, int] = field(default_factory=dict)

    async def refresh(self) -> None:
        ends = await self.reader.ends()
        records = await self.reader.history(starts=self._positions) if ends != self._positions else []
        self._positions = ends
        self.total += len(records)
        self.letters.extend(DeadLetter(record) for record in sorted(records, key=lambda r: r.timestamp_ms))


@dataclass
class Dashboard:
    settings: Settings
    lag: LagMonitor
    dead: DeadLetterWatch
    http: httpx.AsyncClient
    notifier_db: asyncpg.Pool | None = None
    lag_history: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=LAG_HISTORY))
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def sample_lag(self) -> None:
        """One point of the lag chart; an unreachable part is a gap, not a crash."""
        try:
            report = await self.lag.report()
        except Exception as error:  # the chart shows the gap; the log says why once per sample
            log.warning("lag sample failed: %r", error)
            return
        self.lag_history.append({
            "t": time.time(), "groups": report.by_group(),
            "outboxes": {o.service: o.unsent for o in report.outboxes},
            "oldest_outbox_s": {o.service: o.oldest_age_s for o in report.outboxes},
        })

    async def overview(self) -> dict[str, Any]:
        async with self._lock:  # two tabs polling do not read twice at once
            return {
                "book": await self._section(self._book),
                "dead_letters": await self._section(self._dead_letters),
                "notifications": await self._section(self._notifications),
                "lag": list(self.lag_history),
            }

    async def _section(self, read: Any) -> dict[str, Any]:
        try:
            return {"ok": True, **await read()}
        except Exception as error:  # one unreachable source must not blank the whole page
            return {"ok": False, "error": f"{type(error).__name__}: {error}"[:300]}

    async def _book(self) -> dict[str, Any]:
        base = f"{self.settings.service_url('allocator')}/v1"
        stats = (await self.http.get(f"{base}/backorders/stats")).raise_for_status().json()["items"]
        backorders = (await self.http.get(f"{base}/backorders", params={"limit": 1000})).raise_for_status().json()
        return {"skus": book_by_sku(stats, backorders), "lines_waiting": backorders["total"]}

    async def _dead_letters(self) -> dict[str, Any]:
        await self.dead.refresh()
        letters = [letter.as_json() | {"time": letter.record.time.isoformat()} for letter in reversed(self.dead.letters)]
        return {"total": self.dead.total, "latest": letters}

    async def _notifications(self) -> dict[str, Any]:
        if self.notifier_db is None:
            self.notifier_db = await asyncpg.create_pool(
                asyncpg_dsn(self.settings.service_database_url("notifier")), min_size=0, max_size=1, timeout=5,
            )
        async with self.notifier_db.acquire() as conn:
            return await notification_summary(conn)

    async def close(self) -> None:
        await self.http.aclose()
        if self.notifier_db is not None:
            await self.notifier_db.close()


async def sample_forever(dashboard: Dashboard) -> None:
    while True:
        await dashboard.sample_lag()
        await asyncio.sleep(LAG_SAMPLE_S)


def record_summary(record: StreamRecord) -> dict[str, Any]:
    """What the live feed shows of one event."""
    return {
        "time": record.time.isoformat(), "address": record.address, "event_type": record.event_type,
        "key": record.key, "essentials": record.essentials(), "order_id": record.order_id, "skus": sorted(record.skus),
    }


def create_dashboard(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    configure_logging(settings.log_level, settings.log_format, "dashboard")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        lag = LagMonitor(settings)
        await lag.start()
        dead_reader = TopicReader(settings.kafka_bootstrap_servers)
        await dead_reader.start(dead_letter_topics(settings))
        dashboard = Dashboard(settings, lag, DeadLetterWatch(dead_reader), httpx.AsyncClient(timeout=5))
        app.state.dashboard = dashboard
        sampler = asyncio.create_task(sample_forever(dashboard), name="lag-sampler")
        log.info("dashboard ready: http://%s:%d/", settings.host, settings.dashboard_port)
        try:
            yield
        finally:
            sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sampler
            await dashboard.close()
            await dead_reader.stop()
            await lag.close()

    app = FastAPI(title="Backorder fulfilment: ops dashboard", lifespan=lifespan, docs_url=None, redoc_url=None)

    @app.get("/", response_class=HTMLResponse)
    async def page() -> HTMLResponse:
        return HTMLResponse(PAGE.read_text(encoding="utf-8"))

    @app.get("/api/overview")
    async def overview(request: Request) -> JSONResponse:
        dashboard: Dashboard = request.app.state.dashboard
        return JSONResponse(jsonable_encoder(await dashboard.overview()))

    @app.get("/events")
    async def events() -> EventSourceResponse:
        """Every event from now on, as server-sent events (`event: record`), one reader per page."""
        topics = [settings.topic(stream) for stream in Stream]

        async def stream() -> AsyncIterator[dict[str, str]]:
            async with reading(settings.kafka_bootstrap_servers, topics) as reader:
                await reader.start_at(beginning=False)
                yield {"event": "ready", "data": "{}"}  # the page knows nothing from now on is missed
                async for record in reader.follow():
                    yield {"event": "record", "data": json.dumps(record_summary(record), default=str)}

        return EventSourceResponse(stream(), ping=10)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz() -> dict[str, str]:
        return {"status": "ready"}

    return app


app = create_dashboard()
