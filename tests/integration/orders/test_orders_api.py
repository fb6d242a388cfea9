"""The orders HTTP API against the live stack: placing, idempotent replays, reads, lists, cancels,
and bad input on every endpoint answered with a problem (4xx), never a 500."""

from __future__ import annotations

import asyncio
import json
from typing import Any
from uuid import uuid4

import pytest
from integration.orders.orders_kit import OrdersKit, kit_fixture  # noqa: F401 (the kit fixture)

from shared.events import LineRejected, RejectionReason

pytestmark = pytest.mark.asyncio

TEN_MB = 10 * 1024 * 1024


def assert_problem(answer: Any, status: int) -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"].startswith("application/problem+json")
    problem: dict[str, Any] = answer.json()
    assert problem["status"] == status and problem["detail"]
    if status == 422:
        assert problem["errors"] and all(error["field"] and error["reason"] for error in problem["errors"])
    return problem


# --- placing and reading ------------------------------------------------------------------------


async def test_place_order_answers_201_pending_and_emits_order_placed(kit: OrdersKit) -> None:
    sku_a, sku_b = await kit.sku(), await kit.sku()
    answer = await kit.api.post("/v1/orders", json=kit.body((sku_a, 3), (sku_b, 1), (sku_a, 2), partial=True))
    assert answer.status_code == 201, answer.text
    order = answer.json()
    assert answer.headers["location"] == f"/v1/orders/{order['id']}"
    assert [(line["line_no"], line["sku"], line["qty"], line["state"]) for line in order["lines"]] == [
        (1, sku_a, 3, "pending"), (2, sku_b, 1, "pending"), (3, sku_a, 2, "pending"),
    ]
    assert order["shipping"] == {"partial_allowed": True}
    await kit.settle()
    placed = await kit.emitted("OrderPlaced", order_id=order["id"])
    assert len(placed) == 1
    assert placed[0].payload["lines"] == [{"line_no": 1, "sku": sku_a, "qty": 3}, {"line_no": 2, "sku": sku_b, "qty": 1},
                                          {"line_no": 3, "sku": sku_a, "qty": 2}]
    assert placed[0].payload["partial_allowed"] is True
    read = await kit.order(order["id"])
    assert (read["id"], read["external_id"], len(read["lines"])) == (order["id"], order["external_id"], 3)


async def test_idempotency_key_replays_the_first_response(kit: OrdersKit) -> None:
    body, key = kit.body((await kit.sku(), 1)), f"key-{uuid4()}"
    first = await kit.api.post("/v1/orders", json=body, headers={"Idempotency-Key": key})
    again = await kit.api.post("/v1/orders", json=body, headers={"Idempotency-Key": key})
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()
    await kit.settle()
    assert len(await kit.emitted("OrderPlaced", order_id=first.json()["id"])) == 1


async def test_channel_and_external_id_replay_without_a_key(kit: OrdersKit) -> None:
    body = kit.body((await kit.sku(), 2))
    first = await kit.api.post("/v1/orders", json=body)
    again = await kit.api.post("/v1/orders", json=body, headers={"Idempotency-Key": f"late-{uuid4()}"})
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["id"] == first.json()["id"]
    other_channel = await kit.api.post("/v1/orders", json={**body, "channel": "app"})
    assert other_channel.status_code == 201 and other_channel.json()["id"] != first.json()["id"]


async def test_same_identity_with_a_different_body_is_a_conflict(kit: OrdersKit) -> None:
    sku, key = await kit.sku(), f"key-{uuid4()}"
    body = kit.body((sku, 1))
    assert (await kit.api.post("/v1/orders", json=body, headers={"Idempotency-Key": key})).status_code == 201
    changed = {**body, "lines": [{"sku": sku, "qty": 2}]}
    assert_problem(await kit.api.post("/v1/orders", json=changed, headers={"Idempotency-Key": key}), 409)
    assert_problem(await kit.api.post("/v1/orders", json=changed), 409)  # same channel + external_id
    new_external = {**body, "external_id": f"EXT-{uuid4().hex}"}
    assert_problem(await kit.api.post("/v1/orders", json=new_external, headers={"Idempotency-Key": key}), 409)


