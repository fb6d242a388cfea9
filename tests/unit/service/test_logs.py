"""Log lines an operator (and a log pipeline) can use: JSON naming the service and what the record
is about, readable text for development, and never a customer's email address."""

from __future__ import annotations

import json
import logging
import sys

from shared.logs import JsonFormatter, TextFormatter, about, redact


def record(message: str, *args: object, exc: bool = False, **extra: object) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise ValueError("boom for ada@example.com")
        except ValueError:
            exc_info = sys.exc_info()
    made = logging.LogRecord("orders.handlers", logging.WARNING, __file__, 1, message, args, exc_info)
    for name, value in extra.items():
        setattr(made, name, value)
    return made


def test_a_json_line_names_the_service_and_what_the_record_is_about() -> None:
    with about(event_id="e-1", correlation_id="c-1"):
        line = JsonFormatter("orders").format(record("ignoring events for order %s", "o-1", order_id="o-1"))
    entry = json.loads(line)
    assert entry["service"] == "orders" and entry["level"] == "warning" and entry["logger"] == "orders.handlers"
    assert entry["message"] == "ignoring events for order o-1"
    assert (entry["event_id"], entry["correlation_id"], entry["order_id"]) == ("e-1", "c-1", "o-1")
    assert entry["time"].endswith("+00:00")


def test_the_context_ends_with_its_block() -> None:
    with about(order_id="o-1"):
        pass
    assert "order_id" not in json.loads(JsonFormatter("orders").format(record("done")))


def test_no_email_address_reaches_a_line_nor_a_traceback() -> None:
    made = record("sending to %s failed", "ada.lovelace+shop@example.co.uk", exc=True)
    line = JsonFormatter("notifier").format(made)
    assert "example" not in line and "<email>" in json.loads(line)["message"]
    assert "<email>" in json.loads(line)["error"] and "\n" not in line
    assert "example" not in TextFormatter("notifier").format(record("to %s", "ada@example.com"))
    assert redact("order 42 for ada@example.com, bob@example.org") == "order 42 for <email>, <email>"


def test_text_names_the_service_and_the_context() -> None:
    with about(order_id="o-9"):
        line = TextFormatter("allocator").format(record("served"))
    assert "allocator orders.handlers: served" in line and line.endswith("[order_id=o-9]")
