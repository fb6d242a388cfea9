"""The published event contract (docs/asyncapi.yaml) is what the code generates, is a valid AsyncAPI
3.0 document, and its examples are messages the services would accept.

asyncapi-3.0.0.schema.json is `schemas/3.0.0-without-$id.json` of the npm package @asyncapi/specs
6.11.1 (`npm pack @asyncapi/specs`), the variant whose references are all local: the test runs offline.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from shared.asyncapi import OUTPUT, current
from shared.events import EVENT_TYPES, parse_envelope

SCHEMA = Path(__file__).with_name("asyncapi-3.0.0.schema.json")


@pytest.fixture(scope="module")
def generated() -> str:
    return current()


@pytest.fixture(scope="module")
def doc(generated: str) -> dict[str, Any]:
    return yaml.safe_load(generated)


def test_committed_document_is_up_to_date(generated: str) -> None:
    assert OUTPUT.read_text() == generated, "docs/asyncapi.yaml is out of date: run `make asyncapi` and commit it"


def test_document_is_valid_asyncapi_3(doc: dict[str, Any]) -> None:
    schema = json.loads(SCHEMA.read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(doc), key=lambda error: list(error.path))
    assert not errors, "\n".join(f"{list(error.path)}: {error.message[:300]}" for error in errors[:5])


def test_every_event_has_a_message_on_its_topic(doc: dict[str, Any]) -> None:
    for name, model in EVENT_TYPES.items():
        assert name in doc["channels"][str(model.stream)]["messages"], name
    for channel, spec in doc["channels"].items():
        assert spec["address"] == channel
        if channel.endswith(".dlq"):
            assert list(spec["messages"]) == ["DeadLetter"]


@pytest.mark.parametrize("event_type", list(EVENT_TYPES))
def test_example_is_accepted_by_its_model_and_by_the_document(doc: dict[str, Any], event_type: str) -> None:
    """Each example goes through the consumers' own parser, and validates against the document's
    schemas (what a client generated from the document would check), headers included."""
    message = doc["components"]["messages"][event_type]
    (example,) = message["examples"]
    envelope, event = parse_envelope(json.dumps(example["payload"]).encode())
    assert type(event) is EVENT_TYPES[event_type]
    assert event.model_dump(mode="json") == example["payload"]["payload"]  # nothing dropped or coerced
    assert example["headers"]["event_id"] == str(envelope.event_id)
    _validate(doc, message["payload"]["$ref"], example["payload"])
    _validate(doc, message["headers"]["$ref"], example["headers"])
    _validate(doc, "#/components/messages/" + event_type + "/bindings/kafka/key", event.key)


def test_dead_letter_example_names_its_source(doc: dict[str, Any]) -> None:
    (example,) = doc["components"]["messages"]["DeadLetter"]["examples"]
    _validate(doc, "#/components/schemas/DeadLetterHeaders", example["headers"])
    parse_envelope(json.dumps(example["payload"]).encode())
    assert example["headers"]["dlq.topic"] + ".dlq" in doc["channels"]


def _validate(doc: dict[str, Any], ref: str, instance: object) -> None:
    """Validate against a schema inside the document, its #/components/... references resolved in it."""
    jsonschema.validate(instance, {**doc, "$ref": ref}, cls=jsonschema.Draft7Validator, format_checker=jsonschema.FormatChecker())
