"""The AsyncAPI 3.0 document of the event contract, generated from the pydantic models so that the
published contract cannot drift from what the services validate (`make asyncapi` writes
docs/asyncapi.yaml; a unit test fails when the committed file is out of date)."""

from __future__ import annotations

import ast
import importlib
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import yaml
from pydantic import BaseModel, Field, create_model
from pydantic.json_schema import models_json_schema

from shared.event_examples import EXAMPLES, example_record
from shared.events import EVENT_TYPES, Envelope, Event, GoodsReceived, Stream
from shared.settings import SERVICES, Settings

ROOT = Path(__file__).resolve().parents[1]
OUTPUT = ROOT / "docs" / "asyncapi.yaml"
KAFKA_BINDING = "0.5.0"
REF = "#/components/schemas/{model}"
# Systems outside this repository that may publish to a topic themselves (see README: publishing
# receipts straight to Kafka; a warehouse reports a shipment that left with ShipmentReported).
EXTERNAL_PRODUCERS: dict[str, tuple[str, ...]] = {"warehouse": ("ShipmentReported", "GoodsReceived")}
KEY_NAMES = {"order_id": "order id", "sku": "SKU", "receipt_id": "receipt id", "purchase_order_id": "purchase order id"}
DLQ_HEADERS: dict[str, str] = {
    "dlq.reason": "why the message was parked: `unparseable: ...`, `rejected: ...` or `failed after N attempts: ...`"
    " (at most 4000 bytes)",
    "dlq.consumer": "the consumer (service) that parked it",
    "dlq.topic": "the topic it was read from",
    "dlq.partition": "its partition there (decimal)",
    "dlq.offset": "its offset there (decimal)",
    "dlq.value_dropped": "only when the value was too large to copy: its size in bytes; the value stays at its source offset",
}


def document(
    settings: Settings, producers: Mapping[str, Iterable[str]], consumers: Mapping[str, Iterable[str]],
    examples: Sequence[Event],
) -> dict[str, Any]:
    """The AsyncAPI document: a channel per topic and its `.dlq` twin, an operation per service and
    topic it publishes to or consumes from (`producers`/`consumers`: service -> event types), a
    message per event type with its envelope schema, key, headers and one example."""
    models = list(EVENT_TYPES.values())
    schemas = _schemas(models)
    schemas["RelayHeaders"] = _relay_headers([*producers])
    schemas["DeadLetterHeaders"] = _dead_letter_headers()
    by_type = {example.event_type: example for example in examples}
    messages = {model.event_type: _message(model, by_type[model.event_type], _producer_of(model, producers)) for model in models}
    receipt = next(example for example in examples if isinstance(example, GoodsReceived))
    messages["DeadLetter"] = _dead_letter_message(receipt, settings)
    channels: dict[str, Any] = {}
    for stream in Stream:
        topic = settings.topic(stream)
        channels[topic] = _channel(topic, f"The {stream} stream (topic setting `TOPIC_{stream.upper()}`).",
                                   [m.event_type for m in models if m.stream == stream], settings)
        channels[f"{topic}.dlq"] = _channel(
            f"{topic}.dlq", f"Dead letters of `{topic}`: what a consumer could not use, with the reason in the headers.",
            ["DeadLetter"], settings,
        )
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "Backorder fulfilment events",
            "version": str(max(model.schema_version for model in models)),
            "description": _DESCRIPTION,
        },
        "defaultContentType": "application/json",
        "servers": {
            "embedded": {
                "host": settings.kafka_bootstrap_servers,
                "protocol": "kafka",
                "description": "The embedded broker (Tansu) of `make run`; any other broker is named by KAFKA_BOOTSTRAP_SERVERS.",
            }
        },
        "channels": channels,
        "operations": _operations(settings, producers, consumers),
        "components": {"schemas": schemas, "messages": messages},
    }


