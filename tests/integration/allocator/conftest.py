"""Fixtures of the allocator's in-process integration tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from integration.lock_race import service_sessions
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker


@pytest.fixture(scope="module")
async def sessions(stack: Any) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """Sessions on the session stack's allocator database, to run the allocator's own code in-process."""
    async with service_sessions(stack, "allocator") as made:
        yield made
