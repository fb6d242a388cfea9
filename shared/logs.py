"""Logs an operator can use: one JSON object per line (or readable text in development) naming the
service and, where known, the event, correlation and order it concerns; never a customer's email
address. And logs that stay readable through an outage: a dependency's outage is told once when it
starts and once when it ends, and a record repeated over and over is rate-limited to a summary."""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

# What the record is about, bound for the code that handles one event (see `about`).
CONTEXT_FIELDS = ("event_id", "event_type", "correlation_id", "order_id")
_context: ContextVar[Mapping[str, str]] = ContextVar("log_context", default={})  # noqa: B039 (never mutated)
EMAIL = re.compile(r"[^@\s\"'<>(),;:]+@[^@\s\"'<>(),;:]+\.[A-Za-z]{2,}")


@contextmanager
def about(**fields: object) -> Iterator[None]:
    """Every record logged inside names these (event_id, correlation_id, order_id, ...)."""
    token = _context.set({**_context.get(), **{k: str(v) for k, v in fields.items() if v is not None}})
    try:
        yield
    finally:
        _context.reset(token)


def redact(text: str) -> str:
    """Email addresses out: a log line must never identify a customer."""
    return EMAIL.sub("<email>", text)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, service, logger, message, what it is about, and the
    traceback as one field, so a log pipeline needs no multi-line parsing."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "service": self.service,
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        entry.update(_context.get())
        for name in CONTEXT_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                entry[name] = str(value)
        if record.exc_info:
            entry["error"] = redact(self.formatException(record.exc_info))
        return json.dumps(entry, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """Readable lines for a terminal, with the same redaction and what the record is about."""

    def __init__(self, service: str) -> None:
        super().__init__(f"%(asctime)s %(levelname)-7s {service} %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        bound = {**_context.get(), **{n: str(getattr(record, n)) for n in CONTEXT_FIELDS if getattr(record, n, None) is not None}}
        line = super().format(record) + ("  [" + " ".join(f"{k}={v}" for k, v in bound.items()) + "]" if bound else "")
        return redact(line)


@dataclass
class OutageTracker:
    """One outage of one dependency (the database, the broker): `failed()` on every failure,
    `recovered()` on the next success. Only the first failure and the recovery are logged, so a
    12 s outage under load is two lines instead of hundreds; the recovery line carries what an
    operator wants to know: how long it lasted and how many failures (refused requests, retries)
    it caused. No I/O of its own: the caller decides what a failure and a success are."""

    what: str
    log: logging.Logger
    clock: Callable[[], float] = time.monotonic
    failures: int = 0
    since: float | None = None
    last_duration_s: float = 0.0
    last_failures: int = 0

    @property
    def open(self) -> bool:
        return self.since is not None

    def failed(self, error: BaseException | str, consequence: str = "") -> bool:
        """Count a failure; returns True (and logs) only for the one that opens the outage."""
        self.failures += 1
        if self.since is not None:
            return False
        self.since = self.clock()
        reason = error if isinstance(error, str) else f"{type(error).__name__}: {error}".strip().rstrip(":")
        self.log.warning("%s unreachable: %s%s", self.what, " ".join(reason.split())[:500], consequence)
        return True

    def recovered(self, consequence: str = "failures") -> bool:
        """Close an open outage; returns True (and logs its duration and count) if one was open."""
        if self.since is None:
            return False
        self.last_duration_s = self.clock() - self.since
        self.last_failures = self.failures
        self.since, self.failures = None, 0
        self.log.warning(
            "%s reachable again after %.1f s (%d %s during the outage)",
            self.what, self.last_duration_s, self.last_failures, consequence,
        )
        return True


@dataclass
class _Repeats:
    window_start: float
    window_s: float
    seen: int = 0
    suppressed: int = 0
    suppressing: bool = False


@dataclass(eq=False)
class RepeatFilter(logging.Filter):
    """Rate-limits records repeated with the same logger and message template: up to `burst` pass
    in a window, the rest are counted, and at the window's end one summary line tells how many were
    suppressed. While the repeats go on, the window doubles (up to `max_window_s`), so a flood
    costs a line a minute; a window without repeats forgets the record. A broker gone for good
    otherwise makes aiokafka log a reconnect error for every node and every fetch: 25,000 lines
    a minute that bury the one line that matters. Summaries go to `sink` (the handler this filter
    guards, set by `install`), so they are written but never filtered or counted themselves."""

    burst: int = 5
    window_s: float = 10.0
    max_window_s: float = 60.0
    clock: Callable[[], float] = time.monotonic
    sink: Callable[[logging.LogRecord], object] | None = None
    _repeats: dict[tuple[str, str], _Repeats] = field(default_factory=dict)
    _lock: threading.RLock = field(default_factory=threading.RLock)
    _next_sweep: float = 0.0

    def __post_init__(self) -> None:
        logging.Filter.__init__(self)

    def install(self, handler: logging.Handler) -> None:
        self.sink = handler.handle
        handler.addFilter(self)

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "repeat_summary", False):
            return True
        key = (record.name, str(record.msg))
        with self._lock:
            now = self.clock()
            if now >= self._next_sweep:  # summaries of floods that stopped are not held back for ever
                self._next_sweep = now + 1.0
                for other_key in list(self._repeats):
                    self._close_window(other_key, now)
            else:
                self._close_window(key, now)
            repeats = self._repeats.setdefault(key, _Repeats(now, self.window_s))
            repeats.seen += 1
            if not repeats.suppressing and repeats.seen <= self.burst:
                return True
            repeats.suppressing = True
            repeats.suppressed += 1
            return False

    def _close_window(self, key: tuple[str, str], now: float) -> None:
        repeats = self._repeats.get(key)
        if repeats is None or now - repeats.window_start < repeats.window_s:
            return
        if repeats.suppressed == 0:  # quiet for a whole window: forget it
            del self._repeats[key]
            return
        self._summarise(key, repeats, now)
        repeats.window_s = min(repeats.window_s * 2, self.max_window_s)
        repeats.window_start, repeats.seen, repeats.suppressed = now, 0, 0

    def _summarise(self, key: tuple[str, str], repeats: _Repeats, now: float) -> None:
        if self.sink is None:
            return
        name, template = key
        summary = logging.LogRecord(
            name, logging.WARNING, __file__, 0,
            "%r repeated %d times in the last %.0f s",
            (template[:200], repeats.suppressed, now - repeats.window_start),
            None,
        )
        summary.repeat_summary = True
        self.sink(summary)