_DESCRIPTION = """\
Four services (orders, inventory, allocator, notifier) exchange these events over Kafka. Every
message value is one JSON envelope (`event_id`, `event_type`, `schema_version`, `occurred_at`,
`correlation_id`, `causation_id`, `producer`, `payload`); the payload schemas are generated from
the pydantic models in `shared/events.py` (`python -m shared.asyncapi`).

Delivery is at least once: consumers deduplicate on `event_id`, never on partition and offset.
A consumer passes over the event types it has no handler for; a payload it cannot use, or a
`schema_version` newer than it reads, is parked on the topic's `.dlq` twin and the partition moves on.

Keys: the entity whose events must stay in order (order id, SKU, receipt id, purchase order id;
each message says which), as UTF-8 bytes. Partitioner: murmur2 of the key bytes (positive hash
modulo the partition count), the default of aiokafka and of the Java client. A librdkafka client
(kcat, confluent-kafka) must set `partitioner=murmur2_random`: its default, `consistent_random`
(CRC32), puts a key on another partition than the services do, and that entity's events out of order.

Topic names are settings (`TOPIC_ORDERS`, ...); the channels show the defaults. Every topic and
its `.dlq` twin are created at start-up with `TOPIC_PARTITIONS` partitions.
"""


def _schemas(models: Sequence[type[Event]]) -> dict[str, Any]:
    """Every message's envelope and the payload models it carries, as components/schemas: each event
    gets `<Event>Envelope`, the Envelope with `event_type` fixed and `payload` typed by the event.
    `event_id` and `occurred_at` are required here although Envelope fills them in when absent: a
    reader would draw a new event id on every delivery, and deduplication would never match."""
    envelopes: list[type[BaseModel]] = [
        create_model(
            f"{model.event_type}Envelope",
            __base__=Envelope,
            __doc__=f"The envelope of a {model.event_type}, as every producer must write it.",
            event_id=(UUID, Field(description="A fresh UUID per event (a retry reuses it): the deduplication key")),
            event_type=(str, Field(json_schema_extra={"const": model.event_type})),
            occurred_at=(datetime, Field(description="When it happened, with a time zone")),
            correlation_id=(str, Field(description="The order, receipt or purchase order that started the chain")),
            causation_id=(str | None, Field(default=None, description="The event_id of the event that caused this one")),
            producer=(str, Field(description="The service (or external system) that published it")),
            payload=(model, ...),
        )
        for model in models
    ]
    _, top = models_json_schema([(envelope, "validation") for envelope in envelopes], ref_template=REF)
    return dict(sorted(top["$defs"].items()))


def _relay_headers(producers: Sequence[str]) -> dict[str, Any]:
    return {
        "type": "object",
        "description": (
            "Kafka record headers (UTF-8 values) every service's outbox relay sets. They let a consumer skip, unparsed,"
            " the types it does not handle and its own service's events. An external producer may omit them:"
            " the envelope alone is enough."
        ),
        "properties": {
            "event_type": {"type": "string", "enum": sorted(EVENT_TYPES), "description": "the envelope's event_type"},
            "event_id": {"type": "string", "format": "uuid", "description": "the envelope's event_id"},
            "producer": {"type": "string", "description": "the publishing service", "examples": list(producers)},
            "traceparent": {
                "type": "string",
                "pattern": "^00-[0-9a-f]{32}-[0-9a-f]{16}-01$",
                "description": "W3C trace context: the trace id is the MD5 of the correlation id (one chain, one trace),"
                " the span id the first 16 hex digits of the event id",
            },
        },
    }


def _dead_letter_headers() -> dict[str, Any]:
    return {
        "type": "object",
        "description": "The original record's headers (RelayHeaders, if it had them) followed by the consumer's `dlq.*` headers.",
        "required": [name for name in DLQ_HEADERS if name != "dlq.value_dropped"],
        "properties": {name: {"type": "string", "description": about} for name, about in DLQ_HEADERS.items()},
    }


