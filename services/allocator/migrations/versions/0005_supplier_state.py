"""Where the goods of each open purchase order are by the supplier's word (open, confirmed, shipped,
received), so the book can show a waiting line the state of the purchase order that covers it.

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
    op.add_column("inbound_supply", sa.Column("supplier_state", sa.Text, nullable=False, server_default="open"))


def downgrade() -> None:
    op.drop_column("inbound_supply", "supplier_state")
