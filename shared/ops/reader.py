"""Reading topics the way ops tools must: without a consumer group (a reader never takes partitions
from a service or moves its offsets), and to ends learned from highwater(), since the embedded
broker's end_offsets is wrong (EMBEDDED.md)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from contextlib import asynccontextmanager

from aiokafka import AIOKafkaConsumer, TopicPartition

from shared.bus.offsets import HighwaterProbe
from shared.ops.records import StreamRecord

Progress = Callable[[int, int], None]  # (records read so far, records to read)


class TopicReader:
    """A group-less consumer assigned every partition of some topics."""

    def __init__(self, bootstrap_servers: str) -> None:
        self.bootstrap_servers = bootstrap_servers
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap_servers, enable_auto_commit=False, auto_offset_reset="earliest",
            fetch_max_wait_ms=50, max_partition_fetch_bytes=4 * 1024 * 1024,
        )
        self.partitions: list[TopicPartition] = []
        self._probe: HighwaterProbe | None = None  # made on first use: an unstarted client warns when collected

    async def start(self, topics: Iterable[str]) -> None:
        await self._consumer.start()
        existing = await self._consumer.topics()
        self.partitions = [
            TopicPartition(topic, partition)
            for topic in sorted(set(topics)) if topic in existing
            for partition in sorted(self._consumer.partitions_for_topic(topic) or ())
        ]
        self._consumer.assign(self.partitions)

    async def stop(self) -> None:
        if self._probe is not None:
            await self._probe.stop()
        await self._consumer.stop()

    async def ends(self) -> dict[TopicPartition, int]:
        """Each partition's highwater now, learned by a probe's fetch."""
        if self._probe is None:
            self._probe = HighwaterProbe(self.bootstrap_servers)
        return await self._probe.highwaters(self.partitions)

    async def history(
        self, starts: Mapping[TopicPartition, int] | None = None, progress: Progress | None = None
    ) -> list[StreamRecord]:
        """Every record from `starts` (default: the beginning) up to the ends as they are now."""
        ends = await self.ends()
        wanted = {tp: end for tp, end in ends.items() if end > (starts or {}).get(tp, 0)}
        if not wanted:
            return []
        await self._seek(starts, list(wanted))
        total = sum(end - (starts or {}).get(tp, 0) for tp, end in wanted.items())
        read: list[StreamRecord] = []
        while wanted:
            batches = await self._consumer.getmany(*wanted, timeout_ms=200, max_records=10_000)
            for tp, records in batches.items():
                read += [StreamRecord.of(r) for r in records if r.offset < wanted.get(tp, 0)]
            for tp in list(wanted):
                if await self._consumer.position(tp) >= wanted[tp]:
                    del wanted[tp]
            if progress:
                progress(len(read), total)
        return read

    async def start_at(self, beginning: bool) -> None:
        """Stand at the beginning or at the ends as they are now: `follow` misses nothing after."""
        if beginning:
            await self._consumer.seek_to_beginning(*self.partitions)
        else:
            for tp, end in (await self.ends()).items():
                self._consumer.seek(tp, end)

    async def follow(self) -> AsyncIterator[StreamRecord]:
        """Records as they arrive, for ever, from where the reader stands."""
        while True:
            batches = await self._consumer.getmany(timeout_ms=500, max_records=1000)
            for records in batches.values():
                for record in records:
                    yield StreamRecord.of(record)

    async def records_at(self, offsets: Mapping[TopicPartition, int], timeout: float = 5.0) -> dict[TopicPartition, StreamRecord]:
        """The record at one offset of each partition (those that exist)."""
        if not offsets:
            return {}
        found: dict[TopicPartition, StreamRecord] = {}
        self._consumer.assign(list(offsets))
        try:
            for tp, offset in offsets.items():
                self._consumer.seek(tp, offset)
            async with asyncio.timeout(timeout):
                while len(found) < len(offsets):
                    batches = await self._consumer.getmany(*[tp for tp in offsets if tp not in found], timeout_ms=200)
                    for tp, records in batches.items():
                        match = next((r for r in records if r.offset >= offsets[tp]), None)
                        if match is not None:
                            found.setdefault(tp, StreamRecord.of(match))
        except TimeoutError:
            pass  # a partition whose record never came (deleted, or past the end) is left out
        finally:
            self._consumer.assign(self.partitions)
        return found

    async def _seek(self, starts: Mapping[TopicPartition, int] | None, partitions: list[TopicPartition]) -> None:
        if starts is None:
            await self._consumer.seek_to_beginning(*partitions)
            return
        for tp in partitions:
            self._consumer.seek(tp, starts.get(tp, 0))


@asynccontextmanager
async def reading(bootstrap_servers: str, topics: Iterable[str]) -> AsyncIterator[TopicReader]:
    reader = TopicReader(bootstrap_servers)
    try:
        await reader.start(topics)
        yield reader
    finally:
        await reader.stop()
