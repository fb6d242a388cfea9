"""Which errors mean "the database is out of reach" (retry, 503) rather than a bug, whether they come
through SQLAlchemy (the services) or straight from asyncpg (the relay's own connection)."""

from __future__ import annotations

import asyncpg
import pytest

from shared.bus.failures import is_transient, is_unreachable


@pytest.mark.parametrize(
    "error",
    [
        asyncpg.exceptions.CannotConnectNowError("the database system is starting up"),  # 57P03
        asyncpg.exceptions.AdminShutdownError("terminating connection due to administrator command"),  # 57P01
        asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed in the middle of operation"),  # 08003
        asyncpg.exceptions.TooManyConnectionsError("sorry, too many clients already"),  # 53300
        asyncpg.exceptions.InterfaceError("connection is closed"),
        ConnectionRefusedError(111, "Connection refused"),
    ],
)
def test_out_of_reach(error: BaseException) -> None:
    assert is_unreachable(error) and is_transient(error)


def test_a_deadlock_is_retried_but_the_database_was_reachable() -> None:
    error = asyncpg.exceptions.DeadlockDetectedError("deadlock detected")
    assert not is_unreachable(error)


@pytest.mark.parametrize(
    "error", [asyncpg.exceptions.UniqueViolationError("duplicate key"), ValueError("a bug"), KeyError("sku")]
)
def test_bugs_and_bad_data_are_not_outages(error: BaseException) -> None:
    assert not is_unreachable(error) and not is_transient(error)
