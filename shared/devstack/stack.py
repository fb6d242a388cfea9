"""The development stack: embedded (or configured) servers, databases, topics, migrations and the
services as processes. `make run`, the tests and the benchmarks all start the system through it, so
the tests exercise exactly what users run."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import asyncpg
import httpx
from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from shared.bus.offsets import HighwaterProbe, committed_offsets
from shared.db import migrate
from shared.devstack.embedded import DevstackError, EmbeddedBroker, EmbeddedPostgres, ensure_databases, ensure_topics
from shared.devstack.mailsink import MailSink
from shared.settings import SERVICES, SUBSCRIPTIONS, Settings, asyncpg_dsn

log = logging.getLogger("devstack")
REPO = Path(__file__).resolve().parents[2]

# Supervision (`Devstack.heal`): a service that exits unexpectedly is restarted at once, then after
# 1 s doubling to 30 s while it keeps dying within a minute of its start; after 5 such exits in a row
# the stack gives up. A dead broker gets 5 start attempts, 0.5 s doubling between them.
SERVICE_RESTARTS_IN_A_ROW = 5
SERVICE_STABLE_SECONDS = 60.0
SERVICE_BACKOFF_MAX_SECONDS = 30.0
BROKER_START_ATTEMPTS = 5
# Services stopped for a broker recovery get this long to exit on SIGTERM before SIGKILL: nothing is
# lost by a kill (unsent events wait in the outboxes, applied ones are in the inboxes), and a relay
# draining towards a dead broker would only wait for its timeouts.
RECOVERY_STOP_SECONDS = 3.0
# Processes besides the four services, by name: the ops dashboard (no database, no consumer group).
DASHBOARD = "dashboard"
APPS = {DASHBOARD: "services.ops.dashboard:app"}


@dataclass
class ServiceProcess:
    name: str
    port: int
    process: subprocess.Popen[bytes]
    log_file: IO[bytes] | None = None
    stopped: bool = False
    # What start_service was given, so that supervision restarts the same process.
    extra_env: Mapping[str, str] = field(default_factory=dict)
    started_at: float = field(default_factory=time.monotonic)

    async def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM lets uvicorn close intake and the lifespan drain the relay and consumer."""
        self.stopped = True
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while self.process.poll() is None and time.monotonic() < deadline:  # noqa: ASYNC110 (a process, not an event)
                await asyncio.sleep(0.05)
            if self.process.poll() is None:
                log.warning("%s did not stop in %.0f s; killing it", self.name, timeout)
                self.process.kill()
                self.process.wait()
        if self.log_file:
            self.log_file.close()


@dataclass
class _Restarts:
    """Unexpected exits of one service in a row, and when it may be started again."""

    in_a_row: int = 0
    not_before: float = 0.0
    dead_pid: int | None = None  # the exited process these numbers were counted for


