"""Lock races made deterministic: run a service's own code in two transactions of this process,
the first holding its locks until the second is seen waiting for them, then commit the first.

This is how a stale read after a lock wait shows (a change committed while the second writer
waited, then overwritten by it): by construction, not by luck of timing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.bus.outbox import UnitOfWork, unit_of_work
from shared.db import create_engine, session_factory

Step = Callable[[UnitOfWork], Awaitable[Any]]


@asynccontextmanager
async def service_sessions(stack: Any, service: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """Sessions on a service's own database, as the service makes them."""
    engine = create_engine(stack.settings.service_database_url(service), pool_size=2)
    try:
        yield session_factory(engine)
    finally:
        await engine.dispose()


async def lock_waiters(dsn: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return int(await conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
        ))
    finally:
        await conn.close()


class _RollBack(Exception):
    pass


async def race(stack: Any, service: str, first: Step, second: Step, commit_second: bool = True) -> None:
    """Run `first` in a transaction and keep it open; start `second` in another; once `second`
    waits for a lock, commit `first`; then let `second` finish and commit (or roll back, when the
    test only looks at what it decided). Both emit to the service's outbox as the service itself
    would (the relay publishes their events)."""
    dsn = stack.database_url(service)
    async with service_sessions(stack, service) as sessions:
        waiting_before = await lock_waiters(dsn)
        async with unit_of_work(sessions, service, stack.settings) as uow:
            await first(uow)

            async def run_second() -> None:
                try:
                    async with unit_of_work(sessions, service, stack.settings) as other:
                        await second(other)
                        if not commit_second:
                            raise _RollBack
                except _RollBack:
                    pass

            task = asyncio.create_task(run_second())
            for _ in range(200):
                if task.done() or await lock_waiters(dsn) > waiting_before:
                    break
                await asyncio.sleep(0.02)
            assert not task.done(), "the second transaction did not wait for the first one's lock"
        await task
