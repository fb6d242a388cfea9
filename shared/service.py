"""Wiring every service shares: the FastAPI app and its lifespan (database pool, producer, outbox
relay, consumer), health and readiness, problem-details errors (503 while the database is
unreachable), rate-limited logs and the request-size guard."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, Protocol

from aiokafka import AIOKafkaProducer
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.bus.consumer import EventConsumer
from shared.bus.failures import is_unreachable
from shared.bus.handlers import Handlers
from shared.bus.outbox import UnitOfWork, unit_of_work
from shared.bus.relay import OutboxRelay
from shared.db import create_engine, session_factory
from shared.logs import JsonFormatter, OutageTracker, RepeatFilter, TextFormatter
from shared.metrics import BookReader, HttpMetricsMiddleware, metrics_router
from shared.problems import allowed_methods, document_problems
from shared.settings import DEVELOPMENT_LINK_KEY, SUBSCRIPTIONS, Settings, get_settings

log = logging.getLogger("service")


def configure_logging(level: str, log_format: str = "text", process: str = "devstack") -> None:
    """The process's log handler: JSON lines or text (LOG_FORMAT) naming the process, and
    rate-limited: a lost broker or database makes aiokafka and the bus repeat the same few lines
    thousands of times a minute. Only the handler configured here is changed (records still reach
    every other handler, e.g. a test's log capture). uvicorn's own records go through it too."""
    root = logging.getLogger()
    existing = list(root.handlers)
    logging.basicConfig(level=level)
    formatter = JsonFormatter(process) if log_format == "json" else TextFormatter(process)
    for handler in root.handlers:
        if handler not in existing:
            handler.setFormatter(formatter)
            RepeatFilter().install(handler)
            for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):  # one format per process
                logging.getLogger(name).handlers.clear()
                logging.getLogger(name).propagate = True
            logging.captureWarnings(True)  # a library's warning is a record too, not raw stderr
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("mail.log").setLevel(logging.WARNING)  # aiosmtpd: a line per SMTP command of the dev mail sink


class Worker(Protocol):
    """A service's own background loop (e.g. the notifier's scheduler), run for the app's lifetime."""

    async def run(self) -> None: ...

    def stop(self) -> None: ...


class RoundsWorker:
    """A Worker that does one round every `interval_s`, at once again when a round says there is
    more. A round that cannot reach the database is an outage, told once when it starts and once
    when it ends (nothing is lost: the work waits in the database); anything else is a bug, logged
    with its traceback; the loop goes on either way."""

    def __init__(self, what: str, waiting: str, log: logging.Logger, interval_s: float) -> None:
        self.what, self.waiting, self.log, self.interval_s = what, waiting, log, interval_s
        self.database = OutageTracker(f"{what}: database", log)
        self._stopping = asyncio.Event()

    async def round(self) -> bool:
        """One round's work; True when more is already due (the next round starts at once)."""
        raise NotImplementedError

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        while not self._stopping.is_set():
            more = False
            try:
                more = await self.round()
                self.database.recovered("rounds failed")
            except Exception as error:
                if is_unreachable(error):
                    self.database.failed(error, f"; {self.waiting} until it is back")
                else:
                    self.log.exception("%s: a round failed", self.what)
            if not more:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), self.interval_s)


@dataclass
class ServiceSpec:
    """What makes one service different from another; everything else is shared."""

    name: str
    title: str
    routers: Sequence[APIRouter]
    # What it consumes; the streams it subscribes to follow from the handlers' event classes.
    handlers: Handlers | None = None
    workers: Callable[[ServiceContext], Sequence[Worker]] | None = None
    # The service that keeps the backorder book reads it for /metrics at scrape time.
    backorder_book: BookReader | None = None

    def __post_init__(self) -> None:
        """The deployment's table of who reads what (the relay's watermarks, the devstack's lag)
        must say what the handlers need: a service whose handlers and table disagree does not start."""
        streams = self.handlers.streams if self.handlers else ()
        listed = SUBSCRIPTIONS.get(self.name, ())
        if self.handlers is not None and set(streams) != set(listed):
            raise ValueError(
                f"{self.name}: its handlers read {[str(s) for s in streams]} but shared.settings.SUBSCRIPTIONS "
                f"lists {[str(s) for s in listed]}; make them agree"
            )


