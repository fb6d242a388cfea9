"""All of orders' SQL for changes: placing, locking and reading orders with their lines (one order,
or a consumer batch's in two statements), writing back the lines that changed, and the shipment
and allocation rows. No emits and no rules here: handlers decide (with domain), this stores."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, fields
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import Row, text
from sqlalchemy.ext.asyncio import AsyncSession

from services.orders.domain import Line, Order, Promise
from shared.events import ShipmentLine

LINE_FIELDS = tuple(field.name for field in fields(Line))
LINE_COLUMNS = ", ".join(f"l.{name}" for name in LINE_FIELDS)

# The order row's lock serialises every change to one order (HTTP and events alike). The lines are
# read by a second statement, after the lock is held: a statement that waited for a lock sees only
# the locked row's newest version, the rows it joined come from the snapshot taken before the wait,
# and writing those back would undo what the writer we waited for committed (a cancel answered 200,
# then lost). Orders are locked in id order: every writer that locks several does so in this order,
# so two never deadlock.
LOCK_ORDERS = text("SELECT id, partial_allowed FROM orders WHERE id = ANY(CAST(:ids AS uuid[])) ORDER BY id FOR UPDATE")
READ_LINES_OF = text(
    f"SELECT l.order_id, {LINE_COLUMNS} FROM order_line l WHERE l.order_id = ANY(CAST(:ids AS uuid[])) "
    "ORDER BY l.order_id, l.line_no"
)
INSERT_ORDER = text(
    "INSERT INTO orders (id, external_id, channel, idempotency_key, request_hash, customer_id, customer_email, "
    "customer_locale, customer_tier, partial_allowed, placed_at, response) VALUES (:id, :external_id, :channel, "
    ":idempotency_key, :request_hash, :customer_id, :customer_email, :customer_locale, :customer_tier, "
    ":partial_allowed, :placed_at, CAST(:response AS jsonb)) ON CONFLICT DO NOTHING RETURNING id"
)
# Both identities of a request: the header key and the platform's own (channel, external_id).
FIND_PLACED = text(
    "SELECT request_hash, response FROM orders "
    "WHERE idempotency_key = :idempotency_key OR (channel = :channel AND external_id = :external_id)"
)
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
INSERT_PROMISES = text(
    "INSERT INTO line_promise (order_id, line_no, event_id, promised_date, previous_date, reason, at) "
    "SELECT * FROM unnest(CAST(:order_ids AS uuid[]), CAST(:line_nos AS int[]), CAST(:event_ids AS uuid[]), "
    "CAST(:dates AS date[]), CAST(:previous AS date[]), CAST(:reasons AS text[]), CAST(:ats AS timestamptz[])) "
    "ON CONFLICT DO NOTHING"
)
# Every allocation of a batch in one statement; a (line, source) seen before, or twice in the
# batch, is inserted once and returned once.
CLAIM_ALLOCATIONS = text(
    "INSERT INTO applied_allocation (order_id, line_no, source_id, qty, cross_dock, applied_at) "
    "SELECT * FROM unnest(CAST(:order_ids AS uuid[]), CAST(:line_nos AS int[]), CAST(:source_ids AS text[]), "
    "CAST(:qtys AS int[]), CAST(:cross_docks AS boolean[]), CAST(:applied_ats AS timestamptz[])) "
    "ON CONFLICT DO NOTHING RETURNING order_id, line_no, source_id"
)


def line_params(order_id: UUID, line: Line) -> dict[str, object]:
    return {"order_id": order_id, **asdict(line), "state": line.state.value}


async def insert_lines(session: AsyncSession, order_id: UUID, lines: Sequence[Line]) -> None:
    await session.execute(INSERT_LINES, [line_params(order_id, line) for line in lines])


async def insert_order(session: AsyncSession, params: Mapping[str, object]) -> bool:
    """False when the request's identity (key, or channel and external id) is taken already."""
    return (await session.execute(INSERT_ORDER, params)).first() is not None


