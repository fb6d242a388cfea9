"""Alembic entry point of the allocator database (the body lives once, in shared.db)."""

from alembic import context

from services.allocator.tables import metadata
from shared.db import run_migrations

run_migrations(context.config, metadata)
