"""The event consumer: batches from Kafka, applied set-based by the service's handlers together
with their inbox rows in one transaction, offsets committed only after the database commit,
bounded retries one event at a time when a batch fails, and a dead-letter topic for events that
cannot be parsed or keep failing. `supervise()` restarts the consumer after a crash."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.errors import IllegalStateError, KafkaError, MessageSizeTooLargeError
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared import metrics
from shared.events import EVENT_TYPES, Envelope, Event, UnknownEventType, parse_envelope
from shared.logs import OutageTracker, about
from shared.settings import Settings

from .crashpoints import CONSUMER_AFTER_DB_COMMIT, crash_point
from .failures import is_transient, is_unreachable
from .handlers import DeadLetter, Handlers
from .outbox import unit_of_work
from .reasons import failed, rejected, unparseable

log = logging.getLogger("bus.consumer")

CLAIM_INBOX_MANY = text(
    "INSERT INTO inbox (consumer, event_id) SELECT :consumer, unnest(CAST(:event_ids AS uuid[]))"
    " ON CONFLICT DO NOTHING RETURNING event_id"
)
DEAD_LETTER_TIMEOUT_S = 15.0  # a send the broker never acknowledges must not hold the loop forever
# What a dead letter's reason starts with; the metric's `reason` label is one of these (or "other"),
# never the free text, so it stays a handful of series.
DEAD_LETTER_CATEGORIES = frozenset({"unparseable", "rejected", "failed"})


def dead_letter_category(reason: str) -> str:
    """The reason's first word when it is a known category ("failed after 5 attempts: ..." is "failed")."""
    word = reason.split(":", 1)[0].split(" ", 1)[0].strip().lower()
    return word if word in DEAD_LETTER_CATEGORIES else "other"


class DeadLetterFailed(Exception):
    """The dead-letter topic did not take a message: committing past it would lose it, so the
    partition is read again from the start of its batch."""


@dataclass
class Received:
    record: ConsumerRecord[bytes, bytes]
    envelope: Envelope
    event: Event


