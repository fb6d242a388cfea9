"""Purchase orders in the database: every change is saved with a new version and announced in full
(PurchaseOrderChanged), so the allocator can re-date the backorder book from the latest copy."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from services.inventory.domain import PurchaseOrder, PurchaseOrderLine, receive_against
from shared.bus.outbox import UnitOfWork
from shared.events import PurchaseOrderChanged
from shared.events import PurchaseOrderLine as OpenLine

LOAD = "SELECT id, supplier, expected_at, cancelled, version, create_request FROM purchase_order WHERE id = :id"
LOAD_LINES = text(
    "SELECT sku, qty_ordered, qty_received FROM purchase_order_line WHERE purchase_order_id = :id ORDER BY sku"
)
INSERT = text(
    "INSERT INTO purchase_order (id, supplier, expected_at, status, cancelled, version, create_request) "
    "VALUES (:id, :supplier, :expected_at, :status, false, :version, CAST(:create_request AS jsonb)) "
    "ON CONFLICT (id) DO NOTHING RETURNING id"
)
UPDATE = text(
    "UPDATE purchase_order SET expected_at = :expected_at, status = :status, cancelled = :cancelled, "
    "version = :version, updated_at = now() WHERE id = :id"
)
UPSERT_LINE = text(
    "INSERT INTO purchase_order_line (purchase_order_id, sku, qty_ordered, qty_received) "
    "VALUES (:id, :sku, :qty_ordered, :qty_received) ON CONFLICT (purchase_order_id, sku) "
    "DO UPDATE SET qty_ordered = EXCLUDED.qty_ordered, qty_received = EXCLUDED.qty_received"
)


async def load(session: AsyncSession, po_id: str, *, lock: bool = False) -> tuple[PurchaseOrder, dict[str, Any]] | None:
    """The purchase order and the body that created it (to tell a replay from a clash)."""
    row = (await session.execute(text(LOAD + (" FOR UPDATE" if lock else "")), {"id": po_id})).first()
    if row is None:
        return None
    rows = await session.execute(LOAD_LINES, {"id": po_id})
    lines = tuple(PurchaseOrderLine(r.sku, r.qty_ordered, r.qty_received) for r in rows)
    order = PurchaseOrder(row.id, row.supplier, row.expected_at, lines, cancelled=row.cancelled, version=row.version)
    return order, row.create_request


RECEIPTS_OF = text("SELECT receipt_id FROM receipt WHERE purchase_order_id = :id ORDER BY receipt_id")


def changed_event(order: PurchaseOrder, change: str, receipt_ids: tuple[str, ...] = ()) -> PurchaseOrderChanged:
    return PurchaseOrderChanged(
        purchase_order_id=order.id,
        version=order.version,
        supplier=order.supplier,
        status=order.status,
        expected_at=order.expected_at,
        lines=tuple(OpenLine(sku=line.sku, qty_open=line.qty_open) for line in order.lines),
        change=change,
        receipt_ids=receipt_ids,
    )


async def _write_lines(uow: UnitOfWork, order: PurchaseOrder) -> None:
    rows = [
        {"id": order.id, "sku": line.sku, "qty_ordered": line.qty_ordered, "qty_received": line.qty_received}
        for line in order.lines
    ]
    if rows:
        await uow.session.execute(UPSERT_LINE, rows)


async def insert(uow: UnitOfWork, order: PurchaseOrder, create_request: Mapping[str, Any]) -> bool:
    """Create it and announce it; False when the id is already taken (the caller compares bodies)."""
    params = {
        "id": order.id, "supplier": order.supplier, "expected_at": order.expected_at, "status": order.status,
        "version": order.version, "create_request": json.dumps(create_request),
    }
    if (await uow.session.execute(INSERT, params)).first() is None:
        return False
    await _write_lines(uow, order)
    uow.emit(changed_event(order, "created"), correlation_id=order.id)
    return True


async def save(uow: UnitOfWork, order: PurchaseOrder, change: str) -> PurchaseOrder:
    """Store a changed purchase order (loaded with lock=True) as its next version and announce it."""
    saved = replace(order, version=order.version + 1)
    params = {
        "id": saved.id, "expected_at": saved.expected_at, "status": saved.status,
        "cancelled": saved.cancelled, "version": saved.version,
    }
    await uow.session.execute(UPDATE, params)
    await _write_lines(uow, saved)
    receipt_ids = tuple(row.receipt_id for row in await uow.session.execute(RECEIPTS_OF, {"id": saved.id}))
    uow.emit(changed_event(saved, change, receipt_ids), correlation_id=saved.id)
    return saved


async def receive(uow: UnitOfWork, po_id: str, received: Mapping[str, int]) -> None:
    """Goods arrived against this purchase order: its open quantities shrink."""
    stored = await load(uow.session, po_id, lock=True)
    if stored is None:
        return
    order = stored[0]
    lines = receive_against(order.lines, received)
    if lines != order.lines:
        await save(uow, replace(order, lines=lines), "received")
