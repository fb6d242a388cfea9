"""Session fixtures: the real stack (embedded PostgreSQL and broker, or the servers named by
DATABASE_URL and KAFKA_BOOTSTRAP_SERVERS) and all four services, started once per test session
exactly the way `make run` starts them, on test ports."""

from __future__ import annotations

import os
import shutil
import signal
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaProducer
from faults.faultstack import FaultStack, fault_stack_from_env
from receivers import RecordingSmtp, WebhookReceiver

from shared.devstack.stack import REPO, Devstack, ServiceProcess
from shared.settings import SERVICES, Settings

# TEST_PORT_BASE moves the service ports, so two test sessions on one machine (each with its own
# DEVSTACK_DIR, DEVSTACK_PG_PORT and DEVSTACK_KAFKA_PORT) do not collide.
_BASE = int(os.environ.get("TEST_PORT_BASE", "18000"))
TEST_PORTS = {"orders": _BASE + 1, "inventory": _BASE + 2, "allocator": _BASE + 3, "notifier": _BASE + 4}


class SessionStack(Devstack):
    async def start_extra(self, service: str, port: int) -> ServiceProcess:
        """Another instance of a service in the same consumer group (scale-out tests)."""
        key = f"{service}-{port}"
        process = self.start_service(service, port, key=key)
        await self.wait_ready()
        return process


@pytest.fixture(scope="session")
def containers() -> Iterator[None]:
    """USE_TESTCONTAINERS=1 (needs a Docker engine): Apache Kafka (KRaft) and PostgreSQL 16 in
    containers, handed to the stack through the same two variables a user would set."""
    if os.environ.get("USE_TESTCONTAINERS") != "1":
        yield
        return
    from testcontainers.community.kafka import KafkaContainer
    from testcontainers.community.postgres import PostgresContainer

    kafka_container = KafkaContainer("confluentinc/cp-kafka:7.6.0").with_kraft()
    with PostgresContainer("postgres:16", driver=None) as postgres, kafka_container as kafka:
        os.environ["DATABASE_URL"] = postgres.get_connection_url()
        os.environ["KAFKA_BOOTSTRAP_SERVERS"] = kafka.get_bootstrap_server()
        yield


@pytest.fixture(scope="session")
def smtp_server() -> Iterator[RecordingSmtp]:
    """The SMTP server every stack of the session mails to (the notifier's SMTP_HOST/SMTP_PORT)."""
    server = RecordingSmtp()
    server.start()
    os.environ["SMTP_HOST"], os.environ["SMTP_PORT"] = server.host, str(server.port)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def webhook_receiver() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver()
    receiver.start()
    try:
        yield receiver
    finally:
        receiver.stop()


# The notifier's clocks, shortened for the session's stacks: the coalescing window and the retry
# backoff. The still-waiting period keeps its default (days) but for the test that needs it short
# (`short_still_waiting`): every waiting order of the session would otherwise get an update every few
# seconds, thousands of messages that slowed the whole suite.
NOTIFIER_TEST_ENV = {
    "NOTIFY_COALESCE_WINDOW_S": "1",
    "DELIVERY_BACKOFF_S": "0.3",
    "DELIVERY_BACKOFF_MAX_S": "2",
    "DELIVERY_MAX_ATTEMPTS": "4",
}


# Inventory's release clock, checked every second instead of every 30 (a preorder test moves a
# release date to today and waits for the lines to be released).
INVENTORY_TEST_ENV = {"PREORDER_RELEASE_CHECK_S": "1"}


# Consumer groups of the session: a 3 s session timeout (the default is 6 s). The tests stop, kill and
# restart services and start consumers of their own many times; each join costs the embedded broker
# half the session timeout, and a killed member holds its partitions for all of it (EMBEDDED.md).
SESSION_KAFKA_ENV = {"KAFKA_SESSION_TIMEOUT_MS": "3000", "KAFKA_HEARTBEAT_INTERVAL_MS": "500"}


