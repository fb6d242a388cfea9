"""Inventory tables: SKU policy, stock per SKU, what each order line holds, purchase orders and receipts."""

from datetime import date, datetime
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel


def _timestamp() -> Any:
    return Field(sa_column=sa.Column(sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()))


def _units() -> Any:
    return Field(default=0, sa_column_kwargs={"nullable": False, "server_default": "0"}, sa_type=sa.BigInteger)


class SkuPolicyRow(SQLModel, table=True):
    __tablename__ = "sku_policy"
    sku: str = Field(primary_key=True)
    backorderable: bool = True
    discontinued: bool = False
    max_backorder_qty: int | None = None
    supplier: str | None = None
    safety_stock: int = 0
    case_pack: int = 1
    min_order_qty: int = 0
    release_date: date | None = None
    preorder_cap: int | None = None
    updated_at: datetime = _timestamp()


class StockRow(SQLModel, table=True):
    """One row per SKU. Every bucket is CHECKed >= 0: the last line of defence against selling a
    unit twice (see store.lock_stock for the first)."""

    __tablename__ = "stock"
    __table_args__ = tuple(
        sa.CheckConstraint(f"{bucket} >= 0", name=f"stock_{bucket}_not_negative")
        for bucket in (
            "available", "reserved", "pending", "cross_docked", "shipped",
            "received", "counted_in", "counted_out", "backordered", "preordered",
        )
    )
    sku: str = Field(primary_key=True, foreign_key="sku_policy.sku")
    available: int = _units()
    reserved: int = _units()
    pending: int = _units()
    cross_docked: int = _units()
    shipped: int = _units()
    received: int = _units()
    counted_in: int = _units()
    counted_out: int = _units()
    backordered: int = _units()
    preordered: int = _units()
    short_seq: int = _units()  # shortfalls numbered so far (StockShort.short_seq)
    updated_at: datetime = _timestamp()


class LineStockRow(SQLModel, table=True):
    """What one order line holds; a cancelled line seen before its order is kept as a tombstone."""

    __tablename__ = "line_stock"
    __table_args__ = tuple(
        sa.CheckConstraint(f"{bucket} >= 0", name=f"line_stock_{bucket}_not_negative")
        for bucket in ("reserved", "cross_docked", "shipped", "waiting", "preordered")
    )
    order_id: UUID = Field(primary_key=True)
    line_no: int = Field(primary_key=True)
    sku: str
    reserved: int = _units()
    cross_docked: int = _units()
    shipped: int = _units()
    waiting: int = _units()
    cancelled: bool = False
    rejection: str | None = None
    short_seq: int = _units()  # which of its SKU's shortfalls this line waits on (0: none)
    preordered: int = _units()  # units waiting for the SKU's release date
    updated_at: datetime = _timestamp()


class PreorderLineRow(SQLModel, table=True):
    """A preordered line waiting for its release (released_at unset), with what its StockShort will
    need if the release finds too little stock, and the release date the customer was last told."""

    __tablename__ = "preorder_line"
    __table_args__ = (sa.Index("preorder_line_waiting", "sku", "ordered_at", postgresql_where=sa.text("released_at IS NULL")),)
    order_id: UUID = Field(primary_key=True)
    line_no: int = Field(primary_key=True)
    sku: str
    qty: int = Field(sa_type=sa.BigInteger)
    ordered_at: datetime = Field(sa_column=sa.Column(sa.DateTime(timezone=True), nullable=False))
    tier: str
    partial_allowed: bool
    order_short_lines: int
    release_date: date
    released_at: datetime | None = Field(default=None, sa_column=sa.Column(sa.DateTime(timezone=True)))


class PurchaseOrderRow(SQLModel, table=True):
    __tablename__ = "purchase_order"
    id: str = Field(primary_key=True)
    supplier: str
    expected_at: date
    status: str
    cancelled: bool = False
    version: int = 1
    create_request: dict[str, Any] = Field(sa_column=sa.Column(JSONB, nullable=False))
    created_at: datetime = _timestamp()
    updated_at: datetime = _timestamp()


