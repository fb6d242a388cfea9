"""Preorders: units of a line that wait for their SKU's release date.

Revision ID: 0004
Revises: 0003
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("line_state", sa.Column("preordered", sa.Integer, nullable=False, server_default="0"))


def downgrade() -> None:
    op.drop_column("line_state", "preordered")
