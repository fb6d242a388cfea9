"""Input rules every service's API schemas share, written so that the OpenAPI states them too."""

from typing import Annotated, Any, TypeVar

from pydantic import BeforeValidator, Field
from pydantic.json_schema import SkipJsonSchema

# PostgreSQL text holds no NUL: refused by the pattern, which the OpenAPI shows.
NO_NUL = r"^[^\x00]*$"


def storable(value: str) -> str:
    """PostgreSQL text holds no NUL and only valid UTF-8: refuse such input as a 422, not a 500."""
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode (no lone surrogates)") from None
    return value


def whole_number(value: object) -> object:
    """JSON has one kind of number: 2.0 is the integer 2 (JSON Schema agrees), so it is taken as 2;
    2.5, "2" and true stay refused by the strict integer type this runs before."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


# Put after Strict() in an Annotated integer: accepts 2.0 as 2, nothing else that is not an int.
WholeNumber = BeforeValidator(whole_number)


def date_as_text(value: object) -> object:
    """A date is ISO 8601 text ("2027-03-12"), as the schema says: pydantic would also take a number
    as seconds since 1970, which a client never means."""
    if isinstance(value, int | float):
        raise ValueError("must be a date as text (YYYY-MM-DD)")
    return value


# A date field of a request: text only (put before the date type's own validation).
DateText = BeforeValidator(date_as_text)


def refuse_null(value: object) -> object:
    if value is None:
        raise ValueError("must not be null: leave the field out instead")
    return value


def no_default(schema: dict[str, Any]) -> None:
    schema.pop("default", None)


T = TypeVar("T")
# A field a request may leave out (None in Python) but not send as null, so that the schema can say
# "a date, or absent" instead of "a date or null" with a null that means something else.
Omittable = Annotated[T | SkipJsonSchema[None], BeforeValidator(refuse_null), Field(json_schema_extra=no_default)]