class PurchaseOrderLineRow(SQLModel, table=True):
    __tablename__ = "purchase_order_line"
    purchase_order_id: str = Field(primary_key=True, foreign_key="purchase_order.id")
    sku: str = Field(primary_key=True, index=True)
    qty_ordered: int
    qty_received: int = 0


class PurchaseOrderSupplierStepRow(SQLModel, table=True):
    """A supplier-side state a purchase order reached (open, confirmed, shipped, received), once
    each; `report` is the request that reported it (null when its placing or receipts did), so the
    same request again is told from another report of the same state."""

    __tablename__ = "purchase_order_supplier_step"
    __table_args__ = (
        sa.CheckConstraint(
            "state IN ('open', 'confirmed', 'shipped', 'received')", name="purchase_order_supplier_step_state_known"
        ),
    )
    purchase_order_id: str = Field(primary_key=True, foreign_key="purchase_order.id")
    state: str = Field(primary_key=True)
    at: datetime = Field(sa_column=sa.Column(sa.DateTime(timezone=True), nullable=False))
    carrier: str | None = None
    tracking: str | None = None
    report: dict[str, Any] | None = Field(default=None, sa_column=sa.Column(JSONB))


class ReceiptRow(SQLModel, table=True):
    """A receipt recorded once, whether posted over HTTP or published to the receipts topic."""

    __tablename__ = "receipt"
    receipt_id: str = Field(primary_key=True)
    warehouse: str
    purchase_order_id: str | None = None
    lines: list[Any] = Field(sa_column=sa.Column(JSONB, nullable=False))
    received_at: datetime = _timestamp()
    via: str
    recorded_at: datetime = _timestamp()


class StockReleaseRow(SQLModel, table=True):
    """Units handed back to the allocator other than by a receipt (cancellation, count)."""

    __tablename__ = "stock_release"
    release_id: UUID = Field(primary_key=True)
    sku: str = Field(index=True)
    qty: int
    reason: str
    created_at: datetime = _timestamp()


class StockAdjustmentRow(SQLModel, table=True):
    __tablename__ = "stock_adjustment"
    id: int | None = Field(default=None, primary_key=True)
    sku: str = Field(index=True)
    delta: int
    reason: str
    release_id: UUID | None = None
    created_at: datetime = _timestamp()


class ShipmentLineRow(SQLModel, table=True):
    """Shipped lines already applied: a shipment reported twice moves its units once. A line may
    leave from the shelf (pick) and the receiving dock (cross_dock) in the same shipment."""

    __tablename__ = "shipment_line"
    shipment_id: UUID = Field(primary_key=True)
    line_no: int = Field(primary_key=True)
    source: str = Field(primary_key=True)
    order_id: UUID
    sku: str
    qty: int
    created_at: datetime = _timestamp()


class AppliedDecisionRow(SQLModel, table=True):
    """Allocator decisions already applied, by business key: one allocation per (arrival, line), one
    put-away per (arrival, SKU) with the nil order id and line 0. The same decision under another
    event id moves no unit twice."""

    __tablename__ = "applied_decision"
    source_id: str = Field(primary_key=True)
    sku: str = Field(primary_key=True)
    order_id: UUID = Field(primary_key=True)
    line_no: int = Field(primary_key=True)
    qty: int
    created_at: datetime = _timestamp()


class ParkedEventRow(SQLModel, table=True):
    """An event that arrived before what it depends on, read from another topic at another pace:
    an allocator decision about a receipt not recorded yet (`receipt:<id>`), or a shipment of units
    still on their way to the line (`order:<id>`). It is applied when that thing happens."""

    __tablename__ = "parked_event"
    id: int | None = Field(default=None, primary_key=True)
    awaits: str = Field(index=True)
    event_type: str
    payload: dict[str, Any] = Field(sa_column=sa.Column(JSONB, nullable=False))
    parked_at: datetime = _timestamp()


metadata = SQLModel.metadata
