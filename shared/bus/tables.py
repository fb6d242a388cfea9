"""The bus tables every service database carries: the outbox (events to publish), the inbox
(events already handled) and the relay's consumed watermarks. Created by each service's migrations
through `create_bus_tables` and `create_relay_watermark_table`."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

OUTBOX_CHANNEL = "outbox"


def create_bus_tables() -> None:
    """Called from a service's first Alembic migration."""
    op.create_table(
        "outbox",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("event_id", sa.Uuid, nullable=False, unique=True),
        sa.Column("event_type", sa.Text, nullable=False),
        sa.Column("topic", sa.Text, nullable=False),
        sa.Column("key", sa.Text, nullable=False),
        sa.Column("envelope", JSONB, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("sent_at", sa.DateTime(timezone=True)),
        sa.Column("partition", sa.Integer),
        sa.Column("offset", sa.BigInteger),
        sa.Column("cluster_id", sa.Text),
    )
    # The relay claims unsent rows by id; retention deletes sent rows by age.
    op.create_index("outbox_unsent", "outbox", ["id"], postgresql_where=sa.text("sent_at IS NULL"))
    op.create_index("outbox_sent_at", "outbox", ["sent_at"], postgresql_where=sa.text("sent_at IS NOT NULL"))
    # Every insert wakes the relay at commit (a rolled-back NOTIFY is never delivered).
    op.execute(
        f"CREATE FUNCTION outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$ "
        f"BEGIN PERFORM pg_notify('{OUTBOX_CHANNEL}', ''); RETURN NULL; END $$"
    )
    op.execute("CREATE TRIGGER outbox_notify AFTER INSERT ON outbox FOR EACH STATEMENT EXECUTE FUNCTION outbox_notify()")
    op.create_table(
        "inbox",
        sa.Column("consumer", sa.Text, primary_key=True),
        sa.Column("event_id", sa.Uuid, primary_key=True),
        sa.Column("processed_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    )
    op.create_index("inbox_processed_at", "inbox", ["processed_at"])


def create_relay_watermark_table() -> None:
    """Per (cluster, topic, partition), the offset below which every consumer group of the project
    has committed: what a lost broker's consumers had already applied, so the relay republishes
    only the rest. In the database, not in memory, so it survives a kill -9 of everything."""
    op.create_table(
        "relay_watermark",
        sa.Column("cluster_id", sa.Text, primary_key=True),
        sa.Column("topic", sa.Text, primary_key=True),
        sa.Column("partition", sa.Integer, primary_key=True),
        sa.Column("consumed", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    )


def drop_relay_watermark_table() -> None:
    op.drop_table("relay_watermark")


def drop_bus_tables() -> None:
    op.drop_table("inbox")
    op.execute("DROP TRIGGER IF EXISTS outbox_notify ON outbox")
    op.execute("DROP FUNCTION IF EXISTS outbox_notify()")
    op.drop_table("outbox")