@pytest.fixture(scope="session")
async def stack(containers: None, smtp_server: RecordingSmtp, webhook_receiver: WebhookReceiver) -> AsyncIterator[SessionStack]:
    os.environ.update(NOTIFIER_TEST_ENV)
    os.environ.update(INVENTORY_TEST_ENV)
    for name, value in SESSION_KAFKA_ENV.items():
        os.environ.setdefault(name, value)
    os.environ.setdefault("DEVSTACK_DIR", str(REPO / ".devstack" / "test"))
    os.environ.setdefault("DEVSTACK_PG_PORT", "25433")
    os.environ.setdefault("DEVSTACK_KAFKA_PORT", "29093")
    for name, port in TEST_PORTS.items():
        os.environ[f"{name.upper()}_PORT"] = str(port)
    os.environ["DASHBOARD_PORT"] = str(_BASE)
    test_stack = SessionStack(Settings(), log_to_files=True)
    shutil.rmtree(test_stack.root / "logs", ignore_errors=True)  # this session's lines only
    try:
        only = os.environ.get("DEVSTACK_SERVICES")
        await test_stack.start(tuple(only.split(",")) if only else SERVICES, dashboard=not only)
        yield test_stack
    finally:
        await test_stack.stop(drain=False)


STILL_WAITING_TEST_PERIOD_S = 3.0


@pytest.fixture
async def short_still_waiting(stack: SessionStack) -> AsyncIterator[float]:
    """The session's notifier restarted with a still-waiting period of a few seconds for one test,
    then restarted as it was; yields the period in seconds."""
    notifier = stack.services["notifier"]
    await notifier.stop()
    period_days = str(STILL_WAITING_TEST_PERIOD_S / 86_400)
    stack.start_service("notifier", notifier.port, extra_env={"NOTIFY_STILL_WAITING_EVERY_DAYS": period_days})
    await stack.wait_ready()
    try:
        yield STILL_WAITING_TEST_PERIOD_S
    finally:
        await stack.services["notifier"].stop()
        stack.start_service("notifier", notifier.port)
        await stack.wait_ready()


def _client(stack: Devstack, service: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=stack.base_url(service), timeout=30)


@pytest.fixture
async def orders_api(stack: SessionStack) -> AsyncIterator[httpx.AsyncClient]:
    async with _client(stack, "orders") as client:
        yield client


@pytest.fixture
async def inventory_api(stack: SessionStack) -> AsyncIterator[httpx.AsyncClient]:
    async with _client(stack, "inventory") as client:
        yield client


@pytest.fixture
async def allocator_api(stack: SessionStack) -> AsyncIterator[httpx.AsyncClient]:
    async with _client(stack, "allocator") as client:
        yield client


@pytest.fixture
async def notifier_api(stack: SessionStack) -> AsyncIterator[httpx.AsyncClient]:
    async with _client(stack, "notifier") as client:
        yield client


@pytest.fixture
def db(stack: SessionStack) -> Callable[[str], AbstractAsyncContextManager[asyncpg.Connection]]:
    return stack.connect


@pytest.fixture(scope="session")
async def producer(stack: SessionStack) -> AsyncIterator[AIOKafkaProducer]:
    kafka = AIOKafkaProducer(bootstrap_servers=stack.settings.kafka_bootstrap_servers, acks="all")
    await kafka.start()
    try:
        yield kafka
    finally:
        await kafka.stop()


@pytest.fixture(scope="session")
async def fault_stack() -> AsyncIterator[FaultStack]:
    """A second stack only the fault scenarios use (started on first request), so killing its
    services, PostgreSQL or broker never disturbs `stack`: data in .devstack/faults, PostgreSQL on
    FAULT_PG_PORT, the broker on FAULT_KAFKA_PORT, services on TEST_PORT_BASE + 101..104. Always the
    embedded servers, also when the other tests use configured ones: the scenarios kill them."""
    faults = fault_stack_from_env()
    try:
        await faults.start()
        yield faults
    finally:
        for service in faults.services.values():  # a paused process would never stop
            if service.process.poll() is None:
                service.process.send_signal(signal.SIGCONT)
        await faults.stop(drain=False)
