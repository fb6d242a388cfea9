"""Every service answers as its OpenAPI says: schemathesis with all its checks (status codes, content
types, bodies and headers as documented, schema-valid input accepted, schema-invalid input refused,
Allow on a 405, a created resource found and a deleted one gone) and all its phases against each
service of the session's stack, bounded in examples per operation, with a fixed seed.

Its requests reach the stack every other test uses, so it leaves alone what they rely on:
- `PUT /v1/policies/global` (allocator) is not called: the global priority policy orders every
  SKU's book.
- The allocator's per-SKU policy, the notifier's channel and customer preferences are written for
  names no other test uses (`CONTRACT-TEST`, `contract-test`): a channel such as `web` with a
  webhook or without email would change what the notification tests receive.
- The stateful phase does not call the list reads (`GET /v1/orders`, `/v1/backorders`,
  `/v1/notifications`, ...): it would follow links from their answers to the other tests' orders,
  SKUs and messages, and cancel, re-prioritise or resend them. It follows links from what it
  created itself. The rest creates orders, SKUs, purchase orders and receipts under generated
  names, and reads. The supplier's reports (confirm, ship) go to one purchase order the test
  places first, so that they reach more than a 404.
A rule no JSON Schema can state (a purchase order dated before today, a SKU or purchase order
inventory does not know, a supplier's time in the future or before the purchase order's last
supplier state) refuses schema-valid input with a 422 that those operations document; on
them, and only them, the positive-data check accepts it."""

from __future__ import annotations

import asyncio
import os
import sys
from datetime import date, timedelta
from pathlib import Path
from uuid import uuid4

import httpx
from conftest import SessionStack

from shared.settings import SERVICES

SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")
SEED = 20261130
EXAMPLES_PER_OPERATION = 8
TIMEOUT_S = 120  # a hard stop for a hung run; the four together take 20-30 s

# The supplier's reports (confirm, ship) are tried on a purchase order of their own, fresh per session.
SUPPLIER_PO = f"CONTRACT-PO-{uuid4().hex[:8]}"
# schemathesis's own defaults for the positive-data check, plus the documented 422.
ACCEPTS_WITH_UNSTATABLE_RULES = '["2xx", "3xx", "401", "403", "404", "409", "422", "429", "5xx"]'
CONFIG = f"""
[[operations]]
include-name = "PUT /v1/policies/global"
enabled = false

[[operations]]
include-name = [
    "GET /v1/orders", "GET /v1/backorders", "GET /v1/backorders/stats", "GET /v1/policies", "GET /v1/notifications",
    "GET /v1/purchase-suggestions",
]
phases.stateful.enabled = false

[[operations]]
include-name = ["PUT /v1/policies/skus/{{sku}}", "DELETE /v1/policies/skus/{{sku}}"]
parameters = {{ "path.sku" = "CONTRACT-TEST" }}

[[operations]]
include-name = "PUT /v1/channels/{{channel}}"
parameters = {{ "path.channel" = "contract-test" }}

[[operations]]
include-name = "PUT /v1/customers/{{customer_id}}/preferences"
parameters = {{ "path.customer_id" = "contract-test" }}

[[operations]]
include-name = [
    "POST /v1/purchase-orders", "PATCH /v1/purchase-orders/{{po_id}}", "POST /v1/receipts", "POST /v1/stock-adjustments",
]
checks.positive_data_acceptance.expected-statuses = {ACCEPTS_WITH_UNSTATABLE_RULES}

[[operations]]
include-name = ["POST /v1/purchase-orders/{{po_id}}/confirm", "POST /v1/purchase-orders/{{po_id}}/ship"]
parameters = {{ "path.po_id" = "{SUPPLIER_PO}" }}
checks.positive_data_acceptance.expected-statuses = {ACCEPTS_WITH_UNSTATABLE_RULES}
"""


async def place_supplier_po(stack: SessionStack) -> None:
    """The purchase order the supplier reports are tried on: an unknown id would only ever get 404."""
    sku = f"{SUPPLIER_PO}-SKU"
    async with httpx.AsyncClient(base_url=stack.base_url("inventory"), timeout=10) as inventory:
        assert (await inventory.put(f"/v1/skus/{sku}", json={})).status_code == 201
        body = {"id": SUPPLIER_PO, "supplier": "contract-test", "lines": [{"sku": sku, "qty": 5}],
                "expected_at": str(date.today() + timedelta(days=30))}
        assert (await inventory.post("/v1/purchase-orders", json=body)).status_code == 201


async def check_contract(base_url: str, config: Path) -> tuple[int, str]:
    """One schemathesis run against a service; its exit code and what it printed."""
    process = await asyncio.create_subprocess_exec(
        str(SCHEMATHESIS), "--config-file", str(config), "run", f"{base_url}/openapi.json",
        "--checks", "all", "--max-examples", str(EXAMPLES_PER_OPERATION),
        "--seed", str(SEED), "--no-shrink", "--request-timeout", "10",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, cwd=config.parent,
        env={**os.environ, "NO_COLOR": "1", "COLUMNS": "160"},
    )
    try:
        output, _ = await asyncio.wait_for(process.communicate(), TIMEOUT_S)
    except TimeoutError:
        process.kill()
        output, _ = await process.communicate()
        return -1, f"timed out after {TIMEOUT_S} s\n{output.decode(errors='replace')}"
    assert process.returncode is not None
    return process.returncode, output.decode(errors="replace")


async def test_every_service_answers_as_its_openapi_says(stack: SessionStack, tmp_path: Path) -> None:
    config = tmp_path / "schemathesis.toml"
    config.write_text(CONFIG)
    await place_supplier_po(stack)
    runs = await asyncio.gather(*(check_contract(stack.base_url(service), config) for service in SERVICES))
    failed = {service: output for service, (code, output) in zip(SERVICES, runs, strict=True) if code != 0}
    assert not failed, "\n\n".join(f"=== {service}\n{output[-6000:]}" for service, output in failed.items())
