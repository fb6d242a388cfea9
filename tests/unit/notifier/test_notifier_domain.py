"""Unit tests of the notifier's pure decisions: what it knows of an order, which moments become
news, what one message says for a window, and when a failed delivery is tried again."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import date, datetime, timedelta
from functools import reduce
from itertools import pairwise
from typing import Any
from uuid import UUID

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.notifier.domain import (
    PRECEDENCE,
    Consolation,
    Item,
    Kind,
    LineFacts,
    LineView,
    Message,
    Notice,
    NoticePolicy,
    OrderFacts,
    Outcome,
    Preferences,
    RetryPolicy,
    Section,
    coalesce,
    compose,
    confirmation_due,
    consolation_due,
    eta_notice,
    http_outcome,
    is_later,
    language_of,
    line_view,
    smtp_outcome,
    still_waiting_due,
)

ORDER_ID = UUID("00000000-0000-0000-0000-000000000042")
TODAY = date(2030, 5, 1)
MAY_20 = date(2030, 5, 20)
JUNE_1 = date(2030, 6, 1)
JUNE_8 = date(2030, 6, 8)
JUNE_9 = date(2030, 6, 9)
JULY_1 = date(2030, 7, 1)
POLICY = NoticePolicy(consolation_after_days=7, good_news_min_days=1)
SORRY = Consolation("discount", "SORRY-CAFE", 15)


# --- helpers: facts as the handlers build them ----------------------------------------------------


def line(line_no: int = 1, qty: int = 3) -> LineFacts:
    """A line of a placed order that nobody has decided yet."""
    return LineFacts(line_no, sku=f"SKU-{line_no}", qty=qty)


def reserved_line(line_no: int = 1, qty: int = 2) -> LineFacts:
    return line(line_no, qty).with_reserved(qty)


def short_line(line_no: int = 2, qty: int = 3, reserved: int = 1) -> LineFacts:
    """Part reserved, the rest short and not yet booked with the allocator."""
    return line(line_no, qty).with_short(qty - reserved, reserved)


def waiting_line(line_no: int = 2, qty: int = 3, reserved: int = 1, promised: date | None = JUNE_1) -> LineFacts:
    return short_line(line_no, qty, reserved).with_booking(qty - reserved, promised)


def rejected_line(line_no: int = 3, qty: int = 1, reason: str = "discontinued") -> LineFacts:
    return line(line_no, qty).with_rejected(reason)


def order(*lines: LineFacts, placed: bool = True, confirmed: bool = False, locale: str = "de-AT") -> OrderFacts:
    return OrderFacts(ORDER_ID, "A-10042", "customer-1", locale, "Nordic Home", placed, confirmed, tuple(lines))


def confirmed_order(*lines: LineFacts, **values: Any) -> OrderFacts:
    return order(*lines, confirmed=True, **values)


def move(line_no: int, previous: date | None, new: date | None, consolation: bool = False) -> Notice:
    """A date notice as eta_notice makes it, without its thresholds."""
    kind = Kind.DELAY if is_later(previous, new) else Kind.GOOD_NEWS
    return Notice(kind, line_no, previous, new, consolation=consolation)


def units(kind: Kind, *line_units: tuple[int, int]) -> Notice:
    return Notice(kind, units=line_units)


def section_kinds(message: Message | None) -> tuple[Kind, ...]:
    assert message is not None
    return tuple(section.kind for section in message.sections)


def section_of(message: Message | None, kind: Kind) -> Section:
    assert message is not None
    (section,) = (section for section in message.sections if section.kind is kind)
    return section


# --- language ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("locale", "language"), [("de-AT", "de"), ("hu_HU", "hu"), ("DA", "da")])
def test_a_locale_speaks_its_language_whatever_its_region_or_case(locale: str, language: str) -> None:
    assert language_of(locale) == language


@pytest.mark.parametrize("locale", ["fr-FR", "", None])
def test_a_locale_without_templates_or_none_at_all_gets_english(locale: str | None) -> None:
    assert language_of(locale) == "en"


# --- what the notifier knows of a line, and when the order is confirmed ----------------------------


def test_an_order_is_not_confirmed_while_its_short_line_is_not_booked() -> None:
    assert not short_line().settled
    assert not confirmation_due(order(reserved_line(1), short_line(2)))


def test_an_order_is_confirmed_once_its_short_line_is_booked() -> None:
    booked = short_line(2).with_booking(2, JUNE_1)

    assert booked.settled
    assert confirmation_due(order(reserved_line(1), booked))


def test_a_line_is_not_settled_before_inventory_decided_all_of_it() -> None:
    assert not line(qty=3).with_reserved(2).settled


def test_a_line_heard_of_before_its_order_is_not_settled() -> None:
    assert not LineFacts(1).with_reserved(2).settled


def test_a_rejected_line_is_settled() -> None:
    assert rejected_line().settled
    assert confirmation_due(order(reserved_line(1), rejected_line(3)))


def test_a_cancelled_line_is_settled_even_if_never_booked() -> None:
    cancelled = short_line().with_cancelled(2)

    assert cancelled.settled
    assert confirmation_due(order(reserved_line(1), cancelled))


def test_an_order_not_placed_is_never_due_a_confirmation() -> None:
    assert not confirmation_due(order(reserved_line(1), waiting_line(2), placed=False))


def test_an_order_already_confirmed_is_not_confirmed_again() -> None:
    assert not confirmation_due(confirmed_order(reserved_line(1), waiting_line(2)))


def test_an_order_without_lines_is_not_due_a_confirmation() -> None:
    assert not confirmation_due(order())


def test_a_stock_short_before_its_stock_reserved_gives_the_same_line() -> None:
    reserved_first = line().with_reserved(1).with_short(2, 1)
    short_first = line().with_short(2, 1).with_reserved(1)

    assert reserved_first == short_first
    assert (reserved_first.reserved, reserved_first.short) == (1, 2)


def test_a_booking_before_its_stock_short_gives_the_same_line() -> None:
    short_first = line().with_short(2, 1).with_booking(2, JUNE_1)
    booked_first = line().with_booking(2, JUNE_1).with_short(2, 1)

    assert short_first == booked_first
    assert booked_first.settled


Fact = tuple[str, tuple[Any, ...]]


def apply(facts: LineFacts, fact: Fact) -> LineFacts:
    name, args = fact
    if name == "placed":
        sku, qty = args
        return replace(facts, sku=sku, qty=qty)
    return getattr(facts, f"with_{name}")(*args)


@st.composite
def line_histories(draw: st.DrawFn) -> list[Fact]:
    """Every fact one line can be told (with a few told twice), in the order the streams sent them."""
    qty = draw(st.integers(1, 8))
    reserved = draw(st.integers(0, qty))
    short = qty - reserved
    facts: list[Fact] = [("placed", ("SKU-1", qty))]
    if short == 0:
        facts.append(("reserved", (reserved,)))
    else:
        if draw(st.booleans()):
            facts.append(("reserved", (reserved,)))  # StockShort repeats it, StockReserved may come too
        facts.append(("short", (short, reserved)))
        if draw(st.booleans()):
            facts.append(("booking", (short, draw(st.sampled_from([None, JUNE_1, JULY_1])))))
            if draw(st.booleans()):
                facts.append(("allocated", (draw(st.integers(1, short)),)))
    if draw(st.booleans()):
        facts.append(("rejected", ("discontinued",)))
    if draw(st.booleans()):
        facts.append(("cancelled", (draw(st.integers(1, qty)),)))
    # A fact delivered twice changes nothing (allocations add up, so they are not repeated here).
    repeated = [fact for fact in facts if fact[0] != "allocated"]
    facts += draw(st.lists(st.sampled_from(repeated), max_size=3))
    return facts


@given(history=line_histories(), data=st.data())
def test_facts_make_the_same_line_in_whatever_order_they_arrive(history: list[Fact], data: st.DataObject) -> None:
    shuffled = data.draw(st.permutations(history))

    as_sent = reduce(apply, history, LineFacts(1))
    as_received = reduce(apply, shuffled, LineFacts(1))

    assert as_received == as_sent
    assert as_received.settled == as_sent.settled


# --- units waiting --------------------------------------------------------------------------------


def test_short_units_wait_until_they_are_allocated() -> None:
    waiting = waiting_line(qty=5, reserved=1)

    assert waiting.waiting == 4
    assert waiting.with_allocated(3).waiting == 1
    assert waiting.with_allocated(3).with_allocated(1).waiting == 0


def test_nothing_waits_on_a_line_that_has_everything() -> None:
    assert reserved_line().waiting == 0


def test_nothing_waits_on_a_cancelled_line() -> None:
    assert waiting_line(qty=5, reserved=1).with_cancelled(4).waiting == 0


def test_nothing_waits_on_a_rejected_line() -> None:
    assert waiting_line().with_rejected("backorder_limit").waiting == 0


# --- a moved promise ------------------------------------------------------------------------------


def test_a_later_date_is_a_delay() -> None:
    assert eta_notice(waiting_line(2), JUNE_1, JULY_1, POLICY) == Notice(Kind.DELAY, 2, JUNE_1, JULY_1)


def test_a_date_lost_after_one_was_promised_is_a_delay() -> None:
    assert eta_notice(waiting_line(2), JUNE_1, None, POLICY) == Notice(Kind.DELAY, 2, JUNE_1, None)


def test_a_date_earlier_by_enough_days_is_good_news() -> None:
    policy = NoticePolicy(good_news_min_days=3)

    assert eta_notice(waiting_line(2), JUNE_8, date(2030, 6, 5), policy) == Notice(Kind.GOOD_NEWS, 2, JUNE_8, date(2030, 6, 5))


def test_a_date_earlier_by_too_few_days_is_not_news() -> None:
    policy = NoticePolicy(good_news_min_days=3)

    assert eta_notice(waiting_line(2), JUNE_8, date(2030, 6, 6), policy) is None


def test_a_date_becoming_known_is_good_news() -> None:
    assert eta_notice(waiting_line(2, promised=None), None, JUNE_1, POLICY) == Notice(Kind.GOOD_NEWS, 2, None, JUNE_1)


def test_a_moved_date_of_a_line_no_longer_waiting_is_not_news() -> None:
    allocated = waiting_line(2, qty=3, reserved=1).with_allocated(2)

    assert eta_notice(allocated, JUNE_1, JULY_1, POLICY) is None
    assert eta_notice(allocated, JULY_1, JUNE_1, POLICY) is None


def test_the_same_date_again_is_not_news() -> None:
    assert eta_notice(waiting_line(2), JUNE_1, JUNE_1, POLICY) is None
    assert eta_notice(waiting_line(2, promised=None), None, None, POLICY) is None


# --- consolation ----------------------------------------------------------------------------------


def test_a_consolation_is_due_only_past_the_threshold_after_the_first_promise() -> None:
    first_promised_june_1 = waiting_line(promised=JUNE_1).with_date(JUNE_8)

    assert not consolation_due(first_promised_june_1, JUNE_8, POLICY)
    assert consolation_due(first_promised_june_1, JUNE_9, POLICY)


def test_the_threshold_counts_from_the_first_promise_not_the_latest() -> None:
    moved_twice = waiting_line(promised=JUNE_1).with_date(JUNE_8).with_date(date(2030, 6, 5))

    assert moved_twice.first_promised_date == JUNE_1
    assert consolation_due(moved_twice, JUNE_9, POLICY)


def test_a_line_gets_a_consolation_only_once() -> None:
    consoled = replace(waiting_line(promised=JUNE_1), consolation_offered=True)

    assert not consolation_due(consoled, JULY_1, POLICY)
    assert not consolation_due(consoled, None, POLICY)


def test_no_consolation_without_a_first_promise() -> None:
    never_promised = waiting_line(promised=None)

    assert not consolation_due(never_promised, JULY_1, POLICY)
    assert not consolation_due(never_promised, None, POLICY)


def test_a_date_lost_after_a_promise_earns_a_consolation() -> None:
    assert consolation_due(waiting_line(promised=JUNE_1), None, POLICY)


# --- one window, its moments coalesced ------------------------------------------------------------


def test_two_moves_of_a_line_date_are_one_move_from_the_first_date_to_the_last() -> None:
    moves = [move(2, JUNE_1, JUNE_8), move(2, JUNE_8, JULY_1)]

    assert coalesce(moves) == [Notice(Kind.DELAY, 2, JUNE_1, JULY_1)]


def test_a_date_moved_later_then_earlier_than_it_was_is_good_news() -> None:
    moves = [move(2, JUNE_1, JULY_1), move(2, JULY_1, MAY_20)]

    assert coalesce(moves) == [Notice(Kind.GOOD_NEWS, 2, JUNE_1, MAY_20)]


def test_a_date_moved_earlier_then_later_than_it_was_is_a_delay() -> None:
    moves = [move(2, JUNE_8, JUNE_1), move(2, JUNE_1, JULY_1)]

    assert coalesce(moves) == [Notice(Kind.DELAY, 2, JUNE_8, JULY_1)]


def test_a_date_moved_and_moved_back_is_not_news() -> None:
    assert coalesce([move(2, JUNE_1, JULY_1), move(2, JULY_1, JUNE_1)]) == []
    assert coalesce([move(2, JUNE_1, None), move(2, None, JUNE_1)]) == []


def test_moves_of_different_lines_stay_apart() -> None:
    moves = [move(1, JUNE_1, JULY_1), move(2, JULY_1, JUNE_1)]

    assert coalesce(moves) == moves


def test_cancelled_units_of_several_lines_add_up_to_one_notice() -> None:
    cancels = [units(Kind.CANCELLED, (2, 1)), units(Kind.CANCELLED, (1, 2)), units(Kind.CANCELLED, (2, 3))]

    assert coalesce(cancels) == [units(Kind.CANCELLED, (1, 2), (2, 4))]


def test_two_confirmations_are_one() -> None:
    assert coalesce([Notice(Kind.CONFIRMATION), Notice(Kind.CONFIRMATION)]) == [Notice(Kind.CONFIRMATION)]


@pytest.mark.parametrize("earned_by", [0, 1])
def test_a_consolation_earned_by_any_move_survives_the_merge(earned_by: int) -> None:
    moves = [move(2, JUNE_1, JUNE_8), move(2, JUNE_8, JULY_1)]
    moves[earned_by] = replace(moves[earned_by], consolation=True)

    assert coalesce(moves) == [Notice(Kind.DELAY, 2, JUNE_1, JULY_1, consolation=True)]


def test_moments_of_different_kinds_keep_their_order() -> None:
    window = [units(Kind.READY, (1, 2)), move(2, JUNE_1, JULY_1), units(Kind.CANCELLED, (3, 1)), Notice(Kind.STILL_WAITING)]

    assert coalesce(window) == window


dates = st.one_of(st.none(), st.dates(min_value=date(2030, 5, 1), max_value=date(2030, 5, 12)))


@given(st.lists(dates, min_size=2, max_size=6))
def test_any_chain_of_moves_of_one_line_is_the_one_move_from_its_first_date_to_its_last(chain: list[date | None]) -> None:
    moves = [move(2, previous, new) for previous, new in pairwise(chain) if previous != new]

    merged = coalesce(moves)

    if chain[0] == chain[-1] or not moves:
        assert merged == []
    else:
        assert merged == [move(2, chain[0], chain[-1])]


# --- the message a window becomes -----------------------------------------------------------------


def test_a_confirmation_lists_every_line_with_what_ships_now_waits_and_is_rejected() -> None:
    placed = order(reserved_line(1, qty=2), waiting_line(2, qty=3, reserved=1, promised=JUNE_1), rejected_line(3))

    message = compose(placed, [Notice(Kind.CONFIRMATION)], Preferences(), TODAY)

    assert message is not None
    assert message.sections == (
        Section(
            Kind.CONFIRMATION,
            lines=(
                LineView(1, "SKU-1", 2, qty_now=2),
                LineView(2, "SKU-2", 3, qty_now=1, qty_waiting=2, promised_date=JUNE_1),
                LineView(3, "SKU-3", 1, qty_rejected=1, rejected_reason="discontinued"),
            ),
        ),
    )


def test_a_line_cancelled_before_the_confirmation_ships_nothing_now() -> None:
    cancelled = short_line(2, qty=3, reserved=1).with_cancelled(3)  # LineCancelled: every unit not shipped
    placed = order(reserved_line(1), cancelled)
    assert confirmation_due(placed)

    message = compose(placed, [Notice(Kind.CONFIRMATION), units(Kind.CANCELLED, (2, 3))], Preferences(), TODAY)

    assert section_of(message, Kind.CONFIRMATION).lines[1] == LineView(2, "SKU-2", 3, qty_cancelled=3)


def test_a_confirmation_shows_the_latest_date_instead_of_a_move_in_the_same_window() -> None:
    placed = order(reserved_line(1), waiting_line(2, promised=JUNE_1).with_date(JULY_1))

    message = compose(placed, [move(2, JUNE_1, JULY_1), Notice(Kind.CONFIRMATION)], Preferences(), TODAY)

    assert section_kinds(message) == (Kind.CONFIRMATION,)
    assert section_of(message, Kind.CONFIRMATION).lines[1].promised_date == JULY_1


def test_good_news_is_dropped_when_the_customer_switched_it_off() -> None:
    waiting = confirmed_order(waiting_line(1, promised=JUNE_1), waiting_line(2, promised=MAY_20))
    window = [move(1, JUNE_1, JULY_1), move(2, JUNE_1, MAY_20)]

    assert section_kinds(compose(waiting, window, Preferences(good_news=False), TODAY)) == (Kind.DELAY,)


def test_still_waiting_is_dropped_when_the_customer_switched_it_off() -> None:
    waiting = confirmed_order(reserved_line(1), waiting_line(2))
    window = [units(Kind.READY, (1, 2)), Notice(Kind.STILL_WAITING)]

    assert section_kinds(compose(waiting, window, Preferences(still_waiting=False), TODAY)) == (Kind.READY,)


@pytest.mark.parametrize(
    "notice",
    [Notice(Kind.CONFIRMATION), move(2, JUNE_1, JULY_1), units(Kind.CANCELLED, (2, 1)), units(Kind.READY, (1, 2))],
    ids=lambda notice: notice.kind.value,
)
def test_moments_that_change_what_the_customer_expects_cannot_be_switched_off(notice: Notice) -> None:
    placed = order(reserved_line(1), waiting_line(2), confirmed=notice.kind is not Kind.CONFIRMATION)
    nothing_optional = Preferences(good_news=False, still_waiting=False)

    assert section_kinds(compose(placed, [notice], nothing_optional, TODAY)) == (notice.kind,)


def test_a_window_of_only_switched_off_moments_is_no_message() -> None:
    waiting = confirmed_order(waiting_line(2, promised=JUNE_1))
    window = [move(2, JUNE_1, MAY_20), Notice(Kind.STILL_WAITING)]

    assert compose(waiting, window, Preferences(good_news=False, still_waiting=False), TODAY) is None


def test_a_window_whose_moves_cancel_out_is_no_message() -> None:
    waiting = confirmed_order(waiting_line(2, promised=JUNE_1))

    assert compose(waiting, [move(2, JUNE_1, JULY_1), move(2, JULY_1, JUNE_1)], Preferences(), TODAY) is None


def test_a_move_of_a_line_that_stopped_waiting_in_the_window_is_no_message() -> None:
    allocated = confirmed_order(waiting_line(2, qty=3, reserved=1).with_allocated(2))

    assert compose(allocated, [move(2, JUNE_1, JULY_1)], Preferences(), TODAY) is None


@pytest.mark.parametrize(("earned", "offered"), [(True, SORRY), (False, None)])
def test_a_delay_carries_the_consolation_only_when_it_earned_it(earned: bool, offered: Consolation | None) -> None:
    waiting = confirmed_order(waiting_line(2, promised=JULY_1))

    message = compose(waiting, [move(2, JUNE_1, JULY_1, consolation=earned)], Preferences(), TODAY, {2: SORRY})

    assert message is not None
    assert message.sections == (
        Section(
            Kind.DELAY,
            lines=(LineView(2, "SKU-2", 3, qty_now=1, qty_waiting=2, promised_date=JULY_1, days_left=61),),
            previous_date=JUNE_1,
            new_date=JULY_1,
            consolation=offered,
        ),
    )


def test_good_news_never_carries_a_consolation() -> None:
    waiting = confirmed_order(waiting_line(2, promised=MAY_20))
    merged_back = [move(2, JUNE_1, JULY_1, consolation=True), move(2, JULY_1, MAY_20)]

    message = compose(waiting, merged_back, Preferences(), TODAY, {2: SORRY})

    assert message is not None
    assert [(section.kind, section.consolation) for section in message.sections] == [(Kind.GOOD_NEWS, None)]


@pytest.mark.parametrize(
    ("window", "headline"),
    [
        ([move(2, JUNE_1, JULY_1), units(Kind.CANCELLED, (1, 2))], Kind.CANCELLED),
        ([units(Kind.READY, (1, 2)), move(2, JUNE_1, JULY_1)], Kind.DELAY),
        ([units(Kind.SHIPPED, (1, 2)), Notice(Kind.CONFIRMATION)], Kind.CONFIRMATION),
        ([units(Kind.READY, (1, 2)), units(Kind.SHIPPED, (1, 2))], Kind.SHIPPED),
        ([move(2, JULY_1, JUNE_1), units(Kind.READY, (1, 2))], Kind.READY),
        ([Notice(Kind.STILL_WAITING), move(2, JULY_1, JUNE_1)], Kind.GOOD_NEWS),
    ],
    ids=lambda value: value.value if isinstance(value, Kind) else "",
)
def test_the_most_important_moment_of_a_window_names_the_message(window: list[Notice], headline: Kind) -> None:
    placed = confirmed_order(reserved_line(1), waiting_line(2, promised=JUNE_1))

    message = compose(placed, window, Preferences(), TODAY)

    assert message is not None
    assert message.kind is headline


@given(st.lists(st.sampled_from(Kind), min_size=1, unique=True))
def test_a_message_is_named_by_its_first_kind_in_precedence(kinds: list[Kind]) -> None:
    message = Message(ORDER_ID, "A-10042", "customer-1", "en", "Nordic Home", tuple(Section(kind) for kind in kinds), TODAY)

    assert message.kind is next(kind for kind in PRECEDENCE if kind in kinds)


def test_the_customers_language_overrides_the_order_locale() -> None:
    placed = order(reserved_line(1), locale="de-AT")

    message = compose(placed, [Notice(Kind.CONFIRMATION)], Preferences(language="hu"), TODAY)

    assert message is not None
    assert message.language == "hu"


def test_without_a_preferred_language_the_order_locale_speaks() -> None:
    message = compose(order(reserved_line(1), locale="de-AT"), [Notice(Kind.CONFIRMATION)], Preferences(), TODAY)

    assert message is not None
    assert message.language == "de"


@pytest.mark.parametrize("kind", [Kind.READY, Kind.SHIPPED, Kind.CANCELLED])
def test_units_moments_list_their_items_and_the_lines_still_waiting(kind: Kind) -> None:
    placed = confirmed_order(reserved_line(1, qty=2), waiting_line(2, qty=3, reserved=1, promised=JUNE_1))

    message = compose(placed, [units(kind, (1, 2))], Preferences(), TODAY)

    assert message is not None
    assert message.sections == (
        Section(
            kind,
            items=(Item(1, "SKU-1", 2),),
            waiting=(LineView(2, "SKU-2", 3, qty_now=1, qty_waiting=2, promised_date=JUNE_1, days_left=31),),
        ),
    )


def test_units_of_lines_the_notifier_never_heard_of_are_no_message() -> None:
    placed = confirmed_order(reserved_line(1))

    assert compose(placed, [units(Kind.READY, (7, 1)), units(Kind.SHIPPED, (1, 0))], Preferences(), TODAY) is None


def test_a_still_waiting_update_counts_the_days_left_from_today() -> None:
    placed = confirmed_order(
        reserved_line(1), waiting_line(2, promised=JUNE_1), waiting_line(3, promised=None), waiting_line(4, promised=MAY_20)
    )

    message = compose(placed, [Notice(Kind.STILL_WAITING)], Preferences(), date(2030, 5, 22))

    assert message is not None
    (update,) = message.sections
    assert update.kind is Kind.STILL_WAITING
    assert [(view.line_no, view.days_left) for view in update.lines] == [(2, 10), (3, None), (4, 0)]


def test_a_still_waiting_update_with_nothing_waiting_any_more_is_no_message() -> None:
    placed = confirmed_order(reserved_line(1), waiting_line(2, qty=3, reserved=1).with_allocated(2))

    assert compose(placed, [Notice(Kind.STILL_WAITING)], Preferences(), TODAY) is None


# --- still waiting --------------------------------------------------------------------------------

NOW = datetime(2030, 5, 20, 12, 0)
WEEK = timedelta(days=7)


def test_no_still_waiting_update_before_the_confirmation() -> None:
    assert not still_waiting_due(order(reserved_line(1), waiting_line(2)), None, NOW, WEEK)


def test_no_still_waiting_update_when_nothing_waits() -> None:
    assert not still_waiting_due(confirmed_order(reserved_line(1), rejected_line(3)), None, NOW, WEEK)


def test_no_still_waiting_update_within_the_period_after_the_last_message() -> None:
    assert not still_waiting_due(confirmed_order(waiting_line(2)), NOW - WEEK + timedelta(seconds=1), NOW, WEEK)


def test_a_still_waiting_update_once_the_period_after_the_last_message_is_over() -> None:
    assert still_waiting_due(confirmed_order(waiting_line(2)), NOW - WEEK, NOW, WEEK)


def test_a_still_waiting_update_when_the_order_was_never_messaged() -> None:
    assert still_waiting_due(confirmed_order(waiting_line(2)), None, NOW, WEEK)


# --- delivery outcomes ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "outcome"),
    [(200, Outcome.SENT), (204, Outcome.SENT)]
    + [(status, Outcome.TRANSIENT) for status in (408, 429, 500, 503)]
    + [(status, Outcome.PERMANENT) for status in (400, 401, 404, 410, 301, 302)],
)
def test_a_webhook_answer_decides_whether_to_try_again(status: int, outcome: Outcome) -> None:
    assert http_outcome(status) is outcome


@pytest.mark.parametrize(
    ("code", "outcome"),
    [(250, Outcome.SENT)]
    + [(code, Outcome.TRANSIENT) for code in (421, 451, 452)]
    + [(code, Outcome.PERMANENT) for code in (550, 554)],
)
def test_an_smtp_reply_decides_whether_to_try_again(code: int, outcome: Outcome) -> None:
    assert smtp_outcome(code) is outcome


# --- retries --------------------------------------------------------------------------------------


@pytest.mark.parametrize("outcome", [Outcome.SENT, Outcome.PERMANENT])
def test_a_delivery_sent_or_refused_is_not_tried_again(outcome: Outcome) -> None:
    assert RetryPolicy(rng=random.Random(1)).next_delay(1, outcome) is None


def test_a_delivery_out_of_tries_is_not_tried_again() -> None:
    policy = RetryPolicy(max_attempts=3, rng=random.Random(1))

    assert policy.next_delay(2, Outcome.TRANSIENT) is not None
    assert policy.next_delay(3, Outcome.TRANSIENT) is None
    assert policy.next_delay(4, Outcome.TRANSIENT) is None


def test_without_jitter_the_delay_doubles_until_the_cap() -> None:
    policy = RetryPolicy(max_attempts=20, base_s=2.0, cap_s=300.0, jitter=0.0, rng=random.Random(1))

    delays = [policy.next_delay(attempts, Outcome.TRANSIENT) for attempts in range(1, 11)]

    assert delays == [2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 300.0, 300.0]


@given(seed=st.integers(0, 2**32), attempts=st.integers(1, 19), jitter=st.sampled_from([0.0, 0.25, 0.5, 1.0]))
def test_a_jittered_delay_stays_within_its_exponential_step_and_the_cap(seed: int, attempts: int, jitter: float) -> None:
    policy = RetryPolicy(max_attempts=20, base_s=2.0, cap_s=300.0, jitter=jitter, rng=random.Random(seed))
    step = min(2.0 * 2 ** (attempts - 1), 300.0)

    delay = policy.next_delay(attempts, Outcome.TRANSIENT)

    assert delay is not None
    assert step * (1 - jitter) <= delay <= step <= 300.0


def test_moves_that_net_out_earlier_by_less_than_the_threshold_are_not_good_news() -> None:
    there_and_back = [move(2, JUNE_1, JULY_1), move(2, JULY_1, JUNE_1 - timedelta(days=1))]
    assert [n.kind for n in coalesce(there_and_back, NoticePolicy(good_news_min_days=2))] == []
    assert [n.kind for n in coalesce(there_and_back, NoticePolicy(good_news_min_days=1))] == [Kind.GOOD_NEWS]


# --- preorders ---------------------------------------------------------------------------------


def test_a_preordered_line_settles_the_confirmation_and_waits_until_its_release_is_decided() -> None:
    release = date(2030, 6, 20)
    preordered = line(line_no=1, qty=2).with_preordered(2, release)
    assert preordered.settled and preordered.waiting == 2 and line_view(preordered).preorder
    assert confirmation_due(order(reserved_line(line_no=2), preordered))
    released = preordered.with_reserved(2)  # the release day reserved it
    assert released.waiting == 0 and not line_view(released).preorder
    moved = eta_notice(preordered, release, release + timedelta(days=14), POLICY)
    assert moved is not None and moved.kind is Kind.DELAY
