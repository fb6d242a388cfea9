"""The notifier's decisions, pure: which moments of an order become messages, what one message says
when several moments fall in one window, and when a failed delivery is tried again."""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from enum import StrEnum
from typing import Literal
from uuid import UUID

LANGUAGES = ("en", "de", "da", "hu", "it")
DEFAULT_LANGUAGE = "en"


class Kind(StrEnum):
    """A moment the customer hears about."""

    CONFIRMATION = "confirmation"
    DELAY = "delay"
    GOOD_NEWS = "good_news"
    READY = "ready"
    SHIPPED = "shipped"
    CANCELLED = "cancelled"
    STILL_WAITING = "still_waiting"


# The customer may switch these off; the others always go (they change what the customer expects).
OPTIONAL_KINDS = frozenset({Kind.GOOD_NEWS, Kind.STILL_WAITING})
# When one window holds several moments, the most important one names the message (its subject).
PRECEDENCE = (Kind.CANCELLED, Kind.DELAY, Kind.CONFIRMATION, Kind.SHIPPED, Kind.READY, Kind.GOOD_NEWS, Kind.STILL_WAITING)


def language_of(locale: str | None) -> str:
    """`de-AT` speaks `de`; a language we have no templates for gets English."""
    language = (locale or "").replace("_", "-").split("-")[0].lower()
    return language if language in LANGUAGES else DEFAULT_LANGUAGE


# --- what the notifier knows of an order --------------------------------------------------------


@dataclass(frozen=True)
class LineFacts:
    """Everything the notifier heard about one order line, from whichever stream told it first."""

    line_no: int
    sku: str = ""
    qty: int = 0
    reserved: int = 0
    short: int = 0
    rejected_reason: str | None = None
    booked: bool = False
    promised_date: date | None = None
    first_promised_date: date | None = None
    allocated: int = 0
    shipped: int = 0
    cancelled: int = 0
    consolation_offered: bool = False
    preordered: int = 0  # units told to wait for the SKU's release date (promised_date is that date)

    # What each fact does to the line: set to the larger value, so a fact that arrives twice (or a
    # StockShort after its StockReserved, which it repeats) changes nothing.
    def with_reserved(self, qty: int) -> LineFacts:
        return replace(self, reserved=max(self.reserved, qty))

    def with_short(self, qty_short: int, qty_reserved: int) -> LineFacts:
        return replace(self, short=max(self.short, qty_short), reserved=max(self.reserved, qty_reserved))

    def with_preordered(self, qty: int, release_date: date) -> LineFacts:
        return replace(self, preordered=max(self.preordered, qty), promised_date=release_date,
                       first_promised_date=self.first_promised_date or release_date)

    def with_rejected(self, reason: str) -> LineFacts:
        return replace(self, rejected_reason=reason)

    def with_booking(self, qty_waiting: int, promised: date | None) -> LineFacts:
        return replace(self, booked=True, short=max(self.short, qty_waiting), promised_date=promised,
                       first_promised_date=self.first_promised_date or promised)

    def with_date(self, promised: date | None) -> LineFacts:
        return replace(self, promised_date=promised, first_promised_date=self.first_promised_date or promised)

    def with_allocated(self, qty: int) -> LineFacts:
        return replace(self, allocated=self.allocated + qty)

    def with_shipped(self, qty: int) -> LineFacts:
        return replace(self, shipped=self.shipped + qty)

    def with_cancelled(self, qty: int) -> LineFacts:
        return replace(self, cancelled=max(self.cancelled, qty))

    @property
    def awaiting_release(self) -> int:
        """Units preordered and not yet decided on the release day (then they are reserved or short)."""
        if self.cancelled or self.rejected_reason or self.reserved + self.short >= self.qty:
            return 0
        return self.preordered

    @property
    def waiting(self) -> int:
        """Units still waiting for goods or for their release (none once cancelled or rejected)."""
        if self.cancelled or self.rejected_reason:
            return 0
        return max(self.short - self.allocated, 0) + self.awaiting_release

    @property
    def settled(self) -> bool:
        """Inventory and, for a shortfall, the allocator have decided the line: the customer can be
        told what ships now and what waits until when (a preordered line: until its release)."""
        if self.cancelled or self.rejected_reason:
            return True
        decided = self.reserved + self.short + self.awaiting_release
        return self.qty > 0 and decided >= self.qty and (self.short == 0 or self.booked)


