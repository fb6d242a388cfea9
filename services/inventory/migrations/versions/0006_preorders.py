"""Preorders: a SKU's release date and preorder cap, the units preordered per SKU and per line, and
the queue of preordered lines with what their release needs to place them in the book in turn.

Revision ID: 0006
Revises: 0005
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("sku_policy", sa.Column("release_date", sa.Date))
    op.add_column("sku_policy", sa.Column("preorder_cap", sa.BigInteger))
    for table in ("stock", "line_stock"):
        op.add_column(table, sa.Column("preordered", sa.BigInteger, nullable=False, server_default="0"))
        op.create_check_constraint(f"{table}_preordered_not_negative", table, "preordered >= 0")
    op.create_table(
        "preorder_line",
        sa.Column("order_id", sa.Uuid, primary_key=True),
        sa.Column("line_no", sa.Integer, primary_key=True),
        sa.Column("sku", sa.Text, nullable=False),
        sa.Column("qty", sa.BigInteger, nullable=False),
        sa.Column("ordered_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("tier", sa.Text, nullable=False),
        sa.Column("partial_allowed", sa.Boolean, nullable=False),
        sa.Column("order_short_lines", sa.Integer, nullable=False),
        sa.Column("release_date", sa.Date, nullable=False),  # the date the customer was last told
        sa.Column("released_at", sa.DateTime(timezone=True)),
    )
    op.create_index("preorder_line_waiting", "preorder_line", ["sku", "ordered_at"], postgresql_where=sa.text("released_at IS NULL"))


def downgrade() -> None:
    op.drop_index("preorder_line_waiting", "preorder_line")
    op.drop_table("preorder_line")
    for table in ("line_stock", "stock"):
        op.drop_constraint(f"{table}_preordered_not_negative", table)
        op.drop_column(table, "preordered")
    op.drop_column("sku_policy", "preorder_cap")
    op.drop_column("sku_policy", "release_date")
