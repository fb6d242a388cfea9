"""The development stack: embedded (or configured) servers, databases, topics, migrations and the
services as processes. `make run`, the tests and the benchmarks all start the system through it, so
the tests exercise exactly what users run."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import asyncpg
import httpx
from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from shared.bus.offsets import HighwaterProbe
from shared.db import migrate
from shared.devstack.embedded import EmbeddedBroker, EmbeddedPostgres, ensure_databases, ensure_topics
from shared.settings import SERVICES, SUBSCRIPTIONS, Settings, asyncpg_dsn

log = logging.getLogger("devstack")
REPO = Path(__file__).resolve().parents[2]


@dataclass
class ServiceProcess:
    name: str
    port: int
    process: subprocess.Popen[bytes]
    log_file: IO[bytes] | None = None
    stopped: bool = False

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
class Devstack:
    """Embedded servers unless DATABASE_URL and KAFKA_BOOTSTRAP_SERVERS name real ones."""

    settings: Settings
    root: Path = field(default_factory=lambda: Path(os.environ.get("DEVSTACK_DIR", REPO / ".devstack")))
    log_to_files: bool = False
    pg_port: int = field(default_factory=lambda: int(os.environ.get("DEVSTACK_PG_PORT", "25432")))
    kafka_port: int = field(default_factory=lambda: int(os.environ.get("DEVSTACK_KAFKA_PORT", "29092")))
    postgres: EmbeddedPostgres | None = None
    broker: EmbeddedBroker | None = None
    services: dict[str, ServiceProcess] = field(default_factory=dict)
    _probe: HighwaterProbe | None = None

    @property
    def embedded(self) -> bool:
        return not (os.environ.get("DATABASE_URL") and os.environ.get("KAFKA_BOOTSTRAP_SERVERS"))

    async def start(self, services: tuple[str, ...] = SERVICES) -> None:
        await self.start_servers()
        await self.prepare(services)
        for name in services:
            self.start_service(name, self.settings.port(name))
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
        env["PYTHONPATH"] = str(REPO)
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
        command = [sys.executable, "-m", "uvicorn", f"services.{name}.app:app", "--host", self.settings.host, "--port", str(port),
                   "--no-access-log", "--timeout-graceful-shutdown", "10"]
        # A session of its own: Ctrl-C in the terminal reaches only the orchestrator, which drains first.
        env = {**self.service_env(), **(extra_env or {})}
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=log_file, stderr=log_file, start_new_session=True)
        self.services[key or name] = ServiceProcess(name, port, process, log_file)
        return self.services[key or name]

    def base_url(self, service: str) -> str:
        return f"http://{self.settings.host}:{self.services[service].port}"

    def database_url(self, service: str) -> str:
        return asyncpg_dsn(self.settings.service_database_url(service))

    async def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient(timeout=2) as client:
            for key, service in self.services.items():
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
            busy = await self.consumer_lag() + await self.unsent_outbox_rows()
            clean_rounds = clean_rounds + 1 if busy == 0 else 0
            if time.monotonic() > deadline:
                raise TimeoutError(f"not quiescent after {timeout} s ({busy} messages/rows outstanding)")
            await asyncio.sleep(0.05 if clean_rounds else 0.1)

    async def unsent_outbox_rows(self) -> int:
        total = 0
        for name in {service.name for service in self.services.values()}:
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
            for group in {service.name for service in self.services.values()}:
                streams = SUBSCRIPTIONS[group]
                topics = {self.settings.topic(s) for s in streams}
                partitions = [tp for tp in high if tp.topic in topics]
                committed = await admin.list_consumer_group_offsets(group, partitions=partitions)
                for tp in partitions:
                    meta = committed.get(tp)
                    done = meta.offset if meta is not None and meta.offset >= 0 else 0
                    lag += max(high[tp] - done, 0)
            return lag
        finally:
            await admin.close()

    async def _highwaters(self) -> dict[TopicPartition, int]:
        if self._probe is None:
            self._probe = HighwaterProbe(self.settings.kafka_bootstrap_servers)
        topics = [self.settings.topic(s) for streams in SUBSCRIPTIONS.values() for s in streams]
        return await self._probe.highwaters(await self._probe.partitions(topics))

    async def stop(self, drain: bool = True) -> None:
        """Graceful stop that loses nothing on a memory-only broker: close HTTP intake, let relays
        and consumers drain, stop the services, then the broker, then PostgreSQL."""
        for service in self.services.values():
            if service.process.poll() is None:
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
