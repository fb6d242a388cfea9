"""Database plumbing shared by the services: the async engine, sessions and Alembic migrations."""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import MetaData, pool
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from shared.settings import sqlalchemy_url

SERVICES_DIR = Path(__file__).resolve().parent.parent / "services"


def create_engine(url: str, pool_size: int = 10) -> AsyncEngine:
    """One pool per service process. Idle transactions are cut after 60 s so a stuck session
    cannot stop vacuum on the outbox and inbox tables. No ping before every checkout (a round trip
    per transaction, measured in the flash sale): a connection that died with its server fails on
    first use, SQLAlchemy then discards every connection of the pool made before, and that one
    request gets a 503 with Retry-After (an event is retried), as during the outage itself."""
    return create_async_engine(
        sqlalchemy_url(url),
        pool_size=pool_size,
        max_overflow=pool_size,
        connect_args={"server_settings": {"idle_in_transaction_session_timeout": "60000"}},
    )


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


def alembic_config(service: str, url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(SERVICES_DIR / service / "migrations"))
    config.set_main_option("sqlalchemy.url", sqlalchemy_url(url).replace("%", "%%"))
    return config


def migrate(service: str, url: str) -> None:
    """Bring the service's database to the newest schema (the `prestart` step)."""
    command.upgrade(alembic_config(service, url), "head")


def run_migrations(config: Config, target_metadata: MetaData) -> None:
    """Body of every service's migrations/env.py (online mode only: we always have a server)."""
    from alembic import context

    def do_run(connection: Connection) -> None:
        context.configure(connection=connection, target_metadata=target_metadata)
        with context.begin_transaction():
            context.run_migrations()

    async def run() -> None:
        engine = create_async_engine(config.get_main_option("sqlalchemy.url") or "", poolclass=pool.NullPool)
        async with engine.connect() as connection:
            await connection.run_sync(do_run)
        await engine.dispose()

    asyncio.run(run())