async def test_concurrent_identical_posts_make_one_order(kit: OrdersKit, db: Any) -> None:
    body = kit.body((await kit.sku(), 1))
    answers = await asyncio.gather(*(kit.api.post("/v1/orders", json=body) for _ in range(8)))
    assert sorted(answer.status_code for answer in answers) == [200] * 7 + [201]
    assert len({answer.json()["id"] for answer in answers}) == 1
    async with db("orders") as conn:
        count = await conn.fetchval("SELECT count(*) FROM orders WHERE channel = 'web' AND external_id = $1", body["external_id"])
    assert count == 1
    await kit.settle()
    assert len(await kit.emitted("OrderPlaced", order_id=answers[0].json()["id"])) == 1


async def test_largest_order_is_accepted(kit: OrdersKit) -> None:
    sku = await kit.sku(known=False)
    answer = await kit.api.post("/v1/orders", json=kit.body(*[(sku, 1)] * 500))
    assert answer.status_code == 201, answer.text
    assert len(answer.json()["lines"]) == 500


async def test_unknown_order_is_404(kit: OrdersKit) -> None:
    assert_problem(await kit.api.get(f"/v1/orders/{uuid4()}"), 404)
    assert_problem(await kit.api.get(f"/v1/orders/{uuid4()}/shipments"), 404)


async def test_list_by_status_newest_first(kit: OrdersKit) -> None:
    rejected = []
    for _ in range(2):
        sku = await kit.sku(known=False)
        order = await kit.place((sku, 1))
        await kit.publish(LineRejected(order_id=order["id"], line_no=1, sku=sku, qty=1, reason=RejectionReason.UNKNOWN_SKU))
        rejected.append(order["id"])
    waiting = await kit.backordered((await kit.sku(), 2))
    await kit.settle()

    listed = (await kit.api.get("/v1/orders", params={"status": "rejected", "limit": 500})).json()
    ids = [order["id"] for order in listed["orders"]]
    assert ids.index(rejected[1]) < ids.index(rejected[0]) and waiting["id"] not in ids
    assert all(any(line["state"] == "rejected" for line in order["lines"]) for order in listed["orders"])
    assert ids[:2] == [rejected[1], rejected[0]]  # nothing newer has a rejected line
    page = (await kit.api.get("/v1/orders", params={"status": "rejected", "limit": 1, "offset": 1})).json()
    assert ([order["id"] for order in page["orders"]], page["limit"], page["offset"]) == ([rejected[0]], 1, 1)
    waiting_ids = [order["id"] for order in (await kit.api.get("/v1/orders", params={"status": "backordered"})).json()["orders"]]
    assert waiting["id"] in waiting_ids and rejected[0] not in waiting_ids
    everything = (await kit.api.get("/v1/orders", params={"limit": 3})).json()["orders"]
    assert [order["id"] for order in everything] == [waiting["id"], rejected[1], rejected[0]]


# --- cancelling ---------------------------------------------------------------------------------


async def test_cancel_line_emits_line_cancelled(kit: OrdersKit) -> None:
    order = await kit.backordered((await kit.sku(), 4), (await kit.sku(), 1))
    answer = await kit.api.post(f"/v1/orders/{order['id']}/lines/1/cancel", json={"reason": "changed mind"})
    assert answer.status_code == 200, answer.text
    lines = answer.json()["lines"]
    first = lines[0]
    assert (first["state"], first["cancelled"], first["backordered"]) == ("cancelled", 4, 0)
    assert first["cancel_reason"] == "changed mind"
    assert lines[1]["state"] == "backordered"
    await kit.settle()
    cancelled = await kit.emitted("LineCancelled", order_id=order["id"])
    assert [(e.payload["line_no"], e.payload["qty_cancelled"], e.payload["reason"]) for e in cancelled] == [
        (1, 4, "changed mind")
    ]
    assert_problem(await kit.api.post(f"/v1/orders/{order['id']}/lines/1/cancel"), 409)
    assert_problem(await kit.api.post(f"/v1/orders/{order['id']}/lines/3/cancel"), 404)


