"""Partition end offsets that can be trusted on every broker: read with highwater() after a fetch;
and how far the consumer groups got below them.

The embedded broker answers ListOffsets (end_offsets, seek_to_end, 'latest') with the last record
batch's base offset + 1, which is too low whenever a batch holds several records; the highwater
mark carried by every fetch response is right. One probe consumer, positioned near the end of each
partition, fetches at most a few bytes per partition to learn it."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient


class HighwaterProbe:
    """A group-less consumer kept open between calls (start-up costs more than a probe)."""

    def __init__(self, bootstrap_servers: str) -> None:
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap_servers, enable_auto_commit=False, auto_offset_reset="earliest",
            fetch_max_wait_ms=10, max_partition_fetch_bytes=1024,
        )
        self._started = False

    async def partitions(self, topics: Iterable[str]) -> list[TopicPartition]:
        """The partitions of the topics that exist (a missing topic has none)."""
        await self._start()
        existing = await self._consumer.topics()
        return [
            TopicPartition(topic, partition)
            for topic in sorted(set(topics)) if topic in existing
            for partition in sorted(self._consumer.partitions_for_topic(topic) or ())
        ]

    async def highwaters(self, partitions: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        await self._start()
        wanted = list(partitions)
        if not wanted:
            return {}
        consumer = self._consumer
        if set(consumer.assignment()) != set(wanted):
            consumer.assign(wanted)
        for tp in wanted:  # fetch from the last known end: the answer carries the highwater, few records
            consumer.seek(tp, consumer.highwater(tp) or 0)
        await consumer.getmany(timeout_ms=100, max_records=len(wanted))
        for _ in range(30):
            if all(consumer.highwater(tp) is not None for tp in wanted):
                break
            await consumer.getmany(timeout_ms=100)
        return {tp: consumer.highwater(tp) or 0 for tp in wanted}

    async def stop(self) -> None:
        if self._started:
            await self._consumer.stop()
            self._started = False

    async def _start(self) -> None:
        if not self._started:
            await self._consumer.start()
            self._started = True


async def consumed_offsets(
    admin: AIOKafkaAdminClient, readers: Mapping[str, set[str]], highwaters: Mapping[TopicPartition, int]
) -> dict[TopicPartition, int]:
    """Per partition, the lowest offset committed by the groups that read its topic (`readers`:
    group -> topics; a group that committed nothing counts as 0), capped at its highwater. Below it,
    every group has applied every message. A partition no group reads counts as consumed up to its
    highwater: no consumer needs its messages again."""
    consumed = dict(highwaters)
    for group, topics in readers.items():
        committed = await committed_offsets(admin, group, [tp for tp in highwaters if tp.topic in topics])
        for tp, offset in committed.items():
            consumed[tp] = min(consumed[tp], offset)
    return consumed


async def committed_offsets(
    admin: AIOKafkaAdminClient, group: str, partitions: Sequence[TopicPartition]
) -> dict[TopicPartition, int]:
    """The group's committed offset of each partition; 0 where it committed nothing yet."""
    if not partitions:
        return {}
    # Always name the partitions: without them the embedded broker drops the connection.
    committed = await admin.list_consumer_group_offsets(group, partitions=list(partitions))
    offsets = {}
    for tp in partitions:
        meta = committed.get(tp)
        offsets[tp] = meta.offset if meta is not None and meta.offset >= 0 else 0
    return offsets
