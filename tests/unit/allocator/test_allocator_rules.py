"""Unit tests of the allocator's small service rules: policy in force, supply per SKU, order progress, ETA reasons."""

from __future__ import annotations

from datetime import date
from uuid import UUID

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.allocator.domain.dates import EtaChange, EtaReason, eta_reasons
from services.allocator.domain.queue import OrderProgress, PriorityPolicy, order_progress, policy_in_force, supply_per_sku

ORDER_A = UUID(int=1)
ORDER_B = UUID(int=2)


def test_a_skus_own_policy_beats_the_global_one() -> None:
    assert policy_in_force("tier", "due_date") is PriorityPolicy.TIER


def test_the_global_policy_applies_without_a_skus_own() -> None:
    assert policy_in_force(None, "complete_lines_first") is PriorityPolicy.COMPLETE_LINES_FIRST


def test_without_any_policy_the_book_is_fifo() -> None:
    assert policy_in_force(None, None) is PriorityPolicy.FIFO


def test_an_unknown_policy_is_refused() -> None:
    with pytest.raises(ValueError):
        policy_in_force("loudest_first", None)


def test_lines_of_one_sku_are_summed_and_skus_come_out_sorted() -> None:
    units = supply_per_sku([("SKU-B", 2), ("SKU-A", 1), ("SKU-B", 3)])

    assert units == {"SKU-A": 1, "SKU-B": 5}
    assert list(units) == ["SKU-A", "SKU-B"]


def test_a_negative_quantity_is_refused() -> None:
    with pytest.raises(ValueError):
        supply_per_sku([("SKU-A", 3), ("SKU-A", -1)])


@given(st.lists(st.tuples(st.sampled_from(["C", "A", "B"]), st.integers(0, 50)), max_size=20))
def test_summing_per_sku_conserves_units(lines: list[tuple[str, int]]) -> None:
    units = supply_per_sku(lines)

    assert sum(units.values()) == sum(qty for _, qty in lines)
    assert list(units) == sorted(units)


def test_short_lines_not_booked_yet_count_as_unregistered() -> None:
    assert order_progress(False, 5, order_short_lines=3, lines_booked=1) == OrderProgress(False, 5, lines_unregistered=2)


def test_more_lines_booked_than_announced_never_makes_unregistered_negative() -> None:
    assert order_progress(True, 0, order_short_lines=1, lines_booked=2).lines_unregistered == 0


def test_a_line_entering_the_book_is_booked_and_the_others_move_for_the_reason_given() -> None:
    changes = [
        EtaChange((ORDER_A, 1), date(2024, 3, 10), date(2024, 3, 20)),
        EtaChange((ORDER_B, 1), None, date(2024, 3, 20)),
    ]

    assert eta_reasons(changes, EtaReason.QUEUE_MOVED, booked=[(ORDER_B, 1)]) == [
        (changes[0], EtaReason.QUEUE_MOVED),
        (changes[1], EtaReason.BOOKED),
    ]
