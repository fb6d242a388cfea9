"""The relay's consumed watermark per (cluster, topic, partition): a restarted broker gets only the
outbox rows its consumers had not yet applied.

Revision ID: 0004
Revises: 0003
"""

from collections.abc import Sequence

from shared.bus.tables import create_relay_watermark_table, drop_relay_watermark_table

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    create_relay_watermark_table()


def downgrade() -> None:
    drop_relay_watermark_table()