async def find_placed(session: AsyncSession, idempotency_key: str | None, channel: str, external_id: str) -> list[Row[Any]]:
    """The orders placed under either identity of a request, with their request hash and response."""
    params = {"idempotency_key": idempotency_key, "channel": channel, "external_id": external_id}
    return list((await session.execute(FIND_PLACED, params)).all())


async def lock_orders(session: AsyncSession, order_ids: Iterable[UUID]) -> dict[UUID, Order]:
    """Lock these orders (in id order), then read their lines: the orders of a consumer batch in
    two statements. Orders not placed here are absent."""
    ids = sorted(set(order_ids))
    if not ids:
        return {}
    partial: dict[UUID, bool] = {row[0]: row[1] for row in await session.execute(LOCK_ORDERS, {"ids": ids})}
    lines: dict[UUID, list[Line]] = {order_id: [] for order_id in partial}
    for row in await session.execute(READ_LINES_OF, {"ids": list(partial)}):
        lines[row[0]].append(Line(*row[1:]))
    return {order_id: Order(order_id, partial[order_id], tuple(lines[order_id])) for order_id in partial}


async def lock_order(session: AsyncSession, order_id: UUID) -> Order | None:
    """One order, locked, as lock_orders reads it."""
    return (await lock_orders(session, [order_id])).get(order_id)


async def save_lines(session: AsyncSession, before: Order, after: Order) -> None:
    """Write back only the lines whose values changed, in one executemany."""
    await save_orders(session, [(before, after)])


async def save_orders(session: AsyncSession, changes: Iterable[tuple[Order, Order]]) -> None:
    """Write back the lines that changed in any of these orders, in one executemany."""
    changed = []
    for before, after in changes:
        old = {line.line_no: line for line in before.lines}
        changed += [line_params(after.id, line) for line in after.lines if old.get(line.line_no) != line]
    if changed:
        await session.execute(UPDATE_LINE, changed)


def shipment_json(lines: Sequence[ShipmentLine]) -> str:
    return json.dumps([line.model_dump(mode="json") for line in lines])


async def insert_shipments(
    session: AsyncSession, shipments: Sequence[tuple[UUID, UUID, Sequence[ShipmentLine]]], requested_at: datetime
) -> None:
    """New requested shipments, (order id, shipment id, lines) each, in one executemany."""
    if shipments:
        params = [
            {"id": shipment_id, "order_id": order_id, "lines": shipment_json(lines), "requested_at": requested_at}
            for order_id, shipment_id, lines in shipments
        ]
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


async def claim_allocations(
    session: AsyncSession, allocations: Sequence[tuple[UUID, int, str, int, bool]], applied_at: datetime
) -> set[tuple[UUID, int, str]]:
    """Record (order, line, source, qty, cross_dock) allocations; returns the (order, line, source)
    keys seen for the first time."""
    if not allocations:
        return set()
    order_ids, line_nos, source_ids, qtys, cross_docks = (list(column) for column in zip(*allocations, strict=True))
    params = {
        "order_ids": order_ids, "line_nos": line_nos, "source_ids": source_ids, "qtys": qtys,
        "cross_docks": cross_docks, "applied_ats": [applied_at] * len(allocations),
    }
    return {(row[0], row[1], row[2]) for row in await session.execute(CLAIM_ALLOCATIONS, params)}


async def insert_promises(session: AsyncSession, promises: Sequence[Promise]) -> None:
    """The dates lines were promised, once per telling event."""
    if promises:
        await session.execute(INSERT_PROMISES, {
            "order_ids": [p.order_id for p in promises], "line_nos": [p.line_no for p in promises],
            "event_ids": [p.event_id for p in promises], "dates": [p.promised_date for p in promises],
            "previous": [p.previous_date for p in promises], "reasons": [p.reason for p in promises],
            "ats": [p.at for p in promises],
        })
