"""The unit of work: one database transaction in which a service changes its state and writes the
events it emits to the outbox, so both commit or neither does."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.events import Envelope, Event, new_event_id, utc_now
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


@dataclass
class UnitOfWork:
    session: AsyncSession
    producer: str
    settings: Settings
    cause: Envelope | None = None
    pending: list[tuple[Envelope, str, str]] = field(default_factory=list)

    def emit(self, event: Event, correlation_id: str | None = None) -> Envelope:
        """Queue an event for the outbox; it is written in this transaction, published after it."""
        # Built without re-validation: every field comes from a validated event or from here.
        envelope = Envelope.model_construct(
            event_id=new_event_id(),
            occurred_at=utc_now(),
            event_type=event.event_type,
            schema_version=event.schema_version,
            correlation_id=correlation_id or (self.cause.correlation_id if self.cause else event.key),
            causation_id=str(self.cause.event_id) if self.cause else None,
            producer=self.producer,
            payload=event.model_dump(mode="json"),
        )
        self.pending.append((envelope, self.settings.topic(event.stream), event.key))
        return envelope

    async def flush_events(self) -> None:
        """Write queued events in one statement, keeping their emission order."""
        if not self.pending:
            return
        pending, self.pending = self.pending, []
        await self.session.execute(
            INSERT_OUTBOX,
            {
                "event_ids": [envelope.event_id for envelope, _, _ in pending],
                "event_types": [envelope.event_type for envelope, _, _ in pending],
                "topics": [topic for _, topic, _ in pending],
                "keys": [key for _, _, key in pending],
                # pydantic-core serializes ~3x faster than json.dumps(model_dump())
                "envelopes": [envelope.model_dump_json() for envelope, _, _ in pending],
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
