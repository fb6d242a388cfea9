"""Input rules every service's API schemas share."""


def storable(value: str) -> str:
    """PostgreSQL text holds no NUL and only valid UTF-8: refuse such input as a 422, not a 500."""
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode (no lone surrogates)") from None
    return value