@dataclass
class EventConsumer:
    name: str
    topics: Sequence[str]
    handlers: Handlers
    sessions: async_sessionmaker[AsyncSession]
    producer: AIOKafkaProducer
    settings: Settings
    # The Kafka consumer group; `name` stays the inbox's consumer, so a fresh group (a replay from
    # offset zero) still finds every event it already applied.
    group_id: str | None = None
    processed: int = 0
    dead_lettered: int = 0
    # Messages of an event type this build does not know (a newer producer's): passed over and
    # committed, not dead-lettered. Known types without a handler here, and the service's own
    # events, are passed over uncounted.
    skipped: int = 0
    last_poll_at: float = field(default_factory=time.monotonic)
    restarts: int = 0
    # Restart backoff after a crash: doubles up to the cap, back to the start after a run that
    # stayed up for `restart_reset_after_s` (a crash an hour later is not a crash loop).
    restart_backoff_s: float = 0.5
    restart_backoff_max_s: float = 30.0
    restart_reset_after_s: float = 60.0
    down: bool = False
    _stopping: bool = False
    _consumer: AIOKafkaConsumer | None = None
    _up_since: float | None = None
    _dead_letter_failures: int = 0
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    _unfetched_since: dict[TopicPartition, float] = field(default_factory=dict)
    _delivered_at: dict[TopicPartition, float] = field(default_factory=dict)
    _unknown_types: set[str] = field(default_factory=set)
    _db_outage: OutageTracker = field(init=False)
    _own_name: bytes = field(init=False)

    def __post_init__(self) -> None:
        self._db_outage = OutageTracker(f"{self.name}: database", log)
        self._own_name = self.name.encode()

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()  # ends a restart or retry backoff at once

    @property
    def healthy(self) -> bool:
        return self.progress() == "ok"

    def progress(self) -> str:
        """Progress, not just a live task: "ok", or why not. A crashed consumer waiting for its
        restart is down; a loop stuck in one batch stops polling; and a consumer whose broker is
        gone still polls (getmany returns empty batches), so the age of the last fetch response
        for its partitions is what tells a dead broker from an idle topic (an idle connected
        consumer gets an empty response every fetch_max_wait_ms)."""
        if self.down:
            return f"down (crashed {self.restarts}x, restarting)"
        busy = time.monotonic() - self.last_poll_at
        if busy >= 30:
            return f"stalled: one batch has been handled for {busy:.0f} s"
        silent = self.fetch_silence_s()
        if busy < 2 and silent >= self.settings.consumer_stall_after_s:
            return f"stalled: no fetch response from the broker for {silent:.0f} s"
        return "ok"

    def fetch_silence_s(self) -> float:
        """Seconds since the assigned partition heard from least recently got a fetch response
        (aiokafka stamps every successful response, empty or not) or handed us records (one with a
        backlog buffered is not fetched again until we take it); 0 when nothing is assigned. A
        partition with neither yet counts from when it was first seen so (just assigned)."""
        kafka = self._consumer
        if kafka is None:
            return 0.0
        now = time.time()
        oldest = now
        assigned = kafka.assignment()
        for tp in assigned:
            try:
                stamp_ms = kafka.last_poll_timestamp(tp)
            except AssertionError:  # revoked between assignment() and here
                continue
            heard = max((stamp_ms or 0) / 1000, self._delivered_at.get(tp, 0.0))
            if heard:
                self._unfetched_since.pop(tp, None)
            else:
                heard = self._unfetched_since.setdefault(tp, now)
            oldest = min(oldest, heard)
        for seen in (self._unfetched_since, self._delivered_at):
            for tp in [tp for tp in seen if tp not in assigned]:
                del seen[tp]
        return max(0.0, now - oldest)

    async def supervise(self) -> None:
        """Run the consumer until stop(), restarting it after a crash: a dead consumer task would
        leave the service answering HTTP while it consumes nothing. Nothing is lost by a crash:
        offsets are committed only after the effects, so the new member re-reads from there."""
        delay = self.restart_backoff_s
        while not self._stopping:
            try:
                await self.run()
            except asyncio.CancelledError:
                raise
            except Exception as error:
                if self._stopping:
                    log.warning("%s: consumer ended while stopping (%r)", self.name, error)
                    return
                self.down = True
                self.restarts += 1
                if self._up_since is not None and time.monotonic() - self._up_since >= self.restart_reset_after_s:
                    delay = self.restart_backoff_s
                log.error(
                    "%s: consumer crashed (%s: %s); restart #%d in %.1f s",
                    self.name, type(error).__name__, error, self.restarts, delay, exc_info=error,
                )
                await self._pause(delay)
                delay = min(delay * 2, self.restart_backoff_max_s)

    async def _pause(self, seconds: float) -> None:
        """Sleep, but wake at once on stop()."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)

    async def run(self) -> None:
        consumer = AIOKafkaConsumer(
            *self.topics,
            bootstrap_servers=self.settings.kafka_bootstrap_servers,
            group_id=self.group_id or self.name,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=self.settings.kafka_session_timeout_ms,
            heartbeat_interval_ms=self.settings.kafka_heartbeat_interval_ms,
            fetch_max_wait_ms=self.settings.kafka_fetch_max_wait_ms,
            max_poll_records=self.settings.kafka_max_poll_records,
        )
        self._consumer = consumer
        self._up_since = None
        self._unfetched_since.clear()
        self._delivered_at.clear()
        lag = metrics.PartitionLag()
        try:
            await consumer.start()  # joins the group: returns once partitions are assigned
            self.down = False
            self._up_since = self.last_poll_at = time.monotonic()
            while not self._stopping:
                batch = await consumer.getmany(timeout_ms=200, max_records=self.settings.kafka_max_poll_records)
                self.last_poll_at = time.monotonic()
                delivered_at = time.time()
                for tp in batch:
                    self._delivered_at[tp] = delivered_at
                if batch:
                    metrics.CONSUMER_POLL_RECORDS.observe(sum(map(len, batch.values())))
                    await self._handle_poll(batch)
                lag.update(consumer, batch)
        finally:
            lag.forget()
            self._consumer = None
            try:  # bounded: leaving the group of a broker that is gone must not block the restart
                await asyncio.wait_for(consumer.stop(), 10)
            except Exception as error:
                log.warning("%s: closing the Kafka consumer failed (%r)", self.name, error)

    async def _handle_poll(self, batch: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]) -> None:
        """Everything one poll returned, over all partitions, applied in one transaction (fewer
        commits, and events about one order that travel on different partitions are applied
        together), then one offset commit. When a dead letter cannot be sent, nothing of its
        partition is committed and the partition is read again from the poll's first record; when
        it fails while the poll is applied one event at a time, every partition is read again, so
        no message is skipped (the inbox absorbs what was applied; a message may be dead-lettered
        twice)."""
        usable: list[Received] = []
        done: dict[TopicPartition, int] = {}
        for tp, records in batch.items():
            try:
                usable += await self._usable(records)
            except DeadLetterFailed as error:
                await self._read_again({tp: records}, error)
                continue
            done[tp] = records[-1].offset + 1
        try:
            await self._apply_poll(usable)
        except DeadLetterFailed as error:
            await self._read_again(batch, error)
            return
        crash_point(CONSUMER_AFTER_DB_COMMIT, passes=len(usable))
        if done:
            await self._commit(done)

    async def _read_again(self, batch: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]], error: Exception) -> None:
        assert self._consumer is not None
        delay = min(self.settings.handler_retry_backoff_s * 2**self._dead_letter_failures, 10.0)
        self._dead_letter_failures += 1
        for tp, records in batch.items():
            log.error(
                "%s: dead-letter send failed (%s); %s re-read from offset %d in %.1f s",
                self.name, error, tp, records[0].offset, delay,
            )
            with contextlib.suppress(IllegalStateError):  # revoked meanwhile: its next owner re-reads it
                self._consumer.seek(tp, records[0].offset)
        await self._pause(delay)

    async def _usable(self, records: list[ConsumerRecord[bytes, bytes]]) -> list[Received]:
        """The records this service handles, parsed; what it does not handle is passed over unread,
        what cannot be parsed is dead-lettered."""
        usable: list[Received] = []
        handled = self.handlers.event_types
        for record in records:
            # The relay's headers let a reader pass over what it does not handle, and its own events,
            # without parsing them; a message without them (another producer) is judged by its envelope.
            headers = dict(record.headers or ())
            event_type = headers.get("event_type")
            if event_type is not None and event_type.decode(errors="replace") not in handled:
                self._pass_over(event_type.decode(errors="replace"))
                continue
            if headers.get("producer") == self._own_name:
                continue
            try:
                envelope, event = parse_envelope(record.value or b"", handled)
            except UnknownEventType as unhandled:
                self._pass_over(str(unhandled))
                continue
            except ValueError as error:
                await self._dead_letter(record, unparseable(error))
                continue
            if envelope.producer == self.name:
                continue  # ours, from a producer that set no header: what we did, not news to us
            usable.append(Received(record, envelope, event))
        return usable

    async def _apply_poll(self, usable: list[Received]) -> None:
        """The poll's events together; when that fails, one at a time with retries."""
        try:
            await self._apply(usable)
        except Exception as error:
            if is_unreachable(error):
                self._db_outage.failed(error, "; retrying with backoff, committing nothing past the failed event")
            elif isinstance(error, DeadLetter):  # expected: the one event is parked below, the rest applied
                log.info("%s: a poll of %d events holds an unapplicable one (%s); handling them one by one",
                         self.name, len(usable), error)
            else:
                log.warning("%s: a poll of %d events failed (%r); handling them one by one", self.name, len(usable), error)
            for received in usable:
                await self._apply_with_retries(received)
            return
        if usable:  # only a batch that used the database proves it is back
            self._db_outage.recovered("retries")

    def _pass_over(self, event_type: str) -> None:
        """A type without a handler here is none of this consumer's business; one unknown to this
        build (a newer producer's) is counted, and told once per type, since a deploy is behind."""
        if event_type in EVENT_TYPES:
            return
        self.skipped += 1
        if event_type not in self._unknown_types and len(self._unknown_types) < 100:
            self._unknown_types.add(event_type)
            log.warning("%s: skipping events of unknown type %r (a newer producer?)", self.name, event_type[:100])

    async def _apply(self, batch: list[Received]) -> None:
        """The batch's events in as few transactions as possible: one commit instead of one per
        event, but at most `consumer_max_events_per_transaction` events per transaction, so a
        burst does not hold one long transaction (it would keep the relay walking rows it already
        sent, and delay every event of the burst until the end)."""
        size = max(self.settings.consumer_max_events_per_transaction, 1)
        for start in range(0, len(batch), size):
            await self._apply_together(batch[start : start + size])
        self.processed += len(batch)
        metrics.count_by_type(metrics.EVENTS_CONSUMED, (received.envelope.event_type for received in batch))

    async def _apply_together(self, batch: list[Received]) -> None:
        """One transaction: one inbox statement, one call of the service's handlers with the events
        not applied before (each once, in their order)."""
        started = time.perf_counter()
        async with unit_of_work(self.sessions, self.name, self.settings) as uow:
            ids = [received.envelope.event_id for received in batch]
            fresh = set((await uow.session.execute(CLAIM_INBOX_MANY, {"consumer": self.name, "event_ids": ids})).scalars())
            new: list[tuple[Envelope, Event]] = []
            for received in batch:
                if received.envelope.event_id in fresh:
                    fresh.discard(received.envelope.event_id)  # the same id twice in one batch: once
                    new.append((received.envelope, received.event))
            if new:
                uow.cause = new[0][0] if len(new) == 1 else None
                await self.handlers.apply(new, uow)
        metrics.CONSUMER_APPLY_SECONDS.observe(time.perf_counter() - started)  # committed: failures are not timed

    async def _apply_with_retries(self, received: Received) -> None:
        """One event on its own (the fallback of a poll that failed): its records name it."""
        envelope = received.envelope
        order_id = getattr(received.event, "order_id", None)
        with about(event_id=envelope.event_id, event_type=envelope.event_type, correlation_id=envelope.correlation_id,
                   order_id=order_id):
            await self._apply_alone(received)

    async def _apply_alone(self, received: Received) -> None:
        attempt = 0
        while True:
            try:
                await self._apply([received])
                self._db_outage.recovered("retries")
                return
            except DeadLetter as error:
                await self._dead_letter(received.record, rejected(error))
                return
            except Exception as error:
                attempt += 1
                transient = is_transient(error)
                if self._stopping or (not transient and attempt > self.settings.handler_retries):
                    if self._stopping and transient:
                        raise  # leave it uncommitted: the next owner re-reads it
                    envelope = received.envelope
                    log.exception("%s: %s %s failed %d times", self.name, envelope.event_type, envelope.event_id, attempt)
                    await self._dead_letter(received.record, failed(error, attempt, envelope.event_type))
                    return
                delay = min(self.settings.handler_retry_backoff_s * 2 ** (attempt - 1), 10.0)
                if is_unreachable(error):  # told once per outage, not once per retry
                    self._db_outage.failed(error, "; retrying with backoff, committing nothing past the failed event")
                else:
                    log.warning("%s: retrying %s in %.1fs (%r)", self.name, received.envelope.event_type, delay, error)
                await self._pause(delay)

    async def _dead_letter(self, record: ConsumerRecord[bytes, bytes], reason: str) -> None:
        """Park the message with the reason in its headers; the partition moves on only once the
        broker acknowledged it (DeadLetterFailed otherwise)."""
        try:
            try:
                await self._send_dead_letter(record, record.value, reason)
            except MessageSizeTooLargeError as error:
                # Larger than our producer may send: it would fail the same way for ever and hold the
                # partition. Park the reason without the value, which stays at its source offset.
                size = len(record.value or b"")
                why = f"{reason} (value of {size} bytes not copied: {error})"
                await self._send_dead_letter(record, None, why, [("dlq.value_dropped", str(size).encode())])
        except Exception as error:
            raise DeadLetterFailed(f"{record.topic}[{record.partition}]@{record.offset}: {error!r}") from error
        self._dead_letter_failures = 0
        self.dead_lettered += 1
        metrics.DEAD_LETTERS.labels(record.topic, dead_letter_category(reason)).inc()
        event_id = dict(record.headers or ()).get("event_id", b"").decode(errors="replace") or None
        log.error("%s: dead-lettered %s[%d]@%d: %s", self.name, record.topic, record.partition, record.offset, reason,
                  extra={"event_id": event_id})

    async def _send_dead_letter(
        self, record: ConsumerRecord[bytes, bytes], value: bytes | None, reason: str,
        extra_headers: Sequence[tuple[str, bytes]] = (),
    ) -> None:
        headers = [
            *(record.headers or []),
            ("dlq.reason", reason.encode()[:4000]),
            ("dlq.consumer", self.name.encode()),
            ("dlq.topic", record.topic.encode()),
            ("dlq.partition", str(record.partition).encode()),
            ("dlq.offset", str(record.offset).encode()),
            *extra_headers,
        ]
        send = self.producer.send_and_wait(f"{record.topic}.dlq", value=value, key=record.key, headers=headers)
        await asyncio.wait_for(send, DEAD_LETTER_TIMEOUT_S)

    async def _commit(self, offsets: dict[TopicPartition, int]) -> None:
        """One commit for the poll's partitions. A failed commit (rebalance, lost broker) loses
        nothing: the next owner re-reads from the last committed offset and the inbox absorbs the
        repeats."""
        assert self._consumer is not None
        try:
            await asyncio.wait_for(self._consumer.commit(offsets), timeout=10)
        except (KafkaError, TimeoutError) as error:
            log.warning("%s: commit of %s failed (%r); will be redelivered", self.name, offsets, error)
