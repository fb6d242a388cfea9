"""Where an order's waiting lines stand in the backorder book, asked of the allocator, which owns it
(GET /v1/backorders/orders/{id}): orders shows it on the order, the notifier on the tracking page.
Read when wanted, since places move with every booking and receipt."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import httpx

from shared.settings import Settings

BOOK_TIMEOUT_S = 2.0


class BookUnavailable(Exception):
    """The allocator did not answer (in time, or at all): show the order without its places."""


async def places_in_book(settings: Settings, order_id: UUID) -> dict[int, dict[str, Any]]:
    """Per line number: position, lines_waiting, units_waiting, units_ahead, qty_waiting,
    promised_date and covering_purchase_orders [{purchase_order_id, supplier_state, expected_at, qty_open}]."""
    url = f"{settings.service_url('allocator')}/v1/backorders/orders/{order_id}"
    try:
        async with httpx.AsyncClient(timeout=BOOK_TIMEOUT_S) as client:
            answer = await client.get(url)
        answer.raise_for_status()
        return {int(item["line_no"]): item for item in answer.json()["lines"]}
    except (httpx.HTTPError, ValueError, KeyError, TypeError) as error:
        raise BookUnavailable(f"the backorder book could not be read: {type(error).__name__}") from error
