"""Dead-letter reasons written for the person who reads them: one line that names the event, the
field and what is wrong with it, instead of pydantic's multi-line report."""

from __future__ import annotations

import json
import re
from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from shared.events import Envelope

MAX_PROBLEMS = 5
MAX_REASON = 2000
# pydantic's "Input should be greater than 0", "String should have at least 1 character", ...
SHOULD = re.compile(r"^(?:[A-Z][a-z]+s? )+should ")


def unparseable(error: ValueError) -> str:
    """Why a message could not be read: `unparseable OrderPlaced: lines.0.qty must be greater than
    0 (got -5)`; `unparseable message: not JSON (...)`; other refusals (a schema version this build
    does not read) as they are worded."""
    if not isinstance(error, ValidationError):
        return one_line(f"unparseable: {error}")
    errors = error.errors(include_url=False)
    if any(detail["type"] == "json_invalid" for detail in errors):
        why = next(str((d.get("ctx") or {}).get("error", "")) for d in errors if d["type"] == "json_invalid")
        return one_line(f"unparseable message: not JSON ({why})")
    subject = "envelope" if error.title == Envelope.__name__ else error.title
    return one_line(f"unparseable {subject}: {describe(errors)}")


def rejected(error: Exception) -> str:
    """Why a handler refused an event (its DeadLetter says it in words already), on one line."""
    return one_line(f"rejected: {error}")


def failed(error: Exception, attempts: int, event_type: str) -> str:
    """Why an event kept failing: `failed after 5 attempts applying ShipmentReported: IntegrityError:
    duplicate key value ...`, the error's own words on one line (its first line: a driver's report
    repeats the statement below it)."""
    words = str(error).strip().splitlines()[0] if str(error).strip() else "no message"
    return one_line(f"failed after {attempts} attempts applying {event_type}: {type(error).__name__}: {words}")


def describe(errors: list[ErrorDetails]) -> str:
    causes = [problem(detail) for detail in root_causes(errors)]
    more = len(causes) - MAX_PROBLEMS
    return "; ".join(causes[:MAX_PROBLEMS]) + (f"; and {more} more" if more > 0 else "")


def root_causes(errors: list[ErrorDetails]) -> list[ErrorDetails]:
    """The errors not explained by another one inside them: pydantic drops the items of a sequence
    that failed and then counts the rest, so a tuple with one bad line also reports "Tuple should
    have at least 1 item after validation" at the tuple, which is noise."""
    places = [tuple(detail["loc"]) for detail in errors]
    return [
        detail for detail, place in zip(errors, places, strict=True)
        if not any(len(other) > len(place) and other[: len(place)] == place for other in places)
    ]


def problem(detail: ErrorDetails) -> str:
    """`lines.0.qty must be greater than 0 (got -5)`, `customer.email is missing`."""
    field = ".".join(str(part) for part in detail["loc"])  # empty: the event (or envelope) as a whole
    kind = detail["type"]
    if kind == "missing":
        return f"{field} is missing"
    if kind == "extra_forbidden":
        return f"{field} is not a known field"
    message = detail["msg"].removeprefix("Value error, ")
    message = SHOULD.sub("must ", message, count=1)
    got = detail.get("input")
    return " ".join(filter(None, [field, message, f"(got {shown(got)})" if is_scalar(got) else ""]))


def is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float | bool)


def shown(value: Any, limit: int = 40) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def one_line(text: str) -> str:
    return " ".join(text.split())[:MAX_REASON]
