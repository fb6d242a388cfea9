"""Inventory HTTP API for ops and product pages: SKU policy, stock, counts, availability, what to buy."""

from dataclasses import asdict
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Response
from sqlalchemy import text

from services.inventory import domain, movements, views
from services.inventory.movements import UnknownSku
from services.inventory.schemas import (
    AdjustmentCreate,
    AvailabilityRead,
    PurchaseSuggestionRead,
    SkuPolicyRead,
    SkuPolicyWrite,
    StockRead,
)
from shared.service import Context, invalid

router = APIRouter(prefix="/v1", tags=["stock"])

SkuPath = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._\-]*$")]

UPSERT_POLICY = text(
    "INSERT INTO sku_policy (sku, backorderable, discontinued, max_backorder_qty, supplier, safety_stock, case_pack, "
    "min_order_qty) "
    "VALUES (:sku, :backorderable, :discontinued, :max_backorder_qty, :supplier, :safety_stock, :case_pack, :min_order_qty) "
    "ON CONFLICT (sku) DO UPDATE SET backorderable = EXCLUDED.backorderable, discontinued = EXCLUDED.discontinued, "
    "max_backorder_qty = EXCLUDED.max_backorder_qty, supplier = EXCLUDED.supplier, safety_stock = EXCLUDED.safety_stock, "
    "case_pack = EXCLUDED.case_pack, min_order_qty = EXCLUDED.min_order_qty, updated_at = now() "
    "RETURNING (xmax = 0) AS created"
)
CREATE_STOCK = text("INSERT INTO stock (sku) VALUES (:sku) ON CONFLICT (sku) DO NOTHING")


@router.put("/skus/{sku}", status_code=200, responses={201: {"model": SkuPolicyRead, "description": "SKU created"}})
async def put_sku_policy(sku: SkuPath, body: SkuPolicyWrite, response: Response, context: Context) -> SkuPolicyRead:
    """Create or update a SKU's policy; a new SKU starts with an empty stock row."""
    async with context.uow() as uow:
        created = (await uow.session.execute(UPSERT_POLICY, {"sku": sku, **body.model_dump()})).scalar_one()
        await uow.session.execute(CREATE_STOCK, {"sku": sku})
    response.status_code = 201 if created else 200
    return SkuPolicyRead(sku=sku, **body.model_dump())


@router.get("/skus/{sku}")
async def get_sku_policy(sku: SkuPath, context: Context) -> SkuPolicyRead:
    async with context.sessions() as session:
        policy = await views.policy(session, sku)
    if policy is None:
        raise HTTPException(404, f"unknown sku {sku}")
    return SkuPolicyRead.model_validate(asdict(policy))


@router.get("/stock/{sku}")
async def get_stock(sku: SkuPath, context: Context) -> StockRead:
    """Every bucket of the SKU: where each unit that came in is now."""
    async with context.sessions() as session:
        stock = await views.stock_row(session, sku)
    if stock is None:
        raise HTTPException(404, f"unknown sku {sku}")
    return stock


@router.post("/stock-adjustments", status_code=201)
async def adjust_stock(body: AdjustmentCreate, context: Context) -> StockRead:
    """A count: found units (+) serve the backorder book first, through the allocator; missing
    units (-) leave the available stock (409 when fewer are available)."""
    try:
        async with context.uow() as uow:
            stock = await movements.adjust_count(uow, body.sku, body.delta, body.reason)
    except UnknownSku as error:
        raise invalid("sku", str(error)) from error
    except domain.NotEnoughStock as error:
        raise HTTPException(409, str(error)) from error
    return StockRead(sku=body.sku, **asdict(stock))


@router.get("/availability/{sku}")
async def get_availability(sku: SkuPath, context: Context) -> AvailabilityRead:
    """For product pages: in stock, backorder (with the expected date when a purchase order covers
    it) or out of stock."""
    async with context.sessions() as session:
        policy = await views.policy(session, sku)
        stock = await views.stock_row(session, sku)
        if policy is None or stock is None:
            raise HTTPException(404, f"unknown sku {sku}")
        inbound = await views.inbound_supply(session, sku)
    answer = domain.availability(policy, stock.available, stock.backordered, inbound)
    return AvailabilityRead(sku=sku, status=answer.status.value, available=answer.available, expected_at=answer.expected_at)


@router.get("/purchase-suggestions", tags=["purchasing"])
async def get_purchase_suggestions(context: Context) -> list[PurchaseSuggestionRead]:
    """Backorder demand not covered by open purchase orders (plus safety stock), one suggested
    purchase order per supplier, rounded to case packs and minimum order quantities."""
    async with context.sessions() as session:
        positions = await views.supply_positions(session)
    return [PurchaseSuggestionRead.model_validate(asdict(order)) for order in domain.purchase_suggestions(positions)]
