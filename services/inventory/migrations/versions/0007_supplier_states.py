"""Purchase orders' supplier-side states: one row per state a purchase order reached (open,
confirmed, shipped, received), when, a shipment's carrier and tracking reference, and the request
that reported it (to tell a replay from a clash). Existing purchase orders get `open` at their
creation, and `received` when every line has arrived (at their last receipt, or their last change).

Revision ID: 0007
Revises: 0006
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "purchase_order_supplier_step",
        sa.Column("purchase_order_id", sa.Text, sa.ForeignKey("purchase_order.id"), primary_key=True),
        sa.Column("state", sa.Text, primary_key=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("carrier", sa.Text),
        sa.Column("tracking", sa.Text),
        sa.Column("report", JSONB),
        sa.CheckConstraint(
            "state IN ('open', 'confirmed', 'shipped', 'received')", name="purchase_order_supplier_step_state_known"
        ),
    )
    op.execute(
        "INSERT INTO purchase_order_supplier_step (purchase_order_id, state, at) SELECT id, 'open', created_at FROM purchase_order"
    )
    op.execute(
        "INSERT INTO purchase_order_supplier_step (purchase_order_id, state, at) "
        "SELECT po.id, 'received', GREATEST(po.created_at, COALESCE(r.last_received_at, po.updated_at)) "
        "FROM purchase_order po "
        "JOIN (SELECT purchase_order_id FROM purchase_order_line GROUP BY purchase_order_id "
        "      HAVING bool_and(qty_received >= qty_ordered) AND sum(qty_received) > 0) l ON l.purchase_order_id = po.id "
        "LEFT JOIN (SELECT purchase_order_id, max(received_at) AS last_received_at FROM receipt GROUP BY purchase_order_id) r "
        "  ON r.purchase_order_id = po.id "
        "WHERE NOT po.cancelled"
    )


def downgrade() -> None:
    op.drop_table("purchase_order_supplier_step")
