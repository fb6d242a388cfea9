"""Preorders: units of a line that wait for their SKU's release date (line state `preordered`).

Revision ID: 0003
Revises: 0002
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("order_line", sa.Column("preordered", sa.Integer, nullable=False, server_default="0"))


def downgrade() -> None:
    op.drop_column("order_line", "preordered")
