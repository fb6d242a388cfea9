"""Allocator tables: the backorder book, what was allocated from which supply, inbound supply and policies.

The schema is created by the hand-written migration (migrations/versions/0001_initial.py); these
models document it and give Alembic its metadata. Hot paths use set-based SQL in store.py.
"""

from datetime import date, datetime
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY
from sqlmodel import Field, SQLModel


def _timestamp(nullable: bool = False) -> sa.Column[datetime]:
    return sa.Column(sa.DateTime(timezone=True), nullable=nullable)


class BookSku(SQLModel, table=True):
    """One row per SKU the book has seen: the row every writer of the SKU's book locks first."""

    __tablename__ = "book_sku"
    sku: str = Field(primary_key=True)
    lines_ordered: int = 0
    lines_backordered: int = 0
    shorts_seen: int = Field(default=0, sa_type=sa.BigInteger)


class WaitingLineRow(SQLModel, table=True):
    """An order line in the book: waiting, filled, or cancelled (a cancelled line never seen short is
    a tombstone, so a StockShort that arrives after the cancellation is ignored)."""

    __tablename__ = "waiting_line"
    order_id: UUID = Field(primary_key=True)
    line_no: int = Field(primary_key=True)
    sku: str
    qty_short: int
    qty_waiting: int
    qty_allocated: int = 0
    ordered_at: datetime = Field(sa_column=_timestamp())
    tier: str
    partial_allowed: bool
    order_short_lines: int
    first_promised_date: date | None = None
    promised_date: date | None = None
    status: str
    booked_at: datetime | None = Field(default=None, sa_column=_timestamp(nullable=True))
    filled_at: datetime | None = Field(default=None, sa_column=_timestamp(nullable=True))
    cancelled_at: datetime | None = Field(default=None, sa_column=_timestamp(nullable=True))


class AllocationRow(SQLModel, table=True):
    """Units of one receipt or release given to one line; unique per business source and line."""

    __tablename__ = "allocation"
    __table_args__ = (
        sa.UniqueConstraint("source", "source_id", "sku", "order_id", "line_no", name="allocation_once_per_source"),
    )
    id: int | None = Field(default=None, primary_key=True)
    order_id: UUID
    line_no: int
    sku: str
    qty: int
    source: str
    source_id: str
    cross_dock: bool
    allocated_at: datetime = Field(sa_column=_timestamp())


class SupplyApplied(SQLModel, table=True):
    """A receipt or release already served to the book, per SKU: the idempotency key of supply."""

    __tablename__ = "supply_applied"
    source: str = Field(primary_key=True)
    source_id: str = Field(primary_key=True)
    sku: str = Field(primary_key=True)
    qty: int
    put_away: int
    applied_at: datetime = Field(sa_column=_timestamp())
    purchase_order_id: str | None = None  # the purchase order a receipt was delivered against


class InboundSupply(SQLModel, table=True):
    """An open purchase-order line as last told by inventory (newest version wins)."""

    __tablename__ = "inbound_supply"
    purchase_order_id: str = Field(primary_key=True)
    sku: str = Field(primary_key=True)
    qty_open: int
    expected_at: date
    version: int
    status: str
    receipt_ids: list[str] = Field(default_factory=list, sa_column=sa.Column(ARRAY(sa.Text), nullable=False))
    supplier_state: str = "open"


class PriorityPolicyRow(SQLModel, table=True):
    """The policy in force: scope "global" or a SKU (the SKU's own overrides the global one)."""

    __tablename__ = "priority_policy"
    scope: str = Field(primary_key=True)
    policy: str
    updated_at: datetime = Field(sa_column=_timestamp())


metadata = SQLModel.metadata
