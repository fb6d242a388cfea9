"""How far behind the system is: per consumer group and partition, what it committed against the
highwater (and how old the oldest event it has not consumed is), and per service, what its outbox
still owes the broker."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from shared.bus.offsets import committed_offsets
from shared.bus.outbox import outbox_backlog
from shared.db import create_engine, session_factory
from shared.ops.reader import TopicReader
from shared.settings import SUBSCRIPTIONS, Settings


@dataclass(frozen=True)
class PartitionLag:
    group: str
    topic: str
    partition: int
    committed: int
    highwater: int
    lag: int
    oldest_age_s: float | None  # age of the first event not consumed; None when nothing waits


@dataclass(frozen=True)
class ServiceBacklog:
    service: str
    unsent: int | None  # None when its database could not be read (see error)
    oldest_age_s: float | None
    error: str | None = None


@dataclass(frozen=True)
class LagReport:
    partitions: list[PartitionLag]
    outboxes: list[ServiceBacklog]

    @property
    def total_lag(self) -> int:
        return sum(p.lag for p in self.partitions)

    def by_group(self) -> dict[str, int]:
        totals: dict[str, int] = {}
        for p in self.partitions:
            totals[p.group] = totals.get(p.group, 0) + p.lag
        return totals

    def as_json(self) -> dict[str, Any]:
        return {
            "total_lag": self.total_lag,
            "groups": self.by_group(),
            "partitions": [asdict(p) for p in self.partitions],
            "outboxes": [asdict(o) for o in self.outboxes],
        }


class LagMonitor:
    """Reads lag and outbox backlogs again and again with the same clients (the dashboard samples
    every few seconds; starting a reader, an admin client and four pools per sample would cost more
    than the sample). Every group of the deployment (SUBSCRIPTIONS) on every partition it reads."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.topics = {group: {settings.topic(stream) for stream in streams} for group, streams in SUBSCRIPTIONS.items()}
        self._reader = TopicReader(settings.kafka_bootstrap_servers)
        self._admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
        self._engines = {service: create_engine(settings.service_database_url(service), 1) for service in SUBSCRIPTIONS}

    async def start(self) -> None:
        await self._reader.start(set().union(*self.topics.values()))
        await self._admin.start()

    async def close(self) -> None:
        await self._reader.stop()
        await self._admin.close()
        for engine in self._engines.values():
            await engine.dispose()

    async def report(self) -> LagReport:
        return LagReport(await self.consumer_lag(), await self.outbox_backlogs())

    async def consumer_lag(self, now: datetime | None = None) -> list[PartitionLag]:
        now = now or datetime.now(UTC)
        ends = await self._reader.ends()
        committed = {
            group: await committed_offsets(self._admin, group, [tp for tp in ends if tp.topic in group_topics])
            for group, group_topics in self.topics.items()
        }
        oldest = await _oldest_unconsumed(self._reader, committed, ends, now)
        return [
            PartitionLag(group, tp.topic, tp.partition, offset, ends[tp], max(ends[tp] - offset, 0), oldest.get((tp, offset)))
            for group, offsets in committed.items()
            for tp, offset in sorted(offsets.items())
        ]

    async def outbox_backlogs(self) -> list[ServiceBacklog]:
        """Each service's unsent outbox rows; a database that cannot be read is reported, not fatal."""
        backlogs = []
        for service, engine in self._engines.items():
            try:
                async with session_factory(engine)() as session:
                    backlog = await outbox_backlog(session)
                backlogs.append(ServiceBacklog(service, backlog.unsent, backlog.oldest_age_s))
            except Exception as error:  # an ops view of an outage must still show the rest
                backlogs.append(ServiceBacklog(service, None, None, f"{type(error).__name__}: {error}"[:200]))
        return backlogs


async def lag_report(settings: Settings) -> LagReport:
    monitor = LagMonitor(settings)
    try:
        await monitor.start()
        return await monitor.report()
    finally:
        await monitor.close()


async def _oldest_unconsumed(
    reader: TopicReader, committed: dict[str, dict[TopicPartition, int]], ends: dict[TopicPartition, int], now: datetime
) -> dict[tuple[TopicPartition, int], float]:
    """The age of the record at each lagging committed offset (several groups may share one)."""
    wanted = sorted({(tp, offset) for offsets in committed.values() for tp, offset in offsets.items() if offset < ends[tp]})
    ages: dict[tuple[TopicPartition, int], float] = {}
    while wanted:  # one offset per partition per round: a reader has one position per partition
        round_offsets: dict[TopicPartition, int] = {}
        rest = []
        for tp, offset in wanted:
            if tp in round_offsets:
                rest.append((tp, offset))
            else:
                round_offsets[tp] = offset
        for tp, record in (await reader.records_at(round_offsets)).items():
            ages[(tp, round_offsets[tp])] = max((now - record.time).total_seconds(), 0.0)
        wanted = rest
    return ages
