"""Drop stock.shorts_released: every put-away is now judged against the lines still waiting on
shortfalls the allocator had not booked, so no per-SKU mark of served shortfalls is kept (it hid
waiting lines from every put-away after the first).

Revision ID: 0005
Revises: 0004
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_column("stock", "shorts_released")


def downgrade() -> None:
    op.add_column("stock", sa.Column("shorts_released", sa.BigInteger, nullable=False, server_default="0"))
