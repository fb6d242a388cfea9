"""Alembic entry point of the inventory database (the body lives once, in shared.db)."""

from alembic import context

from services.inventory.tables import metadata
from shared.db import run_migrations

run_migrations(context.config, metadata)
