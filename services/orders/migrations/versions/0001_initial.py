"""Bus tables, orders, order lines, shipments and applied allocations.

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

TIMESTAMPTZ = sa.DateTime(timezone=True)
COUNTERS = ("reserved", "qty_short", "allocated_pick", "allocated_cross_dock", "requested_pick", "requested_cross_dock", "shipped", "cancelled")


def upgrade() -> None:
    create_bus_tables()
    op.create_table(
        "orders",
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column("external_id", sa.Text, nullable=False),
        sa.Column("channel", sa.Text, nullable=False),
        sa.Column("idempotency_key", sa.Text, unique=True),
        sa.Column("request_hash", sa.Text, nullable=False),
        sa.Column("customer_id", sa.Text, nullable=False),
        sa.Column("customer_email", sa.Text, nullable=False),
        sa.Column("customer_locale", sa.Text, nullable=False),
        sa.Column("customer_tier", sa.Text, nullable=False),
        sa.Column("partial_allowed", sa.Boolean, nullable=False),
        sa.Column("placed_at", TIMESTAMPTZ, nullable=False),
        sa.Column("response", JSONB, nullable=False),
        sa.UniqueConstraint("channel", "external_id", name="orders_channel_external_id"),
    )
    op.create_index("orders_placed_at", "orders", ["placed_at"])
    op.create_table(
        "order_line",
        sa.Column("order_id", sa.Uuid, sa.ForeignKey("orders.id"), primary_key=True),
        sa.Column("line_no", sa.Integer, primary_key=True),
        sa.Column("sku", sa.Text, nullable=False),
        sa.Column("qty", sa.Integer, sa.CheckConstraint("qty > 0"), nullable=False),
        *(sa.Column(name, sa.Integer, sa.CheckConstraint(f"{name} >= 0"), nullable=False, server_default="0") for name in COUNTERS),
        sa.Column("cancel_reason", sa.Text),
        sa.Column("rejected_reason", sa.Text),
        sa.Column("expected_date", sa.Date),
        sa.Column("state", sa.Text, nullable=False),
        sa.CheckConstraint("shipped + cancelled <= qty", name="order_line_shipped_cancelled_le_qty"),
    )
    op.create_index("order_line_state", "order_line", ["state", "order_id"])
    op.create_table(
        "shipment",
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column("order_id", sa.Uuid, sa.ForeignKey("orders.id"), nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("lines", JSONB, nullable=False),
        sa.Column("requested_at", TIMESTAMPTZ, nullable=False),
        sa.Column("shipped_at", TIMESTAMPTZ),
    )
    op.create_index("shipment_order_id", "shipment", ["order_id"])
    op.create_table(
        "applied_allocation",
        sa.Column("order_id", sa.Uuid, primary_key=True),
        sa.Column("line_no", sa.Integer, primary_key=True),
        sa.Column("source_id", sa.Text, primary_key=True),
        sa.Column("qty", sa.Integer, nullable=False),
        sa.Column("cross_dock", sa.Boolean, nullable=False),
        sa.Column("applied_at", TIMESTAMPTZ, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("applied_allocation")
    op.drop_table("shipment")
    op.drop_table("order_line")
    op.drop_table("orders")
    drop_bus_tables()