@dataclass
class ServiceContext:
    name: str
    settings: Settings
    sessions: async_sessionmaker[AsyncSession]
    producer: AIOKafkaProducer
    relay: OutboxRelay
    consumer: EventConsumer | None
    intake_open: bool = True
    workers: list[Worker] = field(default_factory=list)

    def uow(self) -> AbstractAsyncContextManager[UnitOfWork]:
        """A transaction whose emitted events reach the outbox in the same commit."""
        return unit_of_work(self.sessions, self.name, self.settings)


async def get_context(request: Request) -> ServiceContext:
    """Async on purpose: FastAPI runs a plain `def` dependency in its thread pool, a thread
    hand-off per request (measured: about a tenth of orders' CPU in a flash sale)."""
    context: ServiceContext = request.app.state.context
    return context


Context = Annotated[ServiceContext, Depends(get_context)]


def create_app(spec: ServiceSpec, settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    configure_logging(settings.log_level, settings.log_format, spec.name)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        database_url = settings.service_database_url(spec.name)
        engine = create_engine(database_url, settings.db_pool_size)
        producer = AIOKafkaProducer(
            bootstrap_servers=settings.kafka_bootstrap_servers,
            acks="all",
            linger_ms=5,
            max_batch_size=262_144,  # the relay sends 500-event bursts: fewer, larger produce requests
            max_request_size=settings.kafka_max_request_size,
            client_id=spec.name,
        )
        await producer.start()
        sessions = session_factory(engine)
        relay = OutboxRelay(spec.name, database_url, producer, settings)
        consumer = None
        if spec.handlers:
            topics = [settings.topic(stream) for stream in spec.handlers.streams]
            consumer = EventConsumer(spec.name, topics, spec.handlers, sessions, producer, settings)
        context = ServiceContext(spec.name, settings, sessions, producer, relay, consumer)
        app.state.context = context
        context.workers = workers = list(spec.workers(context)) if spec.workers else []
        tasks = [asyncio.create_task(relay.run(), name=f"{spec.name}-relay")]
        worker_tasks = [
            asyncio.create_task(supervise_worker(worker), name=f"{spec.name}-{type(worker).__name__}") for worker in workers
        ]
        if consumer:
            # Supervised: restarted with backoff if it crashes, so the service never serves HTTP
            # while consuming nothing (readyz reports it down meanwhile).
            tasks.append(asyncio.create_task(consumer.supervise(), name=f"{spec.name}-consumer"))
        # SIGUSR1 closes HTTP intake: the devstack's first step of a drain before a stop.
        asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, lambda: setattr(context, "intake_open", False))
        # Everything loaded so far (modules, the app, clients) lives as long as the process: take it
        # out of the cyclic collector's view, so the full collections of an event burst do not walk
        # it again and again (measured on the drain bench: allocator CPU about -15%).
        gc.freeze()
        database = engine.url.render_as_string(hide_password=True)
        log.info("%s ready: database %s, broker %s", spec.name, database, settings.kafka_bootstrap_servers)
        if settings.link_signing_key == DEVELOPMENT_LINK_KEY:
            log.warning("%s signs customer links with the development key: set LINK_SIGNING_KEY in production", spec.name)
        try:
            yield
        finally:
            # Order matters: stop consuming (its effects commit), then let the relay drain the
            # outbox, then close the producer (which flushes) and the pool.
            if consumer:
                consumer.stop()
            for worker in workers:
                worker.stop()
            if worker_tasks:
                await asyncio.wait(worker_tasks, timeout=15)
            relay.stop()
            database_outage(app).close()
            await asyncio.wait(tasks, timeout=15)
            for task in tasks:
                task.cancel()
            await producer.stop()
            await engine.dispose()
            log.info("%s stopped: %d events published", spec.name, relay.published)

    app = FastAPI(title=spec.title, lifespan=lifespan, version="1.0.0")
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    install_error_handlers(app, settings.database_retry_after_s)
    app.add_middleware(DrainingMiddleware)
    app.add_middleware(HttpMetricsMiddleware)  # added last, so outermost: it sees every answer

    app.include_router(health_router())
    app.include_router(metrics_router(spec.backorder_book))
    for router in spec.routers:
        app.include_router(router)
    return app


