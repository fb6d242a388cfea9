"""A bug in a route answers 500 with a problem body, logged once with its traceback (Starlette's
handler for Exception would also hand the error to the server, which logs it a second time)."""

from __future__ import annotations

import logging

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.exc import DBAPIError

from shared.service import install_error_handlers


@pytest.mark.parametrize(
    "bug",
    [RuntimeError("a bug"), DBAPIError("SELECT nonsense", {}, Exception("a bug: syntax error"))],
    ids=["plain", "sql_error_with_the_database_up"],
)
async def test_a_bug_is_a_500_problem_logged_once(bug: Exception, caplog: pytest.LogCaptureFixture) -> None:
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/boom")
    async def boom() -> None:
        raise bug

    caplog.set_level(logging.ERROR)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=True)  # a re-raised error would fail the call
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        answer = await client.get("/boom")
    assert answer.status_code == 500
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.json()["title"] == "Internal error" and "a bug" not in answer.text and "retry-after" not in answer.headers
    logged = [r for r in caplog.records if r.getMessage() == "unhandled error on GET /boom"]
    assert len(logged) == 1 and logged[0].exc_info is not None
