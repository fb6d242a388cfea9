"""Races between topics: a shipment line may ship picked and cross-docked units, a shipment may wait
for its allocation, and put-aways learn which shortfalls the allocator had seen.

- shipment_line is keyed by (shipment, line, source): one line can leave from the shelf and the dock.
- parked_event waits for a named thing (`receipt:<id>` or `order:<id>`), not only a receipt.
- stock.short_seq numbers each SKU's shortfalls; line_stock.short_seq says which one a line waits on;
  stock.shorts_released is the newest shortfall already given units by a put-away (once each).

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
    op.drop_constraint("shipment_line_pkey", "shipment_line", type_="primary")
    op.create_primary_key("shipment_line_pkey", "shipment_line", ["shipment_id", "line_no", "source"])
    op.alter_column("parked_event", "receipt_id", new_column_name="awaits")
    op.execute("UPDATE parked_event SET awaits = 'receipt:' || awaits")
    op.execute("ALTER INDEX IF EXISTS ix_parked_event_receipt_id RENAME TO ix_parked_event_awaits")
    op.add_column("stock", sa.Column("short_seq", sa.BigInteger, nullable=False, server_default="0"))
    op.add_column("stock", sa.Column("shorts_released", sa.BigInteger, nullable=False, server_default="0"))
    op.add_column("line_stock", sa.Column("short_seq", sa.BigInteger, nullable=False, server_default="0"))
    op.create_index(
        "ix_line_stock_waiting_by_short", "line_stock", ["sku", "short_seq"], postgresql_where=sa.text("waiting > 0")
    )


def downgrade() -> None:
    op.drop_index("ix_line_stock_waiting_by_short", "line_stock")
    op.drop_column("line_stock", "short_seq")
    op.drop_column("stock", "shorts_released")
    op.drop_column("stock", "short_seq")
    op.execute("ALTER INDEX IF EXISTS ix_parked_event_awaits RENAME TO ix_parked_event_receipt_id")
    op.execute("UPDATE parked_event SET awaits = split_part(awaits, ':', 2)")
    op.alter_column("parked_event", "awaits", new_column_name="receipt_id")
    op.drop_constraint("shipment_line_pkey", "shipment_line", type_="primary")
    op.create_primary_key("shipment_line_pkey", "shipment_line", ["shipment_id", "line_no"])