async def test_cancel_order_cancels_every_open_line_once(kit: OrdersKit) -> None:
    order = await kit.backordered((await kit.sku(), 2), (await kit.sku(), 3))
    assert (await kit.api.post(f"/v1/orders/{order['id']}/lines/2/cancel")).status_code == 200
    answer = await kit.api.post(f"/v1/orders/{order['id']}/cancel")
    assert answer.status_code == 200, answer.text
    assert [line["state"] for line in answer.json()["lines"]] == ["cancelled", "cancelled"]
    await kit.settle()
    cancelled = await kit.emitted("LineCancelled", order_id=order["id"])
    assert sorted((e.payload["line_no"], e.payload["qty_cancelled"]) for e in cancelled) == [(1, 2), (2, 3)]
    assert_problem(await kit.api.post(f"/v1/orders/{order['id']}/cancel", json={"reason": "again"}), 409)
    assert_problem(await kit.api.post(f"/v1/orders/{uuid4()}/cancel"), 404)


async def test_a_rejected_line_cannot_be_cancelled(kit: OrdersKit) -> None:
    sku = await kit.sku(known=False)
    order = await kit.place((sku, 1))
    await kit.publish(LineRejected(order_id=order["id"], line_no=1, sku=sku, qty=1, reason=RejectionReason.UNKNOWN_SKU))
    await kit.settle()
    problem = assert_problem(await kit.api.post(f"/v1/orders/{order['id']}/lines/1/cancel"), 409)
    assert "rejected" in problem["detail"]


# --- bad input ----------------------------------------------------------------------------------


def good_body(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "external_id": f"EXT-{uuid4().hex}", "channel": "web",
        "customer": {"id": "C1", "email": "ada@example.com", "locale": "en", "tier": "standard"},
        "lines": [{"sku": "BAD-INPUT-SKU", "qty": 1}], "shipping": {"partial_allowed": False},
    }
    body.update(changes)
    return body


BAD_ORDERS = {
    "zero qty": good_body(lines=[{"sku": "A", "qty": 0}]),
    "negative qty": good_body(lines=[{"sku": "A", "qty": -3}]),
    "absurd qty": good_body(lines=[{"sku": "A", "qty": 10**12}]),
    "qty as text": good_body(lines=[{"sku": "A", "qty": "5"}]),
    "qty as words": good_body(lines=[{"sku": "A", "qty": "lots"}]),
    "fractional qty": good_body(lines=[{"sku": "A", "qty": 1.5}]),
    "empty lines": good_body(lines=[]),
    "lines not a list": good_body(lines="A x 1"),
    "501 lines": good_body(lines=[{"sku": "A", "qty": 1}] * 501),
    "unknown top-level field": good_body(coupon="FREE"),
    "unknown line field": good_body(lines=[{"sku": "A", "qty": 1, "price": 3}]),
    "unknown customer field": good_body(customer={"id": "C1", "email": "a@b.co", "vip": True}),
    "missing customer": {k: v for k, v in good_body().items() if k != "customer"},
    "customer not an object": good_body(customer=5),
    "bad email": good_body(customer={"id": "C1", "email": "nobody"}),
    "bad tier": good_body(customer={"id": "C1", "email": "a@b.co", "tier": "gold"}),
    "bad sku": good_body(lines=[{"sku": "no spaces allowed", "qty": 1}]),
    "partial_allowed as text": good_body(shipping={"partial_allowed": "yes"}),
    "unknown shipping field": good_body(shipping={"partial_allowed": True, "express": True}),
    "empty external_id": good_body(external_id=""),
    "NUL in external_id": good_body(external_id="EXT\u0000"),
    "lone surrogate in channel": good_body(channel="web\ud800"),
    "NUL in customer id": good_body(customer={"id": "C\u0000", "email": "a@b.co"}),
    "body is a list": [good_body()],
}


@pytest.mark.parametrize("body", BAD_ORDERS.values(), ids=BAD_ORDERS.keys())
async def test_bad_orders_are_422(kit: OrdersKit, body: Any) -> None:
    content = json.dumps(body).encode()  # ASCII-escaped, so even a lone surrogate reaches the server
    assert_problem(await kit.api.post("/v1/orders", content=content, headers={"content-type": "application/json"}), 422)


async def test_malformed_json_and_wrong_content_are_4xx(kit: OrdersKit) -> None:
    for content in (b'{"external_id": "x", "lines": [', b"", b"not json", b"\xff\xfe"):
        answer = await kit.api.post("/v1/orders", content=content, headers={"content-type": "application/json"})
        assert_problem(answer, 422)
    answer = await kit.api.post("/v1/orders", content=b'{"external_id": "x",}', headers={"content-type": "application/json"})
    assert assert_problem(answer, 422)["errors"] == [
        {"field": "body", "reason": "not valid JSON at character 20: Expecting property name enclosed in double quotes"}
    ]


