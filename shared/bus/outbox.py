"""The unit of work: one database transaction in which a service changes its state and writes the
events it emits to the outbox, so both commit or neither does."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from uuid import UUID

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.events import Envelope, Event, envelope_json, new_event_id, utc_now
from shared.settings import Settings

# One statement for all of a flush's events (arrays, not executemany: one row per round of the
# executor and one statement trigger instead of one of each per event). Ids follow the arrays'
# order: the sort runs before the identity default is evaluated.
INSERT_OUTBOX = text(
    """
    INSERT INTO outbox (event_id, event_type, topic, key, envelope)
    SELECT u.event_id, u.event_type, u.topic, u.key, CAST(u.envelope AS jsonb)
    FROM unnest(CAST(:event_ids AS uuid[]), CAST(:event_types AS text[]), CAST(:topics AS text[]),
                CAST(:keys AS text[]), CAST(:envelopes AS text[]))
         WITH ORDINALITY AS u(event_id, event_type, topic, key, envelope, n)
    ORDER BY u.n
    """
)


@dataclass(frozen=True, slots=True)
class PendingEvent:
    """An emitted event waiting for the flush; its envelope is serialized only then, in one call."""

    event: Event
    event_id: UUID
    occurred_at: datetime
    correlation_id: str
    causation_id: str | None
    topic: str
    key: str


@dataclass
class UnitOfWork:
    session: AsyncSession
    producer: str
    settings: Settings
    cause: Envelope | None = None
    pending: list[PendingEvent] = field(default_factory=list)

    def emit(self, event: Event, correlation_id: str | None = None, cause: Envelope | None = None) -> UUID:
        """Queue an event for the outbox (it is written in this transaction, published after it)
        and return its event id. `cause`: the event it answers, when a set-based handler applies
        many at once (default: `self.cause`, the one being handled)."""
        key = event.key
        cause = cause or self.cause
        pending = PendingEvent(
            event=event,
            event_id=new_event_id(),
            occurred_at=utc_now(),
            correlation_id=correlation_id or (cause.correlation_id if cause else key),
            causation_id=str(cause.event_id) if cause else None,
            topic=self.settings.topic(event.stream),
            key=key,
        )
        self.pending.append(pending)
        return pending.event_id

    async def flush_events(self) -> None:
        """Write queued events in one statement, keeping their emission order."""
        if not self.pending:
            return
        pending, self.pending = self.pending, []
        producer = self.producer
        await self.session.execute(
            INSERT_OUTBOX,
            {
                "event_ids": [p.event_id for p in pending],
                "event_types": [p.event.event_type for p in pending],
                "topics": [p.topic for p in pending],
                "keys": [p.key for p in pending],
                "envelopes": [
                    envelope_json(p.event, p.event_id, p.occurred_at, p.correlation_id, p.causation_id, producer)
                    for p in pending
                ],
            },
        )


@asynccontextmanager
async def unit_of_work(
    sessions: async_sessionmaker[AsyncSession], producer: str, settings: Settings, cause: Envelope | None = None
) -> AsyncIterator[UnitOfWork]:
    """Commit state and outbox together on success; roll both back on any exception."""
    async with sessions() as session, session.begin():
        uow = UnitOfWork(session=session, producer=producer, settings=settings, cause=cause)
        yield uow
        await uow.flush_events()


OUTBOX_BACKLOG = text(
    "SELECT count(*) AS unsent, EXTRACT(EPOCH FROM now() - min(created_at)) AS oldest_age_s "
    "FROM outbox WHERE sent_at IS NULL"
)


@dataclass(frozen=True)
class OutboxBacklog:
    """Events committed but not yet published: what the relay still owes the broker."""

    unsent: int
    oldest_age_s: float  # 0 when nothing is waiting


async def outbox_backlog(session: AsyncSession) -> OutboxBacklog:
    """One read of a service's outbox backlog, for metrics, `fulfil lag` and the dashboard."""
    row = (await session.execute(OUTBOX_BACKLOG)).one()
    return OutboxBacklog(unsent=int(row.unsent), oldest_age_s=float(row.oldest_age_s or 0.0))
