"""The dashboard's book per SKU: units waiting per promised date against purchase orders, SKUs with
nothing waiting left out, the biggest books first."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from decimal import Decimal
from uuid import uuid4

from services.ops.beliefs import plain
from services.ops.dashboard import book_by_sku


def stats(sku: str, lines: int, units: int) -> dict[str, object]:
    return {"sku": sku, "lines_waiting": lines, "units_waiting": units, "oldest_age_seconds": 60.0}


def line(sku: str, qty: int, promised: str | None) -> dict[str, object]:
    return {"sku": sku, "qty_waiting": qty, "promised_date": promised}


def test_units_are_summed_per_promised_date_next_to_the_open_purchase_orders() -> None:
    backorders = {
        "items": [line("MUG", 2, "2026-12-20"), line("MUG", 3, "2026-12-20"), line("MUG", 1, None), line("CUP", 4, None)],
        "supply": [{"sku": "MUG", "purchase_order_id": "PO-1", "qty_open": 5, "expected_at": "2026-12-20"}],
    }

    book = book_by_sku([stats("CUP", 1, 4), stats("MUG", 3, 6), stats("BOWL", 0, 0)], backorders)

    assert [sku["sku"] for sku in book] == ["MUG", "CUP"]  # most units first; nothing waits for BOWL
    mug = book[0]
    assert mug["waiting_by_date"] == [{"date": "2026-12-20", "units": 5}]
    assert mug["waiting_undated"] == 1
    assert mug["supply"] == [{"purchase_order_id": "PO-1", "qty": 5, "expected_at": "2026-12-20"}]
    assert book[1]["waiting_by_date"] == [] and book[1]["waiting_undated"] == 4 and book[1]["supply"] == []


def test_database_rows_become_json_ready() -> None:
    order_id = uuid4()
    row = plain({"order_id": order_id, "created_at": datetime(2026, 11, 30, 12, tzinfo=UTC), "day": date(2026, 12, 1),
                 "percent": Decimal("12.5"), "attempts": 3, "last_error": None})
    assert json.loads(json.dumps(row)) == {"order_id": str(order_id), "created_at": "2026-11-30T12:00:00+00:00",
                                           "day": "2026-12-01", "percent": "12.5", "attempts": 3, "last_error": None}