async def supervise_worker(worker: Worker) -> None:
    """A worker's loop that crashes is logged and started again (1 s doubling to 30 s), so the
    service never serves HTTP with one of its loops silently gone."""
    delay = 1.0
    while True:
        try:
            await worker.run()
            return
        except Exception:
            log.exception("%s crashed; restarting it in %.0f s", type(worker).__name__, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)


class Readiness(BaseModel):
    status: Literal["ready", "not ready"]
    checks: dict[str, str] = Field(description='per dependency: "ok" or why not')


def health_router() -> APIRouter:
    router = APIRouter(tags=["health"])

    @router.get("/healthz")
    async def healthz() -> dict[str, str]:
        """Alive: the process answers."""
        return {"status": "ok"}

    not_ready: dict[int | str, dict[str, Any]] = {503: {"model": Readiness, "description": "Not ready: `checks` says why"}}

    @router.get("/readyz", response_model=Readiness, responses=not_ready)
    async def readyz(context: Context) -> JSONResponse:
        """Ready: the database answers, the broker is connected, the consumer makes progress."""
        checks: dict[str, str] = {}
        try:
            async with context.sessions() as session:
                await asyncio.wait_for(session.execute(text("SELECT 1")), 2)
            checks["database"] = "ok"
        except Exception as error:
            checks["database"] = f"unavailable: {error.__class__.__name__}"
        try:
            await asyncio.wait_for(context.producer.client.fetch_all_metadata(), 2)
            checks["broker"] = "ok"
        except Exception as error:
            checks["broker"] = f"unavailable: {error.__class__.__name__}"
        if context.consumer is not None:
            checks["consumer"] = context.consumer.progress()
        ready = all(value == "ok" for value in checks.values())
        return JSONResponse({"status": "ready" if ready else "not ready", "checks": checks}, status_code=200 if ready else 503)

    return router


