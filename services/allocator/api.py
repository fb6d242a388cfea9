"""Allocator HTTP API for ops: read the backorder book and its statistics, set the priority policy."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, HTTPException, Path, Query, Response

from services.allocator import handlers, views
from services.allocator.handlers import NotFound
from services.allocator.schemas import BackorderPage, OrderQueueRead, PoliciesRead, PolicyRead, PolicyUpdate, StatsRead
from shared.problems import problems
from shared.service import Context, invalid

router = APIRouter(prefix="/v1", tags=["backorders"])

SKU_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._\-]*$"
SkuQuery = Annotated[str | None, Query(min_length=1, max_length=64, pattern=SKU_PATTERN, description="one SKU's queue")]
SkuPath = Annotated[str, Path(min_length=1, max_length=64, pattern=SKU_PATTERN)]


@router.get("/backorders", responses=problems())
async def list_backorders(
    context: Context,
    sku: SkuQuery = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> BackorderPage:
    """Waiting lines in the order they will be served (per SKU, by SKU when none is given)."""
    async with context.sessions() as session:
        return await views.backorders(session, sku, limit, offset, datetime.now(UTC))


@router.get("/backorders/orders/{order_id}", responses=problems())
async def order_in_queue(order_id: UUID, context: Context) -> OrderQueueRead:
    """Where an order's waiting lines stand in their SKUs' queues, with the purchase orders coming
    to each (orders shows it on the order; an order with nothing waiting has no lines here)."""
    async with context.sessions() as session:
        return await views.order_queue(session, order_id, datetime.now(UTC))


@router.get("/backorders/stats", responses=problems())
async def backorder_stats(context: Context, sku: SkuQuery = None) -> StatsRead:
    """Per SKU: lines and units waiting, oldest age, fill time p50/p90 and the backorder rate."""
    async with context.sessions() as session:
        return await views.stats(session, sku, datetime.now(UTC))


@router.get("/policies", tags=["policies"], responses=problems(params=False))
async def read_policies(context: Context) -> PoliciesRead:
    async with context.sessions() as session:
        return await views.policies(session)


@router.put("/policies/global", tags=["policies"], responses=problems(body=True))
async def set_global_policy(body: PolicyUpdate, context: Context) -> PolicyRead:
    """The default for every SKU without its own policy; the lines of those SKUs are re-dated."""
    async with context.uow() as uow:
        redated = await handlers.set_global_policy(uow, body.policy)
    return PolicyRead(scope="global", policy=body.policy, lines_redated=redated)


@router.put("/policies/skus/{sku}", tags=["policies"], responses=problems(body=True))
async def set_sku_policy(sku: SkuPath, body: PolicyUpdate, context: Context) -> PolicyRead:
    """A SKU's own policy, overriding the global one; its lines are re-dated."""
    if sku == "global":
        raise invalid("sku", "'global' names the default policy; set it with PUT /v1/policies/global")
    async with context.uow() as uow:
        redated = await handlers.set_sku_policy(uow, sku, body.policy)
    return PolicyRead(scope=sku, policy=body.policy, lines_redated=redated)


@router.delete(
    "/policies/skus/{sku}", tags=["policies"], status_code=204, responses=problems({404: "The SKU has no policy of its own"})
)
async def delete_sku_policy(sku: SkuPath, context: Context) -> Response:
    """The SKU follows the global policy again; its lines are re-dated if that changes their order."""
    try:
        async with context.uow() as uow:
            await handlers.delete_sku_policy(uow, sku)
    except NotFound as error:
        raise HTTPException(404, str(error)) from error
    return Response(status_code=204)
