"""Inventory HTTP API for inbound supply: purchase orders (ops, ERP) and goods received (warehouse)."""

from dataclasses import replace
from datetime import UTC, date, datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Response
from sqlalchemy.ext.asyncio import AsyncSession

from services.inventory import domain, ledger, movements, purchasing
from services.inventory.domain import PurchaseOrder, PurchaseOrderLine
from services.inventory.movements import ReceiptConflict, UnknownPurchaseOrder, UnknownSku
from services.inventory.schemas import (
    PurchaseOrderCreate,
    PurchaseOrderLineRead,
    PurchaseOrderPatch,
    PurchaseOrderRead,
    ReceiptCreate,
    ReceiptRead,
)
from shared.events import GoodsReceived, ReceivedLine
from shared.service import Context, invalid

router = APIRouter(prefix="/v1", tags=["purchasing"])

PurchaseOrderId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._\-]*$")]


def _read(order: PurchaseOrder) -> PurchaseOrderRead:
    lines = [
        PurchaseOrderLineRead(sku=line.sku, qty_ordered=line.qty_ordered, qty_received=line.qty_received, qty_open=line.qty_open)
        for line in order.lines
    ]
    return PurchaseOrderRead(
        id=order.id, supplier=order.supplier, expected_at=order.expected_at, status=order.status, version=order.version,
        lines=lines,
    )


def _not_in_past(expected_at: date) -> None:
    today = datetime.now(UTC).date()
    if expected_at < today:
        raise invalid("expected_at", f"{expected_at} is in the past (today is {today} UTC)")


async def _check_skus(session: AsyncSession, skus: list[str]) -> None:
    """Every SKU known, none twice: a 422 naming the first offending line."""
    known = await ledger.load_policies(session, skus)
    seen: set[str] = set()
    for index, sku in enumerate(skus):
        if sku not in known:
            raise invalid(f"lines.{index}.sku", f"unknown sku {sku}")
        if sku in seen:
            raise invalid(f"lines.{index}.sku", f"sku {sku} appears twice; give one line per sku")
        seen.add(sku)


def _replay(stored: tuple[PurchaseOrder, dict[str, Any]], request: dict[str, Any], response: Response) -> PurchaseOrderRead:
    order, original = stored
    if original != request:
        raise HTTPException(409, f"purchase order {order.id} already exists with different content")
    response.status_code = 200
    return _read(order)


@router.post("/purchase-orders", status_code=201, responses={200: {"description": "replay of an identical create"}})
async def create_purchase_order(body: PurchaseOrderCreate, response: Response, context: Context) -> PurchaseOrderRead:
    """Inbound supply with its expected date; the same id with the same body replays (200)."""
    request = body.model_dump(mode="json")
    async with context.uow() as uow:
        stored = await purchasing.load(uow.session, body.id)
        if stored is not None:
            return _replay(stored, request, response)
        _not_in_past(body.expected_at)
        await _check_skus(uow.session, [line.sku for line in body.lines])
        lines = tuple(sorted((PurchaseOrderLine(line.sku, line.qty) for line in body.lines), key=lambda line: line.sku))
        order = PurchaseOrder(body.id, body.supplier, body.expected_at, lines)
        if not await purchasing.insert(uow, order, request):
            stored = await purchasing.load(uow.session, body.id)  # created concurrently
            assert stored is not None
            return _replay(stored, request, response)
    return _read(order)


@router.get("/purchase-orders/{po_id}")
async def get_purchase_order(po_id: PurchaseOrderId, context: Context) -> PurchaseOrderRead:
    async with context.sessions() as session:
        stored = await purchasing.load(session, po_id)
    if stored is None:
        raise HTTPException(404, f"unknown purchase order {po_id}")
    return _read(stored[0])


async def _load_for_change(session: AsyncSession, po_id: str) -> PurchaseOrder:
    stored = await purchasing.load(session, po_id, lock=True)
    if stored is None:
        raise HTTPException(404, f"unknown purchase order {po_id}")
    return stored[0]


@router.patch("/purchase-orders/{po_id}")
async def patch_purchase_order(po_id: PurchaseOrderId, body: PurchaseOrderPatch, context: Context) -> PurchaseOrderRead:
    """Move the expected date or change ordered quantities (per SKU; 0 cuts a line, never below
    what arrived). A change announces the new state; a request that changes nothing does not."""
    if body.expected_at is None and body.lines is None:
        raise invalid("body", "give expected_at and/or lines")
    async with context.uow() as uow:
        order = await _load_for_change(uow.session, po_id)
        if order.cancelled:
            raise HTTPException(409, f"purchase order {po_id} is cancelled")
        changed = order
        if body.expected_at is not None and body.expected_at != order.expected_at:
            _not_in_past(body.expected_at)
            changed = replace(changed, expected_at=body.expected_at)
        if body.lines is not None:
            await _check_skus(uow.session, [line.sku for line in body.lines])
            try:
                lines = domain.revise_lines(order.lines, {line.sku: line.qty for line in body.lines})
            except domain.BelowReceived as error:
                raise HTTPException(409, str(error)) from error
            changed = replace(changed, lines=lines)
        if changed != order:
            changed = await purchasing.save(uow, changed, "updated")
    return _read(changed)


@router.post("/purchase-orders/{po_id}/cancel")
async def cancel_purchase_order(po_id: PurchaseOrderId, context: Context) -> PurchaseOrderRead:
    """Nothing more will arrive on it; the waiting lines it covered lose that date. Idempotent."""
    async with context.uow() as uow:
        order = await _load_for_change(uow.session, po_id)
        if order.status == "closed":
            raise HTTPException(409, f"purchase order {po_id} is fully received and cannot be cancelled")
        if not order.cancelled:
            order = await purchasing.save(uow, replace(order, cancelled=True), "cancelled")
    return _read(order)


@router.post("/receipts", status_code=201, responses={200: {"description": "replay of an identical receipt"}})
async def post_receipt(body: ReceiptCreate, response: Response, context: Context) -> ReceiptRead:
    """Goods arrived at a warehouse: recorded once, then the allocator serves the backorder book
    with them (GoodsReceived). The same receipt_id with the same content replays (200)."""
    receipt = GoodsReceived(
        receipt_id=body.receipt_id, warehouse=body.warehouse, purchase_order_id=body.purchase_order_id,
        lines=tuple(ReceivedLine(sku=line.sku, qty=line.qty) for line in body.lines),
    )
    try:
        async with context.uow() as uow:
            outcome = await movements.receive_goods(uow, receipt, via="http")
            if outcome == "recorded":
                uow.emit(receipt, correlation_id=receipt.receipt_id)
    except UnknownSku as error:
        raise invalid(error.field, str(error)) from error
    except UnknownPurchaseOrder as error:
        raise invalid("purchase_order_id", str(error)) from error
    except ReceiptConflict as error:
        raise HTTPException(409, f"receipt {body.receipt_id} was already recorded with different content") from error
    if outcome == "replayed":
        response.status_code = 200
    return ReceiptRead(**body.model_dump(), outcome=outcome)