async def test_overlong_idempotency_key_is_422(kit: OrdersKit) -> None:
    assert_problem(await kit.api.post("/v1/orders", json=good_body(), headers={"Idempotency-Key": "k" * 256}), 422)


async def test_ten_megabyte_bodies_are_413_everywhere(kit: OrdersKit) -> None:
    huge = b'{"pad": "' + b"x" * TEN_MB + b'"}'
    order_id = uuid4()
    paths = ["/v1/orders", *(f"/v1/orders/{order_id}/{tail}" for tail in ("cancel", "lines/1/cancel", "shipments"))]
    for path in paths:
        answer = await kit.api.post(path, content=huge, headers={"content-type": "application/json"})
        assert_problem(answer, 413)


BAD_READS = {
    "non-uuid id": "/v1/orders/not-a-uuid",
    "non-uuid shipments": "/v1/orders/1234/shipments",
    "unknown status": "/v1/orders?status=lost",
    "status of an order, not a line": "/v1/orders?status=complete",
    "zero limit": "/v1/orders?limit=0",
    "limit too high": "/v1/orders?limit=501",
    "limit not a number": "/v1/orders?limit=ten",
    "negative offset": "/v1/orders?offset=-1",
    "absurd offset": "/v1/orders?offset=99999999999999999999",
}


@pytest.mark.parametrize("path", BAD_READS.values(), ids=BAD_READS.keys())
async def test_bad_reads_are_422(kit: OrdersKit, path: str) -> None:
    assert_problem(await kit.api.get(path), 422)


async def test_bad_cancels_are_4xx(kit: OrdersKit) -> None:
    order = await kit.backordered((await kit.sku(), 1))
    base = f"/v1/orders/{order['id']}"
    assert_problem(await kit.api.post("/v1/orders/not-a-uuid/cancel"), 422)
    assert_problem(await kit.api.post("/v1/orders/not-a-uuid/lines/1/cancel"), 422)
    for line_no in ("0", "-1", "one", "99999999999"):
        assert_problem(await kit.api.post(f"{base}/lines/{line_no}/cancel"), 422)
    for body in ({"reason": ""}, {"reason": 5}, {"reason": "x", "refund": True}, {"reason": "a\u0000b"}, ["reason"]):
        assert_problem(await kit.api.post(f"{base}/cancel", json=body), 422)
        assert_problem(await kit.api.post(f"{base}/lines/1/cancel", json=body), 422)
    assert_problem(await kit.api.post(f"{base}/cancel", content=b"{oops", headers={"content-type": "application/json"}), 422)
    assert_problem(await kit.api.post(f"/v1/orders/{uuid4()}/lines/1/cancel"), 404)
    assert (await kit.order(order["id"]))["lines"][0]["state"] == "backordered"  # nothing above changed it


async def test_bad_shipment_confirmations_are_4xx(kit: OrdersKit) -> None:
    order = await kit.backordered((await kit.sku(), 1))
    path = f"/v1/orders/{order['id']}/shipments"
    for body in ({}, {"shipment_id": "nope"}, {"shipment_id": 7}, {"shipment_id": str(uuid4()), "carrier": "ups"}, [1]):
        assert_problem(await kit.api.post(path, json=body), 422)
    assert_problem(await kit.api.post(path, content=b"[", headers={"content-type": "application/json"}), 422)
    assert_problem(await kit.api.post(path, json={"shipment_id": str(uuid4())}), 404)
    assert_problem(await kit.api.post(f"/v1/orders/{uuid4()}/shipments", json={"shipment_id": str(uuid4())}), 404)
    assert_problem(await kit.api.post("/v1/orders/xyz/shipments", json={"shipment_id": str(uuid4())}), 422)


async def test_problem_bodies_name_the_field(kit: OrdersKit) -> None:
    problem = assert_problem(await kit.api.post("/v1/orders", json=BAD_ORDERS["zero qty"]), 422)
    assert [error["field"] for error in problem["errors"]] == ["lines.0.qty"]
    problem = assert_problem(await kit.api.post("/v1/orders", json=BAD_ORDERS["501 lines"]), 422)
    assert "500" in json.dumps(problem["errors"])