def _key_schema(model: type[Event]) -> dict[str, Any]:
    """The key's schema is its field's, from the model; the description says what it identifies."""
    field = {k: v for k, v in model.model_json_schema()["properties"][model.key_field].items() if k != "title"}
    name = KEY_NAMES.get(model.key_field, model.key_field)
    return {**field, "description": f"The {name} (`payload.{model.key_field}`) as UTF-8 bytes; partitioner: murmur2."}


def _message(model: type[Event], example: Event, producer: str) -> dict[str, Any]:
    doc = " ".join((model.__doc__ or "").split())
    key = KEY_NAMES.get(model.key_field, model.key_field)
    first = re.split(r"(?<=[.:])\s", doc)[0].rstrip(".:") + "."
    summary = first if doc else f"{model.event_type} on the {model.stream} stream, keyed by {key}."
    return {
        "name": model.event_type,
        "summary": summary,
        **({"description": doc} if doc and doc != summary else {}),
        "contentType": "application/json",
        "headers": {"$ref": REF.format(model="RelayHeaders")},
        "payload": {"$ref": REF.format(model=f"{model.event_type}Envelope")},
        "correlationId": {"location": "$message.payload#/correlation_id", "description": "what began the chain"},
        "bindings": {"kafka": {"key": _key_schema(model), "bindingVersion": KAFKA_BINDING}},
        "examples": [example_record(example, producer)],
    }


def _dead_letter_message(receipt: GoodsReceived, settings: Settings) -> dict[str, Any]:
    """Its example: a receipt a warehouse published (without headers) naming a SKU inventory does not know."""
    topic = settings.topic(receipt.stream)
    parked = example_record(receipt, "warehouse")["payload"]
    sku = receipt.lines[0].sku
    headers = {
        "dlq.reason": f"rejected: receipt {receipt.receipt_id}: unknown sku {sku} (lines.0.sku); register it"
        f" (PUT /v1/skus/{sku}), then post this receipt unchanged to POST /v1/receipts: its allocations and"
        " put-aways wait for it",
        "dlq.consumer": "inventory",
        "dlq.topic": topic,
        "dlq.partition": "2",
        "dlq.offset": "1041",
    }
    return {
        "name": "DeadLetter",
        "title": "Dead letter",
        "summary": "A message a consumer could not use, parked with the reason; the source partition moved on.",
        "description": (
            "Key and value are the original record's, byte for byte (the value may be anything, even not JSON);"
            " the value is null when `dlq.value_dropped` is set. Replay: fix the cause, then publish the value"
            " again to the source topic with the same key (the inboxes absorb what was already applied)."
        ),
        "contentType": "application/octet-stream",
        "headers": {"$ref": REF.format(model="DeadLetterHeaders")},
        "payload": {"description": "the original record's value, unchanged"},
        "bindings": {"kafka": {"key": {"type": "string", "description": "the original key"}, "bindingVersion": KAFKA_BINDING}},
        "examples": [{"name": "DeadLetter", "summary": f"A receipt on {topic}.dlq", "headers": headers, "payload": parked}],
    }


def _channel(topic: str, description: str, message_names: Sequence[str], settings: Settings) -> dict[str, Any]:
    return {
        "address": topic,
        "description": description,
        "messages": {name: {"$ref": f"#/components/messages/{name}"} for name in message_names},
        "bindings": {"kafka": {"partitions": settings.topic_partitions, "bindingVersion": KAFKA_BINDING}},
    }


def _operations(
    settings: Settings, producers: Mapping[str, Iterable[str]], consumers: Mapping[str, Iterable[str]]
) -> dict[str, Any]:
    """From each service's point of view: what it sends where, what it receives (its consumer group is
    named after it), and the dead letters it sends for the topics it reads."""
    operations: dict[str, Any] = {}
    for service, types in producers.items():
        for topic, names in _by_topic(settings, types).items():
            operations[f"{service}.send.{topic}"] = _operation("send", service, topic, names, None)
    for service, types in consumers.items():
        by_topic = _by_topic(settings, types)
        for topic, names in by_topic.items():
            operations[f"{service}.receive.{topic}"] = _operation("receive", service, topic, names, service)
        for topic in by_topic:
            operations[f"{service}.send.{topic}.dlq"] = _operation("send", service, f"{topic}.dlq", ["DeadLetter"], None)
    return operations


