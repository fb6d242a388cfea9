"""The last shortfall (StockShort.short_seq) the book of each SKU has taken in; every put-away
names it, so inventory can give units to lines the allocator had not seen yet.

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
    op.add_column("book_sku", sa.Column("shorts_seen", sa.BigInteger, nullable=False, server_default="0"))


def downgrade() -> None:
    op.drop_column("book_sku", "shorts_seen")
