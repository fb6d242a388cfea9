"""Bus tables and the backorder book: waiting lines, allocations, supply applied, inbound supply, policies.

Revision ID: 0001
Revises:
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from shared.bus.tables import create_bus_tables, drop_bus_tables

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIMESTAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    create_bus_tables()
    op.create_table(
        "book_sku",
        sa.Column("sku", sa.Text, primary_key=True),
        sa.Column("lines_ordered", sa.Integer, nullable=False, server_default="0"),
        sa.Column("lines_backordered", sa.Integer, nullable=False, server_default="0"),
    )
    op.create_table(
        "waiting_line",
        sa.Column("order_id", sa.Uuid, primary_key=True),
        sa.Column("line_no", sa.Integer, primary_key=True),
        sa.Column("sku", sa.Text, nullable=False),
        sa.Column("qty_short", sa.Integer, nullable=False),
        sa.Column("qty_waiting", sa.Integer, nullable=False),
        sa.Column("qty_allocated", sa.Integer, nullable=False, server_default="0"),
        sa.Column("ordered_at", TIMESTAMP, nullable=False),
        sa.Column("tier", sa.Text, nullable=False),
        sa.Column("partial_allowed", sa.Boolean, nullable=False),
        sa.Column("order_short_lines", sa.Integer, nullable=False),
        sa.Column("first_promised_date", sa.Date),
        sa.Column("promised_date", sa.Date),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("booked_at", TIMESTAMP),
        sa.Column("filled_at", TIMESTAMP),
        sa.Column("cancelled_at", TIMESTAMP),
        sa.CheckConstraint("status IN ('waiting', 'filled', 'cancelled')", name="waiting_line_status"),
        sa.CheckConstraint("qty_waiting >= 0 AND qty_allocated >= 0", name="waiting_line_qty_not_negative"),
        # The last line of defence against over-allocation.
        sa.CheckConstraint("qty_allocated + qty_waiting <= qty_short", name="waiting_line_not_overfilled"),
    )
    op.create_index("waiting_line_sku_status", "waiting_line", ["sku", "status"])
    # Lets the allocator skip re-dating a SKU that has no dated line and no inbound supply.
    op.create_index(
        "waiting_line_dated", "waiting_line", ["sku"], postgresql_where=sa.text("status = 'waiting' AND promised_date IS NOT NULL")
    )
    op.create_table(
        "allocation",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("order_id", sa.Uuid, nullable=False),
        sa.Column("line_no", sa.Integer, nullable=False),
        sa.Column("sku", sa.Text, nullable=False),
        sa.Column("qty", sa.Integer, sa.CheckConstraint("qty > 0", name="allocation_qty_positive"), nullable=False),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("source_id", sa.Text, nullable=False),
        sa.Column("cross_dock", sa.Boolean, nullable=False),
        sa.Column("allocated_at", TIMESTAMP, nullable=False),
        sa.UniqueConstraint("source", "source_id", "sku", "order_id", "line_no", name="allocation_once_per_source"),
    )
    op.create_index("allocation_line", "allocation", ["order_id", "line_no"])
    op.create_table(
        "supply_applied",
        sa.Column("source", sa.Text, primary_key=True),
        sa.Column("source_id", sa.Text, primary_key=True),
        sa.Column("sku", sa.Text, primary_key=True),
        sa.Column("qty", sa.Integer, nullable=False),
        sa.Column("put_away", sa.Integer, nullable=False),
        sa.Column("applied_at", TIMESTAMP, nullable=False),
    )
    op.create_table(
        "inbound_supply",
        sa.Column("purchase_order_id", sa.Text, primary_key=True),
        sa.Column("sku", sa.Text, primary_key=True),
        sa.Column("qty_open", sa.Integer, nullable=False),
        sa.Column("expected_at", sa.Date, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
    )
    op.create_index("inbound_supply_sku", "inbound_supply", ["sku"], postgresql_where=sa.text("status = 'open' AND qty_open > 0"))
    op.create_table(
        "priority_policy",
        sa.Column("scope", sa.Text, primary_key=True),
        sa.Column("policy", sa.Text, nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False, server_default=sa.func.now()),
    )
    op.execute("INSERT INTO priority_policy (scope, policy) VALUES ('global', 'fifo')")


def downgrade() -> None:
    for table in ("priority_policy", "inbound_supply", "supply_applied", "allocation", "waiting_line", "book_sku"):
        op.drop_table(table)
    drop_bus_tables()
