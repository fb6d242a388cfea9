"""Unit tests of the allocator's pure rules: priority, cross-dock and promised dates."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from uuid import UUID

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.allocator.domain.dates import (
    Cover,
    DateMove,
    EtaChange,
    EtaReason,
    InboundSupply,
    cover_queue,
    date_moves,
    eta_changes,
    project_promised_dates,
)
from services.allocator.domain.queue import (
    Allocation,
    Arrival,
    LineKey,
    OrderProgress,
    PriorityPolicy,
    Served,
    SkuAllocation,
    SupplyConflict,
    WaitingLine,
    allocate,
    allocate_in_turn,
    cross_dock,
    cross_dock_in_turn,
    first_arrivals,
    queue_head,
    queue_may_move_between,
    queue_order,
    serve_in_turn,
)

T0 = datetime(2024, 3, 1, 9, 0, tzinfo=UTC)
ORDER_A = UUID(int=1)
ORDER_B = UUID(int=2)
ORDER_C = UUID(int=3)
GREEDY_POLICIES = [PriorityPolicy.FIFO, PriorityPolicy.TIER, PriorityPolicy.DUE_DATE]


def waiting(
    order_id: UUID,
    qty: int,
    *,
    line_no: int = 1,
    minutes: int = 0,
    tier: str = "standard",
    promised: date | None = None,
) -> WaitingLine:
    return WaitingLine(
        order_id=order_id,
        line_no=line_no,
        sku="SKU-1",
        qty_waiting=qty,
        ordered_at=T0 + timedelta(minutes=minutes),
        tier=tier,
        first_promised_date=promised,
    )


def served(allocations: Sequence[Allocation]) -> list[tuple[LineKey, int]]:
    return [(allocation.key, allocation.qty) for allocation in allocations]


def left_in_book(book: Sequence[WaitingLine], allocations: Sequence[Allocation]) -> list[WaitingLine]:
    """The book as the next receipt finds it: filled lines leave, partial ones shrink."""
    given_to = {allocation.key: allocation.qty for allocation in allocations}
    left = []
    for line in book:
        rest = line.qty_waiting - given_to.get(line.key, 0)
        if rest > 0:
            left.append(replace(line, qty_waiting=rest))
    return left


# --- queue_order and allocate: examples -------------------------------------------


def test_fifo_serves_the_oldest_line_first_and_puts_the_rest_away() -> None:
    book = [waiting(ORDER_B, 3, minutes=5), waiting(ORDER_A, 4, minutes=0)]

    result = allocate(book, 10, PriorityPolicy.FIFO)

    assert served(result.allocations) == [((ORDER_A, 1), 4), ((ORDER_B, 1), 3)]
    assert result.put_away == 3


def test_fifo_breaks_ties_by_order_id_then_line_no() -> None:
    book = [
        waiting(ORDER_B, 1, line_no=1),
        waiting(ORDER_A, 1, line_no=2),
        waiting(ORDER_A, 1, line_no=1),
    ]

    queue = queue_order(book, PriorityPolicy.FIFO)

    assert [line.key for line in queue] == [(ORDER_A, 1), (ORDER_A, 2), (ORDER_B, 1)]


def test_tier_serves_vip_before_an_earlier_standard() -> None:
    book = [
        waiting(ORDER_A, 5, minutes=0, tier="standard"),
        waiting(ORDER_B, 5, minutes=30, tier="vip"),
    ]

    result = allocate(book, 7, PriorityPolicy.TIER)

    assert served(result.allocations) == [((ORDER_B, 1), 5), ((ORDER_A, 1), 2)]
    assert result.put_away == 0


def test_tier_ranks_an_unknown_tier_like_standard() -> None:
    book = [
        waiting(ORDER_A, 1, minutes=10, tier="standard"),
        waiting(ORDER_B, 1, minutes=0, tier="gold"),
        waiting(ORDER_C, 1, minutes=20, tier="vip"),
    ]

    queue = queue_order(book, PriorityPolicy.TIER)

    assert [line.order_id for line in queue] == [ORDER_C, ORDER_B, ORDER_A]


def test_due_date_serves_the_earliest_promise_first_and_unpromised_last() -> None:
    book = [
        waiting(ORDER_A, 2, minutes=0, promised=None),
        waiting(ORDER_B, 2, minutes=10, promised=date(2024, 3, 20)),
        waiting(ORDER_C, 2, minutes=20, promised=date(2024, 3, 10)),
    ]

    result = allocate(book, 5, PriorityPolicy.DUE_DATE)

    assert served(result.allocations) == [
        ((ORDER_C, 1), 2),
        ((ORDER_B, 1), 2),
        ((ORDER_A, 1), 1),
    ]


def test_complete_lines_first_skips_a_big_line_to_complete_two_small_ones() -> None:
    book = [
        waiting(ORDER_A, 10, minutes=0),
        waiting(ORDER_B, 3, minutes=1),
        waiting(ORDER_C, 4, minutes=2),
    ]

    result = allocate(book, 9, PriorityPolicy.COMPLETE_LINES_FIRST)

    # B and C are completed; the big line A, first in FIFO order, gets the remainder.
    assert served(result.allocations) == [
        ((ORDER_A, 1), 2),
        ((ORDER_B, 1), 3),
        ((ORDER_C, 1), 4),
    ]
    assert result.put_away == 0


def test_complete_lines_first_completes_in_fifo_order_when_it_can_complete_all() -> None:
    book = [waiting(ORDER_A, 2, minutes=0), waiting(ORDER_B, 3, minutes=1)]

    result = allocate(book, 8, PriorityPolicy.COMPLETE_LINES_FIRST)

    assert served(result.allocations) == [((ORDER_A, 1), 2), ((ORDER_B, 1), 3)]
    assert result.put_away == 3


def test_complete_lines_first_completes_lines_that_use_up_the_supply_exactly() -> None:
    book = [
        waiting(ORDER_A, 10, minutes=0),
        waiting(ORDER_B, 3, minutes=1),
        waiting(ORDER_C, 4, minutes=2),
    ]

    result = allocate(book, 7, PriorityPolicy.COMPLETE_LINES_FIRST)

    assert served(result.allocations) == [((ORDER_B, 1), 3), ((ORDER_C, 1), 4)]


@pytest.mark.parametrize("policy", list(PriorityPolicy))
def test_zero_supply_allocates_nothing(policy: PriorityPolicy) -> None:
    result = allocate([waiting(ORDER_A, 3)], 0, policy)

    assert result.allocations == ()
    assert result.put_away == 0


@pytest.mark.parametrize("policy", list(PriorityPolicy))
def test_an_empty_book_puts_everything_away(policy: PriorityPolicy) -> None:
    result = allocate([], 6, policy)

    assert result.allocations == ()
    assert result.put_away == 6


def test_negative_supply_is_refused() -> None:
    with pytest.raises(ValueError):
        allocate([waiting(ORDER_A, 3)], -1, PriorityPolicy.FIFO)


def test_the_same_line_twice_in_the_book_is_refused() -> None:
    with pytest.raises(ValueError):
        allocate([waiting(ORDER_A, 3), waiting(ORDER_A, 2)], 5, PriorityPolicy.FIFO)


def test_a_line_waiting_for_nothing_or_with_a_naive_time_is_refused() -> None:
    with pytest.raises(ValueError):
        waiting(ORDER_A, 0)
    with pytest.raises(ValueError):
        replace(waiting(ORDER_A, 1), ordered_at=datetime(2024, 3, 1, 9, 0))


# --- cross_dock --------------------------------------------------------------------


def test_cross_dock_when_the_order_allows_partial_shipment() -> None:
    allocations = [Allocation(ORDER_A, 1, 2)]
    orders = {ORDER_A: OrderProgress(True, units_waiting=10, lines_unregistered=1)}

    assert cross_dock(allocations, orders) == {(ORDER_A, 1): True}


def test_cross_dock_when_the_batch_completes_the_order() -> None:
    allocations = [Allocation(ORDER_A, 1, 2), Allocation(ORDER_A, 2, 3)]
    orders = {ORDER_A: OrderProgress(False, units_waiting=5, lines_unregistered=0)}

    assert cross_dock(allocations, orders) == {(ORDER_A, 1): True, (ORDER_A, 2): True}


def test_held_while_another_line_of_the_order_still_waits() -> None:
    allocations = [Allocation(ORDER_A, 1, 2), Allocation(ORDER_B, 1, 4)]
    orders = {
        ORDER_A: OrderProgress(False, units_waiting=7, lines_unregistered=0),
        ORDER_B: OrderProgress(False, units_waiting=4, lines_unregistered=0),
    }

    assert cross_dock(allocations, orders) == {(ORDER_A, 1): False, (ORDER_B, 1): True}


def test_held_when_one_unit_of_the_order_still_waits() -> None:
    allocations = [Allocation(ORDER_A, 1, 4)]
    orders = {ORDER_A: OrderProgress(False, units_waiting=5, lines_unregistered=0)}

    assert cross_dock(allocations, orders) == {(ORDER_A, 1): False}


def test_held_while_a_short_line_of_the_order_is_not_in_the_book_yet() -> None:
    allocations = [Allocation(ORDER_A, 1, 5)]
    orders = {ORDER_A: OrderProgress(False, units_waiting=5, lines_unregistered=1)}

    assert cross_dock(allocations, orders) == {(ORDER_A, 1): False}


def test_cross_dock_refuses_progress_that_waits_for_less_than_was_allocated() -> None:
    allocations = [Allocation(ORDER_A, 1, 5)]
    orders = {ORDER_A: OrderProgress(True, units_waiting=3, lines_unregistered=0)}

    with pytest.raises(ValueError):
        cross_dock(allocations, orders)


# --- project_promised_dates and eta_changes ----------------------------------------

MARCH_10 = date(2024, 3, 10)
MARCH_20 = date(2024, 3, 20)
MARCH_25 = date(2024, 3, 25)


def test_a_line_split_across_two_purchase_orders_is_promised_the_later_date() -> None:
    queue = [
        waiting(ORDER_A, 4, minutes=0),
        waiting(ORDER_B, 4, minutes=1),
        waiting(ORDER_C, 2, minutes=2),
    ]
    inbound = [
        InboundSupply("PO-2", qty=5, expected_at=MARCH_20),
        InboundSupply("PO-1", qty=6, expected_at=MARCH_10),
    ]

    promised = project_promised_dates(queue, inbound)

    # PO-1 covers units 1-6: A (1-4) fully, B (5-8) only in part.
    assert promised == {
        (ORDER_A, 1): MARCH_10,
        (ORDER_B, 1): MARCH_20,
        (ORDER_C, 1): MARCH_20,
    }


def test_each_line_is_covered_by_the_purchase_orders_whose_units_reach_it() -> None:
    queue = [waiting(ORDER_A, 4, minutes=0), waiting(ORDER_B, 4, minutes=1), waiting(ORDER_C, 4, minutes=2)]
    inbound = [InboundSupply("PO-2", qty=5, expected_at=MARCH_20), InboundSupply("PO-1", qty=6, expected_at=MARCH_10)]

    covers = cover_queue(queue, inbound)

    # PO-1 brings units 1-6, PO-2 units 7-11: A (1-4) from PO-1, B (5-8) from both, C (9-12) only in
    # part from PO-2, so C has no date yet but PO-2 is on its way to it.
    assert covers == {
        (ORDER_A, 1): Cover(MARCH_10, ("PO-1",)),
        (ORDER_B, 1): Cover(MARCH_20, ("PO-1", "PO-2")),
        (ORDER_C, 1): Cover(None, ("PO-2",)),
    }
    assert project_promised_dates(queue, inbound) == {key: cover.promised for key, cover in covers.items()}


def test_a_line_behind_all_the_supply_is_covered_by_nothing() -> None:
    queue = [waiting(ORDER_A, 6, minutes=0), waiting(ORDER_B, 1, minutes=1)]

    covers = cover_queue(queue, [InboundSupply("PO-1", qty=6, expected_at=MARCH_10)])

    assert covers[(ORDER_B, 1)] == Cover(None, ())


def test_a_line_nothing_covers_is_promised_no_date() -> None:
    queue = [waiting(ORDER_A, 3, minutes=0), waiting(ORDER_B, 3, minutes=1)]
    inbound = [
        InboundSupply("PO-1", qty=4, expected_at=MARCH_10),
        InboundSupply("PO-0", qty=0, expected_at=MARCH_10),
        InboundSupply("PO-9", qty=-5, expected_at=MARCH_20),
    ]

    promised = project_promised_dates(queue, inbound)

    assert promised == {(ORDER_A, 1): MARCH_10, (ORDER_B, 1): None}


def test_same_day_purchase_orders_are_used_in_purchase_order_id_order() -> None:
    queue = [waiting(ORDER_A, 3)]
    inbound = [
        InboundSupply("PO-B", qty=3, expected_at=MARCH_10),
        InboundSupply("PO-A", qty=3, expected_at=MARCH_10),
    ]

    assert project_promised_dates(queue, inbound) == {(ORDER_A, 1): MARCH_10}


def test_a_purchase_order_slip_changes_exactly_the_lines_it_covers() -> None:
    queue = [
        waiting(ORDER_A, 4, minutes=0),
        waiting(ORDER_B, 4, minutes=1),
        waiting(ORDER_C, 4, minutes=2),
    ]
    on_time = [
        InboundSupply("PO-1", qty=4, expected_at=MARCH_10),
        InboundSupply("PO-2", qty=4, expected_at=MARCH_20),
        InboundSupply("PO-3", qty=4, expected_at=MARCH_25),
    ]
    po2_slips = [replace(supply, expected_at=MARCH_25) if supply.purchase_order_id == "PO-2" else supply for supply in on_time]

    before = project_promised_dates(queue, on_time)
    after = project_promised_dates(queue, po2_slips)

    assert eta_changes(before, after) == [EtaChange((ORDER_B, 1), MARCH_20, MARCH_25)]


def test_eta_changes_reports_new_lines_and_ignores_lines_that_left() -> None:
    previous: dict[LineKey, date | None] = {
        (ORDER_A, 1): MARCH_10,
        (ORDER_C, 1): MARCH_10,
        (ORDER_C, 2): None,
    }
    current: dict[LineKey, date | None] = {
        (ORDER_C, 2): None,
        (ORDER_B, 2): None,
        (ORDER_B, 1): MARCH_20,
        (ORDER_C, 1): MARCH_25,
    }

    assert eta_changes(previous, current) == [
        EtaChange((ORDER_B, 1), None, MARCH_20),
        EtaChange((ORDER_C, 1), MARCH_10, MARCH_25),
    ]


# --- properties ----------------------------------------------------------------------

ORDER_IDS = [UUID(int=n) for n in range(1, 9)]

waiting_lines = st.builds(
    WaitingLine,
    order_id=st.sampled_from(ORDER_IDS),
    line_no=st.integers(min_value=1, max_value=5),
    sku=st.just("SKU-1"),
    qty_waiting=st.integers(min_value=1, max_value=20),
    # A narrow range of times makes ties, so the tie-breaks are exercised too.
    ordered_at=st.integers(min_value=0, max_value=20).map(lambda m: T0 + timedelta(minutes=m)),
    tier=st.sampled_from(["vip", "standard", "gold"]),
    first_promised_date=st.none() | st.dates(min_value=date(2024, 3, 1), max_value=date(2024, 3, 15)),
)
books = st.lists(waiting_lines, max_size=30, unique_by=lambda line: line.key)
supplies = st.integers(min_value=0, max_value=400)
inbound_supplies = st.lists(
    st.builds(
        InboundSupply,
        purchase_order_id=st.sampled_from(["PO-1", "PO-2", "PO-3", "PO-4"]),
        qty=st.integers(min_value=-5, max_value=100),
        expected_at=st.dates(min_value=date(2024, 3, 1), max_value=date(2024, 4, 30)),
    ),
    max_size=6,
)


def total_per_line(allocations: Sequence[Allocation]) -> Counter[LineKey]:
    totals: Counter[LineKey] = Counter()
    for allocation in allocations:
        totals[allocation.key] += allocation.qty
    return totals


@given(book=books)
def test_tier_and_due_date_queue_fifo_among_equals(book: list[WaitingLine]) -> None:
    fifo = queue_order(book, PriorityPolicy.FIFO)

    vip_then_rest = [line for line in fifo if line.tier == "vip"] + [line for line in fifo if line.tier != "vip"]
    by_promise = sorted(
        fifo,
        key=lambda line: (line.first_promised_date is None, line.first_promised_date or date.min),
    )
    assert queue_order(book, PriorityPolicy.TIER) == vip_then_rest
    assert queue_order(book, PriorityPolicy.DUE_DATE) == by_promise
    assert queue_order(book, PriorityPolicy.COMPLETE_LINES_FIRST) == fifo
    assert fifo == sorted(book, key=lambda line: (line.ordered_at, line.order_id, line.line_no))


@given(book=books, supply=supplies, policy=st.sampled_from(PriorityPolicy))
def test_units_are_conserved_and_no_line_is_overfilled(book: list[WaitingLine], supply: int, policy: PriorityPolicy) -> None:
    result = allocate(book, supply, policy)

    assert sum(a.qty for a in result.allocations) + result.put_away == supply
    assert result.put_away >= 0
    waits = {line.key: line.qty_waiting for line in book}
    keys = [allocation.key for allocation in result.allocations]
    assert len(keys) == len(set(keys))
    for allocation in result.allocations:
        assert 0 < allocation.qty <= waits[allocation.key]
    # Nothing goes to the shelf while a line still waits.
    if result.put_away > 0:
        assert total_per_line(result.allocations) == Counter(waits)


@given(book=books, supply=supplies, policy=st.sampled_from(PriorityPolicy))
def test_allocations_come_out_in_queue_order(book: list[WaitingLine], supply: int, policy: PriorityPolicy) -> None:
    position = {line.key: i for i, line in enumerate(queue_order(book, policy))}

    result = allocate(book, supply, policy)

    positions = [position[allocation.key] for allocation in result.allocations]
    assert positions == sorted(positions)


@given(book=books, supply=supplies, policy=st.sampled_from(GREEDY_POLICIES))
def test_greedy_policies_fill_a_prefix_of_the_queue(book: list[WaitingLine], supply: int, policy: PriorityPolicy) -> None:
    queue = queue_order(book, policy)

    result = allocate(book, supply, policy)

    served_lines = queue[: len(result.allocations)]
    assert [a.key for a in result.allocations] == [line.key for line in served_lines]
    for line, allocation in zip(served_lines[:-1], result.allocations[:-1], strict=True):
        assert allocation.qty == line.qty_waiting


@given(
    book=books,
    supply=supplies,
    policy=st.sampled_from(GREEDY_POLICIES),
    data=st.data(),
)
def test_greedy_policies_give_the_same_result_when_the_supply_arrives_in_chunks(
    book: list[WaitingLine], supply: int, policy: PriorityPolicy, data: st.DataObject
) -> None:
    cuts = sorted(data.draw(st.lists(st.integers(0, supply), max_size=5), label="cuts"))
    chunks = [b - a for a, b in zip([0, *cuts], [*cuts, supply], strict=True)]

    at_once = allocate(book, supply, policy)
    remaining_book: list[WaitingLine] = list(book)
    in_chunks: list[Allocation] = []
    put_away_in_chunks = 0
    for chunk in chunks:
        result = allocate(remaining_book, chunk, policy)
        in_chunks.extend(result.allocations)
        put_away_in_chunks += result.put_away
        remaining_book = left_in_book(remaining_book, result.allocations)

    assert total_per_line(in_chunks) == total_per_line(at_once.allocations)
    assert put_away_in_chunks == at_once.put_away


@given(book=books, supply=supplies)
def test_complete_lines_first_leaves_no_line_incomplete_that_the_rest_could_complete(
    book: list[WaitingLine], supply: int
) -> None:
    result = allocate(book, supply, PriorityPolicy.COMPLETE_LINES_FIRST)

    waits = {line.key: line.qty_waiting for line in book}
    given_to = total_per_line(result.allocations)
    completed = [key for key, qty in given_to.items() if qty == waits[key]]
    not_spent_on_completions = supply - sum(waits[key] for key in completed)
    partial = [key for key in given_to if key not in completed]
    assert len(partial) <= 1
    for key in waits.keys() - set(completed):
        assert waits[key] > not_spent_on_completions


@given(book=books, supply=supplies, data=st.data())
def test_complete_lines_first_conserves_units_when_the_supply_arrives_in_chunks(
    book: list[WaitingLine], supply: int, data: st.DataObject
) -> None:
    """Chunks conserve units and never overfill, but may serve different lines.

    Unlike the greedy policies, a split CAN change who gets what, because which
    lines can be completed depends on the size of the receipt (see the example
    below). So only conservation and no-overfill are asserted here.
    """
    policy = PriorityPolicy.COMPLETE_LINES_FIRST
    cuts = sorted(data.draw(st.lists(st.integers(0, supply), max_size=5), label="cuts"))
    chunks = [b - a for a, b in zip([0, *cuts], [*cuts, supply], strict=True)]

    remaining_book: list[WaitingLine] = list(book)
    in_chunks: list[Allocation] = []
    put_away_in_chunks = 0
    for chunk in chunks:
        result = allocate(remaining_book, chunk, policy)
        in_chunks.extend(result.allocations)
        put_away_in_chunks += result.put_away
        remaining_book = left_in_book(remaining_book, result.allocations)

    assert sum(a.qty for a in in_chunks) + put_away_in_chunks == supply
    waits = {line.key: line.qty_waiting for line in book}
    for key, qty in total_per_line(in_chunks).items():
        assert qty <= waits[key]


def test_complete_lines_first_can_serve_differently_when_the_supply_is_split() -> None:
    """The documented non-invariant, pinned by one example."""
    book = [waiting(ORDER_A, 5, minutes=0), waiting(ORDER_B, 3, minutes=1)]
    policy = PriorityPolicy.COMPLETE_LINES_FIRST

    at_once = allocate(book, 4, policy)
    first = allocate(book, 2, policy)
    second = allocate(left_in_book(book, first.allocations), 2, policy)

    # At once, 4 units complete B and give 1 to A; as 2 + 2 nothing can be completed
    # by the first chunk, so A (oldest) gets both, then A gets 2 more.
    assert total_per_line(at_once.allocations) == {(ORDER_A, 1): 1, (ORDER_B, 1): 3}
    assert total_per_line([*first.allocations, *second.allocations]) == {(ORDER_A, 1): 4}


@given(book=books, inbound=inbound_supplies, policy=st.sampled_from(PriorityPolicy))
def test_promised_dates_never_go_back_along_the_queue(
    book: list[WaitingLine], inbound: list[InboundSupply], policy: PriorityPolicy
) -> None:
    queue = queue_order(book, policy)

    promised = project_promised_dates(queue, inbound)

    assert list(promised) == [line.key for line in queue]
    dates = [promised[line.key] for line in queue]
    dated = [d for d in dates if d is not None]
    assert dated == sorted(dated)
    # Once a line is not covered, nothing behind it is.
    assert dates[: len(dated)] == dated


@given(book=books, inbound=inbound_supplies, policy=st.sampled_from(PriorityPolicy))
def test_a_promised_date_is_an_expected_arrival_that_covers_the_line(
    book: list[WaitingLine], inbound: list[InboundSupply], policy: PriorityPolicy
) -> None:
    queue = queue_order(book, policy)

    promised = project_promised_dates(queue, inbound)

    open_supply = [s for s in inbound if s.qty > 0]
    position_end = 0
    for line in queue:
        position_end += line.qty_waiting
        promised_date = promised[line.key]
        if promised_date is None:
            assert sum(s.qty for s in open_supply) < position_end
        else:
            arriving_by = sum(s.qty for s in open_supply if s.expected_at <= promised_date)
            arriving_before = sum(s.qty for s in open_supply if s.expected_at < promised_date)
            assert arriving_before < position_end <= arriving_by


# --- a run of arrivals served together -----------------------------------------------


def receipt(number: int, **units: int) -> Arrival:
    return Arrival("receipt", f"R-{number}", f"R-{number}", dict(sorted(units.items())))


@given(book=books, supplies=st.lists(st.integers(0, 60), max_size=5), policy=st.sampled_from(PriorityPolicy))
def test_arrivals_allocated_in_turn_get_what_each_gets_from_the_book_the_one_before_left(
    book: list[WaitingLine], supplies: list[int], policy: PriorityPolicy
) -> None:
    one_by_one = []
    remaining_book: list[WaitingLine] = list(book)
    for supply in supplies:
        result = allocate(remaining_book, supply, policy)
        one_by_one.append(result)
        remaining_book = left_in_book(remaining_book, result.allocations)

    assert allocate_in_turn(book, supplies, policy) == one_by_one


@given(
    book_a=books,
    book_b=books,
    arrivals=st.lists(st.tuples(st.integers(0, 40), st.integers(0, 40)), max_size=4),
    policy_a=st.sampled_from(PriorityPolicy),
    policy_b=st.sampled_from(PriorityPolicy),
)
def test_a_run_served_from_the_head_its_total_supply_reaches_gets_what_each_arrival_gets_from_the_whole_book(
    book_a: list[WaitingLine], book_b: list[WaitingLine], arrivals: list[tuple[int, int]],
    policy_a: PriorityPolicy, policy_b: PriorityPolicy,
) -> None:
    run = [receipt(n, **{sku: qty for sku, qty in (("A", a), ("B", b)) if qty}) for n, (a, b) in enumerate(arrivals)]
    policies = {"A": policy_a, "B": policy_b}
    books_now = {"A": list(book_a), "B": list(book_b)}
    total = {sku: sum(arrival.units.get(sku, 0) for arrival in run) for sku in policies}
    heads = {sku: queue_head(queue_order(books_now[sku], policies[sku]), total[sku], policies[sku]) for sku in policies}

    served = serve_in_turn(run, heads, policies)

    for arrival, result in zip(run, served, strict=True):
        for sku, qty in arrival.units.items():
            alone = allocate(books_now[sku], qty, policies[sku])
            assert [a.allocation for a in result.allocations if a.sku == sku] == list(alone.allocations)
            assert result.put_away[sku] == alone.put_away
            books_now[sku] = left_in_book(books_now[sku], alone.allocations)
        assert list(result.put_away) == list(arrival.units)


def test_each_arrival_cross_docks_on_the_orders_as_the_arrivals_before_it_left_them() -> None:
    orders = {ORDER_A: OrderProgress(False, units_waiting=5, lines_unregistered=0)}
    run = [receipt(1, A=2), Arrival("release", "REL-1", None, {"A": 1}), receipt(2, B=2)]
    served = [
        Served((SkuAllocation("A", Allocation(ORDER_A, 1, 2)),), {"A": 0}),
        Served((SkuAllocation("A", Allocation(ORDER_A, 1, 1)),), {"A": 0}),
        Served((SkuAllocation("B", Allocation(ORDER_A, 2, 2)),), {"B": 0}),
    ]

    decisions = cross_dock_in_turn(run, served, orders)

    # The first leaves 3 waiting: held. The pick from the shelf never cross-docks, but what it
    # took no longer waits, so the third completes the order.
    assert decisions == [[False], [False], [True]]
    assert orders[ORDER_A].units_waiting == 5  # the caller's progress is left as read


def test_supply_seen_before_or_earlier_in_the_run_is_served_once_and_other_units_under_its_id_are_refused() -> None:
    applied = {("receipt", "R-1"): {"A": 2}}
    run = [("e1", receipt(1, A=2)), ("e2", receipt(2, A=3)), ("e3", receipt(2, A=3)), ("e4", receipt(3, B=1))]

    assert first_arrivals(run, applied) == [run[1], run[3]]
    with pytest.raises(SupplyConflict, match="already applied"):
        first_arrivals([*run, ("e5", receipt(2, A=4))], applied)


def test_only_due_date_queues_shared_by_two_events_of_a_run_may_move_between_them() -> None:
    run = [receipt(1, A=1, B=1), receipt(2, A=1, C=1), receipt(3, B=2)]
    policies = {"A": PriorityPolicy.DUE_DATE, "B": PriorityPolicy.FIFO, "C": PriorityPolicy.DUE_DATE}

    assert queue_may_move_between((arrival.units for arrival in run), policies) == {"A"}
    assert queue_may_move_between([["C"], ["A"], ["C"]], policies) == {"C"}


def test_re_dating_moves_lines_for_the_reason_given_and_lines_entering_as_booked() -> None:
    old, new = waiting(ORDER_A, 4, minutes=0), waiting(ORDER_B, 4, minutes=1)
    book = {"SKU-1": {old: MARCH_20, new: None}}
    inbound = {"SKU-1": [InboundSupply("PO-1", 4, MARCH_10), InboundSupply("PO-2", 4, MARCH_25)]}

    moves = date_moves(book, inbound, {"SKU-1": PriorityPolicy.FIFO}, EtaReason.QUEUE_MOVED, entering={new.key})

    assert moves == [
        DateMove("SKU-1", old.key, MARCH_20, MARCH_10, EtaReason.QUEUE_MOVED),
        DateMove("SKU-1", new.key, None, MARCH_25, EtaReason.BOOKED),
    ]
