"""Loading and saving the order aggregate: one locked read of an order with its lines, one
statement to write back the lines that changed, and the shipment and allocation rows."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, fields
from datetime import datetime
from uuid import UUID

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from services.orders.domain import Line, Order
from shared.events import ShipmentLine

LINE_FIELDS = tuple(field.name for field in fields(Line))
LINE_COLUMNS = ", ".join(f"l.{name}" for name in LINE_FIELDS)

# The order row's lock serialises every change to one order (HTTP and events alike). The lines are
# read by a second statement, after the lock is held: a statement that waited for a lock sees only
# the locked row's newest version, the rows it joined come from the snapshot taken before the wait,
# and writing those back would undo what the writer we waited for committed (a cancel answered 200,
# then lost).
LOCK_ORDER = text("SELECT partial_allowed FROM orders WHERE id = :order_id FOR UPDATE")
READ_LINES = text(f"SELECT {LINE_COLUMNS} FROM order_line l WHERE l.order_id = :order_id ORDER BY l.line_no")
INSERT_LINES = text(
    f"INSERT INTO order_line (order_id, {', '.join(LINE_FIELDS)}, state) "
    f"VALUES (:order_id, {', '.join(':' + name for name in LINE_FIELDS)}, :state)"
)
UPDATE_LINE = text(
    "UPDATE order_line SET "
    + ", ".join(f"{name} = :{name}" for name in LINE_FIELDS if name not in {"line_no", "sku", "qty"})
    + ", state = :state WHERE order_id = :order_id AND line_no = :line_no"
)
INSERT_SHIPMENT = text(
    "INSERT INTO shipment (id, order_id, status, lines, requested_at) "
    "VALUES (:id, :order_id, 'requested', CAST(:lines AS jsonb), :requested_at)"
)
LOCK_SHIPMENT = text("SELECT status, lines FROM shipment WHERE id = :id AND order_id = :order_id FOR UPDATE")
MARK_SHIPPED = text("UPDATE shipment SET status = 'shipped', shipped_at = :shipped_at WHERE id = :id")
REQUESTED_SHIPMENTS = text("SELECT id, lines FROM shipment WHERE order_id = :order_id AND status = 'requested' FOR UPDATE")
SET_SHIPMENT_LINES = text("UPDATE shipment SET lines = CAST(:lines AS jsonb), status = :status WHERE id = :id")
CLAIM_ALLOCATION = text(
    "INSERT INTO applied_allocation (order_id, line_no, source_id, qty, cross_dock, applied_at) "
    "VALUES (:order_id, :line_no, :source_id, :qty, :cross_dock, :applied_at) ON CONFLICT DO NOTHING RETURNING source_id"
)


def line_params(order_id: UUID, line: Line) -> dict[str, object]:
    return {"order_id": order_id, **asdict(line), "state": line.state.value}


async def insert_lines(session: AsyncSession, order_id: UUID, lines: Sequence[Line]) -> None:
    await session.execute(INSERT_LINES, [line_params(order_id, line) for line in lines])


async def lock_order(session: AsyncSession, order_id: UUID) -> Order | None:
    """Lock the order, then read its lines as they are once we hold the lock (see LOCK_ORDER)."""
    partial_allowed = (await session.execute(LOCK_ORDER, {"order_id": order_id})).scalar_one_or_none()
    if partial_allowed is None:
        return None
    rows = (await session.execute(READ_LINES, {"order_id": order_id})).all()
    lines = tuple(Line(**dict(zip(LINE_FIELDS, row, strict=True))) for row in rows)
    return Order(id=order_id, partial_allowed=partial_allowed, lines=lines)


async def save_lines(session: AsyncSession, before: Order, after: Order) -> None:
    """Write back only the lines whose values changed, in one executemany."""
    old = {line.line_no: line for line in before.lines}
    changed = [line_params(after.id, line) for line in after.lines if old.get(line.line_no) != line]
    if changed:
        await session.execute(UPDATE_LINE, changed)


def shipment_json(lines: Sequence[ShipmentLine]) -> str:
    return json.dumps([line.model_dump(mode="json") for line in lines])


async def insert_shipment(
    session: AsyncSession, order_id: UUID, shipment_id: UUID, lines: Sequence[ShipmentLine], requested_at: datetime
) -> None:
    params = {"id": shipment_id, "order_id": order_id, "lines": shipment_json(lines), "requested_at": requested_at}
    await session.execute(INSERT_SHIPMENT, params)


async def lock_shipment(session: AsyncSession, order_id: UUID, shipment_id: UUID) -> tuple[str, tuple[ShipmentLine, ...]] | None:
    row = (await session.execute(LOCK_SHIPMENT, {"id": shipment_id, "order_id": order_id})).first()
    if row is None:
        return None
    return row.status, tuple(ShipmentLine.model_validate(item) for item in row.lines)


async def mark_shipped(session: AsyncSession, shipment_id: UUID, shipped_at: datetime) -> None:
    await session.execute(MARK_SHIPPED, {"id": shipment_id, "shipped_at": shipped_at})


async def requested_shipments(session: AsyncSession, order_id: UUID) -> list[tuple[UUID, tuple[ShipmentLine, ...]]]:
    rows = (await session.execute(REQUESTED_SHIPMENTS, {"order_id": order_id})).all()
    return [(row.id, tuple(ShipmentLine.model_validate(item) for item in row.lines)) for row in rows]


async def set_shipment_lines(session: AsyncSession, shipment_id: UUID, lines: Sequence[ShipmentLine]) -> None:
    """A requested shipment left with no lines is withdrawn (`cancelled`)."""
    params = {"id": shipment_id, "lines": shipment_json(lines), "status": "requested" if lines else "cancelled"}
    await session.execute(SET_SHIPMENT_LINES, params)


async def claim_allocation(
    session: AsyncSession, order_id: UUID, line_no: int, source_id: str, qty: int, cross_dock: bool, applied_at: datetime
) -> bool:
    """True the first time this (line, source) allocation is seen."""
    params = {
        "order_id": order_id, "line_no": line_no, "source_id": source_id,
        "qty": qty, "cross_dock": cross_dock, "applied_at": applied_at,
    }
    return (await session.execute(CLAIM_ALLOCATION, params)).first() is not None