@dataclass(frozen=True)
class OrderFacts:
    order_id: UUID
    external_id: str
    customer_id: str
    locale: str
    channel: str
    placed: bool
    confirmed: bool
    lines: tuple[LineFacts, ...]

    def line(self, line_no: int) -> LineFacts | None:
        return next((line for line in self.lines if line.line_no == line_no), None)

    def with_line(self, changed: LineFacts) -> OrderFacts:
        others = (line for line in self.lines if line.line_no != changed.line_no)
        return replace(self, lines=tuple(sorted((*others, changed), key=lambda line: line.line_no)))

    @property
    def waiting_lines(self) -> tuple[LineFacts, ...]:
        return tuple(line for line in self.lines if line.waiting > 0)


def confirmation_due(order: OrderFacts) -> bool:
    """Once, when the order is known and every line has settled: one message, not one per line."""
    return order.placed and not order.confirmed and bool(order.lines) and all(line.settled for line in order.lines)


# --- moments: what the handlers record, to be composed when the order's window closes -------------


@dataclass(frozen=True)
class Notice:
    """One moment about one order, stored until the order's coalescing window closes."""

    kind: Kind
    line_no: int | None = None
    previous_date: date | None = None
    new_date: date | None = None
    # READY / SHIPPED / CANCELLED: (line_no, units) concerned.
    units: tuple[tuple[int, int], ...] = ()
    # DELAY: this delay earned the line its (one) consolation, stored with the line.
    consolation: bool = False


@dataclass(frozen=True)
class NoticePolicy:
    """The thresholds of the date-change decisions (settings)."""

    consolation_after_days: int = 7
    good_news_min_days: int = 1


def eta_notice(line: LineFacts, previous: date | None, new: date | None, policy: NoticePolicy) -> Notice | None:
    """A moved promise: later (or lost) is a delay, earlier by enough (or newly known) is good news.
    A line not waiting any more, or a move too small to matter, is not news."""
    if line.waiting == 0 or previous == new:
        return None
    if is_later(previous, new):
        return Notice(Kind.DELAY, line.line_no, previous, new)
    if previous is None or new is None or (previous - new).days >= policy.good_news_min_days:
        return Notice(Kind.GOOD_NEWS, line.line_no, previous, new)
    return None


def is_later(previous: date | None, new: date | None) -> bool:
    """No date after a date is later than any date; a date after none is not."""
    if new is None:
        return previous is not None
    return previous is not None and new > previous


def consolation_due(line: LineFacts, new: date | None, policy: NoticePolicy) -> bool:
    """Once per line, when the new promise is more than the threshold past the first one (or the
    date is lost after one was promised)."""
    if line.consolation_offered or line.first_promised_date is None:
        return False
    if new is None:
        return True
    return (new - line.first_promised_date).days > policy.consolation_after_days


# --- the message a window becomes -----------------------------------------------------------------


@dataclass(frozen=True)
class Consolation:
    """What the shop offers for a long delay (a policy setting), stored once per line."""

    kind: Literal["discount", "free_shipping"]
    code: str
    percent: int | None = None


@dataclass(frozen=True)
class LineView:
    """One line as the customer reads it."""

    line_no: int
    sku: str
    qty: int
    qty_now: int = 0  # reserved or allocated, on its way or about to be
    qty_waiting: int = 0
    promised_date: date | None = None
    qty_rejected: int = 0
    rejected_reason: str | None = None
    qty_cancelled: int = 0
    qty_shipped: int = 0
    days_left: int | None = None  # still-waiting: days to the promised date (None: no date known)
    preorder: bool = False  # waits for the product's release: promised_date is the release date


@dataclass(frozen=True)
class Item:
    """Units of one line that a moment concerns (ready, shipped, cancelled)."""

    line_no: int
    sku: str
    qty: int


