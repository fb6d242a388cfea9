"""The OpenAPI documents the problem answers a route gives, as application/problem+json bodies of
one Problem schema, and a 405 names every method served at its path."""

from __future__ import annotations

from typing import Any

import httpx
import jsonschema
from fastapi import FastAPI
from pydantic import BaseModel

from shared.problems import PROBLEM_JSON, problems
from shared.service import install_error_handlers


class Thing(BaseModel):
    name: str


def thing_app() -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/things/{name}", responses=problems({404: "No such thing"}))
    async def read_thing(name: str) -> Thing:
        return Thing(name=name)

    @app.put("/things/{name}", responses=problems(body=True))
    async def put_thing(name: str, body: Thing) -> Thing:
        return body

    @app.get("/count", responses=problems(params=False))
    async def count() -> int:
        return 0

    return app


def test_each_route_documents_its_own_problems_and_the_shared_ones_it_can_get() -> None:
    paths = thing_app().openapi()["paths"]
    statuses = {
        (method, path): sorted(answers)
        for path, item in paths.items() for method, operation in item.items() for answers in [operation["responses"]]
    }
    assert statuses == {
        ("get", "/things/{name}"): ["200", "404", "422", "503"],
        ("put", "/things/{name}"): ["200", "400", "413", "422", "503"],
        ("get", "/count"): ["200", "503"],
    }
    not_found = paths["/things/{name}"]["get"]["responses"]["404"]
    assert not_found["description"] == "No such thing"
    assert not_found["content"] == {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}}
    assert "Retry-After" in paths["/count"]["get"]["responses"]["503"]["headers"]


async def test_what_the_handlers_answer_matches_the_documented_problem_schema() -> None:
    app = thing_app()
    document: dict[str, Any] = app.openapi()
    problem_schema = {"$ref": "#/components/schemas/Problem", "components": document["components"]}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
        invalid = await client.put("/things/a", json={"name": 5})
        not_allowed = await client.delete("/things/a")
    for answer in (invalid, not_allowed):
        assert answer.headers["content-type"] == PROBLEM_JSON
        jsonschema.validate(answer.json(), problem_schema)
    assert invalid.json()["errors"] == [{"field": "name", "reason": "Input should be a valid string"}]
    assert not_allowed.status_code == 405 and not_allowed.headers["allow"] == "GET, PUT"
