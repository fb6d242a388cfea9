"""Which failures are an outage of a server (retry it, answer 503, log it once) and which are a bug
or bad data (dead-letter it, answer 500): the one place that tells them apart, for the services'
HTTP errors, the consumer's retries and the relay's log."""

from __future__ import annotations

import asyncio

import asyncpg
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

UNREACHABLE = (
    OperationalError, InterfaceError, PoolTimeoutError, ConnectionError, OSError, asyncio.TimeoutError,
    asyncpg.exceptions.InterfaceError,  # asyncpg's own "connection is closed" (the relay's dedicated connection)
)


def _sqlstate(error: DBAPIError) -> str:
    return str(getattr(error.orig, "sqlstate", "") or "")


def is_unreachable(error: BaseException) -> bool:
    """The database cannot be used right now: connection refused or reset, a server starting or
    shutting down, out of connections or resources, the pool timing out (SQLSTATE classes 08, 53,
    57P). The HTTP side answers these with 503 + Retry-After, the consumer and the relay retry them.
    Raised through SQLAlchemy (services) or by asyncpg itself (the relay's own connection)."""
    if isinstance(error, UNREACHABLE):
        return True
    if isinstance(error, DBAPIError):
        sqlstate = _sqlstate(error)
        return error.connection_invalidated or _unreachable_state(sqlstate)
    if isinstance(error, asyncpg.PostgresError):
        return _unreachable_state(str(error.sqlstate or ""))
    return False


def _unreachable_state(sqlstate: str) -> bool:
    return sqlstate[:2] in {"08", "53"} or sqlstate.startswith("57P")


def is_transient(error: BaseException) -> bool:
    """Worth retrying without dead-lettering: an unreachable database, and deadlocks and
    serialization failures (SQLSTATE class 40), which succeed when run again."""
    return is_unreachable(error) or (isinstance(error, DBAPIError) and _sqlstate(error)[:2] == "40")
