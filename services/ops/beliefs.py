"""What each service believes about one order's lines, read from its own database (read-only), so
an engineer sees where an order stopped even while a service is down. The one place in ops that
knows the services' tables; each query names only columns the service's migrations create."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

import asyncpg

from shared.settings import Settings, asyncpg_dsn

LINE_QUERIES: dict[str, str] = {
    "orders": (
        "SELECT line_no, sku, qty, state, reserved, qty_short, allocated_pick + allocated_cross_dock AS allocated,"
        " shipped, cancelled, cancel_reason, rejected_reason, expected_date FROM order_line WHERE order_id = $1 ORDER BY line_no"
    ),
    "inventory": (
        "SELECT line_no, sku, reserved, cross_docked, waiting, shipped, cancelled, rejection"
        " FROM line_stock WHERE order_id = $1 ORDER BY line_no"
    ),
    "allocator": (
        "SELECT line_no, sku, status, qty_short, qty_waiting, qty_allocated, promised_date"
        " FROM waiting_line WHERE order_id = $1 ORDER BY line_no"
    ),
    "notifier": (
        "SELECT line_no, sku, qty, reserved, short, booked, promised_date, allocated, shipped, cancelled"
        " FROM line_state WHERE order_id = $1 ORDER BY line_no"
    ),
}
NOTIFICATIONS = (
    "SELECT kind, channel, status, attempts, created_at, sent_at, last_error"
    " FROM notification WHERE order_id = $1 ORDER BY created_at"
)


async def order_beliefs(settings: Settings, order_id: UUID) -> dict[str, Any]:
    """Per service, its rows for the order's lines (or the error that kept us from reading them),
    and the notifier's messages about the order."""
    beliefs: dict[str, Any] = {}
    for service, query in LINE_QUERIES.items():
        try:
            conn = await asyncpg.connect(asyncpg_dsn(settings.service_database_url(service)), timeout=5)
        except (OSError, asyncpg.PostgresError) as error:
            beliefs[service] = {"error": f"{type(error).__name__}: {error}"[:200]}
            continue
        try:
            beliefs[service] = {"lines": [plain(row) for row in await conn.fetch(query, order_id)]}
            if service == "notifier":
                beliefs[service]["notifications"] = [plain(row) for row in await conn.fetch(NOTIFICATIONS, order_id)]
        finally:
            await conn.close()
    return beliefs


def plain(row: Mapping[str, Any]) -> dict[str, Any]:
    """JSON-ready: dates and times as ISO 8601 text, ids as text."""
    return {key: _json_value(value) for key, value in row.items()}


def _json_value(value: Any) -> Any:
    if isinstance(value, date | datetime):
        return value.isoformat()
    if isinstance(value, UUID | Decimal):
        return str(value)
    return value


NOTIFICATION_COUNTS = "SELECT channel, status, count(*) AS n FROM notification GROUP BY channel, status ORDER BY channel, status"
RECENT_FAILURES = (
    "SELECT order_id, kind, channel, attempts, last_error, created_at FROM notification"
    " WHERE status = 'failed' ORDER BY created_at DESC LIMIT $1"
)


async def notification_summary(conn: asyncpg.Connection, failures: int = 10) -> dict[str, Any]:
    """Messages per channel and status, and the latest given up, with why."""
    counts: dict[str, dict[str, int]] = {}
    for row in await conn.fetch(NOTIFICATION_COUNTS):
        counts.setdefault(row["channel"], {})[row["status"]] = row["n"]
    return {"counts": counts, "recent_failures": [plain(row) for row in await conn.fetch(RECENT_FAILURES, failures)]}
