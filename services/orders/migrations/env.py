"""Alembic entry point of the orders database (the body lives once, in shared.db)."""

from alembic import context

from services.orders.tables import metadata
from shared.db import run_migrations

run_migrations(context.config, metadata)
