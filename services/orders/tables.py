"""Orders tables: orders, their lines and the units behind each, shipments, applied allocations."""

from datetime import date, datetime
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel


def _timestamptz(nullable: bool = False) -> Any:
    return Field(sa_column=sa.Column(sa.DateTime(timezone=True), nullable=nullable))


class OrderRow(SQLModel, table=True):
    """One order; (channel, external_id) and the idempotency key each identify it for replays."""

    __tablename__ = "orders"
    __table_args__ = (
        sa.UniqueConstraint("channel", "external_id", name="orders_channel_external_id"),
        sa.Index("orders_placed_at", "placed_at"),
    )
    id: UUID = Field(primary_key=True)
    external_id: str
    channel: str
    idempotency_key: str | None = Field(default=None, sa_column=sa.Column(sa.Text, unique=True))
    request_hash: str
    customer_id: str
    customer_email: str
    customer_locale: str
    customer_tier: str
    partial_allowed: bool
    placed_at: datetime = _timestamptz()
    response: dict[str, Any] = Field(sa_column=sa.Column(JSONB, nullable=False))


class OrderLineRow(SQLModel, table=True):
    """The units of one line; `state` is derived by the domain and stored for listing by state."""

    __tablename__ = "order_line"
    __table_args__ = (sa.Index("order_line_state", "state", "order_id"),)
    order_id: UUID = Field(primary_key=True, foreign_key="orders.id")
    line_no: int = Field(primary_key=True)
    sku: str
    qty: int
    reserved: int = 0
    qty_short: int = 0
    allocated_pick: int = 0
    allocated_cross_dock: int = 0
    requested_pick: int = 0
    requested_cross_dock: int = 0
    shipped: int = 0
    cancelled: int = 0
    cancel_reason: str | None = None
    rejected_reason: str | None = None
    expected_date: date | None = None
    state: str


class ShipmentRow(SQLModel, table=True):
    """Units asked of the warehouse (`requested`), confirmed (`shipped`) or withdrawn (`cancelled`)."""

    __tablename__ = "shipment"
    __table_args__ = (sa.Index("shipment_order_id", "order_id"),)
    id: UUID = Field(primary_key=True)
    order_id: UUID = Field(foreign_key="orders.id")
    status: str
    lines: list[dict[str, Any]] = Field(sa_column=sa.Column(JSONB, nullable=False))
    requested_at: datetime = _timestamptz()
    shipped_at: datetime | None = _timestamptz(nullable=True)


class AppliedAllocation(SQLModel, table=True):
    """BackorderAllocated facts already counted, so a duplicate under a new event id adds nothing."""

    __tablename__ = "applied_allocation"
    order_id: UUID = Field(primary_key=True)
    line_no: int = Field(primary_key=True)
    source_id: str = Field(primary_key=True)
    qty: int
    cross_dock: bool
    applied_at: datetime = _timestamptz()


metadata = SQLModel.metadata


class LinePromiseRow(SQLModel, table=True):
    """One date a line was promised, as the event that told it said (its history, oldest first)."""

    __tablename__ = "line_promise"
    order_id: UUID = Field(primary_key=True)
    line_no: int = Field(primary_key=True)
    event_id: UUID = Field(primary_key=True)
    promised_date: date | None = None
    previous_date: date | None = None
    reason: str
    at: datetime = _timestamptz()
