"""What the allocator API accepts and shows: request and response models, apart from the tables."""

from __future__ import annotations

from datetime import date, datetime
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from services.allocator.domain.queue import PriorityPolicy


class PolicyUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    policy: PriorityPolicy


class PolicyRead(BaseModel):
    scope: str
    policy: PriorityPolicy
    lines_redated: int


class PoliciesRead(BaseModel):
    global_policy: PriorityPolicy = Field(serialization_alias="global")
    skus: dict[str, PriorityPolicy]


class BackorderRead(BaseModel):
    sku: str
    position: int = Field(description="1-based place in the SKU's queue under the policy in force")
    order_id: UUID
    line_no: int
    qty_waiting: int
    qty_allocated: int
    tier: str
    policy: PriorityPolicy
    promised_date: date | None
    covering_purchase_orders: list[str] = Field(
        description="the open purchase orders whose units reach this line, in arrival order (empty: none yet)"
    )
    ordered_at: datetime
    age_seconds: float


class SupplyRead(BaseModel):
    sku: str
    purchase_order_id: str
    qty_open: int = Field(description="units still to come (received units are not counted)")
    expected_at: date
    supplier_state: str = Field("open", description="where the goods are by the supplier's word: open, confirmed, shipped")


class BackorderPage(BaseModel):
    items: list[BackorderRead]
    total: int
    limit: int
    offset: int
    supply: list[SupplyRead] = Field(description="open purchase orders of the SKUs listed, by expected date")


class SkuStatsRead(BaseModel):
    sku: str
    lines_waiting: int
    units_waiting: int
    oldest_age_seconds: float | None
    fill_time_p50_seconds: float | None
    fill_time_p90_seconds: float | None
    lines_ordered: int
    lines_backordered: int
    backorder_rate: float | None = Field(description="lines backordered / lines ordered; null before any order is counted")


class StatsRead(BaseModel):
    items: list[SkuStatsRead]


class LineInQueue(BaseModel):
    """Where one waiting line of an order stands: its place among the SKU's waiting lines, and the
    purchase orders on their way to it."""

    sku: str
    line_no: int
    position: int = Field(description="1-based place among the lines waiting for the SKU, under the policy in force")
    lines_waiting: int = Field(description="lines waiting for the SKU, this one included")
    units_waiting: int = Field(description="units waiting for the SKU, this line's included")
    units_ahead: int = Field(description="units the lines before this one wait for")
    qty_waiting: int
    promised_date: date | None
    covering_purchase_orders: list[SupplyRead] = Field(description="the open purchase orders whose units reach this line")


class OrderQueueRead(BaseModel):
    order_id: UUID
    lines: list[LineInQueue] = Field(description="the order's lines waiting in the book (none when nothing waits)")
