"""Allocator HTTP API for ops: read the backorder book and its statistics, set the priority policy."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query, Response
from pydantic import BaseModel, ConfigDict
from sqlalchemy import text

from services.allocator import book, views
from services.allocator.domain import EtaReason, PriorityPolicy, policy_in_force
from shared.service import Context, invalid

router = APIRouter(prefix="/v1", tags=["backorders"])

SKU_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._\-]*$"
SkuQuery = Annotated[str | None, Query(min_length=1, max_length=64, pattern=SKU_PATTERN, description="one SKU's queue")]
SkuPath = Annotated[str, Path(min_length=1, max_length=64, pattern=SKU_PATTERN)]

LOCK_GLOBAL_POLICY = text("SELECT policy FROM priority_policy WHERE scope = 'global' FOR UPDATE")
UPSERT_POLICY = text(
    """
    INSERT INTO priority_policy (scope, policy, updated_at) VALUES (:scope, :policy, :now)
    ON CONFLICT (scope) DO UPDATE SET policy = excluded.policy, updated_at = excluded.updated_at
    """
)
DELETE_POLICY = text("DELETE FROM priority_policy WHERE scope = :scope AND scope <> 'global' RETURNING policy")
# SKUs whose lines follow the global policy: waiting lines and no policy of their own.
SKUS_ON_GLOBAL_POLICY = text(
    """
    SELECT DISTINCT w.sku FROM waiting_line w
    WHERE w.status = 'waiting' AND NOT EXISTS (SELECT 1 FROM priority_policy p WHERE p.scope = w.sku)
    """
)


class PolicyUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    policy: PriorityPolicy


class PolicyRead(BaseModel):
    scope: str
    policy: PriorityPolicy
    lines_redated: int


@router.get("/backorders")
async def list_backorders(
    context: Context,
    sku: SkuQuery = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> views.BackorderPage:
    """Waiting lines in the order they will be served (per SKU, by SKU when none is given)."""
    async with context.sessions() as session:
        return await views.backorders(session, sku, limit, offset, datetime.now(UTC))


@router.get("/backorders/stats")
async def backorder_stats(context: Context, sku: SkuQuery = None) -> views.StatsRead:
    """Per SKU: lines and units waiting, oldest age, fill time p50/p90 and the backorder rate."""
    async with context.sessions() as session:
        return await views.stats(session, sku, datetime.now(UTC))


@router.get("/policies", tags=["policies"])
async def read_policies(context: Context) -> views.PoliciesRead:
    async with context.sessions() as session:
        return await views.policies(session)


@router.put("/policies/global", tags=["policies"])
async def set_global_policy(body: PolicyUpdate, context: Context) -> PolicyRead:
    """The default for every SKU without its own policy; the lines of those SKUs are re-dated."""
    async with context.uow() as uow:
        previous = (await uow.session.execute(LOCK_GLOBAL_POLICY)).scalar_one_or_none()
        await uow.session.execute(UPSERT_POLICY, {"scope": "global", "policy": body.policy.value, "now": datetime.now(UTC)})
        redated = 0
        if policy_in_force(None, previous) is not body.policy:
            skus = (await uow.session.execute(SKUS_ON_GLOBAL_POLICY)).scalars().all()
            # lock_book reads the policy after the upsert above: the new one.
            policies = await book.lock_book(uow.session, skus)
            redated = await book.redate(uow, policies, EtaReason.PRIORITY_CHANGED)
    return PolicyRead(scope="global", policy=body.policy, lines_redated=redated)


@router.put("/policies/skus/{sku}", tags=["policies"])
async def set_sku_policy(sku: SkuPath, body: PolicyUpdate, context: Context) -> PolicyRead:
    """A SKU's own policy, overriding the global one; its lines are re-dated."""
    if sku == "global":
        raise invalid("sku", "'global' names the default policy; set it with PUT /v1/policies/global")
    async with context.uow() as uow:
        before = await book.lock_book(uow.session, [sku])
        await uow.session.execute(UPSERT_POLICY, {"scope": sku, "policy": body.policy.value, "now": datetime.now(UTC)})
        redated = 0
        if before[sku] is not body.policy:
            redated = await book.redate(uow, {sku: body.policy}, EtaReason.PRIORITY_CHANGED)
    return PolicyRead(scope=sku, policy=body.policy, lines_redated=redated)


@router.delete("/policies/skus/{sku}", tags=["policies"], status_code=204)
async def delete_sku_policy(sku: SkuPath, context: Context) -> Response:
    """The SKU follows the global policy again; its lines are re-dated if that changes their order."""
    async with context.uow() as uow:
        before = await book.lock_book(uow.session, [sku])
        deleted = (await uow.session.execute(DELETE_POLICY, {"scope": sku})).first()
        if deleted is None:
            raise HTTPException(404, f"SKU {sku} has no policy of its own")
        after = await book.lock_book(uow.session, [sku])
        if before[sku] is not after[sku]:
            await book.redate(uow, after, EtaReason.PRIORITY_CHANGED)
    return Response(status_code=204)
