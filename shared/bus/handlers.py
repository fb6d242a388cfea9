"""What a service consumes: its handlers keyed by event class. The consumer's filter (which types
it parses) and the service's subscription (which streams it reads) are derived from them, so the
three cannot drift apart.

Handlers work set-based: the consumer hands a service the new events of a whole batch at once, in
their order, and the service applies them with a few statements instead of a few per event."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from shared.bus.outbox import UnitOfWork
from shared.events import Envelope, Event, Stream

Batch = Sequence[tuple[Envelope, Event]]
# The events of one class that came next to each other in a batch (a "run"), in their order.
RunHandler = Callable[[Sequence[tuple[Envelope, Any]], UnitOfWork], Awaitable[None]]
BatchHandler = Callable[[Batch, UnitOfWork], Awaitable[None]]


class DeadLetter(Exception):
    """Raised by a handler for an event that can never succeed (e.g. refers to nothing we know)."""


@dataclass(frozen=True)
class Handlers:
    """The event classes a service handles and the one function that applies a batch of them."""

    classes: frozenset[type[Event]]
    apply: BatchHandler

    @classmethod
    def by_class(cls, handlers: Mapping[type[Event], RunHandler]) -> Handlers:
        """Each class's handler takes its runs: a batch [A1, A2, B1, A3] is applied as A(A1, A2),
        B(B1), A(A3), so the order of events is kept and a burst of one type (a flash sale's
        OrderPlaced) is one call."""
        by_name = {model.event_type: handler for model, handler in handlers.items()}

        async def apply(batch: Batch, uow: UnitOfWork) -> None:
            for run in runs(batch):
                await by_name[run[0][0].event_type](run, uow)

        return cls(frozenset(handlers), apply)

    @classmethod
    def whole_batch(cls, classes: Sequence[type[Event]], apply: BatchHandler) -> Handlers:
        """One function for the whole batch, whatever the classes: for a service that groups by
        something else than the event's class (orders and the notifier group by order)."""
        return cls(frozenset(classes), apply)

    @property
    def event_types(self) -> frozenset[str]:
        return frozenset(model.event_type for model in self.classes)

    @property
    def streams(self) -> tuple[Stream, ...]:
        """The streams to subscribe to, in the order Stream declares them."""
        wanted = {model.stream for model in self.classes}
        return tuple(stream for stream in Stream if stream in wanted)


def runs(batch: Batch) -> list[Batch]:
    """Split a batch into maximal runs of consecutive events of the same type."""
    result: list[list[tuple[Envelope, Event]]] = []
    for item in batch:
        if result and result[-1][0][0].event_type == item[0].event_type:
            result[-1].append(item)
        else:
            result.append([item])
    return list(result)


def each(handler: Callable[[Any, UnitOfWork], Awaitable[None]]) -> RunHandler:
    """A handler of one event at a time, as a run handler: for rare events where a set-based
    version would buy nothing. What it emits names that event as its cause."""

    async def apply_each(run: Sequence[tuple[Envelope, Any]], uow: UnitOfWork) -> None:
        for envelope, event in run:
            uow.cause = envelope
            await handler(event, uow)
        uow.cause = None

    return apply_each
