"""The tracking page, pure: the timeline of a line, and the page in the customer's language with
dates in their format (Hungarian and Danish here, every language for the words)."""

from __future__ import annotations

from datetime import date
from uuid import UUID

import pytest

from services.notifier.domain import LANGUAGES, LineFacts, OrderFacts
from services.notifier.tracking import PurchaseOrderOnItsWay, render_refusal, render_tracking, timeline, tracking_page

TODAY = date(2026, 11, 30)
PROMISED = date(2026, 12, 14)
ORDER = OrderFacts(UUID(int=7), "SO-4711", "cust-1", "hu-HU", "Nordic Home", True, True, (
    LineFacts(1, "MUG-1", 2, reserved=2),
    LineFacts(2, "LAMP-9", 3, reserved=1, short=2, booked=True, promised_date=PROMISED, first_promised_date=PROMISED),
))
BOOK = {2: {"position": 3, "lines_waiting": 7, "units_waiting": 12, "covering_purchase_orders": [
    {"purchase_order_id": "PO-1", "supplier_state": "shipped", "expected_at": "2026-12-14", "qty_open": 20}]}}


def test_a_line_that_never_waited_goes_from_ordered_to_shipped() -> None:
    assert [step for step, _ in timeline(LineFacts(1, "MUG-1", 2, reserved=2), ())] == ["ordered", "shipped"]


def test_a_waiting_line_shows_how_far_its_goods_have_come() -> None:
    waiting = ORDER.lines[1]
    steps = dict(timeline(waiting, (PurchaseOrderOnItsWay("shipped", PROMISED),)))
    assert steps == {"ordered": True, "backordered": True, "on_purchase_order": True, "shipped_by_supplier": True,
                     "received": False, "allocated": False, "shipped": False}
    served = dict(timeline(LineFacts(2, "LAMP-9", 3, reserved=1, short=2, allocated=2), ()))
    assert served["received"] and served["allocated"] and not served["shipped"]


def test_the_page_speaks_hungarian_with_hungarian_dates() -> None:
    html = render_tracking(tracking_page(ORDER, BOOK, TODAY), "hu-HU")
    assert 'lang="hu"' in html and "SO-4711" in html
    assert "december 14." in html  # Hungarian day format
    assert "3. a 7 várakozó rendelés közül" in html and "a beszállító már feladta" in html
    assert html.count('class="done"') == 5 and "Utánrendelve" in html


def test_the_page_speaks_danish_with_danish_dates() -> None:
    html = render_tracking(tracking_page(ORDER, BOOK, TODAY), "da-DK")
    assert 'lang="da"' in html and "14. december" in html
    assert "Nummer 3 af 7 ordrer" in html and "allerede afsendt af leverandøren" in html


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_language_renders_the_page_and_the_refusals(language: str) -> None:
    html = render_tracking(tracking_page(ORDER, BOOK, TODAY), language)
    assert "LAMP-9" in html and f'lang="{language}"' in html
    expired, broken = render_refusal("", True, language), render_refusal("", False, language)
    assert expired != broken and f'lang="{language}"' in expired
