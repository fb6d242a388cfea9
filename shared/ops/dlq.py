"""Dead letters: the messages a consumer parked in `<topic>.dlq` with its reason, and their replay
to the source topic once the cause is fixed. A replay is harmless to repeat: every consumer that
applied the event already has it in its inbox and skips it; the one that parked it applies it."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaProducer, TopicPartition

from shared.ops.reader import Progress, TopicReader, reading
from shared.ops.records import StreamRecord
from shared.settings import Settings

DLQ_SUFFIX = ".dlq"
REPLAYED_FROM = "dlq.replayed_from"


@dataclass(frozen=True)
class DeadLetter:
    record: StreamRecord  # as it sits in the dead-letter topic

    @property
    def reason(self) -> str:
        return self.record.headers.get("dlq.reason", "")

    @property
    def consumer(self) -> str:
        return self.record.headers.get("dlq.consumer", "?")

    @property
    def source(self) -> TopicPartition:
        headers = self.record.headers
        topic = headers.get("dlq.topic") or self.record.topic.removesuffix(DLQ_SUFFIX)
        return TopicPartition(topic, int(headers.get("dlq.partition", "-1")))

    @property
    def source_offset(self) -> int:
        return int(self.record.headers.get("dlq.offset", "-1"))

    @property
    def value_dropped(self) -> bool:
        """Too large to copy: the value is only at its source offset."""
        return "dlq.value_dropped" in self.record.headers

    def as_json(self) -> dict[str, Any]:
        return {
            "event_id": self.record.event_id, "event_type": self.record.event_type, "reason": self.reason,
            "consumer": self.consumer, "source": f"{self.source.topic}[{self.source.partition}]@{self.source_offset}",
            "dead_letter": self.record.address, "key": self.record.key, "value_dropped": self.value_dropped,
            "envelope": self.record.envelope,
        }


@dataclass(frozen=True)
class Replayed:
    letter: DeadLetter
    sent_to: str  # topic[partition]@offset of the copy

    def as_json(self) -> dict[str, Any]:
        return {"event_id": self.letter.record.event_id, "event_type": self.letter.record.event_type,
                "from": self.letter.record.address, "to": self.sent_to, "consumer": self.letter.consumer}


def dead_letter_topics(settings: Settings, topic: str | None = None) -> list[str]:
    """The dead-letter topics, or the one of `topic` (named with or without its `.dlq`)."""
    if topic is not None:
        return [topic if topic.endswith(DLQ_SUFFIX) else topic + DLQ_SUFFIX]
    return [name for name in settings.all_topics() if name.endswith(DLQ_SUFFIX)]


async def dead_letters(settings: Settings, topic: str | None = None, progress: Progress | None = None) -> list[DeadLetter]:
    async with reading(settings.kafka_bootstrap_servers, dead_letter_topics(settings, topic)) as reader:
        records = await reader.history(progress=progress)
    return [DeadLetter(record) for record in sorted(records, key=lambda r: r.timestamp_ms)]


def select(letters: Iterable[DeadLetter], event_ids: Sequence[str] = ()) -> list[DeadLetter]:
    """The letters with these event ids (all when none are named)."""
    wanted = set(event_ids)
    return [letter for letter in letters if not wanted or letter.record.event_id in wanted]


async def replay(settings: Settings, letters: Sequence[DeadLetter], progress: Progress | None = None) -> list[Replayed]:
    """Republish each letter to its source topic with its key and original headers (so every
    consumer filters and partitions it as the first time) plus `dlq.replayed_from`."""
    values = await _values(settings, letters)
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, acks="all", client_id="fulfil-dlq-replay")
    await producer.start()
    done: list[Replayed] = []
    try:
        for letter in letters:
            record = letter.record
            headers = [(name, value.encode()) for name, value in record.headers.items() if not name.startswith("dlq.")]
            headers.append((REPLAYED_FROM, record.address.encode()))
            key = record.key.encode() if record.key is not None else None
            sent = await producer.send_and_wait(letter.source.topic, value=values[record.address], key=key, headers=headers)
            done.append(Replayed(letter, f"{sent.topic}[{sent.partition}]@{sent.offset}"))
            if progress:
                progress(len(done), len(letters))
    finally:
        await producer.stop()
    return done


async def _values(settings: Settings, letters: Sequence[DeadLetter]) -> dict[str, bytes | None]:
    """Each letter's value: its own copy, or the source record's when the copy was dropped."""
    values = {letter.record.address: letter.record.value for letter in letters}
    dropped = {letter.source: letter.source_offset for letter in letters if letter.value_dropped}
    if dropped:
        reader = TopicReader(settings.kafka_bootstrap_servers)
        await reader.start([tp.topic for tp in dropped])
        try:
            originals = await reader.records_at(dropped)
        finally:
            await reader.stop()
        for letter in letters:
            if letter.value_dropped and letter.source in originals:
                values[letter.record.address] = originals[letter.source].value
    return values