@dataclass(frozen=True)
class Section:
    """One moment of the message; the templates render one block per section.

    confirmation: `lines` (every line); delay and good_news: `lines` (the line), `previous_date`,
    `new_date` (None: no date known), `consolation` (delay only, optional); ready, shipped and
    cancelled: `items` and `waiting` (lines still waiting); still_waiting: `lines` with days_left."""

    kind: Kind
    lines: tuple[LineView, ...] = ()
    items: tuple[Item, ...] = ()
    waiting: tuple[LineView, ...] = ()
    previous_date: date | None = None
    new_date: date | None = None
    consolation: Consolation | None = None


@dataclass(frozen=True)
class Message:
    order_id: UUID
    external_id: str
    customer_id: str
    language: str
    channel: str
    sections: tuple[Section, ...]
    today: date
    locale: str = ""  # the customer's locale (e.g. en-GB), for dates and numbers in their format
    tracking_url: str = ""  # the customer's tracking page (a signed link); none in a message without it

    @property
    def kind(self) -> Kind:
        """The message's headline: its most important moment."""
        return min((section.kind for section in self.sections), key=PRECEDENCE.index)

    @property
    def kinds(self) -> tuple[Kind, ...]:
        return tuple(dict.fromkeys(section.kind for section in self.sections))


@dataclass(frozen=True)
class Preferences:
    language: str | None = None
    good_news: bool = True
    still_waiting: bool = True

    def wants(self, kind: Kind) -> bool:
        if kind not in OPTIONAL_KINDS:
            return True
        return self.good_news if kind is Kind.GOOD_NEWS else self.still_waiting


def line_view(line: LineFacts, today: date | None = None) -> LineView:
    days_left = None
    if today is not None and line.promised_date is not None:
        days_left = max((line.promised_date - today).days, 0)
    return LineView(
        line_no=line.line_no,
        sku=line.sku,
        qty=line.qty,
        qty_now=0 if line.rejected_reason else min(line.reserved + line.allocated, line.qty - line.cancelled),
        qty_waiting=line.waiting,
        promised_date=line.promised_date if line.waiting else None,
        qty_rejected=line.qty if line.rejected_reason else 0,
        rejected_reason=line.rejected_reason,
        qty_cancelled=line.cancelled,
        qty_shipped=line.shipped,
        days_left=days_left,
        preorder=line.awaiting_release > 0,
    )


def coalesce(notices: Iterable[Notice], policy: NoticePolicy | None = None) -> list[Notice]:
    """Several moves of one line's date in one window are one move, from the first date to the
    last (none if it came back, or if the net move earlier is too small to be news); units of one
    kind and line add up; the rest stays in order."""
    policy = policy or NoticePolicy()
    merged: list[Notice] = []
    dates: dict[int, int] = {}  # line_no -> index in merged of its date notice
    units: dict[Kind, int] = {}
    for notice in notices:
        if notice.kind in (Kind.DELAY, Kind.GOOD_NEWS) and notice.line_no is not None:
            at = dates.get(notice.line_no)
            if at is None:
                dates[notice.line_no] = len(merged)
                merged.append(notice)
            else:
                first = merged[at]
                kind = Kind.DELAY if is_later(first.previous_date, notice.new_date) else Kind.GOOD_NEWS
                consolation = first.consolation or notice.consolation
                merged[at] = replace(first, kind=kind, new_date=notice.new_date, consolation=consolation)
        elif notice.units and notice.kind in units:
            at = units[notice.kind]
            total: dict[int, int] = dict(merged[at].units)
            for line_no, qty in notice.units:
                total[line_no] = total.get(line_no, 0) + qty
            merged[at] = replace(merged[at], units=tuple(sorted(total.items())))
        elif any(existing.kind is notice.kind and not existing.units and existing.line_no is None for existing in merged):
            continue  # one confirmation, one still-waiting update
        else:
            if notice.units:
                units[notice.kind] = len(merged)
            merged.append(notice)
    return [n for n in merged if not _no_longer_news(n, policy)]


def _no_longer_news(notice: Notice, policy: NoticePolicy) -> bool:
    """A merged date move that came back, or that ends earlier by less than the threshold."""
    if notice.kind not in (Kind.DELAY, Kind.GOOD_NEWS):
        return False
    previous, new = notice.previous_date, notice.new_date
    if previous == new:
        return True
    small = previous is not None and new is not None and (previous - new).days < policy.good_news_min_days
    return notice.kind is Kind.GOOD_NEWS and small


