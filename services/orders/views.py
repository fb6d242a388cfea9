"""Reads of orders and shipments, served by plain queries apart from the write path."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any
from uuid import UUID

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from services.orders.domain import Line, LineState
from services.orders.schemas import LineRead, OrderRead, PromiseRead, ShipmentRead, Shipping
from services.orders.store import LINE_FIELDS
from shared.events import Customer, ShipmentLine

ORDER_COLUMNS = (
    "id, external_id, channel, customer_id, customer_email, customer_locale, customer_tier, partial_allowed, placed_at"
)
ONE_ORDER = text(f"SELECT {ORDER_COLUMNS} FROM orders WHERE id = :id")
ALL_ORDERS = text(f"SELECT {ORDER_COLUMNS} FROM orders ORDER BY placed_at DESC, id DESC LIMIT :limit OFFSET :offset")
ORDERS_WITH_STATE = text(
    f"SELECT {ORDER_COLUMNS} FROM orders o WHERE EXISTS "
    "(SELECT 1 FROM order_line l WHERE l.order_id = o.id AND l.state = :state) "
    "ORDER BY placed_at DESC, id DESC LIMIT :limit OFFSET :offset"
)
LINES_OF = text(
    f"SELECT order_id, {', '.join(LINE_FIELDS)} FROM order_line WHERE order_id = ANY(:ids) ORDER BY order_id, line_no"
)
SHIPMENT_COLUMNS = "id, order_id, status, lines, requested_at, shipped_at"
SHIPMENTS_OF = text(f"SELECT {SHIPMENT_COLUMNS} FROM shipment WHERE order_id = :order_id ORDER BY requested_at, id")
ONE_SHIPMENT = text(f"SELECT {SHIPMENT_COLUMNS} FROM shipment WHERE id = :id AND order_id = :order_id")
ORDER_EXISTS = text("SELECT 1 FROM orders WHERE id = :id")


PROMISES_OF = text(
    "SELECT line_no, promised_date, previous_date, reason, at FROM line_promise WHERE order_id = :id ORDER BY at, event_id"
)


async def read_order(session: AsyncSession, order_id: UUID) -> OrderRead | None:
    """The order with every line, and each line's history of promised dates."""
    rows = (await session.execute(ONE_ORDER, {"id": order_id})).all()
    orders = await _with_lines(session, rows)
    if not orders:
        return None
    order = orders[0]
    promises: dict[int, list[PromiseRead]] = defaultdict(list)
    for row in await session.execute(PROMISES_OF, {"id": order_id}):
        promises[row.line_no].append(PromiseRead(promised_date=row.promised_date, previous_date=row.previous_date,
                                                 reason=row.reason, at=row.at))
    for line in order.lines:
        line.promised_dates = promises.get(line.line_no, [])
    return order


async def list_orders(session: AsyncSession, state: LineState | None, limit: int, offset: int) -> list[OrderRead]:
    """Newest first; with a state, only orders having at least one line in it."""
    params: dict[str, Any] = {"limit": limit, "offset": offset}
    if state is None:
        rows = (await session.execute(ALL_ORDERS, params)).all()
    else:
        rows = (await session.execute(ORDERS_WITH_STATE, {**params, "state": state.value})).all()
    return await _with_lines(session, rows)


async def _with_lines(session: AsyncSession, rows: Sequence[Any]) -> list[OrderRead]:
    if not rows:
        return []
    lines: dict[UUID, list[LineRead]] = defaultdict(list)
    for line in (await session.execute(LINES_OF, {"ids": [row.id for row in rows]})).all():
        lines[line.order_id].append(LineRead.of(Line(**dict(zip(LINE_FIELDS, line[1:], strict=True)))))
    return [
        OrderRead(
            id=row.id, external_id=row.external_id, channel=row.channel,
            customer=Customer(id=row.customer_id, email=row.customer_email, locale=row.customer_locale, tier=row.customer_tier),
            shipping=Shipping(partial_allowed=row.partial_allowed), placed_at=row.placed_at, lines=lines[row.id],
        )
        for row in rows
    ]


async def list_shipments(session: AsyncSession, order_id: UUID) -> list[ShipmentRead] | None:
    """None when the order is unknown; an empty list when nothing was requested yet."""
    if (await session.execute(ORDER_EXISTS, {"id": order_id})).first() is None:
        return None
    return [_shipment(row) for row in (await session.execute(SHIPMENTS_OF, {"order_id": order_id})).all()]


async def read_shipment(session: AsyncSession, order_id: UUID, shipment_id: UUID) -> ShipmentRead | None:
    row = (await session.execute(ONE_SHIPMENT, {"id": shipment_id, "order_id": order_id})).first()
    return _shipment(row) if row else None


def _shipment(row: Any) -> ShipmentRead:
    return ShipmentRead(
        id=row.id, order_id=row.order_id, status=row.status, lines=[ShipmentLine.model_validate(item) for item in row.lines],
        requested_at=row.requested_at, shipped_at=row.shipped_at,
    )
