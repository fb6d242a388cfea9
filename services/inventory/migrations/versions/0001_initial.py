"""Bus tables, SKU policy, stock, line holdings, purchase orders, receipts.

Revision ID: 0001
Revises:
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

from shared.bus.tables import create_bus_tables, drop_bus_tables

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

STOCK_BUCKETS = (
    "available", "reserved", "pending", "cross_docked", "shipped",
    "received", "counted_in", "counted_out", "backordered",
)
LINE_BUCKETS = ("reserved", "cross_docked", "shipped", "waiting")


def _now() -> sa.Column:
    return sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now())


def _created() -> sa.Column:
    return sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now())


def upgrade() -> None:
    create_bus_tables()
    op.create_table(
        "sku_policy",
        sa.Column("sku", sa.Text, primary_key=True),
        sa.Column("backorderable", sa.Boolean, nullable=False),
        sa.Column("discontinued", sa.Boolean, nullable=False),
        sa.Column("max_backorder_qty", sa.BigInteger),
        sa.Column("supplier", sa.Text),
        sa.Column("safety_stock", sa.Integer, nullable=False),
        sa.Column("case_pack", sa.Integer, nullable=False),
        sa.Column("min_order_qty", sa.Integer, nullable=False),
        _now(),
    )
    op.create_index("sku_policy_supplier", "sku_policy", ["supplier"], postgresql_where=sa.text("supplier IS NOT NULL"))
    op.create_table(
        "stock",
        sa.Column("sku", sa.Text, sa.ForeignKey("sku_policy.sku"), primary_key=True),
        *[sa.Column(bucket, sa.BigInteger, nullable=False, server_default="0") for bucket in STOCK_BUCKETS],
        _now(),
        *[sa.CheckConstraint(f"{bucket} >= 0", name=f"stock_{bucket}_not_negative") for bucket in STOCK_BUCKETS],
    )
    op.create_table(
        "line_stock",
        sa.Column("order_id", sa.Uuid, primary_key=True),
        sa.Column("line_no", sa.Integer, primary_key=True),
        sa.Column("sku", sa.Text, nullable=False),
        *[sa.Column(bucket, sa.BigInteger, nullable=False, server_default="0") for bucket in LINE_BUCKETS],
        sa.Column("cancelled", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("rejection", sa.Text),
        _now(),
        *[sa.CheckConstraint(f"{bucket} >= 0", name=f"line_stock_{bucket}_not_negative") for bucket in LINE_BUCKETS],
    )
    op.create_table(
        "purchase_order",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("supplier", sa.Text, nullable=False),
        sa.Column("expected_at", sa.Date, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("cancelled", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("create_request", JSONB, nullable=False),
        _created(),
        _now(),
        sa.CheckConstraint("status IN ('open', 'cancelled', 'closed')", name="purchase_order_status_known"),
    )
    op.create_table(
        "purchase_order_line",
        sa.Column("purchase_order_id", sa.Text, sa.ForeignKey("purchase_order.id"), primary_key=True),
        sa.Column("sku", sa.Text, primary_key=True),
        sa.Column("qty_ordered", sa.BigInteger, nullable=False),
        sa.Column("qty_received", sa.BigInteger, nullable=False, server_default="0"),
        sa.CheckConstraint("qty_ordered >= 0 AND qty_received >= 0", name="purchase_order_line_not_negative"),
    )
    op.create_index("purchase_order_line_sku", "purchase_order_line", ["sku"])
    op.create_table(
        "receipt",
        sa.Column("receipt_id", sa.Text, primary_key=True),
        sa.Column("warehouse", sa.Text, nullable=False),
        sa.Column("purchase_order_id", sa.Text),
        sa.Column("lines", JSONB, nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("via", sa.Text, nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    )
    op.create_table(
        "stock_release",
        sa.Column("release_id", sa.Uuid, primary_key=True),
        sa.Column("sku", sa.Text, nullable=False, index=True),
        sa.Column("qty", sa.BigInteger, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        _created(),
    )
    op.create_table(
        "stock_adjustment",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("sku", sa.Text, nullable=False, index=True),
        sa.Column("delta", sa.BigInteger, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("release_id", sa.Uuid),
        _created(),
    )
    op.create_table(
        "shipment_line",
        sa.Column("shipment_id", sa.Uuid, primary_key=True),
        sa.Column("line_no", sa.Integer, primary_key=True),
        sa.Column("order_id", sa.Uuid, nullable=False),
        sa.Column("sku", sa.Text, nullable=False),
        sa.Column("qty", sa.BigInteger, nullable=False),
        sa.Column("source", sa.Text, nullable=False),
        _created(),
    )
    op.create_table(
        "parked_event",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("receipt_id", sa.Text, nullable=False, index=True),
        sa.Column("event_type", sa.Text, nullable=False),
        sa.Column("payload", JSONB, nullable=False),
        sa.Column("parked_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    )


def downgrade() -> None:
    for table in (
        "parked_event", "shipment_line", "stock_adjustment", "stock_release", "receipt",
        "purchase_order_line", "purchase_order", "line_stock", "stock", "sku_policy",
    ):
        op.drop_table(table)
    drop_bus_tables()