def problem(
    status: int, title: str, detail: str, errors: list[dict[str, str]] | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    """RFC 9457 problem details: what went wrong and, for bad input, which field and why."""
    body: dict[str, Any] = {"type": "about:blank", "title": title, "status": status, "detail": detail}
    if errors is not None:
        body["errors"] = errors
    return JSONResponse(body, status_code=status, media_type="application/problem+json", headers=headers)


def invalid(field: str, reason: str) -> RequestValidationError:
    """A 422 naming the field (dotted: `lines.0.sku`), in the same shape as the framework's own
    validation errors, for rules a request schema cannot check (unknown SKU, a date in the past)."""
    loc = ("body", *(int(part) if part.isdigit() else part for part in field.split(".")))
    return RequestValidationError([{"loc": loc, "msg": reason, "type": "value_error"}])


def _field_error(err: Mapping[str, Any]) -> dict[str, str]:
    """One validation error as field + reason. A body that is not JSON at all is the body's fault,
    at a character position (FastAPI puts the position where a field name would be)."""
    if err.get("type") == "json_invalid":
        position = next((p for p in err.get("loc", ()) if isinstance(p, int)), None)
        why = str((err.get("ctx") or {}).get("error", "")) or "invalid JSON"
        where = f" at character {position}" if position is not None else ""
        return {"field": "body", "reason": f"not valid JSON{where}: {why}"}
    field = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"
    return {"field": field, "reason": str(err.get("msg", ""))}


@dataclass
class DatabaseOutage:
    """The app's view of its database being gone: requests that fail to reach it are refused with
    503 and counted, the outage is logged when it starts and, found by a small probe that runs
    only while the outage is open, when it ends. A probe, not the next request, decides that it
    is over: a request that happens not to touch the database proves nothing."""

    tracker: OutageTracker
    probe_interval_s: float = 1.0
    _probe: asyncio.Task[None] | None = None

    def refused(self, error: BaseException, sessions: async_sessionmaker[AsyncSession] | None) -> None:
        self.tracker.failed(error, "; requests get 503 until it is back")
        if sessions is not None and (self._probe is None or self._probe.done()):
            self._probe = asyncio.create_task(self._watch(sessions), name="database-outage-probe")

    async def _watch(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        while self.tracker.open:
            await asyncio.sleep(self.probe_interval_s)
            try:
                async with sessions() as session:
                    await asyncio.wait_for(session.execute(text("SELECT 1")), 2)
            except Exception:  # still down: the outage was logged when it began
                continue
            self.tracker.recovered("requests refused")

    def close(self) -> None:
        if self._probe is not None:
            self._probe.cancel()


def database_outage(app: FastAPI) -> DatabaseOutage:
    outage: DatabaseOutage = app.state.database_outage
    return outage


# What an unreachable database raises (is_unreachable decides); handled below the framework's
# catch-all, which would re-raise to the server and print a traceback per request.
DATABASE_ERRORS: tuple[type[Exception], ...] = (DBAPIError, PoolTimeoutError, OSError)


def install_error_handlers(app: FastAPI, retry_after_s: int = 2) -> None:
    app.state.database_outage = DatabaseOutage(OutageTracker("database", log))
    document_problems(app)

    async def database_error(request: Request, exc: Exception) -> JSONResponse:
        """503 + Retry-After while the database cannot be reached: the request did nothing and may
        be sent again as it is; told once per outage in the log, not once per request."""
        if not is_unreachable(exc):
            raise exc  # a bug, not an outage: UnexpectedErrorMiddleware answers 500 and logs it once
        context: ServiceContext | None = getattr(request.app.state, "context", None)
        database_outage(request.app).refused(exc, context.sessions if context else None)
        detail = f"The database cannot be reached right now; retry the request in {retry_after_s} s."
        return problem(503, "Database unavailable", detail, headers={"Retry-After": str(retry_after_s)})

    for error_class in DATABASE_ERRORS:
        app.add_exception_handler(error_class, database_error)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [_field_error(err) for err in exc.errors()]
        detail = "; ".join(f"{e['field']}: {e['reason']}" for e in errors[:5])
        return problem(422, "Invalid request", detail, errors)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        titles = {400: "Bad request", 404: "Not found", 405: "Method not allowed", 409: "Conflict", 413: "Request too large"}
        title = titles.get(exc.status_code, "Error")
        headers = {**(exc.headers or {}), "Allow": allowed_methods(request)} if exc.status_code == 405 else exc.headers
        return problem(exc.status_code, title, str(exc.detail), headers=headers)

    # Not an exception handler for Exception: Starlette calls that one and then raises the error
    # again for the server, which logs the same traceback a second time.
    app.add_middleware(UnexpectedErrorMiddleware)


def internal_error() -> JSONResponse:
    return problem(500, "Internal error", "An unexpected error occurred; it has been logged.")


class UnexpectedErrorMiddleware:
    """A bug answers 500 with a problem body and is logged once, with its traceback."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def watched_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, watched_send)
        except Exception as error:
            if started:  # too late for another answer: the server closes the connection
                raise
            log.error("unhandled error on %s %s", scope.get("method"), scope.get("path"), exc_info=error)
            await internal_error()(scope, receive, send)


class DrainingMiddleware:
    """Refuses writes once intake is closed (SIGUSR1, the first step of a drain), with a 503 a
    client retries elsewhere. Plain ASGI: Starlette's BaseHTTPMiddleware streams every response
    through a task and a memory channel (measured: about a tenth of orders' CPU in a flash sale)."""

    WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in self.WRITES:
            context: ServiceContext | None = getattr(scope["app"].state, "context", None)
            if context is not None and not context.intake_open:
                response = problem(503, "Service is draining", "The service is stopping; retry against another instance.")
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


class BodyLimitMiddleware:
    """Refuses bodies over the limit before they are buffered, declared or chunked alike."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._too_large(scope, receive, send)
            return
        seen = 0

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise BodyTooLarge
            return message

        try:
            await self.app(scope, limited_receive, send)
        except BodyTooLarge:
            await self._too_large(scope, receive, send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = problem(413, "Request too large", f"The body exceeds {self.max_bytes} bytes.")
        await response(scope, receive, send)


class BodyTooLarge(Exception):
    pass
