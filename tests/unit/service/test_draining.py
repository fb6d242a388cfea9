"""Once intake is closed (the first step of a drain), writes are refused with a 503 a client can
retry elsewhere; reads are still answered."""

from __future__ import annotations

from types import SimpleNamespace

import httpx
from fastapi import FastAPI

from shared.service import DrainingMiddleware


async def test_a_draining_service_refuses_writes_and_still_answers_reads() -> None:
    app = FastAPI()
    app.add_middleware(DrainingMiddleware)
    app.state.context = SimpleNamespace(intake_open=True)

    @app.get("/thing")
    async def read() -> dict[str, str]:
        return {"read": "ok"}

    @app.post("/thing")
    async def write() -> dict[str, str]:
        return {"written": "ok"}

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
        assert (await client.post("/thing")).json() == {"written": "ok"}
        app.state.context.intake_open = False
        refused = await client.post("/thing")
        assert refused.status_code == 503 and refused.json()["title"] == "Service is draining"
        assert refused.headers["content-type"] == "application/problem+json"
        assert (await client.get("/thing")).json() == {"read": "ok"}
