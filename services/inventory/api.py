"""Inventory HTTP API for ops and product pages: SKU policy, stock, counts, availability, what to buy."""

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Response

from services.inventory import handlers, views
from services.inventory.domain.stock import SkuPolicy
from services.inventory.domain.supply import availability, purchase_suggestions
from services.inventory.handlers import Conflict, Invalid, NotFound
from services.inventory.schemas import (
    AdjustmentCreate,
    AvailabilityRead,
    PurchaseSuggestionRead,
    SkuPolicyRead,
    SkuPolicyWrite,
    StockRead,
)
from shared.problems import problems
from shared.service import Context, invalid

router = APIRouter(prefix="/v1", tags=["stock"])

SkuPath = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._\-]*$")]
UNKNOWN_SKU = {404: "Unknown SKU"}


@contextmanager
def answered_as_http() -> Iterator[None]:
    """What a handler refuses, as problem details: 422 naming the field, 404, 409."""
    try:
        yield
    except Invalid as error:
        raise invalid(error.field, str(error)) from error
    except NotFound as error:
        raise HTTPException(404, str(error)) from error
    except Conflict as error:
        raise HTTPException(409, str(error)) from error


@router.put(
    "/skus/{sku}", status_code=200,
    responses={201: {"model": SkuPolicyRead, "description": "SKU created"}, **problems(body=True)},
)
async def put_sku_policy(sku: SkuPath, body: SkuPolicyWrite, response: Response, context: Context) -> SkuPolicyRead:
    """Create or update a SKU's policy; a new SKU starts with an empty stock row."""
    async with context.uow() as uow:
        created = await handlers.put_sku_policy(uow, SkuPolicy(sku, **body.model_dump()))
    response.status_code = 201 if created else 200
    return SkuPolicyRead(sku=sku, **body.model_dump())


@router.get("/skus/{sku}", responses=problems(UNKNOWN_SKU))
async def get_sku_policy(sku: SkuPath, context: Context) -> SkuPolicyRead:
    async with context.sessions() as session:
        policy = await views.policy(session, sku)
    if policy is None:
        raise HTTPException(404, f"unknown sku {sku}")
    return SkuPolicyRead.model_validate(asdict(policy))


@router.get("/stock/{sku}", responses=problems(UNKNOWN_SKU))
async def get_stock(sku: SkuPath, context: Context) -> StockRead:
    """Every bucket of the SKU: where each unit that came in is now."""
    async with context.sessions() as session:
        stock = await views.stock_row(session, sku)
    if stock is None:
        raise HTTPException(404, f"unknown sku {sku}")
    return stock


@router.post(
    "/stock-adjustments", status_code=201,
    responses=problems({409: "Fewer units available than the count takes away", 422: "Invalid input, or an unknown SKU:"
                        " `errors` lists each field and why"}, body=True),
)
async def adjust_stock(body: AdjustmentCreate, context: Context) -> StockRead:
    """A count: found units (+) serve the backorder book first, through the allocator; missing
    units (-) leave the available stock (409 when fewer are available)."""
    with answered_as_http():
        async with context.uow() as uow:
            stock = await handlers.adjust_count(uow, body.sku, body.delta, body.reason)
    return StockRead(sku=body.sku, **asdict(stock))


@router.get("/availability/{sku}", responses=problems(UNKNOWN_SKU))
async def get_availability(sku: SkuPath, context: Context) -> AvailabilityRead:
    """For product pages: in stock, backorder (with the expected date when a purchase order covers
    it) or out of stock."""
    async with context.sessions() as session:
        policy = await views.policy(session, sku)
        stock = await views.stock_row(session, sku)
        if policy is None or stock is None:
            raise HTTPException(404, f"unknown sku {sku}")
        inbound = await views.inbound_supply(session, sku)
    answer = availability(policy, stock.available, stock.backordered, inbound, stock.preordered, datetime.now(UTC).date())
    return AvailabilityRead(sku=sku, status=answer.status.value, available=answer.available, expected_at=answer.expected_at)


@router.get("/purchase-suggestions", tags=["purchasing"], responses=problems(params=False))
async def get_purchase_suggestions(context: Context) -> list[PurchaseSuggestionRead]:
    """Backorder demand not covered by open purchase orders (plus safety stock), one suggested
    purchase order per supplier, rounded to case packs and minimum order quantities."""
    async with context.sessions() as session:
        positions = await views.supply_positions(session)
    return [PurchaseSuggestionRead.model_validate(asdict(order)) for order in purchase_suggestions(positions)]