@dataclass
class Devstack:
    """Embedded servers unless DATABASE_URL and KAFKA_BOOTSTRAP_SERVERS name real ones."""

    settings: Settings
    root: Path = field(default_factory=lambda: Path(os.environ.get("DEVSTACK_DIR", REPO / ".devstack")))
    log_to_files: bool = False
    pg_port: int = field(default_factory=lambda: int(os.environ.get("DEVSTACK_PG_PORT", "25432")))
    kafka_port: int = field(default_factory=lambda: int(os.environ.get("DEVSTACK_KAFKA_PORT", "29092")))
    # The embedded servers whatever DATABASE_URL and KAFKA_BOOTSTRAP_SERVERS say: for stacks whose
    # tests kill and restart the servers themselves, which they cannot do to configured ones.
    embedded_only: bool = False
    # A local SMTP sink (mail saved under <root>/mail) unless SMTP_HOST names a server; 0 = any free port.
    smtp_port: int = field(default_factory=lambda: int(os.environ.get("DEVSTACK_SMTP_PORT", "0")))
    mail_sink: MailSink | None = None
    postgres: EmbeddedPostgres | None = None
    broker: EmbeddedBroker | None = None
    services: dict[str, ServiceProcess] = field(default_factory=dict)
    _probe: HighwaterProbe | None = None
    _restarts: dict[str, _Restarts] = field(default_factory=dict)

    @property
    def embedded(self) -> bool:
        return self.embedded_only or not (os.environ.get("DATABASE_URL") and os.environ.get("KAFKA_BOOTSTRAP_SERVERS"))

    async def start(self, services: tuple[str, ...] = SERVICES, dashboard: bool = False) -> None:
        """Servers, then the services; with `dashboard`, the ops dashboard next to them."""
        if not os.environ.get("SMTP_HOST") and self.mail_sink is None:
            self.mail_sink = MailSink(self.root / "mail", self.settings.host, self.smtp_port)
            self.mail_sink.start()
        await self.start_servers()
        await self.prepare(services)
        for name in services:
            self.start_service(name, self.settings.port(name))
        if dashboard:
            self.start_service(DASHBOARD, self.settings.dashboard_port)
        await self.wait_ready()

    async def start_servers(self) -> None:
        if not self.embedded:
            log.info("using PostgreSQL %s and Kafka %s", self.settings.database_url, self.settings.kafka_bootstrap_servers)
            return
        self.root.mkdir(parents=True, exist_ok=True)
        self.postgres = EmbeddedPostgres(self.root / "pgdata", port=self.pg_port)
        self.broker = EmbeddedBroker(port=self.kafka_port, log_path=self.root / "broker.log")
        await asyncio.to_thread(self.postgres.start)
        self.broker.start()
        self.settings = self.settings.model_copy(
            update={"database_url": self.postgres.admin_url(), "kafka_bootstrap_servers": self.broker.bootstrap_servers}
        )
        log.info("embedded PostgreSQL on %s (data in %s)", self.postgres.admin_url(), self.postgres.data_dir)
        log.info("embedded Kafka-compatible broker on %s (memory only)", self.broker.bootstrap_servers)

    async def prepare(self, services: tuple[str, ...] = SERVICES) -> None:
        """Databases, topics (created explicitly: the broker would invent 4-partition ones) and migrations."""
        await ensure_databases(self.settings.admin_database_url(), [self.settings.database_prefix + s for s in services])
        await ensure_topics(self.settings.kafka_bootstrap_servers, self.settings.all_topics(), self.settings.topic_partitions)
        for name in services:
            await asyncio.to_thread(migrate, name, self.settings.service_database_url(name))

    def service_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["DATABASE_URL"] = self.settings.database_url
        env["KAFKA_BOOTSTRAP_SERVERS"] = self.settings.kafka_bootstrap_servers
        # The consumer tuning the stack was made with (a fault stack's shorter session) reaches the services.
        env["KAFKA_SESSION_TIMEOUT_MS"] = str(self.settings.kafka_session_timeout_ms)
        env["KAFKA_HEARTBEAT_INTERVAL_MS"] = str(self.settings.kafka_heartbeat_interval_ms)
        env["PYTHONPATH"] = str(REPO)
        if self.mail_sink is not None:
            env.update(SMTP_HOST=self.mail_sink.host, SMTP_PORT=str(self.mail_sink.port), SMTP_SECURITY="none")
        return env

    def start_service(
        self, name: str, port: int, key: str | None = None, extra_env: Mapping[str, str] | None = None
    ) -> ServiceProcess:
        """One uvicorn process per service; `key` names extra instances (e.g. a second allocator);
        `extra_env` adds variables for this process only (e.g. FAULT_CRASH_AT in the fault tests)."""
        log_file = None
        if self.log_to_files:
            (self.root / "logs").mkdir(parents=True, exist_ok=True)
            log_file = open(self.root / "logs" / f"{key or name}.log", "ab")  # noqa: SIM115 (closed in stop)
        app = APPS.get(name, f"services.{name}.app:app")
        command = [sys.executable, "-m", "uvicorn", app, "--host", self.settings.host, "--port", str(port),
                   "--no-access-log", "--timeout-graceful-shutdown", "10"]
        # A session of its own: Ctrl-C in the terminal reaches only the orchestrator, which drains first.
        env = {**self.service_env(), **(extra_env or {})}
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=log_file, stderr=log_file, start_new_session=True)
        self.services[key or name] = ServiceProcess(name, port, process, log_file, extra_env=dict(extra_env or {}))
        return self.services[key or name]

    def service_names(self) -> set[str]:
        """The services among the processes started (each with its database and consumer group);
        the dashboard is a process, not one of them."""
        return {process.name for process in self.services.values()} & set(SERVICES)

    def base_url(self, service: str) -> str:
        return f"http://{self.settings.host}:{self.services[service].port}"

    def database_url(self, service: str) -> str:
        return asyncpg_dsn(self.settings.service_database_url(service))

    @asynccontextmanager
    async def connect(self, service: str) -> AsyncIterator[asyncpg.Connection]:
        """A connection to one service's own database (tests and benchmarks read state with it)."""
        if service not in SERVICES:
            raise ValueError(f"unknown service {service!r}")
        conn = await asyncpg.connect(self.database_url(service))
        try:
            yield conn
        finally:
            await conn.close()

    async def wait_ready(self, timeout: float = 60.0, keys: Iterable[str] | None = None) -> None:
        """Every service (or those named by `keys`) answers /readyz with 200."""
        deadline = time.monotonic() + timeout
        wanted = set(self.services if keys is None else keys)
        async with httpx.AsyncClient(timeout=2) as client:
            for key, service in list(self.services.items()):
                if key not in wanted:
                    continue
                while not service.stopped:
                    if service.process.poll() is not None:
                        raise RuntimeError(f"{key} exited with code {service.process.returncode} during start-up")
                    try:
                        if (await client.get(f"http://{self.settings.host}:{service.port}/readyz")).status_code == 200:
                            break
                    except httpx.TransportError:
                        pass
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"{key} not ready after {timeout} s")
                    await asyncio.sleep(0.1)

    async def wait_quiescent(self, timeout: float = 60.0) -> None:
        """Wait until every outbox is published and every consumer group has consumed everything,
        twice in a row (lags first: a committed offset implies its effects are committed)."""
        deadline = time.monotonic() + timeout
        clean_rounds = 0
        while clean_rounds < 2:
            busy = await self.outstanding()
            clean_rounds = clean_rounds + 1 if busy == 0 else 0
            if time.monotonic() > deadline:
                raise TimeoutError(f"not quiescent after {timeout} s ({busy} messages/rows outstanding)")
            await asyncio.sleep(0.05 if clean_rounds else 0.1)

    async def outstanding(self) -> int:
        """Messages not consumed yet plus outbox rows not published yet."""
        return await self.consumer_lag() + await self.unsent_outbox_rows()

    async def unsent_outbox_rows(self) -> int:
        total = 0
        for name in self.service_names():
            conn = await asyncpg.connect(self.database_url(name))
            try:
                total += await conn.fetchval("SELECT count(*) FROM outbox WHERE sent_at IS NULL")
            finally:
                await conn.close()
        return total

    async def consumer_lag(self) -> int:
        """Uncommitted messages over all groups, against highwater() seen by a probe fetch (the
        embedded broker's end_offsets is wrong for multi-record batches)."""
        high = await self._highwaters()
        admin = AIOKafkaAdminClient(bootstrap_servers=self.settings.kafka_bootstrap_servers)
        await admin.start()
        try:
            lag = 0
            for group in self.service_names():
                topics = {self.settings.topic(s) for s in SUBSCRIPTIONS[group]}
                committed = await committed_offsets(admin, group, [tp for tp in high if tp.topic in topics])
                lag += sum(max(high[tp] - done, 0) for tp, done in committed.items())
            return lag
        finally:
            await admin.close()

    async def _highwaters(self) -> dict[TopicPartition, int]:
        if self._probe is None:
            self._probe = HighwaterProbe(self.settings.kafka_bootstrap_servers)
        topics = [self.settings.topic(s) for streams in SUBSCRIPTIONS.values() for s in streams]
        return await self._probe.highwaters(await self._probe.partitions(topics))

    async def supervise(self, stopping: asyncio.Event, interval: float = 1.0) -> None:
        """`heal()` every `interval` seconds until `stopping` is set (what `make run` does). Raises
        DevstackError when the broker cannot be restarted or a service keeps dying: the caller
        then stops the stack."""
        while not stopping.is_set():
            await self.heal()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), interval)

    async def heal(self) -> list[str]:
        """Check the broker and every service once and restart what died; returns what was done
        (empty if nothing was needed). A dead embedded broker forgot every topic, group and offset,
        and the running clients cannot be trusted with its successor (EMBEDDED.md): the services
        are stopped, the broker started with a fresh cluster id, the topics created and the
        services started again; their relays then republish what the consumers had not consumed.
        A service that exited on its own is restarted alone, with backoff (see the constants
        above). Restarted processes keep their extra environment except FAULT_CRASH_AT: a crash
        point is injected once, not into every restart. Raises DevstackError when giving up."""
        if self.broker is not None and self.broker.exit_code() is not None:
            return await self._recover_broker(self.broker)
        done: list[str] = []
        for key, service in list(self.services.items()):
            if not service.stopped and service.process.poll() is not None:
                done += await self._restart_exited(key, service)
        return done

    async def _recover_broker(self, broker: EmbeddedBroker) -> list[str]:
        started = time.monotonic()
        lost_cluster = broker.active_cluster_id
        log.error(
            "the embedded broker (cluster %s) exited with code %s: it forgot every topic, group and offset;"
            " stopping the services, restarting the broker, then the services", lost_cluster, broker.exit_code(),
        )
        services = [(key, service) for key, service in self.services.items() if not service.stopped]  # not if stopped on purpose
        await asyncio.gather(*(service.stop(RECOVERY_STOP_SECONDS) for _, service in services))
        broker.stop()
        delay = 0.5
        for attempt in range(1, BROKER_START_ATTEMPTS + 1):
            try:
                await asyncio.to_thread(broker.start)
                await ensure_topics(broker.bootstrap_servers, self.settings.all_topics(), self.settings.topic_partitions)
                break
            except (DevstackError, KafkaError, OSError) as error:
                broker.stop()
                if attempt == BROKER_START_ATTEMPTS:
                    raise DevstackError(
                        f"the embedded broker could not be restarted after {attempt} attempts ({error}); see {broker.log_path}"
                    ) from error
                log.warning("broker restart attempt %d failed (%s); retrying in %.1f s", attempt, error, delay)
                await asyncio.sleep(delay)
                delay *= 2
        await self.close_probe()
        for key, service in services:
            self._restart(key, service)
        try:
            await self.wait_ready()
        except (RuntimeError, TimeoutError) as error:  # a service that dies now is restarted by the next heal()
            log.error("after the broker restart: %s", error)
        took = time.monotonic() - started
        log.warning(
            "recovered from the broker loss in %.1f s: broker cluster %s (was %s), %d topics, %d services restarted;"
            " their relays republish the events the consumers had not consumed",
            took, broker.active_cluster_id, lost_cluster, len(self.settings.all_topics()), len(services),
        )
        return [f"broker restarted as cluster {broker.active_cluster_id} in {took:.1f} s",
                *(f"{key} restarted" for key, _ in services)]

    async def close_probe(self) -> None:
        """Close the quiescence probe (a consumer of every partition fetching every 10 ms, about
        0.15 cores of broker and caller while open); the next wait_quiescent opens a new one. After a
        broker loss it must go: a client of the lost broker is not to be trusted with the next one.
        Given up on after 5 s (against a dead broker its fetcher hangs): a leaked idle client costs
        less than a recovery that never ends."""
        probe, self._probe = self._probe, None
        if probe is not None:
            stopping = asyncio.create_task(probe.stop())
            _, pending = await asyncio.wait({stopping}, timeout=5)
            for task in pending:
                task.cancel()
            if not pending and not stopping.cancelled() and stopping.exception() is not None:
                log.debug("quiescence probe of the lost broker: %r", stopping.exception())

    async def _restart_exited(self, key: str, service: ServiceProcess) -> list[str]:
        """Restart a service that exited on its own, at once the first time, then with backoff."""
        restarts = self._restarts.setdefault(key, _Restarts())
        now = time.monotonic()
        if restarts.dead_pid != service.process.pid:  # first seen dead: count it and schedule the restart
            restarts.dead_pid = service.process.pid
            if now - service.started_at >= SERVICE_STABLE_SECONDS:
                restarts.in_a_row = 0
            restarts.in_a_row += 1
            code = service.process.returncode
            if restarts.in_a_row > SERVICE_RESTARTS_IN_A_ROW:
                raise DevstackError(f"{key} exited {restarts.in_a_row} times in a row (last with code {code}); giving up")
            delay = 0.0 if restarts.in_a_row == 1 else min(2.0 ** (restarts.in_a_row - 2), SERVICE_BACKOFF_MAX_SECONDS)
            restarts.not_before = now + delay
            log.error("%s exited with code %s; restarting it in %.0f s (exit %d in a row)", key, code, delay, restarts.in_a_row)
        if now < restarts.not_before:
            return []
        await service.stop()  # closes its log file
        self._restart(key, service)
        try:
            await self.wait_ready(keys=[key])
        except (RuntimeError, TimeoutError) as error:
            log.error("%s", error)
            return [f"{key} restarted but not ready: {error}"]
        log.warning("%s restarted and ready", key)
        return [f"{key} restarted"]

    def _restart(self, key: str, service: ServiceProcess) -> ServiceProcess:
        env = {name: value for name, value in service.extra_env.items() if name != "FAULT_CRASH_AT"}
        return self.start_service(service.name, service.port, key=key, extra_env=env)

    async def stop(self, drain: bool = True) -> None:
        """Graceful stop that loses nothing on a memory-only broker: close HTTP intake, let relays
        and consumers drain, stop the services, then the broker, then PostgreSQL."""
        for service in self.services.values():
            if service.name in self.service_names() and service.process.poll() is None:
                service.process.send_signal(signal.SIGUSR1)
        if drain and self.services:
            try:
                await self.wait_quiescent(timeout=30)
            except Exception as error:  # a drain that cannot finish must not block the stop
                log.warning("drain incomplete (%s); unsent rows stay in the outboxes and are republished on start", error)
        if self._probe is not None:
            await self._probe.stop()
            self._probe = None
        await asyncio.gather(*(service.stop() for service in self.services.values()))
        self.services.clear()
        if self.broker:
            self.broker.stop()
        if self.postgres:
            await asyncio.to_thread(self.postgres.stop)
        if self.mail_sink is not None:
            self.mail_sink.stop()
            self.mail_sink = None
