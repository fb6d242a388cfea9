"""Problem details (RFC 9457) as the OpenAPI documents them: the body of every 4xx/5xx answer of
the services, the `responses=` entries with which a route states which of them it gives, and the
Allow header of a 405."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Literal

from fastapi import FastAPI, Request
from pydantic import BaseModel, Field
from starlette.routing import Route

PROBLEM_JSON = "application/problem+json"
Responses = dict[int | str, dict[str, Any]]


class FieldError(BaseModel):
    field: str = Field(description="dotted path of the input at fault (`lines.0.qty`, `path.sku`); `body` for all of it")
    reason: str


class Problem(BaseModel):
    """What went wrong; for bad input, `errors` names each field and why."""

    type: Literal["about:blank"] = Field(description="always about:blank: the status and title say it all")
    title: str
    status: int
    detail: str
    errors: list[FieldError] = Field(default_factory=list, description="on 422 only (omitted otherwise)")


# What the shared error handlers and middleware answer, the same on every route (shared.service).
SHARED: Mapping[int, str] = {
    400: "The body could not be read as text (e.g. bytes that are not UTF-8)",
    413: "The body is larger than the service accepts",
    422: "Invalid input: `errors` lists each field and why",
    503: "The database cannot be reached (retry after `Retry-After` seconds), or the service is draining"
         " and refuses writes (retry against another instance)",
}
RETRY_AFTER = {"Retry-After": {"description": "seconds to wait before retrying", "schema": {"type": "integer"}}}


def problems(specific: Mapping[int, str] | None = None, *, body: bool = False, params: bool = True) -> Responses:
    """The problem answers of one route: its own (e.g. 404, 409, with why) plus the shared ones it
    can get: 422 when it takes parameters or a body, 400 and 413 when it takes a body, and 503
    always (every route but the health checks uses the database)."""
    shared = [400, 413] if body else []
    shared += [422] if params or body else []
    answers = {status: SHARED[status] for status in [*shared, 503]} | dict(specific or {})
    return {status: problem_response(why) | ({"headers": RETRY_AFTER} if status == 503 else {})
            for status, why in sorted(answers.items())}


def problem_response(description: str) -> dict[str, Any]:
    return {"description": description, "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}}}


def document_problems(app: FastAPI) -> None:
    """Puts the Problem schema into the app's OpenAPI components, where the routes' `responses`
    refer to it (FastAPI only collects models it renders as application/json itself)."""
    build: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        schema = build()
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        if "Problem" not in components:
            problem = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
            components.update(problem.pop("$defs", {}))
            components["Problem"] = problem
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def allowed_methods(request: Request) -> str:
    """Every method served at the request's path, for the Allow header of a 405: Starlette names
    only those of the first route that matches the path (PUT, when GET is another route)."""
    path = request.url.path
    methods: set[str] = set()
    for route in request.app.router.routes:
        if isinstance(route, Route) and route.methods and route.path_regex.match(path):
            methods |= route.methods
    return ", ".join(sorted(methods))