def compose(
    order: OrderFacts,
    notices: Sequence[Notice],
    preferences: Preferences,
    today: date,
    consolations: dict[int, Consolation] | None = None,
    policy: NoticePolicy | None = None,
) -> Message | None:
    """The one message a closed window becomes, or None when nothing in it is worth telling
    (switched off by the customer, or moments that cancelled each other out)."""
    consolations = consolations or {}
    sections: list[Section] = []
    waiting = tuple(line_view(line, today) for line in order.waiting_lines)
    moments = coalesce(notices, policy)
    if any(notice.kind is Kind.CONFIRMATION for notice in moments):
        # The confirmation shows every line's latest date: a move before it is not news.
        moments = [notice for notice in moments if notice.kind not in (Kind.DELAY, Kind.GOOD_NEWS)]
    for notice in moments:
        if not preferences.wants(notice.kind):
            continue
        if notice.kind is Kind.CONFIRMATION:
            sections.append(Section(Kind.CONFIRMATION, lines=tuple(line_view(line) for line in order.lines)))
        elif notice.kind is Kind.STILL_WAITING:
            if waiting:
                sections.append(Section(Kind.STILL_WAITING, lines=waiting))
        elif notice.kind in (Kind.DELAY, Kind.GOOD_NEWS):
            line = order.line(notice.line_no or 0)
            if line is None or line.waiting == 0:
                continue
            consolation = consolations.get(line.line_no) if notice.kind is Kind.DELAY and notice.consolation else None
            sections.append(
                Section(notice.kind, lines=(line_view(line, today),), previous_date=notice.previous_date,
                        new_date=notice.new_date, consolation=consolation)
            )
        else:
            items = tuple(
                Item(line_no, line.sku, qty) for line_no, qty in notice.units if qty > 0 and (line := order.line(line_no))
            )
            if items:
                sections.append(Section(notice.kind, items=items, waiting=waiting))
    if not sections:
        return None
    sections.sort(key=lambda section: PRECEDENCE.index(section.kind))  # the headline first
    locale = preferences.language or order.locale
    language = language_of(locale)
    return Message(order.order_id, order.external_id, order.customer_id, language, order.channel, tuple(sections), today, locale)


# --- still waiting --------------------------------------------------------------------------------


def still_waiting_due(order: OrderFacts, last_message_at: datetime | None, now: datetime, period: timedelta) -> bool:
    """An update while a line waits, at most once per period, and never in a period in which any
    other message went to the order."""
    if not order.confirmed or not order.waiting_lines:
        return False
    return last_message_at is None or now - last_message_at >= period


# --- delivery -------------------------------------------------------------------------------------


class Outcome(StrEnum):
    SENT = "sent"
    TRANSIENT = "transient"  # try again later
    PERMANENT = "permanent"  # the receiver refused this message: do not try again


def http_outcome(status: int) -> Outcome:
    """2xx delivered; 408, 425, 429 and 5xx are worth another try; any other answer is final."""
    if 200 <= status < 300:
        return Outcome.SENT
    if status in (408, 425, 429) or status >= 500:
        return Outcome.TRANSIENT
    return Outcome.PERMANENT


def smtp_outcome(code: int) -> Outcome:
    """SMTP 4xx is a temporary refusal (greylisting, full mailbox), 5xx a permanent one."""
    if 200 <= code < 400:
        return Outcome.SENT
    return Outcome.TRANSIENT if 400 <= code < 500 else Outcome.PERMANENT


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 6
    base_s: float = 2.0
    cap_s: float = 300.0
    jitter: float = 0.5  # the delay is drawn from [1 - jitter, 1] of the exponential step
    rng: random.Random = field(default_factory=random.Random, compare=False)

    def next_delay(self, attempts: int, outcome: Outcome) -> float | None:
        """Seconds until the next attempt, or None when there is none (sent, refused, or out of tries)."""
        if outcome is not Outcome.TRANSIENT or attempts >= self.max_attempts:
            return None
        step = min(self.base_s * 2 ** (attempts - 1), self.cap_s)
        return step * (1 - self.jitter * self.rng.random())
