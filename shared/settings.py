"""Settings read from the environment, one class for every service so the names never drift."""

from __future__ import annotations

import os
from functools import lru_cache
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.events import Stream

# Which streams each service's consumer group reads (its handlers pick the event types they need).
SUBSCRIPTIONS: dict[str, tuple[Stream, ...]] = {
    "orders": (Stream.ORDERS, Stream.STOCK, Stream.ALLOCATIONS),
    "inventory": (Stream.ORDERS, Stream.STOCK, Stream.RECEIPTS, Stream.ALLOCATIONS),
    "allocator": (Stream.ORDERS, Stream.STOCK, Stream.RECEIPTS),
    "notifier": (Stream.ORDERS, Stream.STOCK, Stream.ALLOCATIONS),
}
SERVICES = tuple(SUBSCRIPTIONS)
DEVELOPMENT_LINK_KEY = "development-only-link-key"  # a service started with it in production says so
SERVICE_PORTS = {"orders": 8001, "inventory": 8002, "allocator": 8003, "notifier": 8004}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=None, extra="ignore")

    # Where things are. DATABASE_URL names a server (its database part is replaced by each
    # service's own database); <SERVICE>_DATABASE_URL overrides it for one service.
    database_url: str = "postgresql://postgres@127.0.0.1:25432/postgres"
    database_prefix: str = "backorder_"
    kafka_bootstrap_servers: str = "127.0.0.1:29092"
    host: str = "127.0.0.1"
    orders_port: int = SERVICE_PORTS["orders"]
    inventory_port: int = SERVICE_PORTS["inventory"]
    allocator_port: int = SERVICE_PORTS["allocator"]
    notifier_port: int = SERVICE_PORTS["notifier"]
    # The ops dashboard (`make run` starts it next to the services).
    dashboard_port: int = 8000

    # Topic names (one per stream, each with a `<name>.dlq` twin).
    topic_orders: str = "orders"
    topic_stock: str = "stock"
    topic_receipts: str = "receipts"
    topic_allocations: str = "allocations"
    topic_notifications: str = "notifications"
    topic_partitions: int = 4

    # Consumers: short group joins (the embedded broker takes session_timeout/2 per join) and
    # short fetch waits (it does not wake a waiting fetch when data arrives).
    kafka_session_timeout_ms: int = 6000
    kafka_heartbeat_interval_ms: int = 1000
    kafka_fetch_max_wait_ms: int = 50
    kafka_max_poll_records: int = 500
    kafka_max_request_size: int = 1_048_576
    consumer_max_events_per_transaction: int = 2000
    handler_retries: int = 4
    handler_retry_backoff_s: float = 0.2

    # Outbox relay.
    outbox_batch_size: int = 500
    outbox_poll_interval_s: float = 1.0
    outbox_retention_days: float = 7.0
    # How often a leading relay re-checks that the broker still holds what it was sent (cluster
    # id, partition highwaters) and records the consumed watermarks; it is always checked when the
    # relay takes the lead. A check costs ~30 ms (median, test broker): 5 s keeps the watermarks
    # close behind the consumers, so a lost broker gets little back that was already consumed.
    relay_broker_check_seconds: float = 5.0

    # Customer links (the tracking page): the key every service signs and checks them with (set your
    # own in production: whoever knows it can make links), how long a link is good, and where
    # customers reach the notifier that serves the page (default: the notifier's own address).
    link_signing_key: str = DEVELOPMENT_LINK_KEY
    tracking_link_days: int = 180
    tracking_base_url: str | None = None

    # Inventory: how often the release clock looks for preorder SKUs whose release day has come.
    preorder_release_check_s: float = 30.0

    # HTTP guards.
    max_body_bytes: int = 1_048_576
    max_order_lines: int = 500

    log_level: str = "INFO"
    # JSON lines for a log pipeline; `text` for a terminal (`make run` sets it).
    log_format: Literal["json", "text"] = "json"
    db_pool_size: int = 10

    def topic(self, stream: Stream) -> str:
        return str(getattr(self, "topic_" + stream))  # a StrEnum member concatenates as its value

    def all_topics(self) -> list[str]:
        names = [self.topic(stream) for stream in Stream]
        return names + [f"{name}.dlq" for name in names]

    def port(self, service: str) -> int:
        return int(getattr(self, f"{service}_port"))

    def service_url(self, service: str) -> str:
        """Where another process reaches a service's API: <SERVICE>_URL, else http://HOST:<port>."""
        return os.environ.get(f"{service.upper()}_URL") or f"http://{self.host}:{self.port(service)}"

    def service_database_url(self, service: str) -> str:
        """postgresql://... URL of the service's own database on the configured server."""
        override = _service_override(service)
        if override:
            return override
        parts = urlsplit(self.database_url)
        return urlunsplit(parts._replace(path=f"/{self.database_prefix}{service}"))

    def admin_database_url(self) -> str:
        return self.database_url

    # Outages. A consumer whose assigned partitions got no fetch response (empty ones count) for
    # this long is reported stalled by /readyz: its broker is gone, even though getmany returns.
    consumer_stall_after_s: float = 10.0
    # Retry-After of the 503 a request gets while its database is unreachable.
    database_retry_after_s: int = 2


def _service_override(service: str) -> str | None:
    return os.environ.get(f"{service.upper()}_DATABASE_URL")


def asyncpg_dsn(url: str) -> str:
    """asyncpg wants plain postgresql://; SQLAlchemy URLs may carry +asyncpg."""
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


def sqlalchemy_url(url: str) -> str:
    return asyncpg_dsn(url).replace("postgresql://", "postgresql+asyncpg://", 1)


@lru_cache
def get_settings() -> Settings:
    return Settings()
