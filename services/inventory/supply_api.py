"""Inventory HTTP API for inbound supply: purchase orders (ops, ERP) and goods received (warehouse)."""

from typing import Annotated

from fastapi import APIRouter, Body, HTTPException, Path, Response

from services.inventory import handlers, views
from services.inventory.api import answered_as_http
from services.inventory.domain.supply import PurchaseOrder
from services.inventory.schemas import (
    PurchaseOrderConfirm,
    PurchaseOrderCreate,
    PurchaseOrderLineRead,
    PurchaseOrderPatch,
    PurchaseOrderRead,
    PurchaseOrderShip,
    ReceiptCreate,
    ReceiptRead,
    SupplierStepRead,
)
from shared.events import GoodsReceived, ReceivedLine
from shared.problems import problems
from shared.service import Context

router = APIRouter(prefix="/v1", tags=["purchasing"])

PurchaseOrderId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._\-]*$")]
UNKNOWN_PO = {404: "Unknown purchase order"}
# Rules no JSON Schema can state: they depend on today's date or on what inventory knows.
PO_INPUT = "Invalid input, an unknown SKU, a SKU on two lines or an expected_at before today (UTC): `errors` says which"
RECEIPT_INPUT = "Invalid input, an unknown SKU or an unknown purchase order: `errors` says which"
SUPPLIER_REPORT_ANSWERS = problems(
    UNKNOWN_PO | {
        409: "Cancelled or closed, or the supplier state was reached or passed already (by another request): `detail` says",
        422: "Invalid input, a time in the future or before the purchase order's last supplier state, or an expected_at"
             " before today (UTC): `errors` says which",
    },
    body=True,
)


def _read(order: PurchaseOrder) -> PurchaseOrderRead:
    lines = [
        PurchaseOrderLineRead(sku=line.sku, qty_ordered=line.qty_ordered, qty_received=line.qty_received, qty_open=line.qty_open)
        for line in order.lines
    ]
    history = [
        SupplierStepRead(state=step.state.value, at=step.at, carrier=step.carrier, tracking=step.tracking)
        for step in order.supplier_history
    ]
    return PurchaseOrderRead(
        id=order.id, supplier=order.supplier, expected_at=order.expected_at, status=order.status, version=order.version,
        lines=lines, supplier_state=order.supplier_state.value, supplier_history=history,
    )


@router.post(
    "/purchase-orders", status_code=201,
    responses={
        200: {"model": PurchaseOrderRead, "description": "Replay of an identical create"},
        **problems({409: "The id exists with different content", 422: PO_INPUT}, body=True),
    },
)
async def create_purchase_order(body: PurchaseOrderCreate, response: Response, context: Context) -> PurchaseOrderRead:
    """Inbound supply with its expected date; the same id with the same body replays (200)."""
    with answered_as_http():
        async with context.uow() as uow:
            order, replayed = await handlers.create_purchase_order(uow, body)
    if replayed:
        response.status_code = 200
    return _read(order)


@router.get("/purchase-orders/{po_id}", responses=problems(UNKNOWN_PO))
async def get_purchase_order(po_id: PurchaseOrderId, context: Context) -> PurchaseOrderRead:
    async with context.sessions() as session:
        order = await views.purchase_order(session, po_id)
    if order is None:
        raise HTTPException(404, f"unknown purchase order {po_id}")
    return _read(order)


@router.patch(
    "/purchase-orders/{po_id}",
    responses=problems(UNKNOWN_PO | {409: "Cancelled, or a quantity below what arrived", 422: PO_INPUT}, body=True),
)
async def patch_purchase_order(po_id: PurchaseOrderId, body: PurchaseOrderPatch, context: Context) -> PurchaseOrderRead:
    """Move the expected date or change ordered quantities (per SKU; 0 cuts a line, never below
    what arrived). A change announces the new state; a request that changes nothing does not."""
    with answered_as_http():
        async with context.uow() as uow:
            order = await handlers.patch_purchase_order(uow, po_id, body)
    return _read(order)


@router.post(
    "/purchase-orders/{po_id}/cancel", responses=problems(UNKNOWN_PO | {409: "Fully received: nothing left to cancel"})
)
async def cancel_purchase_order(po_id: PurchaseOrderId, context: Context) -> PurchaseOrderRead:
    """Nothing more will arrive on it; the waiting lines it covered lose that date. Idempotent."""
    with answered_as_http():
        async with context.uow() as uow:
            order = await handlers.cancel_purchase_order(uow, po_id)
    return _read(order)


@router.post("/purchase-orders/{po_id}/confirm", responses=SUPPLIER_REPORT_ANSWERS)
async def confirm_purchase_order(
    po_id: PurchaseOrderId, context: Context, body: Annotated[PurchaseOrderConfirm, Body(default_factory=PurchaseOrderConfirm)]
) -> PurchaseOrderRead:
    """The supplier confirmed the purchase order (at `confirmed_at`, or now), perhaps with a new
    expected date; announced as PurchaseOrderChanged `confirmed`. The same request again is a
    replay (200, nothing changes)."""
    with answered_as_http():
        async with context.uow() as uow:
            order = await handlers.confirm_purchase_order(uow, po_id, body)
    return _read(order)


@router.post("/purchase-orders/{po_id}/ship", responses=SUPPLIER_REPORT_ANSWERS)
async def ship_purchase_order(
    po_id: PurchaseOrderId, context: Context, body: Annotated[PurchaseOrderShip, Body(default_factory=PurchaseOrderShip)]
) -> PurchaseOrderRead:
    """The supplier shipped the goods (at `shipped_at`, or now), with the carrier and tracking
    reference when given, perhaps with a new expected date; announced as PurchaseOrderChanged
    `shipped`. A purchase order may be shipped without being confirmed first; the same request
    again is a replay (200, nothing changes)."""
    with answered_as_http():
        async with context.uow() as uow:
            order = await handlers.ship_purchase_order(uow, po_id, body)
    return _read(order)


@router.post(
    "/receipts", status_code=201,
    responses={
        200: {"model": ReceiptRead, "description": "Replay of an identical receipt"},
        **problems({409: "The receipt_id was recorded with other content", 422: RECEIPT_INPUT}, body=True),
    },
)
async def post_receipt(body: ReceiptCreate, response: Response, context: Context) -> ReceiptRead:
    """Goods arrived at a warehouse: recorded once, then the allocator serves the backorder book
    with them (GoodsReceived). The same receipt_id with the same content replays (200)."""
    receipt = GoodsReceived(
        receipt_id=body.receipt_id, warehouse=body.warehouse, purchase_order_id=body.purchase_order_id,
        lines=tuple(ReceivedLine(sku=line.sku, qty=line.qty) for line in body.lines),
    )
    with answered_as_http():
        async with context.uow() as uow:
            outcome = await handlers.receive_goods(uow, receipt)
    if outcome == "replayed":
        response.status_code = 200
    return ReceiptRead(**body.model_dump(), outcome=outcome)
