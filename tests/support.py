"""Test helpers for talking to the live stack's broker directly (publishing events as another
service or a warehouse would, reading topics such as dead-letter twins)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from uuid import UUID, uuid4

from aiokafka import AIOKafkaProducer

from shared.db import migrate
from shared.devstack.embedded import ensure_databases
from shared.events import Envelope, Event
from shared.ops.reader import reading
from shared.settings import Settings


def envelope_for(event: Event, event_id: UUID | None = None, producer: str = "tests") -> Envelope:
    return Envelope(
        event_id=event_id or uuid4(),
        event_type=event.event_type,
        correlation_id=event.key,
        producer=producer,
        payload=event.model_dump(mode="json"),
    )


async def publish(
    producer: AIOKafkaProducer,
    settings: Settings,
    event: Event | None = None,
    *,
    key: str | None = None,
    event_id: UUID | None = None,
    raw: bytes | None = None,
    topic: str | None = None,
    producer_name: str = "tests",
) -> Envelope | None:
    """Put an event (or raw bytes, for malformed-message tests) on its topic and wait for the ack.
    `producer_name` is the envelope's producer: a service's name to publish as that service."""
    envelope = envelope_for(event, event_id, producer_name) if event is not None else None
    value = raw if raw is not None else envelope.model_dump_json().encode()  # type: ignore[union-attr]
    target = topic or settings.topic(event.stream)  # type: ignore[union-attr]
    message_key = key or (event.key if event is not None else "raw")
    await producer.send_and_wait(target, value=value, key=message_key.encode())
    return envelope


@dataclass
class Message:
    topic: str
    partition: int
    offset: int
    key: str | None
    value: bytes
    headers: dict[str, str]

    def envelope(self) -> Envelope:
        return Envelope.model_validate_json(self.value)


async def read_topic(settings: Settings, topic: str, timeout: float = 30.0) -> list[Message]:
    """Every message on the topic, read group-less from the beginning to the highwater as it is now
    (shared.ops.reader: complete, not whatever a fixed time allowed; TimeoutError if it cannot)."""
    async with asyncio.timeout(timeout), reading(settings.kafka_bootstrap_servers, [topic]) as reader:
        records = await reader.history()
    return [
        Message(r.topic, r.partition, r.offset, r.key, r.value or b"", dict(r.headers))
        for r in sorted(records, key=lambda r: (r.partition, r.offset))
    ]


async def events_of(settings: Settings, topic: str, event_type: str, **payload_match: object) -> list[Envelope]:
    """Envelopes of one type on a topic whose payload matches every given field (compared as strings)."""
    found = []
    for message in await read_topic(settings, topic):
        try:
            envelope = message.envelope()
        except ValueError:
            continue
        if envelope.event_type == event_type and all(
            str(envelope.payload.get(k)) == str(v) for k, v in payload_match.items()
        ):
            found.append(envelope)
    return found


async def eventually(check, timeout: float = 15.0, interval: float = 0.1):  # type: ignore[no-untyped-def]
    """Poll an async check until it returns a truthy value (for effects that cross the broker)."""
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result or time.monotonic() > deadline:
            return result
        await asyncio.sleep(interval)


async def bus_database(settings: Settings, name: str) -> str:
    """A database of its own with the bus tables (outbox, inbox, relay watermarks), for tests that
    run a relay or consumer in this process and must see only their own rows; returns its URL."""
    await ensure_databases(settings.admin_database_url(), [name])
    url = settings.service_database_url("notifier").rsplit("/", 1)[0] + f"/{name}"
    await asyncio.to_thread(migrate, "notifier", url)  # any service's first migrations create the bus tables
    return url