def _by_topic(settings: Settings, types: Iterable[str]) -> dict[str, list[str]]:
    """Event types grouped by topic, both in the registry's order."""
    wanted = set(types)
    grouped: dict[str, list[str]] = {settings.topic(stream): [] for stream in Stream}
    for name, model in EVENT_TYPES.items():
        if name in wanted:
            grouped[settings.topic(model.stream)].append(name)
    return {topic: names for topic, names in grouped.items() if names}


def _operation(action: str, service: str, channel: str, names: Sequence[str], group: str | None) -> dict[str, Any]:
    verb = "publishes to" if action == "send" else "consumes"
    operation: dict[str, Any] = {
        "action": action,
        "channel": {"$ref": f"#/channels/{channel}"},
        "title": f"{service} {verb} {channel}",
        "messages": [{"$ref": f"#/channels/{channel}/messages/{name}"} for name in names],
        "tags": [{"name": service}],
    }
    if group is not None:
        operation["bindings"] = {"kafka": {"groupId": {"type": "string", "enum": [group]}, "bindingVersion": KAFKA_BINDING}}
    return operation


def _producer_of(model: type[Event], producers: Mapping[str, Iterable[str]]) -> str:
    """The example's producer: the first service that emits the type (a warehouse only for what only it sends)."""
    return next(service for service, types in producers.items() if model.event_type in types)


# --- what the services publish and consume, read from their code ------------------------------


def emitted_by_services(root: Path = ROOT) -> dict[str, list[str]]:
    """Service -> the event types its code constructs (a service emits only events it builds), then
    the external producers: read from the source, so a new emit shows up in the document."""
    emitted: dict[str, list[str]] = {}
    for service in SERVICES:
        names: set[str] = set()
        for path in sorted((root / "services" / service).rglob("*.py")):
            if "migrations" not in path.parts:
                names |= _constructed(ast.parse(path.read_text(), str(path)))
        emitted[service] = [name for name in EVENT_TYPES if name in names]
    return {**emitted, **{name: list(types) for name, types in EXTERNAL_PRODUCERS.items()}}


def _constructed(tree: ast.AST) -> set[str]:
    calls = (node.func for node in ast.walk(tree) if isinstance(node, ast.Call))
    return {name for func in calls if (name := _called_name(func)) in EVENT_TYPES}


def _called_name(func: ast.expr) -> str | None:
    if isinstance(func, ast.Name):
        return func.id
    return func.attr if isinstance(func, ast.Attribute) else None


def consumed_by_services() -> dict[str, list[str]]:
    """Service -> the event types its handlers take (what its consumer parses)."""
    consumed = {}
    for service in SERVICES:
        handled = importlib.import_module(f"services.{service}.handlers").HANDLERS.event_types
        consumed[service] = [name for name in EVENT_TYPES if name in handled]
    return consumed


def render(doc: Mapping[str, Any]) -> str:
    """YAML with keys in the document's order and multi-line text as blocks (stable, readable diffs)."""
    return yaml.dump(dict(doc), Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=120)


class _Dumper(yaml.SafeDumper):
    pass


def _str(dumper: yaml.SafeDumper, text: str) -> yaml.ScalarNode:
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style="|" if "\n" in text else None)


_Dumper.add_representer(str, _str)


def current() -> str:
    """The document as generated from the code as it is now (the default settings, not the environment's)."""
    return render(document(Settings.model_construct(), emitted_by_services(), consumed_by_services(), EXAMPLES))


def main() -> None:
    OUTPUT.write_text(current())
    print(f"wrote {OUTPUT.relative_to(ROOT)}", file=sys.stderr)


if __name__ == "__main__":
    main()
