"""Receipts against purchase orders: which purchase order a receipt served, and which receipts a
purchase order copy has already deducted, so open supply is never counted twice or not at all.

Revision ID: 0002
Revises: 0001
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import ARRAY

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("supply_applied", sa.Column("purchase_order_id", sa.Text))
    op.create_index(
        "supply_applied_purchase_order", "supply_applied", ["purchase_order_id", "sku"],
        postgresql_where=sa.text("purchase_order_id IS NOT NULL"),
    )
    op.add_column("inbound_supply", sa.Column("receipt_ids", ARRAY(sa.Text), nullable=False, server_default="{}"))


def downgrade() -> None:
    op.drop_column("inbound_supply", "receipt_ids")
    op.drop_index("supply_applied_purchase_order", "supply_applied")
    op.drop_column("supply_applied", "purchase_order_id")
